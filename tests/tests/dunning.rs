//! Dunning through the use cases, on the memory store and on DynamoDB (the local
//! stand-in): steps on their days, each once under duplicate and concurrent runs; blocked
//! accounts refused; unblocking on settlement; notices sent once, and again after a crash
//! or an outage; test clocks.

use std::sync::Arc;

use billing_app::ports::{
    Change, Clock, EventFilter, InvoiceWrite, Notifier, NotifyError, PageRequest, PaymentJob, Store,
};
use billing_app::{App, AppError, Caller};
use billing_domain::billing::subscription::CollectionMethod;
use billing_domain::collection::dunning::{DunningAction, DunningStatus, DunningStep};
use billing_domain::customers::account::{Account, AccountStatus};
use billing_domain::events::record::{Actor, AuditAction, AuditRecord};
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{AuditId, InvoiceId};
use billing_memory::hooked::{Hooked, Racing};
use billing_memory::MemoryNotifier;
use billing_tests::api::Api;
use billing_tests::clock::ManualClock;
use billing_tests::Races;
use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use serde_json::json;

fn t0() -> Timestamp {
    "2026-03-02T09:00:00Z".parse().unwrap()
}

fn day(d: i64) -> Timestamp {
    t0() + SignedDuration::from_hours(24 * d)
}

struct World {
    app: App,
    clock: Arc<ManualClock>,
    notifier: Arc<MemoryNotifier>,
    caller: Caller,
    account: Account,
}

impl World {
    async fn on(store: Arc<dyn Store>) -> Self {
        Self::with_hook(store, None).await
    }

    /// On the racing memory store, its notices racing too.
    async fn racing(seed: u64) -> (Self, Arc<Racing>) {
        let (store, racing) = billing_tests::racing_store(seed, true);
        (Self::with_hook(store, Some(racing.clone())).await, racing)
    }

    async fn with_hook(store: Arc<dyn Store>, hook: Option<Arc<Racing>>) -> Self {
        let clock = ManualClock::at(t0());
        let notifier = Arc::new(MemoryNotifier::default());
        let sender: Arc<dyn Notifier> = match hook {
            Some(hook) => Arc::new(Hooked::new(notifier.clone(), hook)),
            None => notifier.clone(),
        };
        let app = billing_tests::app_with_clock(store, clock.clone()).with_notifier(sender);
        let caller = billing_tests::admin(&app, "Dunning Co").await;
        let account = app
            .customers
            .create_account(
                &caller,
                serde_json::from_value(json!({"email": "ap@customer.test", "currency": "usd"}))
                    .unwrap(),
            )
            .await
            .unwrap();
        Self {
            app,
            clock,
            notifier,
            caller,
            account,
        }
    }

    /// An open invoice of the account for `amount` cents.
    async fn open_invoice(&self, amount: i64) -> InvoiceId {
        let lines = serde_json::from_value(json!([
            {"description": "Services", "source": {"type": "fixed", "amount": amount}}
        ]))
        .unwrap();
        let draft = self
            .app
            .billing
            .create_manual_invoice(
                &self.caller,
                self.account.id,
                lines,
                CollectionMethod::SendInvoice,
            )
            .await
            .unwrap();
        self.app
            .billing
            .finalize_invoice(&self.caller, draft.id, None)
            .await
            .unwrap()
            .id
    }

    async fn run(&self, at: Timestamp) -> usize {
        self.clock.set(at);
        self.app
            .collection
            .run_due_dunning(self.caller.tenant_id, self.account.id, at)
            .await
            .unwrap()
    }

    async fn status(&self) -> AccountStatus {
        self.app
            .customers
            .get_account(&self.caller, self.account.id)
            .await
            .unwrap()
            .status
    }

    /// The account's dunning and status events, oldest first.
    async fn events(&self) -> Vec<String> {
        let page = self
            .app
            .events
            .list_events(
                &self.caller,
                &EventFilter {
                    event_type: None,
                    resource_id: Some(self.account.id.to_string()),
                },
                &PageRequest::first(100),
            )
            .await
            .unwrap();
        let mut types: Vec<String> = page
            .items
            .into_iter()
            .map(|e| e.event_type.to_string())
            .filter(|t| t.starts_with("dunning.") || t == "account.updated")
            .collect();
        types.reverse();
        types
    }

    fn notices(&self) -> Vec<String> {
        self.notifier.sent().into_iter().map(|n| n.key).collect()
    }
}

