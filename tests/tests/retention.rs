//! Retention and erasure over HTTP on a test clock, on both stores: an account deleted on
//! day 0 keeps its data until day 30 and is erased then; its invoice keeps the billing
//! details it was issued with; its audit trail shows the purge; nothing in the table holds
//! its email any more (the DynamoDB table is scanned). A purge that an open invoice
//! blocks is postponed a week, with an event saying why, and runs once the invoice is
//! settled. The export holds everything about the account.

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use billing_app::App;
use billing_tests::api::Api;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

const EMAIL: &str = "ada.lovelace@erasure.test";
const T0: &str = "2026-01-05T10:00:00Z";

fn day(d: i64) -> String {
    let t0: Timestamp = T0.parse().unwrap();
    (t0 + SignedDuration::from_hours(24 * d)).to_string()
}

/// Where the DynamoDB store keeps its items, to scan for what must be gone.
type Table = Option<(Client, String)>;

async fn on_memory() -> (App, Table) {
    (billing_tests::memory_app(), None)
}

async fn on_dynamo() -> (App, Table) {
    let store = billing_tests::dynamo_store().await;
    let table = Some((store.client().clone(), store.table().to_owned()));
    (billing_tests::app(Arc::new(store)), table)
}

/// Every item of the table holding `needle` anywhere, as text.
async fn items_holding(table: &Table, needle: &str) -> Vec<String> {
    let Some((client, name)) = table else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(name)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in page.items() {
            // Events and audit records hold their payloads deflated: read them as text.
            let mut item = item.clone();
            billing_aws::dynamo::unpack(&mut item).unwrap();
            let text = format!("{item:?}");
            if text.contains(needle) {
                found.push(text);
            }
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return found;
        }
    }
}

