//! Issue 14 over HTTP: each defect and difference with the numbers of the anchor that
//! defines it (Lago, Kill Bill, OpenMeter, Flexprice), through the API on test clocks, the
//! price calculator and the invoice preview. Each test names the anchor's file and case.
//! The anchors' dates are moved to 2027 with the same weekdays and month lengths (plans take
//! effect from now, so a test clock cannot start before it).

use billing_tests::api::{problem, Api};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn start() -> Api {
    Api::start(billing_tests::dynamo_app().await, "Anchors Co")
        .await
        .0
}

/// A USD plan with a flat recurring fee, billed `timing` under `proration`.
async fn fee_plan(
    api: &Api,
    code: &str,
    interval: &str,
    fee: i64,
    timing: &str,
    proration: Value,
) -> String {
    let plan = api
        .post(
            "/v1/plans",
            json!({"code": code, "name": code, "interval": {"unit": interval},
                   "billing_timing": timing, "proration": proration,
                   "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": fee}}}}}),
        )
        .await;
    plan["id"].as_str().unwrap().to_owned()
}

async fn advance(api: &Api, clock: &str, to: &str) {
    let advanced = api
        .post(
            &format!("/v1/test-clocks/{clock}/advance"),
            json!({"frozen_time": to}),
        )
        .await;
    assert_eq!(advanced["status"], "ready");
}

