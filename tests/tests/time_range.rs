//! Times and durations at the edge of the calendar, over HTTP on both stores: what a
//! client sends is held to the supported range (1970-01-01 to 2999-12-31) with a problem
//! naming the field, and nothing a client sends reaches an overflow (a 500 or a panic).

use billing_app::App;
use billing_tests::api::{problem, Api};
use jiff::Timestamp;
use proptest::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const FAR: &str = "9999-12-30T00:00:00Z";
const LAST_SUPPORTED: &str = "2999-12-31T23:59:59Z";

async fn refused(api: &Api, path: &str, body: Value, code: &str, param: &str) {
    let answer = api.send(Method::POST, path, Some(&body)).await;
    let problem = problem(answer, StatusCode::BAD_REQUEST, code).await;
    assert_eq!(problem["param"], param, "{problem}");
}

async fn clock_with_account(api: &Api, at: &str) -> (String, String) {
    let clock = api
        .created("/v1/test-clocks", json!({"frozen_time": at}))
        .await;
    let clock = clock["id"].as_str().unwrap().to_owned();
    let account = api
        .created(
            "/v1/accounts",
            json!({"email": "edge@acme.test", "currency": "usd", "test_clock": clock}),
        )
        .await;
    (clock, account["id"].as_str().unwrap().to_owned())
}