/// A clock at day 0 and an account on it with every kind of personal data and a card.
async fn customer(api: &Api) -> (String, String) {
    let clock = api
        .post("/v1/test-clocks", json!({ "frozen_time": T0 }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let account = api
        .created(
            "/v1/accounts",
            json!({
                "email": EMAIL, "name": "Ada Lovelace", "currency": "usd", "test_clock": clock,
                "vat_id": "GB980780684", "external_id": "user-1815", "metadata": {"nickname": "enchantress"},
                "billing_address": {"line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"}
            }),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.post(
        &format!("/v1/accounts/{account}/payment-methods"),
        json!({"payment_method": "tok_visa"}),
    )
    .await;
    (clock, account)
}

/// A finalized one-off invoice of the account.
async fn invoice(api: &Api, account: &str, collection_method: &str) -> Value {
    let draft = api
        .created(
            "/v1/invoices",
            json!({"account": account, "collection_method": collection_method,
                   "lines": [{"description": "Analytical engine", "amount": 10_000}]}),
        )
        .await;
    api.post(
        &format!("/v1/invoices/{}/finalize", draft["id"].as_str().unwrap()),
        json!({}),
    )
    .await
}

async fn events_of(api: &Api, account: &str, event_type: &str) -> Vec<Value> {
    api.list(&format!("/v1/events?type={event_type}"))
        .await
        .into_iter()
        .filter(|e| e["data"]["id"] == account || e["data"]["account"] == account)
        .collect()
}

async fn erased_on_day_thirty((app, table): (App, Table)) {
    let (api, _) = Api::start(app, "Retention Co").await;
    let (clock, account) = customer(&api).await;
    let issued = invoice(&api, &account, "charge_automatically").await;
    assert_eq!(issued["billing_details"]["name"], "Ada Lovelace");
    // The card pays it within the hour; then the customer leaves.
    api.advance_clock(&clock, &day(0).replace("10:00", "11:00"))
        .await;
    let id = issued["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/v1/invoices/{id}")).await["status"],
        "paid"
    );
    let deleted = api.delete(&format!("/v1/accounts/{account}")).await;
    assert_eq!(deleted["purge_at"], day(30).replace("10:00", "11:00"));

    api.advance_clock(&clock, &day(29)).await;
    let kept = api.get(&format!("/v1/accounts/{account}")).await;
    assert_eq!(kept["email"], EMAIL, "nothing is erased before day 30");
    assert_eq!(kept["purged_at"], Value::Null);

    api.advance_clock(&clock, &day(31)).await;
    let tombstone = api.get(&format!("/v1/accounts/{account}")).await;
    assert_eq!(tombstone["purged_at"], day(30).replace("10:00", "11:00"));
    for field in ["name", "vat_id", "billing_address", "external_id"] {
        assert_eq!(tombstone[field], Value::Null, "{field}");
    }
    assert_eq!(tombstone["email"], "");
    assert_eq!(tombstone["metadata"], json!({}));
    assert_eq!(tombstone["currency"], "usd");
    let cards = api
        .get(&format!("/v1/accounts/{account}/payment-methods"))
        .await;
    assert_eq!(cards["data"], json!([]));

    // The invoice is a legal record: it keeps who it was issued to.
    let invoice = api.get(&format!("/v1/invoices/{id}")).await;
    assert_eq!(
        invoice["billing_details"],
        json!({"name": "Ada Lovelace", "vat_id": "GB980780684",
               "address": {"line1": "12 St James's Square", "line2": null, "city": "London",
                           "state": null, "postal_code": "SW1Y 4JH", "country": "GB"}})
    );

    // The audit trail shows the purge, by the system, and what it erased (not the values).
    let audit = api
        .get(&format!("/v1/audit-log?entity_id={account}&limit=100"))
        .await;
    let records = audit["data"].as_array().unwrap();
    let purge = records
        .iter()
        .find(|r| r["action"] == "purge")
        .expect("a purge record");
    assert_eq!(purge["changes"]["email"], "[erased]");
    assert_eq!(records.iter().filter(|r| r["action"] == "purge").count(), 1);
    let created = records.iter().find(|r| r["action"] == "create").unwrap();
    assert_eq!(created["changes"]["email"], "[erased]");
    assert_eq!(events_of(&api, &account, "account.purged").await.len(), 1);
    let export = api.get(&format!("/v1/accounts/{account}/export")).await;
    assert!(!export.to_string().contains(EMAIL), "{export}");

    // Nothing in the table holds the email any more.
    assert_eq!(items_holding(&table, EMAIL).await, Vec::<String>::new());
    assert!(
        table.is_none() || !items_holding(&table, "Ada Lovelace").await.is_empty(),
        "the scan reads the invoice, which keeps the name"
    );
}

async fn an_open_invoice_postpones_the_purge((app, table): (App, Table)) {
    let (api, _) = Api::start(app, "Retention Co").await;
    let (clock, account) = customer(&api).await;
    let open = invoice(&api, &account, "send_invoice").await;
    assert_eq!(open["status"], "open");
    api.delete(&format!("/v1/accounts/{account}")).await;

    api.advance_clock(&clock, &day(31)).await;
    let kept = api.get(&format!("/v1/accounts/{account}")).await;
    assert_eq!(
        kept["email"], EMAIL,
        "an account with an open invoice is kept"
    );
    assert_eq!(kept["purge_at"], day(37));
    let postponed = events_of(&api, &account, "account.purge_postponed").await;
    assert_eq!(postponed.len(), 1);
    assert_eq!(
        postponed[0]["data"]["blockers"],
        json!([{"kind": "open_invoice", "id": open["id"]}])
    );

    // Settled out of band, the next try (a week later) erases it.
    api.post(
        &format!("/v1/invoices/{}/void", open["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    api.advance_clock(&clock, &day(38)).await;
    let tombstone = api.get(&format!("/v1/accounts/{account}")).await;
    assert_eq!(tombstone["purged_at"], day(37));
    assert_eq!(items_holding(&table, EMAIL).await, Vec::<String>::new());
}

async fn the_export_holds_everything_about_the_customer((app, _): (App, Table)) {
    let (api, _) = Api::start(app, "Retention Co").await;
    let (_, account) = customer(&api).await;
    let issued = invoice(&api, &account, "send_invoice").await;
    let export = api.get(&format!("/v1/accounts/{account}/export")).await;
    assert_eq!(export["object"], "account_export");
    assert_eq!(export["account"]["email"], EMAIL);
    assert_eq!(export["payment_methods"][0]["last4"], "4242");
    assert_eq!(export["invoices"]["data"][0]["id"], issued["id"]);
    assert_eq!(export["invoices"]["has_more"], false);
    for section in [
        "subscriptions",
        "credit_notes",
        "payments",
        "balance_transactions",
    ] {
        assert!(export[section]["data"].is_array(), "{section}");
    }
    let actions: Vec<&str> = export["audit"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"create"), "{actions:?}");
    let (status, _) = api
        .call(
            reqwest::Method::GET,
            "/v1/accounts/acct_01JD3X7M2Q8Z5V6W9Y0A1B2C3D/export",
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
}

macro_rules! on_both {
    ($($scenario:ident),+ $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::on_memory().await).await;
            })+
        }
        mod dynamo {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::on_dynamo().await).await;
            })+
        }
    };
}

on_both!(
    erased_on_day_thirty,
    an_open_invoice_postpones_the_purge,
    the_export_holds_everything_about_the_customer,
);
