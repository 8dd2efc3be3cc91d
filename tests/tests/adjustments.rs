//! Issue 15's "Done means" scenario over HTTP on test clocks, asserted to the cent, on both
//! stores: every adjustment a real invoice carries — a coupon's discount, the balance's
//! credit, a downgrade's and a cancellation's credit kept in the balance, a prepaid wallet
//! paying a usage invoice, a paid top-up arriving with its payment, and a threshold rule
//! that usage (not only an invoice) makes fire, once. Previews show all of it.
//!
//! Anchors: Stripe's coupon `duration: repeating` (a 20 % coupon for two months discounts
//! two monthly invoices) and customer balance (a negative invoice total is credited to the
//! balance and applied to the next invoice); getlago/lago-api's wallets (prepaid credits
//! applied after tax, `amount = credits × rate_amount`, a threshold top-up rule fires when
//! the ongoing balance falls under it).

use billing_app::App;
use billing_tests::api::Api;
use serde_json::{json, Value};

/// A monthly plan of one flat fee in USD.
async fn monthly(api: &Api, code: &str, amount: i64) -> Value {
    api.created(
        "/v1/plans",
        json!({"code": code, "name": code, "interval": {"unit": "month"},
               "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": amount}}}}}),
    )
    .await
}

/// The invoice of `sub` whose period starts at `start`.
async fn invoice_from(api: &Api, sub: &str, start: &str) -> Value {
    api.invoices(sub)
        .await
        .into_iter()
        .find(|i| i["period"]["start"] == start && i["billing_reason"] != "subscription_update")
        .unwrap_or_else(|| panic!("no invoice of {sub} from {start}"))
}

/// `(subtotal, discount_total, total, credit_total, wallet_total, amount_due)`.
fn amounts(i: &Value) -> [i64; 6] {
    [
        "subtotal",
        "discount_total",
        "total",
        "credit_total",
        "wallet_total",
        "amount_due",
    ]
    .map(|field| {
        i[field]
            .as_i64()
            .unwrap_or_else(|| panic!("{field} of {i}"))
    })
}

async fn available(api: &Api, account: &str) -> i64 {
    let balance = api.get(&format!("/v1/accounts/{account}/balance")).await;
    balance["balances"][0]["available"].as_i64().unwrap_or(0)
}

async fn preview(api: &Api, sub: &str) -> Value {
    api.post("/v1/invoices/preview", json!({"subscription": sub}))
        .await["invoice"]
        .clone()
}

async fn count(api: &Api, event_type: &str) -> usize {
    api.list(&format!("/v1/events?type={event_type}"))
        .await
        .len()
}

