//! Subscriptions, invoices and test clocks over HTTP on the local stack, and billing exactly
//! once under duplicate and concurrent runs.

use billing_tests::api::Api;
use billing_tests::Races;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn start() -> Api {
    Api::start(billing_tests::dynamo_app().await, "Billing Co")
        .await
        .0
}

async fn new_plan(api: &Api, code: &str, monthly_fee: i64, trial_days: u32) -> String {
    let plan = api
        .post(
            "/v1/plans",
            json!({"code": code, "name": code, "interval": {"unit": "month"}, "trial_days": trial_days,
                   "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": monthly_fee}}}}}),
        )
        .await;
    plan["id"].as_str().unwrap().to_owned()
}

fn numbers(invoices: &[Value]) -> Vec<String> {
    invoices
        .iter()
        .map(|i| i["number"].as_str().unwrap().to_owned())
        .collect()
}

fn period_starts(invoices: &[Value]) -> Vec<String> {
    invoices
        .iter()
        .map(|i| i["period"]["start"].as_str().unwrap()[..10].to_owned())
        .collect()
}

#[tokio::test]
async fn a_year_on_a_test_clock_bills_every_period_once_with_gapless_numbers() {
    let api = start().await;
    let plan = new_plan(&api, "monthly", 4900, 14).await;
    let (clock, account) = api.clock_account("2027-01-31T00:00:00Z").await;

    let trial = api
        .post(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan}),
        )
        .await;
    assert_eq!(trial["status"], "trialing");
    assert_eq!(trial["trial_end"], "2027-02-14T00:00:00Z");
    let anchored = api
        .post(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan, "trial_days": 0}),
        )
        .await;
    assert_eq!(anchored["status"], "active");
    let (trial_id, anchored_id) = (
        trial["id"].as_str().unwrap(),
        anchored["id"].as_str().unwrap(),
    );

    let advanced = api.advance_clock(&clock, "2028-01-31T00:00:00Z").await.1;
    assert_eq!(advanced["status"], "ready");
    assert_eq!(advanced["frozen_time"], "2028-01-31T00:00:00Z");

    // The trial: first fee at trial end, then monthly on the 14th — 12 invoices.
    let trial_invoices = api.invoices(trial_id).await;
    assert_eq!(trial_invoices.len(), 12);
    assert_eq!(
        period_starts(&trial_invoices)[..3],
        ["2027-02-14", "2027-03-14", "2027-04-14"]
    );
    // Each collected from the account's card when it fell due.
    assert!(trial_invoices
        .iter()
        .all(|i| i["total"] == 4900 && i["status"] == "paid" && i["amount_paid"] == 4900));

    // Anchored on Jan 31: month ends are clamped and the anchor kept — 13 invoices including
    // the first and the one on the final day.
    let anchored_invoices = api.invoices(anchored_id).await;
    assert_eq!(
        period_starts(&anchored_invoices),
        [
            "2027-01-31",
            "2027-02-28",
            "2027-03-31",
            "2027-04-30",
            "2027-05-31",
            "2027-06-30",
            "2027-07-31",
            "2027-08-31",
            "2027-09-30",
            "2027-10-31",
            "2027-11-30",
            "2027-12-31",
            "2028-01-31"
        ]
    );

    // Numbers are gapless across the tenant, in order of billing.
    let mut all: Vec<String> = numbers(&trial_invoices)
        .into_iter()
        .chain(numbers(&anchored_invoices))
        .collect();
    all.sort();
    let expected: Vec<String> = (1..=25).map(|n| format!("INV-{n:06}")).collect();
    assert_eq!(all, expected);

    // The trial warning and the trial end are in the subscription's history.
    let history = api
        .get(&format!("/v1/subscriptions/{trial_id}/history?limit=100"))
        .await;
    assert!(history["data"].as_array().unwrap().len() >= 14);
    let events = api
        .get(&format!("/v1/events?resource={trial_id}&limit=100"))
        .await;
    let types: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for expected in [
        "subscription.created",
        "subscription.trial_will_end",
        "subscription.trial_ended",
        "subscription.renewed",
    ] {
        assert!(types.contains(&expected), "{expected} in {types:?}");
    }

    // Advancing again bills nothing twice.
    let again = api.advance_clock(&clock, "2028-01-31T00:00:01Z").await.1;
    assert_eq!(again["status"], "ready");
    assert_eq!(api.invoices(trial_id).await.len(), 12);
    assert_eq!(api.invoices(anchored_id).await.len(), 13);
    let count = api
        .get(&format!("/v1/plans/{plan}/subscription-count"))
        .await;
    assert_eq!(count["total"], 2);
}