async fn an_unpaid_invoice_is_reminded_warned_blocked_and_unblocked_when_settled(
    store: Arc<dyn Store>,
) {
    let w = World::on(store).await;
    let invoice = w.open_invoice(4900).await;
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, invoice, t0())
        .await
        .unwrap();
    assert_eq!(w.run(day(2)).await, 0, "nothing before day 3");
    assert_eq!(w.run(day(3)).await, 1);
    assert_eq!(
        w.status().await,
        AccountStatus::Active,
        "a reminder only tells"
    );
    assert_eq!(w.run(day(7)).await, 1);
    assert_eq!(w.status().await, AccountStatus::Warning);
    assert_eq!(w.run(day(14)).await, 1);
    assert_eq!(w.status().await, AccountStatus::Blocked);
    assert_eq!(w.run(day(30)).await, 0, "a block is the last step");

    let sent = w.notifier.sent();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0].to, "ap@customer.test");
    assert!(
        sent[0].subject.starts_with("Dunning Co: "),
        "{}",
        sent[0].subject
    );
    assert!(
        sent[1].body.contains("$49.00 has been overdue for 7 days"),
        "{}",
        sent[1].body
    );
    assert!(
        sent[2].key.ends_with("/dunning/1-3-blocked"),
        "{}",
        sent[2].key
    );

    // Blocked: no new subscriptions, no plan changes.
    let plan = w
        .app.catalog
        .create_plan(
            &w.caller,
            serde_json::from_value(json!({
                "code": "pro", "name": "Pro", "interval": {"unit": "month"},
                "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 100}}}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let start = billing_app::billing::StartSubscription {
        collection_method: billing_domain::billing::subscription::CollectionMethod::SendInvoice,
        days_until_due: Some(30),
        ..billing_app::billing::StartSubscription::new(w.account.id, plan.plan.id)
    };
    let refused = w
        .app
        .billing
        .create_subscription(&w.caller, start.clone())
        .await;
    assert!(
        matches!(
            refused,
            Err(AppError::Conflict {
                code: ErrorCode::AccountBlocked,
                param: Some("account"),
                ..
            })
        ),
        "{refused:?}"
    );

    // Voiding settles; the account is active again and can subscribe.
    w.clock.set(day(31));
    w.app
        .billing
        .void_invoice(&w.caller, invoice, false)
        .await
        .unwrap();
    w.app
        .collection
        .invoice_settled(&w.caller, w.account.id, invoice, day(31))
        .await
        .unwrap();
    assert_eq!(w.status().await, AccountStatus::Active);
    let case = w
        .app
        .collection
        .get_dunning_case(&w.caller, w.account.id)
        .await
        .unwrap();
    assert_eq!(case.status, DunningStatus::Resolved);
    assert_eq!(case.next_step_at, None);
    assert_eq!(
        w.events().await,
        [
            "dunning.reminder",
            "dunning.warning",
            "account.updated",
            "dunning.blocked",
            "account.updated",
            "dunning.unblocked",
            "account.updated"
        ]
    );
    assert_eq!(
        w.notices()
            .last()
            .map(|k| k.ends_with("/dunning/1-4-unblocked")),
        Some(true)
    );
    let subscribed = w.app.billing.create_subscription(&w.caller, start).await;
    assert!(subscribed.is_ok(), "{subscribed:?}");
}

/// An invoice reported past due three times opens one case; eight workers run its steps
/// at once on day 15: reminder, warning and block, each taken and noticed once.
async fn duplicate_and_concurrent_runs_take_each_step_once(store: Arc<dyn Store>, races: Races) {
    eight_workers_take_each_step_once(&World::on(store).await, &races).await;
}

async fn eight_workers_take_each_step_once(w: &World, races: &Races) {
    let invoice = w.open_invoice(1000).await;
    for _ in 0..3 {
        w.app
            .collection
            .invoice_past_due(&w.caller, w.account.id, invoice, t0())
            .await
            .unwrap();
    }
    w.clock.set(day(15));
    races.begin();
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let app = w.app.clone();
            let (tenant, account) = (w.caller.tenant_id, w.account.id);
            tokio::spawn(async move {
                app.collection
                    .run_due_dunning(tenant, account, day(15))
                    .await
            })
        })
        .collect();
    let mut moves = 0;
    for run in runs {
        moves += run.await.unwrap().unwrap();
    }
    assert_eq!(moves, 3, "reminder, warning, block: once each");
    assert_eq!(w.run(day(15)).await, 0);
    let case = w
        .app
        .collection
        .get_dunning_case(&w.caller, w.account.id)
        .await
        .unwrap();
    assert_eq!(case.number, 1);
    let taken: Vec<_> = case.steps_taken.iter().map(|s| (s.action, s.at)).collect();
    assert_eq!(
        taken,
        [
            (DunningAction::Reminder, day(3)),
            (DunningAction::Warning, day(7)),
            (DunningAction::Block, day(14))
        ]
    );
    assert_eq!(w.notices().len(), 3, "one notice per step");
}

/// The same on the memory store, interleaving at every store operation and notice (seeded
/// delays on the paused clock, so each seed is one reproducible interleaving).
#[tokio::test(start_paused = true)]
async fn duplicate_and_concurrent_runs_take_each_step_once_in_memory() {
    let mut lost = 0;
    for seed in 0..4 {
        let (w, racing) = World::racing(seed).await;
        eight_workers_take_each_step_once(&w, &Races::default()).await;
        lost += racing.refused_of("DunningStore", "save_dunning_case");
    }
    assert!(
        lost > 0,
        "no step was lost to another worker: the runs did not race"
    );
}

