//! Tax over HTTP on both stores (user story 12, seed tests T121–T126): a US seller's state
//! registration, EU VAT (domestic, One-Stop-Shop consumer rate, reverse charge for a
//! business with a valid VAT id), an exempt account, a rate changed from a date across a
//! test clock, a tax-inclusive price and half of it refunded, a VAT id with a wrong check
//! digit refused, a plan price's `tax_behavior` overriding the tenant's default, and every
//! kind of preview taxed as the invoice later made.
//!
//! Amounts are checked to the cent. Stripe's tax rates behave the same way for the
//! inclusive case (`inclusive: true` rates take `amount × p / (100 + p)` out of the price:
//! €119.00 at 19 % is €100.00 net and €19.00 tax).

use std::sync::Arc;

use billing_app::ports::{EventFilter, PageRequest, Store};
use billing_app::{App, Caller};
use billing_aws::vies::ViesRegistry;
use billing_domain::customers::tenant::TenantMode;
use billing_domain::events::types::EventType;
use billing_tests::api::{problem, Api};
use billing_tests::clock::ManualClock;
use billing_tests::fake_vies::{FakeVies, Vies};
use billing_tests::Races;
use jiff::SignedDuration;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A tenant with `settings` as its tax settings, and the EU standard VAT rates loaded when
/// `eu_rates`.
async fn seller(app: App, name: &str, settings: Value, eu_rates: bool) -> Api {
    let (api, _) = Api::start(app, name).await;
    api.ok(Method::PUT, "/v1/settings/tax", Some(&settings))
        .await;
    if eu_rates {
        api.post("/v1/tax-rates/eu-standard-vat", json!({})).await;
    }
    api
}

