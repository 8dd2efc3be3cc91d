//! Usage metering end to end: idempotent ingestion (single, batch, concurrent), rollups on
//! the period's invoice through every charge model, late usage on one supplemental
//! invoice, entitlement checks and threshold events, and refusals as problem+json.

use billing_app::ports::Clock;
use billing_app::App;
use billing_domain::usage::meter::{UsageEventInput, UsageStatus};
use billing_tests::api::Api;
use billing_tests::Races;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn advance(api: &Api, clock: &str, to: &str) {
    let advanced = api.advance_clock(clock, to).await.1;
    assert_eq!(advanced["status"], "ready");
}

/// Metrics of every aggregation, a plan charging each with another model (and a hard
/// limit of 5 API calls), and an account on a test clock at 2027-01-01 subscribed to it.
async fn metered_subscription(api: &Api) -> Metered {
    for metric in [
        json!({"code": "api_calls", "name": "API calls", "aggregation": "count"}),
        json!({"code": "tokens", "name": "Tokens", "aggregation": "sum", "field": "tokens"}),
        json!({"code": "storage", "name": "Storage", "aggregation": "max", "field": "gb"}),
        json!({"code": "payments", "name": "Payments", "aggregation": "sum", "field": "amount"}),
        json!({"code": "users", "name": "Users", "aggregation": "unique_count", "field": "user"}),
        json!({"code": "seats", "name": "Seats", "aggregation": "latest", "field": "seats"}),
    ] {
        api.post("/v1/metrics", metric).await;
    }
    let usd = |model: Value| json!({ "usd": model });
    let plan = api
        .post(
            "/v1/plans",
            json!({"code": "metered", "name": "Metered", "interval": {"unit": "month"},
            "charges": {
                "recurring_fee": {"prices": usd(json!({"model": "flat_fee", "amount": 1000}))},
                "usage_charges": [
                    {"metric": "api_calls", "prices": usd(json!({"model": "graduated", "tiers": [
                        {"up_to": "2", "unit_price": "0"}, {"up_to": null, "unit_price": "0.5"}]}))},
                    {"metric": "tokens", "prices": usd(json!({"model": "volume", "tiers": [
                        {"up_to": "1000", "unit_price": "0.01"}, {"up_to": null, "unit_price": "0.005"}]}))},
                    {"metric": "storage", "prices": usd(json!({"model": "package", "package_size": "10", "package_price": "2"}))},
                    {"metric": "payments", "prices": usd(json!({"model": "percentage", "rate": "2", "fixed_fee": 30}))},
                    {"metric": "users", "prices": usd(json!({"model": "per_unit", "unit_price": "1"}))},
                ],
                "entitlements": [{"metric": "api_calls", "limit": "5", "enforcement": "hard"}]
            }}),
        )
        .await;
    let clock = api
        .post(
            "/v1/test-clocks",
            json!({"frozen_time": "2027-01-01T00:00:00Z"}),
        )
        .await;
    let clock = clock["id"].as_str().unwrap().to_owned();
    let account = api
        .post(
            "/v1/accounts",
            json!({"email": "meter@acme.test", "currency": "usd", "test_clock": clock, "external_id": "cust-42"}),
        )
        .await;
    let account = account["id"].as_str().unwrap().to_owned();
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan["id"]}),
        )
        .await;
    Metered {
        clock,
        account,
        subscription: sub["id"].as_str().unwrap().to_owned(),
    }
}

async fn batch(api: &Api, events: Vec<Value>) -> Value {
    api.post("/v1/usage/batch", json!({ "events": events }))
        .await
}

async fn entitlement_check(api: &Api, account: &str) -> Value {
    api.get(&format!(
        "/v1/entitlements/check?account={account}&metric=api_calls"
    ))
    .await
}

struct Metered {
    clock: String,
    account: String,
    subscription: String,
}

fn statuses(batch: &Value) -> Vec<String> {
    batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect()
}

