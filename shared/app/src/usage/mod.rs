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

use crate::kernel::Clocks;
use crate::ports::{AccountStore, MetricStore, SubscriptionStore, UsageStore};

/// What the usage service reads and writes.
pub trait UsagePorts: UsageStore + SubscriptionStore + AccountStore + MetricStore {}

impl<T> UsagePorts for T where T: UsageStore + SubscriptionStore + AccountStore + MetricStore {}

/// The usage use cases. Depends on the kernel only.
#[derive(Clone)]
pub struct UsageService {
    store: Arc<dyn UsagePorts>,
    clocks: Clocks,
}

impl UsageService {
    pub(crate) fn new(store: Arc<dyn UsagePorts>, clocks: Clocks) -> Self {
        Self { store, clocks }
    }
}

fn invalid(code: ErrorCode, param: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(code, param, message)
}
