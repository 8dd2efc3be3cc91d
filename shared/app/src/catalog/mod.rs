//! The catalog: billable metrics, plans and their price versions, and the price
//! calculator.

mod metrics;
mod plans;
mod prices;

use std::sync::Arc;

pub use plans::{PlanWithPrices, SubscriptionCounts};
pub use prices::{CapacitySource, PriceSource};

use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::error::ValidationError;

use crate::kernel::{AppError, Clocks, MetricCache};
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
}

impl CatalogService {
    pub(crate) fn new(store: Arc<dyn CatalogPorts>, clocks: Clocks, metrics: MetricCache) -> Self {
        Self {
            store,
            clocks,
            metrics,
        }
    }
}

fn invalid(code: ErrorCode, param: &'static str, message: impl Into<String>) -> AppError {
    AppError::Invalid(ValidationError::new(code, param, message))
}
