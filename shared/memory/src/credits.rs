use std::collections::BTreeMap;

use async_trait::async_trait;
use billing_domain::credits::balance::{Balance, BalanceChange, BalanceTransaction, CreditGrant};
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{
    AccountId, BalanceTransactionId, CreditGrantId, TenantId, TestClockId,
};
use jiff::Timestamp;
use ulid::Ulid;

use crate::{paginate, MemoryStore, State};
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct CreditState {
    balances: BTreeMap<(TenantId, AccountId, &'static str), Balance>,
    grants: BTreeMap<(TenantId, AccountId, CreditGrantId), CreditGrant>,
    ledger: BTreeMap<(TenantId, AccountId, BalanceTransactionId), BalanceTransaction>,
}

impl State {
    /// Checks a balance change's condition (the balance's version) without writing.
    pub(crate) fn check_balance(
        &self,
        tenant: TenantId,
        change: &BalanceChange,
    ) -> Result<(), StoreError> {
        let b = &change.balance;
        let stored = self
            .credits
            .balances
            .get(&(tenant, b.account_id, b.currency.code()))
            .map_or(0, |s| s.version);
        if stored != change.previous_version {
            return Err(StoreError::VersionConflict { entity: "balance" });
        }
        Ok(())
    }

    /// Balances whose next expiry is at or before `up_to`, on the clocks `on` admits: the
    /// entries the DynamoDB store keeps in the due index.
    pub(crate) fn due_expiries(
        &self,
        up_to: Timestamp,
        on: impl Fn(TenantId, Option<TestClockId>) -> bool,
    ) -> Vec<DueItem> {
        self.credits
            .balances
            .iter()
            .filter(|((tenant, _, _), b)| on(*tenant, b.test_clock))
            .filter_map(|((tenant, account, _), b)| {
                b.next_expiry
                    .filter(|at| *at <= up_to)
                    .map(|due_at| DueItem {
                        tenant_id: *tenant,
                        due_at,
                        kind: DueKind::Billing(BillingJob::CreditExpiry {
                            tenant: *tenant,
                            account: *account,
                            currency: b.currency,
                        }),
                    })
            })
            .collect()
    }

    pub(crate) fn write_balance(&mut self, tenant: TenantId, change: &BalanceChange) {
        let b = &change.balance;
        self.credits
            .balances
            .insert((tenant, b.account_id, b.currency.code()), b.clone());
        for grant in &change.grants {
            self.credits
                .grants
                .insert((tenant, grant.account_id, grant.id), grant.clone());
        }
        for entry in &change.entries {
            self.credits
                .ledger
                .insert((tenant, entry.account_id, entry.id), entry.clone());
        }
    }
}

#[async_trait]
impl CreditStore for MemoryStore {
    async fn get_balance(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Currency,
    ) -> Result<Option<Balance>, StoreError> {
        Ok(self
            .state()
            .credits
            .balances
            .get(&(tenant, account, currency.code()))
            .cloned())
    }

    async fn get_balances(
        &self,
        tenant: TenantId,
        wanted: &[(AccountId, Currency)],
    ) -> Result<Vec<Balance>, StoreError> {
        let s = self.state();
        let mut found: Vec<Balance> = Vec::new();
        for (account, currency) in wanted {
            if let Some(b) = s.credits.balances.get(&(tenant, *account, currency.code())) {
                if !found.contains(b) {
                    found.push(b.clone());
                }
            }
        }
        Ok(found)
    }

    async fn list_balances(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Vec<Balance>, StoreError> {
        Ok(self
            .state()
            .credits
            .balances
            .iter()
            .filter(|((t, a, _), _)| *t == tenant && *a == account)
            .map(|(_, b)| b.clone())
            .collect())
    }

    async fn get_grants(
        &self,
        tenant: TenantId,
        account: AccountId,
        ids: &[CreditGrantId],
    ) -> Result<Vec<CreditGrant>, StoreError> {
        let s = self.state();
        Ok(ids
            .iter()
            .filter_map(|id| s.credits.grants.get(&(tenant, account, *id)).cloned())
            .collect())
    }

    async fn list_grants(
        &self,
        tenant: TenantId,
        account: AccountId,
        page: &PageRequest,
    ) -> Result<Page<CreditGrant>, StoreError> {
        let s = self.state();
        let items = s
            .credits
            .grants
            .range(
                (tenant, account, CreditGrantId::from_ulid(Ulid::nil()))
                    ..=(tenant, account, CreditGrantId::from_ulid(Ulid(u128::MAX))),
            )
            .rev()
            .map(|((_, _, id), g)| (id.to_string(), g.clone()));
        Ok(paginate(items, page, |_| true))
    }

    async fn list_balance_transactions(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Option<Currency>,
        page: &PageRequest,
    ) -> Result<Page<BalanceTransaction>, StoreError> {
        let s = self.state();
        let items = s
            .credits
            .ledger
            .range(
                (
                    tenant,
                    account,
                    BalanceTransactionId::from_ulid(Ulid::nil()),
                )
                    ..=(
                        tenant,
                        account,
                        BalanceTransactionId::from_ulid(Ulid(u128::MAX)),
                    ),
            )
            .rev()
            .map(|((_, _, id), e)| (id.to_string(), e.clone()));
        Ok(paginate(items, page, |e| {
            currency.is_none_or(|c| e.currency == c)
        }))
    }

    async fn save_balance(
        &self,
        tenant: TenantId,
        change: &BalanceChange,
        record: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.check_balance(tenant, change)?;
        s.write_balance(tenant, change);
        s.record(tenant, record);
        Ok(())
    }
}
