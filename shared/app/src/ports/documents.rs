//! Persistence of the tenant's branding and email settings.

use async_trait::async_trait;
use billing_domain::documents::branding::Branding;
use billing_domain::documents::email::EmailSettings;
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
