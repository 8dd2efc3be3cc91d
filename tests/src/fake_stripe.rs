//! A fake Stripe: exactly the endpoints the gateway adapter calls, on 127.0.0.1, answering
//! with Stripe's own example objects (`tests/fixtures/stripe/fixtures3.json`, read at test
//! time) with ids, amounts and statuses set per request, so the gateway reads what it would
//! read from the real API.
//!
//! It behaves as Stripe's test mode does where the adapter can tell:
//! - `Idempotency-Key`: the first answer to a key is kept and replayed byte for byte (with
//!   `Idempotent-Replayed: true`); the same key with other parameters is an
//!   `idempotency_error`.
//! - Test payment methods (`pm_card_visa`, `pm_card_chargeDeclined`, …, see [`TestCard`]):
//!   attaching one creates a new `pm_…` on the customer; cards that decline are refused when
//!   attached (Stripe checks a card then), except `pm_card_chargeCustomerFail` (4000000000000341),
//!   which attaches and then declines every charge. A test method can also be charged directly.
//! - Off-session charges of cards that need 3-D Secure fail with `authentication_required`.
//! - Errors in Stripe's envelope (`{"error": {"type", "code", "decline_code", "message", …}}`)
//!   and statuses (402 card errors, 404 missing resources, 400 bad requests, 401 no key).
//!
//! - `Stripe-Account` (Connect): each request's is recorded ([`FakeStripe::accounts`]), and
//!   idempotency keys are kept per account, as Stripe keeps them.
//!
//! Tests read [`FakeStripe::charges`] (every card charge Stripe would have made, declined or
//! not) and [`FakeStripe::requests`], make the next requests fail before they reach
//! "Stripe" with [`FakeStripe::fail_next`], or lose Stripe's answer after it acted with
//! [`FakeStripe::lose_next_answers`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// Stripe's example object of a resource (`payment_intent`, `charge`, `event`, …).
pub fn fixture(resource: &str) -> Value {
    static RESOURCES: OnceLock<Map<String, Value>> = OnceLock::new();
    let resources = RESOURCES.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/stripe/fixtures3.json"
        );
        let text = std::fs::read_to_string(path).expect("the vendored Stripe fixtures");
        let mut all: Value = serde_json::from_str(&text).expect("fixtures3.json is JSON");
        match all["resources"].take() {
            Value::Object(resources) => resources,
            _ => panic!("fixtures3.json has a resources object"),
        }
    });
    resources
        .get(resource)
        .unwrap_or_else(|| panic!("no Stripe fixture for {resource}"))
        .clone()
}

/// A Stripe event (`evt_…`) of `event_type` about `object`, in Stripe's envelope.
pub fn event(event_type: &str, object: Value) -> Value {
    let mut event = fixture("event");
    event["id"] = json!(new_id("evt"));
    event["type"] = json!(event_type);
    event["created"] = json!(jiff::Timestamp::now().as_second());
    event["livemode"] = json!(false);
    event["data"] = json!({ "object": object });
    event
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new())
}

/// Stripe's test payment methods the fake knows, by the id Stripe gives each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestCard {
    /// `pm_card_visa`, 4242 4242 4242 4242: succeeds.
    Visa,
    /// `pm_card_chargeDeclined`, 4000 0000 0000 0002: generic decline.
    ChargeDeclined,
    /// `pm_card_chargeDeclinedInsufficientFunds`, 4000 0000 0000 9995.
    InsufficientFunds,
    /// `pm_card_chargeCustomerFail`, 4000 0000 0000 0341: attaches, then every charge declines.
    ChargeCustomerFail,
    /// `pm_card_authenticationRequiredOnSetup`, 4000 0025 0000 3155: needs 3-D Secure unless
    /// set up on-session first (the fake has no SetupIntents, so off-session it always does).
    AuthenticationRequiredOnSetup,
    /// `pm_card_authenticationRequired`, 4000 0027 6000 3184: always needs 3-D Secure.
    AuthenticationRequired,
}

enum CardResult {
    Paid,
    Declined {
        code: &'static str,
        decline_code: &'static str,
        message: &'static str,
    },
}

const GENERIC_DECLINE: CardResult = CardResult::Declined {
    code: "card_declined",
    decline_code: "generic_decline",
    message: "Your card was declined.",
};
const INSUFFICIENT_FUNDS: CardResult = CardResult::Declined {
    code: "card_declined",
    decline_code: "insufficient_funds",
    message: "Your card has insufficient funds.",
};
const AUTHENTICATION_REQUIRED: CardResult = CardResult::Declined {
    code: "authentication_required",
    decline_code: "authentication_required",
    message: "Your card was declined. This transaction requires authentication.",
};