async fn a_second_overdue_invoice_keeps_the_first_ones_days_and_both_must_be_settled(
    store: Arc<dyn Store>,
) {
    let w = World::on(store).await;
    let (first, second) = (w.open_invoice(1000).await, w.open_invoice(2000).await);
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, first, t0())
        .await
        .unwrap();
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, second, day(5))
        .await
        .unwrap();
    w.run(day(7)).await;
    assert_eq!(w.status().await, AccountStatus::Warning);
    assert!(
        w.notifier.sent()[1].body.contains("$30.00"),
        "both invoices are owed"
    );
    w.app
        .billing
        .void_invoice(&w.caller, first, false)
        .await
        .unwrap();
    w.app
        .collection
        .invoice_settled(&w.caller, w.account.id, first, day(8))
        .await
        .unwrap();
    assert_eq!(
        w.status().await,
        AccountStatus::Warning,
        "one is still owed"
    );
    w.app
        .billing
        .void_invoice(&w.caller, second, false)
        .await
        .unwrap();
    w.app
        .collection
        .invoice_settled(&w.caller, w.account.id, second, day(9))
        .await
        .unwrap();
    assert_eq!(w.status().await, AccountStatus::Active);
    // The next failure opens a fresh case that counts from its own day.
    let third = w.open_invoice(500).await;
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, third, day(40))
        .await
        .unwrap();
    let case = w
        .app
        .collection
        .get_dunning_case(&w.caller, w.account.id)
        .await
        .unwrap();
    assert_eq!((case.number, case.next_step_at), (2, Some(day(43))));
}

async fn void_without_word(w: &World, id: InvoiceId) {
    let tenant = w.caller.tenant_id;
    let current = w.app.store.get_invoice(tenant, id).await.unwrap().unwrap();
    let now = w.clock.now();
    let change = Change {
        audit: AuditRecord {
            id: AuditId::from_ulid(billing_app::new_ulid()),
            entity_type: "invoice".into(),
            entity_id: id.to_string(),
            action: AuditAction::Update,
            actor: Actor {
                key_id: None,
                role: None,
                subject: None,
                email: None,
                via: "test".into(),
            },
            request_id: None,
            changes: Default::default(),
            at: now,
        },
        events: Vec::new(),
    };
    let write = InvoiceWrite {
        invoice: current.void(now, false).unwrap(),
        number: None,
        payment: None,
        pending: None,
        balance: None,
        wallets: None,
        account_discounts: None,
    };
    w.app
        .store
        .save_invoice(tenant, &current, &write, &change)
        .await
        .unwrap();
}

async fn an_invoice_settled_without_word_resolves_the_case_at_its_next_step(store: Arc<dyn Store>) {
    let w = World::on(store).await;
    let invoice = w.open_invoice(1000).await;
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, invoice, t0())
        .await
        .unwrap();
    // Paid or voided, but dunning never heard (the notifying process died).
    void_without_word(&w, invoice).await;
    assert_eq!(w.run(day(3)).await, 1);
    let case = w
        .app
        .collection
        .get_dunning_case(&w.caller, w.account.id)
        .await
        .unwrap();
    assert_eq!(case.status, DunningStatus::Resolved);
    assert!(case.steps_taken.is_empty());
    assert!(
        w.events().await.is_empty(),
        "the customer never heard of it"
    );
    assert!(w.notices().is_empty());
    // Reporting it past due now changes nothing: it is not owed.
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, invoice, day(4))
        .await
        .unwrap();
    let again = w
        .app
        .collection
        .get_dunning_case(&w.caller, w.account.id)
        .await
        .unwrap();
    assert_eq!(again, case);
}

async fn a_notice_left_by_a_process_without_a_notifier_is_sent_by_the_worker_once(
    store: Arc<dyn Store>,
) {
    let w = World::on(store).await;
    let invoice = w.open_invoice(1000).await;
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, invoice, t0())
        .await
        .unwrap();
    // A process that cannot send (or that dies right after the commit) takes the step.
    let mute = billing_tests::app_with_clock(w.app.store.clone(), w.clock.clone());
    w.clock.set(day(3));
    mute.collection
        .run_due_dunning(w.caller.tenant_id, w.account.id, day(3))
        .await
        .unwrap();
    assert!(w.notices().is_empty());
    let due = w.app.store.due_items(day(3), 100).await.unwrap();
    let job =
        due.iter()
            .find_map(|item| match &item.kind {
                // Dunning's own, not the email the invoice's event left (`{kind}-evt_…`).
                billing_app::ports::DueKind::Payment(
                    job @ PaymentJob::DunningNotice { key, .. },
                ) if !key.contains("-evt_") => Some(job.clone()),
                _ => None,
            })
            .expect("the notice waits in the due index");
    w.app.collection.handle_payment_job(&job).await.unwrap();
    w.app.collection.handle_payment_job(&job).await.unwrap();
    assert_eq!(w.notices().len(), 1, "sent once, under its key");
    assert!(w.notices()[0].ends_with("/dunning/1-1-reminder"));
    let job_sent = job;
    let left = w.app.store.due_items(day(3), 100).await.unwrap();
    assert!(
        !left.iter().any(|i| matches!(
            &i.kind,
            billing_app::ports::DueKind::Payment(job) if *job == job_sent
        )),
        "and gone from the due index"
    );
}