async fn subscribe(api: &Api, body: Value) -> String {
    api.post("/v1/subscriptions", body).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The totals of a subscription's invoices that bill something, sorted (invoice ids derive
/// from the subscription and period, so list order is not billing order).
async fn billed(api: &Api, sub: &str) -> Vec<i64> {
    let mut totals: Vec<i64> = api
        .invoices(sub)
        .await
        .iter()
        .map(|i| i["total"].as_i64().unwrap())
        .filter(|t| *t != 0)
        .collect();
    totals.sort();
    totals
}

/// Totals of the invoices in `after` that are not in `before`.
fn new_totals(before: &[Value], after: &[Value]) -> Vec<i64> {
    let mut totals: Vec<i64> = after
        .iter()
        .filter(|i| !before.iter().any(|b| b["id"] == i["id"]))
        .map(|i| i["total"].as_i64().unwrap())
        .collect();
    totals.sort();
    totals
}

/// Defect 1, getlago/lago-api `spec/services/fees/subscription_service_spec.rb`, "when plan
/// is weekly" (calendar weeks from Monday, €1.00): started Wednesday 2022-06-22 → 5/7 → 71
/// cents ("when subscription start is on any other day"); with a 3-day trial → 2/7 → 29
/// ("when trial end during the period"); started Monday 00:01 with a 3-day trial → 4/7 → 57.
/// In arrears (Lago's default) as in advance.
#[tokio::test]
async fn in_arrears_weekly_fee_started_mid_week_is_prorated_like_lago() {
    let api = start().await;
    let inclusive = json!("calendar_days_inclusive");
    let arrears = fee_plan(
        &api,
        "weekly_arrears",
        "week",
        100,
        "in_arrears",
        inclusive.clone(),
    )
    .await;
    let advance_plan = fee_plan(&api, "weekly_advance", "week", 100, "in_advance", inclusive).await;
    for (at, trial, cents) in [
        ("2027-06-16T00:00:00Z", 0, 71),
        ("2027-06-16T00:00:00Z", 3, 29),
        ("2027-06-14T00:01:00Z", 3, 57),
    ] {
        let (clock, account) = api.clock_account(at).await;
        let mut subs = Vec::new();
        for plan in [&arrears, &advance_plan] {
            subs.push(
                subscribe(
                    &api,
                    json!({"account": account, "plan": plan, "trial_days": trial,
                           "billing_anchor": "2027-06-21T00:00:00Z"}),
                )
                .await,
            );
        }
        // The Monday that ends the first week: the in-arrears fee falls due, and in advance
        // the second week is billed in full.
        advance(&api, &clock, "2027-06-21T00:00:00Z").await;
        assert_eq!(
            billed(&api, &subs[0]).await,
            [cents],
            "in arrears, {at} trial {trial}"
        );
        assert_eq!(
            billed(&api, &subs[1]).await,
            [cents, 100],
            "in advance, {at} trial {trial}"
        );
    }
}

/// Defect 1 with a trial: getlago/lago-api `spec/services/fees/subscription_service_spec.rb`,
/// "when trial end in period": €1.00 monthly in arrears, March 2022 with a 3-day trial →
/// 28/31 → 90 cents (every day convention agrees).
#[tokio::test]
async fn in_arrears_trial_ending_mid_period_bills_the_time_after_it_like_lago() {
    let api = start().await;
    for convention in [
        "calendar_days_inclusive",
        "day_span_exclusive",
        "exact_seconds",
    ] {
        let plan = fee_plan(
            &api,
            convention,
            "month",
            100,
            "in_arrears",
            json!(convention),
        )
        .await;
        let (clock, account) = api.clock_account("2027-03-01T00:00:00Z").await;
        let sub = subscribe(
            &api,
            json!({"account": account, "plan": plan, "trial_days": 3,
                   "billing_anchor": "2027-04-01T00:00:00Z"}),
        )
        .await;
        advance(&api, &clock, "2027-04-01T00:00:00Z").await;
        assert_eq!(billed(&api, &sub).await, [90], "{convention}");
    }
}

/// Defects 2 and 5: getlago/lago-api `spec/services/credit_notes/create_from_termination_spec.rb`
/// ("creates a credit note": a €31 October, calendar days, terminated 2022-10-15 10:00 →
/// "Unused subscription (16 days)", €16.00): the day of termination is used. In arrears the
/// same cancellation invoices the 15 days used (€15.00), or the whole fee without prorate;
/// with exclusive days (Kill Bill) Oct 1 → Oct 15 is 14 days (€14.00).
#[tokio::test]
async fn cancelling_now_credits_in_advance_and_bills_the_used_days_in_arrears_like_lago() {
    let api = start().await;
    let inclusive = json!("calendar_days_inclusive");
    let advance_plan = fee_plan(
        &api,
        "oct_advance",
        "month",
        3100,
        "in_advance",
        inclusive.clone(),
    )
    .await;
    let arrears = fee_plan(&api, "oct_arrears", "month", 3100, "in_arrears", inclusive).await;
    let exclusive = fee_plan(
        &api,
        "oct_exclusive",
        "month",
        3100,
        "in_arrears",
        json!("day_span_exclusive"),
    )
    .await;
    let (clock, account) = api.clock_account("2027-10-01T00:00:00Z").await;
    let cases = [
        (&advance_plan, true, -1600),
        (&arrears, true, 1500),
        (&arrears, false, 3100),
        (&exclusive, true, 1400),
    ];
    let mut subs = Vec::new();
    for (plan, _, _) in &cases {
        subs.push(subscribe(&api, json!({"account": account, "plan": plan})).await);
    }
    advance(&api, &clock, "2027-10-15T10:00:00Z").await;
    for (sub, (_, prorate, expected)) in subs.iter().zip(cases) {
        let before = api.invoices(sub).await;
        let cancelled = api
            .post(
                &format!("/v1/subscriptions/{sub}/cancel"),
                json!({"at_period_end": false, "prorate": prorate}),
            )
            .await;
        assert_eq!(cancelled["status"], "cancelled");
        let after = api.invoices(sub).await;
        assert_eq!(new_totals(&before, &after), [expected], "prorate {prorate}");
    }
}

/// Defect 3: an in-arrears plan change bills both legs for their own time. The README's
/// plan-change example under Kill Bill's day count (`day_span_exclusive`, the domain's
/// `in_arrears_plan_change_bills_both_legs`): $31 → $62 on Jan 22 bills the old plan's 21
/// days ($21.00) now and the new plan's 10 days ($20.00) at the period end, then $62. A
/// change during a trial inherits it: Jan 11 → Feb 1 of the new plan, 21/31 × $62 = $42.00.
#[tokio::test]
async fn an_in_arrears_plan_change_bills_each_plan_for_its_own_days() {
    let api = start().await;
    let exclusive = json!("day_span_exclusive");
    let basic = fee_plan(
        &api,
        "basic",
        "month",
        3100,
        "in_arrears",
        exclusive.clone(),
    )
    .await;
    let pro = fee_plan(&api, "pro", "month", 6200, "in_arrears", exclusive).await;
    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let sub = subscribe(&api, json!({"account": account, "plan": basic})).await;
    let trialing = subscribe(
        &api,
        json!({"account": account, "plan": basic, "trial_days": 10,
               "billing_anchor": "2027-02-01T00:00:00Z"}),
    )
    .await;
    advance(&api, &clock, "2027-01-05T00:00:00Z").await;
    let changed = api
        .post(
            &format!("/v1/subscriptions/{trialing}/change-plan"),
            json!({"plan": pro, "proration_behavior": "always_invoice"}),
        )
        .await;
    assert_eq!(changed["status"], "trialing");
    advance(&api, &clock, "2027-01-22T00:00:00Z").await;
    api.post(
        &format!("/v1/subscriptions/{sub}/change-plan"),
        json!({"plan": pro, "proration_behavior": "always_invoice"}),
    )
    .await;
    assert_eq!(billed(&api, &sub).await, [2100]);
    advance(&api, &clock, "2027-02-01T00:00:00Z").await;
    assert_eq!(billed(&api, &sub).await, [2000, 2100]);
    assert_eq!(billed(&api, &trialing).await, [4200]);
    advance(&api, &clock, "2027-03-01T00:00:00Z").await;
    assert_eq!(billed(&api, &sub).await, [2000, 2100, 6200]);
}

/// Defect 4: killbill/killbill `invoice/src/test/java/org/killbill/billing/invoice/generator/
/// TestInvoiceDateUtilsWithFixedProration.java` (`org.killbill.invoice.proration.fixed.days`):
/// a trailing stub from day d₁ to day d₂ of the next month counts (F − d₁) + d₂ days: May 23 →
/// Jun 15 is 22/30 with 30-day months and 20/28 with 28-day months. A period anchored on the
/// 23rd, cancelled on Jun 15: in arrears the used stub is billed (22/30 × $30 = $22.00; 20/28
/// × $28 = $20.00), in advance the rest is credited (8/30 × $30 = −$8.00; 8/28 × $28).
#[tokio::test]
async fn fixed_day_months_count_a_trailing_stub_like_kill_bill() {
    let api = start().await;
    let cases = [
        (json!("thirty_day_months"), 3000, "in_arrears", 2200),
        (
            json!({"fixed_day_months": {"days": 28}}),
            2800,
            "in_arrears",
            2000,
        ),
        (json!("thirty_day_months"), 3000, "in_advance", -800),
        (
            json!({"fixed_day_months": {"days": 28}}),
            2800,
            "in_advance",
            -800,
        ),
    ];
    let (clock, account) = api.clock_account("2027-05-23T00:00:00Z").await;
    let mut subs = Vec::new();
    for (i, (proration, fee, timing, _)) in cases.iter().enumerate() {
        let plan = fee_plan(
            &api,
            &format!("fixed{i}"),
            "month",
            *fee,
            timing,
            proration.clone(),
        )
        .await;
        subs.push(subscribe(&api, json!({"account": account, "plan": plan})).await);
    }
    advance(&api, &clock, "2027-06-15T00:00:00Z").await;
    for (sub, (proration, _, timing, expected)) in subs.iter().zip(&cases) {
        let before = api.invoices(sub).await;
        api.post(
            &format!("/v1/subscriptions/{sub}/cancel"),
            json!({"at_period_end": false, "prorate": true}),
        )
        .await;
        let after = api.invoices(sub).await;
        assert_eq!(
            new_totals(&before, &after),
            [*expected],
            "{proration} {timing}"
        );
    }
}

/// Price calculator cases: a first tier's flat fee at zero usage (getlago/lago-api
/// `spec/services/charge_models/graduated_service_spec.rb` and `volume_service_spec.rb`,
/// "applies the flat amount from the first tier": graduated → 2, volume → 10, as OpenMeter
/// and Stripe); Lago's percentage allowance with free events and a free amount
/// (`percentage_service_spec.rb`: 1.3 %, €2 fixed, 3 free events, €250 free; 50, 100, 250,
/// 400 → €11.15); Kill Bill's TOP_TIER (`invoice/src/test/java/org/killbill/billing/invoice/
/// usage/TestContiguousIntervalConsumableInArrear.java`, `testComputeBilledUsageWith_TOP_TIER`:
/// 101,000 → $101, 101,001 → $51);
/// Lago's prorated volume (`volume_service_spec.rb`, "when charge is prorated": 198.6 of 300
/// → the third tier, 198.6 × 0.5 + 50 = 149.30).
#[tokio::test]
async fn the_price_calculator_gives_the_anchors_numbers() {
    let api = start().await;
    let preview = |charge: Value, usage: Value| {
        let api = &api;
        async move {
            let mut body = json!({"charge": charge, "currency": "usd"});
            match usage {
                Value::String(_) => body["quantity"] = usage,
                other => body["usage"] = other,
            }
            api.post("/v1/prices/preview", body).await["amount"]["amount"]
                .as_i64()
                .unwrap()
        }
    };
    let graduated = json!({"model": "graduated", "tiers": [
        {"up_to": "10", "unit_price": "10", "flat_fee": 200},
        {"up_to": "20", "unit_price": "5", "flat_fee": 300},
        {"up_to": null, "unit_price": "5", "flat_fee": 300}]});
    let volume = json!({"model": "volume", "tiers": [
        {"up_to": "100", "unit_price": "2", "flat_fee": 1000},
        {"up_to": "200", "unit_price": "1", "flat_fee": 0},
        {"up_to": null, "unit_price": "0.5", "flat_fee": 5000}]});
    assert_eq!(preview(graduated.clone(), json!("0")).await, 200);
    assert_eq!(preview(graduated, json!("1")).await, 1200);
    assert_eq!(preview(volume.clone(), json!("0")).await, 1000);
    assert_eq!(
        preview(
            volume.clone(),
            json!({"kind": "prorated", "quantity": "198.6", "full_quantity": "300"})
        )
        .await,
        14930
    );
    assert_eq!(
        preview(volume, json!("198.6")).await,
        19860,
        "unprorated: the second tier"
    );
    let percentage = json!({"model": "percentage", "rate": "1.3", "fixed_fee": 200,
                            "free_transactions": 3, "free_amount": 25000});
    assert_eq!(
        preview(
            percentage,
            json!({"kind": "transactions", "amounts": ["50", "100", "250", "400"]})
        )
        .await,
        1115
    );
    let top_tier = json!({"model": "tiered_blocks", "tier_block_policy": "top_tier", "tiers": [
        {"up_to": "1000", "block_size": "100", "block_price": "1"},
        {"up_to": "101000", "block_size": "1000", "block_price": "1"},
        {"up_to": null, "block_size": "1000", "block_price": "0.5"}]});
    assert_eq!(preview(top_tier.clone(), json!("101000")).await, 10100);
    assert_eq!(preview(top_tier, json!("101001")).await, 5100);
}

/// Difference 9: openmeterio/openmeter `openmeter/billing/rating/service/rate/unit_test.go`,
/// "usage present, 50% discount +max spend set and hit" (`DiscountPercentage` before
/// `MaxAmountCommitment`): 20 units × $10 = $200, 50 % off → $100, capped by an $80 maximum
/// → $80 (capping first would give $40).
#[tokio::test]
async fn the_invoice_preview_discounts_before_the_maximum_like_openmeter() {
    let api = start().await;
    let invoice = |maximum: i64| {
        let api = &api;
        async move {
            api.post(
                "/v1/invoices/preview",
                json!({"currency": "usd",
                       "lines": [{"id": "usage", "description": "Usage", "source": {"type": "charge",
                           "model": {"model": "per_unit", "unit_price": "10"},
                           "usage": {"kind": "quantity", "quantity": "20"},
                           "commitment": {"maximum": maximum}}}],
                       "discounts": [{"type": "percent_off", "id": "discount-50pct", "percent": "50"}]}),
            )
            .await["invoice"]
                .clone()
        }
    };
    let hit = invoice(8000).await;
    assert_eq!(
        (&hit["subtotal"], &hit["discount_total"], &hit["total"]),
        (&json!(20000), &json!(12000), &json!(8000))
    );
    let not_hit = invoice(10000).await;
    assert_eq!(not_hit["total"], 10000);
}

/// A first tier's flat fee at zero usage on a subscription: a period without any usage still
/// bills the first tier's flat amount (Lago's "applies the flat amount from the first tier",
/// `graduated_service_spec.rb`: 2 for no usage), as the price calculator does.
#[tokio::test]
async fn a_period_without_usage_bills_the_first_tiers_flat_fee() {
    let api = start().await;
    api.post(
        "/v1/metrics",
        json!({"code": "calls", "name": "Calls", "aggregation": "count"}),
    )
    .await;
    let plan = api
        .post(
            "/v1/plans",
            json!({"code": "tiers", "name": "Tiers", "interval": {"unit": "month"},
                   "charges": {"usage_charges": [{"metric": "calls", "prices": {"usd": {"model": "graduated", "tiers": [
                       {"up_to": "10", "unit_price": "10", "flat_fee": 200},
                       {"up_to": null, "unit_price": "5", "flat_fee": 300}]}}}]}}),
        )
        .await;
    let (clock, account) = api.clock_account("2027-04-01T00:00:00Z").await;
    let sub = subscribe(&api, json!({"account": account, "plan": plan["id"]})).await;
    advance(&api, &clock, "2027-05-01T00:00:00Z").await;
    assert_eq!(billed(&api, &sub).await, [200]);
}

/// Lago's prorated volume charge on a plan (`volume_service_spec.rb`, "when charge is
/// prorated"): 300 units over a first period that is 0.662 of its month (exact seconds from
/// 2027-04-11 03:21:36 to the May 1 anchor: 1,715,904 of 2,592,000 s) price 198.6 units at the
/// tier 300 reaches: 198.6 × 0.5 + 50 = $149.30; unprorated the same usage is $200.00. On a
/// test clock with a `max` metric, and in the invoice preview of the same subscription.
#[tokio::test]
async fn a_prorated_volume_charge_prices_the_prorated_quantity_at_the_full_tier_like_lago() {
    let api = start().await;
    api.post(
        "/v1/metrics",
        json!({"code": "seats", "name": "Seats", "aggregation": "max", "field": "seats"}),
    )
    .await;
    let volume = json!({"model": "volume", "tiers": [
        {"up_to": "100", "unit_price": "2", "flat_fee": 1000},
        {"up_to": "200", "unit_price": "1", "flat_fee": 0},
        {"up_to": null, "unit_price": "0.5", "flat_fee": 5000}]});
    let plan = |code: &str, prorated: bool| {
        json!({"code": code, "name": code, "interval": {"unit": "month"}, "proration": "exact_seconds",
               "charges": {"usage_charges": [{"metric": "seats", "prorated": prorated,
                   "prices": {"usd": volume.clone()}}]}})
    };
    let prorated = api.post("/v1/plans", plan("prorated", true)).await;
    let whole = api.post("/v1/plans", plan("whole", false)).await;
    assert_eq!(
        prorated["prices"]["usage_charges"][0]["prorated"], true,
        "{prorated}"
    );

    // The invoice preview of a hypothetical subscription on either plan.
    for (plan, expected) in [(&prorated, 14930), (&whole, 20000)] {
        let preview = api
            .post(
                "/v1/invoices/preview",
                json!({"plan": plan["id"], "currency": "usd", "start": "2027-04-11T03:21:36Z",
                       "billing_anchor": "2027-05-01T00:00:00Z",
                       "usage": {"seats": {"kind": "quantity", "quantity": "300"}}}),
            )
            .await;
        assert_eq!(preview["invoice"]["total"], expected, "{preview}");
    }

    // A subscription on a test clock: usage reported, the period closes on the anchor.
    let (clock, account) = api.clock_account("2027-04-11T03:21:36Z").await;
    let sub = subscribe(
        &api,
        json!({"account": account, "plan": prorated["id"], "billing_anchor": "2027-05-01T00:00:00Z"}),
    )
    .await;
    api.post(
        "/v1/usage",
        json!({"subscription": sub, "metric": "seats", "transaction_id": "s1",
               "properties": {"seats": 300}}),
    )
    .await;
    advance(&api, &clock, "2027-05-01T00:00:00Z").await;
    assert_eq!(billed(&api, &sub).await, [14930]);

    // Only per-unit, graduated and volume prices can be prorated.
    let refused = api
        .send(
            Method::POST,
            "/v1/plans",
            Some(&json!({"code": "bad", "name": "bad", "interval": {"unit": "month"},
                "charges": {"usage_charges": [{"metric": "seats", "prorated": true,
                    "prices": {"usd": {"model": "package", "package_size": "10", "package_price": "1"}}}]}})),
        )
        .await;
    let body = problem(refused, StatusCode::BAD_REQUEST, "proration_unsupported").await;
    assert_eq!(body["param"], "charges.usage_charges[0].prorated");
}

/// Missing policy, credit caps (Flexprice): flexprice/flexprice
/// `internal/domain/proration/calculator_test.go`, `TestCalculator_CapCreditAmount`
/// "previous_credits_limit": a credit of 100 against 200 paid with 180 already credited is
/// capped at 20. A $1.50 plan upgraded to $6.00 on day 10 of 30 credits 20/30 × 150 = 100 and
/// charges 20/30 × 600 = 400: with the period paid elsewhere (`credit_cap` in the body) the
/// credit is 20 (total 380); paid on our invoice it is the 100 (total 300); once that invoice
/// was refunded in full, nothing is credited again (total 400).
#[tokio::test]
async fn the_credit_for_unused_time_is_capped_by_what_was_paid_like_flexprice() {
    let api = start().await;
    let exact = json!("exact_seconds");
    let small = fee_plan(&api, "small", "month", 150, "in_advance", exact.clone()).await;
    let large = fee_plan(&api, "large", "month", 600, "in_advance", exact).await;
    let (clock, account) = api.clock_account("2027-04-01T00:00:00Z").await;
    let elsewhere = subscribe(&api, json!({"account": account, "plan": small})).await;
    let ours = subscribe(&api, json!({"account": account, "plan": small})).await;
    let refunded = subscribe(&api, json!({"account": account, "plan": small})).await;
    // The first invoices' payments run on the clock.
    advance(&api, &clock, "2027-04-01T01:00:00Z").await;
    let invoice = api.invoices(&refunded).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let payments = api.list(&format!("/v1/payments?invoice={invoice}")).await;
    let payment = payments[0]["id"].as_str().unwrap();
    api.created(&format!("/v1/payments/{payment}/refunds"), json!({}))
        .await;
    advance(&api, &clock, "2027-04-11T00:00:00Z").await;

    let upgrade = |sub: String, cap: Option<Value>| {
        let api = &api;
        let large = large.clone();
        async move {
            let before = api.invoices(&sub).await;
            let mut body = json!({"plan": large, "proration_behavior": "always_invoice"});
            if let Some(cap) = cap {
                body["credit_cap"] = cap;
            }
            api.post(&format!("/v1/subscriptions/{sub}/change-plan"), body)
                .await;
            new_totals(&before, &api.invoices(&sub).await)
        }
    };
    assert_eq!(
        upgrade(
            elsewhere,
            Some(json!({"paid": 200, "already_credited": 180}))
        )
        .await,
        [380]
    );
    assert_eq!(upgrade(ours, None).await, [300]);
    assert_eq!(upgrade(refunded.clone(), None).await, [400]);

    // A cap is amounts in minor units, never negative.
    let response = api
        .send(
            Method::POST,
            &format!("/v1/subscriptions/{refunded}/change-plan"),
            Some(&json!({"plan": small, "credit_cap": {"paid": -1}})),
        )
        .await;
    let body = problem(response, StatusCode::BAD_REQUEST, "invalid_credit_cap").await;
    assert_eq!(body["param"], "credit_cap.paid");
}

/// Missing policy, Kill Bill's capacity usage: killbill/killbill `invoice/src/test/java/org/
/// killbill/billing/invoice/usage/TestContiguousIntervalCapacityInArrear.java`,
/// `testComputeBilledUsage`: tiers $10 (100/1000/50), $20 (200/2000/100), $30 (unlimited);
/// the first tier whose every limit holds: (100, 1000, 50) → $10, (100, 1001) → $20,
/// (101, 1000) → $20, (10, 2001) → $30, no usage → $0. In the price calculator (inline and a
/// plan's charge) and on a subscription whose three metrics close a period on a test clock.
#[tokio::test]
async fn a_capacity_charge_prices_the_first_tier_whose_every_limit_holds_like_kill_bill() {
    let api = start().await;
    for unit in ["unit1", "unit2", "unit3"] {
        api.post(
            "/v1/metrics",
            json!({"code": unit, "name": unit, "aggregation": "sum", "field": "n"}),
        )
        .await;
    }
    let capacity = json!({"tiers": [
        {"limits": {"unit1": "100", "unit2": "1000", "unit3": "50"}, "price": 1000},
        {"limits": {"unit1": "200", "unit2": "2000", "unit3": "100"}, "price": 2000},
        {"limits": {"unit1": null, "unit2": null, "unit3": null}, "price": 3000}]});
    let plan = api
        .post(
            "/v1/plans",
            json!({"code": "capacity", "name": "Capacity", "interval": {"unit": "month"},
                   "charges": {"capacity_charges": [{"code": "bundle", "prices": {"usd": capacity}}]}}),
        )
        .await;
    let plan_id = plan["id"].as_str().unwrap().to_owned();
    let cases = [
        (
            json!({"unit1": "100", "unit2": "1000", "unit3": "50"}),
            1000,
        ),
        (json!({"unit1": "100", "unit2": "1001"}), 2000),
        (json!({"unit1": "101", "unit2": "1000"}), 2000),
        (json!({"unit1": "10", "unit2": "2001"}), 3000),
        (json!({"unit1": "0"}), 0),
    ];
    for (units, price) in &cases {
        for source in [
            json!({"capacity": capacity}),
            json!({"plan_id": plan_id, "capacity_charge": "bundle"}),
        ] {
            let mut body = source.clone();
            body["currency"] = json!("usd");
            body["units"] = units.clone();
            let priced = api.post("/v1/prices/preview", body).await;
            assert_eq!(priced["amount"]["amount"], *price, "{units} {priced}");
        }
    }

    // On a subscription: the period's sums (100, 1001, 0) are the second tier.
    let (clock, account) = api.clock_account("2027-04-01T00:00:00Z").await;
    let sub = subscribe(&api, json!({"account": account, "plan": plan_id})).await;
    let events: Vec<Value> = [("unit1", 60, "a"), ("unit1", 40, "b"), ("unit2", 1001, "c")]
        .iter()
        .map(|(metric, n, id)| {
            json!({"transaction_id": id, "subscription": sub, "metric": metric, "properties": {"n": n}})
        })
        .collect();
    api.post("/v1/usage/batch", json!({"events": events})).await;
    advance(&api, &clock, "2027-05-01T00:00:00Z").await;
    assert_eq!(billed(&api, &sub).await, [2000]);

    // Mistakes are named: a limit on an unknown metric, a unit the charge does not limit,
    // an unknown charge.
    let response = api
        .send(
            Method::POST,
            "/v1/plans",
            Some(
                &json!({"code": "bad", "name": "bad", "interval": {"unit": "month"},
                "charges": {"capacity_charges": [{"code": "x", "prices": {"usd": {"tiers": [
                    {"limits": {"nope": null}, "price": 1}]}}}]}}),
            ),
        )
        .await;
    let body = problem(response, StatusCode::BAD_REQUEST, "unknown_metric").await;
    assert_eq!(
        body["param"],
        "charges.capacity_charges[0].prices.usd.tiers[0].limits.nope"
    );
    for (body, code, param) in [
        (
            json!({"capacity": capacity, "currency": "usd", "units": {"unit9": "1"}}),
            "invalid_usage",
            "units.unit9",
        ),
        (
            json!({"plan_id": plan_id, "capacity_charge": "other", "currency": "usd", "units": {}}),
            "unknown_capacity_charge",
            "capacity_charge",
        ),
        (
            json!({"capacity": capacity, "currency": "usd", "quantity": "1"}),
            "invalid_usage",
            "units",
        ),
    ] {
        let response = api
            .send(Method::POST, "/v1/prices/preview", Some(&body))
            .await;
        let problem = problem(response, StatusCode::BAD_REQUEST, code).await;
        assert_eq!(problem["param"], param, "{problem}");
    }
}
