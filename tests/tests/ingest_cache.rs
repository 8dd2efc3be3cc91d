//! What a warm instance caches for ingest (API keys, metrics, subscriptions, rollups) and
//! why it stays exact: a revoked key is refused within the documented bound (at once when
//! revoked through the same instance), a cancelled subscription at once, a metric created
//! after an event named it unknown is found, nothing crosses tenants or modes, events sent
//! to two instances in turn are each counted once, a rollup billed after an instance cached
//! it is read again; and what a single event costs in DynamoDB requests on the stand-in.

use std::collections::BTreeMap;
use std::sync::Arc;

use billing_app::billing::StartSubscription;
use billing_app::customers::KEY_TTL;
use billing_app::ports::Store;
use billing_app::usage::ROLLUP_TTL;
use billing_app::App;
use billing_domain::customers::tenant::TenantMode;
use billing_domain::kernel::ids::SubscriptionId;
use billing_domain::usage::meter::{UsageEventInput, UsageStatus};
use billing_infra::request_count::Counter;
use billing_tests::api::Api;
use billing_tests::clock::ManualClock;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Two instances of the API over one store and one clock, each with its own caches,
/// calling with the admin key of a new sandbox tenant; and the first instance's app.
async fn two_instances(store: Arc<dyn Store>, clock: Arc<ManualClock>) -> (Api, Api, App) {
    let a = billing_tests::app_with_clock(store.clone(), clock.clone());
    let b = billing_tests::app_with_clock(store, clock);
    let (_, issued) = a
        .customers
        .create_tenant("Cached", TenantMode::Sandbox)
        .await
        .unwrap();
    let api_a = Api::new(billing_tests::serve(a.clone()).await, &issued.secret);
    let api_b = Api::new(billing_tests::serve(b).await, &issued.secret);
    (api_a, api_b, a)
}

async fn status_of(api: &Api, path: &str) -> StatusCode {
    api.send(Method::GET, path, None).await.status()
}

async fn key_id(api: &Api, role: &str) -> String {
    let keys = api.get("/v1/api-keys").await;
    keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == role)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn revoked_keys_are_refused_within_the_bound(store: Arc<dyn Store>) {
    let clock = ManualClock::at("2027-03-01T00:00:00Z".parse().unwrap());
    let (a, b, _) = two_instances(store, clock.clone()).await;
    let support_key = a.key_with_role("support").await;
    let support = a.with_key(&support_key);
    assert_eq!(status_of(&support, "/v1/accounts").await, StatusCode::OK);

    // Revoked through the other instance: this one trusts what it read until the TTL ends.
    b.delete(&format!("/v1/api-keys/{}", key_id(&b, "support").await))
        .await;
    let b_support = b.with_key(&support_key);
    assert_eq!(
        status_of(&b_support, "/v1/accounts").await,
        StatusCode::UNAUTHORIZED,
        "the revoking instance refuses at once"
    );
    clock.advance(KEY_TTL - SignedDuration::from_secs(1));
    assert_eq!(status_of(&support, "/v1/accounts").await, StatusCode::OK);
    clock.advance(SignedDuration::from_secs(1));
    let refused = support.send(Method::GET, "/v1/accounts", None).await;
    billing_tests::api::problem(refused, StatusCode::UNAUTHORIZED, "api_key_revoked").await;

    // Revoked through this instance: refused by it at once.
    let viewer = a.with_key(&a.key_with_role("finance_viewer").await);
    assert_eq!(status_of(&viewer, "/v1/accounts").await, StatusCode::OK);
    a.delete(&format!(
        "/v1/api-keys/{}",
        key_id(&a, "finance_viewer").await
    ))
    .await;
    assert_eq!(
        status_of(&viewer, "/v1/accounts").await,
        StatusCode::UNAUTHORIZED
    );
}

/// A count metric `api_calls`, a plan charging it and an account with external id
/// `cust-1` subscribed to it; the subscription's id.
async fn metered(api: &Api) -> String {
    api.post(
        "/v1/metrics",
        json!({"code": "api_calls", "name": "API calls", "aggregation": "count"}),
    )
    .await;
    let plan = api
        .post(
            "/v1/plans",
            json!({"code": "metered", "name": "Metered", "interval": {"unit": "month"},
                "charges": {"usage_charges": [{"metric": "api_calls",
                    "prices": {"usd": {"model": "per_unit", "unit_price": "0.01"}}}]}}),
        )
        .await;
    let account = api
        .post(
            "/v1/accounts",
            json!({"email": "m@acme.test", "currency": "usd", "external_id": "cust-1"}),
        )
        .await;
    subscribe(api, &account["id"], &plan["id"]).await
}

