//! Use cases: what the platform does, written against ports.
//!
//! One folder per capability, named like its folder in `billing_domain` and its route
//! module in `billing_http`; each holds one service, which holds only the ports it uses (a
//! narrowed bundle such as [`billing::BillingPorts`], never the whole [`ports::Store`]):
//!
//! - [`kernel`]: the caller and its permission check, [`AppError`], the audit record and
//!   events a change commits with, the time of a tenant or of its test clock, the retry
//!   over lost races, `Idempotency-Key` claims, and the per-process TTL cache (API keys,
//!   metrics and subscriptions a warm instance keeps, see the README's caches table).
//! - [`customers`]: tenants, API keys (expiry, roll, last use), staff sign-in (JWT from the
//!   tenant's identity provider), rate limits, accounts, payment methods.
//! - [`catalog`]: metrics, plans and price versions, the price calculator.
//! - [`usage`]: ingest, live usage, entitlement checks, usage pricing.
//! - [`collection`]: payment attempts and retries, paying now, refunds and credit notes,
//!   payment settings, inbound gateway events, dunning.
//! - [`credits`]: account balances per currency, credit grants and adjustments, the
//!   ledger; settling invoices against the balance, giving credit back on a void.
//! - [`wallets`]: prepaid wallets (Lago's): granted and paid credits, top-up invoices,
//!   consumption by invoices after the balance's credit, expiry and recurring top-ups.
//! - [`coupons`]: coupons, and redeeming them onto subscriptions (one counted slot each).
//! - [`tax`]: tax settings, tax rates (effective-dated, the EU standard VAT rates), and
//!   the tax of an invoice through the tax-provider port (the built-in resolver by default).
//! - [`documents`]: the tenant's branding for invoice and credit note PDFs, their downloads,
//!   and the pipeline that renders them into the object store off the request path.
//! - [`billing`]: subscriptions and their steps, invoices, previews, test clocks, billing
//!   of (late) usage.
//! - [`events`]: the event and audit logs, webhook endpoints, fan-out and delivery.
//! - [`retention`]: the purge of deleted accounts, the export of a customer's data.
//! - [`hosted`]: hosted invoice pages: their links (minted, revoked), the page's view,
//!   paying from the page through collection.
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
//!         ──▶ credits (settle, settle_drafts, restoration)
//!         ──▶ coupons (redeemable)
//!         ──▶ retention (purge_account)
//!         ──▶ tax (invoice_tax)
//! usage ──▶ tax (invoice_tax: the projected invoice)
//! credits ──▶ wallets (consume, after_consumption)
//! wallets ──▶ collection (release_invoice_payment), usage (unbilled_usage)
//! collection ──▶ customers (forget_payment_method), wallets::purchase_paid (a function
//!                over the wallet store), hosted::mint_link (a function over the link
//!                store: the links in customer emails)
//! customers ──▶ tax (vat_id_status: the online VAT id check)
//! hosted ──▶ collection (charge_now, awaiting_action, complete_action, card_form, last_failure)
//!        ──▶ customers (add_payment_method)
//!        ──▶ documents (branding, invoice_download)
//! catalog, coupons, tax, documents, events, retention ──▶ kernel only
//! ```
//!
//! [`App`] is only the wiring: it builds each service from the adapters once per process,
//! and a handler calls one use case on one of its fields (`app.customers.create_account`).

pub mod billing;
pub mod catalog;
pub mod collection;
pub mod coupons;
pub mod credits;
pub mod customers;
pub mod documents;
pub mod events;
pub mod hosted;
pub mod jobs;
pub mod kernel;
pub mod ports;
pub mod retention;
pub mod tax;
pub mod usage;
pub mod wallets;

use std::sync::Arc;

pub use kernel::{new_ulid, AppError, Caller};

use billing::BillingService;
use billing_domain::kernel::deployment::Deployment;
use catalog::CatalogService;
use collection::CollectionService;
use coupons::CouponsService;
use credits::CreditsService;
use customers::CustomersService;
use documents::DocumentsService;
use events::EventsService;
use kernel::{Clocks, IdempotencyService};
use ports::{
    BillingQueue, Clock, Gateways, KeySetFetcher, Notifier, ObjectStore, PaymentGateway,
    PaymentQueue, Store, VatRegistry,
};
use retention::RetentionService;
use tax::{BuiltInTax, TaxService};
use wallets::WalletsService;

struct Adapters {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    gateways: Gateways,
    notifier: Option<Arc<dyn Notifier>>,
    public_url: Option<String>,
    payment_queue: Option<Arc<dyn PaymentQueue>>,
    finalize_queue: Option<Arc<dyn BillingQueue>>,
    simulation_jobs: billing::SimulationJobs,
    deployment: Deployment,
    idempotency_lease: jiff::SignedDuration,
    key_sets: Option<Arc<dyn KeySetFetcher>>,
    vat_registry: Option<Arc<dyn VatRegistry>>,
    objects: Option<Arc<dyn ObjectStore>>,
}

