use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use billing_domain::kernel::ids::{AccountId, SubscriptionId, TenantId, TestClockId};
use jiff::Timestamp;

use crate::{MemoryStore, State};
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct UsageState {
    events: BTreeMap<(TenantId, String), StoredUsageEvent>,
    rollups: BTreeMap<(TenantId, RollupKey), Rollup>,
    distinct: BTreeSet<(TenantId, RollupKey, String)>,
    quotas: BTreeMap<(TenantId, AccountId, String), QuotaSnapshot>,
}

impl State {
    /// One usage unit, atomically.
    fn record_usage(&mut self, tenant: TenantId, write: &UsageWrite) -> Result<(), StoreError> {
        let s = self;
        let mut ids = BTreeSet::new();
        for stored in &write.events {
            let id = &stored.event.transaction_id;
            if !ids.insert(id) || s.usage.events.contains_key(&(tenant, id.clone())) {
                return Err(StoreError::AlreadyExists {
                    entity: "usage event",
                });
            }
        }
        for (id, version) in &write.subscriptions {
            s.check_subscription_version(tenant, *id, *version)?;
        }
        s.check_rollups(tenant, &write.rollups)?;
        for (key, value) in &write.distinct_values {
            if s.usage
                .distinct
                .contains(&(tenant, key.clone(), value.clone()))
            {
                return Err(StoreError::VersionConflict {
                    entity: "usage rollup",
                });
            }
        }
        for stored in &write.events {
            s.usage.events.insert(
                (tenant, stored.event.transaction_id.clone()),
                stored.clone(),
            );
        }
        s.write_rollups(tenant, &write.rollups);
        for (key, value) in &write.distinct_values {
            s.usage
                .distinct
                .insert((tenant, key.clone(), value.clone()));
        }
        for quota in &write.quotas {
            s.usage.quotas.insert(
                (tenant, quota.account_id, quota.metric.clone()),
                quota.clone(),
            );
        }
        for change in &write.changes {
            s.record(tenant, change);
        }
        Ok(())
    }

    /// Rollups whose late usage is due at or before `up_to`, where `on(tenant, clock)`.
    pub(crate) fn late_usage_due(
        &self,
        up_to: Timestamp,
        on: impl Fn(TenantId, Option<TestClockId>) -> bool,
    ) -> Vec<DueItem> {
        self.usage
            .rollups
            .iter()
            .filter(|((tenant, _), r)| on(*tenant, r.test_clock))
            .filter_map(|((tenant, _), r)| {
                r.late_due_at.filter(|d| *d <= up_to).map(|due_at| DueItem {
                    tenant_id: *tenant,
                    due_at,
                    kind: DueKind::Billing(BillingJob::Subscription {
                        tenant: *tenant,
                        id: r.subscription_id,
                    }),
                })
            })
            .collect()
    }

    pub(crate) fn check_rollups(
        &self,
        tenant: TenantId,
        rollups: &[RollupWrite],
    ) -> Result<(), StoreError> {
        for write in rollups {
            let stored = self
                .usage
                .rollups
                .get(&(tenant, write.next.key()))
                .map_or(0, |r| r.version);
            if stored != write.expected_version {
                return Err(StoreError::VersionConflict {
                    entity: "usage rollup",
                });
            }
        }
        Ok(())
    }

    pub(crate) fn write_rollups(&mut self, tenant: TenantId, rollups: &[RollupWrite]) {
        for write in rollups {
            self.usage
                .rollups
                .insert((tenant, write.next.key()), write.next.clone());
        }
    }
}

#[async_trait]
impl UsageStore for MemoryStore {
    async fn stored_usage_events(
        &self,
        tenant: TenantId,
        transaction_ids: &[String],
    ) -> Result<BTreeSet<String>, StoreError> {
        let s = self.state();
        Ok(transaction_ids
            .iter()
            .filter(|id| s.usage.events.contains_key(&(tenant, (*id).clone())))
            .cloned()
            .collect())
    }

    async fn get_rollups(
        &self,
        tenant: TenantId,
        keys: &[RollupKey],
    ) -> Result<Vec<Rollup>, StoreError> {
        let s = self.state();
        Ok(keys
            .iter()
            .filter_map(|k| s.usage.rollups.get(&(tenant, k.clone())).cloned())
            .collect())
    }

    async fn seen_distinct_values(
        &self,
        tenant: TenantId,
        key: &RollupKey,
        values: &[String],
    ) -> Result<BTreeSet<String>, StoreError> {
        let s = self.state();
        Ok(values
            .iter()
            .filter(|v| {
                s.usage
                    .distinct
                    .contains(&(tenant, key.clone(), (*v).clone()))
            })
            .cloned()
            .collect())
    }

    async fn record_usage(
        &self,
        tenant: TenantId,
        units: &[UsageWrite],
    ) -> Result<(), StepsFailed> {
        let mut s = self.state();
        for (written, unit) in units.iter().enumerate() {
            s.record_usage(tenant, unit)
                .map_err(|error| StepsFailed { written, error })?;
        }
        Ok(())
    }

    async fn list_rollups(
        &self,
        tenant: TenantId,
        subscription: SubscriptionId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Rollup>, StoreError> {
        let s = self.state();
        Ok(s.usage
            .rollups
            .iter()
            .filter(|((t, k), _)| {
                *t == tenant
                    && k.subscription == subscription
                    && k.period_start >= from
                    && k.period_start < to
            })
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn get_quota(
        &self,
        tenant: TenantId,
        account: AccountId,
        metric: &str,
    ) -> Result<Option<QuotaSnapshot>, StoreError> {
        Ok(self
            .state()
            .usage
            .quotas
            .get(&(tenant, account, metric.to_owned()))
            .cloned())
    }

    async fn bill_late_usage(
        &self,
        tenant: TenantId,
        invoice: Option<&InvoiceWrite>,
        rollups: &[RollupWrite],
        change: Option<&Change>,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.check_rollups(tenant, rollups)?;
        if let Some(invoice) = invoice {
            s.check_invoice(tenant, invoice, true, 0)?;
            s.write_invoice(tenant, invoice);
        }
        s.write_rollups(tenant, rollups);
        if let Some(change) = change {
            s.record(tenant, change);
        }
        Ok(())
    }
}
