//! Usage metering: ingesting events into rollups exactly once, the live usage of a
//! subscription, entitlement checks, and usage priced by a subscription's terms (which
//! billing bills). Billing the usage of a closed period is billing's.

mod ingest;
mod live;
pub mod pricing;

use std::sync::Arc;

use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::error::ValidationError;

pub use live::{EntitlementCheck, MetricUsage, PeriodUsage, SubscriptionUsage};

use billing_domain::billing::subscription::Subscription;
use billing_domain::kernel::ids::{SubscriptionId, TenantId};
use jiff::SignedDuration;

use crate::kernel::{Clocks, MetricCache, TtlCache};
use crate::ports::{
    AccountStore, DunningStore, MetricStore, Rollup, RollupKey, SubscriptionStore, UsageStore,
};
use crate::tax::TaxService;

/// What the usage service reads and writes (the dunning policy only read: what a block
/// does to entitlement checks).
pub trait UsagePorts:
    UsageStore + SubscriptionStore + AccountStore + MetricStore + DunningStore
{
}

impl<T> UsagePorts for T where
    T: UsageStore + SubscriptionStore + AccountStore + MetricStore + DunningStore
{
}

/// How long ingest keeps a subscription it read. Only a bound on memory: every usage write
/// is conditioned on the version of the subscription it was planned from, and a write that
/// finds it moved forgets it and plans again from a fresh read.
pub const SUBSCRIPTION_TTL: SignedDuration = SignedDuration::from_secs(600);

/// How long ingest keeps which live subscription an `external_account_id` names: the bound
/// on when an account's second live subscription (then the name is ambiguous) or a changed
/// external id is seen. Cancelling the subscription is seen at once (its version moves).
pub const EXTERNAL_ID_TTL: SignedDuration = SignedDuration::from_secs(60);

/// How long ingest keeps a rollup it wrote, or the mark that another writer moved one under
/// it. An entry is exact whatever the TTL (the usage write is conditioned on the rollup's
/// version); the TTL bounds the cost of staleness: a hit is worth one read only if no other
/// instance wrote the rollup since, a stale hit costs a failed transaction, and after one
/// the instance reads that rollup for a TTL before it caches it again (README, "Caches of a
/// warm instance").
pub const ROLLUP_TTL: SignedDuration = SignedDuration::from_secs(60);

/// What an instance knows of a rollup.
#[derive(Clone)]
enum CachedRollup {
    /// As this instance last wrote it: the next lone event is planned from it.
    Written(Arc<Rollup>),
    /// Another writer moved it under this instance: read it before every write until the
    /// entry expires.
    Contended,
}

/// The usage use cases. Depends on the kernel only.
#[derive(Clone)]
pub struct UsageService {
    store: Arc<dyn UsagePorts>,
    clocks: Clocks,
    metrics: MetricCache,
    subscriptions: Arc<TtlCache<(TenantId, bool, SubscriptionId), Arc<Subscription>>>,
    external_ids: Arc<TtlCache<(TenantId, bool, String), SubscriptionId>>,
    rollups: Arc<TtlCache<(TenantId, bool, RollupKey), CachedRollup>>,
    /// The projected invoice's tax.
    tax: TaxService,
}

impl UsageService {
    pub(crate) fn new(
        store: Arc<dyn UsagePorts>,
        clocks: Clocks,
        metrics: MetricCache,
        tax: TaxService,
    ) -> Self {
        Self {
            store,
            clocks,
            metrics,
            tax,
            subscriptions: Arc::new(TtlCache::new(SUBSCRIPTION_TTL)),
            external_ids: Arc::new(TtlCache::new(EXTERNAL_ID_TTL)),
            rollups: Arc::new(TtlCache::new(ROLLUP_TTL)),
        }
    }
}

fn invalid(code: ErrorCode, param: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(code, param, message)
}