/// The services, wired to the adapters. Built once per process; cheap to clone.
#[derive(Clone)]
pub struct App {
    /// What the services were built from: the wiring and tools (and tests) that inspect or
    /// rebuild them use it; no use case holds it.
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    // The adapters the services were built with; private, so that changing one goes
    // through a `with_…` that builds the services again.
    gateways: Gateways,
    notifier: Option<Arc<dyn Notifier>>,
    public_url: Option<String>,
    payment_queue: Option<Arc<dyn PaymentQueue>>,
    finalize_queue: Option<Arc<dyn BillingQueue>>,
    simulation_jobs: billing::SimulationJobs,
    deployment: Deployment,
    idempotency_lease: jiff::SignedDuration,
    key_sets: Option<Arc<dyn KeySetFetcher>>,
    vat_registry: Option<Arc<dyn VatRegistry>>,
    objects: Option<Arc<dyn ObjectStore>>,
    pub idempotency: IdempotencyService,
    pub customers: CustomersService,
    pub catalog: CatalogService,
    pub usage: usage::UsageService,
    pub collection: CollectionService,
    pub credits: CreditsService,
    pub wallets: WalletsService,
    pub coupons: CouponsService,
    pub tax: TaxService,
    pub documents: DocumentsService,
    pub billing: BillingService,
    pub events: EventsService,
    pub retention: RetentionService,
    pub hosted: hosted::HostedService,
}

