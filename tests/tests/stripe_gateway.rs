//! The Stripe adapter against the fake Stripe (`billing_tests::fake_stripe`): every test
//! card's outcome, idempotent replays that charge once, and outages that can be retried.

use billing_app::ports::{
    ChargeOutcome, ChargeRequest, GatewayError, NewGatewayCustomer, PaymentGateway, RefundRequest,
};
use billing_aws::StripeGateway;
use billing_domain::customers::tenant::TenantMode;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::deployment::Deployment;
use billing_domain::kernel::money::Money;
use billing_tests::fake_stripe::FakeStripe;

async fn gateway() -> (FakeStripe, StripeGateway) {
    let fake = FakeStripe::start().await;
    let gateway = StripeGateway::new("sk_test_fake", Some(&fake.url)).expect("a client");
    (fake, gateway)
}

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::from_code("usd").unwrap())
}

async fn customer(gateway: &StripeGateway, account: &str) -> String {
    gateway
        .create_customer(&NewGatewayCustomer {
            idempotency_key: format!("customer-{account}"),
            account_id: account.into(),
            name: "Acme".into(),
            email: "billing@acme.test".into(),
        })
        .await
        .expect("a customer")
}

fn charge(customer: &str, payment_method: &str, attempt: &str, amount: i64) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: attempt.into(),
        customer: customer.into(),
        payment_method: payment_method.into(),
        amount: usd(amount),
        description: "INV-000001".into(),
        metadata: vec![
            ("tenant_id".into(), "ten_1".into()),
            ("invoice_id".into(), "inv_1".into()),
            ("attempt_id".into(), attempt.into()),
        ],
    }
}

#[tokio::test]
async fn a_card_is_attached_and_charged_once_with_our_metadata_in_three_requests() {
    let (fake, gateway) = gateway().await;
    assert_eq!(gateway.name(), "stripe");
    let customer = customer(&gateway, "acct_1").await;
    assert!(customer.starts_with("cus_"), "{customer}");

    let card = gateway
        .attach_payment_method(&customer, "pm_card_visa")
        .await
        .expect("attached");
    assert!(card.gateway_id.starts_with("pm_") && card.gateway_id != "pm_card_visa");
    assert_eq!(
        (
            card.brand.as_str(),
            card.last4.as_str(),
            card.country.as_deref()
        ),
        ("visa", "4242", Some("US"))
    );
    // Stripe's example card expires 8/2030.
    assert_eq!((card.exp_month, card.exp_year), (8, 2030));

    let outcome = gateway
        .charge(&charge(&customer, &card.gateway_id, "pat_1", 1999))
        .await
        .expect("charged");
    let ChargeOutcome::Succeeded {
        payment_intent,
        charge: Some(charge_id),
    } = outcome
    else {
        panic!("expected a success, got {outcome:?}");
    };
    let charges = fake.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(fake.charge_requests(), 1, "Stripe was asked once");
    assert_eq!(
        (
            charges[0].payment_intent.as_str(),
            charges[0].id.as_str(),
            charges[0].amount,
            charges[0].currency.as_str(),
            charges[0].paid
        ),
        (
            payment_intent.as_str(),
            charge_id.as_str(),
            1999,
            "usd",
            true
        )
    );
    assert_eq!(charges[0].idempotency_key.as_deref(), Some("pat_1"));
    assert_eq!(charges[0].metadata["tenant_id"], "ten_1");
    assert_eq!(charges[0].metadata["invoice_id"], "inv_1");
    assert_eq!(charges[0].metadata["attempt_id"], "pat_1");
    // One request per step: the payment itself is a single create-and-confirm.
    assert_eq!(
        fake.requests(),
        [
            "POST /v1/customers",
            "POST /v1/payment_methods/pm_card_visa/attach",
            "POST /v1/payment_intents"
        ]
    );
}

