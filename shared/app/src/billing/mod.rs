//! Billing: subscriptions and their lifecycle steps, invoices (one-off, finalizing,
//! voiding, previews), test clocks, and billing the usage of the periods steps close
//! (late usage on supplemental invoices). The billing worker's jobs run here.

mod finalize;
mod invoices;
mod price_notices;
mod simulation;
mod steps;
mod subscriptions;
mod test_clocks;
mod usage_billing;

use std::sync::Arc;

pub use finalize::FinalizeReport;
pub use invoices::{HypotheticalPlan, HypotheticalSubscription, PreviewCustomer, PreviewSource};
pub use simulation::{Simulated, Simulation, SimulationJobs, SimulationView, PER_REQUEST};
pub use subscriptions::{CreditCapInput, ProrationBehavior, StartSubscription};
pub use test_clocks::{INLINE_CLOCK_ITEMS, WORKER_CLOCK_ITEMS};

use crate::catalog::CatalogService;
use crate::collection::CollectionService;
use crate::coupons::CouponsService;
use crate::credits::CreditsService;
use crate::kernel::{Clocks, TtlCache};
use crate::ports::{
    AccountStore, BillingQueue, InvoiceStore, PaymentStore, RedemptionStore, SimulationStore,
    SubscriptionStore, TestClockStore, UsageStore,
};
use crate::retention::RetentionService;
use crate::tax::TaxService;
use billing_domain::collection::dunning::BlockEffects;
use billing_domain::kernel::ids::TenantId;

/// What the billing service reads and writes.
pub trait BillingPorts:
    SubscriptionStore
    + InvoiceStore
    + TestClockStore
    + UsageStore
    + AccountStore
    + PaymentStore
    + RedemptionStore
    + SimulationStore
{
}

impl<T> BillingPorts for T where
    T: SubscriptionStore
        + InvoiceStore
        + TestClockStore
        + UsageStore
        + AccountStore
        + PaymentStore
        + RedemptionStore
        + SimulationStore
{
}

/// The billing use cases. Depends on the catalog (a plan's terms), collection (an
/// invoice's first payment attempt, dunning hearing of a voided invoice, payment work on a
/// test clock), credits (an invoice settled against the balance), coupons (a coupon redeemed
/// as a subscription starts), usage's pricing, and retention (a purge that fell due,
/// by a worker or on a test clock).
#[derive(Clone)]
pub struct BillingService {
    store: Arc<dyn BillingPorts>,
    clocks: Clocks,
    catalog: CatalogService,
    collection: CollectionService,
    credits: CreditsService,
    coupons: CouponsService,
    retention: RetentionService,
    tax: TaxService,
    /// Where finalize jobs go after drafting; without one, the drafting process finalizes.
    finalize_queue: Option<Arc<dyn BillingQueue>>,
    /// How many subscriptions a simulation prices in its request, and where the jobs of
    /// those with more go.
    simulation_jobs: SimulationJobs,
    /// What a block does, per tenant, as renewals ask (README, caches: 60 s).
    block_effects: Arc<TtlCache<TenantId, BlockEffects>>,
}

impl BillingService {
    // One argument per service billing calls (the DAG in the crate docs), wired once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: Arc<dyn BillingPorts>,
        clocks: Clocks,
        catalog: CatalogService,
        collection: CollectionService,
        credits: CreditsService,
        coupons: CouponsService,
        retention: RetentionService,
        tax: TaxService,
        finalize_queue: Option<Arc<dyn BillingQueue>>,
        simulation_jobs: SimulationJobs,
    ) -> Self {
        Self {
            store,
            clocks,
            catalog,
            collection,
            credits,
            coupons,
            retention,
            tax,
            finalize_queue,
            simulation_jobs,
            block_effects: Arc::new(TtlCache::new(jiff::SignedDuration::from_secs(60))),
        }
    }
}
