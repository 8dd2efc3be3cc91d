//! Branding and email settings (one item each per tenant, version-checked) and the records
//! of rendered documents (one item per invoice or credit note, created once).

use async_trait::async_trait;
use billing_app::ports::*;
use billing_domain::documents::branding::Branding;
use billing_domain::documents::email::EmailSettings;
use billing_domain::documents::stored::StoredDocument;
use billing_domain::kernel::ids::TenantId;

use super::{to_item, DynamoStore, Item};
use crate::keys;

impl DynamoStore {
    /// Writes a settings item over version `version - 1` (creates it at version 1), with
    /// the change.
    async fn save_settings(
        &self,
        tenant: TenantId,
        item: Item,
        version: u64,
        entity: &'static str,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        if version <= 1 {
            tx.create(item, StoreError::VersionConflict { entity })?;
        } else {
            tx.replace_version(item, version - 1, entity)?;
        }
        tx.record(tenant, change)?;
        tx.commit().await
    }
}

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
        self.save_settings(tenant, item, branding.version, "branding", change)
            .await
    }
}

#[async_trait]
impl EmailSettingsStore for DynamoStore {
    async fn email_settings(&self, tenant: TenantId) -> Result<Option<EmailSettings>, StoreError> {
        self.get(&keys::email_settings(tenant)).await
    }

    async fn save_email_settings(
        &self,
        tenant: TenantId,
        settings: &EmailSettings,
        change: &Change,
    ) -> Result<(), StoreError> {
        let item = to_item("email_settings", settings, &keys::email_settings(tenant))?;
        self.save_settings(tenant, item, settings.version, "email settings", change)
            .await
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
