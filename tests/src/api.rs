//! The one HTTP client of the end-to-end tests: a served router, the key it calls with, and
//! the checks every test makes of an answer.

use billing_app::App;
use billing_domain::customers::tenant::{Tenant, TenantMode};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

#[derive(Clone)]
pub struct Api {
    base: String,
    /// `None` calls without credentials.
    key: Option<String>,
    http: Client,
    /// The served app and the tenant [`Api::start`] made: what the sweep's billing worker
    /// would run to finish a test clock's advance ([`Api::advance_clock`]).
    worker: Option<(App, billing_domain::kernel::ids::TenantId)>,
}

impl Api {
    pub fn new(base: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            key: Some(key.into()),
            http: Client::new(),
            worker: None,
        }
    }

    /// Serves `app` with a new sandbox tenant called `name`; calls with its admin key.
    pub async fn start(app: App, name: &str) -> (Self, Tenant) {
        let (tenant, issued) = app
            .customers
            .create_tenant(name, TenantMode::Sandbox)
            .await
            .expect("create the tenant");
        let api = Self {
            worker: Some((app.clone(), tenant.id)),
            ..Self::new(crate::serve(app).await, issued.secret)
        };
        (api, tenant)
    }

    /// Advances test clock `clock` to `to` as a client and the deployment do together: the
    /// request runs what it may, then the billing worker runs the rest, as the sweep would
    /// have it do, until the clock is `ready`. Answers the request's own answer and the
    /// finished clock.
    pub async fn advance_clock(&self, clock: &str, to: &str) -> (Value, Value) {
        let answered = self
            .post(
                &format!("/v1/test-clocks/{clock}/advance"),
                serde_json::json!({ "frozen_time": to }),
            )
            .await;
        let (app, tenant) = self
            .worker
            .as_ref()
            .expect("advance_clock needs an Api made by Api::start");
        let id = billing_domain::kernel::ids::TestClockId::parse(clock, "clock").unwrap();
        let mut runs = 0;
        while self.get(&format!("/v1/test-clocks/{clock}")).await["status"] == "advancing" {
            runs += 1;
            assert!(runs <= 1000, "the advance of {clock} never finished");
            app.billing.run_test_clock(*tenant, id).await.unwrap();
        }
        let finished = self.get(&format!("/v1/test-clocks/{clock}")).await;
        assert_eq!(finished["frozen_time"], to);
        (answered, finished)
    }

    /// A test clock frozen at `at` and an account on it whose card pays, so that a
    /// scenario about billing does not turn into one about dunning: `(clock, account)`.
    pub async fn clock_account(&self, at: &str) -> (String, String) {
        let clock = self
            .post("/v1/test-clocks", serde_json::json!({ "frozen_time": at }))
            .await;
        let clock = clock["id"].as_str().unwrap().to_owned();
        let account = self
            .post(
                "/v1/accounts",
                serde_json::json!({"email": "clock@acme.test", "currency": "usd", "test_clock": clock}),
            )
            .await;
        let account = account["id"].as_str().unwrap().to_owned();
        let card = self
            .post(
                &format!("/v1/accounts/{account}/payment-methods"),
                serde_json::json!({"payment_method": "tok_visa"}),
            )
            .await;
        assert_eq!(card["default"], true);
        (clock, account)
    }

    /// The key it calls with.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The server's base URL, `http://127.0.0.1:…`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same server, called with another key.
    pub fn with_key(&self, key: &str) -> Self {
        Self {
            key: Some(key.to_owned()),
            ..self.clone()
        }
    }

    /// The same server, called without a key.
    pub fn anonymous(&self) -> Self {
        Self {
            key: None,
            ..self.clone()
        }
    }

    /// A request carrying the key, for headers or bodies the helpers below do not send.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("the server answers")
    }

    /// A `POST` of `body` under an `Idempotency-Key`, to send when the test chooses (the
    /// request owns all it needs, so it can be sent from a spawned task).
    pub fn post_idempotent(&self, path: &str, key: &str, body: &Value) -> RequestBuilder {
        self.request(Method::POST, path)
            .header("idempotency-key", key)
            .json(body)
    }

    /// The status and the JSON body (`null` when there is none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let response = self.send(method, path, body).await;
        let status = response.status();
        let text = response.text().await.expect("a body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        };
        (status, body)
    }

    /// The body of an answer that must be a success.
    pub async fn ok(&self, method: Method, path: &str, body: Option<&Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer
    }

    pub async fn get(&self, path: &str) -> Value {
        self.expect(StatusCode::OK, Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: impl Serialize) -> Value {
        self.ok(Method::POST, path, Some(&json(body))).await
    }

    /// The body of a `POST` that must answer 201 Created.
    pub async fn created(&self, path: &str, body: impl Serialize) -> Value {
        let body = json(body);
        self.expect(StatusCode::CREATED, Method::POST, path, Some(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: impl Serialize) -> Value {
        self.ok(Method::PATCH, path, Some(&json(body))).await
    }

    pub async fn delete(&self, path: &str) -> Value {
        self.expect(StatusCode::OK, Method::DELETE, path, None)
            .await
    }

    /// The body of an answer that must have `status`.
    async fn expect(
        &self,
        status: StatusCode,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Value {
        let (answered, answer) = self.call(method.clone(), path, body).await;
        assert_eq!(answered, status, "{method} {path}: {answer}");
        answer
    }

    /// Every item of a list, oldest first, following its cursors.
    pub async fn list(&self, path: &str) -> Vec<Value> {
        let join = if path.contains('?') { '&' } else { '?' };
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self.get(&format!("{path}{join}limit=100{cursor}")).await;
            all.extend(page["data"].as_array().expect("a list").iter().cloned());
            if page["has_more"] != true {
                break;
            }
            cursor = format!("&starting_after={}", page["next_cursor"].as_str().unwrap());
        }
        all.reverse();
        all
    }

    /// A subscription's invoices, oldest first.
    pub async fn invoices(&self, subscription: &str) -> Vec<Value> {
        self.list(&format!("/v1/invoices?subscription={subscription}"))
            .await
    }

    /// A new key of the tenant with `role`.
    pub async fn key_with_role(&self, role: &str) -> String {
        let created = self
            .send(
                Method::POST,
                "/v1/api-keys",
                Some(&serde_json::json!({"role": role})),
            )
            .await;
        assert_eq!(created.status(), StatusCode::CREATED);
        created.json::<Value>().await.unwrap()["secret"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn json(body: impl Serialize) -> Value {
    serde_json::to_value(body).expect("a JSON body")
}

/// An RFC 9457 problem with `status` whose fields agree with each other; its body.
pub async fn problem_of(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "problems are RFC 9457 documents"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "{body}"
    );
    let code = body["code"].as_str().expect("a code");
    assert!(
        body["type"].as_str().is_some_and(|t| t.ends_with(code)),
        "{body}"
    );
    body
}

/// A problem with `status` and `code`; its body.
pub async fn problem(response: Response, status: StatusCode, code: &str) -> Value {
    let body = problem_of(response, status).await;
    assert_eq!(body["code"], code, "{body}");
    body
}