async fn monthly_plan(api: &Api) -> String {
    let plan = api
        .created(
            "/v1/plans",
            json!({"code": "monthly", "name": "Monthly", "interval": {"unit": "month"},
                   "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 1000}}}}}),
        )
        .await;
    plan["id"].as_str().unwrap().to_owned()
}

/// The reported inputs (issue 13, item 5) each answer 400 naming their field, and the last
/// supported second still bills without overflowing anything after it (periods, trials,
/// the event log's retention).
async fn times_and_days_past_the_supported_range_are_refused(app: App) {
    let (api, _) = Api::start(app, "Acme").await;
    refused(
        &api,
        "/v1/test-clocks",
        json!({"frozen_time": FAR}),
        "timestamp_out_of_range",
        "frozen_time",
    )
    .await;
    refused(
        &api,
        "/v1/test-clocks",
        json!({"frozen_time": "1969-12-31T23:59:59Z"}),
        "timestamp_out_of_range",
        "frozen_time",
    )
    .await;

    let (clock, account) = clock_with_account(&api, "2027-01-01T00:00:00Z").await;
    let advance = format!("/v1/test-clocks/{clock}/advance");
    refused(
        &api,
        &advance,
        json!({"frozen_time": FAR}),
        "timestamp_out_of_range",
        "frozen_time",
    )
    .await;
    let plan = monthly_plan(&api).await;
    let subscribe = |extra: Value| {
        let mut body = json!({"account": account, "plan": plan});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (extra, code, param) in [
        (
            json!({"start_date": "9999-12-01T00:00:00Z"}),
            "timestamp_out_of_range",
            "start_date",
        ),
        (
            json!({"billing_anchor": FAR}),
            "timestamp_out_of_range",
            "billing_anchor",
        ),
        (
            json!({"trial_days": 4_294_967_295_u32}),
            "invalid_trial",
            "trial_days",
        ),
        (
            json!({"collection_method": "send_invoice", "days_until_due": 4_294_967_295_u32}),
            "duration_out_of_range",
            "days_until_due",
        ),
        (
            json!({"max_pause_days": 4_294_967_295_u32}),
            "duration_out_of_range",
            "max_pause_days",
        ),
    ] {
        refused(&api, "/v1/subscriptions", subscribe(extra), code, param).await;
    }
    assert!(
        api.list("/v1/subscriptions").await.is_empty(),
        "nothing was written"
    );

    // At the last supported second: a subscription with a long trial, a manual invoice, and
    // their events all fit.
    let (_, account) = clock_with_account(&api, LAST_SUPPORTED).await;
    let sub = api
        .created(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan, "trial_days": 730}),
        )
        .await;
    assert_eq!(sub["status"], "trialing");
    let invoice = api
        .created(
            "/v1/invoices",
            json!({"account": account, "lines": [{"description": "Setup", "amount": 5000}]}),
        )
        .await;
    let finalize = format!("/v1/invoices/{}/finalize", invoice["id"].as_str().unwrap());
    refused(
        &api,
        &finalize,
        json!({"days_until_due": 4_294_967_295_u32}),
        "duration_out_of_range",
        "days_until_due",
    )
    .await;
    let finalized = api.post(&finalize, json!({"days_until_due": 3650})).await;
    assert_eq!(finalized["status"], "open");
}

billing_tests::on_both_stores!(times_and_days_past_the_supported_range_are_refused);

/// Any second a timestamp can hold (and RFC 3339 can write), any `u32` of days: a client
/// gets a 2xx or a 4xx, never a 5xx, for test clocks, subscriptions on them and invoices.
#[test]
fn no_time_or_duration_a_client_sends_gets_a_5xx() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (api, plan) = runtime.block_on(async {
        let (api, _) = Api::start(billing_tests::memory_app(), "Acme").await;
        // Proptest cases send hundreds of requests a second: lift the key's rate limits.
        api.patch(
            "/v1/settings/limits",
            serde_json::json!({"per_key_per_hour": 100_000_000, "burst_per_second": 100_000_000}),
        )
        .await;
        let plan = monthly_plan(&api).await;
        (api, plan)
    });
    let second = || {
        prop_oneof![
            Timestamp::MIN.as_second()..=Timestamp::MAX.as_second(),
            // Around the ends of the supported range, where the arithmetic is tightest.
            -100_000_i64..100_000,
            32_503_680_000_i64 - 100_000_000..32_503_680_000 + 100_000,
            Timestamp::MAX.as_second() - 100_000_000..=Timestamp::MAX.as_second(),
        ]
    };
    let days = || prop_oneof![Just(u32::MAX), 0..=u32::MAX, 0..4000_u32];
    let config = ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    };
    proptest!(config, |(clock_at in second(), start in second(), advance_to in second(),
                        trial in days(), due in days(), pause in days())| {
        let at = |s: i64| Timestamp::from_second(s).unwrap().to_string();
        runtime.block_on(async {
            let no_5xx = |what: &str, status: StatusCode, body: &Value| {
                assert!(status.as_u16() < 500, "{what}: {status} {body}");
            };
            let (status, clock) = api
                .call(Method::POST, "/v1/test-clocks", Some(&json!({"frozen_time": at(clock_at)})))
                .await;
            no_5xx("clock", status, &clock);
            if status != StatusCode::CREATED {
                return;
            }
            let (status, account) = api
                .call(
                    Method::POST,
                    "/v1/accounts",
                    Some(&json!({"email": "prop@acme.test", "currency": "usd", "test_clock": clock["id"]})),
                )
                .await;
            no_5xx("account", status, &account);
            let body = json!({"account": account["id"], "plan": plan, "start_date": at(start),
                              "trial_days": trial, "collection_method": "send_invoice",
                              "days_until_due": due, "max_pause_days": pause});
            let (status, sub) = api.call(Method::POST, "/v1/subscriptions", Some(&body)).await;
            no_5xx("subscription", status, &sub);
            let (status, invoice) = api
                .call(
                    Method::POST,
                    "/v1/invoices",
                    Some(&json!({"account": account["id"], "lines": [{"description": "x", "amount": 1}]})),
                )
                .await;
            no_5xx("invoice", status, &invoice);
            let (status, finalized) = api
                .call(
                    Method::POST,
                    &format!("/v1/invoices/{}/finalize", invoice["id"].as_str().unwrap_or("in_x")),
                    Some(&json!({"days_until_due": due})),
                )
                .await;
            no_5xx("finalize", status, &finalized);
            // Advancing a clock with subscriptions bills every period on the way (seconds
            // per simulated year); an empty clock moves at once.
            let (_, empty) = api
                .call(Method::POST, "/v1/test-clocks", Some(&json!({"frozen_time": at(clock_at)})))
                .await;
            let (status, advanced) = api
                .call(
                    Method::POST,
                    &format!("/v1/test-clocks/{}/advance", empty["id"].as_str().unwrap()),
                    Some(&json!({"frozen_time": at(advance_to)})),
                )
                .await;
            no_5xx("advance", status, &advanced);
        });
    });
}
