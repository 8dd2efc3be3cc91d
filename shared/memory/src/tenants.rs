use std::collections::BTreeMap;

use async_trait::async_trait;
use billing_domain::customers::access::ApiKey;
use billing_domain::customers::limits::{self, LimitSettings};
use billing_domain::customers::staff::{IdentityProvider, IssuerTrust};
use billing_domain::customers::tenant::Tenant;
use billing_domain::kernel::ids::{ApiKeyId, TenantId};

use jiff::Timestamp;

use crate::{paginate, MemoryStore};

#[derive(Default)]
pub(crate) struct LimitState {
    settings: BTreeMap<TenantId, LimitSettings>,
    /// Shared rate counts by tenant, subject and window start (never expired here: a test
    /// store lives shorter than the table's TTL would keep them).
    counts: BTreeMap<(TenantId, String, Timestamp), u32>,
}

/// Each tenant's identity provider; who trusts an issuer is found by scanning them.
#[derive(Default)]
pub(crate) struct IdentityState {
    trusts: BTreeMap<TenantId, IssuerTrust>,
}
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

    async fn roll_api_key(
        &self,
        retired: &ApiKey,
        successor: &ApiKey,
        retirement: &Change,
        creation: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        match s.api_keys.get(&(retired.tenant_id, retired.id)) {
            Some(stored) if stored.revoked_at.is_none() => {}
            _ => return Err(StoreError::VersionConflict { entity: "api_key" }),
        }
        if s.api_keys
            .contains_key(&(successor.tenant_id, successor.id))
        {
            return Err(StoreError::AlreadyExists { entity: "api_key" });
        }
        s.api_keys
            .insert((retired.tenant_id, retired.id), retired.clone());
        s.api_keys
            .insert((successor.tenant_id, successor.id), successor.clone());
        s.record(retired.tenant_id, retirement);
        s.record(successor.tenant_id, creation);
        Ok(())
    }

    async fn record_key_use(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        at: Timestamp,
        stale_since: Timestamp,
    ) -> Result<(), StoreError> {
        if let Some(key) = self.state().api_keys.get_mut(&(tenant, id)) {
            if key.last_used_at.is_none_or(|last| last <= stale_since) {
                key.last_used_at = Some(at);
            }
        }
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

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn claim_rate(
        &self,
        tenant: TenantId,
        subject: &str,
        window: (Timestamp, Timestamp),
        want: u32,
        limit: u32,
    ) -> Result<RateClaim, StoreError> {
        let mut s = self.state();
        let used = s
            .limits
            .counts
            .entry((tenant, subject.to_owned(), window.0))
            .or_insert(0);
        let granted = limits::grant(*used, want, limit);
        *used += granted;
        Ok(RateClaim {
            granted,
            used: *used,
        })
    }

    async fn limit_settings(&self, tenant: TenantId) -> Result<LimitSettings, StoreError> {
        Ok(self
            .state()
            .limits
            .settings
            .get(&tenant)
            .copied()
            .unwrap_or_default())
    }

    async fn set_limit_settings(
        &self,
        tenant: TenantId,
        settings: &LimitSettings,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.limits.settings.insert(tenant, *settings);
        s.record(tenant, change);
        Ok(())
    }
}

#[async_trait]
impl IdentityProviderStore for MemoryStore {
    async fn identity_provider(
        &self,
        tenant: TenantId,
    ) -> Result<Option<IdentityProvider>, StoreError> {
        Ok(self
            .state()
            .identity
            .trusts
            .get(&tenant)
            .map(|t| t.provider.clone()))
    }

    async fn set_identity_provider(
        &self,
        trust: &IssuerTrust,
        previous: Option<&IdentityProvider>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let stored = s.identity.trusts.get(&trust.tenant_id);
        if stored.map(|t| &t.provider.issuer) != previous.map(|p| &p.issuer) {
            return Err(StoreError::VersionConflict {
                entity: "identity_provider",
            });
        }
        s.identity.trusts.insert(trust.tenant_id, trust.clone());
        s.record(trust.tenant_id, change);
        Ok(())
    }

    async fn issuer_trusts(&self, issuer: &str) -> Result<Vec<IssuerTrust>, StoreError> {
        Ok(self
            .state()
            .identity
            .trusts
            .values()
            .filter(|t| t.provider.issuer == issuer)
            .cloned()
            .collect())
    }
}
