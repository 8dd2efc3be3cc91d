//! Payments end to end at the use-case level: payment methods, collection of finalized
//! invoices by the payment worker's use case, retries on a test clock, hard declines,
//! exactly-once charging, inbound gateway events, refunds and credit notes. Each scenario
//! runs on the memory store and on DynamoDB (the local stand-in).

use std::sync::Arc;

use billing_app::collection::AppliedEvent;
use billing_app::collection::Collected;
use billing_app::ports::*;
use billing_app::{App, Caller};
use billing_aws::SandboxGateway;
use billing_domain::billing::invoice::InvoiceStatus;
use billing_domain::billing::subscription::{Subscription, SubscriptionStatus};
use billing_domain::collection::payment::{Payment, PaymentStatus};
use billing_domain::collection::retry::FinalAction;
use billing_memory::hooked::Hooked;
use billing_tests::Races;
use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use serde_json::json;

fn with_sandbox(app: App) -> (App, Arc<SandboxGateway>) {
    let gateway = Arc::new(SandboxGateway::new());
    (app.with_gateway(gateway.clone()), gateway)
}

async fn payments_of(app: &App, caller: &Caller, sub: &Subscription) -> Vec<Payment> {
    let mut items = app
        .collection
        .list_payments(
            caller,
            &PaymentFilter {
                account: Some(sub.account_id),
                ..Default::default()
            },
            &PageRequest::first(100),
        )
        .await
        .unwrap()
        .items;
    items.reverse();
    items
}

async fn first_invoice(
    app: &App,
    caller: &Caller,
    sub: &Subscription,
) -> billing_domain::billing::invoice::Invoice {
    let page = app
        .billing
        .list_invoices(
            caller,
            &InvoiceFilter {
                account: Some(sub.account_id),
                ..Default::default()
            },
            &PageRequest::first(100),
        )
        .await
        .unwrap();
    page.items.last().cloned().expect("an invoice")
}

async fn event_types(app: &App, caller: &Caller, resource: &str) -> Vec<String> {
    let mut events: Vec<String> = app
        .events
        .list_events(
            caller,
            &EventFilter {
                event_type: None,
                resource_id: Some(resource.to_owned()),
            },
            &PageRequest::first(100),
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.event_type.to_string())
        .collect();
    events.reverse();
    events
}

/// A card attached, a subscription started: its first invoice is collected by the worker's
/// use case, once, however often the job is delivered.
async fn collects_the_first_invoice_once(app: App) {
    let (app, gateway) = with_sandbox(app);
    let caller = billing_tests::admin(&app, "Collect").await;
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        json!({"email": "pay@acme.test", "currency": "usd"}),
        "month",
        1999,
    )
    .await;
    let (card, is_default) = app
        .customers
        .add_payment_method(&caller, sub.account_id, "tok_visa", false)
        .await
        .unwrap();
    assert!(is_default, "the first card is the default");
    assert_eq!((card.brand.as_str(), card.last4.as_str()), ("visa", "4242"));

    let pending = payments_of(&app, &caller, &sub).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status, PaymentStatus::Pending);
    assert_eq!(pending[0].amount, 1999);
    let job = PaymentJob::Attempt {
        tenant: caller.tenant_id,
        id: pending[0].id,
    };
    // Delivered twice (SQS at least once): charged once, recorded once, and the second
    // delivery finds the payment recorded and never asks the gateway again.
    app.collection.handle_payment_job(&job).await.unwrap();
    app.collection.handle_payment_job(&job).await.unwrap();
    assert_eq!(gateway.charge_calls(), 1, "the gateway was asked once");
    assert_eq!(gateway.charge_count(), 1, "the card was charged once");

    let paid = payments_of(&app, &caller, &sub).await;
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0].status, PaymentStatus::Succeeded);
    assert_eq!(paid[0].payment_method.as_deref(), Some(card.id.as_str()));
    let invoice = first_invoice(&app, &caller, &sub).await;
    assert_eq!(invoice.status, InvoiceStatus::Paid);
    assert_eq!(invoice.amount_paid, 1999);
    assert_eq!(
        event_types(&app, &caller, &paid[0].id.to_string()).await,
        vec!["payment.succeeded"]
    );
    let invoice_events = event_types(&app, &caller, &invoice.id.to_string()).await;
    assert_eq!(
        invoice_events,
        vec!["invoice.created", "invoice.finalized", "invoice.paid"]
    );
}

/// A subscription of `amount` a month with a Visa card: its first attempt's job.
async fn first_attempt_with_a_card(
    app: &App,
    name: &str,
    amount: i64,
) -> (Caller, Subscription, PaymentJob) {
    let caller = billing_tests::admin(app, name).await;
    let sub = billing_tests::subscribe(
        app,
        &caller,
        json!({"email": "card@acme.test", "currency": "usd"}),
        "month",
        amount,
    )
    .await;
    app.customers
        .add_payment_method(&caller, sub.account_id, "tok_visa", false)
        .await
        .unwrap();
    let attempt = payments_of(app, &caller, &sub).await.remove(0);
    let job = PaymentJob::Attempt {
        tenant: caller.tenant_id,
        id: attempt.id,
    };
    (caller, sub, job)
}

/// `deliveries` spawned deliveries of one payment job, all at once; each must succeed.
async fn deliver_at_once(app: &App, job: &PaymentJob, deliveries: usize) {
    let spawned: Vec<_> = (0..deliveries)
        .map(|_| {
            let (app, job) = (app.clone(), job.clone());
            tokio::spawn(async move { app.collection.handle_payment_job(&job).await })
        })
        .collect();
    for delivery in spawned {
        delivery.await.unwrap().unwrap();
    }
}