async fn subscribe(api: &Api, account: &Value, plan: &Value) -> String {
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan}),
        )
        .await;
    sub["id"].as_str().unwrap().to_owned()
}

/// Posts one event; its status and answer.
async fn event(api: &Api, id: &str, by: Value, metric: &str) -> (StatusCode, Value) {
    let mut body = json!({"transaction_id": id, "metric": metric});
    body.as_object_mut()
        .unwrap()
        .extend(by.as_object().unwrap().clone());
    api.call(Method::POST, "/v1/usage", Some(&body)).await
}

fn accepted((status, answer): (StatusCode, Value)) {
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::ACCEPTED, Some("accepted")),
        "{answer}"
    );
}

fn refused((status, answer): (StatusCode, Value), code: &str) {
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some(code)),
        "{answer}"
    );
}

async fn quantity(api: &Api, sub: &str) -> Value {
    let usage = api.get(&format!("/v1/subscriptions/{sub}/usage")).await;
    usage["periods"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "api_calls")
        .map_or(Value::Null, |m| m["quantity"].clone())
}

async fn changes_elsewhere_are_seen_by_the_next_event(store: Arc<dyn Store>) {
    let clock = ManualClock::at(jiff::Timestamp::now());
    let (a, b, app_a) = two_instances(store, clock).await;
    let sub = metered(&a).await;
    let by_id = json!({ "subscription": sub });
    let by_external = json!({"external_account_id": "cust-1"});
    // Both ways of naming the subscription are cached now, with the metric.
    accepted(event(&a, "e1", by_id.clone(), "api_calls").await);
    accepted(event(&a, "e2", by_external.clone(), "api_calls").await);

    // An unknown code is not cached: a metric created (elsewhere) after is found.
    refused(
        event(&a, "e3", by_id.clone(), "seats").await,
        "unknown_metric",
    );
    b.post(
        "/v1/metrics",
        json!({"code": "seats", "name": "Seats", "aggregation": "count"}),
    )
    .await;
    accepted(event(&a, "e3", by_id.clone(), "seats").await);
    // A metric updated through the instance is read again (ingest reads only what never
    // changes, so the event is accepted as before).
    let seats = b.list("/v1/metrics").await;
    let seats = seats.iter().find(|m| m["code"] == "seats").unwrap();
    a.patch(
        &format!("/v1/metrics/{}", seats["id"].as_str().unwrap()),
        json!({"name": "Seats held"}),
    )
    .await;
    accepted(event(&a, "e4", by_id.clone(), "seats").await);

    // Another tenant (of the other mode) with the same metric code and external id sees
    // none of the first one's: not its subscription, its account or its metric.
    let (_, issued) = app_a
        .customers
        .create_tenant("Other", TenantMode::Live)
        .await
        .unwrap();
    let other = Api::new(a.base(), &issued.secret);
    refused(
        event(&other, "e1", by_id.clone(), "api_calls").await,
        "unknown_subscription",
    );
    refused(
        event(&other, "e1", by_external.clone(), "api_calls").await,
        "unknown_account",
    );
    let plan = other
        .post(
            "/v1/plans",
            json!({"code": "flat", "name": "Flat", "interval": {"unit": "month"},
                "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 1000}}}}}),
        )
        .await;
    let account = other
        .post(
            "/v1/accounts",
            json!({"email": "o@other.test", "currency": "usd", "external_id": "cust-1"}),
        )
        .await;
    subscribe(&other, &account["id"], &plan["id"]).await;
    refused(
        event(&other, "e1", by_external.clone(), "api_calls").await,
        "unknown_metric",
    );
    assert_eq!(quantity(&a, &sub).await, "2");

    // Cancelled through the other instance: the cached subscription is refused at once,
    // by id and by external id.
    b.post(&format!("/v1/subscriptions/{sub}/cancel"), json!({}))
        .await;
    refused(
        event(&a, "e5", by_id.clone(), "api_calls").await,
        "subscription_cancelled",
    );
    refused(
        event(&a, "e6", by_external.clone(), "api_calls").await,
        "no_subscription",
    );
    assert_eq!(quantity(&a, &sub).await, "2");
}

/// Events for one subscription and metric sent to two instances in turn, each instance
/// planning from the rollup it last wrote: every event is counted once, a transaction id
/// sent again to the other instance is a duplicate, and a batch through one instance
/// leaves the other's cached rollup stale without losing or doubling anything.
async fn events_sent_to_two_instances_in_turn_are_each_counted_once(store: Arc<dyn Store>) {
    let clock = ManualClock::at("2027-03-01T00:00:00Z".parse().unwrap());
    let (a, b, _) = two_instances(store, clock).await;
    let sub = metered(&a).await;
    let by_id = json!({ "subscription": sub });
    let instances = [&a, &b];
    for i in 0..12 {
        let (to, other) = (instances[i % 2], instances[(i + 1) % 2]);
        let id = format!("e{i}");
        accepted(event(to, &id, by_id.clone(), "api_calls").await);
        if i % 3 == 0 {
            let (status, answer) = event(other, &id, by_id.clone(), "api_calls").await;
            assert_eq!(answer["status"], "duplicate", "{id}: {status} {answer}");
        }
        // Twice on the same instance: the second is planned from its own last write.
        if i % 4 == 1 {
            accepted(event(to, &format!("{id}-again"), by_id.clone(), "api_calls").await);
        }
    }
    let batch: Vec<Value> = (0..5)
        .map(|i| json!({"transaction_id": format!("batch{i}"), "subscription": sub, "metric": "api_calls"}))
        .collect();
    let answer = b.post("/v1/usage/batch", json!({ "events": batch })).await;
    assert_eq!(answer["accepted"], 5, "{answer}");
    accepted(event(&a, "after-batch", by_id.clone(), "api_calls").await);
    accepted(event(&b, "after-batch-b", by_id, "api_calls").await);
    assert_eq!(quantity(&a, &sub).await, (12 + 3 + 5 + 2).to_string());
}

async fn advance(api: &Api, clock: &str, to: &str) {
    assert_eq!(api.advance_clock(clock, to).await.1["status"], "ready");
}

/// Posts one event at `timestamp`; whether it was late (it must be accepted).
async fn late(api: &Api, id: &str, sub: &str, timestamp: &str) -> bool {
    let body = json!({"transaction_id": id, "subscription": sub, "metric": "api_calls",
        "timestamp": timestamp});
    let (status, answer) = api.call(Method::POST, "/v1/usage", Some(&body)).await;
    assert_eq!(answer["status"], "accepted", "{id}: {status} {answer}");
    answer["late"].as_bool().unwrap_or(false)
}

/// The totals of a subscription's supplemental invoices for late usage, in order.
async fn late_invoices(api: &Api, sub: &str) -> Vec<i64> {
    let mut late: Vec<(String, i64)> = api
        .invoices(sub)
        .await
        .iter()
        .filter(|i| i["billing_reason"] == "late_usage")
        .map(|i| {
            (
                i["number"].as_str().unwrap().to_owned(),
                i["total"].as_i64().unwrap(),
            )
        })
        .collect();
    late.sort();
    late.into_iter().map(|(_, total)| total).collect()
}

/// A rollup an instance cached is then billed, by the renewal and by late usage's
/// supplemental invoice (each moves its version, not through that instance): the next event
/// on the caching instance is late and billed once, exactly as without the cache.
async fn a_rollup_billed_after_an_instance_cached_it_is_read_again(store: Arc<dyn Store>) {
    // Before the test clock's time, so the plan is in effect on it.
    let clock = ManualClock::at("2026-12-01T00:00:00Z".parse().unwrap());
    let app_a = billing_tests::app_with_clock(store.clone(), clock.clone());
    let app_b = billing_tests::app_with_clock(store.clone(), clock.clone());
    let (a, tenant) = Api::start(app_a, "Billed").await;
    let b = Api::new(billing_tests::serve(app_b).await, a.key().unwrap());
    a.post(
        "/v1/metrics",
        json!({"code": "api_calls", "name": "API calls", "aggregation": "count"}),
    )
    .await;
    let plan = a
        .post(
            "/v1/plans",
            json!({"code": "calls", "name": "Calls", "interval": {"unit": "month"},
                "charges": {"usage_charges": [{"metric": "api_calls",
                    "prices": {"usd": {"model": "per_unit", "unit_price": "0.5"}}}]}}),
        )
        .await;
    let (test_clock, account) = a.clock_account("2027-01-01T00:00:00Z").await;
    let sub = subscribe(&a, &json!(account), &plan["id"]).await;
    let by_id = json!({ "subscription": sub });
    accepted(event(&b, "jan1", by_id.clone(), "api_calls").await);
    accepted(event(&a, "jan2", by_id.clone(), "api_calls").await);
    // Planned from the rollup `a` wrote: a holds January's rollup, unbilled.
    accepted(event(&a, "jan3", by_id.clone(), "api_calls").await);

    // The renewal bills January (3 × $0.50); an event of February on `a` refreshes the
    // subscription it cached, not January's rollup.
    advance(&a, &test_clock, "2027-02-01T00:00:00Z").await;
    assert!(!late(&a, "feb1", &sub, "2027-02-01T00:00:00Z").await);
    assert!(
        late(&a, "late1", &sub, "2027-01-20T00:00:00Z").await,
        "planned from the cached, unbilled rollup, its write failed; read again, it is late"
    );
    let (_, again) = b
        .call(
            Method::POST,
            "/v1/usage",
            Some(&json!({"transaction_id": "late1", "subscription": sub, "metric": "api_calls"})),
        )
        .await;
    assert_eq!(again["status"], "duplicate");
    advance(&a, &test_clock, "2027-02-01T00:05:00Z").await;
    assert_eq!(late_invoices(&a, &sub).await, [50]);

    // Once the mark that another writer moved it expires, `a` caches January's rollup again
    // (late, waiting for its invoice); the supplemental invoice then bills it elsewhere.
    clock.advance(ROLLUP_TTL);
    assert!(late(&a, "late2", &sub, "2027-01-21T00:00:00Z").await);
    advance(&a, &test_clock, "2027-02-01T00:10:00Z").await;
    assert_eq!(late_invoices(&a, &sub).await, [50, 50]);
    assert!(late(&a, "late3", &sub, "2027-01-22T00:00:00Z").await);
    advance(&a, &test_clock, "2027-02-01T00:15:00Z").await;
    assert_eq!(
        late_invoices(&a, &sub).await,
        [50, 50, 50],
        "each late event billed once, on its own supplemental invoice"
    );
    let id = SubscriptionId::parse(&sub, "subscription").unwrap();
    let january = store
        .list_rollups(
            tenant.id,
            id,
            start("2027-01-01T00:00:00Z"),
            start("2027-01-02T00:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(january.len(), 1);
    assert_eq!(
        january[0].quantity().to_string(),
        "6",
        "three in time, three late"
    );
}

fn start(at: &str) -> Timestamp {
    at.parse().unwrap()
}

/// A refusal is conditioned on no version: one planned from a cached rollup that another
/// instance has since moved is decided again from the stored rollup. A sum metric priced at
/// $1,000,000 a unit holds at most about 9.2 × 10^10 units a period (10^8 cents each).
async fn a_refusal_planned_from_a_cached_rollup_is_decided_again(store: Arc<dyn Store>) {
    let clock = ManualClock::at("2027-03-01T00:00:00Z".parse().unwrap());
    let (a, b, _) = two_instances(store, clock).await;
    a.post(
        "/v1/metrics",
        json!({"code": "gpu", "name": "GPU", "aggregation": "sum", "field": "units"}),
    )
    .await;
    let plan = a
        .post(
            "/v1/plans",
            json!({"code": "heavy", "name": "Heavy", "interval": {"unit": "month"},
                "charges": {"usage_charges": [{"metric": "gpu",
                    "prices": {"usd": {"model": "per_unit", "unit_price": "1000000"}}}]}}),
        )
        .await;
    let account = a
        .post(
            "/v1/accounts",
            json!({"email": "g@acme.test", "currency": "usd"}),
        )
        .await;
    let sub = subscribe(&a, &account["id"], &plan["id"]).await;
    let units = |api: &Api, id: &str, value: i64| {
        let body =
            json!({"transaction_id": id, "subscription": sub, "metric": "gpu", "value": value});
        let api = api.clone();
        async move { api.call(Method::POST, "/v1/usage", Some(&body)).await }
    };
    accepted(units(&a, "g1", 90_000_000_000).await);
    refused(
        units(&a, "g2", 5_000_000_000).await,
        "usage_value_too_large",
    );
    // Through the other instance the period comes back down; `a` still holds 9 × 10^10.
    accepted(units(&b, "g3", -90_000_000_000).await);
    accepted(units(&a, "g4", 5_000_000_000).await);
    let usage = a.get(&format!("/v1/subscriptions/{sub}/usage")).await;
    let gpu = usage["periods"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "gpu")
        .unwrap()["quantity"]
        .clone();
    assert_eq!(gpu, "5000000000");
}

billing_tests::on_both_stores!(
    revoked_keys_are_refused_within_the_bound,
    changes_elsewhere_are_seen_by_the_next_event,
    events_sent_to_two_instances_in_turn_are_each_counted_once,
    a_rollup_billed_after_an_instance_cached_it_is_read_again,
    a_refusal_planned_from_a_cached_rollup_is_decided_again,
);

/// The DynamoDB requests of one `POST /v1/usage`, by operation, and its answer. The rate
/// limiter's share claims and `last_used_at` writes (`UpdateItem`, counted in `limits.rs`)
/// are left out: they fall on whichever request needs them.
async fn counted(
    counter: &Counter,
    api: &Api,
    id: &str,
    by: Value,
) -> (BTreeMap<String, u64>, (StatusCode, Value)) {
    counter.start();
    let answer = event(api, id, by, "api_calls").await;
    let mut requests = counter.stop();
    requests.remove("UpdateItem");
    (requests, answer)
}

fn requests(counts: &[(&str, u64)]) -> BTreeMap<String, u64> {
    counts
        .iter()
        .map(|(op, n)| ((*op).to_owned(), *n))
        .collect()
}

#[tokio::test]
async fn a_single_event_costs_one_dynamodb_request_on_a_warm_instance() {
    let counter = Arc::new(Counter::default());
    let store = Arc::new(billing_tests::counted_dynamo_store(counter.clone()).await);
    let clock = ManualClock::at(Timestamp::now());
    let (a, b, _) = two_instances(store, clock).await;
    let sub = metered(&a).await;
    let by_id = json!({ "subscription": sub });
    let by_external = json!({"external_account_id": "cust-1"});
    // The first event of an instance reads the key, the metric, the subscription and the
    // rollup.
    let (cold, answer) = counted(&counter, &a, "cold", by_external.clone()).await;
    accepted(answer);
    assert!(cold.values().sum::<u64>() > 2, "{cold:?}");

    let one = requests(&[("TransactWriteItems", 1)]);
    let two = requests(&[("BatchGetItem", 1), ("TransactWriteItems", 1)]);
    for (id, by) in [("warm1", by_id.clone()), ("warm2", by_external)] {
        let (counts, answer) = counted(&counter, &a, id, by).await;
        accepted(answer);
        assert_eq!(counts, one, "planned from the rollup it wrote, for {id}");
    }
    // A retry: its put fails, which is how it is known a duplicate (no read before); the
    // failed write forgets the rollup, so the next event reads it.
    let (counts, (status, answer)) = counted(&counter, &a, "warm1", by_id.clone()).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(counts, one, "a duplicate costs its failed put");
    let (counts, answer) = counted(&counter, &a, "warm3", by_id.clone()).await;
    accepted(answer);
    assert_eq!(counts, two);

    // Another instance writes the rollup: `a`'s entry is stale, its write fails and it
    // reads; then it marks the rollup contended and reads it before each write (as does
    // `b`, whose own entry went stale the same way) until the mark expires.
    accepted(event(&b, "b1", by_id.clone(), "api_calls").await);
    let stale = requests(&[("BatchGetItem", 1), ("TransactWriteItems", 2)]);
    for (api, id, cost) in [
        (&a, "a-stale", &stale),
        (&b, "b-stale", &stale),
        (&a, "a-contended", &two),
        (&b, "b-contended", &two),
        (&a, "a-contended2", &two),
    ] {
        let (counts, answer) = counted(&counter, api, id, by_id.clone()).await;
        accepted(answer);
        assert_eq!(&counts, cost, "{id}");
    }
    assert_eq!(quantity(&a, &sub).await, "10");
}

/// One round's step of the proptest: events through one instance (one alone, or a batch
/// of several), or the clock moving on (so that cached entries expire).
#[derive(Debug, Clone)]
enum Step {
    Send { instance: usize, ids: Vec<usize> },
    Wait { seconds: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..2usize, prop::collection::vec(0..10usize, 1..4))
            .prop_map(|(instance, ids)| Step::Send { instance, ids }),
        1 => (1..90i64).prop_map(|seconds| Step::Wait { seconds }),
    ]
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// Runs the rounds (each round's sends at once, rounds one after another) over two
/// instances of one in-memory store; asserts each transaction id was accepted exactly once
/// and the rollup is the sum of the distinct ids' values (`values[id]`: an id is always sent
/// with its value, so whichever delivery wins counts the same).
async fn interleaved(values: Vec<i64>, rounds: Vec<Vec<Step>>) {
    let store = billing_tests::memory_store();
    let clock = ManualClock::at(start("2027-03-01T00:00:00Z"));
    let apps = [
        billing_tests::app_with_clock(store.clone(), clock.clone()),
        billing_tests::app_with_clock(store.clone(), clock.clone()),
    ];
    let caller = billing_tests::admin(&apps[0], "Interleaved").await;
    let app = &apps[0];
    app.catalog
        .create_metric(
            &caller,
            serde_json::from_value(
                json!({"code": "units", "name": "Units", "aggregation": "sum", "field": "units"}),
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
                json!({"code": "units", "name": "Units", "interval": {"unit": "month"},
                "charges": {"usage_charges": [{"metric": "units",
                    "prices": {"usd": {"model": "per_unit", "unit_price": "0.01"}}}]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let account = app
        .customers
        .create_account(
            &caller,
            serde_json::from_value(json!({"email": "u@acme.test", "currency": "usd"})).unwrap(),
        )
        .await
        .unwrap();
    let sub = app
        .billing
        .create_subscription(&caller, StartSubscription::new(account.id, plan.plan.id))
        .await
        .unwrap();
    let input = |id: usize| -> UsageEventInput {
        serde_json::from_value(json!({"transaction_id": format!("t{id}"),
            "subscription": sub.id.to_string(), "metric": "units", "value": values[id]}))
        .unwrap()
    };
    let mut outcomes = Vec::new();
    for round in rounds {
        let mut sends = Vec::new();
        for step in round {
            match step {
                Step::Wait { seconds } => clock.advance(SignedDuration::from_secs(seconds)),
                Step::Send { instance, ids } => {
                    let (app, caller) = (apps[instance].clone(), caller.clone());
                    let mut inputs: Vec<UsageEventInput> = ids.into_iter().map(input).collect();
                    sends.push(tokio::spawn(async move {
                        match inputs.len() {
                            1 => vec![app
                                .usage
                                .record_usage_event(&caller, inputs.remove(0))
                                .await
                                .unwrap()],
                            _ => app.usage.record_usage(&caller, inputs).await.unwrap(),
                        }
                    }));
                }
            }
        }
        for send in sends {
            outcomes.extend(send.await.unwrap());
        }
    }
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    for outcome in &outcomes {
        let times = accepted.entry(outcome.transaction_id.clone()).or_default();
        match outcome.status {
            UsageStatus::Accepted => *times += 1,
            UsageStatus::Duplicate => {}
            UsageStatus::Rejected => panic!("{outcome:?}"),
        }
    }
    assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");
    let expected: i64 = accepted
        .keys()
        .map(|id| values[id[1..].parse::<usize>().unwrap()])
        .sum();
    let rollups = store
        .list_rollups(
            caller.tenant_id,
            sub.id,
            start("2027-03-01T00:00:00Z"),
            start("2027-03-02T00:00:00Z"),
        )
        .await
        .unwrap();
    // No rollup: nothing was sent (only waits).
    let total = rollups
        .first()
        .map_or("0".to_owned(), |r| r.quantity().normalize().to_string());
    assert_eq!(total, expected.to_string());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// However events (duplicate transaction ids among them, alone or in batches) interleave
    /// across two instances that each cache the rollup they last wrote, some sent at once,
    /// every id is accepted once and the rollup ends at the sum over distinct ids.
    #[test]
    fn a_rollup_is_the_sum_over_distinct_transaction_ids_however_instances_interleave(
        values in prop::collection::vec(1..1000i64, 10),
        rounds in prop::collection::vec(prop::collection::vec(step(), 1..4), 1..12),
    ) {
        runtime().block_on(interleaved(values, rounds));
    }
}
