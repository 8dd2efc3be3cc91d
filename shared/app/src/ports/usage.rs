//! Persistence of usage: one item per event (its transaction id makes it idempotent), one
//! rollup per subscription × metric × period, one marker per distinct value of a
//! unique_count rollup, and a quota snapshot per account × metric for fast entitlement
//! checks. Every rollup write is conditioned on the rollup's `version`, so a rollup only
//! ever moves from the state its writer read: concurrent writers serialize, and the
//! loser re-reads and re-plans.

use std::collections::BTreeSet;

use async_trait::async_trait;
use billing_domain::billing::periods::Period;
use billing_domain::billing::proration::Fraction;
use billing_domain::billing::subscription::Subscription;
use billing_domain::catalog::charges::{ChargeModel, Commitment};
use billing_domain::catalog::metric::Aggregation;
use billing_domain::kernel::ids::{AccountId, InvoiceId, SubscriptionId, TenantId, TestClockId};
use billing_domain::kernel::money::MinorUnits;
use billing_domain::usage::entitlements::Entitlement;
use billing_domain::usage::meter::{Aggregate, UsageEvent};
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Change, InvoiceWrite, StepsFailed, StoreError};

/// Which rollup: a subscription's metric in the period starting at `period_start`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RollupKey {
    pub subscription: SubscriptionId,
    pub period_start: Timestamp,
    pub metric: String,
}

/// The aggregate of one subscription's metric in one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    pub subscription_id: SubscriptionId,
    pub account_id: AccountId,
    pub test_clock: Option<TestClockId>,
    pub metric: String,
    pub aggregation: Aggregation,
    /// The metric is a level that carries over ([`crate::usage::pricing::with_levels`]).
    #[serde(default)]
    pub recurring: bool,
    pub period: Period,
    pub aggregate: Aggregate,
    /// The highest usage threshold announced this period (0, 80 or 100).
    pub announced: u8,
    /// What the period's invoice billed for this metric, once it is billed.
    pub billed: Option<BilledUsage>,
    /// While late usage waits for its supplemental invoice: when it is due.
    pub late_due_at: Option<Timestamp>,
    /// Moved by every write; every write is conditioned on it.
    pub version: u64,
}

impl Rollup {
    pub fn key(&self) -> RollupKey {
        RollupKey {
            subscription: self.subscription_id,
            period_start: self.period.start,
            metric: self.metric.clone(),
        }
    }

    pub fn empty(
        sub: &Subscription,
        metric: &str,
        aggregation: Aggregation,
        period: Period,
    ) -> Self {
        Rollup {
            subscription_id: sub.id,
            account_id: sub.account_id,
            test_clock: sub.test_clock,
            metric: metric.to_owned(),
            aggregation,
            recurring: false,
            period,
            aggregate: Aggregate::default(),
            announced: 0,
            billed: None,
            late_due_at: None,
            version: 0,
        }
    }

    pub fn quantity(&self) -> Decimal {
        self.aggregate.quantity(self.aggregation, self.period)
    }

    /// What `model` prices of this rollup.
    pub fn usage(&self, model: &ChargeModel) -> billing_domain::catalog::charges::Usage {
        self.aggregate.usage(self.aggregation, model, self.period)
    }
}

/// What an invoice billed for a rollup: the charge it was priced with and the rounded
/// amount, so late usage is billed as the difference and never twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BilledUsage {
    #[serde(with = "billing_domain::kernel::decimal::serde_decimal")]
    pub quantity: Decimal,
    /// After the charge's commitment.
    pub amount: MinorUnits,
    pub model: ChargeModel,
    pub commitment: Option<Commitment>,
    /// The fraction of the cycle period a prorated charge billed (a partial period), so
    /// late usage is prorated alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prorated: Option<Fraction>,
    /// The last invoice that billed it (the period's, or a supplemental one).
    pub invoice_id: InvoiceId,
}

/// A rollup to write, from the version its writer read (0: it must not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupWrite {
    pub expected_version: u64,
    pub next: Rollup,
}

/// An accepted event as stored (kept for idempotency and audit of what was counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUsageEvent {
    pub event: UsageEvent,
    pub subscription_id: SubscriptionId,
    /// The period it counts in; `None` when it is not billed (paused).
    pub period_start: Option<Timestamp>,
    pub received_at: Timestamp,
}

/// The current-period usage of an account's metric with its limit: what an entitlement
/// check reads, in one read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaSnapshot {
    pub account_id: AccountId,
    pub subscription_id: SubscriptionId,
    pub metric: String,
    pub period: Period,
    #[serde(with = "billing_domain::kernel::decimal::serde_decimal")]
    pub used: Decimal,
    /// The account's test clock, whose time decides whether the period is still current.
    pub test_clock: Option<TestClockId>,
    pub entitlement: Entitlement,
    /// The metric is a level: a later period starts from the level carried, not from zero.
    #[serde(default)]
    pub recurring: bool,
}