/// The same attempt delivered eight times at once (SQS at least once, several workers):
/// the card is charged once, the payment and the invoice recorded once. Each delivery that
/// read the attempt still pending asks the gateway under the attempt's id, so the gateway
/// answers every one of them with the same charge; the others find the payment recorded.
async fn eight_deliveries_of_an_attempt_charge_once(app: App, races: Races) {
    let (app, gateway) = with_sandbox(app);
    let (caller, sub, job) = first_attempt_with_a_card(&app, "Eight", 3100).await;
    races.begin();
    deliver_at_once(&app, &job, 8).await;
    assert_eq!(gateway.charge_count(), 1, "the card was charged once");
    assert_eq!(gateway.succeeded_count(), 1);
    let calls = gateway.charge_calls();
    assert!(
        (1..=8).contains(&calls),
        "at most one gateway call per delivery, all under one key: {calls}"
    );
    let paid = payments_of(&app, &caller, &sub).await;
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0].status, PaymentStatus::Succeeded);
    assert_eq!(
        event_types(&app, &caller, &paid[0].id.to_string()).await,
        vec!["payment.succeeded"]
    );
    let invoice = first_invoice(&app, &caller, &sub).await;
    assert_eq!(invoice.status, InvoiceStatus::Paid);
    assert_eq!(invoice.amount_paid, 3100);
    assert_eq!(
        event_types(&app, &caller, &invoice.id.to_string()).await,
        vec!["invoice.created", "invoice.finalized", "invoice.paid"]
    );
}

/// The same on the memory store, interleaving at every store operation (seeded delays on
/// the paused clock): a delivery lost the attempt's write to another at least once.
#[tokio::test(start_paused = true)]
async fn eight_deliveries_of_an_attempt_charge_once_in_memory() {
    let mut lost = 0;
    for seed in 0..4 {
        let (app, racing) = billing_tests::racing_app(seed, true);
        eight_deliveries_of_an_attempt_charge_once(app, Races::default()).await;
        lost += racing.refused_of("PaymentStore", "save_collection");
    }
    assert!(
        lost > 0,
        "no delivery lost the attempt's write: they did not race"
    );
}

/// A worker that crashed after the gateway accepted the charge (the result was never
/// written) is redelivered, twice at once, the deliveries interleaving at every store and
/// gateway operation (seeded delays on the paused clock): the gateway answers the same key
/// with the first outcome, so the customer is charged once.
#[tokio::test(start_paused = true)]
async fn a_crash_after_the_charge_charges_once() {
    let mut lost = 0;
    for seed in 0..4 {
        let (app, racing) = billing_tests::racing_app(seed, true);
        let gateway = Arc::new(SandboxGateway::new());
        let app = app.with_gateway(Arc::new(Hooked::new(gateway.clone(), racing.clone())));
        let caller = billing_tests::admin(&app, "Crash").await;
        let sub = billing_tests::subscribe(
            &app,
            &caller,
            json!({"email": "crash@acme.test", "currency": "usd"}),
            "month",
            500,
        )
        .await;
        let profile_card = app
            .customers
            .add_payment_method(&caller, sub.account_id, "4242424242424242", false)
            .await
            .unwrap()
            .0;
        let attempt = payments_of(&app, &caller, &sub).await.remove(0);
        // The crashed run: the gateway charged under the attempt id, nothing was written.
        gateway
            .charge(&ChargeRequest {
                idempotency_key: attempt.id.to_string(),
                customer: "cus_sb_x".into(),
                payment_method: profile_card.id.clone(),
                amount: attempt.amount.of(attempt.currency),
                description: "crashed".into(),
                metadata: Vec::new(),
            })
            .await
            .unwrap();
        let job = PaymentJob::Attempt {
            tenant: caller.tenant_id,
            id: attempt.id,
        };
        let refused_before = racing.refused_of("PaymentStore", "save_collection");
        deliver_at_once(&app, &job, 2).await;
        assert_eq!(
            gateway.charge_count(),
            1,
            "seed {seed}: the card was charged once"
        );
        assert_eq!(gateway.succeeded_count(), 1, "seed {seed}");
        // The crashed call, then one replay of its key by each delivery that read the
        // attempt still pending: one, or both when they overlapped.
        assert!(
            (2..=3).contains(&gateway.charge_calls()),
            "seed {seed}: {} gateway calls",
            gateway.charge_calls()
        );
        lost += racing.refused_of("PaymentStore", "save_collection") - refused_before;
        let invoice = first_invoice(&app, &caller, &sub).await;
        assert_eq!(invoice.status, InvoiceStatus::Paid, "seed {seed}");
    }
    assert!(
        lost > 0,
        "no delivery lost its write to the other: they did not race"
    );
}

