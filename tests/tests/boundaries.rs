//! Issue 14, "no 5xx at a period boundary": a property moves a test clock onto a period
//! boundary (or one second either side of it) and applies a lifecycle action there, over
//! HTTP, for every billing timing, proration convention, interval and trial; then runs the
//! clock past the next renewal. No request may answer 5xx, and every invoice must add up:
//! its total is the sum of its (rounded) lines, nothing is due below zero, and a total goes
//! negative only through a credit line.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use billing_tests::api::Api;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use reqwest::Method;
use serde_json::{json, Value};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// One server for every case (the memory store: hundreds of requests per case).
fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        runtime().block_on(async {
            let (api, _) = Api::start(billing_tests::memory_app(), "Boundaries Co").await;
            // Hundreds of requests a second for hours: lift the key's rate limits.
            api.patch(
                "/v1/settings/limits",
                serde_json::json!({"per_key_per_hour": 100_000_000, "burst_per_second": 100_000_000}),
            )
            .await;
            api
        })
    })
}

#[derive(Debug, Clone, Copy)]
enum Action {
    CancelNow { prorate: bool },
    CancelAtPeriodEnd,
    Upgrade { invoice_now: bool },
    Downgrade,
    ImmediateDowngrade,
    MoreSeats,
    PauseThenResume,
    Advance,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        any::<bool>().prop_map(|prorate| Action::CancelNow { prorate }),
        Just(Action::CancelAtPeriodEnd),
        any::<bool>().prop_map(|invoice_now| Action::Upgrade { invoice_now }),
        Just(Action::Downgrade),
        Just(Action::ImmediateDowngrade),
        Just(Action::MoreSeats),
        Just(Action::PauseThenResume),
        Just(Action::Advance),
    ]
}

fn convention() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("exact_seconds")),
        Just(json!("calendar_days_inclusive")),
        Just(json!("day_span_exclusive")),
        Just(json!("thirty_day_months")),
        Just(json!({"fixed_day_months": {"days": 28}})),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    timing: &'static str,
    convention: Value,
    interval: &'static str,
    trial_days: u32,
    /// Which boundary: 1 is the end of the first period (or trial), 2 the next one.
    boundary: u8,
    /// Seconds from the boundary: −1, 0 or +1.
    offset: i64,
    action: Action,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just("in_advance"), Just("in_arrears")],
        convention(),
        prop_oneof![Just("month"), Just("week")],
        prop_oneof![Just(0u32), Just(3u32)],
        1u8..=2,
        -1i64..=1,
        action(),
    )
        .prop_map(
            |(timing, convention, interval, trial_days, boundary, offset, action)| Case {
                timing,
                convention,
                interval,
                trial_days,
                boundary,
                offset,
                action,
            },
        )
}

/// A request that must not fail on the server's side; its status and body.
async fn call(api: &Api, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, answer) = api.call(method.clone(), path, body.as_ref()).await;
    assert!(
        !status.is_server_error(),
        "{method} {path} {body:?}: {status} {answer}"
    );
    (status.as_u16(), answer)
}

async fn post(api: &Api, path: &str, body: Value) -> (u16, Value) {
    call(api, Method::POST, path, Some(body)).await
}

