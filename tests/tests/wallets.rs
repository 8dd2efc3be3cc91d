//! Prepaid wallets on both stores: the wallet scenario over HTTP on a test clock
//! (100 credits, a $30 invoice leaves 70; a paid top-up arrives only once the sandbox card
//! has paid, and once; a threshold rule fires once), and eight concurrent finalizations
//! of one account spending each wallet credit once (the memory store's racing decorator
//! and the stand-in, each asserting a write lost a race).
//!
//! Anchor: getlago/lago-api's wallets consume prepaid credits after tax and count credits
//! at `rate_amount` (`amount = credits × rate_amount`, rounded to the currency: the
//! "with decimal value" contexts of
//! `spec/services/wallet_transactions/create_from_params_service_spec.rb`, reproduced in
//! `billing_domain::wallets::wallet`'s tests).

use billing_app::ports::{BillingJob, PageRequest, PaymentJob};
use billing_app::wallets::CreateWallet;
use billing_app::App;
use billing_domain::kernel::decimal::parse_decimal;
use billing_domain::kernel::ids::PaymentId;
use billing_domain::wallets::wallet::{WalletTransactionKind, WalletTransactionStatus};
use billing_tests::api::{problem, Api};
use billing_tests::Races;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A one-line invoice for `amount` minor units, finalized: the wallet pays what it can.
async fn invoice(api: &Api, account: &str, amount: i64) -> Value {
    let draft = api
        .created(
            "/v1/invoices",
            json!({"account": account, "lines": [{"description": "Usage", "amount": amount}]}),
        )
        .await;
    let id = draft["id"].as_str().unwrap();
    api.post(&format!("/v1/invoices/{id}/finalize"), json!({}))
        .await
}

async fn events_of(api: &Api, event_type: &str) -> Vec<Value> {
    api.list(&format!("/v1/events?type={event_type}")).await
}

