//! The catalog: billable metrics, plans and their price versions, and the price
//! calculator.

mod metrics;
mod plans;
mod prices;

use std::sync::Arc;

pub use plans::{DraftVersion, PlanWithPrices, SubscriptionCounts};
pub use prices::{CapacitySource, PriceSource};

use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::error::ValidationError;

use billing_domain::catalog::plan::{Plan, PlanVersion};
use billing_domain::kernel::ids::{PlanId, TenantId};
use jiff::{SignedDuration, Timestamp};

use crate::kernel::{AppError, Clocks, MetricCache, TtlCache};
use crate::ports::{MetricStore, PlanStore};

/// What the catalog service reads and writes.
pub trait CatalogPorts: MetricStore + PlanStore {}

impl<T> CatalogPorts for T where T: MetricStore + PlanStore {}

/// The catalog use cases. Depends on the kernel only.
#[derive(Clone)]
pub struct CatalogService {
    store: Arc<dyn CatalogPorts>,
    clocks: Clocks,
    /// Shared with usage, which reads metrics through it; a metric updated here is forgotten.
    metrics: MetricCache,
    /// Plans with their versions as read at a moment (the process clock's), for renewals:
    /// an entry answers only for renewals due by the moment it was read (see
    /// [`CatalogService::migration_terms`]), so it is exact whatever its age.
    plans: Arc<TtlCache<(TenantId, PlanId), (PlanCatalog, Timestamp)>>,
}

/// A plan and its price versions, as read together.
pub type PlanCatalog = Arc<(Plan, Vec<PlanVersion>)>;

/// How long a plan read for renewals is kept: a bound on memory and on staleness only for
/// the renewals a lagging worker is still making of an earlier moment.
pub const PLAN_TTL: SignedDuration = SignedDuration::from_secs(60);

impl CatalogService {
    pub(crate) fn new(store: Arc<dyn CatalogPorts>, clocks: Clocks, metrics: MetricCache) -> Self {
        Self {
            store,
            clocks,
            metrics,
            plans: Arc::new(TtlCache::new(PLAN_TTL)),
        }
    }
}

fn invalid(code: ErrorCode, param: &'static str, message: impl Into<String>) -> AppError {
    AppError::Invalid(ValidationError::new(code, param, message))
}
