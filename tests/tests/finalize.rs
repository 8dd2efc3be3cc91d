//! Drafting renewals in parallel and numbering them in bulk (issue 20): the finalizer
//! numbers a tenant's drafts gaplessly, several writes at a time, exactly once under
//! duplicate jobs, concurrent finalizers and crashes, and each numbered invoice gets its
//! `invoice.finalized` event and first payment attempt once. On both stores.

use std::collections::BTreeMap;
use std::sync::Arc;

use billing_app::billing::StartSubscription;
use billing_app::ports::{
    BillingJob, Clock, EventFilter, InvoiceFilter, NumberedInvoice, PageRequest, PaymentFilter,
    PendingStage, Store, StoreError,
};
use billing_app::{App, Caller};
use billing_domain::billing::invoice::{Invoice, InvoiceStatus};
use billing_domain::kernel::ids::SubscriptionId;
use billing_tests::clock::ManualClock;
use billing_tests::Races;
use jiff::{SignedDuration, Timestamp};

/// More than one numbering write holds (99).
const SUBSCRIPTIONS: usize = 110;

/// A tenant with `count` daily subscriptions started on `clock` `days` days and a minute
/// ago: each has its first invoice (numbered at the start) and `days` renewals due now.
async fn tenant_with_renewals(
    app: &App,
    clock: &ManualClock,
    count: usize,
    days: i64,
) -> (Caller, Vec<SubscriptionId>) {
    let now = clock.now();
    clock.set(now - SignedDuration::from_hours(24 * days) - SignedDuration::from_mins(1));
    let caller = billing_tests::admin(app, "Big").await;
    let first = billing_tests::subscribe(
        app,
        &caller,
        serde_json::json!({"email": "big@acme.test", "currency": "usd"}),
        "day",
        500,
    )
    .await;
    let mut ids = vec![first.id];
    for _ in 1..count {
        let start = StartSubscription::new(first.account_id, first.terms.plan_id);
        ids.push(
            app.billing
                .create_subscription(&caller, start)
                .await
                .unwrap()
                .id,
        );
    }
    clock.set(now);
    (caller, ids)
}

fn app_on(store: &Arc<dyn Store>, clock: &Arc<ManualClock>) -> App {
    billing_tests::app_with_clock(store.clone(), clock.clone())
}

async fn all_invoices(app: &App, caller: &Caller) -> Vec<Invoice> {
    let mut all = Vec::new();
    let mut page = PageRequest::first(100);
    loop {
        let got = app
            .billing
            .list_invoices(caller, &InvoiceFilter::default(), &page)
            .await
            .unwrap();
        let last = got.items.last().map(|i| i.id.to_string());
        all.extend(got.items);
        if !got.has_more {
            return all;
        }
        page.starting_after = last;
    }
}

/// How many stored events of `event_type` each resource has.
async fn events_per_resource(
    store: &dyn Store,
    caller: &Caller,
    event_type: &str,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let filter = EventFilter {
        event_type: Some(event_type.to_owned()),
        resource_id: None,
    };
    let mut page = PageRequest::first(100);
    loop {
        let got = store
            .list_events(caller.tenant_id, &filter, &page)
            .await
            .unwrap();
        let last = got.items.last().map(|e| e.id.to_string());
        for event in &got.items {
            *counts.entry(event.resource_id.clone()).or_insert(0) += 1;
        }
        if !got.has_more {
            return counts;
        }
        page.starting_after = last;
    }
}

/// How many payment attempts each invoice has.
async fn payments_per_invoice(store: &dyn Store, caller: &Caller) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut page = PageRequest::first(100);
    loop {
        let got = store
            .list_payments(caller.tenant_id, &PaymentFilter::default(), &page)
            .await
            .unwrap();
        let last = got.items.last().map(|p| p.id.to_string());
        for payment in &got.items {
            *counts.entry(payment.invoice_id.to_string()).or_insert(0) += 1;
        }
        if !got.has_more {
            return counts;
        }
        page.starting_after = last;
    }
}

/// Every invoice open under one of the numbers 1..=n, each number once, and each with one
/// `invoice.finalized` event and one payment attempt.
async fn assert_numbered_once(app: &App, caller: &Caller, n: usize) {
    let invoices = all_invoices(app, caller).await;
    assert_eq!(invoices.len(), n);
    let mut numbers: Vec<String> = invoices.iter().filter_map(|i| i.number.clone()).collect();
    numbers.sort();
    let expected: Vec<String> = (1..=n).map(|k| format!("INV-{k:06}")).collect();
    assert_eq!(numbers, expected, "gapless, each number once");
    assert!(invoices.iter().all(|i| i.status == InvoiceStatus::Open));
    let finalized = events_per_resource(app.store.as_ref(), caller, "invoice.finalized").await;
    let payments = payments_per_invoice(app.store.as_ref(), caller).await;
    for invoice in &invoices {
        let id = invoice.id.to_string();
        assert_eq!(
            finalized.get(&id),
            Some(&1),
            "one invoice.finalized for {id}"
        );
        assert_eq!(payments.get(&id), Some(&1), "one first attempt for {id}");
    }
    let pending = app
        .store
        .pending_invoices(caller.tenant_id, 10)
        .await
        .unwrap();
    assert!(pending.is_empty(), "{pending:?}");
}

