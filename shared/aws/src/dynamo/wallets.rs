//! Prepaid wallets: the wallet item in the tenant's partition (listed under its account
//! by GSI1, in the due index at its next job) and its transactions in its shard. Every
//! write of a wallet is conditioned on its version, so its transactions have one writer.

use async_trait::async_trait;
use billing_app::ports::*;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{AccountId, TenantId, WalletId, WalletTransactionId};
use billing_domain::wallets::wallet::{Wallet, WalletChange, WalletStatus, WalletTransaction};

use super::{from_item, to_item, DynamoStore, Transaction};
use crate::keys;

const WALLET: &str = "wallet";

impl Transaction<'_> {
    /// A wallet change: the wallet over its previous version (created at 0), its
    /// transactions as they become (a pending purchase is rewritten once, settled).
    pub(super) fn wallet(
        &mut self,
        tenant: TenantId,
        change: &WalletChange,
    ) -> Result<&mut Self, StoreError> {
        let w = &change.wallet;
        let key = keys::wallet(tenant, w.id, w.account_id);
        let mut item = to_item(WALLET, w, &key)?;
        if let Some(at) = w.next_due() {
            item.extend(match w.test_clock {
                Some(clock) => keys::due_on_clock(clock, &key, at),
                None => keys::due(&key, at),
            });
        }
        if change.previous_version == 0 {
            self.create(item, StoreError::VersionConflict { entity: WALLET })?;
            let holder = keys::wallet_holder(tenant, w.account_id, w.currency.code());
            self.upsert(to_item(
                "wallet_holder",
                &Holder {
                    account_id: w.account_id,
                    currency: w.currency,
                },
                &holder,
            )?)?;
        } else {
            self.replace_version(item, change.previous_version, WALLET)?;
        }
        for tx in &change.transactions {
            self.upsert(to_item(
                "wallet_transaction",
                tx,
                &keys::wallet_transaction(tenant, tx.wallet_id, tx.id),
            )?)?;
        }
        Ok(self)
    }

    /// Wallet changes with their record (nothing when `None`).
    pub(super) fn wallets(
        &mut self,
        tenant: TenantId,
        settlement: Option<&WalletSettlement>,
    ) -> Result<&mut Self, StoreError> {
        if let Some(settlement) = settlement {
            for change in &settlement.changes {
                self.wallet(tenant, change)?;
            }
            self.record(tenant, &settlement.record)?;
        }
        Ok(self)
    }
}

/// The item saying an account has a wallet in a currency.
#[derive(serde::Serialize, serde::Deserialize)]
struct Holder {
    account_id: AccountId,
    currency: Currency,
}

fn nil_account() -> AccountId {
    AccountId::from_ulid(ulid::Ulid::nil())
}

#[async_trait]
impl WalletStore for DynamoStore {
    async fn get_wallet(
        &self,
        tenant: TenantId,
        id: WalletId,
    ) -> Result<Option<Wallet>, StoreError> {
        self.get(&keys::wallet(tenant, id, nil_account())).await
    }

    async fn list_wallets(
        &self,
        tenant: TenantId,
        account: AccountId,
        page: &PageRequest,
    ) -> Result<Page<Wallet>, StoreError> {
        let start = page
            .starting_after
            .as_deref()
            .and_then(|id| WalletId::parse(id, "starting_after").ok())
            .map(|id| keys::wallet(tenant, id, account).all());
        let query = self
            .query_gsi1(keys::account_wallets_index(tenant, account))
            .scan_index_forward(false);
        self.scan_page(query, start, page, |_: &Wallet| true, |w| w.id.to_string())
            .await
    }

    async fn active_wallets(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Vec<Wallet>, StoreError> {
        // The index names them (it may lag); each is then read as stored now.
        let listed: Vec<Wallet> = self
            .query_all(self.query_gsi1(keys::account_wallets_index(tenant, account)))
            .await?
            .into_iter()
            .map(from_item)
            .collect::<Result<_, _>>()?;
        let keys = listed
            .iter()
            .filter(|w| w.status == WalletStatus::Active)
            .map(|w| keys::wallet(tenant, w.id, account).primary())
            .collect::<Vec<_>>();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut wallets: Vec<Wallet> = self
            .batch_get(keys, None)
            .await?
            .into_iter()
            .map(from_item)
            .collect::<Result<_, _>>()?;
        wallets.retain(|w| w.status == WalletStatus::Active);
        wallets.sort_by_key(|w| w.id);
        Ok(wallets)
    }

    async fn wallet_holders(
        &self,
        tenant: TenantId,
        wanted: &[(AccountId, Currency)],
    ) -> Result<Vec<(AccountId, Currency)>, StoreError> {
        let mut pairs: Vec<(AccountId, &'static str)> =
            wanted.iter().map(|(a, c)| (*a, c.code())).collect();
        pairs.sort();
        pairs.dedup();
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = pairs
            .into_iter()
            .map(|(a, c)| keys::wallet_holder(tenant, a, c).primary())
            .collect();
        self.batch_get(keys, None)
            .await?
            .into_iter()
            .map(|item| from_item::<Holder>(item).map(|h| (h.account_id, h.currency)))
            .collect()
    }

    async fn list_wallet_transactions(
        &self,
        tenant: TenantId,
        wallet: WalletId,
        page: &PageRequest,
    ) -> Result<Page<WalletTransaction>, StoreError> {
        let start = page
            .starting_after
            .as_deref()
            .and_then(|id| WalletTransactionId::parse(id, "starting_after").ok())
            .map(|id| keys::wallet_transaction(tenant, wallet, id).primary());
        let key = keys::wallet_transaction(
            tenant,
            wallet,
            WalletTransactionId::from_ulid(ulid::Ulid::nil()),
        );
        let query = self
            .query_partition(key.pk, &keys::wallet_transactions_of(wallet))
            .scan_index_forward(false);
        self.scan_page(
            query,
            start,
            page,
            |_: &WalletTransaction| true,
            |t| t.id.to_string(),
        )
        .await
    }

    async fn save_wallet(
        &self,
        tenant: TenantId,
        change: &WalletChange,
        record: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.wallet(tenant, change)?.record(tenant, record)?;
        tx.commit().await
    }
}