/// Posts what must succeed.
async fn created(api: &Api, path: &str, body: Value) -> Value {
    let (status, answer) = post(api, path, body).await;
    assert!((200..300).contains(&status), "{path}: {status} {answer}");
    answer
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

fn ts(v: &Value) -> Timestamp {
    v.as_str().expect("a timestamp").parse().expect("RFC 3339")
}

async fn advance(api: &Api, clock: &str, to: Timestamp) {
    let (status, answer) = post(
        api,
        &format!("/v1/test-clocks/{clock}/advance"),
        json!({"frozen_time": to.to_string()}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

async fn scenario(api: &Api, case: Case) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut plans = Vec::new();
    for (name, fee) in [("base", 3100), ("up", 6200), ("down", 1000)] {
        let plan = created(
            api,
            "/v1/plans",
            json!({"code": format!("{name}{n}"), "name": name, "interval": {"unit": case.interval},
                   "billing_timing": case.timing, "proration": case.convention,
                   "charges": {"recurring_fee": {"prices": {"usd": {"model": "per_unit", "unit_price": format!("{}.{:02}", fee / 100, fee % 100)}}}}}),
        )
        .await;
        plans.push(id(&plan));
    }
    // Jan 31: month ends clamp (Feb 28, Mar 31), the hardest place for day counts.
    let start: Timestamp = "2027-01-31T00:00:00Z".parse().unwrap();
    let clock = id(&created(
        api,
        "/v1/test-clocks",
        json!({"frozen_time": start.to_string()}),
    )
    .await);
    let account = id(&created(
        api,
        "/v1/accounts",
        json!({"email": "edge@acme.test", "currency": "usd", "test_clock": clock}),
    )
    .await);
    created(
        api,
        &format!("/v1/accounts/{account}/payment-methods"),
        json!({"payment_method": "tok_visa"}),
    )
    .await;
    let sub = id(&created(
        api,
        "/v1/subscriptions",
        json!({"account": account, "plan": plans[0], "trial_days": case.trial_days}),
    )
    .await);
    let path = format!("/v1/subscriptions/{sub}");

    // Onto the chosen boundary, or one second either side of it (clocks only move forward,
    // so "before" stops there instead of on it).
    let mut at = start;
    for step in 1..=case.boundary {
        let current = api.get(&path).await;
        let end = ts(&current["current_period"]["end"]);
        at = if step == case.boundary {
            end + SignedDuration::from_secs(case.offset)
        } else {
            end
        };
        advance(api, &clock, at).await;
    }
    let change = |plan: &str, policy: Value, invoice_now: bool| {
        json!({"plan": plan, "change_policy": policy,
               "proration_behavior": if invoice_now { "always_invoice" } else { "create_prorations" }})
    };
    match case.action {
        Action::CancelNow { prorate } => {
            post(
                api,
                &format!("{path}/cancel"),
                json!({"at_period_end": false, "prorate": prorate}),
            )
            .await;
        }
        Action::CancelAtPeriodEnd => {
            post(
                api,
                &format!("{path}/cancel"),
                json!({"at_period_end": true}),
            )
            .await;
        }
        Action::Upgrade { invoice_now } => {
            post(
                api,
                &format!("{path}/change-plan"),
                change(&plans[1], json!({}), invoice_now),
            )
            .await;
        }
        Action::Downgrade => {
            post(
                api,
                &format!("{path}/change-plan"),
                change(&plans[2], json!({}), true),
            )
            .await;
        }
        Action::ImmediateDowngrade => {
            post(
                api,
                &format!("{path}/change-plan"),
                change(&plans[2], json!({"downgrade": "immediate"}), true),
            )
            .await;
        }
        Action::MoreSeats => {
            call(
                api,
                Method::PATCH,
                &path,
                Some(json!({"quantity": 3, "proration_behavior": "always_invoice"})),
            )
            .await;
        }
        Action::PauseThenResume => {
            post(api, &format!("{path}/pause"), json!({})).await;
            let current = api.get(&path).await;
            let next = ts(&current["current_period"]["end"]);
            advance(api, &clock, next).await;
            post(api, &format!("{path}/resume"), json!({})).await;
        }
        Action::Advance => {}
    }
    // Past the next renewal (and its in-arrears invoice).
    let current = api.get(&path).await;
    let end = ts(&current["current_period"]["end"]).max(at);
    advance(api, &clock, end + SignedDuration::from_secs(1)).await;

    for invoice in api.invoices(&sub).await {
        let lines: Vec<i64> = invoice["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| l["amount"].as_i64().expect("a line amount"))
            .collect();
        let total = invoice["total"].as_i64().unwrap();
        assert_eq!(total, lines.iter().sum::<i64>(), "{case:?}: {invoice}");
        assert_eq!(invoice["subtotal"], total, "{case:?}: {invoice}");
        assert!(
            invoice["amount_due"].as_i64().unwrap() >= 0,
            "{case:?}: {invoice}"
        );
        assert!(
            total >= 0 || lines.iter().any(|l| *l < 0),
            "{case:?}: {invoice}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_lifecycle_action_at_a_period_boundary_answers_without_a_5xx_and_bills_consistently(
        case in case()
    ) {
        runtime().block_on(scenario(api(), case));
    }
}
