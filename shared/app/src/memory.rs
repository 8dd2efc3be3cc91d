//! An in-memory store with the same conditional semantics as the DynamoDB adapter, for
//! fast use-case tests and in-process benchmarks. The store contract suite runs against
//! both, so it cannot drift from the real one.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use billing_domain::access::ApiKey;
use billing_domain::account::Account;
use billing_domain::event::{AuditRecord, DomainEvent};
use billing_domain::ids::{AccountId, ApiKeyId, TenantId};
use billing_domain::tenant::Tenant;
use jiff::Timestamp;

use crate::ports::*;

#[derive(Default)]
struct State {
    tenants: BTreeMap<TenantId, Tenant>,
    api_keys: BTreeMap<(TenantId, ApiKeyId), ApiKey>,
    accounts: BTreeMap<(TenantId, AccountId), Account>,
    external_ids: BTreeMap<(TenantId, String), AccountId>,
    audit: BTreeMap<(TenantId, String), AuditRecord>,
    events: BTreeMap<(TenantId, String), DomainEvent>,
    idempotency: BTreeMap<(TenantId, String), Idempotency>,
}

struct Idempotency {
    fingerprint: String,
    response: Option<StoredResponse>,
    expires_at: Timestamp,
}

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn record(&mut self, tenant: TenantId, change: &Change) {
        self.audit
            .insert((tenant, change.audit.id.to_string()), change.audit.clone());
        for event in &change.events {
            self.events
                .insert((tenant, event.id.to_string()), event.clone());
        }
    }
}

/// One page of `items` (already in order) after the `starting_after` id.
fn paginate<T: Clone>(items: impl Iterator<Item = (String, T)>, page: &PageRequest) -> Page<T> {
    let mut after = page.starting_after.is_none();
    let mut taken: Vec<T> = Vec::with_capacity(page.limit + 1);
    for (id, item) in items {
        if !after {
            after = page.starting_after.as_deref() == Some(id.as_str());
            continue;
        }
        taken.push(item);
        if taken.len() > page.limit {
            break;
        }
    }
    let has_more = taken.len() > page.limit;
    taken.truncate(page.limit);
    Page {
        items: taken,
        has_more,
    }
}

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
        Ok(paginate(items, page))
    }
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn insert_account(
        &self,
        tenant: TenantId,
        account: &Account,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.accounts.contains_key(&(tenant, account.id)) {
            return Err(StoreError::AlreadyExists { entity: "account" });
        }
        if let Some(x) = &account.external_id {
            if s.external_ids.contains_key(&(tenant, x.clone())) {
                return Err(StoreError::Duplicate {
                    entity: "account",
                    field: "external_id",
                });
            }
            s.external_ids.insert((tenant, x.clone()), account.id);
        }
        s.accounts.insert((tenant, account.id), account.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn update_account(
        &self,
        tenant: TenantId,
        previous: &Account,
        next: &Account,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.accounts.get(&(tenant, next.id)).map(|a| a.version) != Some(previous.version) {
            return Err(StoreError::VersionConflict { entity: "account" });
        }
        if previous.external_id != next.external_id {
            if let Some(x) = &next.external_id {
                if s.external_ids.contains_key(&(tenant, x.clone())) {
                    return Err(StoreError::Duplicate {
                        entity: "account",
                        field: "external_id",
                    });
                }
                s.external_ids.insert((tenant, x.clone()), next.id);
            }
            if let Some(old) = &previous.external_id {
                s.external_ids.remove(&(tenant, old.clone()));
            }
        }
        s.accounts.insert((tenant, next.id), next.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn get_account(
        &self,
        tenant: TenantId,
        id: AccountId,
    ) -> Result<Option<Account>, StoreError> {
        Ok(self.state().accounts.get(&(tenant, id)).cloned())
    }

    async fn list_accounts(
        &self,
        tenant: TenantId,
        filter: &AccountFilter,
        page: &PageRequest,
    ) -> Result<Page<Account>, StoreError> {
        let s = self.state();
        let items = s
            .accounts
            .range((tenant, AccountId::from_ulid(ulid::Ulid::nil()))..)
            .take_while(|((t, _), _)| *t == tenant)
            .map(|((_, id), a)| (id.to_string(), a))
            // The cursor item itself must stay visible so the page can start after it.
            .filter(|(id, a)| filter.admits(a) || page.starting_after.as_deref() == Some(id))
            .map(|(id, a)| (id, a.clone()));
        Ok(paginate(items, page))
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn list_audit(
        &self,
        tenant: TenantId,
        entity_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let s = self.state();
        let items = s
            .audit
            .iter()
            .rev()
            .filter(|((t, _), r)| *t == tenant && entity_id.is_none_or(|e| r.entity_id == e))
            .map(|((_, id), r)| (id.clone(), r.clone()));
        Ok(paginate(items, page))
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn list_events(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<DomainEvent>, StoreError> {
        let s = self.state();
        let items = s
            .events
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|((_, id), e)| (id.clone(), e.clone()));
        Ok(paginate(items, page))
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        fingerprint: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut s = self.state();
        let slot = (tenant, key.to_owned());
        if let Some(existing) = s.idempotency.get(&slot).filter(|e| e.expires_at > now) {
            return Ok(if existing.fingerprint != fingerprint {
                IdempotencyClaim::Mismatch
            } else if let Some(response) = &existing.response {
                IdempotencyClaim::Replay(response.clone())
            } else {
                IdempotencyClaim::InProgress
            });
        }
        s.idempotency.insert(
            slot,
            Idempotency {
                fingerprint: fingerprint.to_owned(),
                response: None,
                expires_at,
            },
        );
        Ok(IdempotencyClaim::Claimed)
    }

    async fn complete_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        if let Some(entry) = self.state().idempotency.get_mut(&(tenant, key.to_owned())) {
            entry.response = Some(response.clone());
        }
        Ok(())
    }

    async fn release_idempotency_key(&self, tenant: TenantId, key: &str) -> Result<(), StoreError> {
        self.state().idempotency.remove(&(tenant, key.to_owned()));
        Ok(())
    }
}

#[async_trait]
impl HealthProbe for MemoryStore {
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
