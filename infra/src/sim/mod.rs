//! `billing-sim`: how long one tenant's renewals on the 1st take on AWS, and what they
//! cost, by simulation. The real pipeline runs — `billing-run`'s handler (the due-index
//! sweep) on its one-minute schedule, the billing queue, `billing-worker`'s handler on
//! `concurrency` Lambda instances taking batches of ten, the post-commit hand-off of
//! each invoice's first payment attempt to the payments queue — against the in-memory
//! store and queues, each call delayed by the DynamoDB, SQS and EventBridge requests it
//! makes ([`model`], [`aws`]) on tokio's paused clock, so simulated hours take seconds.

pub mod aws;
pub mod cost;
pub mod model;
pub mod queues;
pub mod report;
pub mod store;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use billing_app::billing::StartSubscription;
use billing_app::jobs::Sweeper;
use billing_app::ports::*;
use billing_app::{App, Caller};
use billing_domain::billing::invoice::Invoice;
use billing_domain::customers::tenant::TenantMode;
use billing_domain::kernel::ids::{SubscriptionId, TenantId};
use billing_memory::MemoryStore;
use jiff::Timestamp;
use tokio::time::Instant;

use queues::{BillingQueueSim, DispatchSim, Messaging, MessagingCounts, PaymentQueueSim};
use store::SimStore;

/// The 1st the renewals fall due on; the subscriptions start a month earlier.
const RENEWAL_DAY: &str = "2026-12-01T00:00:00Z";
const START_DAY: &str = "2026-11-01T00:00:00Z";
/// `billing-run`'s schedule (template.yaml's `BillingRunSchedule`).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// A run that has not finished by then reports what it reached.
const GIVE_UP_AFTER: Duration = Duration::from_secs(7 * 86_400);
/// The memory of the functions (template.yaml's `Globals.Function.MemorySize`).
pub const LAMBDA_MEMORY_MB: u64 = 256;

/// One run: `subscriptions` renewals of one tenant, billed by `concurrency` workers.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub subscriptions: usize,
    pub concurrency: usize,
    /// The billing queue is FIFO with a message group per tenant (as deployed today).
    pub fifo: bool,
}

/// Lambda invocations and billed milliseconds, by function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LambdaCounts {
    pub invocations: u64,
    pub cold_starts: u64,
    pub billed_ms: u64,
}

/// When each stage finished, from the 1st at midnight (simulated).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stages {
    /// Every renewal's billing job handed to the queue at least once.
    pub sweep: Option<Duration>,
    /// Every renewal's invoice drafted.
    pub draft: Option<Duration>,
    /// Every renewal's invoice numbered (finalized).
    pub finalize: Option<Duration>,
    /// Every renewal's first payment attempt on the payments queue.
    pub payment: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    pub stages: Stages,
    pub dynamo: model::Counts,
    pub messaging: MessagingCounts,
    pub lambda: LambdaCounts,
    /// The invoices of the renewals, and each payment attempt's enqueues right after the
    /// commit that made it (the sweep's safety-net re-enqueues are counted apart).
    pub renewals: Vec<Invoice>,
    pub released: BTreeMap<billing_domain::kernel::ids::PaymentId, u32>,
    pub released_by_sweep: u64,
    pub subscription_ids: Vec<SubscriptionId>,
    /// Invoice numbers used before the renewals (the subscriptions' first invoices).
    pub numbers_before: u64,
    /// The largest invoice item each of the three invoice writes wrote.
    pub invoice_items: store::InvoiceItemBytes,
}

/// Runs `scenario` on a paused-clock runtime of its own.
pub fn run(scenario: Scenario) -> anyhow::Result<Outcome> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?
        .block_on(simulate(scenario))
}

/// `now` on the simulated clock: the 1st at midnight when the simulation starts.
struct SimClock {
    base: Timestamp,
    start: Instant,
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        self.base + (Instant::now() - self.start)
    }
}

struct Fixed(Timestamp);

impl Clock for Fixed {
    fn now(&self) -> Timestamp {
        self.0
    }
}