/// The coupon, credit, downgrade and cancellation part: a $50/month plan with a 20 %
/// coupon for two periods bills $40, $40 (less a $15 credit: $25 due), then $50; a
/// downgrade to $10 on 16 April (15 of 30 days left: −$25 + $5) lands $20 in the balance,
/// which pays May's and June's $10; cancelled now on 16 June, the unused $5 is kept too.
async fn coupon_credit_downgrade_and_cancellation(api: &Api) {
    let pro = monthly(api, "pro50", 5000).await;
    let basic = monthly(api, "basic10", 1000).await;
    api.created(
        "/v1/coupons",
        json!({"code": "LAUNCH20", "percent_off": "20", "duration": "repeating",
               "duration_in_periods": 2}),
    )
    .await;
    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let sub = api
        .created(
            "/v1/subscriptions",
            json!({"account": account, "plan": pro["id"], "coupon": "LAUNCH20"}),
        )
        .await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    let first = invoice_from(api, &sub, "2027-01-01T00:00:00Z").await;
    assert_eq!(amounts(&first), [5000, 1000, 4000, 0, 0, 4000], "{first}");

    // $15 granted before invoice 2: the preview shows the discount and the credit.
    api.advance_clock(&clock, "2027-01-20T00:00:00Z").await;
    api.created(
        "/v1/credits",
        json!({"account": account, "amount": 1500, "currency": "usd", "reason": "apology"}),
    )
    .await;
    let upcoming = preview(api, &sub).await;
    assert_eq!(
        amounts(&upcoming),
        [5000, 1000, 4000, 1500, 0, 2500],
        "{upcoming}"
    );
    assert_eq!(upcoming["ending_credit_balance"], 0);

    api.advance_clock(&clock, "2027-02-01T00:00:00Z").await;
    let second = invoice_from(api, &sub, "2027-02-01T00:00:00Z").await;
    assert_eq!(
        amounts(&second),
        [5000, 1000, 4000, 1500, 0, 2500],
        "{second}"
    );
    assert_eq!(second["status"], "paid", "the card paid the $25");
    let balance = api.get(&format!("/v1/accounts/{account}/balance")).await;
    assert_eq!(balance["balances"][0]["available"], 0);
    let applied = &balance["transactions"]["data"][0];
    assert_eq!(
        (&applied["kind"], &applied["amount"], &applied["invoice_id"]),
        (&json!("applied"), &json!(-1500), &second["id"]),
        "{balance}"
    );

    api.advance_clock(&clock, "2027-03-01T00:00:00Z").await;
    let third = invoice_from(api, &sub, "2027-03-01T00:00:00Z").await;
    assert_eq!(amounts(&third), [5000, 0, 5000, 0, 0, 5000], "{third}");

    // 16 April, 15 of 30 days left: the unused $25 exceeds the $5 the rest of the month
    // costs on the $10 plan. The change's invoice totals −$20, kept in the balance.
    api.advance_clock(&clock, "2027-04-16T00:00:00Z").await;
    api.post(
        &format!("/v1/subscriptions/{sub}/change-plan"),
        json!({"plan": basic["id"], "proration_behavior": "always_invoice",
               "change_policy": {"downgrade": "immediate"}}),
    )
    .await;
    let change = api
        .invoices(&sub)
        .await
        .into_iter()
        .find(|i| i["billing_reason"] == "subscription_update")
        .expect("the downgrade's invoice");
    assert_eq!(
        (
            &change["total"],
            &change["amount_due"],
            &change["credited_to_balance"]
        ),
        (&json!(-2000), &json!(0), &json!(2000)),
        "{change}"
    );
    assert_eq!(available(api, &account).await, 2000);
    let upcoming = preview(api, &sub).await;
    assert_eq!(
        amounts(&upcoming),
        [1000, 0, 1000, 1000, 0, 0],
        "{upcoming}"
    );
    assert_eq!(upcoming["ending_credit_balance"], 1000);

    // May and June are paid by the balance.
    api.advance_clock(&clock, "2027-05-01T00:00:00Z").await;
    let may = invoice_from(api, &sub, "2027-05-01T00:00:00Z").await;
    assert_eq!(amounts(&may), [1000, 0, 1000, 1000, 0, 0], "{may}");
    assert_eq!(may["status"], "paid");
    assert_eq!(available(api, &account).await, 1000);
    api.advance_clock(&clock, "2027-06-01T00:00:00Z").await;
    let june = invoice_from(api, &sub, "2027-06-01T00:00:00Z").await;
    assert_eq!(amounts(&june), [1000, 0, 1000, 1000, 0, 0], "{june}");
    assert_eq!(available(api, &account).await, 0);

    // Cancelled now on 16 June (15 of 30 days left): the $5 not used is in the balance.
    api.advance_clock(&clock, "2027-06-16T00:00:00Z").await;
    let cancelled = api
        .post(
            &format!("/v1/subscriptions/{sub}/cancel"),
            json!({"at_period_end": false, "prorate": true}),
        )
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    let last = api
        .invoices(&sub)
        .await
        .into_iter()
        .find(|i| i["total"] == -500)
        .expect("the cancellation's invoice credits the unused $5");
    assert_eq!(
        (&last["amount_due"], &last["credited_to_balance"]),
        (&json!(0), &json!(500))
    );
    assert_eq!(available(api, &account).await, 500);
    let balance = api.get(&format!("/v1/accounts/{account}/balance")).await;
    let entries = balance["transactions"]["data"].as_array().unwrap();
    assert_eq!(entries[0]["kind"], "invoice_excess");
    assert_eq!(entries[0]["invoice_id"], last["id"]);
    // The ledger adds up to the balance.
    let sum: i64 = entries.iter().map(|e| e["amount"].as_i64().unwrap()).sum();
    assert_eq!(sum, 500, "{balance}");
}