#[tokio::test]
async fn upgrades_prorate_now_and_downgrades_wait_for_the_period_end() {
    let api = start().await;
    let basic = new_plan(&api, "basic", 3000, 0).await;
    let pro = new_plan(&api, "pro", 6000, 0).await;
    // A 30-day period: April 2027.
    let (clock, account) = api.clock_account("2027-04-01T00:00:00Z").await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"account": account, "plan": basic}),
        )
        .await;
    let id = sub["id"].as_str().unwrap().to_owned();

    // Day 10 (20 days left of 30): credit 20/30 × $30 = $20, charge 20/30 × $60 = $40.
    api.advance_clock(&clock, "2027-04-11T00:00:00Z").await;
    let upgraded = api
        .post(
            &format!("/v1/subscriptions/{id}/change-plan"),
            json!({"plan": pro, "proration_behavior": "always_invoice"}),
        )
        .await;
    assert_eq!(upgraded["terms"]["plan_id"], pro.as_str());
    let invoices = api.invoices(&id).await;
    assert_eq!(invoices.len(), 2);
    let proration = &invoices[1];
    let amounts: Vec<i64> = proration["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [-2000, 4000]);
    assert_eq!(proration["total"], 2000);
    assert_eq!(proration["billing_reason"], "subscription_update");

    // Day 20: a downgrade is scheduled for May 1, nothing billed now.
    api.advance_clock(&clock, "2027-04-21T00:00:00Z").await;
    let scheduled = api
        .post(
            &format!("/v1/subscriptions/{id}/change-plan"),
            json!({"plan": basic}),
        )
        .await;
    assert_eq!(scheduled["terms"]["plan_id"], pro.as_str());
    assert_eq!(
        scheduled["scheduled_change"]["effective_at"],
        "2027-05-01T00:00:00Z"
    );
    assert_eq!(api.invoices(&id).await.len(), 2);

    api.advance_clock(&clock, "2027-05-01T00:00:00Z").await;
    let after = api.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(after["terms"]["plan_id"], basic.as_str());
    let invoices = api.invoices(&id).await;
    assert_eq!(invoices.len(), 3);
    assert_eq!(invoices[2]["total"], 3000, "May at the basic price");
}

#[tokio::test]
async fn a_pause_bills_nothing_and_resuming_credits_the_unused_time() {
    let api = start().await;
    let plan = new_plan(&api, "monthly", 3000, 0).await;
    let (clock, account) = api.clock_account("2027-04-01T00:00:00Z").await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan}),
        )
        .await;
    let id = sub["id"].as_str().unwrap().to_owned();

    api.advance_clock(&clock, "2027-04-16T00:00:00Z").await;
    let paused = api
        .post(
            &format!("/v1/subscriptions/{id}/pause"),
            json!({"resumes_at": "2027-05-16T00:00:00Z"}),
        )
        .await;
    assert_eq!(paused["status"], "paused");
    // Through May 1 (a renewal date) and up to the resume: no invoice.
    api.advance_clock(&clock, "2027-05-15T00:00:00Z").await;
    assert_eq!(api.invoices(&id).await.len(), 1);

    api.advance_clock(&clock, "2027-05-16T00:00:00Z").await;
    let resumed = api.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(resumed["status"], "active");
    assert_eq!(resumed["current_period"]["start"], "2027-05-16T00:00:00Z");
    let invoices = api.invoices(&id).await;
    assert_eq!(invoices.len(), 2);
    // Unused half of April (15 of 30 days) credited, then the new period in full.
    let amounts: Vec<i64> = invoices[1]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [3000, -1500]);

    // Illegal transitions answer 409 naming the state.
    let response = api
        .send(
            Method::POST,
            &format!("/v1/subscriptions/{id}/resume"),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_transition");
    assert!(problem["detail"].as_str().unwrap().contains("active"));

    // Paused with no resume date, it is cancelled after 90 days, billing nothing meanwhile.
    api.post(&format!("/v1/subscriptions/{id}/pause"), json!({}))
        .await;
    api.advance_clock(&clock, "2027-08-13T00:00:00Z").await;
    assert_eq!(
        api.get(&format!("/v1/subscriptions/{id}")).await["status"],
        "paused"
    );
    api.advance_clock(&clock, "2027-08-15T00:00:00Z").await;
    let ended = api.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(ended["status"], "cancelled");
    assert_eq!(
        ended["ended_at"], "2027-08-14T00:00:00Z",
        "90 days after the pause on May 16"
    );
    assert_eq!(api.invoices(&id).await.len(), 2);
}

