//! A rendered document as stored: where its PDF is, and what it hashes to. Written once per
//! invoice or credit note; the object's name carries its SHA-256, so rendering the same
//! record again names the same object.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::kernel::ids::TenantId;

/// What a document is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Invoice,
    CreditNote,
}

impl DocumentKind {
    /// The object key's folder.
    pub const fn folder(self) -> &'static str {
        match self {
            DocumentKind::Invoice => "invoices",
            DocumentKind::CreditNote => "credit-notes",
        }
    }
}

/// A freshly drawn PDF, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPdf {
    pub bytes: Vec<u8>,
    /// Why the branding's logo is missing from it when it could not be drawn (a file that
    /// does not decode, an object not in the bucket): the document is drawn without it.
    pub logo_skipped: Option<String>,
}

/// The record of a document's PDF, kept next to the invoice or credit note it draws.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDocument {
    pub kind: DocumentKind,
    /// The invoice's or credit note's id.
    pub of: String,
    /// The object's key in the documents bucket.
    pub key: String,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    pub size: u64,
    pub rendered_at: Timestamp,
}

impl StoredDocument {
    /// The record of `bytes` rendered for `of` of `tenant` in its mode: the key is
    /// `{tenant}/{live|test}/{invoices|credit-notes}/{id}/{sha256}.pdf`, so a tenant's, a
    /// mode's and a record's documents each sit under one prefix (an erasure or an export
    /// lists one prefix).
    pub fn of_bytes(
        tenant: TenantId,
        livemode: bool,
        kind: DocumentKind,
        of: &str,
        bytes: &[u8],
        rendered_at: Timestamp,
    ) -> Self {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let mode = if livemode { "live" } else { "test" };
        Self {
            kind,
            of: of.to_owned(),
            key: format!("{tenant}/{mode}/{}/{of}/{sha256}.pdf", kind.folder()),
            sha256,
            size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            rendered_at,
        }
    }

    /// The file name a download is offered under: the number for an invoice (`/` and other
    /// characters a file system or a header would trip on become `-`).
    pub fn file_name(&self, number: &str) -> String {
        let safe: String = number
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{safe}.pdf")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_tenant_mode_record_and_hash() {
        let tenant = TenantId::from_ulid(ulid::Ulid::nil());
        let at = Timestamp::UNIX_EPOCH;
        let doc =
            StoredDocument::of_bytes(tenant, false, DocumentKind::Invoice, "in_1", b"%PDF", at);
        assert_eq!(doc.size, 4);
        assert_eq!(
            doc.key,
            format!("{tenant}/test/invoices/in_1/{}.pdf", doc.sha256)
        );
        let again =
            StoredDocument::of_bytes(tenant, false, DocumentKind::Invoice, "in_1", b"%PDF", at);
        assert_eq!(doc, again);
        let live =
            StoredDocument::of_bytes(tenant, true, DocumentKind::CreditNote, "cn_1", b"x", at);
        assert!(live.key.contains("/live/credit-notes/cn_1/"));
        assert_eq!(doc.file_name("INV 2026/0001"), "INV-2026-0001.pdf");
    }
}
