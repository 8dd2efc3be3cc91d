//! Coupons and the discounts they put on subscriptions, on both stores: the anchor
//! scenario over HTTP on a test clock, redemption slots taken once under concurrency, and
//! what deleting a coupon or a discount does.
//!
//! Anchors: Stripe's coupon `duration: repeating` with `duration_in_months` (a 20 % coupon
//! for 2 months discounts the first two monthly invoices), and getlago/lago-api's applied
//! coupons (`frequency: recurring`, `frequency_duration_remaining` going down by one per
//! invoice, `spec/scenarios/coupons_breakdown_spec.rb`).
//!
//! Coupons on an account follow Stripe's customer discounts
//! (docs.stripe.com/billing/subscriptions/coupons, "Apply coupons to customers": a coupon
//! added to a customer applies to all its subscriptions, including ones added later; the API
//! reference of `subscription.discount`: "a discount applied to a subscription overrides a
//! discount applied on a customer-wide basis"; `discount.end`: a `repeating` discount's end,
//! `duration_in_months` after it was applied).

use std::sync::Arc;

use billing_app::billing::StartSubscription;
use billing_app::coupons::CouponRef;
use billing_app::ports::{InvoiceFilter, PageRequest, Store};
use billing_app::{App, AppError};
use billing_domain::kernel::error::ErrorCode;
use billing_tests::api::Api;
use billing_tests::Races;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A $50.00/month plan, billed in advance.
async fn fifty_a_month(api: &Api) -> serde_json::Value {
    api.created(
        "/v1/plans",
        json!({"code": "fifty", "name": "Fifty", "interval": {"unit": "month"},
               "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 5000}}}}}),
    )
    .await
}

async fn advance(api: &Api, clock: &str, to: &str) {
    api.advance_clock(clock, to).await;
}

/// The done-means scenario: a $50/month plan and a 20 % coupon repeating for two
/// periods. Invoices 1 and 2 are $40.00, invoice 3 is $50.00; previews show the discount;
/// the discount leaves the subscription with `discount.ended`, redeemed once.
async fn a_twenty_percent_coupon_for_two_periods_bills_40_40_then_50(app: App) {
    let (api, _) = Api::start(app, "Coupons Co").await;
    let plan = fifty_a_month(&api).await;
    let coupon = api
        .created(
            "/v1/coupons",
            json!({"code": "LAUNCH20", "percent_off": "20", "duration": "repeating",
                   "duration_in_periods": 2, "max_redemptions": 10}),
        )
        .await;
    assert_eq!(coupon["times_redeemed"], 0);
    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let sub = api
        .created(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan["id"], "coupon": "LAUNCH20"}),
        )
        .await;
    let sub_id = sub["id"].as_str().unwrap().to_owned();
    assert_eq!(sub["discounts"][0]["periods_remaining"], 1, "{sub}");
    let preview = api
        .post("/v1/invoices/preview", json!({"subscription": sub_id}))
        .await;
    assert_eq!(preview["invoice"]["discount_total"], 1000, "{preview}");
    assert_eq!(preview["invoice"]["total"], 4000);

    advance(&api, &clock, "2027-02-01T00:00:00Z").await;
    advance(&api, &clock, "2027-03-01T00:00:00Z").await;
    let mut invoices = api.invoices(&sub_id).await;
    invoices.sort_by_key(|i| i["period"]["start"].as_str().unwrap().to_owned());
    let billed: Vec<(i64, i64, i64)> = invoices
        .iter()
        .map(|i| {
            (
                i["subtotal"].as_i64().unwrap(),
                i["discount_total"].as_i64().unwrap(),
                i["amount_due"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        billed,
        [(5000, 1000, 4000), (5000, 1000, 4000), (5000, 0, 5000)],
        "{invoices:?}"
    );
    let line = &invoices[0]["lines"][0];
    assert_eq!(line["discounts"][0]["amount"], 1000, "{line}");
    let sub = api.get(&format!("/v1/subscriptions/{sub_id}")).await;
    assert_eq!(sub["discounts"], json!([]));
    let coupon = api
        .get(&format!("/v1/coupons/{}", coupon["id"].as_str().unwrap()))
        .await;
    assert_eq!(coupon["times_redeemed"], 1);
    let ended = api.get("/v1/events?type=discount.ended").await;
    assert_eq!(ended["data"].as_array().unwrap().len(), 1, "{ended}");
    let redeemed = api.get("/v1/events?type=coupon.redeemed").await;
    assert_eq!(redeemed["data"].as_array().unwrap().len(), 1, "{redeemed}");
}

/// An amount-off coupon larger than the fee takes the invoice to zero, never below; taken
/// off the subscription, the next invoice is in full. A deleted coupon takes no new
/// redemptions, and the discount made before runs on.
async fn amount_off_stops_at_zero_and_deleting_stops_new_redemptions_only(app: App) {
    let (api, _) = Api::start(app, "Coupons Co").await;
    let plan = fifty_a_month(&api).await;
    let coupon = api
        .created(
            "/v1/coupons",
            json!({"code": "BIG", "amount_off": {"usd": 9000}, "duration": "forever"}),
        )
        .await;
    let coupon_id = coupon["id"].as_str().unwrap().to_owned();
    let duplicate = api
        .send(
            Method::POST,
            "/v1/coupons",
            Some(&json!({"code": "BIG", "percent_off": "5", "duration": "once"})),
        )
        .await;
    let problem = billing_tests::api::problem_of(duplicate, StatusCode::CONFLICT).await;
    assert_eq!(problem["code"], "duplicate_value");
    assert_eq!(problem["param"], "code");

    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let sub = api
        .created(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan["id"], "trial_days": 3}),
        )
        .await;
    let sub_id = sub["id"].as_str().unwrap().to_owned();
    let discounted = api
        .post(
            &format!("/v1/subscriptions/{sub_id}/discounts"),
            json!({"coupon": coupon_id}),
        )
        .await;
    let discount = discounted["discounts"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(discounted["discounts"][0]["amount_off"], 9000);
    let again = api
        .send(
            Method::POST,
            &format!("/v1/subscriptions/{sub_id}/discounts"),
            Some(&json!({"coupon": "BIG"})),
        )
        .await;
    let problem = billing_tests::api::problem_of(again, StatusCode::CONFLICT).await;
    assert_eq!(problem["code"], "already_discounted");

    let deleted = api.delete(&format!("/v1/coupons/{coupon_id}")).await;
    assert_eq!(deleted["deleted"], true);
    let second = api
        .send(
            Method::POST,
            "/v1/subscriptions",
            Some(
                &json!({"account": account, "plan": plan["id"], "trial_days": 3, "coupon": "BIG"}),
            ),
        )
        .await;
    let problem = billing_tests::api::problem_of(second, StatusCode::CONFLICT).await;
    assert_eq!(problem["code"], "coupon_deleted");
    assert_eq!(problem["param"], "coupon");

    // The trial ends: the first invoice is discounted to zero, not below.
    advance(&api, &clock, "2027-01-04T00:00:00Z").await;
    let first = api.invoices(&sub_id).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        (
            first[0]["subtotal"].as_i64(),
            first[0]["discount_total"].as_i64(),
            first[0]["total"].as_i64()
        ),
        (Some(5000), Some(5000), Some(0))
    );
    assert_eq!(first[0]["status"], "paid");
    let off = api
        .delete(&format!("/v1/subscriptions/{sub_id}/discounts/{discount}"))
        .await;
    assert_eq!(off["discounts"], json!([]));
    advance(&api, &clock, "2027-02-04T00:00:00Z").await;
    let all = api.invoices(&sub_id).await;
    let mut totals: Vec<i64> = all.iter().map(|i| i["total"].as_i64().unwrap()).collect();
    totals.sort();
    assert_eq!(totals, [0, 5000]);
}

/// Eight subscriptions redeem a coupon with one slot left at once: exactly one gets the
/// discount, the others are told the coupon is maxed out, and the counter says one.
async fn the_last_redemption_slot_is_taken_once_under_concurrency(store: Arc<dyn Store>) {
    let app = billing_tests::app(store);
    let caller = billing_tests::admin(&app, "Race Co").await;
    let coupon = app
        .coupons
        .create_coupon(
            &caller,
            serde_json::from_value(json!({"code": "ONE", "percent_off": "50",
                "duration": "once", "max_redemptions": 1}))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut subs = Vec::new();
    for i in 0..8 {
        let sub = billing_tests::subscribe(
            &app,
            &caller,
            json!({"email": format!("c{i}@race.test"), "currency": "usd"}),
            "month",
            1000 + i,
        )
        .await;
        subs.push(sub.id);
    }
    let redemptions: Vec<_> = subs
        .iter()
        .map(|id| {
            let (app, caller, id) = (app.clone(), caller.clone(), *id);
            tokio::spawn(async move {
                app.coupons
                    .redeem_on_subscription(&caller, id, &CouponRef::Code("ONE".into()))
                    .await
            })
        })
        .collect();
    let mut results: Vec<Result<_, AppError>> = Vec::new();
    for redemption in redemptions {
        results.push(redemption.await.unwrap());
    }
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    for lost in results.iter().filter_map(|r| r.as_ref().err()) {
        match lost {
            AppError::Invalid(v) => assert_eq!(v.code, ErrorCode::CouponMaxedOut, "{lost:?}"),
            other => panic!("{other:?}"),
        }
    }
    let stored = app.coupons.get_coupon(&caller, coupon.id).await.unwrap();
    assert_eq!(stored.times_redeemed, 1);
    let mut discounted = 0;
    for id in &subs {
        discounted += app
            .billing
            .get_subscription(&caller, *id)
            .await
            .unwrap()
            .discounts
            .len();
    }
    assert_eq!(discounted, 1);
    let listed = app
        .coupons
        .list_coupons(&caller, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
}

/// (subtotal, discount_total, total) of each invoice of `sub`, by period start.
async fn billed(api: &Api, sub: &str) -> Vec<(i64, i64, i64)> {
    let mut invoices = api.invoices(sub).await;
    invoices.sort_by_key(|i| i["period"]["start"].as_str().unwrap().to_owned());
    invoices
        .iter()
        .map(|i| {
            (
                i["subtotal"].as_i64().unwrap(),
                i["discount_total"].as_i64().unwrap(),
                i["total"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Two subscriptions of one account on a test clock, $50/month each, and a third with a
/// coupon of its own. A 20 % account coupon repeating 2 months, redeemed before they start,
/// discounts January's and February's invoices of both and ends by March (Stripe's
/// `duration_in_months` from the redemption); a $10 `once` account coupon redeemed after
/// they started is taken by exactly one of the two invoices that renew at the same instant;
/// the third subscription's own $5 discount overrides both account discounts (Stripe).
async fn an_account_coupon_serves_all_its_subscriptions_and_a_subscription_coupon_overrides(
    app: App,
) {
    let (api, _) = Api::start(app, "Accounts Co").await;
    let plan = fifty_a_month(&api).await;
    for coupon in [
        json!({"code": "LOYAL20", "percent_off": "20", "duration": "repeating", "duration_in_periods": 2}),
        json!({"code": "TEN", "amount_off": {"usd": 1000}, "duration": "once"}),
        json!({"code": "FIVE", "amount_off": {"usd": 500}, "duration": "forever"}),
        json!({"code": "EUROS", "amount_off": {"eur": 500}, "duration": "forever"}),
    ] {
        api.created("/v1/coupons", coupon).await;
    }
    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let discounts = format!("/v1/accounts/{account}/discounts");
    let loyal = api.post(&discounts, json!({"coupon": "LOYAL20"})).await;
    assert_eq!(
        loyal["discounts"][0]["end"], "2027-03-01T00:00:00Z",
        "{loyal}"
    );
    assert_eq!(loyal["discounts"][0]["duration"], "repeating");
    // The same coupon twice, an amount in another currency, an unknown code: refused.
    for (coupon, status, code) in [
        ("LOYAL20", StatusCode::CONFLICT, "already_discounted"),
        ("EUROS", StatusCode::CONFLICT, "coupon_not_applicable"),
        ("NOPE", StatusCode::BAD_REQUEST, "unknown_coupon"),
    ] {
        let refused = api
            .send(Method::POST, &discounts, Some(&json!({ "coupon": coupon })))
            .await;
        let problem = billing_tests::api::problem_of(refused, status).await;
        assert_eq!(
            (problem["code"].as_str(), problem["param"].as_str()),
            (Some(code), Some("coupon")),
            "{problem}"
        );
    }

    let mut subs = Vec::new();
    for coupon in [None, None, Some("FIVE")] {
        let mut body = json!({"account": account, "plan": plan["id"]});
        if let Some(coupon) = coupon {
            body["coupon"] = json!(coupon);
        }
        let sub = api.created("/v1/subscriptions", body).await;
        subs.push(sub["id"].as_str().unwrap().to_owned());
    }
    let once = api.post(&discounts, json!({"coupon": "TEN"})).await;
    let ten = once["discounts"][1]["id"].as_str().unwrap().to_owned();
    assert_eq!(once["version"], 2, "{once}");
    // Previews show what billing will take: both account discounts, or the own one.
    for (sub, discount_total) in [(&subs[0], 2000), (&subs[1], 2000), (&subs[2], 500)] {
        let preview = api
            .post("/v1/invoices/preview", json!({"subscription": sub}))
            .await;
        assert_eq!(
            preview["invoice"]["discount_total"], discount_total,
            "{preview}"
        );
    }

    advance(&api, &clock, "2027-02-01T00:00:00Z").await;
    advance(&api, &clock, "2027-03-01T00:00:00Z").await;
    let (first, second) = (billed(&api, &subs[0]).await, billed(&api, &subs[1]).await);
    assert_eq!(first[0], (5000, 1000, 4000), "{first:?}");
    assert_eq!(second[0], (5000, 1000, 4000), "{second:?}");
    let mut february = [first[1].2, second[1].2];
    february.sort();
    assert_eq!(
        february,
        [3000, 4000],
        "the $10 once: one of the two renewals"
    );
    assert_eq!((first[2], second[2]), ((5000, 0, 5000), (5000, 0, 5000)));
    assert_eq!(
        billed(&api, &subs[2]).await,
        [(5000, 500, 4500), (5000, 500, 4500), (5000, 500, 4500)]
    );

    let left = api.get(&discounts).await;
    let codes: Vec<&str> = left["discounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["coupon_code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["LOYAL20"],
        "the once discount left with its invoice: {left}"
    );
    let ended = api.get("/v1/events?type=account.discount_ended").await;
    assert_eq!(ended["data"].as_array().unwrap().len(), 1, "{ended}");
    assert_eq!(
        ended["data"][0]["resource_id"].as_str(),
        Some(account.as_str()),
        "{ended}"
    );
    let applied = api.get("/v1/events?type=account.discount_applied").await;
    assert_eq!(applied["data"].as_array().unwrap().len(), 2, "{applied}");
    let gone = api
        .send(Method::DELETE, &format!("{discounts}/{ten}"), None)
        .await;
    billing_tests::api::problem_of(gone, StatusCode::NOT_FOUND).await;
    let loyal_id = left["discounts"][0]["id"].as_str().unwrap();
    let off = api.delete(&format!("{discounts}/{loyal_id}")).await;
    assert_eq!(off["discounts"], json!([]));
    let coupons = api.get("/v1/coupons").await;
    for coupon in coupons["data"].as_array().unwrap() {
        let expected = match coupon["code"].as_str().unwrap() {
            "LOYAL20" | "TEN" | "FIVE" => 1,
            _ => 0,
        };
        assert_eq!(coupon["times_redeemed"], expected, "{coupon}");
    }
}

/// Six subscriptions of one account renew at the same instant, drafted by seven concurrent
/// runs (one per subscription and one worker's batch of all six): the account's `once`
/// $10 discount is taken by exactly one invoice, and leaves the account.
async fn an_account_once_discount_is_taken_once_by_concurrent_drafts(app: App, races: Races) {
    let caller = billing_tests::admin(&app, "Race Co").await;
    let account = app
        .customers
        .create_account(
            &caller,
            serde_json::from_value(json!({"email": "race@acme.test", "currency": "usd"})).unwrap(),
        )
        .await
        .unwrap();
    let plan = app
        .catalog
        .create_plan(
            &caller,
            serde_json::from_value(json!({"code": "fifty", "name": "Fifty", "interval": {"unit": "month"},
                "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 5000}}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut subs = Vec::new();
    for _ in 0..6 {
        let start = StartSubscription::new(account.id, plan.plan.id);
        subs.push(
            app.billing
                .create_subscription(&caller, start)
                .await
                .unwrap()
                .id,
        );
    }
    app.coupons
        .create_coupon(
            &caller,
            serde_json::from_value(
                json!({"code": "TEN", "amount_off": {"usd": 1000}, "duration": "once"}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    app.coupons
        .redeem_on_account(&caller, account.id, &CouponRef::Code("TEN".into()))
        .await
        .unwrap();
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 40);
    races.begin();
    let mut runs: Vec<Vec<_>> = subs.iter().map(|id| vec![*id]).collect();
    runs.push(subs.clone());
    let drafts: Vec<_> = runs
        .into_iter()
        .map(|ids| {
            let (app, tenant) = (app.clone(), caller.tenant_id);
            tokio::spawn(async move {
                app.billing
                    .draft_due_subscriptions(tenant, &ids, until)
                    .await
            })
        })
        .collect();
    for draft in drafts {
        for result in draft.await.unwrap() {
            result.unwrap();
        }
    }
    let invoices = app
        .billing
        .list_invoices(
            &caller,
            &InvoiceFilter {
                account: Some(account.id),
                ..Default::default()
            },
            &PageRequest::first(100),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(invoices.len(), 12, "a start and a renewal each");
    let discounted: Vec<i64> = invoices
        .iter()
        .map(|i| i.discount_total.get())
        .filter(|d| *d > 0)
        .collect();
    assert_eq!(discounted, [1000], "taken exactly once");
    let left = app
        .coupons
        .account_discounts(&caller, account.id)
        .await
        .unwrap();
    assert!(left.discounts.is_empty(), "{left:?}");
}

/// The concurrent drafts on the memory store, interleaving at every store operation.
#[tokio::test(start_paused = true)]
async fn an_account_once_discount_is_taken_once_by_concurrent_drafts_in_memory() {
    let mut lost = 0;
    for seed in 0..4 {
        let (app, racing) = billing_tests::racing_app(seed, true);
        an_account_once_discount_is_taken_once_by_concurrent_drafts(app, Races::default()).await;
        lost += racing.refused_on("SubscriptionStore");
    }
    assert!(
        lost > 0,
        "no draft lost the discount (or its step) to another"
    );
}

billing_tests::on_both_stores!(
    a_twenty_percent_coupon_for_two_periods_bills_40_40_then_50,
    amount_off_stops_at_zero_and_deleting_stops_new_redemptions_only,
    the_last_redemption_slot_is_taken_once_under_concurrency,
    an_account_coupon_serves_all_its_subscriptions_and_a_subscription_coupon_overrides,
);

billing_tests::racing_on_the_stand_in!(an_account_once_discount_is_taken_once_by_concurrent_drafts);