#[tokio::test]
async fn each_test_card_has_stripes_outcome() {
    let (fake, gateway) = gateway().await;
    let customer = customer(&gateway, "acct_2").await;

    // 4000000000000341 attaches, then declines.
    let fails = gateway
        .attach_payment_method(&customer, "pm_card_chargeCustomerFail")
        .await
        .expect("attaches");
    assert_eq!(fails.last4, "0341");
    let outcome = gateway
        .charge(&charge(&customer, &fails.gateway_id, "pat_0341", 500))
        .await
        .unwrap();
    let ChargeOutcome::Declined {
        payment_intent: Some(declined_intent),
        code,
        decline_code,
        message,
    } = outcome
    else {
        panic!("expected a decline, got {outcome:?}");
    };
    assert_eq!(
        (code.as_str(), decline_code.as_deref()),
        ("card_declined", Some("generic_decline"))
    );
    assert_eq!(message, "Your card was declined.");
    assert_eq!(
        fake.payment_intent(&declined_intent)["status"],
        "requires_payment_method"
    );

    // 4000000000000002 and 4000000000009995 are refused when attached, and decline when
    // charged directly.
    for (token, decline) in [
        ("pm_card_chargeDeclined", "generic_decline"),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
        ),
    ] {
        let refused = gateway.attach_payment_method(&customer, token).await;
        assert!(
            matches!(&refused, Err(GatewayError::Rejected { code, .. }) if code == decline),
            "{token}: {refused:?}"
        );
        let outcome = gateway
            .charge(&charge(&customer, token, &format!("pat_{token}"), 700))
            .await
            .unwrap();
        assert!(
            matches!(&outcome, ChargeOutcome::Declined { code, decline_code: Some(d), payment_intent: Some(_), .. }
                if code == "card_declined" && d == decline),
            "{token}: {outcome:?}"
        );
    }

    // 4000002500003155 needs 3-D Secure off-session: the customer has to come back.
    let secure = gateway
        .attach_payment_method(&customer, "pm_card_authenticationRequiredOnSetup")
        .await
        .unwrap();
    assert_eq!(secure.last4, "3155");
    let outcome = gateway
        .charge(&charge(&customer, &secure.gateway_id, "pat_3155", 900))
        .await
        .unwrap();
    assert!(
        matches!(&outcome, ChargeOutcome::RequiresAction { payment_intent } if payment_intent.starts_with("pi_")),
        "{outcome:?}"
    );
    assert!(fake.charges().iter().all(|c| !c.paid));
}

#[tokio::test]
async fn a_replayed_charge_returns_the_first_outcome_and_charges_once() {
    let (fake, gateway) = gateway().await;
    let customer = customer(&gateway, "acct_3").await;
    let visa = gateway
        .attach_payment_method(&customer, "pm_card_visa")
        .await
        .unwrap();
    let request = charge(&customer, &visa.gateway_id, "pat_replay", 2500);
    let before = fake.requests().len();
    let first = gateway.charge(&request).await.unwrap();
    let second = gateway.charge(&request).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(fake.charges().len(), 1, "the card was charged once");
    assert_eq!(
        fake.requests().split_off(before),
        ["POST /v1/payment_intents"; 2],
        "each call is one request: the adapter neither retries nor skips a replay"
    );

    // A decline replays too, without a second attempt on the card.
    let fails = gateway
        .attach_payment_method(&customer, "pm_card_chargeCustomerFail")
        .await
        .unwrap();
    let request = charge(&customer, &fails.gateway_id, "pat_replay_decline", 2500);
    let first = gateway.charge(&request).await.unwrap();
    assert_eq!(gateway.charge(&request).await.unwrap(), first);
    assert_eq!(fake.charges().len(), 2);

    // The same key with another amount is a programming error, not a new charge.
    let reused = gateway
        .charge(&charge(&customer, &visa.gateway_id, "pat_replay", 9999))
        .await;
    assert!(
        matches!(&reused, Err(GatewayError::Rejected { code, .. }) if code == "idempotency_error"),
        "{reused:?}"
    );
    assert_eq!(fake.charges().len(), 2);

    // Customers are created once per key as well.
    let again = self::customer(&gateway, "acct_3").await;
    assert_eq!(again, customer);
}

