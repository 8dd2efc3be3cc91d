//! Account balances and credits through the use cases and over HTTP: credit applied on
//! finalization exactly once under concurrency (both stores), negative totals (a
//! cancellation, a downgrade) kept in the balance, credit given back on a void and a paid
//! invoice's money kept as balance, expiry through the sweep, previews showing credit.

use std::sync::Arc;

use billing_app::credits::GrantRequest;
use billing_app::ports::{BillingJob, Clock, EventFilter, PageRequest, Store};
use billing_app::{App, Caller};
use billing_domain::billing::invoice::InvoiceStatus;
use billing_domain::credits::balance::TransactionKind;
use billing_domain::customers::account::Account;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::AccountId;
use billing_tests::api::{problem, Api};
use billing_tests::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn usd() -> Currency {
    Currency::from_code("usd").unwrap()
}

/// Eight drafts of one account, each for $10, finalized at once by eight tasks on a
/// multi-thread runtime against $25 of credit in three grants: $25 is spent in all, each
/// grant at most once, and the ledger says the same as the invoices.
async fn eight_concurrent_finalizations_spend_each_credit_once(store: Arc<dyn Store>) {
    let app = billing_tests::app(store);
    let caller = billing_tests::admin(&app, "Credits Co").await;
    let account = usd_account(&app, &caller, "c@acme.test").await;
    for (amount, hours) in [(1000, None), (500, Some(48)), (1000, Some(24))] {
        let expires_at = hours.map(|h| app.clock.now() + jiff::SignedDuration::from_hours(h));
        grant(&app, &caller, account.id, amount, expires_at).await;
    }
    let drafts = billing_tests::manual_drafts(&app, &caller, account.id, 8, 1000).await;
    let invoices = billing_tests::finalize_at_once(&app, &caller, drafts).await;
    let credited: i64 = invoices.iter().map(|i| i.credit_total.get()).sum();
    let due: i64 = invoices.iter().map(|i| i.amount_due.get()).sum();
    assert_eq!((credited, due), (2500, 5500));
    for invoice in &invoices {
        assert_eq!(invoice.credit_total.get() + invoice.amount_due.get(), 1000);
        let from_grants: i64 = invoice.credits_applied.iter().map(|c| c.amount.get()).sum();
        assert_eq!(from_grants, invoice.credit_total.get());
    }
    let paid = invoices
        .iter()
        .filter(|i| i.status == InvoiceStatus::Paid)
        .count();
    assert_eq!(paid, 2, "two invoices were paid in full by credit");
    let tenant = caller.tenant_id;
    let grants = app
        .store
        .list_grants(tenant, account.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert!(grants.items.iter().all(|g| g.remaining.get() == 0));
    let ledger = app
        .store
        .list_balance_transactions(tenant, account.id, None, &PageRequest::first(100))
        .await
        .unwrap();
    let applied: i64 = ledger
        .items
        .iter()
        .filter(|e| e.kind == TransactionKind::Applied)
        .map(|e| e.amount.get())
        .sum();
    assert_eq!(applied, -2500);
    assert_eq!(ledger.items[0].ending_balance.get(), 0);
    let balance = app
        .store
        .get_balance(tenant, account.id, usd())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(balance.available.get(), 0);
}

mod memory {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn eight_concurrent_finalizations_spend_each_credit_once() {
        super::eight_concurrent_finalizations_spend_each_credit_once(billing_tests::memory_store())
            .await;
    }
}

mod dynamo {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn eight_concurrent_finalizations_spend_each_credit_once() {
        let store = std::sync::Arc::new(billing_tests::dynamo_store().await);
        super::eight_concurrent_finalizations_spend_each_credit_once(store).await;
    }
}

/// Over HTTP: a grant, the balance and ledger, an invoice finalized against it, its void
/// giving the credit back, a downward adjustment refused past the balance, bad input.
#[tokio::test]
async fn credit_is_granted_applied_and_given_back_on_void_over_http() {
    let (api, _) = Api::start(billing_tests::memory_app(), "Credits HTTP").await;
    let account = api
        .post(
            "/v1/accounts",
            json!({"email": "h@acme.test", "currency": "usd"}),
        )
        .await;
    let account = account["id"].as_str().unwrap().to_owned();
    let grant = api
        .created(
            "/v1/credits",
            json!({"account": account, "amount": 1500, "currency": "usd", "reason": "goodwill"}),
        )
        .await;
    assert_eq!(
        (grant["remaining"].as_i64(), grant["source"].as_str()),
        (Some(1500), Some("grant"))
    );
    let draft = api
        .created(
            "/v1/invoices",
            json!({"account": account, "lines": [{"description": "Setup", "amount": 5000}]}),
        )
        .await;
    let id = draft["id"].as_str().unwrap();
    let open = api
        .post(&format!("/v1/invoices/{id}/finalize"), json!({}))
        .await;
    assert_eq!(totals(&open), (Some(5000), Some(1500), Some(3500)));
    assert_eq!(open["credits_applied"][0]["grant_id"], grant["id"]);
    let balance = api.get(&format!("/v1/accounts/{account}/balance")).await;
    assert_eq!(balance["balances"][0]["available"], 0);
    let kinds: Vec<&str> = balance["transactions"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["applied", "granted"]);

    // Voided, the invoice gives its credit back to the grant it came from.
    let voided = api
        .post(&format!("/v1/invoices/{id}/void"), json!({}))
        .await;
    assert_eq!(voided["status"], "void");
    let balance = api
        .get(&format!("/v1/accounts/{account}/balance?currency=usd"))
        .await;
    assert_eq!(balance["balances"][0]["available"], 1500);
    assert_eq!(balance["transactions"]["data"][0]["kind"], "restored");
    let credits = api.list(&format!("/v1/accounts/{account}/credits")).await;
    assert_eq!(credits[0]["remaining"], 1500);

    // Adjustments: up, then down past the balance is refused, and down within it.
    let up = api
        .created(
            &format!("/v1/accounts/{account}/balance/adjustments"),
            json!({"amount": 250, "currency": "usd", "reason": "courtesy"}),
        )
        .await;
    assert_eq!(up["available"], 1750);
    let too_much = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/accounts/{account}/balance/adjustments"),
            Some(&json!({"amount": -2000, "currency": "usd", "reason": "fix"})),
        )
        .await;
    problem(too_much, StatusCode::CONFLICT, "insufficient_balance").await;
    let down = api
        .created(
            &format!("/v1/accounts/{account}/balance/adjustments"),
            json!({"amount": -750, "currency": "usd", "reason": "fix"}),
        )
        .await;
    assert_eq!(down["available"], 1000);

    // Bad input is a problem naming the field; nothing is written.
    for (body, code, param) in [
        (
            json!({"account": account, "amount": 0, "currency": "usd", "reason": "x"}),
            "invalid_amount",
            "amount",
        ),
        (
            json!({"account": account, "amount": 5, "currency": "usd", "reason": "x", "expires_at": "2000-01-01T00:00:00Z"}),
            "invalid_expiry",
            "expires_at",
        ),
        (
            json!({"account": account, "amount": 5, "currency": "zzz", "reason": "x"}),
            "invalid_currency",
            "currency",
        ),
        (
            json!({"account": "acct_01JD0000000000000000000000", "amount": 5, "currency": "usd", "reason": "x"}),
            "unknown_account",
            "account",
        ),
    ] {
        let response = api
            .send(reqwest::Method::POST, "/v1/credits", Some(&body))
            .await;
        let p = problem(response, StatusCode::BAD_REQUEST, code).await;
        assert_eq!(p["param"], param);
    }
    let credits = api.list(&format!("/v1/accounts/{account}/credits")).await;
    assert_eq!(credits.len(), 2);
}

