//! Branding: one item per tenant, version-checked.

use async_trait::async_trait;
use billing_app::ports::*;
use billing_domain::documents::branding::Branding;
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