fn metric<'a>(usage: &'a Value, code: &str) -> &'a Value {
    usage["periods"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == code)
        .unwrap_or_else(|| panic!("{code} in {usage}"))
}

/// The whole story, on any store.
async fn metering_story(app: App) {
    let (api, _) = Api::start(app, "Metered Co").await;
    let m = metered_subscription(&api).await;
    let sub = m.subscription.as_str();
    let call = |id: &str| json!({"transaction_id": id, "subscription": sub, "metric": "api_calls"});

    // Duplicates within a batch and across batches count once.
    let first = batch(&api, vec![call("c1"), call("c2"), call("c3"), call("c1")]).await;
    assert_eq!(
        statuses(&first),
        ["accepted", "accepted", "accepted", "duplicate"]
    );
    assert_eq!(
        (first["accepted"].as_u64(), first["duplicates"].as_u64()),
        (Some(3), Some(1))
    );
    let check = entitlement_check(&api, &m.account).await;
    assert_eq!(
        (check["allowed"].as_bool(), check["remaining"].as_str()),
        (Some(true), Some("2"))
    );
    let second = batch(&api, vec![
            call("c3"),
            // By the account's external_id instead of the subscription.
            json!({"transaction_id": "c4", "external_account_id": "cust-42", "metric": "api_calls"}),
        ])
        .await;
    assert_eq!(statuses(&second), ["duplicate", "accepted"]);
    let (status, single) = api.call(Method::POST, "/v1/usage", Some(&call("c5"))).await;
    assert_eq!(
        (status, single["status"].as_str()),
        (StatusCode::ACCEPTED, Some("accepted"))
    );
    let (status, again) = api.call(Method::POST, "/v1/usage", Some(&call("c5"))).await;
    assert_eq!(
        (status, again["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );

    // Five calls of five: the hard limit is reached; 80 % and 100 % were announced once each.
    let check = entitlement_check(&api, "cust-42").await;
    assert_eq!(
        (
            check["allowed"].as_bool(),
            check["remaining"].as_str(),
            check["used"].as_str()
        ),
        (Some(false), Some("0"), Some("5"))
    );
    let thresholds = api.get("/v1/events?type=usage.threshold_reached").await;
    let mut reached: Vec<u64> = thresholds["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["threshold"].as_u64().unwrap())
        .collect();
    reached.sort();
    assert_eq!(reached, [80, 100]);

    // Every other aggregation, through every other charge model.
    let other = batch(&api, vec![
            json!({"transaction_id": "t1", "subscription": sub, "metric": "tokens", "properties": {"tokens": 1200}}),
            json!({"transaction_id": "t2", "subscription": sub, "metric": "tokens", "value": "300"}),
            json!({"transaction_id": "s1", "subscription": sub, "metric": "storage", "value": 25}),
            json!({"transaction_id": "s2", "subscription": sub, "metric": "storage", "value": 7}),
            json!({"transaction_id": "p1", "subscription": sub, "metric": "payments", "value": "60.00"}),
            json!({"transaction_id": "p2", "subscription": sub, "metric": "payments", "value": "40"}),
            json!({"transaction_id": "u1", "subscription": sub, "metric": "users", "value": "ana"}),
            json!({"transaction_id": "u2", "subscription": sub, "metric": "users", "value": "bo"}),
            json!({"transaction_id": "u3", "subscription": sub, "metric": "users", "value": "ana"}),
            json!({"transaction_id": "l1", "subscription": sub, "metric": "seats", "value": 3}),
            // Refused ones go back with their reason and leave the rest alone.
            json!({"transaction_id": "bad1", "subscription": sub, "metric": "nope"}),
            json!({"transaction_id": "bad2", "subscription": sub, "metric": "tokens", "value": "lots"}),
        ])
        .await;
    assert_eq!(other["accepted"], 10, "{other}");
    assert_eq!(other["rejected"], 2);
    assert_eq!(other["results"][10]["error"]["code"], "unknown_metric");
    assert_eq!(other["results"][11]["error"]["param"], "value");

    let usage = api.get(&format!("/v1/subscriptions/{sub}/usage")).await;
    let amount = |code: &str| metric(&usage, code)["amount"]["amount"].as_i64().unwrap();
    assert_eq!(metric(&usage, "api_calls")["quantity"], "5");
    assert_eq!(amount("api_calls"), 150, "3 × $0.50 past 2 free");
    assert_eq!(amount("tokens"), 750, "1500 × $0.005 (volume)");
    assert_eq!(amount("storage"), 600, "max 25 GB → 3 packages of 10 × $2");
    assert_eq!(amount("payments"), 260, "2 % of $100 + 2 × $0.30");
    assert_eq!(amount("users"), 200, "2 distinct users × $1");
    assert_eq!(metric(&usage, "seats")["quantity"], "3");
    assert_eq!(
        metric(&usage, "api_calls")["derivation"]["model"],
        "graduated"
    );
    let projected = &usage["periods"][0]["projected_invoice"];
    assert_eq!(projected["total"], 1960 + 1000, "{projected}");
    let preview = api
        .post("/v1/invoices/preview", json!({ "subscription": sub }))
        .await;
    assert_eq!(preview["invoice"]["total"], 1960 + 1000, "{preview}");

    // The period ends: usage lands on the renewal invoice (next month's fee in advance).
    advance(&api, &m.clock, "2027-02-01T00:00:00Z").await;
    let invoices = api.invoices(sub).await;
    assert_eq!(invoices.len(), 2);
    assert_eq!(invoices[1]["total"], 1960 + 1000, "{}", invoices[1]);
    let check = entitlement_check(&api, &m.account).await;
    assert_eq!(check["used"], "0", "a new period starts from zero: {check}");
    // The first invoice (2027-01-01, no card) has been overdue 31 days: the default dunning
    // policy blocks at 30, and a blocked account's checks say so (issue 18's default policy).
    let account = api.get(&format!("/v1/accounts/{}", m.account)).await;
    assert_eq!(account["status"], "blocked", "{account}");
    assert_eq!(
        (check["allowed"].as_bool(), check["reason"].as_str()),
        (Some(false), Some("account_blocked")),
        "{check}"
    );

    // Late usage within the grace window: one supplemental invoice for the delta.
    let late = json!({"transaction_id": "late1", "subscription": sub, "metric": "api_calls",
                      "timestamp": "2027-01-20T00:00:00Z"});
    let (_, outcome) = api.call(Method::POST, "/v1/usage", Some(&late)).await;
    assert_eq!(
        (outcome["status"].as_str(), outcome["late"].as_bool()),
        (Some("accepted"), Some(true))
    );
    let (_, again) = api.call(Method::POST, "/v1/usage", Some(&late)).await;
    assert_eq!(again["status"], "duplicate");
    advance(&api, &m.clock, "2027-02-01T00:05:00Z").await;
    advance(&api, &m.clock, "2027-02-02T00:00:00Z").await;
    let invoices = api.invoices(sub).await;
    assert_eq!(invoices.len(), 3);
    let late: Vec<&Value> = invoices
        .iter()
        .filter(|i| i["billing_reason"] == "late_usage")
        .collect();
    assert_eq!(late.len(), 1, "exactly one supplemental invoice");
    assert_eq!(late[0]["total"], 50, "4 calls cost $2.00, $1.50 was billed");
    assert_eq!(late[0]["period"]["start"], "2027-01-01T00:00:00Z");
    assert!(late[0]["number"].is_string(), "finalized under a number");

    // Bad input, one event at a time: problem+json naming the field.
    let refused = |body: Value| {
        let api = &api;
        async move {
            let (status, problem) = api.call(Method::POST, "/v1/usage", Some(&body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
            (
                problem["code"].as_str().unwrap().to_owned(),
                problem["param"].as_str().unwrap().to_owned(),
            )
        }
    };
    assert_eq!(
        refused(json!({"transaction_id": "x1", "subscription": sub, "metric": "nope"})).await,
        ("unknown_metric".into(), "metric".into())
    );
    assert_eq!(
        refused(
            json!({"transaction_id": "x2", "subscription": sub, "metric": "tokens", "value": "1e3"})
        )
        .await,
        ("invalid_value".into(), "value".into())
    );
    assert_eq!(
        refused(json!({"transaction_id": "x3", "subscription": sub, "metric": "api_calls", "timestamp": "2027-02-02T00:06:00Z"})).await,
        ("timestamp_in_future".into(), "timestamp".into())
    );
    assert_eq!(
        refused(json!({"transaction_id": "x4", "subscription": sub, "metric": "api_calls", "timestamp": "2026-12-31T00:00:00Z"})).await,
        ("timestamp_before_subscription".into(), "timestamp".into())
    );
    // Past the grace window, January is closed.
    advance(&api, &m.clock, "2027-02-09T00:00:00Z").await;
    assert_eq!(
        refused(json!({"transaction_id": "x5", "subscription": sub, "metric": "api_calls", "timestamp": "2027-01-30T00:00:00Z"})).await,
        ("period_closed".into(), "timestamp".into())
    );
    api.post(&format!("/v1/subscriptions/{sub}/cancel"), json!({}))
        .await;
    assert_eq!(
        refused(json!({"transaction_id": "x6", "subscription": sub, "metric": "api_calls"})).await,
        ("subscription_cancelled".into(), "subscription".into())
    );
    assert_eq!(
        api.invoices(sub).await.len(),
        4,
        "the cancellation bills February's usage (none) and nothing twice"
    );
}

/// Eight tasks deliver the same 150 events (in different batches) at once: each event is
/// accepted by exactly one delivery and counted once.
async fn concurrent_ingestion_of_the_same_events_counts_each_once(app: App, races: Races) {
    let caller = billing_tests::admin(&app, "Concurrent").await;
    app.catalog
        .create_metric(
            &caller,
            serde_json::from_value(
                json!({"code": "bytes", "name": "Bytes", "aggregation": "sum", "field": "bytes"}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        json!({"email": "c@acme.test", "currency": "usd"}),
        "month",
        1000,
    )
    .await;
    let events: Vec<UsageEventInput> = (0..150)
        .map(|i| {
            serde_json::from_value(json!({
                "transaction_id": format!("e{i}"), "subscription": sub.id, "metric": "bytes",
                "value": (i % 7 + 1).to_string()
            }))
            .unwrap()
        })
        .collect();
    let expected_sum: u64 = (0..150).map(|i| i % 7 + 1).sum();
    races.begin();
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let (app, caller, events) = (app.clone(), caller.clone(), events.clone());
            tokio::spawn(async move {
                let mut accepted = 0;
                // Each task sends the events in its own order and batch sizes.
                let mut order = events;
                order.rotate_left(task * 17);
                for batch in order.chunks(40 + task * 7) {
                    let results = app
                        .usage
                        .record_usage(&caller, batch.to_vec())
                        .await
                        .unwrap();
                    accepted += results
                        .iter()
                        .filter(|r| r.status == UsageStatus::Accepted)
                        .count();
                }
                accepted
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.unwrap();
    }
    assert_eq!(accepted, 150, "each event accepted by exactly one delivery");
    let usage = app
        .usage
        .subscription_usage(&caller, sub.id, None)
        .await
        .unwrap();
    let bytes = &usage.periods[0].metrics[0];
    assert_eq!(bytes.metric, "bytes");
    assert_eq!(bytes.events, 150);
    assert_eq!(bytes.quantity.to_string(), expected_sum.to_string());
}

/// The same on the memory store, interleaving at every store operation (seeded delays on the
/// paused clock, so each seed is one reproducible interleaving).
#[tokio::test(start_paused = true)]
async fn concurrent_ingestion_of_the_same_events_counts_each_once_in_memory() {
    let mut lost = 0;
    for seed in 0..3 {
        let (app, racing) = billing_tests::racing_app(seed, true);
        concurrent_ingestion_of_the_same_events_counts_each_once(app, Races::default()).await;
        lost += racing.refused_of("UsageStore", "record_usage");
    }
    assert!(
        lost > 0,
        "no event's write was lost to another delivery: they did not race"
    );
}

#[tokio::test]
async fn usage_while_paused_is_recorded_but_not_billed() {
    let app = billing_tests::memory_app();
    let (api, _) = Api::start(app, "Metered Co").await;
    let m = metered_subscription(&api).await;
    let sub = m.subscription.as_str();
    api.post(
        "/v1/usage",
        json!({"transaction_id": "a", "subscription": sub, "metric": "api_calls"}),
    )
    .await;
    advance(&api, &m.clock, "2027-01-10T00:00:00Z").await;
    api.post(&format!("/v1/subscriptions/{sub}/pause"), json!({}))
        .await;
    let paused = api
        .post(
            "/v1/usage",
            json!({"transaction_id": "b", "subscription": sub, "metric": "api_calls"}),
        )
        .await;
    assert_eq!(
        (paused["status"].as_str(), paused["billable"].as_bool()),
        (Some("accepted"), Some(false))
    );
    advance(&api, &m.clock, "2027-01-20T00:00:00Z").await;
    api.post(&format!("/v1/subscriptions/{sub}/resume"), json!({}))
        .await;
    let invoices = api.invoices(sub).await;
    let resume = invoices.last().unwrap();
    let line = resume["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "usage:api_calls")
        .unwrap_or_else(|| panic!("usage line in {resume}"));
    assert_eq!(
        line["quantity"], "1",
        "the call before the pause, not the one during it"
    );
}

#[tokio::test]
async fn usage_routes_are_documented_and_need_their_permission() {
    let app = billing_tests::memory_app();
    let caller = billing_tests::admin(&app, "Docs").await;
    let viewer = app
        .customers
        .create_api_key(
            &caller,
            &billing_domain::customers::access::NewApiKey::new(
                billing_domain::customers::access::Role::FinanceViewer,
                Some("viewer"),
            ),
        )
        .await
        .unwrap();
    let api = Api::new(billing_tests::serve(app).await, viewer.secret);
    let doc = api.anonymous().get("/v1/openapi.json").await;
    for path in [
        "/v1/usage",
        "/v1/usage/batch",
        "/v1/subscriptions/{id}/usage",
        "/v1/entitlements/check",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(doc["x-event-types"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "usage.threshold_reached"));
    let refused = api
        .send(
            Method::POST,
            "/v1/usage",
            Some(&json!({"transaction_id": "t", "subscription": "sub_x", "metric": "m"})),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let unknown = api
        .send(
            Method::GET,
            "/v1/entitlements/check?account=nobody&metric=m",
            None,
        )
        .await;
    assert_eq!(
        unknown.status(),
        StatusCode::BAD_REQUEST,
        "read is allowed; the account is unknown"
    );
}

/// Eight clients deliver the same batch at once, then eight workers pick up one late-usage
/// job at once: each call counted once, each threshold event once, one supplemental
/// invoice.
async fn thresholds_and_late_usage_stay_exactly_once_under_concurrency(app: App, races: Races) {
    let (api, tenant) = Api::start(app.clone(), "Metered Co").await;
    let m = metered_subscription(&api).await;
    let sub = m.subscription.clone();
    let calls = |ids: std::ops::Range<u32>, timestamp: Option<&str>| -> Vec<Value> {
        ids.map(|i| {
            let mut e = json!({"transaction_id": format!("c{i}"), "subscription": sub, "metric": "api_calls"});
            if let Some(t) = timestamp {
                e["timestamp"] = json!(t);
            }
            e
        })
        .collect()
    };
    // Eight clients deliver the same five calls at once: five counted, 80 % and 100 % once.
    races.begin();
    let deliveries: Vec<_> = (0..8)
        .map(|_| {
            let (api, events) = (api.clone(), calls(0..5, None));
            tokio::spawn(async move {
                api.post("/v1/usage/batch", json!({ "events": events }))
                    .await["accepted"]
                    .as_u64()
                    .unwrap()
            })
        })
        .collect();
    let mut accepted = 0;
    for d in deliveries {
        accepted += d.await.unwrap();
    }
    assert_eq!(accepted, 5);
    let thresholds = api.get("/v1/events?type=usage.threshold_reached").await;
    assert_eq!(thresholds["data"].as_array().unwrap().len(), 2);

    // January is billed; one late call arrives; eight workers pick up its job at once.
    advance(&api, &m.clock, "2027-02-01T00:00:00Z").await;
    batch(&api, calls(5..6, Some("2027-01-31T12:00:00Z"))).await;
    let id = billing_domain::kernel::ids::SubscriptionId::parse(&sub, "id").unwrap();
    let until: jiff::Timestamp = "2027-02-01T00:01:00Z".parse().unwrap();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (app, tenant) = (app.clone(), tenant.id);
            tokio::spawn(async move {
                app.billing
                    .bill_late_usage(tenant, id, until)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut billed = 0;
    for w in workers {
        billed += usize::from(w.await.unwrap());
    }
    assert_eq!(billed, 1, "one worker wrote the supplemental invoice");
    let late: Vec<Value> = api
        .invoices(&sub)
        .await
        .into_iter()
        .filter(|i| i["billing_reason"] == "late_usage")
        .collect();
    assert_eq!(late.len(), 1);
    assert_eq!(
        late[0]["total"], 50,
        "the sixth call: 4 × $0.50 − 3 × $0.50"
    );
}

/// The same on the memory store. Over HTTP, so on the real clock: the racing store yields a
/// seeded-random number of times before every operation, which interleaves the deliveries
/// and the workers.
#[tokio::test]
async fn thresholds_and_late_usage_stay_exactly_once_under_concurrency_in_memory() {
    let (app, racing) = billing_tests::racing_app(21, false);
    thresholds_and_late_usage_stay_exactly_once_under_concurrency(app, Races::default()).await;
    assert!(
        racing.refused_of("UsageStore", "record_usage") > 0,
        "no delivery lost a write to another: they did not race"
    );
    assert!(
        racing.refused_of("UsageStore", "bill_late_usage") > 0,
        "no worker lost the late usage to another: they did not race"
    );
}

#[tokio::test]
async fn the_billing_worker_bills_usage_and_late_usage_of_a_tenants_batch() {
    // Real time (no test clock), as the deployed worker sees it: the worker's batch path
    // writes the renewals of several subscriptions together, with their billed rollups.
    let start: jiff::Timestamp = "2027-03-01T00:00:00Z".parse().unwrap();
    let clock = billing_tests::clock::ManualClock::at(start);
    let app = billing_tests::app_with_clock(billing_tests::memory_store(), clock.clone());
    let caller = billing_tests::admin(&app, "Worker").await;
    app.catalog
        .create_metric(
            &caller,
            serde_json::from_value(
                json!({"code": "api_calls", "name": "API calls", "aggregation": "count"}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let plan = app
        .catalog
        .create_plan(
            &caller,
            serde_json::from_value(
                json!({"code": "calls", "name": "Calls", "interval": {"unit": "month"},
                "charges": {"usage_charges": [{"metric": "api_calls",
                    "prices": {"usd": {"model": "per_unit", "unit_price": "0.25"}}}]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let account = app
            .customers
            .create_account(
                &caller,
                serde_json::from_value(
                    json!({"email": format!("w{i}@acme.test"), "currency": "usd"}),
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let sub = app.billing
            .create_subscription(
                &caller,
                billing_app::billing::StartSubscription {
                    account_id: account.id,
                    plan_id: plan.plan.id,
                    quantity: 1,
                    trial_days: None,
                    start: None,
                    billing_anchor: None,
                    collection_method:
                        billing_domain::billing::subscription::CollectionMethod::ChargeAutomatically,
                    days_until_due: None,
                    max_pause_days: None,
                    metadata: Default::default(),
                    coupon: None,
                },
            )
            .await
            .unwrap();
        // Subscription i uses the API 4 × (i + 1) times.
        let events: Vec<UsageEventInput> = (0..4 * (i + 1))
            .map(|n| {
                serde_json::from_value(json!({"transaction_id": format!("s{i}-{n}"), "subscription": sub.id, "metric": "api_calls"}))
                    .unwrap()
            })
            .collect();
        app.usage.record_usage(&caller, events).await.unwrap();
        ids.push(sub.id);
    }
    let invoices = |id| {
        let (app, caller) = (app.clone(), caller.clone());
        async move {
            let filter = billing_app::ports::InvoiceFilter {
                subscription: Some(id),
                ..Default::default()
            };
            let page = billing_app::ports::PageRequest::first(100);
            app.billing
                .list_invoices(&caller, &filter, &page)
                .await
                .unwrap()
                .items
        }
    };

    clock.set("2027-04-01T00:00:00Z".parse().unwrap());
    let until = clock.now();
    let results = app
        .billing
        .run_due_subscriptions(caller.tenant_id, &ids, until)
        .await;
    assert!(
        results.iter().all(|r| r.as_ref().is_ok_and(|n| *n == 1)),
        "{results:?}"
    );
    for (i, id) in ids.iter().enumerate() {
        let billed = invoices(*id).await;
        assert_eq!(billed.len(), 1, "March's usage, in arrears");
        assert_eq!(
            billed[0].total,
            100 * (i as i64 + 1),
            "4 × (i + 1) calls × $0.25"
        );
    }

    // A late call for March on the second subscription; the sweep hands its job over.
    let late: UsageEventInput =
        serde_json::from_value(json!({"transaction_id": "late", "subscription": ids[1],
        "metric": "api_calls", "timestamp": "2027-03-31T23:00:00Z"}))
        .unwrap();
    assert!(
        app.usage
            .record_usage_event(&caller, late)
            .await
            .unwrap()
            .late
    );
    clock.set("2027-04-01T00:02:00Z".parse().unwrap());
    let due = app.store.due_items(clock.now(), 100).await.unwrap();
    let jobs: Vec<_> = due
        .iter()
        .filter_map(|d| match &d.kind {
            billing_app::ports::DueKind::Billing(
                billing_app::ports::BillingJob::Subscription { id, .. },
            ) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(jobs, [ids[1]]);
    for _ in 0..2 {
        // A redelivered job finds it billed.
        app.billing
            .run_due_subscriptions(caller.tenant_id, &jobs, clock.now())
            .await;
    }
    let billed = invoices(ids[1]).await;
    assert_eq!(billed.len(), 2);
    let supplement = billed
        .iter()
        .find(|i| {
            i.billing_reason == billing_domain::billing::subscription::BillingReason::LateUsage
        })
        .unwrap();
    assert_eq!(supplement.total, 25);
    assert!(app
        .store
        .due_items(clock.now(), 100)
        .await
        .unwrap()
        .iter()
        .all(|d| !matches!(
            d.kind,
            billing_app::ports::DueKind::Billing(
                billing_app::ports::BillingJob::Subscription { .. }
            )
        )));
}

billing_tests::on_both_stores!(metering_story,);

billing_tests::racing_on_the_stand_in!(
    concurrent_ingestion_of_the_same_events_counts_each_once,
    thresholds_and_late_usage_stay_exactly_once_under_concurrency,
);