/// A $50 monthly subscription on a test clock: $15 granted before its second invoice makes
/// that invoice $35 due and the balance 0; cancelled now mid-period, the prorated credit
/// exceeds what the cancellation charges, so its negative total lands in the balance (not
/// lost) and the invoice is paid at 0.
#[tokio::test]
async fn a_renewal_spends_the_credit_and_a_cancellation_credit_lands_in_the_balance() {
    let app: App = billing_tests::memory_app();
    let (api, _) = Api::start(app, "Credits clock").await;
    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let plan = api.post("/v1/plans", monthly_plan("pro50", 5000)).await;
    let sub = subscribe(&api, &account, &plan).await;
    let first = api.invoices(&sub).await;
    assert_eq!(first[0]["amount_due"], 5000);
    api.created(
        "/v1/credits",
        json!({"account": account, "amount": 1500, "currency": "usd", "reason": "apology"}),
    )
    .await;
    api.advance_clock(&clock, "2027-02-01T00:00:00Z").await;
    let invoices = api.invoices(&sub).await;
    let renewal = invoices
        .iter()
        .find(|i| i["period"]["start"] == "2027-02-01T00:00:00Z")
        .expect("the second invoice");
    assert_eq!(totals(renewal), (Some(5000), Some(1500), Some(3500)));
    assert_eq!(renewal["status"], "paid", "the card paid the rest");
    let balance = api.get(&format!("/v1/accounts/{account}/balance")).await;
    assert_eq!(balance["balances"][0]["available"], 0);
    assert_eq!(balance["transactions"]["data"][0]["kind"], "applied");
    assert_eq!(
        balance["transactions"]["data"][0]["invoice_id"],
        renewal["id"]
    );

    // Half-way through February (14 of 28 days), cancelled now with a prorated credit.
    api.advance_clock(&clock, "2027-02-15T00:00:00Z").await;
    let cancelled = api
        .post(
            &format!("/v1/subscriptions/{sub}/cancel"),
            json!({"at_period_end": false, "prorate": true}),
        )
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    let invoices = api.invoices(&sub).await;
    let last = invoices
        .iter()
        .find(|i| i["total"].as_i64().is_some_and(|t| t < 0))
        .expect("the cancellation's invoice has a negative total");
    assert_eq!(last["total"], -2500);
    assert_eq!(last["amount_due"], 0);
    assert_eq!(last["credited_to_balance"], 2500);
    let balance = api.get(&format!("/v1/accounts/{account}/balance")).await;
    assert_eq!(balance["balances"][0]["available"], 2500);
    assert_eq!(balance["transactions"]["data"][0]["kind"], "invoice_excess");
    // Oldest first: the apology, then the cancellation's excess.
    let credits = api.list(&format!("/v1/accounts/{account}/credits")).await;
    assert_eq!(credits[1]["source"], "invoice_excess");
    assert_eq!(credits[1]["invoice_id"], last["id"]);
    assert_eq!(credits[1]["remaining"], 2500);
}

