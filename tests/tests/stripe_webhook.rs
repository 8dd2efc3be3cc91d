//! Inbound Stripe webhooks: Stripe's event shapes (from its own fixtures) read into our
//! terms; signatures checked against the raw body (forged, stale, missing and tampered are
//! 400 with nothing applied); a verified event applied once however often it is delivered;
//! and Stripe's official Python library as an independent signer and verifier.

use std::sync::Arc;

use billing_app::collection::Collected;
use billing_app::ports::*;
use billing_app::{App, Caller};
use billing_aws::StripeGateway;
use billing_domain::billing::invoice::InvoiceStatus;
use billing_domain::collection::stripe_signature::WebhookSecrets;
use billing_domain::events::webhook::signature_header;
use billing_http::stripe_webhook::{self, event::parse};
use billing_http::EmitMetrics;
use billing_tests::clock::ManualClock;
use billing_tests::fake_stripe::{event, fixture, FakeStripe};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

const SECRET: &str = "whsec_test_current";
const OLD_SECRET: &str = "whsec_test_rolled";

fn bytes_of(event: &Value) -> Vec<u8> {
    serde_json::to_vec(event).unwrap()
}

#[test]
fn stripes_payment_intent_events_read_into_our_terms() {
    let mut intent = fixture("payment_intent");
    intent["status"] = json!("succeeded");
    intent["amount_received"] = json!(1099);
    intent["latest_charge"] = json!("ch_123");
    intent["metadata"] = json!({"tenant_id": "ten_1", "attempt_id": "pay_1"});
    let succeeded = event("payment_intent.succeeded", intent.clone());
    let parsed = parse(&bytes_of(&succeeded)).unwrap();
    assert_eq!(parsed.id, succeeded["id"].as_str().unwrap());
    assert_eq!(
        parsed.created.as_second(),
        succeeded["created"].as_i64().unwrap()
    );
    assert!(!parsed.livemode);
    assert_eq!(parsed.account, None, "the platform account's own event");
    // An event of a connected account (Connect) names it.
    let mut connected = succeeded.clone();
    connected["account"] = json!("acct_1Connected");
    assert_eq!(
        parse(&bytes_of(&connected)).unwrap().account.as_deref(),
        Some("acct_1Connected")
    );
    assert_eq!(
        parsed.kind,
        GatewayEventKind::PaymentSucceeded {
            payment_intent: "pi_1PgafyB7WZ01zgkWSjxsAJo3".into(),
            charge: Some("ch_123".into()),
            amount: 1099,
            currency: "usd".into(),
            metadata: GatewayMetadata::from([
                ("tenant_id".into(), "ten_1".into()),
                ("attempt_id".into(), "pay_1".into())
            ]),
        }
    );

    // An expanded charge is read by its id.
    intent["latest_charge"] = fixture("charge");
    let expanded = parse(&bytes_of(&event(
        "payment_intent.succeeded",
        intent.clone(),
    )))
    .unwrap();
    assert!(
        matches!(expanded.kind, GatewayEventKind::PaymentSucceeded { charge: Some(c), .. } if c == "ch_1PgafuB7WZ01zgkWXYmPNZs8")
    );

    intent["status"] = json!("requires_payment_method");
    intent["last_payment_error"] = json!({"type": "card_error", "code": "card_declined",
        "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."});
    let failed = parse(&bytes_of(&event(
        "payment_intent.payment_failed",
        intent.clone(),
    )))
    .unwrap();
    assert!(
        matches!(&failed.kind, GatewayEventKind::PaymentFailed { code, decline_code: Some(d), message, .. }
        if code == "card_declined" && d == "insufficient_funds" && message == "Your card has insufficient funds.")
    );

    // Stripe's own example has no code on its error: still a failure, in general terms.
    let example = parse(&bytes_of(&event(
        "payment_intent.payment_failed",
        fixture("payment_intent"),
    )))
    .unwrap();
    assert!(
        matches!(&example.kind, GatewayEventKind::PaymentFailed { code, decline_code: None, .. } if code == "payment_failed")
    );

    let action = parse(&bytes_of(&event(
        "payment_intent.requires_action",
        fixture("payment_intent"),
    )))
    .unwrap();
    assert!(
        matches!(action.kind, GatewayEventKind::RequiresAction { payment_intent, .. } if payment_intent == "pi_1PgafyB7WZ01zgkWSjxsAJo3")
    );
}

