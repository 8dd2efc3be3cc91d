//! Branding (one item per tenant, version-checked) and the records of rendered documents
//! (one item per invoice or credit note, created once).

use async_trait::async_trait;
use billing_app::ports::*;
use billing_domain::documents::branding::Branding;
use billing_domain::documents::stored::StoredDocument;
use billing_domain::kernel::ids::TenantId;

use super::{to_item, DynamoStore};
use crate::keys;

#[async_trait]
impl BrandingStore for DynamoStore {
    async fn branding(&self, tenant: TenantId) -> Result<Option<Branding>, StoreError> {
        self.get(&keys::branding(tenant)).await
    }

    async fn save_branding(
        &self,
        tenant: TenantId,
        branding: &Branding,
        change: &Change,
    ) -> Result<(), StoreError> {
        let item = to_item("branding", branding, &keys::branding(tenant))?;
        let mut tx = self.transaction();
        if branding.version <= 1 {
            tx.create(item, StoreError::VersionConflict { entity: "branding" })?;
        } else {
            tx.replace_version(item, branding.version - 1, "branding")?;
        }
        tx.record(tenant, change)?;
        tx.commit().await
    }
}

#[async_trait]
impl DocumentStore for DynamoStore {
    async fn document(
        &self,
        tenant: TenantId,
        of: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        self.get(&keys::document(tenant, of)).await
    }

    async fn record_document(
        &self,
        tenant: TenantId,
        document: &StoredDocument,
    ) -> Result<(), StoreError> {
        let item = to_item("document", document, &keys::document(tenant, &document.of))?;
        let mut tx = self.transaction();
        tx.create(item, StoreError::AlreadyExists { entity: "document" })?;
        tx.commit().await
    }
}