async fn simulate(scenario: Scenario) -> anyhow::Result<Outcome> {
    let memory = Arc::new(MemoryStore::new());
    let (tenant, subscription_ids) = setup(memory.clone(), scenario.subscriptions).await?;
    let numbers_before = scenario.subscriptions as u64;

    let dynamo = model::Dynamo::default();
    let messaging = Messaging::default();
    let dispatch = Arc::new(DispatchSim {
        messaging: messaging.clone(),
    });
    let store = Arc::new(SimStore::new(
        memory.clone(),
        dynamo.clone(),
        dispatch.clone(),
    ));
    let start = Instant::now();
    let clock = Arc::new(SimClock {
        base: RENEWAL_DAY.parse()?,
        start,
    });
    let payments = Arc::new(PaymentQueueSim::new(messaging.clone()));
    let swept_payments = Arc::new(PaymentQueueSim::new(messaging.clone()));
    let billing_queue = Arc::new(BillingQueueSim::new(scenario.fifo, messaging.clone()));
    let gateway = Arc::new(billing_aws::SandboxGateway::new());
    let app = App::new(store.clone(), clock, gateway)
        .with_payment_queue(payments.clone())
        .with_finalize_queue(billing_queue.clone());
    let sweeper = Sweeper::new(
        app.clone().with_payment_queue(swept_payments.clone()),
        dispatch,
        billing_queue.clone(),
    );

    let lambda = Arc::new(LambdaTotals::default());
    let n = scenario.subscriptions as u64;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..scenario.concurrency {
        let (app, queue, lambda) = (app.clone(), billing_queue.clone(), lambda.clone());
        workers.spawn(async move {
            let mut warm = false;
            loop {
                let jobs = queue.receive().await;
                tokio::time::sleep(aws::POLL_TO_INVOKE).await;
                let invoked = Instant::now();
                if !warm {
                    tokio::time::sleep(aws::COLD_START).await;
                    lambda.cold_starts.fetch_add(1, Ordering::Relaxed);
                    warm = true;
                }
                let response = billing_worker::handle(&app, sqs_event(&jobs)).await;
                lambda.invoked(invoked.elapsed());
                let failed: Vec<usize> = response
                    .batch_item_failures
                    .iter()
                    .filter_map(|f| f.item_identifier.parse().ok())
                    .collect();
                queue.finish(jobs, &failed).await;
            }
        });
    }

    let mut stages = Stages::default();
    let since = |at: Instant| at - start;
    loop {
        let invoked = Instant::now();
        let deadline = sweeper.app.clock.now() + billing_run::TIMEOUT;
        billing_run::handle(&sweeper, EventBridgeEvent::default(), deadline).await?;
        lambda.invoked(invoked.elapsed());
        if stages.sweep.is_none() && billing_queue.distinct() >= n {
            stages.sweep = Some(since(Instant::now()));
        }
        let marks = store.marks();
        if stages.draft.is_none() && marks.drafted >= n {
            stages.draft = marks.last_draft.map(since);
        }
        if stages.finalize.is_none() && marks.numbered >= n {
            stages.finalize = marks.last_number.map(since);
        }
        let seen = payments.seen();
        if seen.enqueued.len() as u64 >= n {
            stages.payment = seen.last_at.map(since);
            break;
        }
        if start.elapsed() > GIVE_UP_AFTER {
            break;
        }
        tokio::time::sleep_until(invoked + SWEEP_EVERY).await;
    }
    workers.abort_all();

    let renewals = renewal_invoices(&memory, tenant).await?;
    let invoice_items = store.marks().largest_invoice_items;
    Ok(Outcome {
        scenario,
        stages,
        dynamo: dynamo.counts(),
        messaging: messaging.counts(),
        lambda: lambda.counts(),
        renewals,
        released: payments.seen().enqueued,
        released_by_sweep: swept_payments
            .seen()
            .enqueued
            .values()
            .map(|n| u64::from(*n))
            .sum(),
        subscription_ids,
        numbers_before,
        invoice_items,
    })
}

#[derive(Default)]
struct LambdaTotals {
    invocations: AtomicU64,
    cold_starts: AtomicU64,
    billed_ms: AtomicU64,
}

impl LambdaTotals {
    fn invoked(&self, took: Duration) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        // Billed per started millisecond.
        let ms = took.as_micros().div_ceil(1000);
        self.billed_ms
            .fetch_add(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn counts(&self) -> LambdaCounts {
        LambdaCounts {
            invocations: self.invocations.load(Ordering::Relaxed),
            cold_starts: self.cold_starts.load(Ordering::Relaxed),
            billed_ms: self.billed_ms.load(Ordering::Relaxed),
        }
    }
}

/// A billing queue batch as Lambda hands it to `billing-worker`.
fn sqs_event(jobs: &[BillingJob]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let mut message = SqsMessage::default();
            message.message_id = Some(i.to_string());
            message.body = serde_json::to_string(job).ok();
            message
        })
        .collect();
    event
}

