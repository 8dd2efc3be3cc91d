//! Persistence of the tenant's branding and email settings, of rendered documents' records
//! and their bytes, and the renderer.

use async_trait::async_trait;
use billing_domain::billing::invoice::Invoice;
use billing_domain::collection::credit_note::CreditNote;
use billing_domain::documents::branding::Branding;
use billing_domain::documents::email::EmailSettings;
use billing_domain::documents::stored::{RenderedPdf, StoredDocument};
use billing_domain::kernel::ids::TenantId;

use super::{Change, StoreError};

#[async_trait]
pub trait BrandingStore: Send + Sync {
    /// `None` until the tenant first sets it.
    async fn branding(&self, tenant: TenantId) -> Result<Option<Branding>, StoreError>;
    /// Writes `branding` if the stored one is still at `branding.version - 1` (absent for
    /// version 1), with the change; `VersionConflict` otherwise.
    async fn save_branding(
        &self,
        tenant: TenantId,
        branding: &Branding,
        change: &Change,
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait EmailSettingsStore: Send + Sync {
    /// `None` until the tenant first sets them.
    async fn email_settings(&self, tenant: TenantId) -> Result<Option<EmailSettings>, StoreError>;
    /// Writes `settings` if the stored ones are still at `settings.version - 1` (absent for
    /// version 1), with the change; `VersionConflict` otherwise.
    async fn save_email_settings(
        &self,
        tenant: TenantId,
        settings: &EmailSettings,
        change: &Change,
    ) -> Result<(), StoreError>;
}
/// The records of rendered documents, one per invoice or credit note.
#[async_trait]
pub trait DocumentStore: Send + Sync {
    /// The record of the document of `of` (an invoice's or credit note's id).
    async fn document(
        &self,
        tenant: TenantId,
        of: &str,
    ) -> Result<Option<StoredDocument>, StoreError>;
    /// Writes the record unless `of` has one: `AlreadyExists` then, and nothing changes.
    async fn record_document(
        &self,
        tenant: TenantId,
        document: &StoredDocument,
    ) -> Result<(), StoreError>;
}

/// Where documents' bytes are kept: S3 in AWS and on the local stack, memory in tests.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Writes `bytes` under `key`; writing the same bytes again changes nothing.
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError>;
    /// The bytes under `key`, `None` when there are none.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// A short-lived link that downloads `key` as `file_name`, when this store is set to
    /// answer downloads with links; `None` means the caller serves the bytes itself.
    async fn download_link(&self, key: &str, file_name: &str)
        -> Result<Option<String>, StoreError>;
}

/// Draws PDFs. Implemented where the renderer is linked (the `document-renderer` function,
/// tests), never in the `api` function, whose size budget the PDF writer and fonts would
/// break. `logo` is the file `branding.logo` names; one that cannot be drawn is left out and
/// said why in [`RenderedPdf::logo_skipped`].
pub trait DocumentRenderer: Send + Sync {
    fn invoice(
        &self,
        invoice: &Invoice,
        branding: &Branding,
        logo: Option<&[u8]>,
    ) -> Result<RenderedPdf, String>;
    fn credit_note(
        &self,
        note: &CreditNote,
        invoice: &Invoice,
        branding: &Branding,
        logo: Option<&[u8]>,
    ) -> Result<RenderedPdf, String>;
}
