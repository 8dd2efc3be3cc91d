//! Balances: one item per account and currency (naming its open grants, in the due index
//! at its next expiry), the grants, and the ledger entries, each its own item. Every write of a balance is conditioned on its
//! version, so its grants (written whole) and entries (created) have one writer at a time.

use async_trait::async_trait;
use billing_app::ports::*;
use billing_domain::credits::balance::{Balance, BalanceChange, BalanceTransaction, CreditGrant};
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{AccountId, BalanceTransactionId, CreditGrantId, TenantId};

use serde::de::DeserializeOwned;

use super::{from_item, to_item, DynamoStore, Item, Transaction};
use crate::keys;

const BALANCE: &str = "balance";

impl Transaction<'_> {
    /// A balance change: the balance over its previous version (created at 0), its grants
    /// as they become, its entries created.
    pub(super) fn balance(
        &mut self,
        tenant: TenantId,
        change: &BalanceChange,
    ) -> Result<&mut Self, StoreError> {
        let b = &change.balance;
        let key = keys::balance(tenant, b.account_id, b.currency.code());
        let mut item = to_item(BALANCE, b, &key)?;
        // Its next expiry waits in the due index (the sweep's credit-expiry job).
        if let Some(at) = b.next_expiry {
            item.extend(match b.test_clock {
                Some(clock) => keys::due_on_clock(clock, &key, at),
                None => keys::due(&key, at),
            });
        }
        if change.previous_version == 0 {
            self.create(item, StoreError::VersionConflict { entity: BALANCE })?;
        } else {
            self.replace_version(item, change.previous_version, BALANCE)?;
        }
        for grant in &change.grants {
            self.upsert(to_item(
                "credit_grant",
                grant,
                &keys::credit_grant(tenant, grant.account_id, grant.id),
            )?)?;
        }
        for entry in &change.entries {
            self.create(
                to_item(
                    "balance_transaction",
                    entry,
                    &keys::balance_transaction(tenant, entry.account_id, entry.id),
                )?,
                StoreError::Internal("ledger entry id reused".into()),
            )?;
        }
        Ok(self)
    }
}

impl DynamoStore {
    /// One page of an account's items under a sort-key prefix (in its shard partition),
    /// newest first, resuming after the `range`'s start key.
    async fn newest_first<T: DeserializeOwned + Send>(
        &self,
        tenant: TenantId,
        account: AccountId,
        (prefix, start): (String, Option<Item>),
        page: &PageRequest,
        admit: impl Fn(&T) -> bool + Sync,
        cursor: impl Fn(&T) -> String + Sync,
    ) -> Result<Page<T>, StoreError> {
        let query = self
            .query_partition(keys::account_partition(tenant, account), &prefix)
            .scan_index_forward(false);
        self.scan_page(query, start, page, admit, cursor).await
    }
}

#[async_trait]
impl CreditStore for DynamoStore {
    async fn get_balance(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Currency,
    ) -> Result<Option<Balance>, StoreError> {
        self.get(&keys::balance(tenant, account, currency.code()))
            .await
    }

    async fn get_balances(
        &self,
        tenant: TenantId,
        wanted: &[(AccountId, Currency)],
    ) -> Result<Vec<Balance>, StoreError> {
        let mut sks: Vec<(AccountId, &'static str)> =
            wanted.iter().map(|(a, c)| (*a, c.code())).collect();
        sks.sort();
        sks.dedup();
        let keys = sks
            .into_iter()
            .map(|(a, c)| keys::balance(tenant, a, c).primary())
            .collect();
        self.batch_get(keys, None)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn list_balances(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Vec<Balance>, StoreError> {
        let query = self.query_partition(
            keys::account_partition(tenant, account),
            &keys::balances_of(account),
        );
        self.query_all(query)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn get_grants(
        &self,
        tenant: TenantId,
        account: AccountId,
        ids: &[CreditGrantId],
    ) -> Result<Vec<CreditGrant>, StoreError> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let keys = ids
            .into_iter()
            .map(|id| keys::credit_grant(tenant, account, id).primary())
            .collect();
        self.batch_get(keys, None)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn list_grants(
        &self,
        tenant: TenantId,
        account: AccountId,
        page: &PageRequest,
    ) -> Result<Page<CreditGrant>, StoreError> {
        let start = page
            .starting_after
            .as_deref()
            .and_then(|id| CreditGrantId::parse(id, "starting_after").ok())
            .map(|id| keys::credit_grant(tenant, account, id).primary());
        let range = (keys::credit_grants_of(account), start);
        self.newest_first(
            tenant,
            account,
            range,
            page,
            |_: &CreditGrant| true,
            |g| g.id.to_string(),
        )
        .await
    }

    async fn list_balance_transactions(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Option<Currency>,
        page: &PageRequest,
    ) -> Result<Page<BalanceTransaction>, StoreError> {
        let start = page
            .starting_after
            .as_deref()
            .and_then(|id| BalanceTransactionId::parse(id, "starting_after").ok())
            .map(|id| keys::balance_transaction(tenant, account, id).primary());
        let range = (keys::balance_transactions_of(account), start);
        self.newest_first(
            tenant,
            account,
            range,
            page,
            |e: &BalanceTransaction| currency.is_none_or(|c| e.currency == c),
            |e| e.id.to_string(),
        )
        .await
    }

    async fn save_balance(
        &self,
        tenant: TenantId,
        change: &BalanceChange,
        record: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.balance(tenant, change)?.record(tenant, record)?;
        tx.commit().await
    }
}