/// The tenant's pending invoices at `stage`.
async fn at_stage(
    store: &dyn Store,
    tenant: billing_domain::kernel::ids::TenantId,
    stage: PendingStage,
) -> Vec<billing_app::ports::PendingInvoice> {
    let mut pending = store.pending_invoices(tenant, 99).await.unwrap();
    pending.retain(|p| p.stage == stage);
    pending
}

async fn drafts_are_numbered_gaplessly_in_several_writes(store: Arc<dyn Store>) {
    let clock = ManualClock::at(Timestamp::now());
    let app = app_on(&store, &clock);
    let (caller, ids) = tenant_with_renewals(&app, &clock, SUBSCRIPTIONS, 1).await;
    let tenant = caller.tenant_id;

    let drafted = app
        .billing
        .draft_due_subscriptions(tenant, &ids, clock.now())
        .await;
    assert!(drafted.iter().all(|d| matches!(d, Ok(1))), "{drafted:?}");
    // Drafts hold no number and took none: the sequence is where the starts left it.
    let drafts = all_invoices(&app, &caller).await;
    assert_eq!(
        drafts
            .iter()
            .filter(|i| i.status == InvoiceStatus::Draft && i.number.is_none())
            .count(),
        SUBSCRIPTIONS
    );
    assert_eq!(
        store.next_invoice_number(tenant).await.unwrap().number,
        SUBSCRIPTIONS as u64 + 1
    );
    let created = events_per_resource(store.as_ref(), &caller, "invoice.created").await;
    assert_eq!(
        created.len(),
        2 * SUBSCRIPTIONS,
        "each draft announced once"
    );

    let report = app.billing.finalize_pending_invoices(tenant).await.unwrap();
    assert_eq!(report.numbered, SUBSCRIPTIONS);
    assert_eq!(report.transactions, 2, "99 and 11");
    assert_eq!(report.followed_up, SUBSCRIPTIONS);
    assert_numbered_once(&app, &caller, 2 * SUBSCRIPTIONS).await;
    // Oldest first: the drafts all fell due at the same moment, so by id.
    let mut renewals: Vec<Invoice> = all_invoices(&app, &caller)
        .await
        .into_iter()
        .filter(|i| i.number.as_deref() > Some("INV-000110"))
        .collect();
    renewals.sort_by_key(|i| i.number.clone());
    assert!(renewals
        .windows(2)
        .all(|w| (w[0].created_at, w[0].id) < (w[1].created_at, w[1].id)));
    assert_eq!(
        app.billing.finalize_pending_invoices(tenant).await.unwrap(),
        Default::default()
    );
}

async fn duplicate_and_concurrent_finalizers_number_each_draft_once(store: Arc<dyn Store>) {
    let clock = ManualClock::at(Timestamp::now());
    let app = app_on(&store, &clock);
    let (caller, ids) = tenant_with_renewals(&app, &clock, SUBSCRIPTIONS, 1).await;
    let tenant = caller.tenant_id;
    app.billing
        .draft_due_subscriptions(tenant, &ids, clock.now())
        .await;

    // Two finalizers at once, and the same finalize job delivered twice on top.
    let job = [BillingJob::Finalize { tenant }];
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                app.billing
                    .finalize_pending_invoices(tenant)
                    .await
                    .map(|_| ())
            })
        })
        .chain((0..2).map(|_| {
            let (app, job) = (app.clone(), job.clone());
            tokio::spawn(async move { app.billing.run_billing_jobs(tenant, &job).await.remove(0) })
        }))
        .collect();
    for run in runs {
        // A finalizer that kept losing the race may give up (its job comes back).
        let _ = run.await.unwrap();
    }
    app.billing.finalize_pending_invoices(tenant).await.unwrap();
    assert_numbered_once(&app, &caller, 2 * SUBSCRIPTIONS).await;
}