/// The wallet part: 100 credits at $1 with a rule (under 50 credits, 20 more are granted)
/// and a plan of one cent a call, billed in arrears. January's 3,000 calls are a $30
/// invoice the wallet pays (70 left); 50 paid credits arrive only once the sandbox card has
/// paid their invoice (120); 8,000 calls in February take the ongoing balance to 40
/// credits: not seen as they arrive, but by the wallet's periodic check (within a day
/// while usage stood still), which fires the rule once; the previews show the wallet
/// paying; March's $80 invoice leaves 60 credits and the rule does not fire again.
async fn a_wallet_pays_usage_and_usage_fires_its_rule_once(api: &Api) {
    api.created(
        "/v1/metrics",
        json!({"code": "calls", "name": "Calls", "aggregation": "count"}),
    )
    .await;
    let metered = api
        .created(
            "/v1/plans",
            json!({"code": "metered", "name": "Metered", "interval": {"unit": "month"},
                   "charges": {"usage_charges": [{"metric": "calls",
                       "prices": {"usd": {"model": "per_unit", "unit_price": "0.01"}}}]}}),
        )
        .await;
    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let wallet = api
        .created(
            "/v1/wallets",
            json!({"account": account, "rate_amount": "1", "granted_credits": "100",
                   "recurring_rules": [{"threshold_credits": "50", "granted_credits": "20"}]}),
        )
        .await;
    let wallet = wallet["id"].as_str().unwrap().to_owned();
    let sub = api
        .created(
            "/v1/subscriptions",
            json!({"account": account, "plan": metered["id"]}),
        )
        .await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    let report = |id: &'static str, calls: usize, at: &'static str| {
        let events: Vec<Value> = (0..calls)
            .map(|n| {
                json!({"transaction_id": format!("{id}-{n}"), "subscription": sub,
                            "metric": "calls", "timestamp": at})
            })
            .collect();
        async move {
            for batch in events.chunks(100) {
                let answer = api.post("/v1/usage/batch", json!({"events": batch})).await;
                assert_eq!(answer["accepted"], batch.len(), "{answer}");
            }
        }
    };

    api.advance_clock(&clock, "2027-01-10T00:00:00Z").await;
    report("jan", 3000, "2027-01-10T00:00:00Z").await;
    let seen = api.get(&format!("/v1/wallets/{wallet}")).await;
    assert_eq!(
        (&seen["balance"], &seen["ongoing_balance"]),
        (&json!(10_000), &json!(7_000))
    );
    let upcoming = preview(api, &sub).await;
    assert_eq!(
        amounts(&upcoming),
        [3000, 0, 3000, 0, 3000, 0],
        "{upcoming}"
    );
    assert_eq!(upcoming["wallets_applied"][0]["wallet_id"], wallet.as_str());

    api.advance_clock(&clock, "2027-02-01T00:00:00Z").await;
    let january = api
        .invoices(&sub)
        .await
        .into_iter()
        .find(|i| i["total"] == 3000)
        .expect("January's usage invoice");
    assert_eq!(amounts(&january), [3000, 0, 3000, 0, 3000, 0], "{january}");
    assert_eq!(january["status"], "paid");
    let seen = api.get(&format!("/v1/wallets/{wallet}")).await;
    assert_eq!(
        (&seen["balance"], &seen["credits_balance"]),
        (&json!(7_000), &json!("70"))
    );

    // 50 paid credits: pending until the card has paid the top-up invoice.
    let topped = api
        .created(
            &format!("/v1/wallets/{wallet}/top-ups"),
            json!({"paid_credits": "50"}),
        )
        .await;
    assert_eq!(topped["balance"], 7_000);
    let sold = topped["pending_top_ups"][0]["invoice_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        api.get(&format!("/v1/invoices/{sold}")).await["status"],
        "open"
    );
    api.advance_clock(&clock, "2027-02-01T01:00:00Z").await;
    assert_eq!(
        api.get(&format!("/v1/invoices/{sold}")).await["status"],
        "paid"
    );
    let seen = api.get(&format!("/v1/wallets/{wallet}")).await;
    assert_eq!(
        (&seen["balance"], &seen["credits_balance"]),
        (&json!(12_000), &json!("120"))
    );

    // 8,000 calls: the ongoing balance falls to 40 credits. No request of the usage path
    // looks at wallets; the wallet's next check (at most a day away) does, once.
    api.advance_clock(&clock, "2027-02-10T00:00:00Z").await;
    report("feb", 8000, "2027-02-10T00:00:00Z").await;
    let seen = api.get(&format!("/v1/wallets/{wallet}")).await;
    assert_eq!(seen["ongoing_balance"], 4_000);
    assert_eq!(count(api, "wallet.low_balance").await, 0);
    api.advance_clock(&clock, "2027-02-11T00:00:00Z").await;
    assert_eq!(count(api, "wallet.low_balance").await, 1);
    let seen = api.get(&format!("/v1/wallets/{wallet}")).await;
    assert_eq!(
        (&seen["balance"], &seen["ongoing_balance"]),
        (&json!(14_000), &json!(6_000)),
        "20 credits granted: {seen}"
    );
    // The previews: the next invoice is paid by the wallet; a one-off invoice of $200 for
    // the account would take the rest of the wallet and leave $60 due.
    let upcoming = preview(api, &sub).await;
    assert_eq!(
        amounts(&upcoming),
        [8000, 0, 8000, 0, 8000, 0],
        "{upcoming}"
    );
    let one_off = api
        .post(
            "/v1/invoices/preview",
            json!({"account": account, "currency": "usd",
                   "lines": [{"description": "Setup", "source": {"type": "fixed", "amount": 20_000}}]}),
        )
        .await["invoice"]
        .clone();
    assert_eq!(
        amounts(&one_off),
        [20_000, 0, 20_000, 0, 14_000, 6_000],
        "{one_off}"
    );

    api.advance_clock(&clock, "2027-03-01T00:00:00Z").await;
    let february = api
        .invoices(&sub)
        .await
        .into_iter()
        .find(|i| i["total"] == 8000)
        .expect("February's usage invoice");
    assert_eq!(amounts(&february), [8000, 0, 8000, 0, 8000, 0]);
    api.advance_clock(&clock, "2027-03-05T00:00:00Z").await;
    let seen = api.get(&format!("/v1/wallets/{wallet}")).await;
    assert_eq!(
        (&seen["balance"], &seen["credits_balance"]),
        (&json!(6_000), &json!("60"))
    );
    assert_eq!(
        count(api, "wallet.low_balance").await,
        1,
        "fired once per crossing"
    );
    // Every settled transaction adds up to the balance.
    let all = api.get(&format!("/v1/wallets/{wallet}?limit=100")).await;
    let settled: i64 = all["transactions"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "settled")
        .map(|t| t["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(settled, 6_000);
}

async fn every_adjustment_a_real_invoice_carries(app: App) {
    let (api, _) = Api::start(app, "Adjustments Co").await;
    // 11,000 usage events in batches of 100, and clocks advanced many times: past the
    // default burst.
    api.patch(
        "/v1/settings/limits",
        json!({"per_key_per_hour": 1_000_000, "burst_per_second": 1_000_000}),
    )
    .await;
    coupon_credit_downgrade_and_cancellation(&api).await;
    a_wallet_pays_usage_and_usage_fires_its_rule_once(&api).await;
}

billing_tests::on_both_stores!(every_adjustment_a_real_invoice_carries);
