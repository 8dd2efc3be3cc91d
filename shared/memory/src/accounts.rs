use async_trait::async_trait;
use billing_domain::customers::account::Account;
use billing_domain::kernel::ids::{AccountId, TenantId};

use crate::{paginate, MemoryStore};
use billing_app::ports::*;

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

    async fn get_accounts(
        &self,
        tenant: TenantId,
        ids: &[AccountId],
    ) -> Result<Vec<Account>, StoreError> {
        let s = self.state();
        Ok(ids
            .iter()
            .filter_map(|id| s.accounts.get(&(tenant, *id)).cloned())
            .collect())
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
            // Email and external id are served by an index and a claim; the rest is examined.
            .filter(|(_, a)| {
                filter
                    .email
                    .as_deref()
                    .is_none_or(|e| a.email.eq_ignore_ascii_case(e))
                    && filter
                        .external_id
                        .as_deref()
                        .is_none_or(|x| a.external_id.as_deref() == Some(x))
            })
            .map(|((_, id), a)| (id.to_string(), a.clone()));
        Ok(paginate(items, page, |a| filter.admits(a)))
    }
}