/// A card that declines twice (insufficient funds), then the default is changed between
/// retries: paid on the third attempt, on the schedule's days, all on a test clock.
async fn retries_on_the_schedule_until_paid(app: App) {
    let (app, gateway) = with_sandbox(app);
    let caller = billing_tests::admin(&app, "Retry").await;
    let start: Timestamp = "2027-03-01T09:00:00Z".parse().unwrap();
    let clock = app
        .billing
        .create_test_clock(&caller, None, start)
        .await
        .unwrap();
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        json!({"email": "retry@acme.test", "currency": "usd", "test_clock": clock.id}),
        "month",
        4200,
    )
    .await;
    app.customers
        .add_payment_method(&caller, sub.account_id, "4000000000009995", false)
        .await
        .unwrap();
    let advance = |days: i64| {
        let app = app.clone();
        let caller = caller.clone();
        async move {
            app.billing
                .begin_test_clock_advance(
                    &caller,
                    clock.id,
                    start + SignedDuration::from_hours(24 * days),
                )
                .await
                .unwrap();
            app.billing
                .run_test_clock(caller.tenant_id, clock.id)
                .await
                .unwrap();
        }
    };
    advance(4).await;
    let attempts = payments_of(&app, &caller, &sub).await;
    assert_eq!(
        attempts.iter().map(|p| p.status).collect::<Vec<_>>(),
        vec![
            PaymentStatus::Failed,
            PaymentStatus::Failed,
            PaymentStatus::Pending
        ]
    );
    assert_eq!(attempts[0].due_at, start);
    assert_eq!(attempts[1].due_at, start + SignedDuration::from_hours(72));
    assert_eq!(
        attempts[2].due_at,
        start + SignedDuration::from_hours(5 * 24)
    );
    let failure = attempts[0].failure.as_ref().unwrap();
    assert_eq!(failure.decline_code.as_deref(), Some("insufficient_funds"));
    let invoice = first_invoice(&app, &caller, &sub).await;
    assert_eq!(invoice.status, InvoiceStatus::Open);
    assert_eq!(invoice.attempt_count, 2);
    assert_eq!(invoice.next_payment_attempt, Some(attempts[2].due_at));
    assert_eq!(gateway.charge_calls(), 2, "one call per attempt made");

    let (visa, _) = app
        .customers
        .add_payment_method(&caller, sub.account_id, "tok_visa", true)
        .await
        .unwrap();
    advance(6).await;
    let attempts = payments_of(&app, &caller, &sub).await;
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[2].status, PaymentStatus::Succeeded);
    assert_eq!(
        gateway.charge_calls(),
        3,
        "one call per attempt, each on its day"
    );
    assert_eq!(gateway.charge_count(), 3, "each attempt its own key");
    assert_eq!(gateway.succeeded_count(), 1);
    assert_eq!(
        attempts[2].payment_method.as_deref(),
        Some(visa.id.as_str())
    );
    let invoice = first_invoice(&app, &caller, &sub).await;
    assert_eq!(invoice.status, InvoiceStatus::Paid);
    assert_eq!(
        invoice.paid_at,
        Some(start + SignedDuration::from_hours(5 * 24))
    );
    assert_eq!(
        app.billing
            .get_subscription(&caller, sub.id)
            .await
            .unwrap()
            .status,
        SubscriptionStatus::Active
    );
}

/// A hard decline (a stolen card) is not retried: the subscription goes past_due, and the
/// invoice is written off when the tenant chose that. Paying it later out of band settles
/// it and makes the subscription active again.
async fn a_hard_decline_is_final(app: App) {
    let notifier = Arc::new(billing_memory::MemoryNotifier::default());
    let (app, gateway) = with_sandbox(app.with_notifier(notifier.clone()));
    let caller = billing_tests::admin(&app, "Hard").await;
    app.collection
        .set_payment_settings(&caller, None, Some(FinalAction::MarkUncollectible), None)
        .await
        .unwrap();
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        json!({"email": "hard@acme.test", "currency": "usd"}),
        "month",
        900,
    )
    .await;
    app.customers
        .add_payment_method(
            &caller,
            sub.account_id,
            "tok_chargeDeclinedStolenCard",
            false,
        )
        .await
        .unwrap();
    let attempt = payments_of(&app, &caller, &sub).await.remove(0);
    let outcome = app
        .collection
        .collect_payment(caller.tenant_id, attempt.id, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(outcome, Collected::Failed { retry_at: None });
    assert_eq!(payments_of(&app, &caller, &sub).await.len(), 1, "no retry");
    // The customer is told to pay with another card, once (a redelivery sends nothing more).
    app.collection
        .collect_payment(caller.tenant_id, attempt.id, Timestamp::now())
        .await
        .unwrap();
    let jobs = billing_tests::send_due_notices(&app).await;
    for job in &jobs {
        app.collection.handle_payment_job(job).await.unwrap();
    }
    let notices: Vec<_> = notifier
        .sent()
        .into_iter()
        .filter(|n| n.key.contains("/email/payment_failed-"))
        .collect();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].to, "hard@acme.test");
    assert!(notices[0].body.contains("$9.00"), "{}", notices[0].body);
    assert!(
        notices[0].body.contains("We will not try this card again"),
        "{}",
        notices[0].body
    );
    let invoice = first_invoice(&app, &caller, &sub).await;
    assert_eq!(invoice.status, InvoiceStatus::Uncollectible);
    assert_eq!(
        app.billing
            .get_subscription(&caller, sub.id)
            .await
            .unwrap()
            .status,
        SubscriptionStatus::PastDue
    );
    // A hard decline is never tried again, not even as a replay on redelivery.
    assert_eq!(gateway.charge_calls(), 1, "the gateway was asked once");
    assert_eq!(gateway.charge_count(), 1);

    let paid = app
        .collection
        .mark_invoice_paid(&caller, invoice.id, "wire 2027-03-04".into())
        .await
        .unwrap();
    assert_eq!(paid.status, InvoiceStatus::Paid);
    assert_eq!(paid.paid_out_of_band.as_deref(), Some("wire 2027-03-04"));
    assert_eq!(
        app.billing
            .get_subscription(&caller, sub.id)
            .await
            .unwrap()
            .status,
        SubscriptionStatus::Active
    );
}

