//! Poison usage (issue 13, item 1): ingestion refuses usage that could not be billed, and a
//! period that cannot be priced anyway parks its subscription (visible, announced, never
//! retried forever, never in the way of the tenant's other subscriptions) until an
//! operator retries it.

use std::sync::Arc;

use billing_app::ports::{Clock, Store};
use billing_tests::api::{problem, Api};
use billing_tests::clock::ManualClock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Sum metrics `gpu` and `cpu`; plan `light` charges `gpu` at $0.01 a unit, plan `heavy`
/// charges both at $1,000,000 a unit (10^8 cents: one period's line holds at most about
/// 9.2 × 10^10 units).
async fn catalog(api: &Api) -> (String, String) {
    for code in ["gpu", "cpu"] {
        api.post(
            "/v1/metrics",
            json!({"code": code, "name": code, "aggregation": "sum", "field": "units"}),
        )
        .await;
    }
    let per_unit = |price: &str| json!({"usd": {"model": "per_unit", "unit_price": price}});
    let light = api
        .post(
            "/v1/plans",
            json!({"code": "light", "name": "Light", "interval": {"unit": "month"},
                   "charges": {"usage_charges": [{"metric": "gpu", "prices": per_unit("0.01")}]}}),
        )
        .await;
    let heavy = api
        .post(
            "/v1/plans",
            json!({"code": "heavy", "name": "Heavy", "interval": {"unit": "month"},
                   "charges": {"usage_charges": [
                       {"metric": "gpu", "prices": per_unit("1000000")},
                       {"metric": "cpu", "prices": per_unit("1000000")}]}}),
        )
        .await;
    (
        light["id"].as_str().unwrap().to_owned(),
        heavy["id"].as_str().unwrap().to_owned(),
    )
}

async fn subscribe(api: &Api, email: &str, plan: &str) -> String {
    let account = api
        .post("/v1/accounts", json!({"email": email, "currency": "usd"}))
        .await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"account": account["id"], "plan": plan, "collection_method": "send_invoice", "days_until_due": 30}),
        )
        .await;
    sub["id"].as_str().unwrap().to_owned()
}

fn event(id: &str, sub: &str, metric: &str, value: Value) -> Value {
    json!({"transaction_id": id, "subscription": sub, "metric": metric, "value": value})
}

fn quantity(usage: &Value, metric: &str) -> Value {
    usage["periods"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == metric)
        .unwrap_or_else(|| panic!("{metric} in {usage}"))["quantity"]
        .clone()
}