async fn a_failed_numbering_write_consumes_no_number(store: Arc<dyn Store>) {
    let clock = ManualClock::at(Timestamp::now());
    let app = app_on(&store, &clock);
    let (caller, ids) = tenant_with_renewals(&app, &clock, 3, 1).await;
    let tenant = caller.tenant_id;
    app.billing
        .draft_due_subscriptions(tenant, &ids, clock.now())
        .await;
    let drafts = at_stage(store.as_ref(), tenant, PendingStage::Number).await;
    assert_eq!(drafts.len(), 3);
    let numbered = |stale: usize| -> Vec<NumberedInvoice> {
        drafts
            .iter()
            .zip(4..)
            .enumerate()
            .map(|(i, (d, number))| {
                let mut invoice = d.invoice.clone();
                invoice.number = Some(format!("INV-{number:06}"));
                invoice.status = InvoiceStatus::Open;
                invoice.version += 1;
                NumberedInvoice {
                    previous_version: d.invoice.version + u64::from(i == stale),
                    invoice,
                    number,
                    finalization: d.finalization,
                }
            })
            .collect()
    };
    // One draft changed meanwhile: the whole write fails, the sequence stays.
    assert!(matches!(
        store.number_invoices(tenant, "INV", &numbered(2)).await,
        Err(StoreError::VersionConflict { .. })
    ));
    assert_eq!(store.next_invoice_number(tenant).await.unwrap().number, 4);
    assert_eq!(
        at_stage(store.as_ref(), tenant, PendingStage::Number)
            .await
            .len(),
        3
    );
    // A sequence another finalizer moved: nothing either.
    let mut late = numbered(usize::MAX);
    for (n, number) in late.iter_mut().zip(5..) {
        n.number = number;
    }
    assert!(matches!(
        store.number_invoices(tenant, "INV", &late).await,
        Err(StoreError::VersionConflict { .. })
    ));
    // A prefix changed since the sequence was read (a finalizer numbers from the sequence
    // it wrote rounds before): nothing either.
    assert!(matches!(
        store
            .number_invoices(tenant, "OLD", &numbered(usize::MAX))
            .await,
        Err(StoreError::VersionConflict { .. })
    ));
    assert_eq!(
        at_stage(store.as_ref(), tenant, PendingStage::FollowUps)
            .await
            .len(),
        0
    );
    // The finalizer then numbers them from 4, and a second write of the same fails.
    store
        .number_invoices(tenant, "INV", &numbered(usize::MAX))
        .await
        .unwrap();
    assert!(store
        .number_invoices(tenant, "INV", &numbered(usize::MAX))
        .await
        .is_err());
    assert_eq!(store.next_invoice_number(tenant).await.unwrap().number, 7);
    let owed = at_stage(store.as_ref(), tenant, PendingStage::FollowUps).await;
    assert_eq!(owed.len(), 3, "numbered, owing their follow-ups");
    // Meanwhile nobody replaces one whole (that would drop the follow-ups it owes).
    let first = owed[0].invoice.id;
    let early = app.billing.void_invoice(&caller, first, false).await;
    assert!(early.is_err(), "{early:?}");
    assert_eq!(
        at_stage(store.as_ref(), tenant, PendingStage::FollowUps)
            .await
            .len(),
        3
    );
    // A finalizer that stopped here: the next one writes the follow-ups, once.
    app.billing.finalize_pending_invoices(tenant).await.unwrap();
    assert_numbered_once(&app, &caller, 6).await;
    let voided = app
        .billing
        .void_invoice(&caller, first, false)
        .await
        .unwrap();
    assert_eq!(voided.status, InvoiceStatus::Void);
}

async fn drafts_a_lost_finalize_job_left_are_handed_over_by_the_sweep(store: Arc<dyn Store>) {
    let clock = ManualClock::at(Timestamp::now());
    let queue = Arc::new(billing_memory::MemoryBillingQueue::default());
    let app = app_on(&store, &clock).with_finalize_queue(queue.clone());
    let (caller, ids) = tenant_with_renewals(&app, &clock, 5, 1).await;
    let tenant = caller.tenant_id;
    let jobs: Vec<BillingJob> = ids
        .iter()
        .map(|id| BillingJob::Subscription { tenant, id: *id })
        .collect();
    assert!(app
        .billing
        .run_billing_jobs(tenant, &jobs)
        .await
        .iter()
        .all(Result::is_ok));
    // Drafting asked for a finalize job; the message is lost.
    assert_eq!(queue.take(), [BillingJob::Finalize { tenant }]);
    // A redelivery of the drafting jobs drafts nothing twice.
    assert!(app
        .billing
        .run_billing_jobs(tenant, &jobs)
        .await
        .iter()
        .all(Result::is_ok));
    queue.take();
    assert_eq!(
        at_stage(store.as_ref(), tenant, PendingStage::Number)
            .await
            .len(),
        5
    );
    assert_eq!(
        events_per_resource(store.as_ref(), &caller, "invoice.created")
            .await
            .len(),
        10
    );

    let sweeper = billing_app::jobs::Sweeper::new(
        app.clone(),
        Arc::new(billing_tests::NoDispatch),
        queue.clone(),
    );
    sweeper.sweep(1000).await.unwrap();
    assert!(
        !queue.take().contains(&BillingJob::Finalize { tenant }),
        "not before a minute"
    );
    clock.advance(SignedDuration::from_secs(61));
    sweeper.sweep(1000).await.unwrap();
    let handed = queue.take();
    assert_eq!(
        handed
            .iter()
            .filter(|j| **j == BillingJob::Finalize { tenant })
            .count(),
        1,
        "one finalize job for the tenant's five drafts: {handed:?}"
    );
    let finalize = [BillingJob::Finalize { tenant }];
    assert!(app.billing.run_billing_jobs(tenant, &finalize).await[0].is_ok());
    assert_numbered_once(&app, &caller, 10).await;
    sweeper.sweep(1000).await.unwrap();
    assert!(
        !queue.take().contains(&BillingJob::Finalize { tenant }),
        "nothing left to hand over"
    );
}

/// A billing queue that drops a tenant's repeat finalize requests within a second, as the
/// deployed FIFO queue does (their deduplication id is the tenant and the second).
#[derive(Default)]
struct CoalescingQueue(billing_memory::MemoryBillingQueue);

