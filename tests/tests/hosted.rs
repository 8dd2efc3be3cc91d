//! Hosted invoice pages over HTTP, on both stores: the page shows the invoice (markup in a
//! customer's name escaped), pays it once however often its form is sent, completes a
//! 3-D Secure payment, refuses forged and cross-site forms, dies when revoked, and limits
//! guessing per source. Tokens never reach the request log.

use std::sync::Arc;

use billing_app::App;
use billing_aws::SandboxGateway;
use billing_memory::MemoryObjects;
use billing_tests::api::Api;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{redirect, Client, Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const NAME: &str = "<script>alert('owned')</script> Ltd";

/// A client that shows redirects instead of following them.
fn browser() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

async fn open_invoice(api: &Api, amount: i64) -> Value {
    let account = api
        .created(
            "/v1/accounts",
            json!({"email": "payer@acme.test", "name": NAME, "currency": "usd"}),
        )
        .await;
    let draft = api
        .created(
            "/v1/invoices",
            json!({"account": account["id"], "collection_method": "send_invoice",
                   "lines": [{"description": "Widgets & <b>gadgets</b>", "amount": amount}]}),
        )
        .await;
    api.post(
        &format!("/v1/invoices/{}/finalize", draft["id"].as_str().unwrap()),
        json!({"days_until_due": 14}),
    )
    .await
}

async fn link(api: &Api, invoice: &Value, rotate: bool) -> String {
    let minted = api
        .created(
            &format!(
                "/v1/invoices/{}/hosted-link",
                invoice["id"].as_str().unwrap()
            ),
            json!({ "rotate": rotate }),
        )
        .await;
    let url = minted["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(api.base()), "{url}");
    url
}

async fn page(url: &str) -> (StatusCode, HeaderMap, String) {
    let response = browser().get(url).send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.text().await.unwrap())
}

/// The value of the hidden input `name` in `html`.
fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

async fn post_form(url: &str, form: &[(&str, &str)], headers: HeaderMap) -> reqwest::Response {
    browser()
        .post(url)
        .headers(headers)
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn invoice_of(api: &Api, invoice: &Value) -> Value {
    api.get(&format!("/v1/invoices/{}", invoice["id"].as_str().unwrap()))
        .await
}

async fn payments_of(api: &Api, invoice: &Value) -> Vec<Value> {
    api.list(&format!(
        "/v1/payments?invoice={}",
        invoice["id"].as_str().unwrap()
    ))
    .await
}

async fn the_page_shows_the_invoice_and_its_form_pays_once(app: App) {
    let gateway = Arc::new(SandboxGateway::new());
    let (api, _) = Api::start(app.with_gateway(gateway.clone()), "Hosted Co").await;
    let invoice = open_invoice(&api, 12_345).await;
    let url = link(&api, &invoice, false).await;

    let (status, headers, html) = page(&url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self';"), "{policy}");
    assert!(
        !policy.contains("unsafe-inline") && !policy.contains("stripe"),
        "{policy}"
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(html.contains(invoice["number"].as_str().unwrap()));
    assert!(html.contains("$123.45"), "the amount due: {html}");
    assert!(html.contains("id=\"amount-due\">$123.45 due</p>"), "{html}");
    // A flat line is one of its amount: the Qty and Unit price cells are filled.
    assert!(
        html.contains("<td class=\"n hide\">1</td><td class=\"n hide\">$123.45</td>"),
        "{html}"
    );
    assert!(html.contains("Hosted Co"), "the seller");
    assert!(
        html.contains("&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt; Ltd"),
        "the customer's name, escaped: {html}"
    );
    assert!(
        !html.contains("<script>alert"),
        "no markup from the customer runs"
    );
    assert!(html.contains("Widgets &amp; &lt;b&gt;gadgets&lt;/b&gt;"));
    assert!(
        !html.contains("<script>") || !html.contains("<script>\""),
        "no inline script"
    );
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script file"
    );
    assert!(html.contains("<script src=\"/i/assets/hosted.js\" defer></script>"));
    let script = browser()
        .get(format!("{}/i/assets/hosted.js", api.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));

    // A form without its page's token, or from another site, is refused.
    let form_token = field(&html, "form_token");
    let version = field(&html, "version");
    let pay = format!("{url}/pay");
    let forged = post_form(
        &pay,
        &[
            ("form_token", &"0".repeat(64)),
            ("version", &version),
            ("card", "4242424242424242"),
        ],
        HeaderMap::new(),
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let mut cross_site = HeaderMap::new();
    cross_site.insert("origin", HeaderValue::from_static("https://evil.test"));
    let from_elsewhere = post_form(
        &pay,
        &[
            ("form_token", &form_token),
            ("version", &version),
            ("card", "4242424242424242"),
        ],
        cross_site,
    )
    .await;
    assert_eq!(from_elsewhere.status(), StatusCode::FORBIDDEN);
    assert_eq!(invoice_of(&api, &invoice).await["status"], "open");
    assert_eq!(gateway.charge_calls(), 0);

    // The same form sent three times at once: one attempt, one charge, the invoice paid.
    let form = [
        ("form_token", form_token.as_str()),
        ("version", version.as_str()),
        ("card", "4242 4242 4242 4242"),
    ];
    let owned: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let sends = (0..3).map(|_| browser().post(&pay).form(&owned).send());
    for sent in futures_join(sends).await {
        let sent = sent.unwrap();
        assert_eq!(sent.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            sent.headers()["location"].to_str().unwrap(),
            url.trim_start_matches(api.base())
        );
    }
    let paid = invoice_of(&api, &invoice).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["amount_paid"], 12_345);
    let payments = payments_of(&api, &invoice).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["status"], "succeeded");
    assert_eq!(gateway.charge_count(), 1, "one idempotency key charged");
    assert_eq!(gateway.succeeded_count(), 1);

    // Sent once more later (a reload of the form): nothing more.
    let again = post_form(&pay, &form, HeaderMap::new()).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert_eq!(payments_of(&api, &invoice).await.len(), 1);
    assert_eq!(gateway.charge_count(), 1);

    let (_, _, html) = page(&url).await;
    assert!(html.contains(">Paid</span>"), "{html}");
    assert!(!html.contains("pay-form"), "a paid invoice has no form");
    assert!(html.contains("$0.00"), "nothing due");
    // The headline says what was paid, not the $0.00 left.
    assert!(
        html.contains("id=\"amount-due\">$123.45 paid</p>"),
        "{html}"
    );
}

/// Joins the futures, each on its own task so the requests overlap.
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

async fn three_d_secure_is_completed_from_the_page(app: App) {
    let gateway = Arc::new(SandboxGateway::new());
    let (api, _) = Api::start(app.with_gateway(gateway.clone()), "Hosted Co").await;
    let invoice = open_invoice(&api, 5_000).await;
    let url = link(&api, &invoice, false).await;
    let (_, _, html) = page(&url).await;
    let form = [
        ("form_token", field(&html, "form_token")),
        ("version", field(&html, "version")),
        ("card", "4000002500003155".to_owned()),
    ];
    let sent = browser()
        .post(format!("{url}/pay"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    let waiting = invoice_of(&api, &invoice).await;
    assert_eq!(waiting["status"], "open");
    assert_eq!(waiting["payment_status"], "requires_action");

    let (_, _, html) = page(&url).await;
    assert!(html.contains("Action required"), "{html}");
    assert!(html.contains("authenticate-form"));
    assert!(
        !html.contains("pay-form"),
        "the waiting payment is completed, not repeated"
    );
    let authenticate = [("form_token", field(&html, "form_token"))];
    assert_ne!(authenticate[0].1, form[0].1, "each form has its own token");
    let wrong = browser()
        .post(format!("{url}/authenticate"))
        .form(&[("form_token", form[0].1.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong.status(),
        StatusCode::FORBIDDEN,
        "the pay form's token is not this form's"
    );

    let sends = (0..2).map(|_| {
        browser()
            .post(format!("{url}/authenticate"))
            .form(&authenticate)
            .send()
    });
    for sent in futures_join(sends).await {
        assert_eq!(sent.unwrap().status(), StatusCode::SEE_OTHER);
    }
    let paid = invoice_of(&api, &invoice).await;
    assert_eq!(paid["status"], "paid");
    let payments = payments_of(&api, &invoice).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "succeeded");
    assert_eq!(gateway.charge_count(), 1);
    let (_, _, html) = page(&url).await;
    assert!(html.contains(">Paid</span>"));
}

async fn revoked_links_open_nothing(app: App) {
    let (api, _) = Api::start(app, "Hosted Co").await;
    let invoice = open_invoice(&api, 1_000).await;
    let first = link(&api, &invoice, false).await;
    let second = link(&api, &invoice, false).await;
    assert_ne!(first, second);
    assert_eq!(page(&first).await.0, StatusCode::OK);
    assert_eq!(page(&second).await.0, StatusCode::OK);

    let id = invoice["id"].as_str().unwrap();
    let revoked = api.delete(&format!("/v1/invoices/{id}/hosted-link")).await;
    assert_eq!(revoked["revoked"], true);
    assert_eq!(page(&first).await.0, StatusCode::NOT_FOUND);
    assert_eq!(page(&second).await.0, StatusCode::NOT_FOUND);

    let third = link(&api, &invoice, false).await;
    assert_eq!(page(&third).await.0, StatusCode::OK);
    let rotated = link(&api, &invoice, true).await;
    assert_eq!(
        page(&third).await.0,
        StatusCode::NOT_FOUND,
        "rotating revokes"
    );
    assert_eq!(page(&rotated).await.0, StatusCode::OK);

    // A draft has no page.
    let account = invoice["account_id"].as_str().unwrap();
    let draft = api
        .created(
            "/v1/invoices",
            json!({"account": account, "lines": [{"description": "x", "amount": 100}]}),
        )
        .await;
    let refused = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/invoices/{}/hosted-link", draft["id"].as_str().unwrap()),
            Some(&json!({})),
        )
        .await;
    billing_tests::api::problem(refused, StatusCode::CONFLICT, "invoice_not_finalized").await;
}

async fn guesses_are_limited_per_source(app: App) {
    let (api, _) = Api::start(app, "Hosted Co").await;
    let invoice = open_invoice(&api, 1_000).await;
    let url = link(&api, &invoice, false).await;
    let from = |source: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static(source));
        headers
    };
    let guesser = from("203.0.113.9, 198.51.100.7");
    for n in 0..billing_app::hosted::GUESSES_PER_WINDOW {
        let guess = format!("{}/i/{:0>43}", api.base(), n);
        let answer = browser()
            .get(guess)
            .headers(guesser.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "guess {n}");
    }
    let refused = browser()
        .get(&url)
        .headers(guesser.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    // The count is the last hop's (the one API Gateway adds), not what the client wrote.
    let other_client = browser()
        .get(&url)
        .headers(from("198.51.100.8"))
        .send()
        .await
        .unwrap();
    assert_eq!(other_client.status(), StatusCode::OK);
    let spoofing = browser()
        .get(&url)
        .headers(from("198.51.100.7, 198.51.100.9"))
        .send()
        .await
        .unwrap();
    assert_eq!(spoofing.status(), StatusCode::OK);
}

/// A PNG of `width` × `height`: the signature and IHDR the upload checks, nothing drawn.
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    bytes.extend(width.to_be_bytes());
    bytes.extend(height.to_be_bytes());
    bytes.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

async fn put_logo(api: &Api, content_type: &str, bytes: Vec<u8>) -> reqwest::Response {
    api.request(Method::PUT, "/v1/settings/branding/logo")
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap()
}

async fn the_logo_is_uploaded_checked_shown_and_removed(app: App) {
    let (api, tenant) = Api::start(
        app.with_objects(Arc::new(MemoryObjects::default())),
        "Logo Co",
    )
    .await;
    let invoice = open_invoice(&api, 1_000).await;
    let url = link(&api, &invoice, false).await;
    let (_, _, html) = page(&url).await;
    assert!(!html.contains("id=\"logo\""), "no logo yet");

    let file = png(320, 80);
    let answered = put_logo(&api, "image/png", file.clone()).await;
    assert_eq!(answered.status(), StatusCode::OK);
    let branding: Value = answered.json().await.unwrap();
    let sha = hex::encode(Sha256::digest(&file));
    assert_eq!(
        branding["logo"],
        json!({"key": format!("{}/branding/logo/{sha}.png", tenant.id), "sha256": sha,
               "content_type": "image/png", "width": 320, "height": 80})
    );
    assert_eq!(branding["version"], 1);
    assert_eq!(api.get("/v1/settings/branding").await["logo"]["width"], 320);

    let (_, headers, html) = page(&url).await;
    let path = url.trim_start_matches(api.base());
    assert!(
        html.contains(&format!(
            "<img class=\"logo\" id=\"logo\" src=\"{path}/logo\""
        )),
        "{html}"
    );
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("img-src 'self'"), "{policy}");
    let served = browser().get(format!("{url}/logo")).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.bytes().await.unwrap().to_vec(), file);

    let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 50"><rect width="200" height="50" fill="navy"/></svg>"#;
    let branding: Value = put_logo(&api, "image/svg+xml", svg.into())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&branding["logo"]["width"], &branding["version"]),
        (&json!(200), &json!(2))
    );
    let served = browser().get(format!("{url}/logo")).send().await.unwrap();
    let headers = served.headers().clone();
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(served.text().await.unwrap(), svg);

    let mut big = png(10, 10);
    big.resize(256 * 1024 + 1, 0);
    let refusals = [
        ("image/png", big, "logo_too_large"),
        ("image/png", png(2001, 10), "invalid_logo"),
        (
            "image/svg+xml",
            br#"<svg viewBox="0 0 9 9"><script>alert(1)</script></svg>"#.to_vec(),
            "invalid_logo",
        ),
        (
            "image/svg+xml",
            br#"<svg viewBox="0 0 9 9"><image href="https://x.test/a.png"/></svg>"#.to_vec(),
            "invalid_logo",
        ),
        ("image/gif", b"GIF89a".to_vec(), "invalid_logo"),
    ];
    for (content_type, bytes, code) in refusals {
        let answered = put_logo(&api, content_type, bytes).await;
        let status = answered.status();
        let problem: Value = answered.json().await.unwrap();
        assert_eq!(
            (problem["code"].as_str(), problem["param"].as_str()),
            (Some(code), Some("logo")),
            "{problem}"
        );
        assert!(status.is_client_error() && !problem["hint"].as_str().unwrap().is_empty());
    }
    let reader = api.with_key(&api.key_with_role("finance_viewer").await);
    assert_eq!(
        put_logo(&reader, "image/png", png(1, 1)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.get("/v1/settings/branding").await["version"],
        2,
        "refusals change nothing"
    );

    let branding = api.delete("/v1/settings/branding/logo").await;
    assert_eq!(
        (&branding["logo"], &branding["version"]),
        (&Value::Null, &json!(3))
    );
    let (_, _, html) = page(&url).await;
    assert!(!html.contains("id=\"logo\""));
    let gone = browser().get(format!("{url}/logo")).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

billing_tests::on_both_stores!(
    the_page_shows_the_invoice_and_its_form_pays_once,
    three_d_secure_is_completed_from_the_page,
    revoked_links_open_nothing,
    guesses_are_limited_per_source,
    the_logo_is_uploaded_checked_shown_and_removed,
);

#[tokio::test]
async fn tokens_never_reach_the_request_log() {
    use tower::ServiceExt;
    let app = billing_tests::memory_app();
    let (api, _) = Api::start(app.clone(), "Hosted Co").await;
    let invoice = open_invoice(&api, 1_000).await;
    let url = link(&api, &invoice, false).await;
    let path = url.trim_start_matches(api.base()).to_owned();
    let token = path.trim_start_matches("/i/").to_owned();

    let (captured, _guard) =
        billing_tests::CapturedLog::start(tracing_subscriber::filter::LevelFilter::INFO);
    let router = billing_http::router(app, billing_http::EmitMetrics(false));
    for (method, uri) in [
        ("GET", path.clone()),
        ("POST", format!("{path}/pay")),
        ("POST", format!("{path}/authenticate")),
    ] {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(&uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from("form_token=00"))
            .unwrap();
        let answered = router.clone().oneshot(request).await.unwrap();
        assert_ne!(answered.status(), StatusCode::NOT_FOUND, "{method} {uri}");
    }
    let log = captured.text();
    assert!(
        log.contains("/i/{token}"),
        "each request is logged by its route: {log}"
    );
    assert_eq!(log.matches("\"request\"").count(), 3, "{log}");
    assert!(!log.contains(&token), "the token is in the log: {log}");
    assert!(!log.contains(&billing_domain::hosted::link::hash_token(&token)));
}