/// 3-D Secure: the invoice stays open with `requires_action`; the gateway's later
/// `payment_intent.succeeded` pays it, once, and a replay or a late failure changes nothing.
async fn authentication_then_gateway_events(app: App) {
    let (app, _) = with_sandbox(app);
    let caller = billing_tests::admin(&app, "Sca").await;
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        json!({"email": "sca@acme.test", "currency": "eur"}),
        "month",
        3000,
    )
    .await;
    app.customers
        .add_payment_method(&caller, sub.account_id, "4000002500003155", false)
        .await
        .unwrap();
    let attempt = payments_of(&app, &caller, &sub).await.remove(0);
    let outcome = app
        .collection
        .collect_payment(caller.tenant_id, attempt.id, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(outcome, Collected::RequiresAction);
    let invoice = first_invoice(&app, &caller, &sub).await;
    assert_eq!(invoice.status, InvoiceStatus::Open);
    assert_eq!(invoice.payment_status, Some(PaymentStatus::RequiresAction));
    let waiting = app
        .collection
        .get_payment(&caller, attempt.id)
        .await
        .unwrap();
    let intent = waiting.payment_intent.clone().unwrap();

    let metadata = GatewayMetadata::from([
        ("tenant_id".to_owned(), caller.tenant_id.to_string()),
        ("attempt_id".to_owned(), attempt.id.to_string()),
    ]);
    let succeeded = GatewayEvent {
        id: "evt_succeeded_1".into(),
        created: Timestamp::now(),
        livemode: false,
        account: None,
        kind: GatewayEventKind::PaymentSucceeded {
            payment_intent: intent.clone(),
            charge: Some("ch_1".into()),
            amount: 3000,
            currency: "eur".into(),
            metadata: metadata.clone(),
        },
    };
    assert_eq!(
        app.collection
            .apply_gateway_event(&succeeded)
            .await
            .unwrap(),
        AppliedEvent::Applied
    );
    assert_eq!(
        app.collection
            .apply_gateway_event(&succeeded)
            .await
            .unwrap(),
        AppliedEvent::Duplicate
    );
    let late_failure = GatewayEvent {
        id: "evt_failed_1".into(),
        created: Timestamp::now(),
        livemode: false,
        account: None,
        kind: GatewayEventKind::PaymentFailed {
            payment_intent: intent.clone(),
            code: "card_declined".into(),
            decline_code: Some("generic_decline".into()),
            message: "declined".into(),
            // No metadata: found through the payment intent's ref.
            metadata: GatewayMetadata::new(),
        },
    };
    assert_eq!(
        app.collection
            .apply_gateway_event(&late_failure)
            .await
            .unwrap(),
        AppliedEvent::Ignored("nothing to change")
    );
    let invoice = first_invoice(&app, &caller, &sub).await;
    assert_eq!(invoice.status, InvoiceStatus::Paid, "paid stays paid");
    let paid = app
        .collection
        .get_payment(&caller, attempt.id)
        .await
        .unwrap();
    assert_eq!(paid.status, PaymentStatus::Succeeded);

    // A refund made at the gateway's dashboard comes in as charge.refunded.
    let refunded = GatewayEvent {
        id: "evt_refunded_1".into(),
        created: Timestamp::now(),
        livemode: false,
        account: None,
        kind: GatewayEventKind::ChargeRefunded {
            charge: "ch_1".into(),
            payment_intent: Some(intent.clone()),
            amount_refunded: 1000,
            currency: "eur".into(),
            metadata: GatewayMetadata::new(),
        },
    };
    assert_eq!(
        app.collection.apply_gateway_event(&refunded).await.unwrap(),
        AppliedEvent::Applied
    );
    assert_eq!(
        app.collection.apply_gateway_event(&refunded).await.unwrap(),
        AppliedEvent::Duplicate
    );
    let notes = app
        .collection
        .list_credit_notes(
            &caller,
            &CreditNoteFilter {
                invoice: Some(invoice.id),
                ..Default::default()
            },
            &PageRequest::first(10),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(
        notes.iter().map(|n| n.amount).collect::<Vec<_>>(),
        vec![1000]
    );
    let unknown = GatewayEvent {
        id: "evt_other".into(),
        created: Timestamp::now(),
        livemode: false,
        account: None,
        kind: GatewayEventKind::Other {
            event_type: "customer.created".into(),
        },
    };
    assert!(matches!(
        app.collection.apply_gateway_event(&unknown).await.unwrap(),
        AppliedEvent::Ignored(_)
    ));
}

/// Refunds: partial then the rest, each a credit note; never more than was paid.
async fn refunds_make_credit_notes_and_never_exceed_the_payment(app: App) {
    let (app, _) = with_sandbox(app);
    let caller = billing_tests::admin(&app, "Refund").await;
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        json!({"email": "refund@acme.test", "currency": "usd"}),
        "month",
        1000,
    )
    .await;
    app.customers
        .add_payment_method(&caller, sub.account_id, "tok_mastercard", false)
        .await
        .unwrap();
    let attempt = payments_of(&app, &caller, &sub).await.remove(0);
    app.collection
        .collect_payment(caller.tenant_id, attempt.id, Timestamp::now())
        .await
        .unwrap();
    let part = app
        .collection
        .refund_payment(&caller, attempt.id, Some(300), Some("goodwill".into()))
        .await
        .unwrap();
    assert_eq!(part.amount, 300);
    let too_much = app
        .collection
        .refund_payment(&caller, attempt.id, Some(800), None)
        .await
        .unwrap_err();
    assert!(
        matches!(too_much, billing_app::AppError::Invalid(ref v) if v.code == "refund_too_large")
    );
    let rest = app
        .collection
        .refund_payment(&caller, attempt.id, None, None)
        .await
        .unwrap();
    assert_eq!(rest.amount, 700);
    let payment = app
        .collection
        .get_payment(&caller, attempt.id)
        .await
        .unwrap();
    assert_eq!(payment.amount_refunded, 1000);
    assert_eq!(
        event_types(&app, &caller, &attempt.id.to_string()).await,
        vec!["payment.succeeded", "payment.refunded", "payment.refunded"]
    );
}