#[test]
fn stripes_charge_dispute_and_payment_method_events_read_into_our_terms() {
    let mut charge = fixture("charge");
    charge["payment_intent"] = json!("pi_9");
    charge["amount_refunded"] = json!(40);
    charge["refunded"] = json!(false);
    let refunded = parse(&bytes_of(&event("charge.refunded", charge))).unwrap();
    assert_eq!(
        refunded.kind,
        GatewayEventKind::ChargeRefunded {
            charge: "ch_1PgafuB7WZ01zgkWXYmPNZs8".into(),
            payment_intent: Some("pi_9".into()),
            amount_refunded: 40,
            currency: "usd".into(),
            metadata: GatewayMetadata::new(),
        }
    );
    let dispute = parse(&bytes_of(&event(
        "charge.dispute.created",
        fixture("dispute"),
    )))
    .unwrap();
    assert_eq!(
        dispute.kind,
        GatewayEventKind::DisputeCreated {
            dispute: "dp_1Pgc71B7WZ01zgkWMevJiAUx".into(),
            charge: "ch_1PgafuB7WZ01zgkWXYmPNZs8".into(),
            payment_intent: None,
            amount: 1000,
            currency: "usd".into(),
            reason: "general".into(),
        }
    );
    let detached = parse(&bytes_of(&event(
        "payment_method.detached",
        fixture("payment_method"),
    )))
    .unwrap();
    assert_eq!(
        detached.kind,
        GatewayEventKind::PaymentMethodDetached {
            payment_method: "pm_1Pgc75B7WZ01zgkWlHVgdEGJ".into()
        }
    );
    // Stripe's example event (a plan) is a type we do not act on.
    let other = parse(&bytes_of(&fixture("event"))).unwrap();
    assert_eq!(
        other.kind,
        GatewayEventKind::Other {
            event_type: "plan.created".into()
        }
    );
    assert!(parse(b"{\"id\": 1}").is_err());
    let mut broken = event("charge.refunded", json!({"id": "ch_1"}));
    broken["data"]["object"]["amount_refunded"] = json!("lots");
    assert!(parse(&bytes_of(&broken)).is_err());
}

