//! Dunning: the tenant's policy, each account's case (in the due index at its next step,
//! on the account's test clock if it has one) and the notices waiting to be confirmed sent
//! (in the due index at the end of their sender's claim; an event's email at once).

use std::collections::HashMap;

use async_trait::async_trait;
use billing_app::ports::*;
use billing_domain::collection::dunning::{DunningCase, DunningPolicy};
use billing_domain::kernel::ids::{AccountId, TenantId};

use super::{sdk_error, to_item, DynamoStore, Item};
use crate::keys;

const CASE: &str = "dunning case";
const NOTICE: &str = "dunning notice";

fn case_item(tenant: TenantId, case: &DunningCase) -> Result<Item, StoreError> {
    let key = keys::dunning_case(tenant, case.account_id);
    let mut item = to_item("dunning_case", case, &key)?;
    if let Some(at) = case.next_step_at {
        item.extend(match case.test_clock {
            Some(clock) => keys::due_on_clock(clock, &key, at),
            None => keys::due(&key, at),
        });
    }
    Ok(item)
}

pub(super) fn notice_item(tenant: TenantId, notice: &PendingNotice) -> Result<Item, StoreError> {
    let key = keys::dunning_notice(tenant, notice.account_id, &notice.key);
    let mut item = to_item("dunning_notice", notice, &key)?;
    item.extend(keys::due(&key, notice.retry_at));
    Ok(item)
}

#[async_trait]
impl DunningStore for DynamoStore {
    async fn get_dunning_policy(
        &self,
        tenant: TenantId,
    ) -> Result<Option<DunningPolicy>, StoreError> {
        self.get(&keys::dunning_policy(tenant)).await
    }

    async fn set_dunning_policy(
        &self,
        tenant: TenantId,
        policy: &DunningPolicy,
        change: &Change,
    ) -> Result<(), StoreError> {
        let unstorable =
            |e: serde_dynamo::Error| StoreError::Internal(format!("unstorable policy: {e}"));
        let steps = serde_dynamo::to_attribute_value(&policy.steps).map_err(unstorable)?;
        let on_block = serde_dynamo::to_attribute_value(policy.on_block).map_err(unstorable)?;
        let mut tx = self.transaction();
        tx.update(
            &keys::dunning_policy(tenant),
            "SET steps = :steps, on_block = :on_block",
            None,
            HashMap::from([
                (":steps".to_owned(), steps),
                (":on_block".to_owned(), on_block),
            ]),
            StoreError::Internal("an unconditional update failed its condition".into()),
        )?
        .record(tenant, change)?;
        tx.commit().await
    }

    async fn get_dunning_case(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<DunningCase>, StoreError> {
        self.get(&keys::dunning_case(tenant, account)).await
    }

    async fn save_dunning_case(
        &self,
        tenant: TenantId,
        previous: Option<&DunningCase>,
        next: &DunningCase,
        account: Option<AccountStatusWrite<'_>>,
        notice: Option<&PendingNotice>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        let item = case_item(tenant, next)?;
        match previous {
            None => tx.create(item, StoreError::AlreadyExists { entity: CASE })?,
            Some(previous) => tx.replace_version(item, previous.version, CASE)?,
        };
        if let Some(write) = account {
            tx.replace_version(
                super::accounts::account_item(tenant, write.next)?,
                write.previous.version,
                "account",
            )?;
        }
        if let Some(notice) = notice {
            tx.create(
                notice_item(tenant, notice)?,
                StoreError::AlreadyExists { entity: NOTICE },
            )?;
        }
        tx.record(tenant, change)?;
        tx.commit().await
    }

    async fn get_dunning_notice(
        &self,
        tenant: TenantId,
        account: AccountId,
        key: &str,
    ) -> Result<Option<PendingNotice>, StoreError> {
        self.get(&keys::dunning_notice(tenant, account, key)).await
    }

    async fn claim_dunning_notice(
        &self,
        tenant: TenantId,
        previous: &PendingNotice,
        next: &PendingNotice,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.replace_version(notice_item(tenant, next)?, previous.version, NOTICE)?;
        tx.commit().await
    }

    async fn delete_dunning_notice(
        &self,
        tenant: TenantId,
        account: AccountId,
        key: &str,
    ) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(keys::dunning_notice(tenant, account, key).primary()))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}