#[tokio::test]
async fn an_outage_is_unavailable_and_the_retry_with_the_same_key_charges_once() {
    let (fake, gateway) = gateway().await;
    let customer = customer(&gateway, "acct_4").await;
    let visa = gateway
        .attach_payment_method(&customer, "pm_card_visa")
        .await
        .unwrap();
    let request = charge(&customer, &visa.gateway_id, "pat_outage", 1200);
    fake.fail_next(1);
    let failed = gateway.charge(&request).await;
    assert!(
        matches!(failed, Err(GatewayError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(fake.charges().is_empty());
    let retried = gateway.charge(&request).await.unwrap();
    assert!(matches!(retried, ChargeOutcome::Succeeded { .. }));
    assert_eq!(fake.charges().len(), 1);
    assert_eq!(
        fake.charge_requests(),
        2,
        "the failed request and its retry, nothing more"
    );

    fake.fail_next(1);
    let unavailable = gateway
        .attach_payment_method(&customer, "pm_card_visa")
        .await;
    assert!(
        matches!(unavailable, Err(GatewayError::Unavailable(_))),
        "{unavailable:?}"
    );
}

#[tokio::test]
async fn nobody_listening_is_unavailable() {
    let port = billing_infra::moto::free_port().unwrap();
    let gateway =
        StripeGateway::new("sk_test_fake", Some(&format!("http://127.0.0.1:{port}"))).unwrap();
    let result = gateway
        .charge(&charge("cus_x", "pm_card_visa", "pat_down", 100))
        .await;
    assert!(
        matches!(result, Err(GatewayError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn unknown_payment_methods_and_customers_are_rejected() {
    let (fake, gateway) = gateway().await;
    let customer = customer(&gateway, "acct_5").await;
    let unknown = gateway.attach_payment_method(&customer, "pm_nope").await;
    assert!(
        matches!(&unknown, Err(GatewayError::Rejected { code, message }) if code == "resource_missing" && message.contains("pm_nope")),
        "{unknown:?}"
    );
    let no_customer = gateway
        .attach_payment_method("cus_nope", "pm_card_visa")
        .await;
    assert!(
        matches!(&no_customer, Err(GatewayError::Rejected { code, .. }) if code == "resource_missing"),
        "{no_customer:?}"
    );
    let wrong_key = StripeGateway::new("rk_wrong", Some(&fake.url)).unwrap();
    let refused = wrong_key
        .attach_payment_method(&customer, "pm_card_visa")
        .await;
    assert!(
        matches!(refused, Err(GatewayError::Rejected { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn detaching_twice_is_done_once() {
    let (_fake, gateway) = gateway().await;
    let customer = customer(&gateway, "acct_6").await;
    let visa = gateway
        .attach_payment_method(&customer, "pm_card_visa")
        .await
        .unwrap();
    gateway
        .detach_payment_method(&visa.gateway_id)
        .await
        .unwrap();
    gateway
        .detach_payment_method(&visa.gateway_id)
        .await
        .unwrap();
    let missing = gateway.detach_payment_method("pm_never_existed").await;
    assert_eq!(missing, Ok(()));
}

#[tokio::test]
async fn refunds_are_partial_or_full_once_per_key_and_never_more_than_paid() {
    let (_fake, gateway) = gateway().await;
    let customer = customer(&gateway, "acct_7").await;
    let visa = gateway
        .attach_payment_method(&customer, "pm_card_visa")
        .await
        .unwrap();
    let ChargeOutcome::Succeeded { payment_intent, .. } = gateway
        .charge(&charge(&customer, &visa.gateway_id, "pat_refund", 5000))
        .await
        .unwrap()
    else {
        panic!("paid")
    };
    let partial = RefundRequest {
        idempotency_key: "ref_1".into(),
        payment_intent: payment_intent.clone(),
        amount: Some(usd(1500)),
    };
    let first = gateway.refund(&partial).await.unwrap();
    assert!(first.gateway_id.starts_with("re_"));
    assert_eq!(first.amount, usd(1500));
    assert_eq!(
        gateway.refund(&partial).await.unwrap(),
        first,
        "replayed, not refunded again"
    );

    let too_much = gateway
        .refund(&RefundRequest {
            idempotency_key: "ref_2".into(),
            payment_intent: payment_intent.clone(),
            amount: Some(usd(4000)),
        })
        .await;
    assert!(
        matches!(&too_much, Err(GatewayError::Rejected { code, .. }) if code == "amount_too_large"),
        "{too_much:?}"
    );
    let rest = gateway
        .refund(&RefundRequest {
            idempotency_key: "ref_3".into(),
            payment_intent: payment_intent.clone(),
            amount: None,
        })
        .await
        .unwrap();
    assert_eq!(rest.amount, usd(3500));
    let nothing_left = gateway
        .refund(&RefundRequest {
            idempotency_key: "ref_4".into(),
            payment_intent,
            amount: None,
        })
        .await;
    assert!(
        matches!(&nothing_left, Err(GatewayError::Rejected { code, .. }) if code == "charge_already_refunded"),
        "{nothing_left:?}"
    );
}

/// `payment_gateway`'s choice, from the secret as it is stored in Secrets Manager (the
/// local stand-in): Stripe with a key, the sandbox without one, and no start at all when the
/// secret cannot be trusted.
#[tokio::test]
async fn the_stripe_secret_selects_the_gateway_and_its_webhook_secrets() {
    use billing_aws::payment_gateway::{load, PaymentConfigError};
    let config = billing_aws::Config::local("unused", billing_tests::aws_endpoint());
    let sdk = config.sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let put = |value: &str| {
        let (secrets, value) = (secrets.clone(), value.to_owned());
        async move {
            let name = format!("stripe-{}", ulid::Ulid::new());
            secrets
                .create_secret()
                .name(&name)
                .secret_string(value)
                .send()
                .await
                .unwrap();
            name
        }
    };

    let deployed = Deployment::Deployed;
    let none = load(&sdk, None, None, deployed).await.unwrap();
    assert_eq!(none.gateways.name(false), "sandbox");
    assert_eq!(
        none.gateways.name(true),
        "none",
        "live tenants never the sandbox"
    );
    assert!(none.webhook_secrets.is_empty());
    let empty = load(&sdk, Some(&put("{}").await), None, deployed)
        .await
        .unwrap();
    assert_eq!(empty.gateways.name(false), "sandbox");
    let local = load(&sdk, None, None, Deployment::Local).await.unwrap();
    assert_eq!(
        local.gateways.name(true),
        "sandbox",
        "make dev without keys"
    );

    let fake = FakeStripe::start().await;
    let configured =
        put(r#"{"secret_key": "sk_test_fake", "webhook_secrets": ["whsec_a", "whsec_b"]}"#).await;
    let setup = load(&sdk, Some(&configured), Some(&fake.url), deployed)
        .await
        .unwrap();
    assert_eq!(setup.gateways.name(false), "stripe");
    assert_eq!(
        setup.gateways.name(true),
        "none",
        "a test key is never live"
    );
    let customer = setup
        .gateways
        .for_mode(false)
        .unwrap()
        .create_customer(&NewGatewayCustomer {
            idempotency_key: "from-the-secret".into(),
            account_id: "acct_9".into(),
            name: "Acme".into(),
            email: "billing@acme.test".into(),
        })
        .await
        .unwrap();
    assert!(customer.starts_with("cus_"));
    assert_eq!(fake.requests(), ["POST /v1/customers"]);
    let body = b"{}";
    let now = jiff::Timestamp::now();
    for secret in ["whsec_a", "whsec_b"] {
        let header =
            billing_domain::events::webhook::signature_header(&[secret], now.as_second(), body);
        assert_eq!(setup.webhook_secrets.verify(&header, body, now), Ok(()));
    }

    for refused in [
        r#"{"secret_key": "pk_test_publishable"}"#,
        r#"{"secret_key": "sk_test_x", "webhook_secret": "whsec_typo"}"#,
        "not json",
    ] {
        let result = load(&sdk, Some(&put(refused).await), None, deployed).await;
        assert!(
            matches!(result, Err(PaymentConfigError::Malformed { .. })),
            "{refused}: {result:?}"
        );
    }
    let missing = load(&sdk, Some("no-such-secret"), None, deployed).await;
    assert!(
        matches!(missing, Err(PaymentConfigError::Unreadable { .. })),
        "{missing:?}"
    );
}

/// The payment worker's use case collecting through Stripe (the adapter and the fake): the
/// first delivery's answer is lost after Stripe charged (as when the worker dies before it
/// records the result), then the message comes twice more at once. One charge, the invoice
/// paid, and one Stripe request per delivery that reached the gateway.
#[tokio::test]
async fn collection_through_stripe_charges_once_after_a_lost_answer_and_duplicate_deliveries() {
    use billing_app::ports::{PageRequest, PaymentFilter, PaymentJob};
    use billing_domain::billing::invoice::InvoiceStatus;

    let fake = FakeStripe::start().await;
    let gateway = StripeGateway::new("sk_test_fake", Some(&fake.url)).unwrap();
    let app = billing_tests::memory_app().with_gateway(std::sync::Arc::new(gateway));
    let caller = billing_tests::admin(&app, "Stripe collection").await;
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        serde_json::json!({"email": "pay@acme.test", "currency": "usd"}),
        "month",
        1999,
    )
    .await;
    app.customers
        .add_payment_method(&caller, sub.account_id, "pm_card_visa", true)
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
    let job = PaymentJob::Attempt {
        tenant: caller.tenant_id,
        id: attempt.id,
    };
    let before = fake.requests().len();

    fake.lose_next_answers(1);
    let lost = app.collection.handle_payment_job(&job).await;
    assert!(lost.is_err(), "the worker reports the outage: {lost:?}");
    assert_eq!(fake.charges().len(), 1, "Stripe charged all the same");
    assert_eq!(
        fake.requests().split_off(before),
        ["POST /v1/payment_intents"],
        "one delivery, one request"
    );
    let before = fake.requests().len();
    let invoice = app
        .billing
        .get_invoice(&caller, attempt.invoice_id)
        .await
        .unwrap();
    assert_eq!(invoice.status, InvoiceStatus::Open);

    let (a, b) = tokio::join!(
        app.collection.handle_payment_job(&job),
        app.collection.handle_payment_job(&job)
    );
    a.unwrap();
    b.unwrap();
    let charges = fake.charges();
    assert_eq!(charges.len(), 1, "charged once");
    assert_eq!(charges[0].idempotency_key, Some(attempt.id.to_string()));
    assert_eq!(charges[0].metadata["attempt_id"], attempt.id.to_string());
    assert_eq!(
        charges[0].metadata["tenant_id"],
        caller.tenant_id.to_string()
    );
    assert_eq!(
        charges[0].metadata["invoice_id"],
        attempt.invoice_id.to_string()
    );
    let invoice = app
        .billing
        .get_invoice(&caller, attempt.invoice_id)
        .await
        .unwrap();
    assert_eq!(invoice.status, InvoiceStatus::Paid);
    let paid = app
        .collection
        .get_payment(&caller, attempt.id)
        .await
        .unwrap();
    assert_eq!(
        paid.payment_intent.as_deref(),
        Some(charges[0].payment_intent.as_str())
    );
    assert_eq!(paid.charge.as_deref(), Some(charges[0].id.as_str()));

    // The two duplicates: each asked Stripe at most once (a replay of the key), and the
    // one that lost the race to record found the result or reused it; Stripe's answer
    // reaches the app over the network, so both may have sent before either recorded.
    let duplicates: Vec<String> = fake.requests().split_off(before);
    assert!(duplicates.iter().all(|r| r == "POST /v1/payment_intents"));
    assert!((1..=2).contains(&duplicates.len()), "{duplicates:?}");

    // A delivery after the payment is recorded never reaches Stripe.
    let before = fake.requests().len();
    app.collection.handle_payment_job(&job).await.unwrap();
    assert_eq!(fake.requests().len(), before, "nothing asked once recorded");
}

/// Issue 13, item 2: a key configured for one mode but of the other stops the start.
#[test]
fn a_stripe_key_of_the_wrong_mode_refuses_to_start() {
    use billing_aws::payment_gateway::{from_json, PaymentConfigError};
    for deployment in [Deployment::Deployed, Deployment::Local] {
        for refused in [
            r#"{"live_secret_key": "sk_test_a"}"#,
            r#"{"live_secret_key": "rk_test_a"}"#,
            r#"{"test_secret_key": "sk_live_a"}"#,
            r#"{"test_secret_key": "rk_live_a"}"#,
            r#"{"live_secret_key": "pk_live_a"}"#,
            r#"{"secret_key": "sk_a"}"#,
            r#"{"secret_key": "sk_live_a", "live_secret_key": "sk_live_b"}"#,
        ] {
            let result = from_json(refused, None, "stripe", deployment);
            assert!(
                matches!(result, Err(PaymentConfigError::Malformed { .. })),
                "{refused}: {result:?}"
            );
        }
    }
    let both = from_json(
        r#"{"live_secret_key": "rk_live_a", "test_secret_key": "sk_test_b"}"#,
        None,
        "stripe",
        Deployment::Deployed,
    )
    .unwrap();
    assert_eq!(
        (both.gateways.name(false), both.gateways.name(true)),
        ("stripe", "stripe")
    );
}

/// The first payment attempt of `caller`'s new subscription, after a card is attached.
async fn attempt_with_card(
    app: &billing_app::App,
    caller: &billing_app::Caller,
    card: &str,
) -> billing_domain::collection::payment::Payment {
    use billing_app::ports::{PageRequest, PaymentFilter};
    let sub = billing_tests::subscribe(
        app,
        caller,
        serde_json::json!({"email": "pay@acme.test", "currency": "usd"}),
        "month",
        1999,
    )
    .await;
    app.customers
        .add_payment_method(caller, sub.account_id, card, true)
        .await
        .unwrap();
    app.collection
        .list_payments(
            caller,
            &PaymentFilter {
                account: Some(sub.account_id),
                ..Default::default()
            },
            &PageRequest::first(10),
        )
        .await
        .unwrap()
        .items
        .remove(0)
}

async fn tenant(app: &billing_app::App, mode: TenantMode) -> billing_app::Caller {
    let (_, issued) = app.customers.create_tenant("Modes", mode).await.unwrap();
    billing_app::Caller::of_key(&issued.key, None)
}

async fn collect(
    app: &billing_app::App,
    caller: &billing_app::Caller,
    attempt: &billing_domain::collection::payment::Payment,
) -> billing_domain::collection::payment::Payment {
    let job = billing_app::ports::PaymentJob::Attempt {
        tenant: caller.tenant_id,
        id: attempt.id,
    };
    app.collection.handle_payment_job(&job).await.unwrap();
    app.collection
        .get_payment(caller, attempt.id)
        .await
        .unwrap()
}

/// Issue 13, item 2: with a live key configured, a sandbox tenant (cards, charges) never
/// reaches the live Stripe account; a live tenant of the same deployment does.
#[tokio::test]
async fn a_sandbox_tenant_never_reaches_the_live_key() {
    use billing_domain::collection::payment::PaymentStatus;
    let fake = FakeStripe::start().await;
    let setup = billing_aws::payment_gateway::from_json(
        r#"{"live_secret_key": "sk_live_fake"}"#,
        Some(&fake.url),
        "stripe",
        Deployment::Deployed,
    )
    .unwrap();
    let app = billing_tests::memory_app().with_gateways(setup.gateways);

    let sandbox = tenant(&app, TenantMode::Sandbox).await;
    let attempt = attempt_with_card(&app, &sandbox, "tok_visa").await;
    let paid = collect(&app, &sandbox, &attempt).await;
    assert_eq!(paid.status, PaymentStatus::Succeeded);
    assert_eq!(paid.gateway.as_deref(), Some("sandbox"));
    assert_eq!(
        fake.requests(),
        Vec::<String>::new(),
        "nothing reached Stripe"
    );

    let live = tenant(&app, TenantMode::Live).await;
    let attempt = attempt_with_card(&app, &live, "pm_card_visa").await;
    let paid = collect(&app, &live, &attempt).await;
    assert_eq!(paid.status, PaymentStatus::Succeeded);
    assert_eq!(paid.gateway.as_deref(), Some("stripe"));
    assert_eq!(fake.charges().len(), 1, "the live tenant's charge, only");
    assert_eq!(fake.charge_requests(), 1, "Stripe was asked once");
}

/// Issue 13, item 2: a live tenant whose deployment has only a test key (the live one
/// removed, or never set) is refused at charge time: the attempt fails with the reason
/// recorded and nothing reaches Stripe.
#[tokio::test]
async fn a_live_tenant_with_only_a_test_key_is_refused_at_charge_time() {
    use billing_domain::collection::payment::PaymentStatus;
    let fake = FakeStripe::start().await;
    let setup = |secret: &str| {
        billing_aws::payment_gateway::from_json(
            secret,
            Some(&fake.url),
            "stripe",
            Deployment::Deployed,
        )
        .unwrap()
        .gateways
    };
    // The card is attached while a live key is configured.
    let with_live =
        billing_tests::memory_app().with_gateways(setup(r#"{"live_secret_key": "sk_live_fake"}"#));
    let live = tenant(&with_live, TenantMode::Live).await;
    let attempt = attempt_with_card(&with_live, &live, "pm_card_visa").await;
    let before = fake.requests().len();

    let test_only = with_live.with_gateways(setup(r#"{"test_secret_key": "sk_test_fake"}"#));
    let refused = collect(&test_only, &live, &attempt).await;
    assert_eq!(refused.status, PaymentStatus::Failed);
    let failure = refused.failure.expect("the reason is recorded");
    assert_eq!(failure.code, billing_app::ports::LIVE_GATEWAY_MISSING);
    assert!(failure.message.contains("sk_live_"), "{}", failure.message);
    assert_eq!(refused.gateway.as_deref(), Some("none"));
    assert_eq!(fake.requests().len(), before, "nothing reached Stripe");
    assert!(fake.charges().is_empty());
}

/// A deployment with a Stripe test key and three sandbox tenants: two connected accounts
/// and one without (the platform's own account).
async fn connected_tenants(
    fake: &FakeStripe,
) -> (
    billing_app::App,
    Vec<(billing_app::Caller, Option<&'static str>)>,
) {
    use billing_domain::collection::connect::StripeAccount;
    let setup = billing_aws::payment_gateway::from_json(
        r#"{"test_secret_key": "sk_test_fake"}"#,
        Some(&fake.url),
        "stripe",
        Deployment::Deployed,
    )
    .unwrap();
    let app = billing_tests::memory_app().with_gateways(setup.gateways);
    let mut tenants = Vec::new();
    for account in [Some("acct_1TenantA"), Some("acct_1TenantB"), None] {
        let caller = tenant(&app, TenantMode::Sandbox).await;
        if let Some(account) = account {
            let account = StripeAccount::parse(account, "stripe_account").unwrap();
            app.collection
                .set_payment_settings(&caller, None, None, Some(Some(account)))
                .await
                .unwrap();
        }
        tenants.push((caller, account));
    }
    (app, tenants)
}

/// Issue 13, item 2 (Connect): every Stripe request made for a tenant with a connected
/// account (customer, card, charge, refund, detach) carries its `Stripe-Account`, two
/// tenants' accounts never cross, and a tenant without one sends no header at all.
#[tokio::test]
async fn each_tenants_stripe_requests_carry_its_connected_account_only() {
    use billing_domain::collection::payment::PaymentStatus;
    let fake = FakeStripe::start().await;
    let (app, tenants) = connected_tenants(&fake).await;
    for (caller, account) in &tenants {
        let before = fake.accounts().len();
        let attempt = attempt_with_card(&app, caller, "pm_card_visa").await;
        let paid = collect(&app, caller, &attempt).await;
        assert_eq!(paid.status, PaymentStatus::Succeeded);
        app.collection
            .refund_payment(caller, attempt.id, Some(500), None)
            .await
            .unwrap();
        let method = paid.payment_method.expect("the charged card");
        app.customers
            .remove_payment_method(caller, attempt.account_id, &method)
            .await
            .unwrap();

        let made = fake.accounts().split_off(before);
        let routes: Vec<&str> = made.iter().map(|(route, _)| route.as_str()).collect();
        assert_eq!(
            routes,
            [
                "POST /v1/customers",
                "POST /v1/payment_methods/pm_card_visa/attach",
                "POST /v1/payment_intents",
                "POST /v1/refunds",
                &format!("POST /v1/payment_methods/{method}/detach"),
            ]
        );
        assert!(
            made.iter().all(|(_, sent)| sent.as_deref() == *account),
            "{account:?}: {made:?}"
        );
    }
    let charged_on: Vec<Option<String>> = fake.charges().into_iter().map(|c| c.account).collect();
    assert_eq!(
        charged_on,
        [
            Some("acct_1TenantA".to_owned()),
            Some("acct_1TenantB".to_owned()),
            None
        ]
    );
}

/// A retry after a lost answer goes to the Stripe account the attempt was first sent to,
/// even when the tenant has switched its connected account in between: Stripe keeps
/// idempotency keys per account, so the new account would take the same key as a new
/// charge and the customer would pay twice. A refund follows the charge too.
#[tokio::test]
async fn a_retry_after_a_lost_answer_goes_to_the_account_first_charged() {
    use billing_domain::collection::connect::StripeAccount;
    use billing_domain::collection::payment::PaymentStatus;
    let fake = FakeStripe::start().await;
    let (app, tenants) = connected_tenants(&fake).await;
    let (caller, _) = &tenants[0];
    let attempt = attempt_with_card(&app, caller, "pm_card_visa").await;
    let job = billing_app::ports::PaymentJob::Attempt {
        tenant: caller.tenant_id,
        id: attempt.id,
    };
    fake.lose_next_answers(1);
    let lost = app.collection.handle_payment_job(&job).await;
    assert!(lost.is_err(), "the answer was lost: {lost:?}");
    let pending = app
        .collection
        .get_payment(caller, attempt.id)
        .await
        .unwrap();
    assert_eq!(pending.status, PaymentStatus::Pending);
    let bound = pending.sent_to.expect("bound before the charge was sent");
    assert_eq!(
        bound.stripe_account.as_ref().map(|a| a.as_str()),
        Some("acct_1TenantA")
    );

    let moved = StripeAccount::parse("acct_1TenantMoved", "stripe_account").unwrap();
    app.collection
        .set_payment_settings(caller, None, None, Some(Some(moved)))
        .await
        .unwrap();
    let paid = collect(&app, caller, &attempt).await;
    assert_eq!(paid.status, PaymentStatus::Succeeded);
    let charges = fake.charges();
    assert_eq!(charges.len(), 1, "charged once: {charges:?}");
    assert_eq!(charges[0].account.as_deref(), Some("acct_1TenantA"));
    let intents: Vec<String> = fake
        .accounts()
        .into_iter()
        .filter(|(route, _)| route == "POST /v1/payment_intents")
        .map(|(_, account)| account.unwrap_or_default())
        .collect();
    assert_eq!(
        intents,
        ["acct_1TenantA", "acct_1TenantA"],
        "both sends on the first account"
    );

    app.collection
        .refund_payment(caller, attempt.id, Some(500), None)
        .await
        .unwrap();
    let refunds: Vec<Option<String>> = fake
        .accounts()
        .into_iter()
        .filter(|(route, _)| route == "POST /v1/refunds")
        .map(|(_, account)| account)
        .collect();
    assert_eq!(refunds, [Some("acct_1TenantA".to_owned())]);
}

/// Issue 13, item 2 (Connect), over HTTP: `stripe_account` is set, read back, evented and
/// removed through `/v1/settings/payments`; malformed ids are refused with a problem naming
/// the field, and nothing is changed by them.
#[tokio::test]
async fn the_connected_account_is_a_validated_payment_setting() {
    use reqwest::StatusCode;
    let (api, _) = billing_tests::api::Api::start(billing_tests::memory_app(), "Connect").await;
    let settings = api.get("/v1/settings/payments").await;
    assert_eq!(settings.get("stripe_account"), None, "{settings}");

    let too_long = format!("acct_{}", "a".repeat(60));
    for bad in [
        "cus_123",
        "acct_",
        "acct_12-3",
        "acct_ünï",
        too_long.as_str(),
        "acct_1 ",
    ] {
        let body = serde_json::json!({ "stripe_account": bad });
        let response = api
            .send(reqwest::Method::PATCH, "/v1/settings/payments", Some(&body))
            .await;
        let problem = billing_tests::api::problem(
            response,
            StatusCode::BAD_REQUEST,
            "invalid_stripe_account",
        )
        .await;
        assert_eq!(problem["param"], "stripe_account", "{bad}: {problem}");
    }
    assert_eq!(api.get("/v1/settings/payments").await, settings);

    let set = api
        .patch(
            "/v1/settings/payments",
            serde_json::json!({"stripe_account": "acct_1Nv0FGQ9RKHgCVdK"}),
        )
        .await;
    assert_eq!(set["stripe_account"], "acct_1Nv0FGQ9RKHgCVdK");
    assert_eq!(
        set["retry_days"], settings["retry_days"],
        "the rest is kept"
    );
    assert_eq!(api.get("/v1/settings/payments").await, set);
    let events = api.get("/v1/events?type=payment_settings.updated").await;
    assert_eq!(
        events["data"][0]["data"]["stripe_account"], "acct_1Nv0FGQ9RKHgCVdK",
        "{events}"
    );

    let removed = api
        .patch(
            "/v1/settings/payments",
            serde_json::json!({"stripe_account": ""}),
        )
        .await;
    assert_eq!(removed.get("stripe_account"), None, "{removed}");
    assert_eq!(api.get("/v1/settings/payments").await, settings);
}
