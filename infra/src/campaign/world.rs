//! One run's world: the app over the memory store, every port behind one switchable hook,
//! the fakes the invariants read (gateway, notifier, outbox, webhook receiver), and the
//! deployment's background work (sweep, queues, fan-out) run until quiet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use billing_app::events::Fanout;
use billing_app::jobs::Sweeper;
use billing_app::ports::*;
use billing_app::{App, Caller};
use billing_aws::SandboxGateway;
use billing_domain::customers::tenant::TenantMode;
use billing_domain::events::record::DomainEvent;
use billing_domain::kernel::deployment::Deployment;
use billing_domain::kernel::ids::TenantId;
use billing_memory::hooked::{Hook, Hooked, Op, Seen};
use billing_memory::{MemoryBillingQueue, MemoryNotifier, MemoryPaymentQueue, MemoryStore};
use jiff::{SignedDuration, Timestamp};

use super::flows::Job;

/// Where every world's clock starts.
pub const T0: &str = "2027-01-01T00:00:00Z";

/// A clock the campaign moves by hand.
pub struct Frozen(Mutex<Timestamp>);

impl Frozen {
    pub fn set(&self, at: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for Frozen {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The hook of a world's ports: quiet while the world is set up, then the run's.
#[derive(Default)]
struct Switch(Mutex<Option<Arc<dyn Hook>>>);

impl Switch {
    fn current(&self) -> Option<Arc<dyn Hook>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl Hook for Switch {
    async fn before(&self, op: Op) -> Option<billing_memory::hooked::Fault> {
        self.current()?.before(op).await
    }
    async fn after(&self, op: Op, seen: Seen) -> Option<billing_memory::hooked::Fault> {
        self.current()?.after(op, seen).await
    }
}

/// The bus and webhook queue: what was published, and deliveries scheduled.
#[derive(Default)]
pub struct Outbox {
    published: Mutex<Vec<(TenantId, DomainEvent)>>,
    scheduled: Mutex<Vec<DeliveryJob>>,
}

impl Outbox {
    fn take(&self) -> (Vec<(TenantId, DomainEvent)>, Vec<DeliveryJob>) {
        (
            std::mem::take(&mut *self.published.lock().unwrap_or_else(|e| e.into_inner())),
            std::mem::take(&mut *self.scheduled.lock().unwrap_or_else(|e| e.into_inner())),
        )
    }
}

#[async_trait]
impl Dispatch for Outbox {
    async fn publish(&self, tenant: TenantId, events: &[DomainEvent]) -> Result<(), StoreError> {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(events.iter().map(|e| (tenant, e.clone())));
        Ok(())
    }

    async fn schedule_delivery(
        &self,
        job: &DeliveryJob,
        _delay: SignedDuration,
    ) -> Result<(), StoreError> {
        self.scheduled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job.clone());
        Ok(())
    }
}

/// A webhook receiver that accepts everything and remembers which events reached it.
#[derive(Default)]
pub struct Receiver(Mutex<BTreeSet<String>>);

#[async_trait]
impl WebhookSender for Receiver {
    async fn send(&self, request: &WebhookRequest) -> SendOutcome {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.event_id.to_string());
        SendOutcome {
            status: Some(200),
            error: None,
            latency_ms: 0,
        }
    }
}

#[derive(Clone)]
pub struct World {
    pub app: App,
    pub caller: Caller,
    pub clock: Arc<Frozen>,
    pub memory: Arc<MemoryStore>,
    pub gateway: Arc<SandboxGateway>,
    pub notifier: Arc<MemoryNotifier>,
    pub fanout: Fanout,
    outbox: Arc<Outbox>,
    receiver: Arc<Receiver>,
    payments: Arc<MemoryPaymentQueue>,
    sweeper: Sweeper,
    billing: Arc<MemoryBillingQueue>,
    switch: Arc<Switch>,
}

impl World {
    pub async fn new(seed: u64) -> anyhow::Result<Self> {
        let switch = Arc::new(Switch::default());
        let hook: Arc<dyn Hook> = switch.clone();
        let clock = Arc::new(Frozen(Mutex::new(T0.parse()?)));
        let memory = Arc::new(MemoryStore::new());
        let gateway = Arc::new(SandboxGateway::new());
        let notifier = Arc::new(MemoryNotifier::default());
        let outbox = Arc::new(Outbox::default());
        let receiver = Arc::new(Receiver::default());
        let payments = Arc::new(MemoryPaymentQueue::default());
        let billing = Arc::new(MemoryBillingQueue::default());
        let dispatch: Arc<dyn Dispatch> = Arc::new(Hooked::new(outbox.clone(), hook.clone()));
        let app = App::new(
            Arc::new(Hooked::new(memory.clone(), hook.clone())),
            clock.clone(),
            Arc::new(Hooked::new(gateway.clone(), hook.clone())),
        )
        .with_deployment(Deployment::Local)
        .with_notifier(Arc::new(Hooked::new(notifier.clone(), hook.clone())))
        .with_payment_queue(Arc::new(Hooked::new(payments.clone(), hook.clone())));
        let fanout = Fanout::new(
            app.events.clone(),
            dispatch.clone(),
            Arc::new(Hooked::new(receiver.clone(), hook)),
        );
        let sweeper = Sweeper::new(app.clone(), dispatch, billing.clone());
        let (_, issued) = app
            .customers
            .create_tenant(&format!("Campaign {seed}"), TenantMode::Sandbox)
            .await?;
        Ok(Self {
            caller: Caller::of_key(&issued.key, None),
            app,
            clock,
            memory,
            gateway,
            notifier,
            fanout,
            outbox,
            receiver,
            payments,
            sweeper,
            billing,
            switch,
        })
    }

    pub fn tenant(&self) -> TenantId {
        self.caller.tenant_id
    }

    pub fn arm(&self, hook: Arc<dyn Hook>) {
        *self.switch.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    pub fn disarm(&self) {
        *self.switch.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// What the deployment does in the background, until nothing is left to do: the
    /// sweep (a minute past each grace), the billing and payment workers on what it
    /// queued, the fan-out of what was published and of scheduled deliveries. A failing
    /// item stays due and is tried again in the next round, as in AWS.
    pub async fn settle(&self) {
        for _ in 0..8 {
            let mut work = 0;
            for job in self.payments.take() {
                work += 1;
                let _ = self.app.collection.handle_payment_job(&job).await;
            }
            let jobs = self.billing.take();
            if !jobs.is_empty() {
                work += jobs.len();
                let _ = self
                    .app
                    .billing
                    .run_billing_jobs(self.tenant(), &jobs)
                    .await;
            }
            let (published, scheduled) = self.outbox.take();
            work += published.len() + scheduled.len();
            for (tenant_id, event) in published {
                let _ = self
                    .fanout
                    .handle(WebhookMessage::Event { tenant_id, event })
                    .await;
            }
            for job in scheduled {
                let _ = self.fanout.handle(WebhookMessage::Deliver(job)).await;
            }
            if work == 0 {
                // Everything due within the graces (outbox, hand-over, deliveries).
                self.clock
                    .set(self.clock.now() + SignedDuration::from_mins(20));
            }
            match self.sweeper.sweep(1000).await {
                Ok(report) => {
                    work += report.republished
                        + report.billing_jobs_queued
                        + report.payment_jobs_queued
                        + report.retries_queued
                        + report.errors.len();
                }
                // The next minute's sweep tries again.
                Err(_) => work += 1,
            }
            if work == 0 {
                return;
            }
        }
    }

    /// The world as the invariants see it, read from the memory store and the fakes.
    pub async fn outcome(&self, job: &Job) -> anyhow::Result<Outcome> {
        let tenant = self.tenant();
        let store = self.memory.as_ref();
        let page = PageRequest::first(1000);
        let invoices = store
            .list_invoices(tenant, &InvoiceFilter::default(), &page)
            .await?
            .items;
        let events = store
            .list_events(tenant, &EventFilter::default(), &page)
            .await?
            .items;
        let payments = store
            .list_payments(tenant, &PaymentFilter::default(), &page)
            .await?
            .items;
        let mut outcome = Outcome::default();
        for invoice in &invoices {
            outcome.invoices.push(format!(
                "{:?} {:?} {:?} total {} paid {} {:?}",
                invoice.subscription_id.is_some(),
                invoice.billing_reason,
                invoice.period.map(|p| p.start),
                invoice.total.get(),
                invoice.amount_paid.get(),
                invoice.status,
            ));
            if let Some(number) = &invoice.number {
                outcome.numbers.push(number.clone());
            }
            outcome.periods.push(format!(
                "{:?} {:?} {:?}",
                invoice.subscription_id, invoice.billing_reason, invoice.period
            ));
            if invoice.amount_paid.get() > invoice.total.get() {
                outcome.overpaid.push(invoice.id.to_string());
            }
        }
        for event in &events {
            *outcome
                .events
                .entry(format!("{:?}", event.event_type))
                .or_default() += 1;
            if !event.published {
                outcome.unpublished.push(event.id.to_string());
            }
        }
        for payment in &payments {
            outcome.payments.push(format!(
                "{:?} {} #{}",
                payment.status,
                payment.amount.get(),
                payment.attempt
            ));
        }
        outcome.charges = (self.gateway.charge_count(), self.gateway.succeeded_count());
        // A notice's key starts with the account's id, which differs from run to run.
        outcome.notices = self
            .notifier
            .sent()
            .into_iter()
            .map(|n| {
                n.key
                    .split_once('/')
                    .map_or(n.key.clone(), |(_, k)| k.to_owned())
            })
            .collect();
        // Notices go out at least once: a worker that dies between the send and its
        // confirmation sends the notice again. Each must go out; a repeat is allowed.
        outcome.notices.sort();
        outcome.notices.dedup();
        // An email's key ends with the id of the event it answers, which differs from run
        // to run too; what must match is how many occurrences of each kind went out.
        for notice in &mut outcome.notices {
            if let Some(at) = notice.find("-evt_") {
                notice.truncate(at);
            }
        }
        outcome.delivered = self
            .receiver
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        outcome.flow = job.observe(self).await?;
        let pending = store.pending_invoices(tenant, 100).await?;
        if !pending.is_empty() {
            outcome
                .stuck
                .push(format!("{} invoices pending", pending.len()));
        }
        let due = store.due_items(self.clock.now(), 100).await?;
        if !due.is_empty() {
            outcome
                .stuck
                .push(format!("{} items overdue in the due index", due.len()));
        }
        outcome.invoices.sort();
        outcome.numbers.sort();
        outcome.payments.sort();
        outcome.notices.sort();
        Ok(outcome)
    }
}

/// The final state of a run, without ids and with lists sorted, so two runs of one seed
/// compare equal exactly when they came to the same result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    invoices: Vec<String>,
    numbers: Vec<String>,
    periods: Vec<String>,
    overpaid: Vec<String>,
    events: BTreeMap<String, usize>,
    unpublished: Vec<String>,
    payments: Vec<String>,
    /// Distinct idempotency keys charged, and succeeded charges, at the gateway.
    charges: (usize, usize),
    notices: Vec<String>,
    delivered: usize,
    /// What the flow itself reports (usage counted, dunning steps, deliveries, …).
    flow: Vec<String>,
    pub stuck: Vec<String>,
}

impl Outcome {
    /// The invariants a run must keep whatever happened to it.
    pub fn invariants(&self) -> Vec<String> {
        let mut broken = Vec::new();
        let mut periods = self.periods.clone();
        periods.sort();
        let before = periods.len();
        periods.dedup();
        if periods.len() != before {
            broken.push("two invoices for one period".into());
        }
        let expected: Vec<String> = (1..=self.numbers.len())
            .map(|n| format!("INV-{n:06}"))
            .collect();
        if self.numbers != expected {
            broken.push(format!("numbers not gapless: {:?}", self.numbers));
        }
        if !self.overpaid.is_empty() {
            broken.push("an invoice paid more than its total".into());
        }
        if !self.unpublished.is_empty() {
            broken.push(format!("{} events never published", self.unpublished.len()));
        }
        if !self.stuck.is_empty() {
            broken.push(format!("stuck: {}", self.stuck.join(", ")));
        }
        broken
    }

    /// The invariants, and everything the reference run of the same seed came to: one
    /// invoice per period, one charge per attempt, each usage event counted once, each
    /// domain event recorded once, …
    pub fn against(&self, reference: &Outcome) -> Vec<String> {
        let mut broken = self.invariants();
        let mut compare = |what: &str, ours: String, theirs: String| {
            if ours != theirs {
                broken.push(format!("{what}: {ours} instead of {theirs}"));
            }
        };
        compare(
            "invoices",
            format!("{:?}", self.invoices),
            format!("{:?}", reference.invoices),
        );
        compare(
            "events",
            format!("{:?}", self.events),
            format!("{:?}", reference.events),
        );
        compare(
            "payments",
            format!("{:?}", self.payments),
            format!("{:?}", reference.payments),
        );
        compare(
            "gateway (keys charged, succeeded)",
            format!("{:?}", self.charges),
            format!("{:?}", reference.charges),
        );
        compare(
            "notices",
            format!("{:?}", self.notices),
            format!("{:?}", reference.notices),
        );
        compare(
            "webhook events delivered",
            self.delivered.to_string(),
            reference.delivered.to_string(),
        );
        compare(
            "flow",
            format!("{:?}", self.flow),
            format!("{:?}", reference.flow),
        );
        broken
    }
}