async fn usage_beyond_what_can_be_billed_is_refused_at_ingestion(store: Arc<dyn Store>) {
    let app = billing_tests::app(store);
    let (api, _) = Api::start(app, "Poison Co").await;
    let (light, heavy) = catalog(&api).await;
    let cheap = subscribe(&api, "cheap@acme.test", &light).await;

    // The example: 10^19 units at $0.01 (10^19 cents) was accepted, and made the
    // subscription unbillable.
    let refused = api
        .send(
            Method::POST,
            "/v1/usage",
            Some(&event(
                "e1",
                &cheap,
                "gpu",
                json!(10_000_000_000_000_000_000u64),
            )),
        )
        .await;
    let body = problem(refused, StatusCode::BAD_REQUEST, "usage_value_too_large").await;
    assert_eq!(body["param"], "value");
    // Nothing was recorded: the same transaction id is new when sent again.
    let accepted = api
        .send(
            Method::POST,
            "/v1/usage",
            Some(&event("e1", &cheap, "gpu", json!("12.5"))),
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);

    // Across events: the period's line for gpu on `heavy` holds 9.2 × 10^10 units at most.
    let expensive = subscribe(&api, "heavy@acme.test", &heavy).await;
    let first = api
        .send(
            Method::POST,
            "/v1/usage",
            Some(&event("h1", &expensive, "gpu", json!(90_000_000_000u64))),
        )
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let batch = api
        .post(
            "/v1/usage/batch",
            json!({"events": [
                event("h2", &expensive, "gpu", json!(10_000_000_000u64)),
                event("h3", &expensive, "gpu", json!(1)),
            ]}),
        )
        .await;
    assert_eq!(
        (batch["accepted"].clone(), batch["rejected"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(batch["results"][0]["status"], "rejected");
    assert_eq!(
        batch["results"][0]["error"]["code"],
        "usage_value_too_large"
    );
    assert_eq!(batch["results"][0]["error"]["param"], "value");
    assert_eq!(batch["results"][1]["status"], "accepted");
    // Everything accepted can be priced: the usage answers, with the refused event left out.
    let usage = api
        .get(&format!("/v1/subscriptions/{expensive}/usage"))
        .await;
    assert_eq!(quantity(&usage, "gpu"), "90000000001");
    let usage = api.get(&format!("/v1/subscriptions/{cheap}/usage")).await;
    assert_eq!(quantity(&usage, "gpu"), "12.5");
}

/// The fault test: a subscription whose period cannot be priced (each usage line fits, their
/// sum does not) and a healthy one of the same tenant, renewed by the sweep and the worker.
async fn an_unpriceable_period_is_parked_and_the_tenants_others_are_billed(store: Arc<dyn Store>) {
    let clock = ManualClock::at("2027-03-01T00:00:00Z".parse().unwrap());
    let app = billing_tests::app_with_clock(store, clock.clone());
    let (api, tenant) = Api::start(app.clone(), "Poison Co").await;
    let (light, heavy) = catalog(&api).await;
    let healthy = subscribe(&api, "healthy@acme.test", &light).await;
    let poisoned = subscribe(&api, "poisoned@acme.test", &heavy).await;
    api.post("/v1/usage", event("ok", &healthy, "gpu", json!(1234)))
        .await;
    // 5 × 10^10 units of each at 10^8 cents: two lines of 5 × 10^18 cents, 10^19 together.
    for metric in ["gpu", "cpu"] {
        api.post(
            "/v1/usage",
            event(metric, &poisoned, metric, json!(50_000_000_000u64)),
        )
        .await;
    }

    // Its usage answers problem+json, not 500: the period's projected invoice overflows.
    let usage = api
        .send(
            Method::GET,
            &format!("/v1/subscriptions/{poisoned}/usage"),
            None,
        )
        .await;
    problem(usage, StatusCode::CONFLICT, "usage_unpriceable").await;

    clock.set("2027-04-01T00:01:00Z".parse().unwrap());
    let (jobs, failed) = billing_tests::sweep_and_bill(&app).await;
    assert_eq!(
        failed, 0,
        "the worker answers every job, the unpriceable one too"
    );
    assert_eq!(jobs.len(), 2, "{jobs:?}");

    // The healthy one is billed on time: 1,234 units at $0.01.
    let billed = api.invoices(&healthy).await;
    let cycle: Vec<&Value> = billed
        .iter()
        .filter(|i| i["billing_reason"] == "subscription_cycle")
        .collect();
    assert_eq!(cycle.len(), 1, "{billed:?}");
    assert_eq!(cycle[0]["total"], 1234);
    assert_eq!(cycle[0]["period"]["end"], "2027-04-01T00:00:00Z");
    let renewed = api.get(&format!("/v1/subscriptions/{healthy}")).await;
    assert_eq!(renewed["current_period"]["start"], "2027-04-01T00:00:00Z");
    assert!(renewed.get("billing_failure").is_none(), "{renewed}");

    // The other is parked, visibly, with its event, and billed nothing.
    let parked = api.get(&format!("/v1/subscriptions/{poisoned}")).await;
    assert_eq!(parked["billing_failure"]["status"], "failed", "{parked}");
    assert_eq!(parked["billing_failure"]["due_at"], "2027-04-01T00:00:00Z");
    assert!(parked["billing_failure"]["reason"]
        .as_str()
        .unwrap()
        .contains("cannot be priced"));
    assert_eq!(parked["current_period"]["start"], "2027-03-01T00:00:00Z");
    assert!(api
        .invoices(&poisoned)
        .await
        .iter()
        .all(|i| i["billing_reason"] != "subscription_cycle"));
    let failures = || async {
        api.list("/v1/events?type=subscription.billing_failed")
            .await
            .into_iter()
            .map(|e| e["data"]["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(failures().await, std::slice::from_ref(&poisoned));

    // Not retried forever: nothing of it is due, so the next sweep hands over nothing, and
    // a redelivered job is answered without a second failure.
    assert_eq!(billing_tests::sweep_and_bill(&app).await, (vec![], 0));
    let id = billing_domain::kernel::ids::SubscriptionId::parse(&poisoned, "id").unwrap();
    let again = app
        .billing
        .run_due_subscriptions(tenant.id, &[id], clock.now())
        .await;
    assert_eq!(again, [Ok(0)]);
    assert_eq!(failures().await.len(), 1);

    // Parked, its usage shows each metric priced and no projected invoice; a
    // cancellation, which would bill the period, answers problem+json and changes nothing.
    let usage = api
        .get(&format!("/v1/subscriptions/{poisoned}/usage"))
        .await;
    assert_eq!(quantity(&usage, "cpu"), "50000000000");
    assert!(
        usage["periods"][0]["projected_invoice"].is_null(),
        "{usage}"
    );
    let cancel = api
        .send(
            Method::POST,
            &format!("/v1/subscriptions/{poisoned}/cancel"),
            Some(&json!({"at_period_end": false})),
        )
        .await;
    problem(cancel, StatusCode::CONFLICT, "usage_unpriceable").await;
    assert_eq!(
        api.get(&format!("/v1/subscriptions/{poisoned}")).await["status"],
        "active"
    );

    // The operator's retry runs the step again: still unpriceable, so parked again (and
    // announced again); a subscription whose billing has not failed has nothing to retry.
    let retried = api
        .post(
            &format!("/v1/subscriptions/{poisoned}/retry-billing"),
            json!({}),
        )
        .await;
    assert_eq!(retried["billing_failure"]["status"], "failed");
    assert_eq!(failures().await.len(), 2);
    let nothing = api
        .send(
            Method::POST,
            &format!("/v1/subscriptions/{healthy}/retry-billing"),
            None,
        )
        .await;
    problem(nothing, StatusCode::CONFLICT, "invalid_transition").await;
}

billing_tests::on_both_stores!(
    usage_beyond_what_can_be_billed_is_refused_at_ingestion,
    an_unpriceable_period_is_parked_and_the_tenants_others_are_billed,
);