/// A grant expiring in an hour, and one that never does: past the hour the sweep hands the
/// balance's expiry to the billing worker (the job the due index holds for it), which moves
/// what remained out with an `expired` entry, `credit.expired` and `balance.updated`; the
/// next sweep finds nothing of the balance due, and running the job again expires nothing.
#[tokio::test]
async fn an_expired_grant_leaves_the_balance_through_the_sweep_once() {
    let start = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let clock = ManualClock::at(start);
    let app = billing_tests::app_with_clock(billing_tests::memory_store(), clock.clone());
    let caller = billing_tests::admin(&app, "Expiry Co").await;
    let account = usd_account(&app, &caller, "x@acme.test").await;
    let expires = start + jiff::SignedDuration::from_hours(1);
    for (amount, expires_at) in [(1000, Some(expires)), (500, None)] {
        grant(&app, &caller, account.id, amount, expires_at).await;
    }
    let tenant = caller.tenant_id;
    let job = BillingJob::CreditExpiry {
        tenant,
        account: account.id,
        currency: usd(),
    };
    assert!(!billing_tests::sweep_and_bill(&app).await.0.contains(&job));

    clock.set(expires + jiff::SignedDuration::from_mins(1));
    let (jobs, failed) = billing_tests::sweep_and_bill(&app).await;
    assert_eq!((jobs, failed), (vec![job.clone()], 0));
    let balance = app
        .store
        .get_balance(tenant, account.id, usd())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((balance.available.get(), balance.next_expiry), (500, None));
    let ledger = app
        .store
        .list_balance_transactions(tenant, account.id, None, &PageRequest::first(10))
        .await
        .unwrap();
    let newest = &ledger.items[0];
    assert_eq!(
        (
            newest.kind,
            newest.amount.get(),
            newest.ending_balance.get()
        ),
        (TransactionKind::Expired, -1000, 500)
    );
    let expired = app
        .store
        .list_events(
            tenant,
            &EventFilter {
                event_type: Some("credit.expired".into()),
                resource_id: None,
            },
            &PageRequest::first(10),
        )
        .await
        .unwrap();
    assert_eq!(expired.items.len(), 1);

    assert_eq!(billing_tests::sweep_and_bill(&app).await, (vec![], 0));
    let again = app
        .credits
        .expire_credits(tenant, account.id, usd(), clock.now())
        .await
        .unwrap();
    assert!(!again, "a second run expires nothing");
    let ledger = app
        .store
        .list_balance_transactions(tenant, account.id, None, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(ledger.items.len(), 3);
}

/// A $50 monthly subscription whose first invoice spent $15 of credit and was paid by card
/// ($35). Voiding it without `credit_to_balance` is refused (a paid invoice's money comes
/// back by refund); with it, the $15 goes back to its grant and the $35 credit note lands
/// in the balance as a grant of its own, in the void's write.
#[tokio::test]
async fn voiding_a_paid_invoice_with_credit_to_balance_keeps_the_money_as_balance() {
    let (api, _) = Api::start(billing_tests::memory_app(), "Credits void").await;
    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let plan = api.post("/v1/plans", monthly_plan("void50", 5000)).await;
    let grant = api
        .created(
            "/v1/credits",
            json!({"account": account, "amount": 1500, "currency": "usd", "reason": "apology"}),
        )
        .await;
    let sub = subscribe(&api, &account, &plan).await;
    api.advance_clock(&clock, "2027-01-01T01:00:00Z").await;
    let invoice = api.invoices(&sub).await.remove(0);
    assert_eq!(
        (
            invoice["credit_total"].as_i64(),
            invoice["amount_due"].as_i64(),
            invoice["amount_paid"].as_i64(),
            invoice["status"].as_str()
        ),
        (Some(1500), Some(3500), Some(3500), Some("paid"))
    );
    let id = invoice["id"].as_str().unwrap();
    let refused = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/invoices/{id}/void"),
            None,
        )
        .await;
    problem(refused, StatusCode::CONFLICT, "invalid_transition").await;

    let voided = api
        .post(
            &format!("/v1/invoices/{id}/void"),
            json!({"credit_to_balance": true}),
        )
        .await;
    assert_eq!(voided["status"], "void");
    let balance = api.get(&format!("/v1/accounts/{account}/balance")).await;
    assert_eq!(balance["balances"][0]["available"], 5000);
    let entries: Vec<(&str, i64)> = balance["transactions"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        entries,
        vec![
            ("credit_note", 3500),
            ("restored", 1500),
            ("applied", -1500),
            ("granted", 1500)
        ]
    );
    let notes = api.list(&format!("/v1/credit-notes?invoice={id}")).await;
    assert_eq!(notes.len(), 1);
    assert_eq!(
        (
            notes[0]["amount"].as_i64(),
            &notes[0]["credited_to_balance"]
        ),
        (Some(3500), &json!(true))
    );
    let credits = api.list(&format!("/v1/accounts/{account}/credits")).await;
    assert_eq!(credits[0]["id"], grant["id"]);
    assert_eq!(credits[0]["remaining"], 1500);
    assert_eq!(
        (
            credits[1]["source"].as_str(),
            credits[1]["remaining"].as_i64()
        ),
        (Some("credit_note"), Some(3500))
    );
    assert_eq!(credits[1]["invoice_id"], invoice["id"]);
}