async fn a_notifier_outage_is_retried_after_the_claim_runs_out(store: Arc<dyn Store>) {
    let w = World::on(store).await;
    let invoice = w.open_invoice(1000).await;
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, invoice, t0())
        .await
        .unwrap();
    w.notifier
        .fail_with(Some(NotifyError::Unavailable("throttled".into())));
    w.run(day(3)).await;
    w.notifier.fail_with(None);
    let key = "1-1-reminder".to_owned();
    let job = PaymentJob::DunningNotice {
        tenant: w.caller.tenant_id,
        account: w.account.id,
        key: key.clone(),
    };
    w.app.collection.handle_payment_job(&job).await.unwrap();
    assert!(w.notices().is_empty(), "the claim still holds");
    w.clock
        .set(day(3) + billing_app::collection::NOTICE_CLAIM + SignedDuration::from_secs(1));
    w.app.collection.handle_payment_job(&job).await.unwrap();
    w.app.collection.handle_payment_job(&job).await.unwrap();
    assert_eq!(w.notices().len(), 1);
}

async fn steps_of_an_account_on_a_test_clock_run_when_the_clock_advances(store: Arc<dyn Store>) {
    let w = World::on(store).await;
    let clock = w
        .app
        .billing
        .create_test_clock(&w.caller, None, t0())
        .await
        .unwrap();
    let account = w
        .app
        .customers
        .create_account(
            &w.caller,
            serde_json::from_value(
                json!({"email": "clock@customer.test", "currency": "usd", "test_clock": clock.id}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let w = World { account, ..w };
    let invoice = w.open_invoice(1000).await;
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, invoice, t0())
        .await
        .unwrap();
    // Real time moves on; the clock does not: nothing is due for the worker.
    w.clock.set(day(30));
    let job = PaymentJob::Dunning {
        tenant: w.caller.tenant_id,
        account: w.account.id,
    };
    w.app.collection.handle_payment_job(&job).await.unwrap();
    assert_eq!(w.status().await, AccountStatus::Active);
    assert!(w
        .app
        .store
        .due_items(day(30), 100)
        .await
        .unwrap()
        .iter()
        .all(|i| !matches!(
            i.kind,
            billing_app::ports::DueKind::Payment(PaymentJob::Dunning { .. })
        )));
    w.app
        .billing
        .begin_test_clock_advance(&w.caller, clock.id, day(8))
        .await
        .unwrap();
    w.app
        .billing
        .run_test_clock(w.caller.tenant_id, clock.id)
        .await
        .unwrap();
    assert_eq!(w.status().await, AccountStatus::Warning);
    let case = w
        .app
        .collection
        .get_dunning_case(&w.caller, w.account.id)
        .await
        .unwrap();
    let days: Vec<_> = case.steps_taken.iter().map(|s| s.at).collect();
    assert_eq!(
        days,
        [day(3), day(7)],
        "each at the moment it fell due on the clock"
    );
}

async fn the_policy_is_per_tenant_validated_and_applies_to_new_cases(store: Arc<dyn Store>) {
    let w = World::on(store).await;
    let default = w.app.collection.dunning_policy(&w.caller).await.unwrap();
    assert_eq!(default.steps.len(), 3);
    let bad = w
        .app
        .collection
        .set_dunning_policy(
            &w.caller,
            vec![
                DunningStep {
                    after_days: 5,
                    action: DunningAction::Block,
                },
                DunningStep {
                    after_days: 9,
                    action: DunningAction::Reminder,
                },
            ],
            None,
        )
        .await;
    match bad {
        Err(AppError::Invalid(e)) => {
            assert_eq!(
                (e.code.as_str(), e.param.as_str()),
                ("dunning_block_not_last", "steps[0].action")
            )
        }
        other => panic!("{other:?}"),
    }
    let invoice = w.open_invoice(1000).await;
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, invoice, t0())
        .await
        .unwrap();
    w.app
        .collection
        .set_dunning_policy(
            &w.caller,
            vec![DunningStep {
                after_days: 1,
                action: DunningAction::Block,
            }],
            None,
        )
        .await
        .unwrap();
    assert_eq!(w.run(day(2)).await, 0, "the running case keeps its policy");
    let other = World::on(w.app.store.clone()).await;
    assert_eq!(
        other
            .app
            .collection
            .dunning_policy(&other.caller)
            .await
            .unwrap(),
        default,
        "another tenant keeps the default"
    );
    // Turned off: no case opens.
    other
        .app
        .collection
        .set_dunning_policy(&other.caller, vec![], None)
        .await
        .unwrap();
    let invoice = other.open_invoice(1000).await;
    other
        .app
        .collection
        .invoice_past_due(&other.caller, other.account.id, invoice, t0())
        .await
        .unwrap();
    assert!(other
        .app
        .collection
        .get_dunning_case(&other.caller, other.account.id)
        .await
        .is_err());
}

async fn account_status(api: &Api, account: &str) -> serde_json::Value {
    api.get(&format!("/v1/accounts/{account}")).await["status"].clone()
}

/// The account's payment attempts, oldest first.
async fn payments_of(api: &Api, account: &str) -> Vec<serde_json::Value> {
    api.list(&format!("/v1/payments?account={account}")).await
}

/// The issue's sandbox story: a card that declines twice (insufficient funds) on a monthly
/// subscription on a test clock, the default card changed between retries, paid on the
/// third attempt on day 5 (retries on days 3 and 5 after the first failure); meanwhile the
/// tenant's dunning (reminder on day 1, warning on day 4) reminds and warns the customer,
/// and the payment unblocks the account. Everything over HTTP; events in order.
#[tokio::test]
async fn sandbox_end_to_end_declines_twice_then_pays_and_unblocks() {
    let notifier = Arc::new(MemoryNotifier::default());
    let app = billing_tests::dynamo_app()
        .await
        .with_notifier(notifier.clone());
    let (_, issued) = app
        .customers
        .create_tenant(
            "Sandbox Dunning",
            billing_domain::customers::tenant::TenantMode::Sandbox,
        )
        .await
        .unwrap();
    let api = Api::new(billing_tests::serve(app).await, issued.secret);
    let start: Timestamp = "2027-01-04T10:00:00Z".parse().unwrap();
    let at = |days: i64, hours: i64| start + SignedDuration::from_hours(24 * days + hours);
    let time = |v: &serde_json::Value| v.as_str().unwrap().parse::<Timestamp>().unwrap();

    let policy = api
        .patch(
            "/v1/settings/dunning",
            json!({"steps": [
                {"after_days": 1, "action": "reminder"},
                {"after_days": 4, "action": "warning"},
                {"after_days": 14, "action": "block"}
            ]}),
        )
        .await;
    assert_eq!(policy["steps"][1]["action"], "warning");
    let clock = api
        .post("/v1/test-clocks", json!({"frozen_time": start}))
        .await;
    let clock_id = clock["id"].as_str().unwrap().to_owned();
    let advance = |days: i64, hours: i64| {
        let (api, clock_id) = (&api, clock_id.clone());
        async move {
            let clock = api
                .post(
                    &format!("/v1/test-clocks/{clock_id}/advance"),
                    json!({"frozen_time": at(days, hours)}),
                )
                .await;
            assert_eq!(clock["status"], "ready");
        }
    };
    let account = api
        .post(
            "/v1/accounts",
            json!({"email": "owner@startup.test", "currency": "usd", "test_clock": clock_id}),
        )
        .await;
    let account_id = account["id"].as_str().unwrap().to_owned();
    let declining = api
        .post(
            &format!("/v1/accounts/{account_id}/payment-methods"),
            json!({"payment_method": "4000000000009995"}),
        )
        .await;
    assert_eq!(declining["last4"], "9995");
    let plan = api
        .post(
            "/v1/plans",
            json!({"code": "team", "name": "Team", "interval": {"unit": "month"},
                   "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 4900}}}}}),
        )
        .await;
    api.post(
        "/v1/subscriptions",
        json!({"account": account_id, "plan": plan["id"]}),
    )
    .await;
    // Day 0: the first attempt is declined; dunning opens.
    advance(0, 1).await;
    let tried = payments_of(&api, &account_id).await;
    assert_eq!(tried[0]["status"], "failed");
    let case = api.get(&format!("/v1/accounts/{account_id}/dunning")).await;
    assert_eq!(case["status"], "active");
    assert_eq!(time(&case["overdue_since"]), start);
    assert_eq!(time(&case["next_step_at"]), at(1, 0));

    // Day 1: the reminder. Day 3: the first retry is declined too.
    advance(3, 1).await;
    assert_eq!(notifier.sent().len(), 1);
    assert!(notifier.sent()[0]
        .subject
        .ends_with("your payment is overdue"));
    let tried = payments_of(&api, &account_id).await;
    let statuses: Vec<_> = tried.iter().map(|p| p["status"].clone()).collect();
    assert_eq!(
        statuses,
        [json!("failed"), json!("failed"), json!("pending")]
    );
    assert_eq!(time(&tried[1]["due_at"]), at(3, 0));
    assert_eq!(time(&tried[2]["due_at"]), at(5, 0));
    assert_eq!(account_status(&api, &account_id).await, "active");

    // The customer adds a working card and makes it the default.
    let visa = api
        .post(
            &format!("/v1/accounts/{account_id}/payment-methods"),
            json!({"payment_method": "tok_visa"}),
        )
        .await;
    let visa_id = visa["id"].as_str().unwrap().to_owned();
    api.patch(
        &format!("/v1/accounts/{account_id}/payment-methods/{visa_id}"),
        json!({"default": true}),
    )
    .await;

    // Day 4: the warning; the account is `warning`.
    advance(4, 1).await;
    assert_eq!(account_status(&api, &account_id).await, "warning");
    assert_eq!(notifier.sent().len(), 2);

    // Day 5: the third attempt charges the new default card; the account is unblocked.
    advance(5, 1).await;
    let tried = payments_of(&api, &account_id).await;
    assert_eq!(tried.len(), 3);
    assert_eq!(tried[2]["status"], "succeeded");
    assert_eq!(tried[2]["payment_method"], visa_id.as_str());
    let invoice_id = tried[2]["invoice_id"].as_str().unwrap().to_owned();
    let invoice = api.get(&format!("/v1/invoices/{invoice_id}")).await;
    assert_eq!(invoice["status"], "paid");
    assert_eq!(time(&invoice["paid_at"]), at(5, 0));
    assert_eq!(account_status(&api, &account_id).await, "active");
    let case = api.get(&format!("/v1/accounts/{account_id}/dunning")).await;
    assert_eq!(case["status"], "resolved");
    assert_eq!(case["next_step_at"], serde_json::Value::Null);
    let keys: Vec<String> = notifier.sent().into_iter().map(|n| n.key).collect();
    assert_eq!(
        keys,
        [
            format!("{account_id}/dunning/1-1-reminder"),
            format!("{account_id}/dunning/1-2-warning"),
            format!("{account_id}/dunning/1-3-unblocked"),
        ]
    );

    // Nothing more happens on the clock for the dunning case, however far it goes.
    advance(20, 0).await;
    assert_eq!(account_status(&api, &account_id).await, "active");
    assert_eq!(notifier.sent().len(), 3);

    // The story in the event log, in order, each at its moment on the clock.
    let story: Vec<(String, Timestamp)> = api
        .list("/v1/events")
        .await
        .into_iter()
        .filter(|e| {
            let t = e["type"].as_str().unwrap();
            t.starts_with("dunning.")
                || matches!(t, "payment.failed" | "payment.succeeded" | "invoice.paid")
                || (t == "account.updated" && e["previous_attributes"].get("status").is_some())
        })
        .map(|e| (e["type"].as_str().unwrap().to_owned(), time(&e["created"])))
        .collect();
    let expected: Vec<(String, Timestamp)> = [
        ("payment.failed", at(0, 0)),
        ("dunning.reminder", at(1, 0)),
        ("payment.failed", at(3, 0)),
        ("dunning.warning", at(4, 0)),
        ("account.updated", at(4, 0)),
        ("payment.succeeded", at(5, 0)),
        ("invoice.paid", at(5, 0)),
        ("dunning.unblocked", at(5, 0)),
        ("account.updated", at(5, 0)),
    ]
    .into_iter()
    .map(|(t, at)| (t.to_owned(), at))
    .collect();
    assert_eq!(story, expected);
}

/// The policy API validates like the rest (problem+json, the offending step named), and a
/// blocked account is refused new subscriptions and plan changes with `account_blocked`.
async fn over_http_policies_are_validated_and_blocked_accounts_refused(store: Arc<dyn Store>) {
    let w = World::on(store).await;
    let (tenant, issued) = w
        .app
        .customers
        .create_tenant(
            "Blocked Co",
            billing_domain::customers::tenant::TenantMode::Sandbox,
        )
        .await
        .unwrap();
    let api = Api::new(billing_tests::serve(w.app.clone()).await, issued.secret);
    let openapi = api.get("/v1/openapi.json").await;
    for path in ["/v1/settings/dunning", "/v1/accounts/{id}/dunning"] {
        assert!(openapi["paths"][path].is_object(), "{path} is documented");
    }
    for schema in ["DunningCase", "DunningPolicy", "event.dunning.blocked"] {
        assert!(
            openapi["components"]["schemas"][schema].is_object(),
            "{schema} is documented"
        );
    }
    let default = api.get("/v1/settings/dunning").await;
    assert_eq!(
        default,
        json!({"steps": [
            {"after_days": 3, "action": "reminder"},
            {"after_days": 7, "action": "warning"},
            {"after_days": 14, "action": "block"}
        ], "on_block": {"deny_entitlements": true, "suspend_subscriptions": false}})
    );
    let (status, problem) = api
        .call(
            Method::PATCH,
            "/v1/settings/dunning",
            Some(&json!({"steps": [
                {"after_days": 7, "action": "reminder"},
                {"after_days": 3, "action": "warning"}
            ]})),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "dunning_steps_out_of_order");
    assert_eq!(problem["param"], "steps[1].after_days");
    let (status, problem) = api
        .call(
            Method::PATCH,
            "/v1/settings/dunning",
            Some(&json!({"steps": [{"after_days": 3, "action": "suspend"}]})),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        api.get("/v1/settings/dunning").await,
        default,
        "nothing written"
    );

    // An account blocked by dunning (a one-step policy blocks on day 0).
    api.patch(
        "/v1/settings/dunning",
        json!({"steps": [{"after_days": 0, "action": "block"}]}),
    )
    .await;
    let account = api
        .post(
            "/v1/accounts",
            json!({"email": "late@payer.test", "currency": "usd"}),
        )
        .await;
    let account_id = account["id"].as_str().unwrap().to_owned();
    let (status, _) = api
        .call(
            Method::GET,
            &format!("/v1/accounts/{account_id}/dunning"),
            None,
        )
        .await;
    assert_eq!(status, 404, "no case yet");
    let plan = api
        .post(
            "/v1/plans",
            json!({"code": "basic", "name": "Basic", "interval": {"unit": "month"},
                   "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 900}}}}}),
        )
        .await;
    let bigger = api
        .post(
            "/v1/plans",
            json!({"code": "bigger", "name": "Bigger", "interval": {"unit": "month"},
                   "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 1900}}}}}),
        )
        .await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"account": account_id, "plan": plan["id"], "collection_method": "send_invoice", "days_until_due": 30}),
        )
        .await;
    let invoices = api.get(&format!("/v1/invoices?account={account_id}")).await;
    let invoice: InvoiceId = serde_json::from_value(invoices["data"][0]["id"].clone()).unwrap();
    let caller = Caller {
        tenant_id: tenant.id,
        livemode: false,
        key_id: Some(issued.key.id),
        role: billing_domain::customers::access::Role::Admin,
        rate_limit_per_hour: None,
        request_id: None,
        user: None,
    };
    let account: billing_domain::kernel::ids::AccountId =
        serde_json::from_value(json!(account_id)).unwrap();
    let now = w.clock.now();
    w.app
        .collection
        .invoice_past_due(&caller, account, invoice, now)
        .await
        .unwrap();
    w.app
        .collection
        .run_due_dunning(caller.tenant_id, account, now)
        .await
        .unwrap();
    assert_eq!(account_status(&api, &account_id).await, "blocked");
    let blocked = |problem: &serde_json::Value| {
        problem["code"] == "account_blocked" && problem["param"] == "account"
    };
    let (status, problem) = api
        .call(
            Method::POST,
            "/v1/subscriptions",
            Some(&json!({"account": account_id, "plan": bigger["id"], "collection_method": "send_invoice", "days_until_due": 30})),
        )
        .await;
    assert!(status == 409 && blocked(&problem), "{status} {problem}");
    let sub_id = sub["id"].as_str().unwrap();
    let (status, problem) = api
        .call(
            Method::POST,
            &format!("/v1/subscriptions/{sub_id}/change-plan"),
            Some(&json!({"plan": bigger["id"]})),
        )
        .await;
    assert!(status == 409 && blocked(&problem), "{status} {problem}");
    let listed = api.get("/v1/accounts?status=blocked").await;
    assert_eq!(listed["data"][0]["id"], account_id.as_str());
    let case = api.get(&format!("/v1/accounts/{account_id}/dunning")).await;
    assert_eq!(case["steps_taken"][0]["action"], "block");
}

/// `billing-run`'s sweep releases a due step (and a notice whose claim ran out) to the
/// payments queue, and `payment-worker`'s use case takes it; after that nothing is due.
async fn the_sweep_releases_due_steps_and_notices_to_the_payment_worker(store: Arc<dyn Store>) {
    let queue = Arc::new(billing_memory::MemoryPaymentQueue::default());
    let mut w = World::on(store).await;
    w.app = w.app.clone().with_payment_queue(queue.clone());
    let invoice = w.open_invoice(1000).await;
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, invoice, t0())
        .await
        .unwrap();
    let sweeper = billing_app::jobs::Sweeper::new(
        w.app.clone(),
        Arc::new(billing_tests::webhooks::RecordingDispatch::default()),
        Arc::new(billing_memory::MemoryBillingQueue::default()),
    );
    // Dunning's jobs, not the emails events leave (`{kind}-evt_…`: the open invoice's).
    let dunning_jobs = |jobs: Vec<PaymentJob>| -> Vec<PaymentJob> {
        jobs.into_iter()
            .filter(|j| match j {
                PaymentJob::Dunning { .. } => true,
                PaymentJob::DunningNotice { key, .. } => !key.contains("-evt_"),
                _ => false,
            })
            .collect()
    };
    w.clock.set(day(2));
    sweeper.sweep(1000).await.unwrap();
    assert_eq!(dunning_jobs(queue.take()), []);
    w.clock.set(day(3));
    sweeper.sweep(1000).await.unwrap();
    let step = PaymentJob::Dunning {
        tenant: w.caller.tenant_id,
        account: w.account.id,
    };
    assert_eq!(dunning_jobs(queue.take()), std::slice::from_ref(&step));
    // Taken by a process that cannot send: its notice is due at once.
    billing_tests::app_with_clock(w.app.store.clone(), w.clock.clone())
        .collection
        .handle_payment_job(&step)
        .await
        .unwrap();
    sweeper.sweep(1000).await.unwrap();
    let notice = PaymentJob::DunningNotice {
        tenant: w.caller.tenant_id,
        account: w.account.id,
        key: "1-1-reminder".into(),
    };
    assert_eq!(dunning_jobs(queue.take()), std::slice::from_ref(&notice));
    w.app.collection.handle_payment_job(&notice).await.unwrap();
    assert_eq!(w.notices().len(), 1);
    sweeper.sweep(1000).await.unwrap();
    assert_eq!(
        dunning_jobs(queue.take()),
        [],
        "nothing left due until day 7"
    );
    assert_eq!(w.status().await, AccountStatus::Active);
}

/// What dunning costs in DynamoDB requests, counted on the local stand-in (not timed): a
/// case opening, a step with its notice sent at once, and the resolution that unblocks.
#[tokio::test]
async fn dunning_costs_a_handful_of_dynamodb_requests() {
    let counter = Arc::new(billing_infra::request_count::Counter::default());
    let w = World::on(Arc::new(
        billing_tests::counted_dynamo_store(counter.clone()).await,
    ))
    .await;
    let invoice = w.open_invoice(4900).await;
    let counts = |pairs: &[(&str, u64)]| {
        pairs
            .iter()
            .map(|(op, n)| (op.to_string(), *n))
            .collect::<std::collections::BTreeMap<_, _>>()
    };

    counter.start();
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, invoice, t0())
        .await
        .unwrap();
    let opening = counter.stop();
    // The invoice, the account, the policy and the case; one transaction.
    assert_eq!(
        opening,
        counts(&[("GetItem", 4), ("TransactWriteItems", 1)])
    );

    counter.start();
    assert_eq!(w.run(day(3)).await, 1);
    let step = counter.stop();
    // The case, its invoice (still owed?) and the account; the step's transaction; then the
    // notice: the tenant's branding, email settings and name and the amount owed, sent, and
    // its pending item deleted.
    assert_eq!(
        step,
        counts(&[("DeleteItem", 1), ("GetItem", 7), ("TransactWriteItems", 1)])
    );

    w.clock.set(day(8));
    void_without_word(&w, invoice).await;
    counter.start();
    w.app
        .collection
        .invoice_settled(&w.caller, w.account.id, invoice, day(8))
        .await
        .unwrap();
    let resolution = counter.stop();
    // The invoice, the case, the account; the transaction; the tenant's branding, email
    // settings and name for the notice.
    assert_eq!(
        resolution,
        counts(&[("DeleteItem", 1), ("GetItem", 6), ("TransactWriteItems", 1)])
    );
    assert_eq!(w.status().await, AccountStatus::Active);
    println!("DynamoDB requests: opening {opening:?}, step {step:?}, resolution {resolution:?}");
}

/// Dunning jobs as `payment-worker` receives them (SQS messages, JSON bodies), duplicates
/// in one batch included: each step once, its notice once.
async fn the_payment_worker_handler_runs_dunning_messages_once(store: Arc<dyn Store>) {
    let w = World::on(store).await;
    let invoice = w.open_invoice(1000).await;
    w.app
        .collection
        .invoice_past_due(&w.caller, w.account.id, invoice, t0())
        .await
        .unwrap();
    w.clock.set(day(7));
    let body = format!(
        r#"{{"kind":"dunning","tenant":"{}","account":"{}"}}"#,
        w.caller.tenant_id, w.account.id
    );
    let message = |id: &str| {
        let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
        m.message_id = Some(id.to_owned());
        m.body = Some(body.clone());
        m
    };
    let mut batch = aws_lambda_events::event::sqs::SqsEvent::default();
    batch.records = vec![message("a"), message("b"), message("c")];
    let response = payment_worker::handle(&w.app, batch).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(w.status().await, AccountStatus::Warning);
    assert_eq!(w.notices().len(), 2, "reminder and warning, once each");
    assert_eq!(
        w.events().await,
        ["dunning.reminder", "dunning.warning", "account.updated"]
    );
}

/// The SES adapter against the stand-in's SES v2 `SendEmail`: a sender SES does not know is
/// refused for good (the notice is not retried), a verified one sends.
#[tokio::test]
async fn the_ses_notifier_sends_from_a_verified_sender() {
    use billing_app::ports::{Notification, Notifier};
    let config = billing_aws::Config::local("unused", billing_tests::aws_endpoint());
    let ses = aws_sdk_sesv2::Client::new(&config.sdk_config().await);
    let from = format!(
        "billing-{}@saas.test",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let notifier = billing_aws::SesNotifier::new(ses.clone(), &from);
    let notification = Notification {
        tenant_id: billing_domain::kernel::ids::TenantId::from_ulid(ulid::Ulid::new()),
        account_id: billing_domain::kernel::ids::AccountId::from_ulid(ulid::Ulid::new()),
        to: "owner@customer.test".into(),
        subject: "Acme: your payment is overdue".into(),
        body: "We could not collect $49.00.\n".into(),
        html: "<p>We could not collect $49.00.</p>".into(),
        reply_to: Some("billing@acme.test".into()),
        key: "acct_x/dunning/1-1-reminder".into(),
    };
    match notifier.send(&notification).await {
        Err(NotifyError::Rejected(cause)) => assert!(cause.contains("not verified"), "{cause}"),
        other => panic!("{other:?}"),
    }
    ses.create_email_identity()
        .email_identity(&from)
        .send()
        .await
        .unwrap();
    notifier.send(&notification).await.unwrap();
}

billing_tests::racing_on_the_stand_in!(duplicate_and_concurrent_runs_take_each_step_once);

billing_tests::on_both_stores!(
    an_unpaid_invoice_is_reminded_warned_blocked_and_unblocked_when_settled,
    a_second_overdue_invoice_keeps_the_first_ones_days_and_both_must_be_settled,
    an_invoice_settled_without_word_resolves_the_case_at_its_next_step,
    a_notice_left_by_a_process_without_a_notifier_is_sent_by_the_worker_once,
    a_notifier_outage_is_retried_after_the_claim_runs_out,
    steps_of_an_account_on_a_test_clock_run_when_the_clock_advances,
    the_policy_is_per_tenant_validated_and_applies_to_new_cases,
    over_http_policies_are_validated_and_blocked_accounts_refused,
    the_sweep_releases_due_steps_and_notices_to_the_payment_worker,
    the_payment_worker_handler_runs_dunning_messages_once,
);