/// The pipeline in turn, the same on any store: `billing-run`'s handler, then the billing
/// worker on what it queued, ten jobs a batch, with the finalize jobs drafting queues, until
/// a run queues nothing; at the 1st, on a stopped clock. For comparing the request model
/// with the DynamoDB store, request for request: both trigger finalization the same way.
pub async fn in_turn(store: Arc<dyn Store>, dispatch: Arc<dyn Dispatch>) -> anyhow::Result<()> {
    let queue = Arc::new(billing_memory::MemoryBillingQueue::default());
    let app = App::new(
        store,
        Arc::new(Fixed(RENEWAL_DAY.parse()?)),
        Arc::new(billing_aws::SandboxGateway::new()),
    )
    .with_payment_queue(Arc::new(billing_memory::MemoryPaymentQueue::default()))
    .with_finalize_queue(queue.clone());
    let sweeper = Sweeper::new(app.clone(), dispatch, queue.clone());
    loop {
        let deadline = app.clock.now() + billing_run::TIMEOUT;
        billing_run::handle(&sweeper, EventBridgeEvent::default(), deadline).await?;
        let mut handled = 0;
        loop {
            let jobs = queue.take();
            if jobs.is_empty() {
                break;
            }
            handled += jobs.len();
            for batch in jobs.chunks(10) {
                let response = billing_worker::handle(&app, sqs_event(batch)).await;
                anyhow::ensure!(
                    response.batch_item_failures.is_empty(),
                    "the worker failed {:?}",
                    response.batch_item_failures
                );
            }
        }
        if handled == 0 {
            return Ok(());
        }
    }
}

/// What the request model counts for [`in_turn`] over `renewals` renewals of one tenant
/// (set up as the simulation sets them up, uncounted).
pub fn modelled_in_turn(renewals: usize) -> anyhow::Result<model::Counts> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?
        .block_on(async {
            let memory = Arc::new(MemoryStore::new());
            setup(memory.clone(), renewals).await?;
            let dynamo = model::Dynamo::default();
            let dispatch = Arc::new(DispatchSim::default());
            let store = Arc::new(SimStore::new(memory, dynamo.clone(), dispatch.clone()));
            in_turn(store, dispatch).await?;
            Ok(dynamo.counts())
        })
}

/// One tenant with a monthly plan and `count` subscribers (an account with a card and a
/// subscription each), started on the 1st of the month before, their first invoices
/// paid and their events published: what is due on the 1st is exactly the renewals.
pub async fn setup(
    memory: Arc<dyn Store>,
    count: usize,
) -> anyhow::Result<(TenantId, Vec<SubscriptionId>)> {
    // The first payments' receipts go out here too, so that none is due on the 1st.
    let past = App::new(
        memory.clone(),
        Arc::new(Fixed(START_DAY.parse()?)),
        Arc::new(billing_aws::SandboxGateway::new()),
    )
    .with_notifier(Arc::new(billing_memory::MemoryNotifier::default()));
    let (tenant, issued) = past
        .customers
        .create_tenant("Simulated", TenantMode::Sandbox)
        .await?;
    let caller = Caller::of_key(&issued.key, None);
    let plan = past.catalog
        .create_plan(
            &caller,
            serde_json::from_value(serde_json::json!({"code": "monthly", "name": "Monthly", "interval": {"unit": "month"},
                "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 1000}}}}}))?,
        )
        .await?;
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let account = past
            .customers
            .create_account(
                &caller,
                serde_json::from_value(
                    serde_json::json!({"email": format!("s{i}@example.com"), "currency": "usd"}),
                )?,
            )
            .await?;
        past.customers
            .add_payment_method(&caller, account.id, "tok_visa", true)
            .await?;
        let start = StartSubscription::new(account.id, plan.plan.id);
        ids.push(past.billing.create_subscription(&caller, start).await?.id);
    }
    // Settle the month before: first payments made, then every event published (the
    // second round finds those the payments wrote).
    let before_renewals = RENEWAL_DAY.parse::<Timestamp>()? - jiff::SignedDuration::from_secs(1);
    for _ in 0..2 {
        for item in memory.due_items(before_renewals, usize::MAX).await? {
            match item.kind {
                DueKind::Payment(job) => past.collection.handle_payment_job(&job).await?,
                DueKind::Outbox { event_id } => {
                    memory.mark_published(item.tenant_id, event_id).await?
                }
                _ => {}
            }
        }
    }
    Ok((tenant.id, ids))
}

/// The tenant's invoices made on or after the 1st.
async fn renewal_invoices(memory: &MemoryStore, tenant: TenantId) -> anyhow::Result<Vec<Invoice>> {
    let filter = InvoiceFilter {
        created_from: Some(RENEWAL_DAY.parse()?),
        ..InvoiceFilter::default()
    };
    let mut found = Vec::new();
    let mut page = PageRequest {
        scan_budget: usize::MAX,
        ..PageRequest::first(1000)
    };
    loop {
        let listed = memory.list_invoices(tenant, &filter, &page).await?;
        page.starting_after = listed.items.last().map(|i| i.id.to_string());
        found.extend(listed.items);
        if !listed.has_more {
            return Ok(found);
        }
    }
}