impl TestCard {
    pub fn from_payment_method(id: &str) -> Option<Self> {
        Some(match id {
            "pm_card_visa" => Self::Visa,
            "pm_card_chargeDeclined" => Self::ChargeDeclined,
            "pm_card_chargeDeclinedInsufficientFunds" => Self::InsufficientFunds,
            "pm_card_chargeCustomerFail" => Self::ChargeCustomerFail,
            "pm_card_authenticationRequiredOnSetup" => Self::AuthenticationRequiredOnSetup,
            "pm_card_authenticationRequired" => Self::AuthenticationRequired,
            _ => return None,
        })
    }

    pub fn last4(self) -> &'static str {
        match self {
            Self::Visa => "4242",
            Self::ChargeDeclined => "0002",
            Self::InsufficientFunds => "9995",
            Self::ChargeCustomerFail => "0341",
            Self::AuthenticationRequiredOnSetup => "3155",
            Self::AuthenticationRequired => "3184",
        }
    }

    /// The check Stripe makes when the card is attached to a customer.
    fn on_attach(self) -> CardResult {
        match self {
            Self::ChargeDeclined => GENERIC_DECLINE,
            Self::InsufficientFunds => INSUFFICIENT_FUNDS,
            _ => CardResult::Paid,
        }
    }

    /// An off-session charge.
    fn on_charge(self) -> CardResult {
        match self {
            Self::Visa => CardResult::Paid,
            Self::ChargeDeclined | Self::ChargeCustomerFail => GENERIC_DECLINE,
            Self::InsufficientFunds => INSUFFICIENT_FUNDS,
            Self::AuthenticationRequiredOnSetup | Self::AuthenticationRequired => {
                AUTHENTICATION_REQUIRED
            }
        }
    }
}

/// One card charge the fake made (Stripe makes one per confirmed PaymentIntent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub id: String,
    pub payment_intent: String,
    pub amount: i64,
    pub currency: String,
    pub paid: bool,
    pub idempotency_key: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The connected account it was made on (`Stripe-Account`), `None` for the platform's.
    pub account: Option<String>,
}

#[derive(Clone)]
pub struct FakeStripe {
    /// The base URL to give the adapter (`http://127.0.0.1:PORT`).
    pub url: String,
    state: Arc<Mutex<Stripe>>,
}

#[derive(Default)]
struct Stripe {
    customers: HashMap<String, Value>,
    payment_methods: HashMap<String, (TestCard, Value)>,
    payment_intents: HashMap<String, Value>,
    refunded: HashMap<String, i64>,
    charges: Vec<Charge>,
    /// Idempotency key → (the request it answered, status, body).
    answered: HashMap<String, (String, StatusCode, Bytes)>,
    requests: Vec<String>,
    /// Each request's `Stripe-Account`, in the order of `requests`.
    accounts: Vec<Option<String>>,
    outage: u32,
    lost_answers: u32,
}

impl FakeStripe {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Stripe::default()));
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Stripe");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, state }
    }

    fn stripe(&self) -> std::sync::MutexGuard<'_, Stripe> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every card charge made, in order.
    pub fn charges(&self) -> Vec<Charge> {
        self.stripe().charges.clone()
    }

    /// Every request received (`POST /v1/payment_intents`), replays and failures included.
    pub fn requests(&self) -> Vec<String> {
        self.stripe().requests.clone()
    }

    /// Requests to charge a card (`POST /v1/payment_intents`) received, replays of a known
    /// key and failures included: how often Stripe was asked, where [`FakeStripe::charges`]
    /// says how often a card was charged.
    pub fn charge_requests(&self) -> usize {
        self.stripe()
            .requests
            .iter()
            .filter(|r| *r == "POST /v1/payment_intents")
            .count()
    }

    /// Every request received with the connected account it was sent on (`Stripe-Account`,
    /// `None` without the header), in order.
    pub fn accounts(&self) -> Vec<(String, Option<String>)> {
        let stripe = self.stripe();
        stripe
            .requests
            .iter()
            .cloned()
            .zip(stripe.accounts.iter().cloned())
            .collect()
    }

    /// The next `n` requests get a 503 before reaching Stripe (nothing is done or kept).
    pub fn fail_next(&self, n: u32) {
        self.stripe().outage = n;
    }

    /// The next `n` requests are carried out (and kept for their idempotency key), but the
    /// caller gets a 502 instead of the answer: Stripe charged, the caller never heard.
    pub fn lose_next_answers(&self, n: u32) {
        self.stripe().lost_answers = n;
    }

    /// A PaymentIntent as Stripe holds it now (to build events about it).
    pub fn payment_intent(&self, id: &str) -> Value {
        self.stripe().payment_intents[id].clone()
    }
}