/// The webhook route on 127.0.0.1 with the app's clock fixed by hand.
async fn serve(app: App) -> String {
    let router = stripe_webhook::router(
        app,
        WebhookSecrets::new([SECRET, OLD_SECRET]),
        EmitMetrics(false),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        stripe_webhook::PATH
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

async fn post(url: &str, body: &[u8], signature: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

struct Scenario {
    app: App,
    caller: Caller,
    fake: FakeStripe,
    clock: Arc<ManualClock>,
    invoice: billing_domain::kernel::ids::InvoiceId,
    payment_intent: String,
}

/// Collection through the Stripe adapter and the fake Stripe: the card needs 3-D Secure, so
/// the first invoice waits for the customer with the PaymentIntent Stripe made.
async fn waiting_for_authentication(store: Arc<dyn Store>) -> Scenario {
    let fake = FakeStripe::start().await;
    let clock = ManualClock::at(Timestamp::now());
    let gateway = Arc::new(StripeGateway::new("sk_test_fake", Some(&fake.url)).unwrap());
    let app = App::new(store, clock.clone(), gateway);
    let caller = billing_tests::admin(&app, "Stripe webhooks").await;
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        json!({"email": "sca@acme.test", "currency": "eur"}),
        "month",
        3000,
    )
    .await;
    app.customers
        .add_payment_method(
            &caller,
            sub.account_id,
            "pm_card_authenticationRequiredOnSetup",
            true,
        )
        .await
        .unwrap();
    let attempt = app
        .collection
        .list_payments(
            &caller,
            &PaymentFilter {
                account: Some(sub.account_id),
                ..Default::default()
            },
            &PageRequest::first(10),
        )
        .await
        .unwrap()
        .items
        .remove(0);
    let outcome = app
        .collection
        .collect_payment(caller.tenant_id, attempt.id, clock.now())
        .await
        .unwrap();
    assert_eq!(outcome, Collected::RequiresAction);
    let payment = app
        .collection
        .get_payment(&caller, attempt.id)
        .await
        .unwrap();
    let payment_intent = payment
        .payment_intent
        .clone()
        .expect("Stripe's PaymentIntent");
    assert_eq!(fake.charges().len(), 1);
    assert_eq!(fake.charge_requests(), 1, "Stripe was asked once");
    Scenario {
        invoice: payment.invoice_id,
        app,
        caller,
        fake,
        clock,
        payment_intent,
    }
}

impl Scenario {
    async fn invoice_status(&self) -> InvoiceStatus {
        self.app
            .billing
            .get_invoice(&self.caller, self.invoice)
            .await
            .unwrap()
            .status
    }

    /// What Stripe sends once the customer has authenticated: the same PaymentIntent,
    /// succeeded, with the metadata the adapter put on it.
    fn succeeded_event(&self) -> Value {
        let mut intent = self.fake.payment_intent(&self.payment_intent);
        assert_eq!(
            intent["metadata"]["tenant_id"],
            self.caller.tenant_id.to_string()
        );
        intent["status"] = json!("succeeded");
        intent["amount_received"] = intent["amount"].clone();
        intent["last_payment_error"] = Value::Null;
        event("payment_intent.succeeded", intent)
    }

    async fn paid_events(&self) -> usize {
        self.app
            .events
            .list_events(
                &self.caller,
                &EventFilter {
                    event_type: Some("invoice.paid".into()),
                    resource_id: None,
                },
                &PageRequest::first(100),
            )
            .await
            .unwrap()
            .items
            .len()
    }
}

async fn verified_events_apply_once(store: Arc<dyn Store>) {
    let scenario = waiting_for_authentication(store).await;
    let url = serve(scenario.app.clone()).await;
    let succeeded = scenario.succeeded_event();
    let body = bytes_of(&succeeded);
    let now = scenario.clock.now().as_second();

    let refused = [
        ("missing", None, body.clone(), "missing_signature"),
        (
            "forged",
            Some(signature_header(&["whsec_attacker"], now, &body)),
            body.clone(),
            "invalid_signature",
        ),
        (
            "stale",
            Some(signature_header(&[SECRET], now - 301, &body)),
            body.clone(),
            "stale_signature",
        ),
        (
            "tampered",
            Some(signature_header(&[SECRET], now, &body)),
            body.iter()
                .map(|b| if *b == b'3' { b'9' } else { *b })
                .collect(),
            "invalid_signature",
        ),
        (
            "malformed",
            Some("v1=abc".to_owned()),
            body.clone(),
            "malformed_signature",
        ),
    ];
    for (case, signature, sent, code) in refused {
        let (status, problem) = post(&url, &sent, signature.as_deref()).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some(code)),
            "{case}: {problem}"
        );
        assert_eq!(problem["param"], "Stripe-Signature", "{case}");
    }
    assert_eq!(
        scenario.invoice_status().await,
        InvoiceStatus::Open,
        "nothing applied"
    );
    assert_eq!(scenario.paid_events().await, 0);

    // Signed with the secret being rolled out, four minutes ago (inside the tolerance).
    let signature = signature_header(&[OLD_SECRET], now - 240, &body);
    let (status, answer) = post(&url, &body, Some(&signature)).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    assert_eq!(answer["id"], succeeded["id"]);
    assert_eq!(scenario.invoice_status().await, InvoiceStatus::Paid);

    // Stripe delivers again (and again, later, signed anew): acknowledged, applied once.
    let (status, answer) = post(&url, &body, Some(&signature)).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("duplicate"))
    );
    scenario.clock.advance(SignedDuration::from_hours(2));
    let later = signature_header(&[SECRET], scenario.clock.now().as_second(), &body);
    let (status, answer) = post(&url, &body, Some(&later)).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("duplicate"))
    );
    assert_eq!(scenario.paid_events().await, 1);
    assert_eq!(scenario.invoice_status().await, InvoiceStatus::Paid);
    assert_eq!(
        scenario.fake.charges().len(),
        1,
        "the webhook never charges"
    );
    assert_eq!(
        scenario.fake.charge_requests(),
        1,
        "nor asks Stripe to charge, not even as a replay"
    );

    // A failure reported afterwards (events come in any order) does not unpay it.
    let mut failed = scenario.fake.payment_intent(&scenario.payment_intent);
    failed["last_payment_error"]["code"] = json!("card_declined");
    let failed = bytes_of(&event("payment_intent.payment_failed", failed));
    let signature = signature_header(&[SECRET], scenario.clock.now().as_second(), &failed);
    let (status, _) = post(&url, &failed, Some(&signature)).await;
    assert_eq!(status, 200);
    assert_eq!(
        scenario.invoice_status().await,
        InvoiceStatus::Paid,
        "paid stays paid"
    );
}

#[tokio::test]
async fn unknown_types_and_objects_that_are_not_ours_are_acknowledged() {
    let clock = ManualClock::at(Timestamp::now());
    let app = billing_tests::app_with_clock(billing_tests::memory_store(), clock.clone());
    let url = serve(app).await;
    for sent in [
        fixture("event"),
        event("payment_method.detached", fixture("payment_method")),
        event("payment_intent.succeeded", fixture("payment_intent")),
    ] {
        let body = bytes_of(&sent);
        let signature = signature_header(&[SECRET], clock.now().as_second(), &body);
        let (status, answer) = post(&url, &body, Some(&signature)).await;
        assert_eq!(
            (status, answer["result"].as_str()),
            (200, Some("ignored")),
            "{answer}"
        );
    }
    // Signed, but not an event: Stripe is told (it retries), nothing is applied.
    let body = b"{\"hello\": \"world\"}";
    let signature = signature_header(&[SECRET], clock.now().as_second(), body);
    let (status, problem) = post(&url, body, Some(&signature)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_stripe_event"))
    );
}

