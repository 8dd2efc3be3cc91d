//! `billing-run`'s sweep drains the due index in one pass read page by page, every shard at
//! once, and stops when its invocation's time runs low; the next run goes on from the saved
//! checkpoint. Across runs stopped by the deadline, a run that dies mid-page, and the pass
//! after it, every due subscription is queued, and none twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use billing_app::jobs::Sweeper;
use billing_app::ports::*;
use billing_app::App;
use billing_domain::kernel::ids::SubscriptionId;
use billing_tests::clock::ManualClock;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

const SUBSCRIPTIONS: usize = 12;
const MARGIN: SignedDuration = SignedDuration::from_secs(10);

/// The billing queue as the sweep sees it: each send takes `step` of the run's time (so
/// that a deadline comes), and the send number `stall_on` never returns (the run dies).
struct SlowQueue {
    clock: Arc<ManualClock>,
    step: Mutex<SignedDuration>,
    sends: AtomicUsize,
    stall_on: Mutex<Option<usize>>,
    stalled: tokio::sync::Notify,
    jobs: Mutex<Vec<BillingJob>>,
}

#[async_trait]
impl BillingQueue for SlowQueue {
    async fn enqueue(&self, jobs: &[BillingJob]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let send = self.sends.fetch_add(1, Ordering::SeqCst) + 1;
        if *self.stall_on.lock().unwrap() == Some(send) {
            self.stalled.notify_one();
            std::future::pending::<()>().await;
        }
        self.clock.advance(*self.step.lock().unwrap());
        self.jobs.lock().unwrap().extend_from_slice(jobs);
        Ok(())
    }
}

impl SlowQueue {
    /// The subscriptions queued since the last call.
    fn take(&self) -> Vec<SubscriptionId> {
        std::mem::take(&mut *self.jobs.lock().unwrap())
            .into_iter()
            .filter_map(|job| match job {
                BillingJob::Subscription { id, .. } => Some(id),
                _ => None,
            })
            .collect()
    }
}

/// Bills the queued subscriptions through the worker, as the billing queue would.
async fn bill(
    app: &App,
    tenants: &BTreeMap<SubscriptionId, billing_domain::kernel::ids::TenantId>,
    ids: &[SubscriptionId],
) {
    let mut event = SqsEvent::default();
    event.records = ids
        .iter()
        .map(|id| {
            let mut message = SqsMessage::default();
            message.message_id = Some(id.to_string());
            message.body = serde_json::to_string(&BillingJob::Subscription {
                tenant: tenants[id],
                id: *id,
            })
            .ok();
            message
        })
        .collect();
    let response = billing_worker::handle(app, event).await;
    assert!(response.batch_item_failures.is_empty());
}

/// Counts the times each subscription was queued.
fn count(queued: &mut BTreeMap<SubscriptionId, usize>, ids: Vec<SubscriptionId>) {
    for id in ids {
        *queued.entry(id).or_default() += 1;
    }
}

async fn a_run_stopped_by_its_deadline_or_killed_mid_page_queues_every_renewal_once(
    store: Arc<dyn Store>,
) {
    let yesterday =
        Timestamp::now() - SignedDuration::from_hours(24) - SignedDuration::from_mins(1);
    let past = billing_tests::app_with_clock(store.clone(), ManualClock::at(yesterday));
    // A tenant each (the test kit's plan code is one per tenant).
    let mut tenants = BTreeMap::new();
    let mut subscriptions = Vec::new();
    for i in 0..SUBSCRIPTIONS {
        let caller = billing_tests::admin(&past, "Sweep").await;
        let account = json!({"email": format!("s{i}@acme.test"), "currency": "usd"});
        let id = billing_tests::subscribe(&past, &caller, account, "day", 100)
            .await
            .id;
        tenants.insert(id, caller.tenant_id);
        subscriptions.push(id);
    }
    let clock = ManualClock::at(Timestamp::now());
    let app = billing_tests::app_with_clock(store, clock.clone());
    let queue = Arc::new(SlowQueue {
        clock: clock.clone(),
        step: Mutex::new(SignedDuration::from_secs(30)),
        sends: AtomicUsize::new(0),
        stall_on: Mutex::new(None),
        stalled: tokio::sync::Notify::new(),
        jobs: Mutex::default(),
    });
    let sweeper = Sweeper::new(
        app.clone(),
        Arc::new(billing_tests::NoDispatch),
        queue.clone(),
    );
    let mut queued: BTreeMap<SubscriptionId, usize> = BTreeMap::new();

    // Each page's billing jobs take 30 s of a 60 s invocation to send: the second such
    // page leaves less than the margin, and the run stops with its pass unfinished (one
    // item per shard a page).
    let deadline = clock.now() + SignedDuration::from_secs(60);
    let first = sweeper.run(deadline, MARGIN, 1).await.unwrap();
    assert!(!first.pass_done, "{first:?}");
    assert_eq!(queue.sends.load(Ordering::SeqCst), 2);
    let first_ids = queue.take();
    assert!(!first_ids.is_empty() && first_ids.len() < SUBSCRIPTIONS);
    count(&mut queued, first_ids);

    // The next run dies while handing its first page on.
    *queue.step.lock().unwrap() = SignedDuration::ZERO;
    *queue.stall_on.lock().unwrap() = Some(queue.sends.load(Ordering::SeqCst) + 1);
    let deadline = clock.now() + SignedDuration::from_secs(60);
    tokio::select! {
        _ = sweeper.run(deadline, MARGIN, 1) => panic!("the run was to die"),
        () = queue.stalled.notified() => {}
    }
    assert!(queue.take().is_empty());

    // The one after goes on past the lost page and finishes the pass: no job twice.
    let deadline = clock.now() + SignedDuration::from_secs(60);
    let third = sweeper.run(deadline, MARGIN, 1000).await.unwrap();
    assert!(third.pass_done, "{third:?}");
    count(&mut queued, queue.take());
    assert!(queued.values().all(|times| *times == 1), "{queued:?}");
    let lost: Vec<SubscriptionId> = subscriptions
        .iter()
        .filter(|id| !queued.contains_key(id))
        .copied()
        .collect();
    assert!(!lost.is_empty(), "the dead run's page was not handed on");

    // The workers bill what was queued; the next pass reads only what fell due since.
    let billed: Vec<SubscriptionId> = queued.keys().copied().collect();
    bill(&app, &tenants, &billed).await;
    let deadline = clock.now() + SignedDuration::from_secs(60);
    sweeper.run(deadline, MARGIN, 1000).await.unwrap();
    assert!(queue.take().is_empty(), "nothing new fell due");

    // The full pass finds what the dead run lost (still due), and only that.
    clock.advance(FULL_PASS_EVERY);
    let deadline = clock.now() + SignedDuration::from_secs(60);
    let full = sweeper.run(deadline, MARGIN, 1000).await.unwrap();
    assert!(full.pass_done);
    let mut found = queue.take();
    found.sort();
    assert_eq!(found, lost);
    count(&mut queued, found);
    let mut all: Vec<SubscriptionId> = queued.keys().copied().collect();
    all.sort();
    subscriptions.sort();
    assert_eq!(all, subscriptions);
    assert!(queued.values().all(|times| *times == 1), "{queued:?}");
}

billing_tests::on_both_stores!(
    a_run_stopped_by_its_deadline_or_killed_mid_page_queues_every_renewal_once
);
