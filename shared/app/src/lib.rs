//! Use cases: what the platform does, written against ports.
//!
//! One folder per capability, named like its folder in `billing_domain` and its route
//! module in `billing_http`; each holds one service, which holds only the ports it uses (a
//! narrowed bundle such as [`billing::BillingPorts`], never the whole [`ports::Store`]):
//!
//! - [`kernel`]: the caller and its permission check, [`AppError`], the audit record and
//!   events a change commits with, the time of a tenant or of its test clock, the retry
//!   over lost races, and `Idempotency-Key` claims.
//! - [`customers`]: tenants, API keys, accounts, payment methods.
//! - [`catalog`]: metrics, plans and price versions, the price calculator.
//! - [`usage`]: ingest, live usage, entitlement checks, usage pricing.
//! - [`collection`]: payment attempts and retries, paying now, refunds and credit notes,
//!   payment settings, inbound gateway events, dunning.
//! - [`billing`]: subscriptions and their steps, invoices, previews, test clocks, billing
//!   of (late) usage.
//! - [`events`]: the event and audit logs, webhook endpoints, fan-out and delivery.
//! - [`jobs`]: the due-index sweep that hands work to each worker.
//!
//! Services call each other only through small named methods, and only down this order
//! (an arrow is "calls"); nothing calls up it, so there is no cycle:
//!
//! ```text
//! jobs ──▶ events (due_now, republish), collection (release_payments)
//! billing ──▶ catalog (subscription_terms, validate_charges)
//!         ──▶ collection (release_invoice_payment, invoice_settled, run_payment_job;
//!                         first_attempt, collection_change)
//!         ──▶ usage::pricing (price, usage_lines)
//!         ──▶ customers (refuse_blocked)
//! collection ──▶ customers (forget_payment_method)
//! customers, catalog, usage, events ──▶ kernel only
//! ```
//!
//! [`App`] is only the wiring: it builds each service from the adapters once per process,
//! and a handler calls one use case on one of its fields (`app.customers.create_account`).

pub mod billing;
pub mod catalog;
pub mod collection;
pub mod customers;
pub mod events;
pub mod jobs;
pub mod kernel;
pub mod ports;
pub mod usage;

use std::sync::Arc;

pub use kernel::{new_ulid, AppError, Caller};

use billing::BillingService;
use catalog::CatalogService;
use collection::CollectionService;
use customers::CustomersService;
use events::EventsService;
use kernel::{Clocks, IdempotencyService};
use ports::{Clock, Notifier, PaymentGateway, PaymentQueue, Store};

/// The services, wired to the adapters. Built once per process; cheap to clone.
#[derive(Clone)]
pub struct App {
    /// What the services were built from: the wiring and tools (and tests) that inspect or
    /// rebuild them use it; no use case holds it.
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    // The adapters the services were built with; private, so that changing one goes
    // through a `with_…` that builds the services again.
    gateway: Arc<dyn PaymentGateway>,
    notifier: Option<Arc<dyn Notifier>>,
    payment_queue: Option<Arc<dyn PaymentQueue>>,
    pub idempotency: IdempotencyService,
    pub customers: CustomersService,
    pub catalog: CatalogService,
    pub usage: usage::UsageService,
    pub collection: CollectionService,
    pub billing: BillingService,
    pub events: EventsService,
}

impl App {
    /// The gateway is chosen at wiring time: the sandbox for sandbox tenants and tests,
    /// Stripe when a secret is configured.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        gateway: Arc<dyn PaymentGateway>,
    ) -> Self {
        Self::wire(store, clock, gateway, None, None)
    }

    /// Collects payments through `gateway` instead (a test's own sandbox, Stripe once its
    /// secret is loaded).
    pub fn with_gateway(self, gateway: Arc<dyn PaymentGateway>) -> Self {
        Self::wire(
            self.store,
            self.clock,
            gateway,
            self.notifier,
            self.payment_queue,
        )
    }

    /// Hands payment work due now to `queue` right after its commit.
    pub fn with_payment_queue(self, queue: Arc<dyn PaymentQueue>) -> Self {
        Self::wire(
            self.store,
            self.clock,
            self.gateway,
            self.notifier,
            Some(queue),
        )
    }

    /// Sends customer notices through `notifier` right after the commits that leave them.
    pub fn with_notifier(self, notifier: Arc<dyn Notifier>) -> Self {
        Self::wire(
            self.store,
            self.clock,
            self.gateway,
            Some(notifier),
            self.payment_queue,
        )
    }

    /// Lets a retry take over an `Idempotency-Key` whose holder has not answered within
    /// `lease` (default [`kernel::idempotency::DEFAULT_LEASE`]); keep it at least the
    /// function's timeout, so that the holder has stopped by then.
    pub fn with_idempotency_lease(mut self, lease: jiff::SignedDuration) -> Self {
        self.idempotency = IdempotencyService::new(self.store.clone(), self.clock.clone(), lease);
        self
    }

    fn wire(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        gateway: Arc<dyn PaymentGateway>,
        notifier: Option<Arc<dyn Notifier>>,
        payment_queue: Option<Arc<dyn PaymentQueue>>,
    ) -> Self {
        let clocks = Clocks::new(clock.clone(), store.clone());
        let customers = CustomersService::new(store.clone(), clocks.clone(), gateway.clone());
        let catalog = CatalogService::new(store.clone(), clocks.clone());
        let usage = usage::UsageService::new(store.clone(), clocks.clone());
        let collection = CollectionService::new(
            store.clone(),
            clocks.clone(),
            gateway.clone(),
            notifier.clone(),
            payment_queue.clone(),
            customers.clone(),
        );
        let billing = BillingService::new(
            store.clone(),
            clocks.clone(),
            catalog.clone(),
            collection.clone(),
        );
        let events = EventsService::new(store.clone(), clocks);
        Self {
            idempotency: IdempotencyService::new(
                store.clone(),
                clock.clone(),
                kernel::idempotency::DEFAULT_LEASE,
            ),
            store,
            clock,
            gateway,
            notifier,
            payment_queue,
            customers,
            catalog,
            usage,
            collection,
            billing,
            events,
        }
    }
}