/// Mid-February (14 of 28 days), a $50 subscription moves to a $10 plan at once: the unused
/// $25 exceeds the $5 charged for the rest of the month, so the change's invoice totals
/// −$20 and the $20 lands in the balance. The preview of the March invoice shows the credit
/// it will spend ($10 of it, nothing due), and the March invoice spends exactly that.
#[tokio::test]
async fn a_downgrade_whose_credit_exceeds_the_new_charge_lands_the_excess_in_the_balance() {
    let (api, _) = Api::start(billing_tests::memory_app(), "Credits downgrade").await;
    let (clock, account) = api.clock_account("2027-02-01T00:00:00Z").await;
    let pro = api.post("/v1/plans", monthly_plan("pro50d", 5000)).await;
    let basic = api.post("/v1/plans", monthly_plan("basic10", 1000)).await;
    let sub = subscribe(&api, &account, &pro).await;
    api.advance_clock(&clock, "2027-02-15T00:00:00Z").await;
    api.post(
        &format!("/v1/subscriptions/{sub}/change-plan"),
        json!({"plan": basic["id"], "proration_behavior": "always_invoice",
               "change_policy": {"downgrade": "immediate"}}),
    )
    .await;
    let invoices = api.invoices(&sub).await;
    let change = invoices
        .iter()
        .find(|i| i["total"].as_i64().is_some_and(|t| t < 0))
        .expect("the downgrade's invoice has a negative total");
    assert_eq!(
        (
            change["total"].as_i64(),
            change["amount_due"].as_i64(),
            change["credited_to_balance"].as_i64()
        ),
        (Some(-2000), Some(0), Some(2000))
    );
    let balance = api.get(&format!("/v1/accounts/{account}/balance")).await;
    assert_eq!(balance["balances"][0]["available"], 2000);
    assert_eq!(balance["transactions"]["data"][0]["kind"], "invoice_excess");

    let preview = api
        .post("/v1/invoices/preview", json!({"subscription": sub}))
        .await;
    let upcoming = &preview["invoice"];
    assert_eq!(
        (
            upcoming["total"].as_i64(),
            upcoming["credit_total"].as_i64(),
            upcoming["amount_due"].as_i64(),
            upcoming["ending_credit_balance"].as_i64()
        ),
        (Some(1000), Some(1000), Some(0), Some(1000))
    );

    api.advance_clock(&clock, "2027-03-01T01:00:00Z").await;
    let invoices = api.invoices(&sub).await;
    let march = invoices
        .iter()
        .find(|i| i["period"]["start"] == "2027-03-01T00:00:00Z")
        .expect("the March invoice");
    assert_eq!(
        (
            march["total"].as_i64(),
            march["credit_total"].as_i64(),
            march["amount_due"].as_i64(),
            march["status"].as_str()
        ),
        (Some(1000), Some(1000), Some(0), Some("paid"))
    );
    let balance = api.get(&format!("/v1/accounts/{account}/balance")).await;
    assert_eq!(balance["balances"][0]["available"], 1000);
}