/// Payment methods: set the default, detach; detaching the default falls back to the
/// newest remaining card; a gateway `payment_method.detached` forgets it too.
async fn payment_methods_default_and_detach(app: App) {
    let (app, _) = with_sandbox(app);
    let caller = billing_tests::admin(&app, "Cards").await;
    let account = app
        .customers
        .create_account(
            &caller,
            serde_json::from_value(json!({"email": "cards@acme.test", "currency": "usd"})).unwrap(),
        )
        .await
        .unwrap();
    let (a, _) = app
        .customers
        .add_payment_method(&caller, account.id, "tok_visa", false)
        .await
        .unwrap();
    let (b, b_default) = app
        .customers
        .add_payment_method(&caller, account.id, "tok_mastercard", false)
        .await
        .unwrap();
    assert!(!b_default);
    let profile = app
        .customers
        .set_default_payment_method(&caller, account.id, &b.id)
        .await
        .unwrap();
    assert_eq!(profile.default_method.as_deref(), Some(b.id.as_str()));
    let profile = app
        .customers
        .remove_payment_method(&caller, account.id, &b.id)
        .await
        .unwrap();
    assert_eq!(profile.default_method.as_deref(), Some(a.id.as_str()));
    let err = app
        .customers
        .add_payment_method(&caller, account.id, "4111111111111111", false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, billing_app::AppError::Invalid(ref v) if v.code == "payment_method_refused")
    );
    let detached = GatewayEvent {
        id: "evt_detached".into(),
        created: Timestamp::now(),
        livemode: false,
        account: None,
        kind: GatewayEventKind::PaymentMethodDetached {
            payment_method: a.id.clone(),
        },
    };
    assert_eq!(
        app.collection.apply_gateway_event(&detached).await.unwrap(),
        AppliedEvent::Applied
    );
    assert_eq!(
        app.collection.apply_gateway_event(&detached).await.unwrap(),
        AppliedEvent::Duplicate
    );
    let profile = app
        .customers
        .list_payment_methods(&caller, account.id)
        .await
        .unwrap();
    assert!(profile.methods.is_empty());
}

/// The sample SQS event (`events/payment-worker-sqs.json`) through the handler: the attempt
/// it names does not exist here, which is success; its unreadable record is reported alone.
#[tokio::test]
async fn the_sample_event_reports_only_its_unreadable_record() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/payment-worker-sqs.json");
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let app = billing_tests::memory_app();
    let response = payment_worker::handle(&app, event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["e7a3c5f1-9d2b-4c6e-8a0f-1b3d5e7f9a24"]);
}

/// A real attempt delivered three times through the handler (two in one batch, which run
/// one after the other as they share the attempt's batch key): one charge, one recorded
/// payment, and the gateway asked once.
async fn the_handler_charges_a_duplicated_job_once(app: App) {
    let (app, gateway) = with_sandbox(app);
    let (caller, sub, job) = first_attempt_with_a_card(&app, "Handler", 2500).await;
    let message = |id: &str| {
        let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
        m.message_id = Some(id.to_owned());
        m.body = Some(serde_json::to_string(&job).unwrap());
        m
    };
    let mut batch = aws_lambda_events::event::sqs::SqsEvent::default();
    batch.records = vec![message("a"), message("b")];
    assert!(payment_worker::handle(&app, batch)
        .await
        .batch_item_failures
        .is_empty());
    let mut again = aws_lambda_events::event::sqs::SqsEvent::default();
    again.records = vec![message("c")];
    assert!(payment_worker::handle(&app, again)
        .await
        .batch_item_failures
        .is_empty());
    // Only the first delivery reaches the gateway: the others find the payment recorded.
    assert_eq!(gateway.charge_calls(), 1, "the gateway was asked once");
    assert_eq!(gateway.charge_count(), 1, "the card was charged once");
    let all = payments_of(&app, &caller, &sub).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, PaymentStatus::Succeeded);
}

