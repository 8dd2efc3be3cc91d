//! Price changes that land (issue 18), over HTTP on a test clock, on both stores: what a
//! dunning block does to entitlements and renewals, and price versions that move existing
//! subscriptions at their next renewal.

use billing_app::App;
use billing_tests::api::Api;
use reqwest::Method;
use serde_json::{json, Value};

/// A $49.00 a seat a month plan (`team`) with a hard limit of 100 `api_calls` a period.
async fn team_plan(api: &Api) -> String {
    api.post(
        "/v1/metrics",
        json!({"code": "api_calls", "name": "API calls", "aggregation": "count"}),
    )
    .await;
    let plan = api
        .created(
            "/v1/plans",
            json!({"code": "team", "name": "Team", "interval": {"unit": "month"},
            "charges": {
                "recurring_fee": {"prices": {"usd": {"model": "per_unit", "unit_price": "49"}}},
                "entitlements": [{"metric": "api_calls", "limit": "100", "enforcement": "hard"}]
            }}),
        )
        .await;
    plan["id"].as_str().unwrap().to_owned()
}

async fn entitlement(api: &Api, account: &str) -> Value {
    api.get(&format!(
        "/v1/entitlements/check?account={account}&metric=api_calls"
    ))
    .await
}

async fn events_of(api: &Api, kind: &str, resource: &str) -> Vec<Value> {
    api.list(&format!("/v1/events?type={kind}&resource={resource}"))
        .await
}

