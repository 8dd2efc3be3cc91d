use async_trait::async_trait;
use billing_domain::customers::access::ApiKey;
use billing_domain::customers::tenant::Tenant;
use billing_domain::kernel::ids::{ApiKeyId, TenantId};

use crate::{paginate, MemoryStore};
use billing_app::ports::*;

#[async_trait]
impl TenantStore for MemoryStore {
    async fn create_tenant(&self, tenant: &Tenant, first_key: &ApiKey) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.tenants.contains_key(&tenant.id) {
            return Err(StoreError::AlreadyExists { entity: "tenant" });
        }
        s.tenants.insert(tenant.id, tenant.clone());
        s.api_keys
            .insert((tenant.id, first_key.id), first_key.clone());
        Ok(())
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        Ok(self.state().tenants.get(&id).cloned())
    }
}

#[async_trait]
impl ApiKeyStore for MemoryStore {
    async fn get_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
    ) -> Result<Option<ApiKey>, StoreError> {
        Ok(self.state().api_keys.get(&(tenant, id)).cloned())
    }

    async fn insert_api_key(&self, key: &ApiKey, change: &Change) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.api_keys.contains_key(&(key.tenant_id, key.id)) {
            return Err(StoreError::AlreadyExists { entity: "api_key" });
        }
        s.api_keys.insert((key.tenant_id, key.id), key.clone());
        s.record(key.tenant_id, change);
        Ok(())
    }

    async fn revoke_api_key(&self, key: &ApiKey, change: &Change) -> Result<(), StoreError> {
        let mut s = self.state();
        match s.api_keys.get(&(key.tenant_id, key.id)) {
            Some(stored) if stored.revoked_at.is_none() => {}
            _ => return Err(StoreError::VersionConflict { entity: "api_key" }),
        }
        s.api_keys.insert((key.tenant_id, key.id), key.clone());
        s.record(key.tenant_id, change);
        Ok(())
    }

    async fn list_api_keys(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>, StoreError> {
        let s = self.state();
        let items = s
            .api_keys
            .range((tenant, ApiKeyId::from_ulid(ulid::Ulid::nil()))..)
            .take_while(|((t, _), _)| *t == tenant)
            .map(|((_, id), k)| (id.to_string(), k.clone()));
        Ok(paginate(items, page, |_| true))
    }
}