impl App {
    /// Collects through `gateway` for tenants of both modes (tests, tools); a deployment
    /// separates the modes with [`App::with_gateways`].
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        gateway: Arc<dyn PaymentGateway>,
    ) -> Self {
        Self::by_mode(store, clock, Gateways::same(gateway))
    }

    /// Collects through `gateways`, each tenant through its mode's: a deployment's wiring.
    pub fn by_mode(store: Arc<dyn Store>, clock: Arc<dyn Clock>, gateways: Gateways) -> Self {
        Self::wire(Adapters {
            store,
            clock,
            gateways,
            notifier: None,
            public_url: None,
            payment_queue: None,
            finalize_queue: None,
            simulation_jobs: billing::SimulationJobs::default(),
            deployment: Deployment::Deployed,
            idempotency_lease: kernel::idempotency::DEFAULT_LEASE,
            key_sets: None,
            vat_registry: None,
            objects: None,
        })
    }

    /// What the services are built from, to build them again with one adapter changed.
    fn adapters(self) -> Adapters {
        Adapters {
            store: self.store,
            clock: self.clock,
            gateways: self.gateways,
            notifier: self.notifier,
            public_url: self.public_url,
            payment_queue: self.payment_queue,
            finalize_queue: self.finalize_queue,
            simulation_jobs: self.simulation_jobs,
            deployment: self.deployment,
            idempotency_lease: self.idempotency_lease,
            key_sets: self.key_sets,
            vat_registry: self.vat_registry,
            objects: self.objects,
        }
    }

    /// Runs as `deployment`: only [`Deployment::Local`] (the local runner, tests) allows
    /// what exists on a developer's machine only, such as loopback webhook targets.
    pub fn with_deployment(self, deployment: Deployment) -> Self {
        Self::wire(Adapters {
            deployment,
            ..self.adapters()
        })
    }

    /// Collects payments of both modes through `gateway` instead (a test's own sandbox or
    /// Stripe gateway).
    pub fn with_gateway(self, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.with_gateways(Gateways::same(gateway))
    }

    /// Collects through `gateways`, each tenant through its mode's (the Stripe secret's
    /// keys, see `billing_aws::payment_gateway`).
    pub fn with_gateways(self, gateways: Gateways) -> Self {
        Self::wire(Adapters {
            gateways,
            ..self.adapters()
        })
    }

    /// Hands payment work due now to `queue` right after its commit.
    pub fn with_payment_queue(self, queue: Arc<dyn PaymentQueue>) -> Self {
        Self::wire(Adapters {
            payment_queue: Some(queue),
            ..self.adapters()
        })
    }

    /// Hands the finalizing of drafts to `queue` (a finalize job per tenant, on the billing
    /// queue) instead of finalizing in the process that drafted.
    pub fn with_finalize_queue(self, queue: Arc<dyn BillingQueue>) -> Self {
        Self::wire(Adapters {
            finalize_queue: Some(queue),
            ..self.adapters()
        })
    }

    /// Runs catalog change simulations of plans with more subscriptions than
    /// `jobs.per_request` as jobs on `jobs.queue` (see [`billing::SimulationJobs`]).
    pub fn with_simulation_jobs(self, simulation_jobs: billing::SimulationJobs) -> Self {
        Self::wire(Adapters {
            simulation_jobs,
            ..self.adapters()
        })
    }

    /// Sends customer notices through `notifier` right after the commits that leave them.
    pub fn with_notifier(self, notifier: Arc<dyn Notifier>) -> Self {
        Self::wire(Adapters {
            notifier: Some(notifier),
            ..self.adapters()
        })
    }

    /// Links in customer emails point at `url` (the API's public origin, where the hosted
    /// invoice pages are served, without a trailing `/`); without it, emails carry none.
    pub fn with_public_url(self, url: impl Into<String>) -> Self {
        Self::wire(Adapters {
            public_url: Some(url.into().trim_end_matches('/').to_owned()),
            ..self.adapters()
        })
    }

    /// Lets a retry take over an `Idempotency-Key` whose holder has not answered within
    /// `lease` (default [`kernel::idempotency::DEFAULT_LEASE`]); keep it at least the
    /// function's timeout, so that the holder has stopped by then.
    pub fn with_idempotency_lease(self, idempotency_lease: jiff::SignedDuration) -> Self {
        Self::wire(Adapters {
            idempotency_lease,
            ..self.adapters()
        })
    }

    /// Fetches identity providers' signing keys (JWKS) with `fetcher`, for staff sign-in;
    /// without one, a staff token is answered 503.
    pub fn with_key_sets(self, fetcher: Arc<dyn KeySetFetcher>) -> Self {
        Self::wire(Adapters {
            key_sets: Some(fetcher),
            ..self.adapters()
        })
    }

    /// Checks VAT ids with `registry` (VIES) for tenants that ask for it.
    pub fn with_vat_registry(self, registry: Arc<dyn VatRegistry>) -> Self {
        Self::wire(Adapters {
            vat_registry: Some(registry),
            ..self.adapters()
        })
    }

    /// Keeps and serves rendered documents in `objects` (the documents bucket).
    pub fn with_objects(self, objects: Arc<dyn ObjectStore>) -> Self {
        Self::wire(Adapters {
            objects: Some(objects),
            ..self.adapters()
        })
    }

    fn wire(adapters: Adapters) -> Self {
        let Adapters {
            store,
            clock,
            gateways,
            notifier,
            public_url,
            payment_queue,
            finalize_queue,
            simulation_jobs,
            deployment,
            idempotency_lease,
            key_sets,
            vat_registry,
            objects,
        } = adapters;
        let clocks = Clocks::new(clock.clone(), store.clone());
        let tax = TaxService::new(
            store.clone(),
            clocks.clone(),
            Arc::new(BuiltInTax),
            vat_registry.clone(),
        );
        let customers = CustomersService::new(
            store.clone(),
            clocks.clone(),
            gateways.clone(),
            key_sets.clone(),
            deployment,
            tax.clone(),
        );
        let metrics: kernel::MetricCache =
            Arc::new(kernel::TtlCache::new(kernel::cache::METRIC_TTL));
        let catalog = CatalogService::new(store.clone(), clocks.clone(), metrics.clone());
        let usage = usage::UsageService::new(store.clone(), clocks.clone(), metrics, tax.clone());
        let collection = CollectionService::new(
            store.clone(),
            clocks.clone(),
            gateways.clone(),
            notifier.clone(),
            public_url.clone(),
            payment_queue.clone(),
            customers.clone(),
        );
        let wallets = WalletsService::new(
            store.clone(),
            clocks.clone(),
            collection.clone(),
            usage.clone(),
        );
        let credits = CreditsService::new(store.clone(), clocks.clone(), wallets.clone());
        let coupons = CouponsService::new(store.clone(), clocks.clone());
        let retention = RetentionService::new(store.clone(), clocks.clone());
        let documents = DocumentsService::new(store.clone(), clocks.clone(), objects.clone());
        let billing = BillingService::new(
            store.clone(),
            clocks.clone(),
            catalog.clone(),
            collection.clone(),
            credits.clone(),
            coupons.clone(),
            retention.clone(),
            tax.clone(),
            finalize_queue.clone(),
            simulation_jobs.clone(),
        );
        let hosted = hosted::HostedService::new(
            store.clone(),
            clocks.clone(),
            collection.clone(),
            customers.clone(),
            documents.clone(),
        );
        let events = EventsService::new(store.clone(), clocks, deployment);
        Self {
            idempotency: IdempotencyService::new(store.clone(), clock.clone(), idempotency_lease),
            store,
            clock,
            gateways,
            notifier,
            public_url,
            payment_queue,
            finalize_queue,
            simulation_jobs,
            deployment,
            idempotency_lease,
            key_sets,
            vat_registry,
            objects,
            customers,
            catalog,
            usage,
            collection,
            credits,
            wallets,
            coupons,
            tax,
            documents,
            billing,
            events,
            retention,
            hosted,
        }
    }
}