/// Runs a snippet with Stripe's official Python library (`stripe` from PyPI, installed into
/// `.venv` by `make venv`).
fn stripe_python(script: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(billing_infra::moto::python())
        .arg("-c")
        .arg(format!("import sys, stripe\n{script}"))
        .args(args)
        .output()
        .expect("the venv's Python (run `make venv`)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn signatures_agree_with_stripes_official_python_library() {
    let scenario = waiting_for_authentication(billing_tests::memory_store()).await;
    let url = serve(scenario.app.clone()).await;
    let body = String::from_utf8(bytes_of(&scenario.succeeded_event())).unwrap();
    let now = scenario.clock.now().as_second().to_string();

    // Stripe's library signs; our route accepts and applies.
    let header = stripe_python(
        "print(stripe.WebhookSignature.generate_signature_header(sys.argv[1], sys.argv[2], int(sys.argv[3])))",
        &[&body, SECRET, &now],
    );
    assert!(header.starts_with(&format!("t={now},v1=")), "{header}");
    let (status, answer) = post(&url, body.as_bytes(), Some(&header)).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("applied")),
        "{answer}"
    );
    assert_eq!(scenario.invoice_status().await, InvoiceStatus::Paid);

    // And the other way round: Stripe's library verifies what we sign (both secrets of a
    // rotation), and reads our test events as Stripe events.
    let ours = signature_header(
        &[SECRET, OLD_SECRET],
        Timestamp::now().as_second(),
        body.as_bytes(),
    );
    let verdict = stripe_python(
        "e = stripe.Webhook.construct_event(sys.argv[1], sys.argv[2], sys.argv[3], tolerance=300)\nprint(e.type, e.data.object.id)",
        &[&body, &ours, OLD_SECRET],
    );
    assert_eq!(
        verdict,
        format!("payment_intent.succeeded {}", scenario.payment_intent)
    );
    let forged = stripe_python(
        "try:\n    stripe.WebhookSignature.verify_header(sys.argv[1], sys.argv[2], 'whsec_other', 300)\n    print('accepted')\nexcept stripe.SignatureVerificationError:\n    print('refused')",
        &[&body, &ours],
    );
    assert_eq!(forged, "refused");
}

/// The secret `events/stripe-webhook-request.json` was signed with (by Stripe's Python
/// library, at its `requestContext.timeEpoch`, 2026-11-22T10:00:00Z).
const EVENTS_WEBHOOK_SECRET: &str = "whsec_eventsFixtureSecretForCargoLambdaInvoke";

/// The sample request through the `stripe-webhook` Lambda's handler, as `cargo lambda
/// invoke --data-file` delivers it. A signature in a file goes stale after five minutes,
/// which is the point of the tolerance: the app's clock is pinned a minute after signing,
/// then moved past the tolerance to see the same capture refused.
#[tokio::test]
async fn the_sample_request_event_goes_through_the_handler() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events/stripe-webhook-request.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let clock = ManualClock::at(Timestamp::from_second(1_795_341_660).unwrap());
    let app = billing_tests::app_with_clock(billing_tests::memory_store(), clock.clone());
    app.customers
        .ensure_tenant_with_key("Events", billing_tests::EVENTS_KEY)
        .await
        .unwrap();
    let invoke = |secret: &'static str| {
        let (app, text) = (app.clone(), text.clone());
        async move {
            let request = lambda_http::request::from_str(&text).unwrap();
            let request = request.map(|body| Body::from(body.to_vec()));
            let handler = ::stripe_webhook::handler(app, WebhookSecrets::new([secret]));
            let response = handler.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    // Verified and read: a success for a tenant of ours whose attempt id names no payment
    // here is acknowledged without effect (Stripe stops retrying), and so is a redelivery.
    for _ in 0..2 {
        let (status, answer) = invoke(EVENTS_WEBHOOK_SECRET).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["id"], "evt_3QEventsFixture0000000001");
        assert_eq!(answer["result"], "ignored");
    }
    let (status, problem) = invoke("whsec_someone_else").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_signature"))
    );
    clock.advance(SignedDuration::from_mins(5));
    let (status, problem) = invoke(EVENTS_WEBHOOK_SECRET).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("stale_signature"))
    );
}

billing_tests::on_both_stores!(verified_events_apply_once);

/// Issue 13, item 9: a body over the webhook's limit is a problem that closes the
/// connection, not axum's plain-text 413.
#[tokio::test]
async fn a_body_over_the_limit_is_a_problem() {
    let url = serve(billing_tests::memory_app()).await;
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("Stripe-Signature", "t=1,v1=00")
        .body(vec![b' '; stripe_webhook::MAX_EVENT_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["connection"], "close");
    billing_tests::api::problem(
        response,
        reqwest::StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await;
}
