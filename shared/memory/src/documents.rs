//! Branding and email settings.

use std::collections::BTreeMap;

use async_trait::async_trait;
use billing_domain::documents::branding::Branding;
use billing_domain::documents::email::EmailSettings;
use billing_domain::kernel::ids::TenantId;

use crate::MemoryStore;
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct DocumentState {
    branding: BTreeMap<TenantId, Branding>,
    emails: BTreeMap<TenantId, EmailSettings>,
}

#[async_trait]
impl BrandingStore for MemoryStore {
    async fn branding(&self, tenant: TenantId) -> Result<Option<Branding>, StoreError> {
        Ok(self.state().documents.branding.get(&tenant).cloned())
    }

    async fn save_branding(
        &self,
        tenant: TenantId,
        branding: &Branding,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let stored = s.documents.branding.get(&tenant).map_or(0, |b| b.version);
        if stored + 1 != branding.version {
            return Err(StoreError::VersionConflict { entity: "branding" });
        }
        s.documents.branding.insert(tenant, branding.clone());
        s.record(tenant, change);
        Ok(())
    }
}

#[async_trait]
impl EmailSettingsStore for MemoryStore {
    async fn email_settings(&self, tenant: TenantId) -> Result<Option<EmailSettings>, StoreError> {
        Ok(self.state().documents.emails.get(&tenant).cloned())
    }

    async fn save_email_settings(
        &self,
        tenant: TenantId,
        settings: &EmailSettings,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let stored = s.documents.emails.get(&tenant).map_or(0, |e| e.version);
        if stored + 1 != settings.version {
            return Err(StoreError::VersionConflict {
                entity: "email settings",
            });
        }
        s.documents.emails.insert(tenant, settings.clone());
        s.record(tenant, change);
        Ok(())
    }
}
