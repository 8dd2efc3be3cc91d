use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::*;
use billing_domain::customers::account::Account;
use billing_domain::kernel::ids::{AccountId, TenantId};

use super::{claim_held_by, claim_item, from_item, to_item, DynamoStore, Item};
use crate::keys::{self, GSI1_PK};

#[async_trait]
impl AccountStore for DynamoStore {
    async fn insert_account(
        &self,
        tenant: TenantId,
        account: &Account,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            account_item(tenant, account)?,
            StoreError::AlreadyExists { entity: "account" },
        )?;
        if let Some(external_id) = &account.external_id {
            tx.create(
                claim_item(
                    &keys::account_external_id(tenant, external_id),
                    &account.id.to_string(),
                ),
                duplicate_external_id(),
            )?;
        }
        tx.record(tenant, change)?;
        tx.commit().await
    }

    async fn update_account(
        &self,
        tenant: TenantId,
        previous: &Account,
        next: &Account,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.replace_version(account_item(tenant, next)?, previous.version, "account")?;
        if previous.external_id != next.external_id {
            if let Some(new) = &next.external_id {
                tx.create(
                    claim_item(
                        &keys::account_external_id(tenant, new),
                        &next.id.to_string(),
                    ),
                    duplicate_external_id(),
                )?;
            }
            if let Some(old) = &previous.external_id {
                let (condition, values) = claim_held_by(&next.id.to_string());
                tx.delete(
                    &keys::account_external_id(tenant, old),
                    condition,
                    values,
                    StoreError::VersionConflict { entity: "account" },
                )?;
            }
        }
        tx.record(tenant, change)?;
        tx.commit().await
    }

    async fn get_account(
        &self,
        tenant: TenantId,
        id: AccountId,
    ) -> Result<Option<Account>, StoreError> {
        self.get(&keys::account(tenant, id, "")).await
    }

    async fn get_accounts(
        &self,
        tenant: TenantId,
        ids: &[AccountId],
    ) -> Result<Vec<Account>, StoreError> {
        let keys = ids
            .iter()
            .map(|id| keys::account(tenant, *id, "").primary())
            .collect();
        self.batch_get(keys, None)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn list_accounts(
        &self,
        tenant: TenantId,
        filter: &AccountFilter,
        page: &PageRequest,
    ) -> Result<Page<Account>, StoreError> {
        let cursor = page
            .starting_after
            .as_deref()
            .and_then(|id| AccountId::parse(id, "starting_after").ok());
        if let Some(external_id) = &filter.external_id {
            // At most one account has it: answer from the uniqueness claim.
            let owner = self
                .claim_owner(&keys::account_external_id(tenant, external_id))
                .await?;
            let owner = owner.and_then(|id| AccountId::parse(&id, "owner_id").ok());
            let account = match owner {
                Some(owner) if cursor.is_none() => self.get_account(tenant, owner).await?,
                _ => None,
            };
            return Ok(Page::new(
                account.into_iter().filter(|a| filter.admits(a)).collect(),
                false,
            ));
        }
        let admit = |a: &Account| filter.admits(a);
        let id_of = |a: &Account| a.id.to_string();
        match &filter.email {
            Some(email) => {
                let gsi1pk = keys::account_email_index(tenant, email);
                let start = cursor.map(|id| {
                    let mut start = keys::account(tenant, id, email).all();
                    start.insert(GSI1_PK.to_owned(), AttributeValue::S(gsi1pk.clone()));
                    start
                });
                self.scan_page(self.query_gsi1(gsi1pk.clone()), start, page, admit, id_of)
                    .await
            }
            None => {
                let start = cursor.map(|id| keys::account(tenant, id, "").primary());
                let query =
                    self.query_partition(keys::tenant_partition(tenant), keys::ACCOUNT_PREFIX);
                self.scan_page(query, start, page, admit, id_of).await
            }
        }
    }
}

/// An account as stored (by every write of one): in the due index (on its test clock, if
/// any) while its purge is pending.
pub(super) fn account_item(tenant: TenantId, account: &Account) -> Result<Item, StoreError> {
    let key = keys::account(tenant, account.id, &account.email);
    let mut item = to_item("account", account, &key)?;
    if let Some(at) = account.purge_due() {
        item.extend(match account.test_clock {
            Some(clock) => keys::due_on_clock(clock, &key, at),
            None => keys::due(&key, at),
        });
    }
    Ok(item)
}

fn duplicate_external_id() -> StoreError {
    StoreError::Duplicate {
        entity: "account",
        field: "external_id",
    }
}
