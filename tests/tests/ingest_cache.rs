//! What a warm instance caches for ingest (API keys, metrics, subscriptions) and why it
//! stays exact: a revoked key is refused within the documented bound (at once when revoked
//! through the same instance), a cancelled subscription at once, a metric created after an
//! event named it unknown is found, nothing crosses tenants or modes; and what a single
//! event costs in DynamoDB requests on the stand-in.

use std::collections::BTreeMap;
use std::sync::Arc;

use billing_app::customers::KEY_TTL;
use billing_app::ports::{Store, SystemClock};
use billing_app::App;
use billing_domain::customers::tenant::TenantMode;
use billing_infra::request_count::Counter;
use billing_tests::api::Api;
use billing_tests::clock::ManualClock;
use jiff::SignedDuration;
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

billing_tests::on_both_stores!(
    revoked_keys_are_refused_within_the_bound,
    changes_elsewhere_are_seen_by_the_next_event,
);

/// The DynamoDB requests of one `POST /v1/usage`, by operation, and its answer.
async fn counted(
    counter: &Counter,
    api: &Api,
    id: &str,
    by: Value,
) -> (BTreeMap<String, u64>, (StatusCode, Value)) {
    counter.start();
    let answer = event(api, id, by, "api_calls").await;
    (counter.stop(), answer)
}

#[tokio::test]
async fn a_single_event_costs_two_dynamodb_requests_on_a_warm_instance() {
    let counter = Arc::new(Counter::default());
    let store = billing_tests::counted_dynamo_store(counter.clone()).await;
    let app = billing_tests::app_with_clock(Arc::new(store), Arc::new(SystemClock));
    let (api, _) = Api::start(app, "Counted").await;
    let sub = metered(&api).await;
    let by_id = json!({ "subscription": sub });
    let by_external = json!({"external_account_id": "cust-1"});
    // The first event of an instance reads the key, the metric and the subscription.
    let (cold, answer) = counted(&counter, &api, "cold", by_external.clone()).await;
    accepted(answer);
    assert!(cold.values().sum::<u64>() > 2, "{cold:?}");

    let two = BTreeMap::from([
        ("BatchGetItem".to_owned(), 1),
        ("TransactWriteItems".to_owned(), 1),
    ]);
    for (id, by) in [("warm1", by_id.clone()), ("warm2", by_external)] {
        let (requests, answer) = counted(&counter, &api, id, by).await;
        accepted(answer);
        assert_eq!(
            requests, two,
            "the rollup read and the transaction, for {id}"
        );
    }
    // A retry: its put fails, which is how it is known a duplicate (no read before).
    let (requests, (status, answer)) = counted(&counter, &api, "warm1", by_id).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(requests, two, "a duplicate costs the same");
    assert_eq!(quantity(&api, &sub).await, "3");
}