/// Issue 18, "a blocked account keeps its service": with the tenant's policy denying
/// entitlements and suspending renewals, a blocked account's checks answer
/// `allowed: false` / `account_blocked`; its renewal on 1 Feb is not billed (the
/// subscription is paused at the period's end), it stays paused at each daily check while
/// blocked, and once the overdue invoice is paid it resumes at the next check with a new
/// period from then: the blocked days are never billed, the first period once.
async fn a_blocked_account_is_denied_and_its_renewals_wait_until_it_pays(app: App) {
    let (api, _) = Api::start(app, "Blocked Co").await;
    let policy = api
        .patch(
            "/v1/settings/dunning",
            json!({"steps": [{"after_days": 1, "action": "block"}],
                   "on_block": {"deny_entitlements": true, "suspend_subscriptions": true}}),
        )
        .await;
    assert_eq!(
        policy["on_block"],
        json!({"deny_entitlements": true, "suspend_subscriptions": true})
    );
    // A PATCH without `on_block` keeps it.
    let kept = api
        .patch(
            "/v1/settings/dunning",
            json!({"steps": [{"after_days": 1, "action": "block"}]}),
        )
        .await;
    assert_eq!(kept["on_block"], policy["on_block"]);
    let plan = team_plan(&api).await;
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
            json!({"email": "late@payer.test", "currency": "usd", "test_clock": clock}),
        )
        .await;
    let account = account["id"].as_str().unwrap().to_owned();
    api.post(
        &format!("/v1/accounts/{account}/payment-methods"),
        json!({"payment_method": "4000000000009995"}),
    )
    .await;
    let sub = api
        .created(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan}),
        )
        .await;
    let sub_id = sub["id"].as_str().unwrap().to_owned();
    let open = entitlement(&api, &account).await;
    assert_eq!(open["allowed"], true, "{open}");
    assert!(open.get("reason").is_none(), "{open}");

    // The first charge is declined on 1 Jan; the block falls on 2 Jan.
    api.advance_clock(&clock, "2027-01-02T01:00:00Z").await;
    let status = api.get(&format!("/v1/accounts/{account}")).await["status"].clone();
    assert_eq!(status, "blocked");
    let denied = entitlement(&api, &account).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["reason"], "account_blocked");
    assert_eq!(
        denied["remaining"], "100",
        "the limit is untouched: {denied}"
    );

    // 1 Feb: the renewal is held; the daily checks of 2 and 3 Feb find it still blocked.
    api.advance_clock(&clock, "2027-02-03T12:00:00Z").await;
    let held = api.get(&format!("/v1/subscriptions/{sub_id}")).await;
    assert_eq!(held["status"], "paused", "{held}");
    assert_eq!(held["suspended"], true);
    assert_eq!(held["paused_at"], "2027-02-01T00:00:00Z");
    assert_eq!(held["resumes_at"], "2027-02-04T00:00:00Z");
    assert_eq!(api.invoices(&sub_id).await.len(), 1, "no renewal billed");
    assert_eq!(
        events_of(&api, "subscription.paused", &sub_id).await.len(),
        1
    );

    // Paid out of band: unblocked at once (entitlements back), resumed at the next check.
    let first = &api.invoices(&sub_id).await[0];
    let (status, paid) = api
        .call(
            Method::POST,
            &format!("/v1/invoices/{}/mark-paid", first["id"].as_str().unwrap()),
            Some(&json!({"reference": "wire 7"})),
        )
        .await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(entitlement(&api, &account).await["allowed"], true);
    api.advance_clock(&clock, "2027-02-05T00:00:00Z").await;
    let resumed = api.get(&format!("/v1/subscriptions/{sub_id}")).await;
    assert_eq!(resumed["status"], "active", "{resumed}");
    assert!(resumed.get("suspended").is_none(), "{resumed}");
    assert_eq!(
        resumed["current_period"],
        json!({"start": "2027-02-04T00:00:00Z", "end": "2027-03-04T00:00:00Z"})
    );
    let invoices = api.invoices(&sub_id).await;
    let billed: Vec<(Value, Value, Value)> = invoices
        .iter()
        .map(|i| {
            (
                i["period"]["start"].clone(),
                i["total"].clone(),
                i["billing_reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        billed,
        [
            (
                json!("2027-01-01T00:00:00Z"),
                json!(4900),
                json!("subscription_create")
            ),
            (
                json!("2027-02-04T00:00:00Z"),
                json!(4900),
                json!("subscription_resume")
            ),
        ],
        "the blocked days 1-4 Feb are not billed: {invoices:?}"
    );
    // Advancing again changes nothing: each step was taken once.
    api.advance_clock(&clock, "2027-02-20T00:00:00Z").await;
    assert_eq!(api.invoices(&sub_id).await.len(), 2);
}

/// The default policy denies a blocked account's entitlements but keeps billing its
/// renewals; a tenant may turn the denial off.
async fn by_default_a_block_denies_entitlements_and_renewals_go_on(app: App) {
    let (api, _) = Api::start(app, "Default Block Co").await;
    let default = api.get("/v1/settings/dunning").await;
    assert_eq!(
        default["on_block"],
        json!({"deny_entitlements": true, "suspend_subscriptions": false})
    );
    api.patch(
        "/v1/settings/dunning",
        json!({"steps": [{"after_days": 1, "action": "block"}]}),
    )
    .await;
    let plan = team_plan(&api).await;
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
            json!({"email": "late@payer.test", "currency": "usd", "test_clock": clock}),
        )
        .await;
    let account = account["id"].as_str().unwrap().to_owned();
    api.post(
        &format!("/v1/accounts/{account}/payment-methods"),
        json!({"payment_method": "4000000000009995"}),
    )
    .await;
    let sub = api
        .created(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan}),
        )
        .await;
    let sub_id = sub["id"].as_str().unwrap().to_owned();
    api.advance_clock(&clock, "2027-02-01T01:00:00Z").await;
    assert_eq!(
        entitlement(&api, &account).await["reason"],
        "account_blocked"
    );
    let renewed = api.get(&format!("/v1/subscriptions/{sub_id}")).await;
    assert_ne!(renewed["status"], "paused", "{renewed}");
    assert_eq!(
        api.invoices(&sub_id).await.len(),
        2,
        "the renewal is billed"
    );
    api.patch(
        "/v1/settings/dunning",
        json!({"steps": [{"after_days": 1, "action": "block"}],
               "on_block": {"deny_entitlements": false}}),
    )
    .await;
    let allowed = entitlement(&api, &account).await;
    assert_eq!(allowed["allowed"], true, "{allowed}");
}