/// The wallet part, over HTTP on a test clock.
async fn a_wallet_pays_invoices_and_paid_credits_arrive_once(app: App) {
    let (api, tenant) = Api::start(app.clone(), "Wallets Co").await;
    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;

    // Bad input is a problem naming the field; nothing is written.
    for (body, code, param) in [
        (
            json!({"account": account, "rate_amount": "0", "granted_credits": "1"}),
            "invalid_rate_amount",
            "rate_amount",
        ),
        (
            json!({"account": account, "rate_amount": "1", "granted_credits": "-5"}),
            "invalid_credits",
            "granted_credits",
        ),
        (
            json!({"account": account, "rate_amount": "1", "granted_credits": "1",
                   "recurring_rules": [{"granted_credits": "5"}]}),
            "invalid_top_up_rule",
            "recurring_rules",
        ),
        (
            json!({"account": "acct_01JD0000000000000000000000", "rate_amount": "1", "granted_credits": "1"}),
            "unknown_account",
            "account",
        ),
    ] {
        let response = api.send(Method::POST, "/v1/wallets", Some(&body)).await;
        let p = problem(response, StatusCode::BAD_REQUEST, code).await;
        assert_eq!(p["param"], param, "{p}");
    }
    assert!(api
        .list(&format!("/v1/accounts/{account}/wallets"))
        .await
        .is_empty());

    // 100 credits at $1 each, and a rule: under 50 credits, 20 more are granted.
    let wallet = api
        .created(
            "/v1/wallets",
            json!({"account": account, "rate_amount": "1", "granted_credits": "100",
                   "name": "Prepaid", "recurring_rules": [{"threshold_credits": "50", "granted_credits": "20"}]}),
        )
        .await;
    let id = wallet["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (
            &wallet["balance"],
            &wallet["credits_balance"],
            &wallet["currency"]
        ),
        (&json!(10_000), &json!("100"), &json!("usd"))
    );

    // A $30 invoice is paid by the wallet: 70 credits left.
    let paid = invoice(&api, &account, 3_000).await;
    assert_eq!(
        (
            &paid["total"],
            &paid["wallet_total"],
            &paid["amount_due"],
            &paid["status"]
        ),
        (&json!(3_000), &json!(3_000), &json!(0), &json!("paid")),
        "{paid}"
    );
    assert_eq!(paid["wallets_applied"][0]["wallet_id"], id.as_str());
    let seen = api.get(&format!("/v1/wallets/{id}")).await;
    assert_eq!(
        (
            &seen["balance"],
            &seen["credits_balance"],
            &seen["consumed"]
        ),
        (&json!(7_000), &json!("70"), &json!(3_000))
    );
    // No usage waits to be invoiced: the ongoing balance is the balance.
    assert_eq!(seen["ongoing_balance"], 7_000);
    assert_eq!(seen["credits_ongoing_balance"], "70");
    let kinds: Vec<&str> = seen["transactions"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["consumed", "granted"]);
    assert_eq!(seen["transactions"]["data"][0]["invoice_id"], paid["id"]);
    assert_eq!(seen["transactions"]["data"][0]["amount"], -3_000);

    // 50 paid credits: a top-up invoice is issued and its payment waits on the clock; the
    // credits are pending until the card has paid.
    let topped = api
        .created(
            &format!("/v1/wallets/{id}/top-ups"),
            json!({"paid_credits": "50"}),
        )
        .await;
    assert_eq!(topped["balance"], 7_000, "not before the card pays");
    assert_eq!(topped["pending_top_ups"][0]["amount"], 5_000);
    let top_up_invoice = topped["pending_top_ups"][0]["invoice_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sold = api.get(&format!("/v1/invoices/{top_up_invoice}")).await;
    assert_eq!(
        (
            &sold["billing_reason"],
            &sold["status"],
            &sold["amount_due"],
            &sold["wallet_total"]
        ),
        (
            &json!("wallet_top_up"),
            &json!("open"),
            &json!(5_000),
            &json!(0)
        ),
        "the top-up invoice is not paid by the wallet it fills: {sold}"
    );
    let pending = api.get(&format!("/v1/wallets/{id}")).await;
    assert_eq!(pending["transactions"]["data"][0]["status"], "pending");
    assert_eq!(pending["transactions"]["data"][0]["kind"], "purchased");

    // The clock moves: the payment attempt falls due and the sandbox card pays.
    api.advance_clock(&clock, "2027-01-01T01:00:00Z").await;
    let sold = api.get(&format!("/v1/invoices/{top_up_invoice}")).await;
    assert_eq!(sold["status"], "paid", "{sold}");
    let arrived = api.get(&format!("/v1/wallets/{id}")).await;
    assert_eq!(
        (&arrived["balance"], &arrived["credits_balance"]),
        (&json!(12_000), &json!("120"))
    );
    assert_eq!(arrived["pending_top_ups"], json!([]));
    assert_eq!(arrived["transactions"]["data"][0]["status"], "settled");
    assert_eq!(arrived["transactions"]["data"][0]["ending_balance"], 12_000);

    // The paid event delivered again: the attempt run twice, and paying the invoice again,
    // add nothing.
    let payments = api
        .list(&format!("/v1/payments?invoice={top_up_invoice}"))
        .await;
    assert_eq!(payments.len(), 1);
    let payment = PaymentId::parse(payments[0]["id"].as_str().unwrap(), "id").unwrap();
    let at = jiff::Timestamp::from_second(1_798_765_200).unwrap();
    app.collection
        .run_payment_job(
            &PaymentJob::Attempt {
                tenant: tenant.id,
                id: payment,
            },
            at,
        )
        .await
        .unwrap();
    let again = api
        .send(
            Method::POST,
            &format!("/v1/invoices/{top_up_invoice}/pay"),
            Some(&json!({})),
        )
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let once = api.get(&format!("/v1/wallets/{id}")).await;
    assert_eq!(once["balance"], 12_000, "the credits arrived once");
    assert_eq!(events_of(&api, "wallet.topped_up").await.len(), 2);

    // A $75 invoice takes the wallet to 45 credits, under 50: the rule fires once (20
    // granted), with one `wallet.low_balance`.
    let under = invoice(&api, &account, 7_500).await;
    assert_eq!(under["wallet_total"], 7_500);
    let after_rule = api.get(&format!("/v1/wallets/{id}")).await;
    assert_eq!(
        after_rule["balance"], 6_500,
        "45 + 20 granted: {after_rule}"
    );
    assert_eq!(events_of(&api, "wallet.low_balance").await.len(), 1);
    // The wallet's job run again, and the clock moving on, fire nothing more.
    let wallet_id = billing_domain::kernel::ids::WalletId::parse(&id, "id").unwrap();
    app.billing
        .run_billing_jobs(
            tenant.id,
            &[BillingJob::Wallet {
                tenant: tenant.id,
                wallet: wallet_id,
            }],
        )
        .await
        .into_iter()
        .for_each(|r| r.unwrap());
    api.advance_clock(&clock, "2027-01-02T00:00:00Z").await;
    assert_eq!(events_of(&api, "wallet.low_balance").await.len(), 1);
    assert_eq!(
        api.get(&format!("/v1/wallets/{id}")).await["balance"],
        6_500
    );

    // Voided (paid in full by the wallet, so voided as a paid invoice is), the $75
    // invoice gives its 75 credits back to the wallet; nothing was paid to keep as balance.
    let voided = api
        .post(
            &format!("/v1/invoices/{}/void", under["id"].as_str().unwrap()),
            json!({"credit_to_balance": true}),
        )
        .await;
    assert_eq!(voided["status"], "void", "{voided}");
    let restored = api.get(&format!("/v1/wallets/{id}")).await;
    assert_eq!(restored["balance"], 14_000);
    assert_eq!(restored["transactions"]["data"][0]["kind"], "restored");

    // The ledger of the wallet adds up to its balance.
    let all = api.get(&format!("/v1/wallets/{id}?limit=100")).await;
    let settled: i64 = all["transactions"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "settled")
        .map(|t| t["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(settled, 14_000);
    let listed = api.list(&format!("/v1/accounts/{account}/wallets")).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["credits_balance"], "140");
    assert_eq!(events_of(&api, "wallet.created").await.len(), 1);
    let unknown = api
        .send(
            Method::GET,
            "/v1/wallets/wal_01JD0000000000000000000000",
            None,
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

/// Eight $10 drafts of one account finalized at once against a wallet of 25 credits:
/// 25 credits are consumed in all, each once, and the wallet's transactions say the same
/// as the invoices.
async fn eight_concurrent_finalizations_spend_each_wallet_credit_once(app: App, races: Races) {
    let caller = billing_tests::admin(&app, "Wallet race").await;
    let account = app
        .customers
        .create_account(
            &caller,
            serde_json::from_value(json!({"email": "w@acme.test", "currency": "usd"})).unwrap(),
        )
        .await
        .unwrap();
    let wallet = app
        .wallets
        .create_wallet(
            &caller,
            CreateWallet {
                account: account.id,
                currency: None,
                name: None,
                rate_amount: parse_decimal("1", 0).unwrap(),
                granted_credits: parse_decimal("25", 0).unwrap(),
                paid_credits: parse_decimal("0", 0).unwrap(),
                expires_at: None,
                rules: Vec::new(),
            },
        )
        .await
        .unwrap();
    let drafts = billing_tests::manual_drafts(&app, &caller, account.id, 8, 1000).await;
    races.begin();
    let invoices = billing_tests::finalize_at_once(&app, &caller, drafts).await;
    let consumed: i64 = invoices.iter().map(|i| i.wallet_total.get()).sum();
    let due: i64 = invoices.iter().map(|i| i.amount_due.get()).sum();
    assert_eq!((consumed, due), (2_500, 5_500));
    for invoice in &invoices {
        assert_eq!(invoice.wallet_total.get() + invoice.amount_due.get(), 1_000);
        let from_wallet: i64 = invoice.wallets_applied.iter().map(|w| w.amount.get()).sum();
        assert_eq!(from_wallet, invoice.wallet_total.get());
    }
    let tenant = caller.tenant_id;
    let stored = app
        .store
        .get_wallet(tenant, wallet.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.balance.get(), stored.consumed.get()), (0, 2_500));
    let txs = app
        .store
        .list_wallet_transactions(tenant, wallet.id, &PageRequest::first(100))
        .await
        .unwrap()
        .items;
    let spent: Vec<_> = txs
        .iter()
        .filter(|t| t.kind == WalletTransactionKind::Consumed)
        .collect();
    assert_eq!(spent.iter().map(|t| t.amount.get()).sum::<i64>(), -2_500);
    // Each consumption names the one invoice that took it.
    for t in &spent {
        assert_eq!(t.status, WalletTransactionStatus::Settled);
        let by = invoices
            .iter()
            .filter(|i| i.wallets_applied.iter().any(|w| w.transaction_id == t.id))
            .count();
        assert_eq!(by, 1);
    }
    let settled: i64 = txs
        .iter()
        .filter(|t| t.status == WalletTransactionStatus::Settled)
        .map(|t| t.amount.get())
        .sum();
    assert_eq!(settled, stored.balance.get());
}

/// The same on the memory store, interleaving at every store operation (seeded delays on
/// the paused clock): a finalization lost its wallet write to another at least once.
#[tokio::test(start_paused = true)]
async fn eight_concurrent_finalizations_spend_each_wallet_credit_once_in_memory() {
    let mut lost = 0;
    for seed in 0..4 {
        let (app, racing) = billing_tests::racing_app(seed, true);
        eight_concurrent_finalizations_spend_each_wallet_credit_once(app, Races::default()).await;
        lost += racing.refused_of("InvoiceStore", "save_invoice");
    }
    assert!(lost > 0, "no finalization lost a race: they did not race");
}

billing_tests::racing_on_the_stand_in!(
    eight_concurrent_finalizations_spend_each_wallet_credit_once
);

billing_tests::on_both_stores!(a_wallet_pays_invoices_and_paid_credits_arrive_once);