/// A monthly subscription on `app` starting 2027-01-01, through the use cases.
async fn monthly_subscription(
    app: &billing_app::App,
) -> (
    billing_app::Caller,
    billing_domain::kernel::ids::SubscriptionId,
) {
    let caller = billing_tests::admin(app, "Runs").await;
    let clock = app
        .billing
        .create_test_clock(&caller, None, "2027-01-01T00:00:00Z".parse().unwrap())
        .await
        .unwrap();
    let account = json!({"email": "runs@acme.test", "currency": "usd", "test_clock": clock.id});
    let sub = billing_tests::subscribe(app, &caller, account, "month", 1000).await;
    (caller, sub.id)
}

async fn invoice_numbers_and_periods(
    app: &billing_app::App,
    caller: &billing_app::Caller,
    id: billing_domain::kernel::ids::SubscriptionId,
) -> (Vec<String>, Vec<jiff::Timestamp>) {
    let filter = billing_app::ports::InvoiceFilter {
        subscription: Some(id),
        ..Default::default()
    };
    let page = billing_app::ports::PageRequest::first(100);
    let invoices = app
        .billing
        .list_invoices(caller, &filter, &page)
        .await
        .unwrap()
        .items;
    let mut numbers: Vec<String> = invoices.iter().map(|i| i.number.clone().unwrap()).collect();
    numbers.sort();
    let mut periods: Vec<jiff::Timestamp> =
        invoices.iter().map(|i| i.period.unwrap().start).collect();
    periods.sort();
    periods.dedup();
    (numbers, periods)
}

fn numbered(n: u64) -> Vec<String> {
    (1..=n).map(|n| format!("INV-{n:06}")).collect()
}

/// `deliveries` spawned runs of the subscription's steps due by `until`, all at once: the
/// steps they made together.
async fn runs_at_once(
    app: &billing_app::App,
    tenant: billing_domain::kernel::ids::TenantId,
    id: billing_domain::kernel::ids::SubscriptionId,
    until: jiff::Timestamp,
    deliveries: usize,
) -> usize {
    let runs: Vec<_> = (0..deliveries)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.billing.run_due_subscription(tenant, id, until).await })
        })
        .collect();
    let mut steps = 0;
    for run in runs {
        steps += run.await.unwrap().unwrap();
    }
    steps
}

/// Eight workers handle the same message at once: five renewals (Feb..Jun), each made by
/// exactly one of them, one invoice per period, numbers without a gap.
async fn concurrent_runs_bill_each_period_exactly_once(app: billing_app::App, races: Races) {
    let (caller, id) = monthly_subscription(&app).await;
    let until: jiff::Timestamp = "2027-06-01T00:00:00Z".parse().unwrap();
    races.begin();
    let steps = runs_at_once(&app, caller.tenant_id, id, until, 8).await;
    assert_eq!(
        steps, 5,
        "Feb..Jun: five renewals, each made by exactly one worker"
    );
    let (numbers, periods) = invoice_numbers_and_periods(&app, &caller, id).await;
    assert_eq!(numbers, numbered(6));
    assert_eq!(periods.len(), 6, "one invoice per period");
}

/// The same scenario on the memory store, interleaving at every store operation (seeded
/// random delays on tokio's paused clock, so each seed is one reproducible interleaving).
#[tokio::test(start_paused = true)]
async fn concurrent_runs_bill_each_period_exactly_once_in_memory() {
    let (mut steps_lost, mut numbers_lost) = (0, 0);
    for seed in 0..4 {
        let (app, racing) = billing_tests::racing_app(seed, true);
        concurrent_runs_bill_each_period_exactly_once(app, Races::default()).await;
        steps_lost += racing.refused_on("SubscriptionStore");
        numbers_lost += racing.refused_of("InvoiceStore", "number_invoices")
            + racing.refused_of("InvoiceStore", "finish_invoice");
    }
    // The runs raced: workers lost the write of a renewal, and of a number, to another.
    assert!(steps_lost > 0, "no renewal was lost to another worker");
    assert!(numbers_lost > 0, "no numbering was lost to another worker");
}