/// What must commit together: one event with everything it moves (its rollup, a distinct
/// value seen for the first time, the quota snapshot, a threshold it crosses), or, packed by
/// [`pack_usage`], several such units in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageWrite {
    pub events: Vec<StoredUsageEvent>,
    pub rollups: Vec<RollupWrite>,
    /// Distinct values seen for the first time in their rollup.
    pub distinct_values: Vec<(RollupKey, String)>,
    pub quotas: Vec<QuotaSnapshot>,
    /// Threshold events (and their audit records).
    pub changes: Vec<Change>,
    /// The subscriptions the events were placed by, each at the version it was read at:
    /// the write fails with `VersionConflict { entity: "subscription" }` if one has moved.
    pub subscriptions: Vec<(SubscriptionId, u64)>,
}

impl UsageWrite {
    /// How many items the write touches (a domain event counts twice: the DynamoDB store
    /// writes an outbox item beside each).
    pub fn items(&self) -> usize {
        self.events.len()
            + self.rollups.len()
            + self.distinct_values.len()
            + self.quotas.len()
            + self
                .changes
                .iter()
                .map(|c| 1 + 2 * c.events.len())
                .sum::<usize>()
            + self.subscriptions.len()
    }

    /// Adds `unit` after what this write holds: a rollup or quota both move is written
    /// once, from the version this write read to the state `unit` leaves.
    fn absorb(&mut self, unit: &UsageWrite) {
        self.events.extend(unit.events.iter().cloned());
        for write in &unit.rollups {
            match self
                .rollups
                .iter_mut()
                .find(|w| w.next.key() == write.next.key())
            {
                Some(held) => held.next = write.next.clone(),
                None => self.rollups.push(write.clone()),
            }
        }
        self.distinct_values
            .extend(unit.distinct_values.iter().cloned());
        for quota in &unit.quotas {
            match self
                .quotas
                .iter_mut()
                .find(|q| q.account_id == quota.account_id && q.metric == quota.metric)
            {
                Some(held) => *held = quota.clone(),
                None => self.quotas.push(quota.clone()),
            }
        }
        self.changes.extend(unit.changes.iter().cloned());
        for checked in &unit.subscriptions {
            if !self.subscriptions.contains(checked) {
                self.subscriptions.push(*checked);
            }
        }
    }
}

/// Packs units, in order, into as few writes of at most `max_items` items as they fit in
/// (a unit is never split), each with how many units it holds: how an adapter whose
/// transactions are bounded plans them.
pub fn pack_usage(units: &[UsageWrite], max_items: usize) -> Vec<(UsageWrite, usize)> {
    let mut packed: Vec<(UsageWrite, usize)> = Vec::new();
    for unit in units {
        if let Some((write, count)) = packed.last_mut() {
            let mut grown = write.clone();
            grown.absorb(unit);
            if grown.items() <= max_items {
                *write = grown;
                *count += 1;
                continue;
            }
        }
        let mut write = UsageWrite::default();
        write.absorb(unit);
        packed.push((write, 1));
    }
    packed
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Which of these transaction ids are already stored.
    async fn stored_usage_events(
        &self,
        tenant: TenantId,
        transaction_ids: &[String],
    ) -> Result<BTreeSet<String>, StoreError>;
    /// The rollups that exist among `keys`.
    async fn get_rollups(
        &self,
        tenant: TenantId,
        keys: &[RollupKey],
    ) -> Result<Vec<Rollup>, StoreError>;
    /// Which of `values` the rollup has seen.
    async fn seen_distinct_values(
        &self,
        tenant: TenantId,
        key: &RollupKey,
        values: &[String],
    ) -> Result<BTreeSet<String>, StoreError>;
    /// Writes units in order, each atomically and several per transaction where they fit.
    /// A unit fails with `AlreadyExists { entity: "usage event" }` when its event is stored
    /// and `VersionConflict { entity: "usage rollup" }` when its rollup moved (or its
    /// distinct value was seen); the units before it may be written: the error says how
    /// many. A unit whose subscription moved fails with `VersionConflict { entity:
    /// "subscription" }`.
    async fn record_usage(&self, tenant: TenantId, units: &[UsageWrite])
        -> Result<(), StepsFailed>;
    /// A subscription's rollups of the periods starting in `[from, to)`.
    async fn list_rollups(
        &self,
        tenant: TenantId,
        subscription: SubscriptionId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Rollup>, StoreError>;
    async fn get_quota(
        &self,
        tenant: TenantId,
        account: AccountId,
        metric: &str,
    ) -> Result<Option<QuotaSnapshot>, StoreError>;
    /// A supplemental invoice for late usage (if the delta is not zero) with the rollups
    /// it bills, atomically.
    async fn bill_late_usage(
        &self,
        tenant: TenantId,
        invoice: Option<&InvoiceWrite>,
        rollups: &[RollupWrite],
        change: Option<&Change>,
    ) -> Result<(), StoreError>;
}
