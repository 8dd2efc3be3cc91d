use std::collections::BTreeMap;

use async_trait::async_trait;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{
    AccountId, TenantId, TestClockId, WalletId, WalletTransactionId,
};
use billing_domain::wallets::wallet::{Wallet, WalletChange, WalletStatus, WalletTransaction};
use jiff::Timestamp;
use ulid::Ulid;

use crate::{paginate, MemoryStore, State};
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct WalletState {
    wallets: BTreeMap<(TenantId, WalletId), Wallet>,
    transactions: BTreeMap<(TenantId, WalletId, WalletTransactionId), WalletTransaction>,
}

impl State {
    /// Checks wallet changes' conditions (each wallet's version) without writing.
    pub(crate) fn check_wallets(
        &self,
        tenant: TenantId,
        settlement: Option<&WalletSettlement>,
    ) -> Result<(), StoreError> {
        for change in settlement.map_or(&[][..], |s| &s.changes[..]) {
            let stored = self
                .wallets
                .wallets
                .get(&(tenant, change.wallet.id))
                .map_or(0, |w| w.version);
            if stored != change.previous_version {
                return Err(StoreError::VersionConflict { entity: "wallet" });
            }
        }
        Ok(())
    }

    pub(crate) fn write_wallets(
        &mut self,
        tenant: TenantId,
        settlement: Option<&WalletSettlement>,
    ) {
        if let Some(settlement) = settlement {
            for change in &settlement.changes {
                self.write_wallet(tenant, change);
            }
            self.record(tenant, &settlement.record);
        }
    }

    fn write_wallet(&mut self, tenant: TenantId, change: &WalletChange) {
        let w = &change.wallet;
        self.wallets.wallets.insert((tenant, w.id), w.clone());
        for tx in &change.transactions {
            self.wallets
                .transactions
                .insert((tenant, w.id, tx.id), tx.clone());
        }
    }

    /// Wallets whose next job is due at or before `up_to`, on the clocks `on` admits: the
    /// entries the DynamoDB store keeps in the due index.
    pub(crate) fn due_wallets(
        &self,
        up_to: Timestamp,
        on: impl Fn(TenantId, Option<TestClockId>) -> bool,
    ) -> Vec<DueItem> {
        self.wallets
            .wallets
            .iter()
            .filter(|((tenant, _), w)| on(*tenant, w.test_clock))
            .filter_map(|((tenant, id), w)| {
                w.next_due()
                    .filter(|at| *at <= up_to)
                    .map(|due_at| DueItem {
                        tenant_id: *tenant,
                        due_at,
                        kind: DueKind::Billing(BillingJob::Wallet {
                            tenant: *tenant,
                            wallet: *id,
                        }),
                    })
            })
            .collect()
    }
}

#[async_trait]
impl WalletStore for MemoryStore {
    async fn get_wallet(
        &self,
        tenant: TenantId,
        id: WalletId,
    ) -> Result<Option<Wallet>, StoreError> {
        Ok(self.state().wallets.wallets.get(&(tenant, id)).cloned())
    }

    async fn list_wallets(
        &self,
        tenant: TenantId,
        account: AccountId,
        page: &PageRequest,
    ) -> Result<Page<Wallet>, StoreError> {
        let s = self.state();
        let items = s
            .wallets
            .wallets
            .range(
                (tenant, WalletId::from_ulid(Ulid::nil()))
                    ..=(tenant, WalletId::from_ulid(Ulid(u128::MAX))),
            )
            .rev()
            .map(|((_, id), w)| (id.to_string(), w.clone()));
        Ok(paginate(items, page, |w| w.account_id == account))
    }

    async fn active_wallets(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Vec<Wallet>, StoreError> {
        let s = self.state();
        Ok(s.wallets
            .wallets
            .range(
                (tenant, WalletId::from_ulid(Ulid::nil()))
                    ..=(tenant, WalletId::from_ulid(Ulid(u128::MAX))),
            )
            .map(|(_, w)| w)
            .filter(|w| w.account_id == account && w.status == WalletStatus::Active)
            .cloned()
            .collect())
    }

    async fn wallet_holders(
        &self,
        tenant: TenantId,
        wanted: &[(AccountId, Currency)],
    ) -> Result<Vec<(AccountId, Currency)>, StoreError> {
        let s = self.state();
        let mut found: Vec<(AccountId, Currency)> = Vec::new();
        for w in s
            .wallets
            .wallets
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|(_, w)| w)
        {
            let pair = (w.account_id, w.currency);
            if wanted.contains(&pair) && !found.contains(&pair) {
                found.push(pair);
            }
        }
        Ok(found)
    }

    async fn list_wallet_transactions(
        &self,
        tenant: TenantId,
        wallet: WalletId,
        page: &PageRequest,
    ) -> Result<Page<WalletTransaction>, StoreError> {
        let s = self.state();
        let items = s
            .wallets
            .transactions
            .range(
                (tenant, wallet, WalletTransactionId::from_ulid(Ulid::nil()))
                    ..=(
                        tenant,
                        wallet,
                        WalletTransactionId::from_ulid(Ulid(u128::MAX)),
                    ),
            )
            .rev()
            .map(|((_, _, id), t)| (id.to_string(), t.clone()));
        Ok(paginate(items, page, |_| true))
    }

    async fn save_wallet(
        &self,
        tenant: TenantId,
        change: &WalletChange,
        record: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let settlement = WalletSettlement {
            changes: vec![change.clone()],
            record: record.clone(),
        };
        s.check_wallets(tenant, Some(&settlement))?;
        s.write_wallets(tenant, Some(&settlement));
        Ok(())
    }
}