async fn handle(
    State(state): State<Arc<Mutex<Stripe>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut stripe = state.lock().unwrap_or_else(|e| e.into_inner());
    let route = format!("{method} {}", uri.path());
    stripe.requests.push(route.clone());
    let account = headers
        .get("stripe-account")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    stripe.accounts.push(account.clone());
    if stripe.outage > 0 {
        stripe.outage -= 1;
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"type": "api_error", "message": "Stripe is temporarily unavailable."}),
        );
        response
            .headers_mut()
            .insert("stripe-should-retry", HeaderValue::from_static("true"));
        return response;
    }
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer sk_"));
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            json!({"type": "invalid_request_error", "message": "You did not provide an API key."}),
        );
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Stripe keeps idempotency keys per account.
    let scoped = key
        .as_ref()
        .map(|k| format!("{}/{k}", account.as_deref().unwrap_or("platform")));
    // Stripe compares the parameters, not their order (metadata is sent from a hash map).
    let form = Form::parse(&body);
    let mut params = form.0.clone();
    params.sort();
    let request = format!("{route}?{params:?}");
    if let (Some(key), Some(scoped)) = (&key, &scoped) {
        if let Some((first, status, body)) = stripe.answered.get(scoped) {
            if *first != request {
                return error(
                    StatusCode::BAD_REQUEST,
                    json!({"type": "idempotency_error", "message": format!(
                        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request.")}),
                );
            }
            let mut response = (*status, body.clone()).into_response();
            let headers = response.headers_mut();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            return response;
        }
    }
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (status, answer) = match (&method, segments.as_slice()) {
        (&Method::POST, ["v1", "customers"]) => stripe.create_customer(&form),
        (&Method::POST, ["v1", "payment_methods", id, "attach"]) => stripe.attach(id, &form),
        (&Method::POST, ["v1", "payment_methods", id, "detach"]) => stripe.detach(id),
        (&Method::POST, ["v1", "payment_intents"]) => {
            stripe.create_payment_intent(&form, key.clone(), account.clone())
        }
        (&Method::POST, ["v1", "refunds"]) => stripe.create_refund(&form),
        _ => (
            StatusCode::NOT_FOUND,
            json!({"error": {"type": "invalid_request_error",
                "message": format!("Unrecognized request URL ({method}: {}).", uri.path())}}),
        ),
    };
    let body = Bytes::from(serde_json::to_vec(&answer).expect("JSON"));
    if let Some(scoped) = scoped {
        stripe
            .answered
            .insert(scoped, (request, status, body.clone()));
    }
    if stripe.lost_answers > 0 {
        stripe.lost_answers -= 1;
        return error(
            StatusCode::BAD_GATEWAY,
            json!({"type": "api_error", "message": "The connection to Stripe was lost."}),
        );
    }
    (status, [("content-type", "application/json")], body).into_response()
}

fn error(status: StatusCode, error: Value) -> Response {
    (status, axum::Json(json!({ "error": error }))).into_response()
}

type Answer = (StatusCode, Value);

fn failure(status: StatusCode, error: Value) -> Answer {
    (status, json!({ "error": error }))
}

fn missing(param: &str, id: &str, what: &str) -> Answer {
    failure(
        StatusCode::NOT_FOUND,
        json!({"type": "invalid_request_error", "code": "resource_missing", "param": param,
               "message": format!("No such {what}: '{id}'")}),
    )
}

fn invalid(code: &str, param: Option<&str>, message: String) -> Answer {
    failure(
        StatusCode::BAD_REQUEST,
        json!({"type": "invalid_request_error", "code": code, "param": param, "message": message}),
    )
}

/// A form body as Stripe reads it (`metadata[k]=v` becomes a map entry).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(body).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn map(&self, name: &str) -> BTreeMap<String, String> {
        let prefix = format!("{name}[");
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let inner = k.strip_prefix(&prefix)?.strip_suffix(']')?;
                Some((inner.to_owned(), v.clone()))
            })
            .collect()
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl Stripe {
    fn create_customer(&mut self, form: &Form) -> Answer {
        let mut customer = fixture("customer");
        let id = new_id("cus");
        customer["id"] = json!(id);
        customer["email"] = json!(form.get("email"));
        customer["name"] = json!(form.get("name"));
        customer["metadata"] = json!(form.map("metadata"));
        customer["created"] = json!(now());
        customer["discount"] = Value::Null;
        customer["currency"] = Value::Null;
        self.customers.insert(id, customer.clone());
        (StatusCode::OK, customer)
    }

    fn payment_method(card: TestCard, id: &str, customer: Option<&str>) -> Value {
        let mut method = fixture("payment_method");
        method["id"] = json!(id);
        method["customer"] = json!(customer);
        method["created"] = json!(now());
        method["metadata"] = json!({});
        method["card"]["last4"] = json!(card.last4());
        method["card"]["brand"] = json!("visa");
        method["card"]["display_brand"] = json!("visa");
        method["card"]["country"] = json!("US");
        method
    }

    fn attach(&mut self, id: &str, form: &Form) -> Answer {
        let Some(customer) = form.get("customer") else {
            return invalid(
                "parameter_missing",
                Some("customer"),
                "Missing required param: customer.".into(),
            );
        };
        if !self.customers.contains_key(customer) {
            return missing("customer", customer, "customer");
        }
        if let Some((card, method)) = self.payment_methods.get(id) {
            return match method["customer"].as_str() {
                Some(owner) if owner != customer => invalid(
                    "payment_method_unexpected_state",
                    None,
                    "The payment method you provided has already been attached to a customer."
                        .into(),
                ),
                _ => {
                    let attached = Self::payment_method(*card, id, Some(customer));
                    self.payment_methods
                        .insert(id.to_owned(), (*card, attached.clone()));
                    (StatusCode::OK, attached)
                }
            };
        }
        let Some(card) = TestCard::from_payment_method(id) else {
            return missing("payment_method", id, "PaymentMethod");
        };
        if let CardResult::Declined {
            code,
            decline_code,
            message,
        } = card.on_attach()
        {
            return failure(
                StatusCode::PAYMENT_REQUIRED,
                json!({"type": "card_error", "code": code, "decline_code": decline_code,
                       "message": message, "param": "", "doc_url": format!("https://stripe.com/docs/error-codes/{code}")}),
            );
        }
        let new = new_id("pm");
        let method = Self::payment_method(card, &new, Some(customer));
        self.payment_methods.insert(new, (card, method.clone()));
        (StatusCode::OK, method)
    }

    fn detach(&mut self, id: &str) -> Answer {
        let Some((_, method)) = self.payment_methods.get_mut(id) else {
            return missing("payment_method", id, "PaymentMethod");
        };
        if method["customer"].is_null() {
            return invalid(
                "payment_method_unexpected_state",
                None,
                "The payment method you provided is not attached to a customer so detachment is impossible.".into(),
            );
        }
        method["customer"] = Value::Null;
        (StatusCode::OK, method.clone())
    }

    fn create_payment_intent(
        &mut self,
        form: &Form,
        key: Option<String>,
        account: Option<String>,
    ) -> Answer {
        let amount = match form.get("amount").map(str::parse::<i64>) {
            Some(Ok(amount)) if amount > 0 => amount,
            Some(_) => {
                return invalid(
                    "parameter_invalid_integer",
                    Some("amount"),
                    "Invalid integer".into(),
                )
            }
            None => {
                return invalid(
                    "parameter_missing",
                    Some("amount"),
                    "Missing required param: amount.".into(),
                )
            }
        };
        let Some(currency) = form.get("currency") else {
            return invalid(
                "parameter_missing",
                Some("currency"),
                "Missing required param: currency.".into(),
            );
        };
        let customer = form.get("customer");
        if let Some(customer) = customer {
            if !self.customers.contains_key(customer) {
                return missing("customer", customer, "customer");
            }
        }
        if form.get("confirm") != Some("true") || form.get("payment_method").is_none() {
            // The adapter always creates and confirms in one request.
            return invalid(
                "parameter_missing",
                Some("payment_method"),
                "This fake confirms on creation: send confirm=true with a payment_method.".into(),
            );
        }
        let method_id = form.get("payment_method").unwrap_or_default();
        let card = match self.payment_methods.get(method_id) {
            Some((_, method)) if method["customer"].as_str() != customer => {
                return invalid(
                    "resource_missing",
                    Some("payment_method"),
                    format!(
                        "The provided PaymentMethod {method_id} does not belong to the customer."
                    ),
                )
            }
            Some((card, _)) => *card,
            None => match TestCard::from_payment_method(method_id) {
                Some(card) => card,
                None => return missing("payment_method", method_id, "PaymentMethod"),
            },
        };
        let id = new_id("pi");
        let charge = new_id("ch");
        let metadata = form.map("metadata");
        let mut intent = fixture("payment_intent");
        intent["id"] = json!(id);
        intent["client_secret"] = json!(format!("{id}_secret_fake"));
        intent["amount"] = json!(amount);
        intent["currency"] = json!(currency);
        intent["customer"] = json!(customer);
        intent["payment_method"] = json!(method_id);
        intent["description"] = json!(form.get("description"));
        intent["metadata"] = json!(metadata);
        intent["created"] = json!(now());
        intent["canceled_at"] = Value::Null;
        intent["latest_charge"] = json!(charge);
        intent["next_action"] = Value::Null;
        intent["processing"] = Value::Null;
        intent["transfer_data"] = Value::Null;
        intent["last_payment_error"] = Value::Null;
        intent["automatic_payment_methods"] = json!({
            "enabled": form.get("automatic_payment_methods[enabled]") == Some("true"),
            "allow_redirects": form.get("automatic_payment_methods[allow_redirects]"),
        });
        let result = card.on_charge();
        self.charges.push(Charge {
            id: charge.clone(),
            payment_intent: id.clone(),
            amount,
            currency: currency.to_owned(),
            paid: matches!(result, CardResult::Paid),
            idempotency_key: key,
            account,
            metadata,
        });
        match result {
            CardResult::Paid => {
                intent["status"] = json!("succeeded");
                intent["amount_received"] = json!(amount);
                self.payment_intents.insert(id, intent.clone());
                (StatusCode::OK, intent)
            }
            CardResult::Declined {
                code,
                decline_code,
                message,
            } => {
                let method = Self::payment_method(card, method_id, customer);
                let error = json!({
                    "type": "card_error", "code": code, "decline_code": decline_code,
                    "message": message, "charge": charge,
                    "doc_url": format!("https://stripe.com/docs/error-codes/{code}"),
                    "payment_method": method,
                });
                intent["status"] = json!("requires_payment_method");
                intent["payment_method"] = Value::Null;
                intent["last_payment_error"] = error.clone();
                self.payment_intents.insert(id, intent.clone());
                let mut error = error;
                error["payment_intent"] = intent;
                failure(StatusCode::PAYMENT_REQUIRED, error)
            }
        }
    }

    fn create_refund(&mut self, form: &Form) -> Answer {
        let Some(id) = form.get("payment_intent") else {
            return invalid(
                "parameter_missing",
                Some("payment_intent"),
                "One of the following params should be provided for this request: payment_intent or charge.".into(),
            );
        };
        let Some(intent) = self.payment_intents.get(id) else {
            return missing("payment_intent", id, "payment_intent");
        };
        if intent["status"] != "succeeded" {
            return invalid(
                "charge_not_refundable",
                Some("payment_intent"),
                format!("This PaymentIntent ({id}) does not have a successful charge to refund."),
            );
        }
        let paid = intent["amount_received"].as_i64().unwrap_or_default();
        let refunded = self.refunded.get(id).copied().unwrap_or_default();
        let remaining = paid - refunded;
        if remaining == 0 {
            return invalid(
                "charge_already_refunded",
                None,
                format!(
                    "Charge {} has already been refunded.",
                    intent["latest_charge"]
                ),
            );
        }
        let amount = match form.get("amount").map(str::parse::<i64>) {
            None => remaining,
            Some(Ok(amount)) if amount > 0 && amount <= remaining => amount,
            Some(_) => {
                return invalid(
                    "amount_too_large",
                    Some("amount"),
                    format!(
                        "Refund amount is greater than unrefunded amount on charge ({remaining})."
                    ),
                )
            }
        };
        self.refunded.insert(id.to_owned(), refunded + amount);
        let mut refund = fixture("refund");
        refund["id"] = json!(new_id("re"));
        refund["amount"] = json!(amount);
        refund["charge"] = intent["latest_charge"].clone();
        refund["payment_intent"] = json!(id);
        refund["currency"] = intent["currency"].clone();
        refund["status"] = json!("succeeded");
        refund["created"] = json!(now());
        (StatusCode::OK, refund)
    }
}