#[async_trait::async_trait]
impl billing_app::ports::BillingQueue for CoalescingQueue {
    async fn enqueue(&self, jobs: &[BillingJob]) -> Result<(), StoreError> {
        self.0.enqueue(jobs).await
    }

    fn coalesces_finalize_jobs_per_second(&self) -> bool {
        true
    }
}

/// A draft committed after a running finalize job's last read, in the second of the job's
/// request, sends a request the FIFO queue drops: the job reads once more after that second
/// and numbers it then, instead of leaving it to its hand-over a minute later. On a queue
/// that drops nothing the job ends at once (a later request of its own comes).
#[tokio::test(start_paused = true)]
async fn a_finalize_job_reads_once_more_after_its_deduplication_second() {
    for coalescing in [true, false] {
        let store = billing_tests::memory_store();
        let clock = ManualClock::at(Timestamp::now());
        let queue: Arc<dyn billing_app::ports::BillingQueue> = if coalescing {
            Arc::new(CoalescingQueue::default())
        } else {
            Arc::new(billing_memory::MemoryBillingQueue::default())
        };
        let app = app_on(&store, &clock).with_finalize_queue(queue);
        let (caller, ids) = tenant_with_renewals(&app, &clock, 2, 1).await;
        let tenant = caller.tenant_id;
        app.billing
            .draft_due_subscriptions(tenant, &ids[..1], clock.now())
            .await;
        let job = {
            let app = app.clone();
            tokio::spawn(async move {
                app.billing
                    .run_billing_jobs(tenant, &[BillingJob::Finalize { tenant }])
                    .await
                    .remove(0)
            })
        };
        // The job has numbered the first draft and waits for its second to pass (the
        // clock stands still: within the same second); the second draft comes now.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(!job.is_finished() || !coalescing);
        app.billing
            .draft_due_subscriptions(tenant, &ids[1..], clock.now())
            .await;
        job.await.unwrap().unwrap();
        let left = at_stage(store.as_ref(), tenant, PendingStage::Number).await;
        if coalescing {
            assert!(left.is_empty(), "the last read numbered it: {left:?}");
            assert_numbered_once(&app, &caller, 4).await;
        } else {
            assert_eq!(left.len(), 1, "no second read without deduplication");
        }
    }
}

/// Fails the operations whose positions (counted from 1, over every port) it holds, or
/// with `crash_after`, every operation past that one: a process that died there.
struct FailAt {
    positions: Vec<u64>,
    crash_after: Option<u64>,
    seen: std::sync::atomic::AtomicU64,
}