#[tokio::test]
async fn duplicate_deliveries_and_a_crashed_worker_bill_each_period_exactly_once() {
    let app = billing_tests::dynamo_app().await;
    let (caller, id) = monthly_subscription(&app).await;
    // A worker dies after two of the five renewals due by June (each renewal is one
    // transaction, so it dies between two of them)…
    let march: jiff::Timestamp = "2027-03-01T00:00:00Z".parse().unwrap();
    assert_eq!(
        app.billing
            .run_due_subscription(caller.tenant_id, id, march)
            .await
            .unwrap(),
        2
    );
    // …the message comes back and the rest is done; then it is delivered twice more.
    let until: jiff::Timestamp = "2027-06-01T00:00:00Z".parse().unwrap();
    assert_eq!(
        app.billing
            .run_due_subscription(caller.tenant_id, id, until)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        app.billing
            .run_due_subscription(caller.tenant_id, id, until)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        app.billing
            .run_due_subscription(caller.tenant_id, id, until)
            .await
            .unwrap(),
        0
    );
    let (numbers, periods) = invoice_numbers_and_periods(&app, &caller, id).await;
    assert_eq!(numbers, numbered(6));
    assert_eq!(periods.len(), 6);

    // Four more deliveries at once, reaching later: the sequence runs on.
    let later: jiff::Timestamp = "2027-09-01T00:00:00Z".parse().unwrap();
    let steps = runs_at_once(&app, caller.tenant_id, id, later, 4).await;
    assert_eq!(steps, 3, "Jul..Sep, each made by one delivery");
    let (numbers, periods) = invoice_numbers_and_periods(&app, &caller, id).await;
    assert_eq!(periods.len(), 9);
    assert_eq!(numbers, numbered(9));
}

#[tokio::test]
async fn the_invoice_prefix_is_the_tenants_and_the_sequence_runs_on_across_a_change() {
    let api = start().await;
    assert_eq!(
        api.get("/v1/settings/invoices").await["invoice_prefix"],
        "INV"
    );
    let bad = api
        .send(
            Method::PATCH,
            "/v1/settings/invoices",
            Some(&json!({"invoice_prefix": "acme inc"})),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let set = api
        .ok(
            Method::PATCH,
            "/v1/settings/invoices",
            Some(&json!({"invoice_prefix": "ACME"})),
        )
        .await;
    assert_eq!(set["invoice_prefix"], "ACME");

    let plan = new_plan(&api, "monthly", 1000, 0).await;
    let (_, account) = api.clock_account("2027-03-01T00:00:00Z").await;
    let first = api
        .post(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan}),
        )
        .await;
    api.ok(
        Method::PATCH,
        "/v1/settings/invoices",
        Some(&json!({"invoice_prefix": "BETA"})),
    )
    .await;
    let second = api
        .post(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan}),
        )
        .await;
    for (sub, expected) in [(first, "ACME-000001"), (second, "BETA-000002")] {
        let invoices = api.invoices(sub["id"].as_str().unwrap()).await;
        assert_eq!(invoices[0]["number"], expected);
    }
}

