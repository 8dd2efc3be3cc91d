//! Customer emails over HTTP, on both stores: a `send_invoice` subscription on a test
//! clock gets one "invoice issued" email per invoice, HTML and text, in the tenant's
//! branding, whose link opens the invoice's page (and pays it: a receipt follows, once);
//! sending again, redelivering the jobs or billing again sends nothing twice. Then the
//! other kinds (payment failed, action required, trial ending, credit note), the tenant's
//! switches and reply-to.
//!
//! The API runs without a notifier, as in AWS; a second app over the same store plays the
//! payment worker, which sends what the sweep hands it.

use std::sync::Arc;

use billing_app::ports::Notification;
use billing_app::App;
use billing_aws::SandboxGateway;
use billing_memory::MemoryNotifier;
use billing_tests::api::Api;
use billing_tests::send_due_notices;
use reqwest::{redirect, Client, StatusCode};
use serde_json::{json, Value};

/// The API, and the payment worker sending emails through `notifier` with links to the API.
async fn start(app: App, notifier: Arc<MemoryNotifier>) -> (Api, App, Arc<SandboxGateway>) {
    let gateway = Arc::new(SandboxGateway::new());
    let app = app.with_gateway(gateway.clone());
    let (api, _) = Api::start(app.clone(), "Mail Co").await;
    let worker = app.with_notifier(notifier).with_public_url(api.base());
    (api, worker, gateway)
}

fn of_kind(notifier: &MemoryNotifier, kind: &str) -> Vec<Notification> {
    notifier
        .sent()
        .into_iter()
        .filter(|n| n.key.contains(&format!("/email/{kind}-")))
        .collect()
}

/// The URL of the action labelled `label` in a text part.
fn link(text: &str, label: &str) -> String {
    let marker = format!("{label}: ");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("no {label} in {text}"))
        + marker.len();
    text[start..].lines().next().unwrap().trim().to_owned()
}