async fn account(api: &Api, body: Value) -> String {
    api.created("/v1/accounts", body).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A draft one-off invoice of one €/$100.00 line for `account`.
async fn invoice_of_100(api: &Api, account: &str) -> Value {
    api.created(
        "/v1/invoices",
        json!({"account": account, "lines": [{"description": "Services", "amount": 10000}],
               "collection_method": "send_invoice"}),
    )
    .await
}

fn line_tax(invoice: &Value) -> (i64, i64, i64) {
    (
        invoice["lines"][0]["tax_amount"].as_i64().unwrap(),
        invoice["tax_total"].as_i64().unwrap(),
        invoice["total"].as_i64().unwrap(),
    )
}

/// T121: a US seller registered in California charges a Californian customer the state
/// rate and an Oregonian none (outside its registrations, said on the invoice).
async fn test_calculate_tax_for_jurisdiction(app: App) {
    let api = seller(
        app,
        "Tax US",
        json!({"country": "US", "region": "CA", "tax_ids": ["12-3456789"]}),
        false,
    )
    .await;
    api.created(
        "/v1/tax-rates",
        json!({"display_name": "California sales tax", "percentage": "7.25", "country": "US",
               "region": "CA", "tax_type": "sales_tax"}),
    )
    .await;
    let ca = account(
        &api,
        json!({"email": "ca@acme.test", "currency": "usd",
               "billing_address": {"country": "US", "state": "CA", "postal_code": "94105"}}),
    )
    .await;
    let or = account(
        &api,
        json!({"email": "or@acme.test", "currency": "usd",
               "billing_address": {"country": "US", "state": "OR", "postal_code": "97201"}}),
    )
    .await;
    let taxed = invoice_of_100(&api, &ca).await;
    assert_eq!(line_tax(&taxed), (725, 725, 10725), "{taxed}");
    assert_eq!(taxed["tax_summary"][0]["jurisdiction"], "US-CA");
    assert_eq!(taxed["tax_summary"][0]["amount"], 725);
    assert_eq!(taxed["lines"][0]["taxes"][0]["percentage"], "7.25");
    assert_eq!(taxed["seller_tax_ids"], json!(["12-3456789"]));
    let untaxed = invoice_of_100(&api, &or).await;
    assert_eq!(line_tax(&untaxed), (0, 0, 10000), "{untaxed}");
    assert_eq!(untaxed["tax_reason"], "not_registered");
    assert_eq!(untaxed["lines"][0]["tax_reason"], "not_registered");
    assert!(untaxed["tax_note"]
        .as_str()
        .unwrap()
        .contains("registrations"));
}

/// T123: a German seller with the EU rates loaded: a French business with a valid VAT id
/// is reverse-charged (0 %, the note, both VAT ids), a French consumer pays the French
/// rate, a German consumer the German one.
async fn test_eu_vat_reverse_charge(app: App) {
    let api = seller(
        app,
        "Tax DE",
        json!({"country": "DE", "tax_ids": ["DE 136 695 976"]}),
        false,
    )
    .await;
    let loaded = api.post("/v1/tax-rates/eu-standard-vat", json!({})).await;
    assert_eq!(
        loaded.as_array().unwrap().len(),
        29,
        "27 states, EE and RO changed in 2025"
    );
    let again = api.post("/v1/tax-rates/eu-standard-vat", json!({})).await;
    assert_eq!(again, loaded, "loading twice loads once");
    assert_eq!(api.list("/v1/tax-rates").await.len(), 29);

    let business = account(
        &api,
        json!({"email": "fr-b@acme.test", "currency": "eur", "vat_id": "FR 23 334 175 221",
               "billing_address": {"country": "FR"}}),
    )
    .await;
    let consumer_fr = account(
        &api,
        json!({"email": "fr-c@acme.test", "currency": "eur", "billing_address": {"country": "FR"}}),
    )
    .await;
    let consumer_de = account(
        &api,
        json!({"email": "de-c@acme.test", "currency": "eur", "billing_address": {"country": "DE"}}),
    )
    .await;
    let reverse = invoice_of_100(&api, &business).await;
    assert_eq!(line_tax(&reverse), (0, 0, 10000), "{reverse}");
    assert_eq!(reverse["tax_reason"], "eu_reverse_charge");
    assert!(reverse["tax_note"]
        .as_str()
        .unwrap()
        .contains("Reverse charge"));
    assert_eq!(reverse["seller_tax_ids"], json!(["DE136695976"]));
    assert_eq!(reverse["buyer_tax_ids"], json!(["FR23334175221"]));
    // Finalizing keeps what the draft said.
    let id = reverse["id"].as_str().unwrap();
    let open = api
        .post(&format!("/v1/invoices/{id}/finalize"), json!({}))
        .await;
    assert_eq!(open["tax_note"], reverse["tax_note"]);

    let fr = invoice_of_100(&api, &consumer_fr).await;
    assert_eq!(line_tax(&fr), (2000, 2000, 12000), "{fr}");
    assert_eq!(fr["tax_reason"], "eu_one_stop_shop");
    assert_eq!(fr["tax_summary"][0]["jurisdiction"], "FR");
    let de = invoice_of_100(&api, &consumer_de).await;
    assert_eq!(line_tax(&de), (1900, 1900, 11900), "{de}");
    assert_eq!(de["tax_reason"], "domestic");
}

/// T122: an exempt account pays no tax, and its invoice says why.
async fn test_tax_exempt_account(app: App) {
    let api = seller(app, "Tax exempt", json!({"country": "DE"}), true).await;
    let exempt = account(
        &api,
        json!({"email": "ngo@acme.test", "currency": "eur", "tax_exempt": "exempt",
               "billing_address": {"country": "DE"}}),
    )
    .await;
    let invoice = invoice_of_100(&api, &exempt).await;
    assert_eq!(line_tax(&invoice), (0, 0, 10000), "{invoice}");
    assert_eq!(invoice["tax_reason"], "customer_exempt");
    assert!(invoice["tax_note"].as_str().unwrap().contains("exempt"));
    assert_eq!(invoice["tax_summary"], json!([]));
}

/// A test clock, and a euro account on it in `country` with a card that pays.
async fn clock_customer(api: &Api, at: &str, country: &str) -> (String, String) {
    let clock = api
        .post("/v1/test-clocks", json!({ "frozen_time": at }))
        .await;
    let clock = clock["id"].as_str().unwrap().to_owned();
    let account = account(
        api,
        json!({"email": "clock@acme.test", "currency": "eur", "test_clock": clock,
               "billing_address": {"country": country}}),
    )
    .await;
    api.post(
        &format!("/v1/accounts/{account}/payment-methods"),
        json!({"payment_method": "tok_visa"}),
    )
    .await;
    (clock, account)
}

async fn monthly_plan(api: &Api, amount: i64) -> String {
    plan(api, "monthly", amount, None).await
}

/// A monthly plan `code` of a flat €`amount` (minor units), its tax behaviour `tax_behavior`
/// (`null`: the tenant's default).
async fn plan(api: &Api, code: &str, amount: i64, tax_behavior: Option<&str>) -> String {
    api.created(
        "/v1/plans",
        json!({"code": code, "name": code, "interval": {"unit": "month"},
               "charges": {"recurring_fee": {"tax_behavior": tax_behavior,
                   "prices": {"eur": {"model": "flat_fee", "amount": amount}}}}}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// T124/T125: 19 % changed to 16 % from 2027-02-01: the January invoice keeps 19 %, the
/// February one takes 16 %; the old rate is ended, not edited.
async fn test_auto_update_on_rate_change(app: App) {
    let api = seller(app, "Tax change", json!({"country": "DE"}), false).await;
    let old = api
        .created(
            "/v1/tax-rates",
            json!({"display_name": "USt", "percentage": "19", "country": "DE", "tax_type": "vat",
                   "effective_from": "2020-01-01T00:00:00Z"}),
        )
        .await;
    let old_id = old["id"].as_str().unwrap();
    let new = api
        .created(
            &format!("/v1/tax-rates/{old_id}/change"),
            json!({"percentage": "16", "effective_from": "2027-02-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(new["replaces"], old["id"]);
    let ended = api.get(&format!("/v1/tax-rates/{old_id}")).await;
    assert_eq!(
        (ended["percentage"].as_str(), ended["effective_to"].as_str()),
        (Some("19"), Some("2027-02-01T00:00:00Z"))
    );
    let twice = api
        .send(
            Method::POST,
            &format!("/v1/tax-rates/{old_id}/change"),
            Some(&json!({"percentage": "15", "effective_from": "2027-03-01T00:00:00Z"})),
        )
        .await;
    problem(twice, StatusCode::CONFLICT, "tax_rate_ended").await;

    let plan = monthly_plan(&api, 10000).await;
    let (clock, account) = clock_customer(&api, "2027-01-01T00:00:00Z", "DE").await;
    let sub = api
        .created(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan}),
        )
        .await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    api.advance_clock(&clock, "2027-02-01T00:00:00Z").await;
    let mut invoices = api.invoices(&sub).await;
    invoices.sort_by_key(|i| i["period"]["start"].as_str().unwrap().to_owned());
    let taxes: Vec<(i64, i64)> = invoices
        .iter()
        .map(|i| {
            (
                i["tax_total"].as_i64().unwrap(),
                i["total"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(taxes, [(1900, 11900), (1600, 11600)], "{invoices:?}");
    assert_eq!(invoices[1]["tax_summary"][0]["tax_rate_id"], new["id"]);
}

/// T126: a tax-inclusive price of €119.00 at 19 % is €100.00 net and €19.00 tax; refunding
/// half of the payment gives back half of the tax on the credit note.
async fn an_inclusive_price_and_half_refunded_reverses_half_the_tax(app: App) {
    let api = seller(
        app,
        "Tax inclusive",
        json!({"country": "DE", "prices_include_tax": true}),
        true,
    )
    .await;
    let plan = monthly_plan(&api, 11900).await;
    let (clock, account) = clock_customer(&api, "2027-01-01T00:00:00Z", "DE").await;
    let sub = api
        .created(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan}),
        )
        .await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    // The first invoice's payment runs on the clock.
    api.advance_clock(&clock, "2027-01-01T01:00:00Z").await;
    let invoice = api.invoices(&sub).await.remove(0);
    let line = &invoice["lines"][0];
    assert_eq!(
        (
            line["amount"].as_i64(),
            line["total_excluding_tax"].as_i64(),
            line["tax_amount"].as_i64()
        ),
        (Some(11900), Some(10000), Some(1900)),
        "{invoice}"
    );
    assert_eq!(
        (invoice["total"].as_i64(), invoice["tax_total"].as_i64()),
        (Some(11900), Some(1900))
    );
    assert_eq!(invoice["status"], "paid", "{invoice}");
    let id = invoice["id"].as_str().unwrap();
    let payments = api.list(&format!("/v1/payments?invoice={id}")).await;
    let payment = payments[0]["id"].as_str().unwrap();
    let note = api
        .created(
            &format!("/v1/payments/{payment}/refunds"),
            json!({"amount": 5950}),
        )
        .await;
    assert_eq!(
        (note["amount"].as_i64(), note["tax_amount"].as_i64()),
        (Some(5950), Some(950)),
        "{note}"
    );
}

/// A VAT id with a wrong check digit is refused on create and on update, naming the field;
/// so is a seller's.
async fn a_vat_id_with_a_bad_check_digit_is_refused(app: App) {
    let (api, _) = Api::start(app, "Tax ids").await;
    let refused = api
        .send(
            Method::POST,
            "/v1/accounts",
            Some(&json!({"email": "x@acme.test", "currency": "eur", "vat_id": "DE136695978"})),
        )
        .await;
    let body = problem(refused, StatusCode::BAD_REQUEST, "invalid_vat_id").await;
    assert_eq!(body["param"], "vat_id");
    let ok = account(
        &api,
        json!({"email": "y@acme.test", "currency": "eur", "vat_id": "DE136695976"}),
    )
    .await;
    let patch = api
        .send(
            Method::PATCH,
            &format!("/v1/accounts/{ok}"),
            Some(&json!({"vat_id": "FR24334175221"})),
        )
        .await;
    assert_eq!(
        problem(patch, StatusCode::BAD_REQUEST, "invalid_vat_id").await["param"],
        "vat_id"
    );
    let settings = api
        .send(
            Method::PUT,
            "/v1/settings/tax",
            Some(&json!({"country": "DE", "tax_ids": ["DE136695978"]})),
        )
        .await;
    assert_eq!(
        problem(settings, StatusCode::BAD_REQUEST, "invalid_vat_id").await["param"],
        "tax_ids[0]"
    );
    let none = api.send(Method::GET, "/v1/settings/tax", None).await;
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
}

/// A subscription of a new euro account in `country` (on a test clock at 2027-01-01) to
/// `plan`: its clock, account, id and first invoice.
async fn subscribed(api: &Api, plan: &str, country: &str) -> (String, String, String, Value) {
    let (clock, account) = clock_customer(api, "2027-01-01T00:00:00Z", country).await;
    let sub = api
        .created(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan}),
        )
        .await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    let invoice = api.invoices(&sub).await.remove(0);
    (clock, account, sub, invoice)
}

/// A line's `(amount, net, tax, gross)` and the invoice's `(tax_total, total)`.
fn first_line(invoice: &Value) -> ((i64, i64, i64, i64), (i64, i64)) {
    let line = &invoice["lines"][0];
    let n = |v: &Value| v.as_i64().unwrap();
    (
        (
            n(&line["amount"]),
            n(&line["total_excluding_tax"]),
            n(&line["tax_amount"]),
            n(&line["total"]),
        ),
        (n(&invoice["tax_total"]), n(&invoice["total"])),
    )
}

/// A plan's price overrides the tenant's default either way (Stripe's `tax_behavior` on a
/// price: "inclusive" means the price contains the tax, "exclusive" that it is added): a
/// €119.00 inclusive price under an exclusive tenant is €100.00 net and €19.00 tax; a
/// €100.00 exclusive price under an inclusive tenant is €100.00 net plus €19.00; a price
/// without one follows the tenant.
async fn a_plan_price_overrides_the_tenant_tax_default(app: App) {
    let api = seller(app, "Tax behavior", json!({"country": "DE"}), true).await;
    let gross = plan(&api, "gross", 11900, Some("inclusive")).await;
    let shown = api.get(&format!("/v1/plans/{gross}")).await;
    assert!(
        shown.to_string().contains(r#""tax_behavior":"inclusive""#),
        "{shown}"
    );
    let (_, _, _, invoice) = subscribed(&api, &gross, "DE").await;
    assert_eq!(
        first_line(&invoice),
        ((11900, 10000, 1900, 11900), (1900, 11900)),
        "{invoice}"
    );

    api.ok(
        Method::PUT,
        "/v1/settings/tax",
        Some(&json!({"country": "DE", "prices_include_tax": true})),
    )
    .await;
    let net = plan(&api, "net", 10000, Some("exclusive")).await;
    let (_, _, _, invoice) = subscribed(&api, &net, "DE").await;
    assert_eq!(
        first_line(&invoice),
        ((10000, 10000, 1900, 11900), (1900, 11900)),
        "{invoice}"
    );
    // The tenant's default: inclusive now. €100.00 at 19 % inclusive is €84.03 net and
    // €15.97 tax (100 × 19 / 119 = 15.966…, rounded once).
    let default = plan(&api, "default", 10000, None).await;
    let (_, _, _, invoice) = subscribed(&api, &default, "DE").await;
    assert_eq!(
        first_line(&invoice),
        ((10000, 8403, 1597, 10000), (1597, 10000)),
        "{invoice}"
    );
    // A manual line says it itself.
    let de = account(
        &api,
        json!({"email": "m@acme.test", "currency": "eur", "billing_address": {"country": "DE"}}),
    )
    .await;
    let manual = api
        .created(
            "/v1/invoices",
            json!({"account": de, "collection_method": "send_invoice", "lines": [
                {"description": "Net", "amount": 10000, "tax_behavior": "exclusive"},
                {"description": "Gross", "amount": 10000}]}),
        )
        .await;
    assert_eq!(
        (
            manual["lines"][0]["tax_amount"].as_i64(),
            manual["lines"][1]["tax_amount"].as_i64(),
            manual["total"].as_i64()
        ),
        (Some(1900), Some(1597), Some(21900)),
        "{manual}"
    );
}

/// The tax figures a preview and an invoice must agree on: per line, per rate, in total.
fn tax_figures(invoice: &Value) -> (Vec<(i64, String)>, Value, i64, i64) {
    let lines = invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["tax_amount"].as_i64().unwrap(),
                l["tax_reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let summary = invoice
        .get("tax_summary")
        .or_else(|| invoice.get("taxes"))
        .cloned()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| json!([t["tax_rate_id"], t["amount"]]))
        .collect();
    (
        lines,
        summary,
        invoice["tax_total"].as_i64().unwrap(),
        invoice["total"].as_i64().unwrap(),
    )
}

/// Every preview taxes as the invoice will, to the cent: a hypothetical subscription for a
/// customer's details, raw lines for an account, a subscription's next invoice and the live
/// usage projection each equal the invoice later made. Without a customer a preview is
/// taxed as for one without an address (the seller's rate, said so), and a customer's VAT
/// id is checked like an account's.
async fn every_preview_taxes_as_the_invoice_will(app: App) {
    let api = seller(app, "Tax previews", json!({"country": "DE"}), true).await;
    let monthly = monthly_plan(&api, 10000).await;

    // A French consumer, before it exists.
    let hypothetical = api
        .post(
            "/v1/invoices/preview",
            json!({"plan": monthly, "currency": "eur", "start": "2027-01-01T00:00:00Z",
                   "customer_details": {"billing_address": {"country": "fr"}}}),
        )
        .await["invoice"]
        .clone();
    assert_eq!(
        (
            hypothetical["tax_total"].as_i64(),
            hypothetical["total"].as_i64()
        ),
        (Some(2000), Some(12000)),
        "{hypothetical}"
    );
    let (clock, fr, sub, first) = subscribed(&api, &monthly, "FR").await;
    assert_eq!(tax_figures(&hypothetical), tax_figures(&first), "{first}");
    assert_eq!(first["tax_reason"], "eu_one_stop_shop");

    // Raw lines for that account, then the same lines invoiced.
    let lines = json!([{"description": "Setup", "source": {"type": "fixed", "amount": 33333}},
                       {"description": "Extra", "source": {"type": "fixed", "amount": 1}}]);
    let preview = api
        .post(
            "/v1/invoices/preview",
            json!({"currency": "eur", "lines": lines, "account": fr}),
        )
        .await["invoice"]
        .clone();
    let invoice = api
        .created(
            "/v1/invoices",
            json!({"account": fr, "collection_method": "send_invoice", "lines": [
                {"description": "Setup", "amount": 33333}, {"description": "Extra", "amount": 1}]}),
        )
        .await;
    let id = invoice["id"].as_str().unwrap();
    let finalized = api
        .post(&format!("/v1/invoices/{id}/finalize"), json!({}))
        .await;
    assert_eq!(finalized["status"], "open");
    // 333.33 × 20 % = 66.666 → 66.67; 0.01 × 20 % = 0.002 → 0.00: each line rounded once.
    assert_eq!(tax_figures(&preview).2, 6667, "{preview}");
    assert_eq!(
        tax_figures(&preview),
        tax_figures(&finalized),
        "{finalized}"
    );

    // The subscription's next invoice, and the live usage projection of its period end.
    let next = api
        .post("/v1/invoices/preview", json!({"subscription": sub}))
        .await["invoice"]
        .clone();
    let usage = api.get(&format!("/v1/subscriptions/{sub}/usage")).await;
    let projected = usage["periods"][0]["projected_invoice"].clone();
    api.advance_clock(&clock, "2027-02-01T00:00:00Z").await;
    let mut invoices = api.invoices(&sub).await;
    invoices.sort_by_key(|i| i["period"]["start"].as_str().unwrap().to_owned());
    let renewal = &invoices[1];
    assert_eq!(tax_figures(&next), tax_figures(renewal), "{renewal}");
    assert_eq!(tax_figures(&projected), tax_figures(renewal), "{usage}");
    assert_eq!(tax_figures(renewal).2, 2000);

    // No customer: the seller's own rate, and the line says why.
    let unknown = api
        .post(
            "/v1/invoices/preview",
            json!({"currency": "eur", "lines": [{"description": "x", "source": {"type": "fixed", "amount": 10000}}]}),
        )
        .await["invoice"]
        .clone();
    assert_eq!(
        tax_figures(&unknown),
        (
            vec![(1900, "address_missing".to_owned())],
            tax_figures(&unknown).1,
            1900,
            11900
        )
    );
    // A French business: reverse-charged; a VAT id with a bad check digit: refused.
    let business = api
        .post(
            "/v1/invoices/preview",
            json!({"plan": monthly, "currency": "eur",
                   "customer_details": {"billing_address": {"country": "FR"}, "vat_id": "FR23334175221"}}),
        )
        .await["invoice"]
        .clone();
    assert_eq!(
        (
            business["tax_total"].as_i64(),
            business["lines"][0]["tax_reason"].as_str()
        ),
        (Some(0), Some("eu_reverse_charge"))
    );
    let refused = api
        .send(
            Method::POST,
            "/v1/invoices/preview",
            Some(&json!({"plan": monthly, "currency": "eur",
                         "customer_details": {"vat_id": "FR24334175221"}})),
        )
        .await;
    assert_eq!(
        problem(refused, StatusCode::BAD_REQUEST, "invalid_vat_id").await["param"],
        "customer_details.vat_id"
    );
}

/// With `verify_vat_ids_online`, VAT ids are asked of VIES (here a fake on 127.0.0.1) when
/// they are set: a registered one is `verified` and reverse-charged; one VIES says is not
/// registered is refused with `invalid_vat_id`; one VIES cannot answer for is accepted
/// `unverified` and taxed as a consumer's until an invoice finds it confirmed. Answers are
/// cached (an hour), "cannot answer" never; a tenant without the setting never asks.
async fn vies_checks_vat_ids_when_the_tenant_asks(app: App) {
    let vies = FakeVies::start().await;
    vies.answer("FR23334175221", Vies::Registered);
    vies.answer("BE428759497", Vies::NotRegistered);
    vies.answer("ATU13585627", Vies::Down);
    let app = app.with_vat_registry(Arc::new(ViesRegistry::new(Some(&vies.url)).unwrap()));
    let offline = seller(app.clone(), "Tax offline", json!({"country": "DE"}), true).await;
    let api = seller(
        app,
        "Tax VIES",
        json!({"country": "DE", "verify_vat_ids_online": true}),
        true,
    )
    .await;
    let business = |email: &str, vat_id: &str, country: &str| {
        json!({"email": email, "currency": "eur", "vat_id": vat_id,
               "billing_address": {"country": country}})
    };

    let fr = api
        .created(
            "/v1/accounts",
            business("fr@acme.test", "FR 23 334 175 221", "FR"),
        )
        .await;
    assert_eq!(fr["vat_id_status"], "verified", "{fr}");
    assert_eq!(
        vies.requests(),
        [json!({"countryCode": "FR", "vatNumber": "23334175221"})]
    );
    let twin = api
        .created(
            "/v1/accounts",
            business("fr2@acme.test", "FR23334175221", "FR"),
        )
        .await;
    assert_eq!(twin["vat_id_status"], "verified");
    assert_eq!(vies.requests().len(), 1, "the answer is cached");
    let reverse = invoice_of_100(&api, fr["id"].as_str().unwrap()).await;
    assert_eq!(
        (
            reverse["tax_total"].as_i64(),
            reverse["tax_reason"].as_str()
        ),
        (Some(0), Some("eu_reverse_charge"))
    );

    let refused = api
        .send(
            Method::POST,
            "/v1/accounts",
            Some(&business("be@acme.test", "BE428759497", "BE")),
        )
        .await;
    let body = problem(refused, StatusCode::BAD_REQUEST, "invalid_vat_id").await;
    assert_eq!(body["param"], "vat_id");
    let patch = api
        .send(
            Method::PATCH,
            &format!("/v1/accounts/{}", twin["id"].as_str().unwrap()),
            Some(&json!({"vat_id": "BE428759497"})),
        )
        .await;
    problem(patch, StatusCode::BAD_REQUEST, "invalid_vat_id").await;
    assert_eq!(vies.requests().len(), 2, "not registered is cached too");

    let at = api
        .created(
            "/v1/accounts",
            business("at@acme.test", "ATU13585627", "AT"),
        )
        .await;
    assert_eq!(at["vat_id_status"], "unverified", "{at}");
    let at_id = at["id"].as_str().unwrap();
    // VIES still cannot answer (another way): taxed as a consumer, Austria's 20 %.
    vies.answer("ATU13585627", Vies::MemberStateUnavailable);
    let consumer = invoice_of_100(&api, at_id).await;
    assert_eq!(
        (
            consumer["tax_total"].as_i64(),
            consumer["tax_reason"].as_str()
        ),
        (Some(2000), Some("eu_one_stop_shop")),
        "{consumer}"
    );
    assert_eq!(vies.requests().len(), 4, "cannot answer is asked again");
    vies.answer("ATU13585627", Vies::Registered);
    let confirmed = invoice_of_100(&api, at_id).await;
    assert_eq!(
        (
            confirmed["tax_total"].as_i64(),
            confirmed["tax_reason"].as_str()
        ),
        (Some(0), Some("eu_reverse_charge"))
    );
    invoice_of_100(&api, at_id).await;
    assert_eq!(vies.requests().len(), 5);

    // Off by default: only the offline checks.
    let unchecked = offline
        .created(
            "/v1/accounts",
            business("be@acme.test", "BE428759497", "BE"),
        )
        .await;
    assert_eq!(unchecked.get("vat_id_status"), None, "{unchecked}");
    let reverse = invoice_of_100(&offline, unchecked["id"].as_str().unwrap()).await;
    assert_eq!(reverse["tax_reason"], "eu_reverse_charge");
    assert_eq!(vies.requests().len(), 5);
}

/// The tax settings a warm instance drafts invoices by are at most 60 s old: a change made
/// through another instance taxes that instance's invoices from 60 s after it read them
/// (just before, still the old way); the instance that made the change applies it at once.
async fn a_settings_change_elsewhere_applies_within_60_seconds(store: Arc<dyn Store>) {
    let clock = ManualClock::at("2027-03-01T00:00:00Z".parse().unwrap());
    let a = billing_tests::app_with_clock(store.clone(), clock.clone());
    let b = billing_tests::app_with_clock(store, clock.clone());
    let (_, issued) = a
        .customers
        .create_tenant("Tax cache", TenantMode::Sandbox)
        .await
        .unwrap();
    let api_a = Api::new(billing_tests::serve(a).await, &issued.secret);
    let api_b = Api::new(billing_tests::serve(b).await, &issued.secret);
    api_a
        .ok(
            Method::PUT,
            "/v1/settings/tax",
            Some(&json!({"country": "DE"})),
        )
        .await;
    api_a.post("/v1/tax-rates/eu-standard-vat", json!({})).await;
    let de = account(
        &api_a,
        json!({"email": "de@acme.test", "currency": "eur", "billing_address": {"country": "DE"}}),
    )
    .await;
    let total = |invoice: Value| invoice["total"].as_i64().unwrap();
    assert_eq!(total(invoice_of_100(&api_b, &de).await), 11900);
    api_a
        .ok(
            Method::PUT,
            "/v1/settings/tax",
            Some(&json!({"country": "DE", "prices_include_tax": true})),
        )
        .await;
    assert_eq!(
        total(invoice_of_100(&api_a, &de).await),
        10000,
        "at once here"
    );
    clock.advance(SignedDuration::from_secs(59));
    assert_eq!(
        total(invoice_of_100(&api_b, &de).await),
        11900,
        "stale there"
    );
    clock.advance(SignedDuration::from_secs(1));
    assert_eq!(
        total(invoice_of_100(&api_b, &de).await),
        10000,
        "at the bound"
    );
}

billing_tests::on_both_stores!(
    test_calculate_tax_for_jurisdiction,
    test_eu_vat_reverse_charge,
    test_tax_exempt_account,
    test_auto_update_on_rate_change,
    an_inclusive_price_and_half_refunded_reverses_half_the_tax,
    a_vat_id_with_a_bad_check_digit_is_refused,
    a_plan_price_overrides_the_tenant_tax_default,
    every_preview_taxes_as_the_invoice_will,
    vies_checks_vat_ids_when_the_tenant_asks,
    a_settings_change_elsewhere_applies_within_60_seconds,
);

/// Four deliveries of "load the EU rates" at once load them once: 29 rates, each created
/// once (one `tax_rate.created` event each), and every caller gets the same 29.
async fn loading_the_eu_rates_at_once_loads_them_once(app: App, races: Races) {
    let (tenant, issued) = app
        .customers
        .create_tenant("Tax race", TenantMode::Sandbox)
        .await
        .unwrap();
    let caller = Caller::of_key(&issued.key, None);
    races.begin();
    let loads: Vec<_> = (0..4)
        .map(|_| {
            let (app, caller) = (app.clone(), caller.clone());
            tokio::spawn(async move { app.tax.load_eu_standard_vat(&caller).await })
        })
        .collect();
    let mut answers = Vec::new();
    for load in loads {
        answers.push(load.await.unwrap().unwrap());
    }
    assert_eq!(answers[0].len(), 29);
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    let page = PageRequest::first(100);
    let stored = app
        .store
        .list_tax_rates(tenant.id, &page)
        .await
        .unwrap()
        .items;
    assert_eq!(stored, answers[0]);
    let created = app
        .store
        .list_events(tenant.id, &EventFilter::default(), &page)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.event_type == EventType::TaxRateCreated)
        .count();
    assert_eq!(created, 29, "each rate created once");
}

/// The same on the memory store, interleaving at every store operation (seeded delays on
/// tokio's paused clock): some load lost its insert to another and read the winner's rates.
#[tokio::test(start_paused = true)]
async fn loading_the_eu_rates_at_once_loads_them_once_in_memory() {
    let mut lost = 0;
    for seed in 0..4 {
        let (app, racing) = billing_tests::racing_app(seed, true);
        loading_the_eu_rates_at_once_loads_them_once(app, Races::default()).await;
        lost += racing.refused_of("TaxStore", "insert_tax_rates");
    }
    assert!(lost > 0, "no load lost its insert to another");
}

billing_tests::racing_on_the_stand_in!(loading_the_eu_rates_at_once_loads_them_once);