#[tokio::test]
async fn previews_price_the_next_invoice_a_change_and_a_hypothetical_subscription_writing_nothing()
{
    let api = start().await;
    let plan = new_plan(&api, "preview", 2000, 0).await;
    let (clock, account) = api.clock_account("2027-01-31T00:00:00Z").await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan}),
        )
        .await;
    let id = sub["id"].as_str().unwrap();

    // The next invoice (the renewal on Feb 28) and after moving to three seats.
    let next = api
        .post("/v1/invoices/preview", json!({"subscription": id}))
        .await;
    assert_eq!(next["subscription"], id);
    assert_eq!(next["invoice"]["total"], 2000);
    let changed = api
        .post(
            "/v1/invoices/preview",
            json!({"subscription": id, "quantity": 3}),
        )
        .await;
    assert_eq!(
        changed["invoice"]["total"], 2000,
        "a flat fee whatever the quantity"
    );
    assert_eq!(api.invoices(id).await.len(), 1, "previews write nothing");
    api.advance_clock(&clock, "2027-02-28T00:00:00Z").await;
    let invoices = api.invoices(id).await;
    assert_eq!(invoices.len(), 2);
    assert_eq!(invoices[1]["total"], next["invoice"]["total"]);

    // A hypothetical subscription on an inline plan: 3 seats at 12.50 and 15,000 API calls
    // with the first 10,000 free and 0.002 after — 37.50 + 10.00.
    api.post(
        "/v1/metrics",
        json!({"code": "api_calls", "name": "API calls", "aggregation": "count"}),
    )
    .await;
    let inline_plan = json!({"code": "what_if", "name": "What if", "interval": {"unit": "month"},
        "charges": {"recurring_fee": {"prices": {"usd": {"model": "per_unit", "unit_price": "12.5"}}},
                    "usage_charges": [{"metric": "api_calls", "prices": {"usd": {"model": "graduated", "tiers": [
                        {"up_to": "10000", "unit_price": "0"}, {"up_to": null, "unit_price": "0.002"}]}}}]}});
    let hypothetical = api
        .post(
            "/v1/invoices/preview",
            json!({"inline_plan": inline_plan, "currency": "usd", "quantity": 3,
                   "start": "2027-03-01T00:00:00Z",
                   "usage": {"api_calls": {"kind": "quantity", "quantity": "15000"}}}),
        )
        .await;
    let invoice = &hypothetical["invoice"];
    assert_eq!(hypothetical["subscription"], Value::Null);
    assert_eq!(invoice["total"], 3750 + 1000);
    let lines = invoice["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines
            .iter()
            .map(|l| l["amount"].as_i64().unwrap())
            .sum::<i64>(),
        invoice["total"].as_i64().unwrap()
    );

    // A saved plan with a trial and an anchor: the first paid period is the trial's end
    // to the anchor, prorated.
    let trial_plan = new_plan(&api, "trial", 3000, 14).await;
    let anchored = api
        .post(
            "/v1/invoices/preview",
            json!({"plan": trial_plan, "currency": "usd", "start": "2027-03-01T00:00:00Z",
                   "billing_anchor": "2027-04-01T00:00:00Z"}),
        )
        .await;
    let total = anchored["invoice"]["total"].as_i64().unwrap();
    assert!(0 < total && total < 3000, "prorated: {total}");

    // Mistakes are named.
    for (body, code, param) in [
        (
            json!({"plan": plan, "currency": "usd", "usage": {"storage": {"kind": "quantity", "quantity": "1"}}}),
            "unknown_usage_charge",
            "usage.storage",
        ),
        (json!({"plan": plan}), "missing_field", "currency"),
        (
            json!({"plan": plan, "currency": "jpy"}),
            "currency_not_offered",
            "plan",
        ),
        (
            json!({"subscription": id, "usage": {}}),
            "invalid_source",
            "inline_plan",
        ),
    ] {
        let response = api
            .send(Method::POST, "/v1/invoices/preview", Some(&body))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], code, "{problem}");
        assert_eq!(problem["param"], param, "{problem}");
    }
    let unsaved = api.get("/v1/plans?limit=100").await;
    assert!(unsaved["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["code"] != "what_if"));
}

/// Twelve monthly subscriptions of one tenant on a test clock from 2027-01-01, through
/// the use cases.
async fn twelve_subscriptions(
    app: &billing_app::App,
) -> (
    billing_app::Caller,
    Vec<billing_domain::kernel::ids::SubscriptionId>,
) {
    let caller = billing_tests::admin(app, "Together").await;
    let clock = app
        .billing
        .create_test_clock(&caller, None, "2027-01-01T00:00:00Z".parse().unwrap())
        .await
        .unwrap();
    let account = app
        .customers
        .create_account(
            &caller,
            serde_json::from_value(
                json!({"email": "together@acme.test", "currency": "usd", "test_clock": clock.id}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let plan = app.catalog
        .create_plan(
            &caller,
            serde_json::from_value(json!({"code": "monthly", "name": "Monthly", "interval": {"unit": "month"},
                "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 1000}}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..12 {
        let start = billing_app::billing::StartSubscription {
            collection_method: billing_domain::billing::subscription::CollectionMethod::SendInvoice,
            days_until_due: Some(30),
            ..billing_app::billing::StartSubscription::new(account.id, plan.plan.id)
        };
        ids.push(
            app.billing
                .create_subscription(&caller, start)
                .await
                .unwrap()
                .id,
        );
    }
    (caller, ids)
}

async fn bills_a_tenants_subscriptions_together_exactly_once(app: billing_app::App) {
    let (caller, ids) = twelve_subscriptions(&app).await;
    let tenant = caller.tenant_id;
    let february: jiff::Timestamp = "2027-02-01T00:00:00Z".parse().unwrap();
    // Another worker renews one of them first…
    assert_eq!(
        app.billing
            .run_due_subscription(tenant, ids[3], february)
            .await
            .unwrap(),
        1
    );
    // …then a batch holds all twelve and a duplicate delivery of the first.
    let mut batch = ids.clone();
    batch.push(ids[0]);
    let steps: Vec<usize> = app
        .billing
        .run_due_subscriptions(tenant, &batch, february)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(steps.iter().sum::<usize>(), 11, "{steps:?}");
    assert_eq!((steps[3], steps[12]), (0, 0));
    // Delivered again: nothing is due.
    let again = app
        .billing
        .run_due_subscriptions(tenant, &ids, february)
        .await;
    assert!(again.into_iter().all(|r| r.unwrap() == 0));
    // Two months at once: the first step of each together, the second one at a time.
    let april: jiff::Timestamp = "2027-04-01T00:00:00Z".parse().unwrap();
    let steps = app.billing.run_due_subscriptions(tenant, &ids, april).await;
    assert!(steps.into_iter().all(|r| r.unwrap() == 2));

    let mut numbers = Vec::new();
    for id in &ids {
        let (mine, periods) = invoice_numbers_and_periods(&app, &caller, *id).await;
        assert_eq!(periods.len(), 4, "Jan..Apr, each once");
        assert_eq!(mine.len(), 4);
        numbers.extend(mine);
    }
    numbers.sort();
    assert_eq!(numbers, numbered(48), "gapless across the tenant");
}

/// A test clock with three monthly subscriptions (quantities 1 to 3) on a paying account.
async fn three_on_a_clock(api: &Api) -> (String, Vec<String>) {
    let plan = new_plan(api, "monthly", 1000, 0).await;
    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let mut subs = Vec::new();
    for quantity in 1..=3 {
        let sub = api
            .post(
                "/v1/subscriptions",
                json!({"account": account, "plan": plan, "quantity": quantity}),
            )
            .await;
        subs.push(sub["id"].as_str().unwrap().to_owned());
    }
    (clock, subs)
}

/// Each subscription's invoices: number (without the tenant's prefix), period, total.
async fn billed(api: &Api, subs: &[String]) -> Vec<Vec<(String, Value, Value)>> {
    let mut all = Vec::new();
    for sub in subs {
        let invoices = api.invoices(sub).await;
        all.push(
            invoices
                .iter()
                .map(|i| {
                    let number = i["number"].as_str().unwrap();
                    let sequence = number.rsplit('-').next().unwrap().to_owned();
                    (sequence, i["period"].clone(), i["total"].clone())
                })
                .collect(),
        );
    }
    all
}

/// Each subscription's (period, total) in order, and every number used, sorted.
#[allow(clippy::type_complexity)]
fn periods_and_numbers(
    billed: Vec<Vec<(String, Value, Value)>>,
) -> (Vec<Vec<(Value, Value)>>, Vec<String>) {
    let mut numbers: Vec<String> = billed.iter().flatten().map(|i| i.0.clone()).collect();
    numbers.sort();
    let periods = billed
        .into_iter()
        .map(|invoices| invoices.into_iter().map(|(_, p, t)| (p, t)).collect())
        .collect();
    (periods, numbers)
}

/// Issue 13, item 7: advancing a clock two years over three subscriptions runs a bounded
/// number of items in the request, which answers `advancing`; the sweep's billing worker
/// finishes it, with exactly the invoices one unbounded run (how advances ran before) makes.
async fn a_long_advance_is_bounded_and_the_sweep_finishes_it_exactly(app: billing_app::App) {
    use billing_app::billing::INLINE_CLOCK_ITEMS;
    let to = "2029-01-01T00:00:00Z";
    let advance = |clock: &str| format!("/v1/test-clocks/{clock}/advance");
    let clock_id =
        |clock: &str| billing_domain::kernel::ids::TestClockId::parse(clock, "id").unwrap();

    let (unbounded, reference) = Api::start(app.clone(), "Unbounded Co").await;
    let (clock, subs) = three_on_a_clock(&unbounded).await;
    unbounded
        .post(&advance(&clock), json!({"frozen_time": to}))
        .await;
    let done = app
        .billing
        .run_test_clock_for(reference.id, clock_id(&clock), usize::MAX)
        .await
        .unwrap();
    assert_eq!(done.frozen_time.to_string(), to);
    let expected = billed(&unbounded, &subs).await;
    assert_eq!(
        expected.iter().map(Vec::len).collect::<Vec<_>>(),
        [25, 25, 25],
        "the first month and 24 renewals each"
    );

    let (api, tenant) = Api::start(app.clone(), "Bounded Co").await;
    let (clock, subs) = three_on_a_clock(&api).await;
    let started = std::time::Instant::now();
    let answered = api.post(&advance(&clock), json!({"frozen_time": to})).await;
    eprintln!(
        "one advance request, {INLINE_CLOCK_ITEMS} items at most: {:?}",
        started.elapsed()
    );
    assert_eq!(answered["status"], "advancing");
    assert_eq!(answered["advancing_to"], to);
    let made: usize = billed(&api, &subs).await.iter().map(Vec::len).sum();
    assert!(
        made > 3 && made - 3 <= INLINE_CLOCK_ITEMS,
        "the request made {} invoices",
        made - 3
    );
    // A second advance waits for this one.
    let busy = api
        .send(
            Method::POST,
            &advance(&clock),
            Some(&json!({"frozen_time": "2030-01-01T00:00:00Z"})),
        )
        .await;
    billing_tests::api::problem(busy, StatusCode::CONFLICT, "test_clock_advancing").await;

    let mut sweeps = 0;
    while api.get(&format!("/v1/test-clocks/{clock}")).await["status"] == "advancing" {
        sweeps += 1;
        assert!(sweeps <= 10, "the sweep never finished the advance");
        let (jobs, failed) = billing_tests::sweep_and_bill(&app).await;
        assert_eq!(failed, 0);
        assert!(jobs.contains(&billing_app::ports::BillingJob::TestClock {
            tenant: tenant.id,
            id: clock_id(&clock)
        }));
    }
    eprintln!("sweeps to finish: {sweeps}");
    let finished = api.get(&format!("/v1/test-clocks/{clock}")).await;
    assert_eq!(
        (
            finished["status"].as_str(),
            finished["frozen_time"].as_str()
        ),
        (Some("ready"), Some(to))
    );
    // The same periods and totals per subscription and the same gapless numbers; which of
    // three renewals due at one instant is numbered first is the finalizer's order, which
    // the tenant's shards make independent of the subscriptions' ids.
    assert_eq!(
        periods_and_numbers(billed(&api, &subs).await),
        periods_and_numbers(expected)
    );
    // Finished: nothing of the clock is handed over again.
    assert_eq!(billing_tests::sweep_and_bill(&app).await, (vec![], 0));
}

#[tokio::test]
async fn two_runs_of_one_test_clock_advance_both_answer_with_the_finished_clock() {
    // On the stand-in both runs read the clock before either saves it.
    let app = billing_tests::dynamo_app().await;
    let (caller, id) = monthly_subscription(&app).await;
    let sub = app.billing.get_subscription(&caller, id).await.unwrap();
    let clock = sub.test_clock.unwrap();
    app.billing
        .begin_test_clock_advance(&caller, clock, "2027-06-01T00:00:00Z".parse().unwrap())
        .await
        .unwrap();
    // The request that asked for the advance and the worker the sweep woke run it at once.
    let (request, worker) = tokio::join!(
        app.billing.run_test_clock(caller.tenant_id, clock),
        app.billing.run_test_clock(caller.tenant_id, clock)
    );
    for run in [request, worker] {
        let clock = run.unwrap();
        assert_eq!(clock.advancing_to, None);
        assert_eq!(clock.frozen_time.to_string(), "2027-06-01T00:00:00Z");
    }
    let (numbers, periods) = invoice_numbers_and_periods(&app, &caller, id).await;
    assert_eq!((numbers, periods.len()), (numbered(6), 6));
}

billing_tests::on_both_stores!(
    bills_a_tenants_subscriptions_together_exactly_once,
    a_long_advance_is_bounded_and_the_sweep_finishes_it_exactly,
);

billing_tests::racing_on_the_stand_in!(concurrent_runs_bill_each_period_exactly_once);

/// Issue 14: `change_policy` reaches the lifecycle. An immediate downgrade on day 10 of a
/// 30-day April credits 20/30 of $60 and charges 20/30 of $30 now (Kill Bill's and Stripe's
/// immediate change, the mirror of the upgrade above).
#[tokio::test]
async fn an_immediate_downgrade_credits_the_unused_time_now() {
    let api = start().await;
    let basic = new_plan(&api, "basic", 3000, 0).await;
    let pro = new_plan(&api, "pro", 6000, 0).await;
    let (clock, account) = api.clock_account("2027-04-01T00:00:00Z").await;
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"account": account, "plan": pro}),
        )
        .await;
    let id = sub["id"].as_str().unwrap().to_owned();
    api.advance_clock(&clock, "2027-04-11T00:00:00Z").await;
    let downgraded = api
        .post(
            &format!("/v1/subscriptions/{id}/change-plan"),
            json!({"plan": basic, "proration_behavior": "always_invoice",
                   "change_policy": {"downgrade": "immediate"}}),
        )
        .await;
    assert_eq!(downgraded["terms"]["plan_id"], basic.as_str());
    assert!(downgraded["scheduled_change"].is_null());
    let invoices = api.invoices(&id).await;
    assert_eq!(invoices.len(), 2);
    let amounts: Vec<i64> = invoices[1]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [-4000, 2000]);
    assert_eq!(invoices[1]["total"], -2000);

    // Without a policy, the same request waits for the period end.
    let (_, other_account) = api.clock_account("2027-04-01T00:00:00Z").await;
    let other = api
        .post(
            "/v1/subscriptions",
            json!({"account": other_account, "plan": pro}),
        )
        .await;
    let other_id = other["id"].as_str().unwrap();
    let scheduled = api
        .post(
            &format!("/v1/subscriptions/{other_id}/change-plan"),
            json!({"plan": basic}),
        )
        .await;
    assert_eq!(scheduled["terms"]["plan_id"], pro.as_str());
    assert_eq!(
        scheduled["scheduled_change"]["effective_at"],
        "2027-05-01T00:00:00Z"
    );

    // A policy with an unknown timing is refused with the field named.
    let refused = api
        .send(
            Method::POST,
            &format!("/v1/subscriptions/{other_id}/change-plan"),
            Some(&json!({"plan": basic, "change_policy": {"downgrade": "someday"}})),
        )
        .await;
    let problem = billing_tests::api::problem_of(refused, StatusCode::BAD_REQUEST).await;
    assert!(
        problem["param"]
            .as_str()
            .is_some_and(|p| p.starts_with("change_policy")),
        "{problem}"
    );
}

/// Issue 14, defect 6: cancelling now exactly at the start of a period (right after a test
/// clock moved onto the renewal) answers 200 instead of 500: without `prorate` nothing more
/// is billed, with it the whole new (unused) period is credited.
#[tokio::test]
async fn cancelling_now_at_a_period_boundary_answers_200_and_credits_only_with_prorate() {
    let api = start().await;
    let plan = new_plan(&api, "boundary", 3000, 0).await;
    for prorate in [true, false] {
        let (clock, account) = api.clock_account("2027-04-01T00:00:00Z").await;
        let sub = api
            .post(
                "/v1/subscriptions",
                json!({"account": account, "plan": plan}),
            )
            .await;
        let id = sub["id"].as_str().unwrap().to_owned();
        api.advance_clock(&clock, "2027-05-01T00:00:00Z").await;
        let before = api.invoices(&id).await;
        assert_eq!(before.len(), 2, "April and May");
        let cancelled = api
            .post(
                &format!("/v1/subscriptions/{id}/cancel"),
                json!({"at_period_end": false, "prorate": prorate}),
            )
            .await;
        assert_eq!(cancelled["status"], "cancelled", "prorate: {prorate}");
        let after = api.invoices(&id).await;
        // Invoice ids derive from the subscription and period, so a list is not in the
        // order the invoices were made: compare by id.
        let billed_after: i64 = after
            .iter()
            .filter(|i| !before.iter().any(|b| b["id"] == i["id"]))
            .map(|i| i["total"].as_i64().unwrap())
            .sum();
        if prorate {
            // In advance, the whole new period is unused: May's $30 comes back.
            assert_eq!(billed_after, -3000, "prorate: {prorate}");
        } else {
            assert_eq!(billed_after, 0, "prorate: {prorate}");
        }
    }
}

/// A renewal rewrites its subscription, transactionally and with its `gsi1` copy, so the
/// DynamoDB store packs it (issue 20); one stored before, in plain attributes, still reads
/// as written and renews, and is packed by that renewal.
#[tokio::test]
async fn a_subscription_is_stored_packed_and_one_stored_plain_before_still_reads_and_renews() {
    use std::sync::Arc;

    use billing_app::ports::{Clock, SubscriptionStore};
    use billing_tests::clock::ManualClock;
    use jiff::{SignedDuration, Timestamp};

    let store = billing_tests::dynamo_store().await;
    let (client, table) = (store.client().clone(), store.table().to_owned());
    let now = Timestamp::now();
    let clock =
        ManualClock::at(now - SignedDuration::from_hours(24) - SignedDuration::from_mins(1));
    let app = billing_tests::app_with_clock(Arc::new(store.clone()), clock.clone());
    let caller = billing_tests::admin(&app, "Packed").await;
    let tenant = caller.tenant_id;
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        json!({"email": "packed@acme.test", "currency": "usd"}),
        "day",
        500,
    )
    .await;
    let key = billing_aws::keys::subscription(tenant, sub.id, sub.account_id);
    let raw = |client: aws_sdk_dynamodb::Client, table: String| {
        let key = key.primary();
        async move {
            client
                .get_item()
                .table_name(table)
                .set_key(Some(key))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };
    let packed = raw(client.clone(), table.clone()).await;
    assert!(packed.contains_key("pz") && packed.contains_key("version"));
    assert!(!packed.contains_key("status") && !packed.contains_key("terms"));

    let mut plain = packed.clone();
    billing_aws::dynamo::unpack(&mut plain).unwrap();
    assert!(plain.contains_key("status") && !plain.contains_key("pz"));
    client
        .put_item()
        .table_name(&table)
        .set_item(Some(plain))
        .send()
        .await
        .unwrap();
    let read = store
        .get_subscription(tenant, sub.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, sub);

    clock.set(now);
    app.billing
        .draft_due_subscriptions(tenant, &[sub.id], clock.now())
        .await;
    app.billing.finalize_pending_invoices(tenant).await.unwrap();
    let renewed = store
        .get_subscription(tenant, sub.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.current_period.start, sub.current_period.end);
    assert!(renewed.version > sub.version);
    let repacked = raw(client, table).await;
    assert!(repacked.contains_key("pz") && !repacked.contains_key("status"));
}