/// The first attempt is handed to the payments queue right after the commit that made it;
/// until it is recorded the sweep releases it again (a lost message is only a delay), and
/// once recorded it is no longer due.
async fn attempts_are_released_after_commit_and_swept_until_recorded(app: App) {
    use billing_app::jobs::Sweeper;
    use billing_memory::{MemoryBillingQueue, MemoryPaymentQueue};
    let queue = Arc::new(MemoryPaymentQueue::default());
    let (app, _) = with_sandbox(app.with_payment_queue(queue.clone()));
    let caller = billing_tests::admin(&app, "Release").await;
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        json!({"email": "release@acme.test", "currency": "usd"}),
        "month",
        700,
    )
    .await;
    let attempt = payments_of(&app, &caller, &sub).await.remove(0);
    let job = PaymentJob::Attempt {
        tenant: caller.tenant_id,
        id: attempt.id,
    };
    assert_eq!(queue.take(), vec![job.clone()]);

    let sweeper = Sweeper::new(
        app.clone(),
        Arc::new(billing_tests::webhooks::RecordingDispatch::default()),
        Arc::new(MemoryBillingQueue::default()),
    );
    let report = sweeper.sweep(100).await.unwrap();
    assert_eq!(report.payment_jobs_queued, 1, "{report:?}");
    assert_eq!(queue.take(), vec![job.clone()]);

    app.customers
        .add_payment_method(&caller, sub.account_id, "tok_visa", false)
        .await
        .unwrap();
    app.collection.handle_payment_job(&job).await.unwrap();
    let report = sweeper.sweep(100).await.unwrap();
    // What is due now is the receipt the payment's event left, not the attempt.
    let jobs = queue.take();
    assert_eq!(report.payment_jobs_queued, jobs.len(), "{report:?}");
    assert!(
        jobs.iter().all(
            |j| matches!(j, PaymentJob::DunningNotice { key, .. } if key.starts_with("receipt-"))
        ),
        "{jobs:?}"
    );
}

