//! Persistence of the tenant's branding.

use async_trait::async_trait;
use billing_domain::documents::branding::Branding;
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
