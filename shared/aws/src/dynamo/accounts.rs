use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::*;
use billing_domain::account::Account;
use billing_domain::ids::{AccountId, TenantId};

use super::{to_item, DynamoStore, Item, ENTITY_ATTRIBUTE};
use crate::keys::{self, Key, GSI1_PK};

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
            to_item(
                "account",
                account,
                &keys::account(tenant, account.id, &account.email),
            )?,
            StoreError::AlreadyExists { entity: "account" },
        )?;
        if let Some(external_id) = &account.external_id {
            tx.create(
                claim_item(&keys::account_external_id(tenant, external_id), account.id),
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
        tx.replace_version(
            to_item(
                "account",
                next,
                &keys::account(tenant, next.id, &next.email),
            )?,
            previous.version,
            "account",
        )?;
        if previous.external_id != next.external_id {
            if let Some(new) = &next.external_id {
                tx.create(
                    claim_item(&keys::account_external_id(tenant, new), next.id),
                    duplicate_external_id(),
                )?;
            }
            if let Some(old) = &previous.external_id {
                tx.delete(
                    &keys::account_external_id(tenant, old),
                    "account_id = :id",
                    HashMap::from([(":id".to_owned(), AttributeValue::S(next.id.to_string()))]),
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
            let claim: Option<Claim> = self
                .get(&keys::account_external_id(tenant, external_id))
                .await?;
            let account = match claim {
                Some(claim) if cursor.is_none() => {
                    self.get_account(tenant, claim.account_id).await?
                }
                _ => None,
            };
            return Ok(Page {
                items: account.into_iter().filter(|a| filter.admits(a)).collect(),
                has_more: false,
            });
        }
        let admit = |a: &Account| filter.admits(a);
        match &filter.email {
            Some(email) => {
                let gsi1pk = keys::account_email_index(tenant, email);
                let start = cursor.map(|id| {
                    let mut start = keys::account(tenant, id, email).all();
                    start.insert(GSI1_PK.to_owned(), AttributeValue::S(gsi1pk.clone()));
                    start
                });
                self.query_page(self.query_gsi1(gsi1pk.clone()), start, page.limit, admit)
                    .await
            }
            None => {
                let start = cursor.map(|id| keys::account(tenant, id, "").primary());
                let query =
                    self.query_partition(keys::tenant_partition(tenant), keys::ACCOUNT_PREFIX);
                self.query_page(query, start, page.limit, admit).await
            }
        }
    }
}

/// A uniqueness claim: the item that owns a unique value.
#[derive(serde::Deserialize)]
struct Claim {
    account_id: AccountId,
}

fn claim_item(key: &Key, owner: AccountId) -> Item {
    let mut item = key.all();
    item.insert(
        "account_id".to_owned(),
        AttributeValue::S(owner.to_string()),
    );
    item.insert(
        ENTITY_ATTRIBUTE.to_owned(),
        AttributeValue::S("unique_claim".into()),
    );
    item
}

fn duplicate_external_id() -> StoreError {
    StoreError::Duplicate {
        entity: "account",
        field: "external_id",
    }
}
