//! A rendered document as kept in object storage: its key is derived from what it is and
//! from its bytes, so rendering the same document twice names the same object.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// Which kind of record a document belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Invoice,
    CreditNote,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invoice => "invoice",
            Self::CreditNote => "credit_note",
        }
    }
}

/// The PDF recorded on an invoice or a credit note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoredDocument {
    /// The object's key in the documents bucket.
    pub key: String,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    pub size: u64,
}

impl StoredDocument {
    /// `{tenant}/{kind}/{id}/{sha256}.pdf`.
    pub fn of(tenant: &str, kind: DocumentKind, id: &str, bytes: &[u8]) -> Self {
        let sha256 = hex::encode(Sha256::digest(bytes));
        Self {
            key: format!("{tenant}/{}/{id}/{sha256}.pdf", kind.as_str()),
            sha256,
            size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_bytes() {
        let a = StoredDocument::of("ten_1", DocumentKind::Invoice, "in_1", b"%PDF-1.7 a");
        let again = StoredDocument::of("ten_1", DocumentKind::Invoice, "in_1", b"%PDF-1.7 a");
        let b = StoredDocument::of("ten_1", DocumentKind::Invoice, "in_1", b"%PDF-1.7 b");
        assert_eq!(a, again);
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with("ten_1/invoice/in_1/"));
        assert_eq!((a.sha256.len(), a.size), (64, 10));
    }
}