/// The payment routes over HTTP: cards, paying an invoice now (with the default and with a
/// chosen card), payments listed by invoice, a refund as a credit note, settings, and
/// problem+json answers for bad input.
async fn the_payment_routes_over_http(app: App) {
    let (api, _) = billing_tests::api::Api::start(app, "Http Payments").await;
    let (_, account) = api
        .call(
            Method::POST,
            "/v1/accounts",
            Some(&json!({"email": "http@acme.test", "currency": "usd"})),
        )
        .await;
    let account = account["id"].as_str().unwrap().to_owned();
    let methods = format!("/v1/accounts/{account}/payment-methods");
    let (status, visa) = api
        .call(
            Method::POST,
            &methods,
            Some(&json!({"payment_method": "tok_visa"})),
        )
        .await;
    assert_eq!(status, 201, "{visa}");
    assert_eq!(visa["object"], "payment_method");
    assert_eq!(visa["default"], true);
    assert_eq!(visa["last4"], "4242");
    let (_, poor) = api
        .call(
            Method::POST,
            &methods,
            Some(&json!({"payment_method": "4000000000009995"})),
        )
        .await;
    assert_eq!(poor["default"], false);
    let poor_id = poor["id"].as_str().unwrap().to_owned();
    let visa_id = visa["id"].as_str().unwrap().to_owned();
    let (status, made_default) = api
        .call(
            Method::PATCH,
            &format!("{methods}/{poor_id}"),
            Some(&json!({"default": true})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), made_default["default"].clone()),
        (200, json!(true))
    );
    let (status, refused) = api
        .call(
            Method::POST,
            &methods,
            Some(&json!({"payment_method": "4111111111111111"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(refused["code"], "payment_method_refused");
    assert_eq!(refused["param"], "payment_method");
    let (status, _) = api
        .call(
            Method::PATCH,
            &format!("{methods}/pm_nope"),
            Some(&json!({"default": true})),
        )
        .await;
    assert_eq!(status, 404);
    let (_, listed) = api.call(Method::GET, &methods, None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);

    // A one-off invoice, finalized: its first attempt waits for the worker; paying now
    // with the default (declining) card fails, with the visa it succeeds.
    let (_, invoice) = api
        .call(
            Method::POST,
            "/v1/invoices",
            Some(&json!({"account": account, "lines": [{"description": "Setup", "amount": 5000}]})),
        )
        .await;
    let invoice = invoice["id"].as_str().unwrap().to_owned();
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/v1/invoices/{invoice}/finalize"),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, declined) = api
        .call(
            Method::POST,
            &format!("/v1/invoices/{invoice}/pay"),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 200, "{declined}");
    assert_eq!(declined["status"], "failed");
    assert_eq!(declined["failure"]["decline_code"], "insufficient_funds");
    assert_eq!(declined["failure"]["kind"], "soft");
    let (_, paid) = api
        .call(
            Method::POST,
            &format!("/v1/invoices/{invoice}/pay"),
            Some(&json!({"payment_method": visa_id})),
        )
        .await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    let (_, stored) = api
        .call(Method::GET, &format!("/v1/invoices/{invoice}"), None)
        .await;
    assert_eq!(stored["status"], "paid");
    assert_eq!(stored["amount_paid"], 5000);
    let (status, again) = api
        .call(
            Method::POST,
            &format!("/v1/invoices/{invoice}/mark-paid"),
            Some(&json!({"reference": "cheque 12"})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), again["code"].clone()),
        (409, json!("invalid_transition"))
    );
    let (_, payments) = api
        .call(
            Method::GET,
            &format!("/v1/payments?invoice={invoice}&limit=10"),
            None,
        )
        .await;
    let mut statuses: Vec<&str> = payments["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    statuses.sort_unstable();
    // The two manual attempts, and the automatic one still waiting for the worker (which
    // will find the invoice paid and cancel it). Ids made in one millisecond may sort
    // either way, so the order is not asserted.
    assert_eq!(statuses, ["failed", "pending", "succeeded"]);

    let payment = paid["id"].as_str().unwrap();
    let (status, note) = api
        .call(
            Method::POST,
            &format!("/v1/payments/{payment}/refunds"),
            Some(&json!({"amount": 1500, "memo": "discount"})),
        )
        .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(note["amount"], 1500);
    assert_eq!(note["reason"], "refund");
    let (status, too_much) = api
        .call(
            Method::POST,
            &format!("/v1/payments/{payment}/refunds"),
            Some(&json!({"amount": 4000})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), too_much["code"].clone()),
        (400, json!("refund_too_large"))
    );
    let (_, notes) = api
        .call(
            Method::GET,
            &format!("/v1/credit-notes?invoice={invoice}"),
            None,
        )
        .await;
    assert_eq!(notes["data"].as_array().unwrap().len(), 1);

    let (_, settings) = api.call(Method::GET, "/v1/settings/payments", None).await;
    assert_eq!(
        settings,
        json!({"retry_days": [3, 5, 7, 10], "final_action": "leave_open"})
    );
    let (status, bad) = api
        .call(
            Method::PATCH,
            "/v1/settings/payments",
            Some(&json!({"retry_days": [5, 3]})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), bad["code"].clone()),
        (400, json!("invalid_retry_schedule"))
    );
    let (status, changed) = api
        .call(
            Method::PATCH,
            "/v1/settings/payments",
            Some(&json!({"retry_days": [1, 2], "final_action": "mark_uncollectible"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(changed["final_action"], "mark_uncollectible");

    let remaining = api.delete(&format!("{methods}/{poor_id}")).await;
    assert_eq!(remaining["data"][0]["id"], visa_id.as_str());
    assert_eq!(remaining["data"][0]["default"], true);
}

/// A customer who fails authentication: the gateway's `payment_intent.payment_failed` for
/// an attempt waiting on 3-D Secure records the failure and schedules the retry.
async fn failed_authentication_is_a_failed_attempt_with_a_retry(app: App) {
    let (app, _) = with_sandbox(app);
    let caller = billing_tests::admin(&app, "ScaFail").await;
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        json!({"email": "scafail@acme.test", "currency": "usd"}),
        "month",
        1200,
    )
    .await;
    app.customers
        .add_payment_method(
            &caller,
            sub.account_id,
            "pm_card_authenticationRequired",
            false,
        )
        .await
        .unwrap();
    let attempt = payments_of(&app, &caller, &sub).await.remove(0);
    let now = Timestamp::now();
    app.collection
        .collect_payment(caller.tenant_id, attempt.id, now)
        .await
        .unwrap();
    let waiting = app
        .collection
        .get_payment(&caller, attempt.id)
        .await
        .unwrap();
    let failed = GatewayEvent {
        id: "evt_auth_failed".into(),
        created: now,
        livemode: false,
        account: None,
        kind: GatewayEventKind::PaymentFailed {
            payment_intent: waiting.payment_intent.clone().unwrap(),
            code: "payment_intent_authentication_failure".into(),
            decline_code: None,
            message: "The customer did not authenticate.".into(),
            metadata: GatewayMetadata::from([
                ("tenant_id".to_owned(), caller.tenant_id.to_string()),
                ("attempt_id".to_owned(), attempt.id.to_string()),
            ]),
        },
    };
    assert_eq!(
        app.collection.apply_gateway_event(&failed).await.unwrap(),
        AppliedEvent::Applied
    );
    let attempts = payments_of(&app, &caller, &sub).await;
    assert_eq!(
        attempts.iter().map(|p| p.status).collect::<Vec<_>>(),
        vec![PaymentStatus::Failed, PaymentStatus::Pending]
    );
    let invoice = first_invoice(&app, &caller, &sub).await;
    assert_eq!(invoice.payment_status, Some(PaymentStatus::Failed));
    assert_eq!(invoice.next_payment_attempt, Some(attempts[1].due_at));
}

/// An invoice the customer pays by themselves (`send_invoice`, due in 7 days) that is not
/// paid by its due date becomes overdue at that moment on the test clock, once, and the
/// account's dunning case opens.
async fn a_sent_invoice_goes_overdue_on_its_due_date(app: App) {
    let caller = billing_tests::admin(&app, "Overdue").await;
    let start: Timestamp = "2027-06-01T08:00:00Z".parse().unwrap();
    let clock = app
        .billing
        .create_test_clock(&caller, None, start)
        .await
        .unwrap();
    let account = app
        .customers
        .create_account(
            &caller,
            serde_json::from_value(
                json!({"email": "late@acme.test", "currency": "usd", "test_clock": clock.id}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let plan = app.catalog
        .create_plan(
            &caller,
            serde_json::from_value(json!({
                "code": "invoiced", "name": "Invoiced", "interval": {"unit": "month"},
                "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 8000}}}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let sub = app
        .billing
        .create_subscription(
            &caller,
            billing_app::billing::StartSubscription {
                collection_method:
                    billing_domain::billing::subscription::CollectionMethod::SendInvoice,
                days_until_due: Some(7),
                ..billing_app::billing::StartSubscription::new(account.id, plan.plan.id)
            },
        )
        .await
        .unwrap();
    assert!(
        payments_of(&app, &caller, &sub).await.is_empty(),
        "nothing is charged"
    );
    for days in [6, 9] {
        app.billing
            .begin_test_clock_advance(
                &caller,
                clock.id,
                start + SignedDuration::from_hours(24 * days),
            )
            .await
            .unwrap();
        app.billing
            .run_test_clock(caller.tenant_id, clock.id)
            .await
            .unwrap();
        let invoice = first_invoice(&app, &caller, &sub).await;
        assert_eq!(invoice.overdue, days > 7, "day {days}");
    }
    let invoice = first_invoice(&app, &caller, &sub).await;
    let events = event_types(&app, &caller, &invoice.id.to_string()).await;
    assert_eq!(
        events.iter().filter(|e| *e == "invoice.overdue").count(),
        1,
        "{events:?}"
    );
    let case = app
        .collection
        .get_dunning_case(&caller, account.id)
        .await
        .unwrap();
    assert_eq!(
        case.overdue_since,
        start + SignedDuration::from_hours(7 * 24)
    );
    assert_eq!(case.overdue_invoices, vec![invoice.id]);
}

/// Issue 13, item 2 (Connect): an inbound Stripe event is applied to the tenant its metadata
/// names only when it comes from that tenant's Stripe account (its connected account, or
/// the platform's when it has none) and mode; another tenant's account, the platform's, or
/// the other mode is ignored and changes nothing.
async fn gateway_events_apply_only_from_the_tenants_account_and_mode(app: App) {
    use billing_domain::collection::connect::StripeAccount;
    let (app, _) = with_sandbox(app);
    let caller = billing_tests::admin(&app, "Connected").await;
    let other = billing_tests::admin(&app, "Other connected").await;
    for (who, account) in [(&caller, "acct_1Mine"), (&other, "acct_1Theirs")] {
        let account = StripeAccount::parse(account, "stripe_account").unwrap();
        app.collection
            .set_payment_settings(who, None, None, Some(Some(account)))
            .await
            .unwrap();
    }
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        json!({"email": "connect@acme.test", "currency": "eur"}),
        "month",
        3000,
    )
    .await;
    let (card, _) = app
        .customers
        .add_payment_method(&caller, sub.account_id, "4000002500003155", false)
        .await
        .unwrap();
    let attempt = payments_of(&app, &caller, &sub).await.remove(0);
    app.collection
        .collect_payment(caller.tenant_id, attempt.id, Timestamp::now())
        .await
        .unwrap();
    let waiting = app
        .collection
        .get_payment(&caller, attempt.id)
        .await
        .unwrap();
    let intent = waiting.payment_intent.clone().unwrap();
    let metadata = GatewayMetadata::from([
        ("tenant_id".to_owned(), caller.tenant_id.to_string()),
        ("attempt_id".to_owned(), attempt.id.to_string()),
    ]);
    let succeeded = |id: &str, livemode: bool, account: Option<&str>| GatewayEvent {
        id: id.into(),
        created: Timestamp::now(),
        livemode,
        account: account.map(str::to_owned),
        kind: GatewayEventKind::PaymentSucceeded {
            payment_intent: intent.clone(),
            charge: Some("ch_connect".into()),
            amount: 3000,
            currency: "eur".into(),
            metadata: metadata.clone(),
        },
    };
    for (event, why) in [
        (
            succeeded("evt_theirs", false, Some("acct_1Theirs")),
            "the event's Stripe account is not the tenant's",
        ),
        (
            succeeded("evt_platform", false, None),
            "the event's Stripe account is not the tenant's",
        ),
        (
            succeeded("evt_live", true, Some("acct_1Mine")),
            "the event's mode is not the tenant's",
        ),
    ] {
        assert_eq!(
            app.collection.apply_gateway_event(&event).await.unwrap(),
            AppliedEvent::Ignored(why),
            "{}",
            event.id
        );
    }
    let detached = |account: &str| GatewayEvent {
        id: format!("evt_detached_{account}"),
        created: Timestamp::now(),
        livemode: false,
        account: Some(account.to_owned()),
        kind: GatewayEventKind::PaymentMethodDetached {
            payment_method: card.id.clone(),
        },
    };
    assert_eq!(
        app.collection
            .apply_gateway_event(&detached("acct_1Theirs"))
            .await
            .unwrap(),
        AppliedEvent::Ignored("the event's Stripe account is not the tenant's")
    );
    assert_eq!(
        app.customers
            .list_payment_methods(&caller, sub.account_id)
            .await
            .unwrap()
            .methods
            .len(),
        1,
        "the card is still there"
    );
    let unchanged = first_invoice(&app, &caller, &sub).await;
    assert_eq!(unchanged.status, InvoiceStatus::Open);

    assert_eq!(
        app.collection
            .apply_gateway_event(&succeeded("evt_mine", false, Some("acct_1Mine")))
            .await
            .unwrap(),
        AppliedEvent::Applied
    );
    assert_eq!(
        first_invoice(&app, &caller, &sub).await.status,
        InvoiceStatus::Paid
    );
}

billing_tests::on_both_stores!(
    collects_the_first_invoice_once,
    the_handler_charges_a_duplicated_job_once,
    a_hard_decline_is_final,
    refunds_make_credit_notes_and_never_exceed_the_payment,
    payment_methods_default_and_detach,
    attempts_are_released_after_commit_and_swept_until_recorded,
    the_payment_routes_over_http,
    failed_authentication_is_a_failed_attempt_with_a_retry,
    gateway_events_apply_only_from_the_tenants_account_and_mode,
    retries_on_the_schedule_until_paid,
    authentication_then_gateway_events,
    a_sent_invoice_goes_overdue_on_its_due_date,
);

billing_tests::racing_on_the_stand_in!(eight_deliveries_of_an_attempt_charge_once);
