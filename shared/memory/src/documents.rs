//! Branding and email settings, document records, and an object store in memory.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use billing_domain::documents::branding::Branding;
use billing_domain::documents::email::EmailSettings;
use billing_domain::documents::stored::StoredDocument;
use billing_domain::kernel::ids::TenantId;

use crate::MemoryStore;
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct DocumentState {
    branding: BTreeMap<TenantId, Branding>,
    emails: BTreeMap<TenantId, EmailSettings>,
    records: BTreeMap<(TenantId, String), StoredDocument>,
}

#[async_trait]
impl DocumentStore for MemoryStore {
    async fn document(
        &self,
        tenant: TenantId,
        of: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        Ok(self
            .state()
            .documents
            .records
            .get(&(tenant, of.to_owned()))
            .cloned())
    }

    async fn record_document(
        &self,
        tenant: TenantId,
        document: &StoredDocument,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let key = (tenant, document.of.clone());
        if s.documents.records.contains_key(&key) {
            return Err(StoreError::AlreadyExists { entity: "document" });
        }
        s.documents.records.insert(key, document.clone());
        Ok(())
    }
}

/// Objects in memory, with a count of the writes (tests check that a render twice writes
/// one object).
#[derive(Default)]
pub struct MemoryObjects {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryObjects {
    /// The keys held, in order.
    pub fn keys(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl ObjectStore for MemoryObjects {
    async fn put(&self, key: &str, bytes: Vec<u8>, _content_type: &str) -> Result<(), StoreError> {
        self.lock().insert(key.to_owned(), bytes);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(key).cloned())
    }

    async fn download_link(
        &self,
        _key: &str,
        _file_name: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
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
