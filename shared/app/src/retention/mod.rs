//! Retention and erasure (GDPR): the purge of deleted accounts 30 days after deletion,
//! and the export of everything held about a customer. Reads across capabilities through
//! their stores, never their services; depends on the kernel only.

mod export;
mod purge;

use std::sync::Arc;

pub use export::{AccountExport, ExportSection};
pub use purge::PurgeOutcome;

use crate::kernel::Clocks;
use crate::ports::{
    AccountStore, AuditStore, CreditStore, ErasureStore, InvoiceStore, PaymentStore,
    SubscriptionStore, TenantStore, UsageStore,
};

/// The ports the retention use cases use.
pub trait RetentionPorts:
    TenantStore
    + AccountStore
    + ErasureStore
    + SubscriptionStore
    + InvoiceStore
    + PaymentStore
    + CreditStore
    + UsageStore
    + AuditStore
{
}

impl<T> RetentionPorts for T where
    T: TenantStore
        + AccountStore
        + ErasureStore
        + SubscriptionStore
        + InvoiceStore
        + PaymentStore
        + CreditStore
        + UsageStore
        + AuditStore
{
}

/// The retention use cases.
#[derive(Clone)]
pub struct RetentionService {
    store: Arc<dyn RetentionPorts>,
    clocks: Clocks,
}

impl RetentionService {
    pub(crate) fn new(store: Arc<dyn RetentionPorts>, clocks: Clocks) -> Self {
        Self { store, clocks }
    }
}