async fn usd_account(app: &App, caller: &Caller, email: &str) -> Account {
    let new = serde_json::from_value(json!({"email": email, "currency": "usd"})).unwrap();
    app.customers.create_account(caller, new).await.unwrap()
}

/// Grants `amount` cents of USD credit through the use case.
async fn grant(
    app: &App,
    caller: &Caller,
    account: AccountId,
    amount: i64,
    expires_at: Option<jiff::Timestamp>,
) {
    let request = GrantRequest {
        account,
        amount,
        currency: usd(),
        reason: "goodwill".into(),
        note: None,
        expires_at,
    };
    app.credits.grant_credit(caller, request).await.unwrap();
}

/// A monthly plan of one flat fee in USD.
fn monthly_plan(code: &str, amount: i64) -> Value {
    json!({"code": code, "name": code, "interval": {"unit": "month"},
           "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": amount}}}}})
}

/// Subscribes the account to the plan; answers the subscription's id.
async fn subscribe(api: &Api, account: &str, plan: &Value) -> String {
    let sub = api
        .post(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan["id"]}),
        )
        .await;
    sub["id"].as_str().unwrap().to_owned()
}

/// An invoice's total, credit and amount due.
fn totals(invoice: &Value) -> (Option<i64>, Option<i64>, Option<i64>) {
    (
        invoice["total"].as_i64(),
        invoice["credit_total"].as_i64(),
        invoice["amount_due"].as_i64(),
    )
}