impl FailAt {
    fn new(positions: Vec<u64>, crash_after: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            positions,
            crash_after,
            seen: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

#[async_trait::async_trait]
impl billing_memory::hooked::Hook for FailAt {
    async fn before(
        &self,
        _op: billing_memory::hooked::Op,
    ) -> Option<billing_memory::hooked::Fault> {
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let failed = self.positions.contains(&n) || self.crash_after.is_some_and(|k| n > k);
        failed.then(|| billing_memory::hooked::Fault("ThrottlingException".into()))
    }
}

/// 110 drafts (two rounds, the second numbered while the first's follow-ups are written)
/// finalized by a job whose `k`-th operation fails, for `k` spread over the whole run: the
/// finalizer retries from a fresh read after a pause, and the job succeeds with every
/// draft numbered once, gaplessly, each with one `invoice.finalized` and one payment
/// attempt. Then the same with the process dying after the `k`-th operation (every later
/// one fails): the job fails, its redelivery finishes, and nothing is numbered, announced
/// or charged twice.
#[tokio::test(start_paused = true)]
async fn a_pipelined_finalizer_retries_a_failed_write_and_survives_a_crash_at_any_step() {
    let counted = {
        let drafted = Drafted::new(SUBSCRIPTIONS).await;
        let tenant = drafted.caller.tenant_id;
        let hook = FailAt::new(Vec::new(), None);
        let done = drafted
            .hooked(hook.clone())
            .billing
            .run_billing_jobs(tenant, &[BillingJob::Finalize { tenant }])
            .await;
        assert!(done[0].is_ok());
        hook.seen.load(std::sync::atomic::Ordering::SeqCst)
    };
    assert!(counted > SUBSCRIPTIONS as u64, "{counted} operations");
    for k in (1..=counted).step_by(usize::try_from(counted / 12).unwrap_or(1).max(1)) {
        for crash in [false, true] {
            let drafted = Drafted::new(SUBSCRIPTIONS).await;
            let (app, caller) = (&drafted.app, &drafted.caller);
            let tenant = caller.tenant_id;
            let hook = if crash {
                FailAt::new(Vec::new(), Some(k))
            } else {
                FailAt::new(vec![k], None)
            };
            let job = [BillingJob::Finalize { tenant }];
            let done = drafted
                .hooked(hook)
                .billing
                .run_billing_jobs(tenant, &job)
                .await
                .remove(0);
            if crash && k < counted {
                assert!(done.is_err(), "k = {k}: a dead process finishes nothing");
                // The message comes back to a healthy worker.
                app.billing
                    .run_billing_jobs(tenant, &job)
                    .await
                    .remove(0)
                    .unwrap();
            } else {
                assert!(
                    done.is_ok(),
                    "k = {k}: the failed write was retried: {done:?}"
                );
            }
            assert_numbered_once(app, caller, 2 * SUBSCRIPTIONS).await;
        }
    }
}

/// A numbering write that takes 45 s of the job's clock: a finalize job is out of its time
/// budget (the billing worker's Lambda timeout) after one round.
struct SlowNumbering(Arc<ManualClock>);

#[async_trait::async_trait]
impl billing_memory::hooked::Hook for SlowNumbering {
    async fn before(
        &self,
        op: billing_memory::hooked::Op,
    ) -> Option<billing_memory::hooked::Fault> {
        if op.method == "number_invoices" {
            self.0.set(self.0.now() + SignedDuration::from_secs(45));
        }
        None
    }
}

/// A finalize job past its time budget lets its round's follow-ups finish, hands the rest
/// to a new finalize job and ends. Its own message coming back as well (the worker died
/// before deleting it), the two jobs running at once, and every job they hand over in
/// turn: each draft is numbered once, gaplessly, with one `invoice.finalized` and one
/// payment attempt.
#[tokio::test(start_paused = true)]
async fn a_finalize_job_out_of_time_hands_the_rest_to_a_new_job() {
    let store = billing_tests::memory_store();
    let clock = ManualClock::at(Timestamp::now());
    let app = app_on(&store, &clock);
    let (caller, ids) = tenant_with_renewals(&app, &clock, SUBSCRIPTIONS, 1).await;
    let tenant = caller.tenant_id;
    app.billing
        .draft_due_subscriptions(tenant, &ids, clock.now())
        .await;
    let queue = Arc::new(billing_memory::MemoryBillingQueue::default());
    let slow: Arc<dyn Store> = Arc::new(billing_memory::hooked::Hooked::new(
        store.clone(),
        Arc::new(SlowNumbering(clock.clone())),
    ));
    let slow = app_on(&slow, &clock).with_finalize_queue(queue.clone());
    let job = vec![BillingJob::Finalize { tenant }];

    slow.billing
        .run_billing_jobs(tenant, &job)
        .await
        .remove(0)
        .unwrap();
    assert_eq!(queue.take(), job, "the rest handed to a new job");
    assert_eq!(
        at_stage(store.as_ref(), tenant, PendingStage::Number)
            .await
            .len(),
        SUBSCRIPTIONS - 99,
        "one round numbered"
    );
    assert!(
        at_stage(store.as_ref(), tenant, PendingStage::FollowUps)
            .await
            .is_empty(),
        "its follow-ups written before the hand-over"
    );

    // The new job and the redelivered one at once, then whatever they hand over.
    let mut jobs = vec![job.clone(), job.clone()];
    while !jobs.is_empty() {
        let runs: Vec<_> = jobs
            .drain(..)
            .map(|job| {
                let slow = slow.clone();
                tokio::spawn(async move { slow.billing.run_billing_jobs(tenant, &job).await })
            })
            .collect();
        for run in runs {
            if run.await.unwrap().remove(0).is_err() {
                // Lost the sequence too often: its message comes back.
                jobs.push(job.clone());
            }
        }
        let handed = queue.take();
        if !handed.is_empty() {
            jobs.push(handed);
        }
    }
    assert_numbered_once(&app, &caller, 2 * SUBSCRIPTIONS).await;
}

/// What happens, on the store without the hook, just before the finalizer's second
/// numbering write (its drafts read while the first was in flight).
enum Between {
    /// A subscription starts and takes the next number itself.
    Start(App, Box<(Caller, StartSubscription)>),
    /// Another finalizer numbers what is left.
    Finalize(App, billing_domain::kernel::ids::TenantId),
}

/// Counts the finalizer's sequence reads and refused numbering writes, and does what
/// [`Between`] says before its second numbering write.
#[derive(Default)]
struct StartBetweenRounds {
    start: std::sync::OnceLock<Between>,
    reads: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
}

/// A tenant on a fresh in-memory store with `count` renewals drafted, waiting for their
/// numbers.
struct Drafted {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    app: App,
    caller: Caller,
    ids: Vec<SubscriptionId>,
}

impl Drafted {
    async fn new(count: usize) -> Self {
        let store = billing_tests::memory_store();
        let clock = ManualClock::at(Timestamp::now());
        let app = app_on(&store, &clock);
        let (caller, ids) = tenant_with_renewals(&app, &clock, count, 1).await;
        app.billing
            .draft_due_subscriptions(caller.tenant_id, &ids, clock.now())
            .await;
        Self {
            store,
            clock,
            app,
            caller,
            ids,
        }
    }

    /// The app on the store as `hook` sees it.
    fn hooked(&self, hook: Arc<dyn billing_memory::hooked::Hook>) -> App {
        let hooked: Arc<dyn Store> = Arc::new(billing_memory::hooked::Hooked::new(
            self.store.clone(),
            hook,
        ));
        app_on(&hooked, &self.clock)
    }

    /// The finalizer run on the store as `hook` sees it.
    async fn finalize_hooked(
        &self,
        hook: Arc<dyn billing_memory::hooked::Hook>,
    ) -> billing_app::billing::FinalizeReport {
        self.hooked(hook)
            .billing
            .finalize_pending_invoices(self.caller.tenant_id)
            .await
            .unwrap()
    }
}

#[async_trait::async_trait]
impl billing_memory::hooked::Hook for StartBetweenRounds {
    async fn before(
        &self,
        op: billing_memory::hooked::Op,
    ) -> Option<billing_memory::hooked::Fault> {
        use std::sync::atomic::Ordering::SeqCst;
        match op.method {
            "next_invoice_number" => {
                self.reads.fetch_add(1, SeqCst);
            }
            // Before the second numbering write, on the store without this hook.
            "number_invoices" if self.writes.fetch_add(1, SeqCst) == 1 => {
                match self.start.get().expect("set before finalizing") {
                    Between::Start(app, start) => {
                        let (caller, start) = start.as_ref();
                        app.billing
                            .create_subscription(caller, start.clone())
                            .await
                            .unwrap();
                    }
                    Between::Finalize(app, tenant) => {
                        app.billing
                            .finalize_pending_invoices(*tenant)
                            .await
                            .unwrap();
                    }
                }
            }
            _ => {}
        }
        None
    }

    async fn after(
        &self,
        op: billing_memory::hooked::Op,
        seen: billing_memory::hooked::Seen,
    ) -> Option<billing_memory::hooked::Fault> {
        if op.method == "number_invoices" && seen == billing_memory::hooked::Seen::Refused {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        None
    }
}

/// Between the finalizer's two rounds a subscription starts and takes the next number
/// itself: the finalizer, numbering its second round from the sequence its first write
/// left, finds it moved and reads it afresh. Counted: the sequence is read once per
/// round when nothing else moves it (once for 110 drafts in two writes), and once more
/// after the conflict.
#[tokio::test(start_paused = true)]
async fn a_sequence_moved_between_rounds_is_read_afresh() {
    use std::sync::atomic::Ordering::SeqCst;
    for moved in [false, true] {
        let drafted = Drafted::new(SUBSCRIPTIONS).await;
        let (app, caller) = (&drafted.app, &drafted.caller);
        let tenant = caller.tenant_id;
        let first = drafted
            .store
            .get_subscription(tenant, drafted.ids[0])
            .await
            .unwrap()
            .unwrap();
        let hook = Arc::new(StartBetweenRounds::default());
        if moved {
            let start = StartSubscription::new(first.account_id, first.terms.plan_id);
            let _ = hook.start.set(Between::Start(
                app.clone(),
                Box::new((caller.clone(), start)),
            ));
        } else {
            // Nothing starts: the second write must not need a second read.
            let _ = hook.writes.fetch_add(2, SeqCst);
        }
        let report = drafted.finalize_hooked(hook.clone()).await;
        assert_eq!(report.numbered, SUBSCRIPTIONS);
        let started = usize::from(moved);
        assert_numbered_once(app, caller, 2 * SUBSCRIPTIONS + started).await;
        assert_eq!(
            hook.refused.load(SeqCst),
            u64::from(moved),
            "moved: {moved}"
        );
        assert_eq!(
            hook.reads.load(SeqCst),
            1 + u64::from(moved),
            "moved: {moved}: the sequence read once, and again after the conflict"
        );
    }
}

/// The drafts of the finalizer's second round, read while its first write was in flight,
/// are numbered by another finalizer before its second write: that write fails (the
/// drafts moved), nothing is numbered twice, and the round redone from fresh reads finds
/// nothing left.
#[tokio::test(start_paused = true)]
async fn drafts_read_ahead_and_numbered_by_another_finalizer_are_not_numbered_again() {
    use std::sync::atomic::Ordering::SeqCst;
    let drafted = Drafted::new(SUBSCRIPTIONS).await;
    let (app, caller) = (&drafted.app, &drafted.caller);
    let hook = Arc::new(StartBetweenRounds::default());
    let _ = hook
        .start
        .set(Between::Finalize(app.clone(), caller.tenant_id));
    let report = drafted.finalize_hooked(hook.clone()).await;
    assert_eq!(
        report.numbered, 99,
        "the rest numbered by the other finalizer"
    );
    assert_eq!(hook.refused.load(SeqCst), 1);
    assert_numbered_once(app, caller, 2 * SUBSCRIPTIONS).await;
}

/// Subscriptions started at once on one tenant each open their first invoice under the
/// next number, and nothing but the sequence's condition keeps two of them from taking the
/// same one (they are different invoices): the numbers are 1..=n, each once.
async fn concurrent_starts_number_their_first_invoices_once(app: App, races: Races) {
    const STARTS: usize = 6;
    let caller = billing_tests::admin(&app, "Starts").await;
    let first = billing_tests::subscribe(
        &app,
        &caller,
        serde_json::json!({"email": "starts@acme.test", "currency": "usd"}),
        "month",
        500,
    )
    .await;
    races.begin();
    let starts: Vec<_> = (0..STARTS)
        .map(|_| {
            let (app, caller) = (app.clone(), caller.clone());
            let start = StartSubscription::new(first.account_id, first.terms.plan_id);
            tokio::spawn(async move { app.billing.create_subscription(&caller, start).await })
        })
        .collect();
    for start in starts {
        start
            .await
            .unwrap()
            .expect("each start succeeds, retrying a lost number");
    }
    let mut numbers: Vec<String> = all_invoices(&app, &caller)
        .await
        .into_iter()
        .filter_map(|i| i.number)
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=STARTS + 1).map(|k| format!("INV-{k:06}")).collect();
    assert_eq!(numbers, expected, "gapless, each number once");
}

/// The same on the memory store, interleaving at every store operation (seeded delays on
/// the paused clock): a start lost its number to another at least once.
#[tokio::test(start_paused = true)]
async fn concurrent_starts_number_their_first_invoices_once_in_memory() {
    let mut lost = 0;
    for seed in 0..4 {
        let (app, racing) = billing_tests::racing_app(seed, true);
        concurrent_starts_number_their_first_invoices_once(app, Races::default()).await;
        lost += racing.refused_of("SubscriptionStore", "insert_subscription");
    }
    assert!(
        lost > 0,
        "no start lost its number to another: they did not race"
    );
}

billing_tests::racing_on_the_stand_in!(concurrent_starts_number_their_first_invoices_once);

billing_tests::on_both_stores!(
    drafts_are_numbered_gaplessly_in_several_writes,
    duplicate_and_concurrent_finalizers_number_each_draft_once,
    a_failed_numbering_write_consumes_no_number,
    drafts_a_lost_finalize_job_left_are_handed_over_by_the_sweep,
);

mod interleavings {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Drafts what is due of one subscription, up to `days` days from the start.
        Draft {
            subscription: usize,
            days: i64,
        },
        Finalize,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6usize, 1..4i64).prop_map(|(subscription, days)| Op::Draft { subscription, days }),
            Just(Op::Finalize),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// However drafting and finalizing interleave (each op its own task, all at
        /// once), the tenant's invoices end numbered exactly 1..=N, each once.
        #[test]
        fn numbers_are_exactly_one_to_n(ops in proptest::collection::vec(op(), 1..16)) {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let store = billing_tests::memory_store();
                let clock = ManualClock::at(Timestamp::now() + SignedDuration::from_hours(24 * 3));
                let app = app_on(&store, &clock);
                let (caller, ids) = tenant_with_renewals(&app, &clock, 6, 3).await;
                let tenant = caller.tenant_id;
                let tasks: Vec<_> = ops
                    .into_iter()
                    .map(|op| {
                        let (app, ids) = (app.clone(), ids.clone());
                        let until = clock.now();
                        tokio::spawn(async move {
                            match op {
                                Op::Draft { subscription, days } => {
                                    let until = until - SignedDuration::from_hours(24 * (3 - days));
                                    app.billing.draft_due_subscriptions(tenant, &[ids[subscription]], until).await;
                                }
                                Op::Finalize => {
                                    let _ = app.billing.finalize_pending_invoices(tenant).await;
                                }
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                app.billing.finalize_pending_invoices(tenant).await.unwrap();
                let invoices = all_invoices(&app, &caller).await;
                let mut numbers: Vec<String> = invoices.iter().map(|i| i.number.clone().expect("numbered")).collect();
                numbers.sort();
                let expected: Vec<String> = (1..=invoices.len()).map(|k| format!("INV-{k:06}")).collect();
                assert_eq!(numbers, expected);
            });
        }
    }
}

/// The drafts of the finalizer's second round are credited while its first write is in
/// flight, and again by another finalizer numbering them before that write lands: the
/// account's credit is spent once, oldest invoice first, whichever finalizer numbers.
/// 110 renewals of 500 against a grant of 52,000: the first 99 paid by it (49,500), then
/// 2,500 over the next five, nothing on the last six.
#[tokio::test(start_paused = true)]
async fn drafts_credited_while_a_numbering_write_is_in_flight_spend_the_credit_once() {
    use std::sync::atomic::Ordering::SeqCst;
    for other_finalizer in [false, true] {
        let drafted = Drafted::new(SUBSCRIPTIONS).await;
        let (store, app, caller) = (&drafted.store, &drafted.app, &drafted.caller);
        let tenant = caller.tenant_id;
        let account = store
            .get_subscription(tenant, drafted.ids[0])
            .await
            .unwrap()
            .unwrap()
            .account_id;
        let grant = billing_app::credits::GrantRequest {
            account,
            amount: 52_000,
            currency: "usd".parse().unwrap(),
            reason: "goodwill".into(),
            note: None,
            expires_at: None,
        };
        app.credits.grant_credit(caller, grant).await.unwrap();
        let hook = Arc::new(StartBetweenRounds::default());
        if other_finalizer {
            let _ = hook.start.set(Between::Finalize(app.clone(), tenant));
        } else {
            let _ = hook.writes.fetch_add(2, SeqCst);
        }
        drafted.finalize_hooked(hook.clone()).await;
        assert_eq!(hook.refused.load(SeqCst), u64::from(other_finalizer));

        let mut renewals: Vec<Invoice> = all_invoices(app, caller)
            .await
            .into_iter()
            .filter(|i| i.subscription_id.is_some() && i.number.is_some())
            .collect();
        assert_eq!(renewals.len(), 2 * SUBSCRIPTIONS);
        renewals.sort_by(|a, b| a.number.cmp(&b.number));
        let renewals = &renewals[SUBSCRIPTIONS..];
        let credited: Vec<i64> = renewals.iter().map(|i| i.credit_total.get()).collect();
        let mut expected = vec![500; 99];
        expected.extend([500, 500, 500, 500, 500, 0, 0, 0, 0, 0, 0]);
        assert_eq!(credited, expected, "other finalizer: {other_finalizer}");
        let due: i64 = renewals.iter().map(|i| i.amount_due.get()).sum();
        assert_eq!(due, 6 * 500);
        let balances = store.list_balances(tenant, account).await.unwrap();
        assert_eq!(balances.len(), 1);
        assert_eq!(balances[0].available.get(), 0);
        assert!(store.pending_invoices(tenant, 10).await.unwrap().is_empty());
    }
}

/// Drafts written before the preset dictionary and the compact terms (issue 20: the
/// invoice below 1 KB) are read and numbered as ever, on the DynamoDB store: one stored as
/// plain attributes with its terms as JSON (as before packing), one packed with its terms
/// as JSON, one as written now; once followed up, none keeps terms or pending keys.
#[tokio::test]
async fn drafts_stored_in_earlier_forms_are_numbered_as_ever() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use billing_aws::keys;

    let dynamo = billing_tests::dynamo_store().await;
    let (client, table) = (dynamo.client().clone(), dynamo.table().to_owned());
    let store: Arc<dyn Store> = Arc::new(dynamo);
    let clock = ManualClock::at(Timestamp::now());
    let app = app_on(&store, &clock);
    let (caller, ids) = tenant_with_renewals(&app, &clock, 3, 1).await;
    let tenant = caller.tenant_id;
    let drafted = app
        .billing
        .draft_due_subscriptions(tenant, &ids, clock.now())
        .await;
    assert!(drafted.iter().all(|d| matches!(d, Ok(1))), "{drafted:?}");
    let mut pending = store.pending_invoices(tenant, 10).await.unwrap();
    pending.sort_by_key(|p| p.invoice.id);
    assert_eq!(pending.len(), 3);

    let stored = |id| {
        let (client, table) = (client.clone(), table.clone());
        async move {
            client
                .get_item()
                .table_name(&table)
                .set_key(Some(keys::invoice_primary(tenant, id).primary()))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };
    for (p, plain) in pending.iter().zip([true, false]) {
        let mut item = stored(p.invoice.id).await;
        assert!(item.remove("terms").is_some(), "written with compact terms");
        item.insert(
            "finalization".into(),
            AttributeValue::S(serde_json::to_string(&p.finalization).unwrap()),
        );
        if plain {
            billing_aws::dynamo::unpack(&mut item).unwrap();
            assert!(!item.contains_key("pz") && item.contains_key("lines"));
        }
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    let mut read = store.pending_invoices(tenant, 10).await.unwrap();
    read.sort_by_key(|p| p.invoice.id);
    assert_eq!(read, pending, "each read as written, with its terms");

    let report = app.billing.finalize_pending_invoices(tenant).await.unwrap();
    assert_eq!((report.numbered, report.followed_up), (3, 3));
    assert_numbered_once(&app, &caller, 6).await;
    for p in &pending {
        let item = stored(p.invoice.id).await;
        for gone in ["terms", "finalization", keys::PENDING_PK, keys::PENDING_SK] {
            assert!(
                !item.contains_key(gone),
                "{gone} left on a followed-up invoice"
            );
        }
    }
}

/// Counts the follow-up writes in flight at once, each held a while (slow follow-ups).
#[derive(Default)]
struct SlowFollowUps {
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl billing_memory::hooked::Hook for SlowFollowUps {
    async fn before(
        &self,
        op: billing_memory::hooked::Op,
    ) -> Option<billing_memory::hooked::Fault> {
        use std::sync::atomic::Ordering::SeqCst;
        if op.method == "finish_invoice" {
            let now = self.in_flight.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        None
    }

    async fn after(
        &self,
        op: billing_memory::hooked::Op,
        _seen: billing_memory::hooked::Seen,
    ) -> Option<billing_memory::hooked::Fault> {
        if op.method == "finish_invoice" {
            self.in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
        None
    }
}

/// 300 drafts (four rounds) whose follow-ups are slower than a numbering round: the next
/// round is numbered while two earlier rounds' follow-ups are written, never three, and
/// still each invoice is numbered once, gaplessly, with one `invoice.finalized` and one
/// payment attempt.
#[tokio::test(start_paused = true)]
async fn two_rounds_of_follow_ups_in_flight_number_and_follow_up_each_invoice_once() {
    const DRAFTS: usize = 300;
    let drafted = Drafted::new(DRAFTS).await;
    let hook = Arc::new(SlowFollowUps::default());
    let report = drafted.finalize_hooked(hook.clone()).await;
    assert_eq!(report.numbered, DRAFTS);
    assert_eq!(report.followed_up, DRAFTS);
    let most = hook.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        most > 99 && most <= 2 * 99,
        "{most} follow-ups in flight at most: two rounds' worth, never three"
    );
    assert_numbered_once(&drafted.app, &drafted.caller, 2 * DRAFTS).await;
}