/// Issue 18, "`migrate_existing` is stored and never applied". A $49 plan with two
/// subscribers; a version at $59 effective 15 Jan with `migrate_existing` moves them at
/// their renewal on 1 Feb (the preview before shows it), with `subscription.price_migrated`
/// once each and the version change in the history; a later version without it leaves
/// them on $59 (grandfathered), while a new subscriber gets the newest prices.
async fn a_migrating_version_moves_subscribers_at_their_next_renewal(app: App) {
    let (api, _) = Api::start(app, "Migrating Co").await;
    let plan = team_plan(&api).await;
    let (clock, first_account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let second_account = api
        .post(
            "/v1/accounts",
            json!({"email": "second@acme.test", "currency": "usd", "test_clock": clock}),
        )
        .await;
    let second_account = second_account["id"].as_str().unwrap().to_owned();
    api.post(
        &format!("/v1/accounts/{second_account}/payment-methods"),
        json!({"payment_method": "tok_visa"}),
    )
    .await;
    let mut subs = Vec::new();
    for (account, quantity) in [(&first_account, 1), (&second_account, 3)] {
        let sub = api
            .created(
                "/v1/subscriptions",
                json!({"account": account, "plan": plan, "quantity": quantity}),
            )
            .await;
        subs.push((sub["id"].as_str().unwrap().to_owned(), quantity));
    }
    let v2 = api
        .created(
            &format!("/v1/plans/{plan}/versions"),
            json!({"effective_from": "2027-01-15T00:00:00Z", "migrate_existing": true,
                   "charges": {"recurring_fee": {"prices": {"usd": {"model": "per_unit", "unit_price": "59"}}}}}),
        )
        .await;
    assert_eq!(v2["number"], 2);
    let preview = api
        .post("/v1/invoices/preview", json!({"subscription": subs[0].0}))
        .await;
    assert_eq!(
        preview["invoice"]["total"], 5900,
        "the preview bills what the renewal will: {preview}"
    );

    api.advance_clock(&clock, "2027-02-01T01:00:00Z").await;
    for (sub, quantity) in &subs {
        let invoices = api.invoices(sub).await;
        let totals: Vec<Value> = invoices.iter().map(|i| i["total"].clone()).collect();
        assert_eq!(totals, [json!(4900 * quantity), json!(5900 * quantity)]);
        let moved = api.get(&format!("/v1/subscriptions/{sub}")).await;
        assert_eq!(moved["terms"]["plan_version"], 2, "{moved}");
        assert_eq!(
            events_of(&api, "subscription.price_migrated", sub)
                .await
                .len(),
            1
        );
        let history = api.list(&format!("/v1/subscriptions/{sub}/history")).await;
        let versions: Vec<(Value, Value)> = history
            .iter()
            .filter(|r| r["action"] == "update")
            .filter_map(|r| r["changes"].get("terms"))
            .map(|t| {
                (
                    t["before"]["plan_version"].clone(),
                    t["after"]["plan_version"].clone(),
                )
            })
            .collect();
        assert_eq!(versions, [(json!(1), json!(2))], "{history:?}");
    }

    // A version without `migrate_existing`: existing subscribers stay on $59.
    api.created(
        &format!("/v1/plans/{plan}/versions"),
        json!({"effective_from": "2027-02-10T00:00:00Z",
               "charges": {"recurring_fee": {"prices": {"usd": {"model": "per_unit", "unit_price": "69"}}}}}),
    )
    .await;
    api.advance_clock(&clock, "2027-03-01T01:00:00Z").await;
    for (sub, quantity) in &subs {
        let invoices = api.invoices(sub).await;
        assert_eq!(invoices.len(), 3);
        assert_eq!(invoices[2]["total"], json!(5900 * quantity));
        assert_eq!(
            events_of(&api, "subscription.price_migrated", sub)
                .await
                .len(),
            1
        );
    }
}

/// Issue 18, the simulation's promise: what `POST /v1/plans/{id}/versions/simulate` shows is
/// what is billed. Twenty subscriptions on a $49/€45 a seat plan, in dollars and euros, one to
/// four seats, every third with a 20 % coupon (forever); a version at $59/€52 from 15 Jan that
/// moves existing subscribers. The simulation writes nothing; then the same body is published,
/// the clock passes the renewals, and every renewal invoice equals its simulated `after`, to
/// the cent; per currency the sums, MRR and the threshold list are checked by hand.
async fn a_simulated_catalog_change_is_what_is_billed_to_the_cent(app: App) {
    let (api, _) = Api::start(app, "Simulated Co").await;
    // Twenty customers set up in a second: lift the key's burst limit.
    api.patch(
        "/v1/settings/limits",
        json!({"per_key_per_hour": 1_000_000, "burst_per_second": 1_000_000}),
    )
    .await;
    let plan = api
        .created(
            "/v1/plans",
            json!({"code": "seats", "name": "Seats", "interval": {"unit": "month"},
                   "charges": {"recurring_fee": {"prices": {
                       "usd": {"model": "per_unit", "unit_price": "49"},
                       "eur": {"model": "per_unit", "unit_price": "45"}}}}}),
        )
        .await;
    let plan = plan["id"].as_str().unwrap().to_owned();
    api.created(
        "/v1/coupons",
        json!({"code": "TWENTY", "percent_off": "20", "duration": "forever"}),
    )
    .await;
    let clock = api
        .post(
            "/v1/test-clocks",
            json!({"frozen_time": "2027-01-01T00:00:00Z"}),
        )
        .await;
    let clock = clock["id"].as_str().unwrap().to_owned();
    let mut subs: Vec<(String, &str, i64, bool)> = Vec::new();
    for n in 0..20 {
        let currency = if n % 2 == 0 { "usd" } else { "eur" };
        let account = api
            .post(
                "/v1/accounts",
                json!({"email": format!("c{n}@acme.test"), "currency": currency, "test_clock": clock}),
            )
            .await;
        let account = account["id"].as_str().unwrap().to_owned();
        api.post(
            &format!("/v1/accounts/{account}/payment-methods"),
            json!({"payment_method": "tok_visa"}),
        )
        .await;
        let quantity = 1 + n % 4;
        let coupon = n % 3 == 0;
        let mut body = json!({"account": account, "plan": plan, "quantity": quantity});
        if coupon {
            body["coupon"] = json!("TWENTY");
        }
        let sub = api.created("/v1/subscriptions", body).await;
        subs.push((
            sub["id"].as_str().unwrap().to_owned(),
            currency,
            quantity,
            coupon,
        ));
    }
    let version = json!({"effective_from": "2027-01-15T00:00:00Z", "migrate_existing": true,
        "charges": {"recurring_fee": {"prices": {
            "usd": {"model": "per_unit", "unit_price": "59"},
            "eur": {"model": "per_unit", "unit_price": "52"}}}}});
    let simulated = api
        .post(
            &format!("/v1/plans/{plan}/versions/simulate?threshold_percent=20"),
            version.clone(),
        )
        .await;
    assert_eq!(simulated["version"]["number"], 2, "{simulated}");
    assert_eq!(
        api.get(&format!("/v1/plans/{plan}/versions")).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "a simulation writes nothing"
    );
    let per_sub: Vec<&Value> = simulated["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(per_sub.len(), 20);
    // By hand: a seat is $49 → $59 and €45 → €52, 20 % off with the coupon.
    let price = |currency: &str, new: bool| match (currency, new) {
        ("usd", false) => 4900,
        ("usd", true) => 5900,
        (_, false) => 4500,
        (_, true) => 5200,
    };
    let billed = |currency: &str, quantity: i64, coupon: bool, new: bool| {
        let gross = price(currency, new) * quantity;
        if coupon {
            gross - gross / 5
        } else {
            gross
        }
    };
    for (id, currency, quantity, coupon) in &subs {
        let row = per_sub
            .iter()
            .find(|r| r["subscription_id"] == id.as_str())
            .unwrap();
        assert_eq!(
            row["before"],
            billed(currency, *quantity, *coupon, false),
            "{row}"
        );
        assert_eq!(
            row["after"],
            billed(currency, *quantity, *coupon, true),
            "{row}"
        );
        assert_eq!(row["migrates"], true);
        assert_eq!(row["invoice_at"], "2027-02-01T00:00:00Z");
    }
    for currency in ["eur", "usd"] {
        let of: Vec<&(String, &str, i64, bool)> = subs.iter().filter(|s| s.1 == currency).collect();
        let summary = simulated["currencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["currency"] == currency)
            .unwrap();
        let seats: i64 = of.iter().map(|s| s.2).sum();
        assert_eq!(summary["subscriptions"], 10);
        assert_eq!(summary["affected"], 10);
        assert_eq!(summary["mrr_before"], seats * price(currency, false));
        assert_eq!(summary["mrr_after"], seats * price(currency, true));
        let before: i64 = of.iter().map(|s| billed(currency, s.2, s.3, false)).sum();
        let after: i64 = of.iter().map(|s| billed(currency, s.2, s.3, true)).sum();
        assert_eq!(summary["next_invoices_before"], before);
        assert_eq!(summary["next_invoices_after"], after);
        assert_eq!(summary["change"], after - before);
        // +20.41 % in dollars is over 20 %; +15.56 % in euros is not.
        let over = summary["over_threshold"].as_array().unwrap().len();
        assert_eq!(over, if currency == "usd" { 10 } else { 0 }, "{summary}");
        let largest = &summary["largest_increases"][0];
        let top = of
            .iter()
            .map(|s| billed(currency, s.2, s.3, true) - billed(currency, s.2, s.3, false))
            .max()
            .unwrap();
        assert_eq!(largest["change"], top);
    }

    // Published with the same body and billed: each renewal is what was simulated.
    api.created(&format!("/v1/plans/{plan}/versions"), version)
        .await;
    api.advance_clock(&clock, "2027-02-01T01:00:00Z").await;
    for (id, _, _, _) in &subs {
        let invoices = api.invoices(id).await;
        let renewal = invoices
            .iter()
            .find(|i| i["period"]["start"] == "2027-02-01T00:00:00Z")
            .unwrap_or_else(|| panic!("{invoices:?}"));
        let row = per_sub
            .iter()
            .find(|r| r["subscription_id"] == id.as_str())
            .unwrap();
        assert_eq!(renewal["total"], row["after"], "{id}: {renewal}");
    }
}

/// Posts one usage event of `metric` with `value` at `at`.
async fn report(api: &Api, sub: &str, id: &str, metric: &str, value: i64, at: &str) -> Value {
    api.post(
        "/v1/usage",
        json!({"transaction_id": id, "subscription": sub, "metric": metric,
               "value": value, "timestamp": at}),
    )
    .await
}

/// Issue 18, "recurring metrics carry over": three levels billed three ways, each $1 a unit
/// (seats latest at $5) on a $10 a month plan. January: seats 10 on the 1st, 4 on the 11th
/// (latest 4 → $20, max 10 → $10); storage +31 GB on the 1st and +62 GB on the 21st,
/// time-weighted (31 GB × 20 days + 93 GB × 11 days) / 31 days = 53 GB → $53. A late event
/// on 25 Jan in the grace window (seats 6, storage −31 GB on the 30th) moves January
/// (latest 6: +$10; max stays 10; storage 53 − 31 × 2/31 = 51: −$2, one supplemental
/// invoice of $8) and every level after it. February has no events: it bills the carried
/// levels (seats 6 → $30, max 6 → $6, storage 62 → $62), and live usage and the seats'
/// entitlement check show them.
async fn recurring_levels_carry_into_the_next_period(app: App) {
    let (api, _) = Api::start(app, "Levels Co").await;
    for (code, aggregation, field) in [
        ("seats", "latest", "seats"),
        ("peak_seats", "max", "seats"),
        ("storage", "weighted_sum", "gb"),
    ] {
        api.created(
            "/v1/metrics",
            json!({"code": code, "name": code, "aggregation": aggregation,
                   "field": field, "recurring": true}),
        )
        .await;
    }
    let refused = api
        .send(
            Method::POST,
            "/v1/metrics",
            Some(&json!({"code": "calls", "name": "Calls", "aggregation": "count", "recurring": true})),
        )
        .await;
    let problem = billing_tests::api::problem(
        refused,
        reqwest::StatusCode::BAD_REQUEST,
        "recurring_unsupported",
    )
    .await;
    assert_eq!(problem["param"], "recurring");
    let per_unit = |price: &str| json!({"usd": {"model": "per_unit", "unit_price": price}});
    let plan = api
        .created(
            "/v1/plans",
            json!({"code": "levels", "name": "Levels", "interval": {"unit": "month"},
            "charges": {
                "recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 1000}}},
                "usage_charges": [
                    {"metric": "seats", "prices": per_unit("5")},
                    {"metric": "peak_seats", "prices": per_unit("1")},
                    {"metric": "storage", "prices": per_unit("1")},
                ],
                "entitlements": [{"metric": "seats", "limit": "20", "enforcement": "hard"}]
            }}),
        )
        .await;
    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let sub = api
        .created(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan["id"]}),
        )
        .await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    for (id, metric, value, at) in [
        ("s1", "seats", 10, "2027-01-01T00:00:00Z"),
        ("p1", "peak_seats", 10, "2027-01-01T00:00:00Z"),
        ("g1", "storage", 31, "2027-01-01T00:00:00Z"),
    ] {
        report(&api, &sub, id, metric, value, at).await;
    }
    api.advance_clock(&clock, "2027-01-11T00:00:00Z").await;
    report(&api, &sub, "s2", "seats", 4, "2027-01-11T00:00:00Z").await;
    report(&api, &sub, "p2", "peak_seats", 4, "2027-01-11T00:00:00Z").await;
    api.advance_clock(&clock, "2027-01-21T00:00:00Z").await;
    report(&api, &sub, "g2", "storage", 62, "2027-01-21T00:00:00Z").await;

    api.advance_clock(&clock, "2027-02-01T01:00:00Z").await;
    let invoices = api.invoices(&sub).await;
    let totals: Vec<Value> = invoices.iter().map(|i| i["total"].clone()).collect();
    assert_eq!(
        totals,
        [json!(1000), json!(1000 + 2000 + 1000 + 5300)],
        "{invoices:?}"
    );

    // Late January events in the grace window.
    let late = report(&api, &sub, "s3", "seats", 6, "2027-01-25T00:00:00Z").await;
    assert_eq!(late["late"], true, "{late}");
    report(&api, &sub, "p3", "peak_seats", 6, "2027-01-25T00:00:00Z").await;
    report(&api, &sub, "g3", "storage", -31, "2027-01-30T00:00:00Z").await;
    api.advance_clock(&clock, "2027-02-02T00:00:00Z").await;
    let invoices = api.invoices(&sub).await;
    let supplemental: Vec<&Value> = invoices
        .iter()
        .filter(|i| i["billing_reason"] == "late_usage")
        .collect();
    assert_eq!(supplemental.len(), 1, "{invoices:?}");
    assert_eq!(supplemental[0]["total"], 1000 - 200, "{}", supplemental[0]);

    // February: no events, the carried levels.
    let usage = api.get(&format!("/v1/subscriptions/{sub}/usage")).await;
    let period = &usage["periods"][0];
    assert_eq!(period["period"]["start"], "2027-02-01T00:00:00Z", "{usage}");
    let quantity = |metric: &str| {
        period["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == metric)
            .map(|m| m["quantity"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(
        [
            quantity("seats"),
            quantity("peak_seats"),
            quantity("storage")
        ],
        ["6", "6", "62"],
        "{usage}"
    );
    assert_eq!(
        period["projected_invoice"]["total"],
        1000 + 3000 + 600 + 6200,
        "{usage}"
    );
    // The entitlement check counts the carried level too (6 seats: January's late level).
    let check = api
        .get(&format!(
            "/v1/entitlements/check?account={account}&metric=seats&quantity=15"
        ))
        .await;
    assert_eq!(
        (&check["used"], &check["allowed"], &check["reason"]),
        (&json!("6"), &json!(false), &json!("limit_reached")),
        "{check}"
    );
    api.advance_clock(&clock, "2027-03-01T01:00:00Z").await;
    let invoices = api.invoices(&sub).await;
    let march = invoices.last().unwrap();
    assert_eq!(march["total"], 1000 + 3000 + 600 + 6200, "{march}");
    // January read again: the late events moved its quantities.
    let january = api
        .get(&format!(
            "/v1/subscriptions/{sub}/usage?from=2027-01-01T00:00:00Z&to=2027-01-02T00:00:00Z"
        ))
        .await;
    let metrics = january["periods"][0]["metrics"].as_array().unwrap().clone();
    let billed: Vec<(Value, Value)> = metrics
        .iter()
        .map(|m| (m["metric"].clone(), m["billed_amount"].clone()))
        .collect();
    assert_eq!(
        billed,
        [
            (json!("seats"), json!(3000)),
            (json!("peak_seats"), json!(1000)),
            (json!("storage"), json!(5100)),
        ],
        "{january}"
    );
}

/// The periods of a subscription's invoices, as `(start, end, total)`.
async fn billed_periods(api: &Api, sub: &str) -> Vec<(String, String, i64)> {
    api.invoices(sub)
        .await
        .iter()
        .map(|i| {
            (
                i["period"]["start"].as_str().unwrap().to_owned(),
                i["period"]["end"].as_str().unwrap().to_owned(),
                i["total"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Issue 18, "monthly ↔ annual changes": a $100.00 a month plan and a $1,000.00 a year plan.
/// Monthly → annual now (10 Jan): January's unused 21 of 31 days are credited,
/// −$100.00 × 21/31 = −$67.74, and the year from 11 Jan is billed, $1,000.00: one invoice of
/// $932.26, a yearly cycle anchored on 11 Jan, renewed on 11 Jan 2028 for $1,000.00.
/// Annual → monthly at the period's end (asked on 1 Mar): nothing now; on 1 Jan 2028 a
/// monthly cycle starts there, $100.00, and renews on 1 Feb for $100.00.
async fn interval_changes_credit_unused_time_and_re_anchor(app: App) {
    let (api, _) = Api::start(app, "Intervals Co").await;
    let mut plans = Vec::new();
    for (code, unit, amount) in [("monthly", "month", 10_000), ("annual", "year", 100_000)] {
        let plan = api
            .created(
                "/v1/plans",
                json!({"code": code, "name": code, "interval": {"unit": unit},
                   "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": amount}}}}}),
            )
            .await;
        plans.push(plan["id"].as_str().unwrap().to_owned());
    }
    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let mut subs = Vec::new();
    for plan in &plans {
        let sub = api
            .created(
                "/v1/subscriptions",
                json!({"account": account, "plan": plan}),
            )
            .await;
        subs.push(sub["id"].as_str().unwrap().to_owned());
    }
    let (monthly, annual) = (&subs[0], &subs[1]);

    api.advance_clock(&clock, "2027-01-11T00:00:00Z").await;
    let changed = api
        .post(
            &format!("/v1/subscriptions/{monthly}/change-plan"),
            json!({"plan": plans[1], "change_policy": {"upgrade": "immediate", "downgrade": "immediate"}}),
        )
        .await;
    assert_eq!(
        changed["current_period"]["start"], "2027-01-11T00:00:00Z",
        "{changed}"
    );
    assert_eq!(
        changed["current_period"]["end"], "2028-01-11T00:00:00Z",
        "{changed}"
    );
    let invoices = api.invoices(monthly).await;
    let change = invoices.last().unwrap();
    let amounts: Vec<i64> = change["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [-6_774, 100_000], "{change}");
    assert_eq!(change["total"], 93_226, "{change}");

    api.advance_clock(&clock, "2027-03-01T00:00:00Z").await;
    let scheduled = api
        .post(
            &format!("/v1/subscriptions/{annual}/change-plan"),
            json!({"plan": plans[0], "change_policy": {"upgrade": "end_of_period", "downgrade": "end_of_period"}}),
        )
        .await;
    assert!(!scheduled["scheduled_change"].is_null(), "{scheduled}");
    assert_eq!(api.invoices(annual).await.len(), 1, "nothing billed now");

    api.advance_clock(&clock, "2028-02-01T01:00:00Z").await;
    let day = |d: &str| format!("{d}T00:00:00Z");
    assert_eq!(
        billed_periods(&api, monthly).await,
        [
            (day("2027-01-01"), day("2027-02-01"), 10_000),
            (day("2027-01-11"), day("2028-01-11"), 93_226),
            (day("2028-01-11"), day("2029-01-11"), 100_000),
        ]
    );
    assert_eq!(
        billed_periods(&api, annual).await,
        [
            (day("2027-01-01"), day("2028-01-01"), 100_000),
            (day("2028-01-01"), day("2028-02-01"), 10_000),
            (day("2028-02-01"), day("2028-03-01"), 10_000),
        ]
    );
}

billing_tests::on_both_stores!(
    a_blocked_account_is_denied_and_its_renewals_wait_until_it_pays,
    by_default_a_block_denies_entitlements_and_renewals_go_on,
    a_migrating_version_moves_subscribers_at_their_next_renewal,
    a_simulated_catalog_change_is_what_is_billed_to_the_cent,
    recurring_levels_carry_into_the_next_period,
    interval_changes_credit_unused_time_and_re_anchor,
);