fn browser() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the hidden input `name` in `html`.
fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// Pays the invoice behind a hosted page link with `card`, as the customer would.
async fn pay(page: &str, card: &str) {
    let html = browser()
        .get(page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let form = [
        ("form_token", field(&html, "form_token")),
        ("version", field(&html, "version")),
        ("card", card.to_owned()),
    ];
    let sent = browser()
        .post(format!("{page}/pay"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
}

async fn clock_account(api: &Api, email: &str) -> (String, String) {
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
            json!({"email": email, "name": "Ada <Lovelace>", "currency": "usd", "test_clock": clock}),
        )
        .await;
    (clock, account["id"].as_str().unwrap().to_owned())
}

async fn subscribe(api: &Api, account: &str, trial_days: u32) -> Value {
    let plan = api
        .post(
            "/v1/plans",
            json!({"code": format!("pro-{}", ulid::Ulid::new().to_string().to_lowercase()), "name": "Pro", "interval": {"unit": "month"},
                   "trial_days": trial_days,
                   "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 4900}}}}}),
        )
        .await;
    api.post(
        "/v1/subscriptions",
        json!({"account": account, "plan": plan["id"], "collection_method": "send_invoice",
               "days_until_due": 14}),
    )
    .await
}

async fn a_send_invoice_subscription_gets_one_email_per_invoice_and_a_receipt(app: App) {
    let notifier = Arc::new(MemoryNotifier::default());
    let (api, worker, _) = start(app, notifier.clone()).await;
    api.patch(
        "/v1/settings/branding",
        json!({"legal_name": "Mail & Co <GmbH>", "support_email": "help@mail.test",
               "accent_color": "#0ea5e9"}),
    )
    .await;
    let (clock, account) = clock_account(&api, "ada@customer.test").await;
    subscribe(&api, &account, 0).await;
    api.advance_clock(&clock, "2027-02-01T00:00:00Z").await;
    api.advance_clock(&clock, "2027-03-01T00:00:00Z").await;
    let invoices = api.list(&format!("/v1/invoices?account={account}")).await;
    assert_eq!(invoices.len(), 3, "the first period and two renewals");

    let jobs = send_due_notices(&worker).await;
    let issued = of_kind(&notifier, "invoice_issued");
    assert_eq!(issued.len(), 3, "{:#?}", notifier.sent());
    for invoice in &invoices {
        let number = invoice["number"].as_str().unwrap();
        let email = issued
            .iter()
            .find(|n| n.subject.contains(number))
            .unwrap_or_else(|| panic!("no email for {number}"));
        assert_eq!(email.to, "ada@customer.test");
        assert_eq!(
            email.subject,
            format!("Mail & Co <GmbH>: invoice {number} for $49.00")
        );
        assert_eq!(email.reply_to.as_deref(), Some("help@mail.test"));
        assert!(email.body.contains("Amount due: $49.00"), "{}", email.body);
        assert!(email.body.contains("Due: "), "{}", email.body);
        assert!(email.html.contains("Mail &amp; Co &lt;GmbH&gt;"), "escaped");
        assert!(email.html.contains("#0ea5e9"), "the tenant's accent colour");
        let page = link(&email.body, "Pay this invoice");
        assert!(page.starts_with(&format!("{}/i/", api.base())), "{page}");
        assert_eq!(link(&email.body, "Download the PDF"), format!("{page}/pdf"));
        assert!(email.html.contains(&format!("href=\"{page}\"")));
        let opened = browser().get(&page).send().await.unwrap();
        assert_eq!(opened.status(), StatusCode::OK);
        assert!(opened.text().await.unwrap().contains(number));
    }

    // Everything again: the sweep's jobs redelivered, the clock's billing run again.
    for job in &jobs {
        worker.collection.handle_payment_job(job).await.unwrap();
    }
    billing_tests::sweep_and_bill(&worker).await;
    assert!(
        send_due_notices(&worker).await.is_empty(),
        "nothing left to send"
    );
    assert_eq!(of_kind(&notifier, "invoice_issued").len(), 3);

    // The customer pays the latest from its email: a receipt, once.
    let latest = issued
        .iter()
        .find(|n| n.subject.contains(invoices[0]["number"].as_str().unwrap()))
        .unwrap();
    pay(&link(&latest.body, "Pay this invoice"), "4242424242424242").await;
    let jobs = send_due_notices(&worker).await;
    for job in &jobs {
        worker.collection.handle_payment_job(job).await.unwrap();
    }
    send_due_notices(&worker).await;
    let receipts = of_kind(&notifier, "receipt");
    assert_eq!(receipts.len(), 1, "{:#?}", notifier.sent());
    assert!(receipts[0]
        .subject
        .contains("receipt for your payment of $49.00"));
    assert!(receipts[0]
        .body
        .contains(invoices[0]["number"].as_str().unwrap()));
    assert_eq!(of_kind(&notifier, "invoice_issued").len(), 3);
}

async fn the_other_kinds_follow_the_switches_and_reply_to(app: App) {
    let notifier = Arc::new(MemoryNotifier::default());
    let (api, worker, _) = start(app, notifier.clone()).await;
    assert_eq!(api.get("/v1/settings/emails").await["version"], 0);
    let bad = api
        .send(
            reqwest::Method::PATCH,
            "/v1/settings/emails",
            Some(&json!({"reply_to": "not an address"})),
        )
        .await;
    let problem = billing_tests::api::problem(bad, StatusCode::BAD_REQUEST, "invalid_email").await;
    assert_eq!(problem["param"], "reply_to");
    let settings = api
        .patch(
            "/v1/settings/emails",
            json!({"credit_note_issued": false, "reply_to": "billing@mail.test"}),
        )
        .await;
    assert_eq!(settings["version"], 1);
    assert_eq!(settings["credit_note_issued"], false);
    let updated = api.list("/v1/events?type=email_settings.updated").await;
    assert_eq!(updated.len(), 1);

    // A trial of 7 days: told 3 days before it ends.
    let (clock, account) = clock_account(&api, "ada@customer.test").await;
    subscribe(&api, &account, 7).await;
    api.advance_clock(&clock, "2027-01-05T00:00:00Z").await;
    send_due_notices(&worker).await;
    let trial = of_kind(&notifier, "trial_ending");
    assert_eq!(trial.len(), 1, "{:#?}", notifier.sent());
    assert!(
        trial[0].subject.contains("ends on Jan 8, 2027"),
        "{}",
        trial[0].subject
    );
    assert_eq!(trial[0].reply_to.as_deref(), Some("billing@mail.test"));

    // The trial ends: an invoice; a card that needs 3-D Secure, then one that fails.
    api.advance_clock(&clock, "2027-01-09T00:00:00Z").await;
    send_due_notices(&worker).await;
    let issued = of_kind(&notifier, "invoice_issued");
    assert_eq!(issued.len(), 1);
    let page = link(&issued[0].body, "Pay this invoice");
    pay(&page, "4000002500003155").await;
    send_due_notices(&worker).await;
    let action = of_kind(&notifier, "action_required");
    assert_eq!(action.len(), 1, "{:#?}", notifier.sent());
    let confirm = link(&action[0].body, "Complete the payment");
    let shown = browser()
        .get(&confirm)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(shown.contains("Action required"), "{shown}");

    let (_, other) = clock_account(&api, "grace@customer.test").await;
    subscribe(&api, &other, 0).await;
    send_due_notices(&worker).await;
    let issued = of_kind(&notifier, "invoice_issued");
    let theirs = issued
        .iter()
        .find(|n| n.to == "grace@customer.test")
        .unwrap();
    pay(&link(&theirs.body, "Pay this invoice"), "4000000000000002").await;
    send_due_notices(&worker).await;
    let failed = of_kind(&notifier, "payment_failed");
    assert_eq!(failed.len(), 1, "{:#?}", notifier.sent());
    assert!(failed[0].body.contains("Pay or update your card: "));

    // Paid, then refunded: the credit note's email is switched off; turned on, the next
    // one goes out.
    pay(&link(&theirs.body, "Pay this invoice"), "4242424242424242").await;
    let payments = api.list(&format!("/v1/payments?account={other}")).await;
    let paid = payments
        .iter()
        .find(|p| p["status"] == "succeeded")
        .unwrap();
    let refunds = format!("/v1/payments/{}/refunds", paid["id"].as_str().unwrap());
    api.post(&refunds, json!({"amount": 900})).await;
    send_due_notices(&worker).await;
    assert!(of_kind(&notifier, "credit_note_issued").is_empty());
    assert_eq!(of_kind(&notifier, "receipt").len(), 1);
    api.patch("/v1/settings/emails", json!({"credit_note_issued": true}))
        .await;
    api.post(&refunds, json!({"amount": 1000})).await;
    send_due_notices(&worker).await;
    let notes = of_kind(&notifier, "credit_note_issued");
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].subject.contains("credit note for $10.00"),
        "{}",
        notes[0].subject
    );

    // Nothing is left waiting.
    assert!(send_due_notices(&worker).await.is_empty());
}

billing_tests::on_both_stores!(
    a_send_invoice_subscription_gets_one_email_per_invoice_and_a_receipt,
    the_other_kinds_follow_the_switches_and_reply_to,
);
