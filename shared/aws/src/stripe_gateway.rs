//! The Stripe payment gateway: five form-encoded requests over the workspace's `reqwest`
//! (rustls on ring), answers read into the few fields the gateway uses.
//!
//! **Why not a Stripe crate.** async-stripe 1.0 (the one on hyper 1 + rustls 0.23) was used
//! until issue 20: its generated types and their readers of every object a PaymentIntent can
//! expand to cost about 5 MB of every bootstrap that collects (see the README's "Bootstrap
//! size"), for five endpoints. Here each answer is a struct of the fields read below; serde
//! skips the rest, so Stripe adding fields changes nothing.
//!
//! **What it sends.** One request per call: a customer, an attach, a detach, a PaymentIntent
//! created and confirmed off-session in one request (so a successful payment costs one Stripe
//! request), a refund. Each names the API version it was written against
//! ([`STRIPE_VERSION`]), so an account's default version cannot change the answers' shape. A
//! gateway made for a tenant's connected account ([`PaymentGateway::connected`]) sends each
//! of them with `Stripe-Account`. Every call that creates something carries the caller's
//! idempotency key as Stripe's `Idempotency-Key` (the payment attempt id for a charge), so a
//! retry after a crash or a timeout gets Stripe's first answer instead of a second charge.
//! The client never retries by itself: retrying is the payment worker's decision, with the
//! same key.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use billing_app::ports::{
    CardDetails, ChargeOutcome, ChargeRequest, GatewayError, NewGatewayCustomer, PaymentGateway,
    RefundOutcome, RefundRequest,
};
use billing_domain::collection::connect::StripeAccount;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::money::Money;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tracing::Instrument;

use crate::webhook_sender::describe;
use crate::{metrics, xray};

/// Each HTTP attempt gets this long: less than the API function's 10 s, so a slow Stripe
/// becomes a 503 the caller can retry rather than a killed Lambda.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);

/// The API version every request names (`Stripe-Version`): the one the fields read here
/// were checked against.
pub const STRIPE_VERSION: &str = "2026-09-30.endive";

const STRIPE_API: &str = "https://api.stripe.com";

/// The Stripe error `code` of an off-session charge that needs the customer to authenticate.
const AUTHENTICATION_REQUIRED: &str = "authentication_required";

/// Stripe refuses longer idempotency keys.
const MAX_IDEMPOTENCY_KEY: usize = 255;

#[derive(Clone)]
pub struct StripeGateway {
    http: reqwest::Client,
    /// Where `v1/…` is appended: Stripe, or a local fake in tests.
    base: Arc<str>,
    secret_key: Arc<str>,
    /// The connected account every request is made on (`Stripe-Account`); `None`: the
    /// platform account of the key.
    account: Option<Arc<str>>,
    /// The publishable key of the same account and mode, for Stripe.js on hosted pages.
    publishable_key: Option<Arc<str>>,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeGateway")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the Stripe client cannot be built: {0}")]
pub struct StripeConfigError(String);

impl StripeGateway {
    /// A gateway for the account of `secret_key`; `api_base` replaces
    /// `https://api.stripe.com` (a local fake in tests).
    pub fn new(secret_key: &str, api_base: Option<&str>) -> Result<Self, StripeConfigError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // Stripe never redirects an API call; a redirect would resend the key elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("serverless-billing/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StripeConfigError(e.to_string()))?;
        let base = api_base.unwrap_or(STRIPE_API).trim_end_matches('/');
        Ok(Self {
            http,
            base: base.into(),
            secret_key: secret_key.into(),
            account: None,
            publishable_key: None,
        })
    }

    /// Hosted pages load Stripe.js with `key` (`pk_test_…` or `pk_live_…`).
    pub fn with_publishable_key(mut self, key: &str) -> Self {
        self.publishable_key = Some(key.into());
        self
    }

    /// POSTs `form` to `path` (after `v1/`) and reads the answer as `T`, or Stripe's error.
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        form: &[(&str, &str)],
    ) -> Result<T, StripeFailure> {
        self.call(reqwest::Method::POST, path, idempotency_key, form)
            .await
    }

    /// GETs `path` (after `v1/`): a read, never retried by itself either.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, StripeFailure> {
        self.call(reqwest::Method::GET, path, None, &[]).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        idempotency_key: Option<&str>,
        form: &[(&str, &str)],
    ) -> Result<T, StripeFailure> {
        let is_post = method == reqwest::Method::POST;
        let verb = method.to_string();
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.base))
            .bearer_auth(&self.secret_key)
            .header("Stripe-Version", STRIPE_VERSION);
        if is_post {
            request = request.form(form);
        }
        if let Some(account) = &self.account {
            request = request.header("Stripe-Account", account.as_ref());
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let answered = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            tracing::Span::current().record("status", status);
            Ok((status, response.bytes().await?))
        }
        .instrument(xray::remote_call("Stripe", &format!("{verb} /v1/{path}")))
        .await;
        metrics::gateway_request(
            "stripe",
            answered
                .as_ref()
                .map_or(true, |(status, _)| *status == 429 || *status >= 500),
        );
        let (status, body) = answered.map_err(|e: reqwest::Error| {
            StripeFailure::Unreachable(describe(&e, REQUEST_TIMEOUT))
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body)
                .map_err(|e| StripeFailure::Unreadable(e.to_string()));
        }
        match serde_json::from_slice::<ErrorEnvelope>(&body) {
            Ok(envelope) => Err(StripeFailure::Api {
                error: envelope.error,
                status,
            }),
            Err(e) => Err(StripeFailure::Unreadable(format!("{status}: {e}"))),
        }
    }
}

/// Why a Stripe request has no answer to read.
#[derive(Debug)]
enum StripeFailure {
    /// Stripe answered with its error object.
    Api { error: ApiError, status: u16 },
    /// A success or an error body we cannot read: the request may have done its work.
    Unreadable(String),
    /// No answer: a network fault or the timeout.
    Unreachable(String),
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ApiError,
}

/// Stripe's error object, the fields the gateway classifies by.
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(rename = "type")]
    kind: String,
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
    /// On a card error of a charge: the PaymentIntent it left behind.
    payment_intent: Option<Object>,
}

/// Any object that is only needed for its id.
#[derive(Debug, Deserialize)]
struct Object {
    id: String,
}

/// An object Stripe sends as its id, or expanded.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expandable {
    Id(String),
    Object(Object),
}

impl Expandable {
    fn id(&self) -> &str {
        match self {
            Self::Id(id) => id,
            Self::Object(object) => &object.id,
        }
    }
}

#[derive(Debug, Deserialize)]
struct PaymentMethod {
    id: String,
    card: Option<Card>,
}

#[derive(Debug, Deserialize)]
struct Card {
    brand: String,
    last4: String,
    exp_month: i64,
    exp_year: i64,
    country: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PaymentIntent {
    id: String,
    status: String,
    /// What Stripe.js confirms or authenticates the intent with, in the customer's browser.
    #[serde(default)]
    client_secret: Option<String>,
    latest_charge: Option<Expandable>,
    last_payment_error: Option<LastPaymentError>,
}

#[derive(Debug, Deserialize)]
struct LastPaymentError {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Refund {
    id: String,
    amount: i64,
    currency: String,
    status: Option<String>,
    failure_reason: Option<String>,
}

/// An id as one path segment: a caller's token never reaches another endpoint.
fn segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

fn idempotency_key(key: &str) -> Result<&str, GatewayError> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(GatewayError::Rejected {
            code: "invalid_idempotency_key".into(),
            message: format!(
                "an idempotency key has 1 to {MAX_IDEMPOTENCY_KEY} characters, not {}",
                key.len()
            ),
        });
    }
    Ok(key)
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn connected(&self, account: &StripeAccount) -> Option<Arc<dyn PaymentGateway>> {
        Some(Arc::new(Self {
            account: Some(account.as_str().into()),
            ..self.clone()
        }))
    }

    async fn create_customer(&self, customer: &NewGatewayCustomer) -> Result<String, GatewayError> {
        let form = [
            ("email", customer.email.as_str()),
            ("name", customer.name.as_str()),
            ("metadata[account_id]", customer.account_id.as_str()),
        ];
        let key = idempotency_key(&customer.idempotency_key)?;
        let created: Object = self
            .post("customers", Some(key), &form)
            .await
            .map_err(gateway_error)?;
        Ok(created.id)
    }

    async fn attach_payment_method(
        &self,
        customer: &str,
        token: &str,
    ) -> Result<CardDetails, GatewayError> {
        // Attaching twice is harmless (Stripe answers with the attached method), so no key.
        let method: PaymentMethod = self
            .post(
                &format!("payment_methods/{}/attach", segment(token)),
                None,
                &[("customer", customer)],
            )
            .await
            .map_err(gateway_error)?;
        let card = method.card.ok_or_else(|| GatewayError::Rejected {
            code: "unsupported_payment_method".into(),
            message: format!("{} is not a card", method.id),
        })?;
        Ok(CardDetails {
            gateway_id: method.id,
            brand: card.brand,
            last4: card.last4,
            exp_month: u8::try_from(card.exp_month).unwrap_or_default(),
            exp_year: u16::try_from(card.exp_year).unwrap_or_default(),
            country: card.country,
        })
    }

    async fn detach_payment_method(&self, gateway_id: &str) -> Result<(), GatewayError> {
        let path = format!("payment_methods/{}/detach", segment(gateway_id));
        match self.post::<Object>(&path, None, &[]).await {
            Ok(_) => Ok(()),
            // Detached already (a retry, or the customer removed it in Stripe): done.
            Err(StripeFailure::Api { error, .. }) if not_attached(&error) => Ok(()),
            Err(e) => Err(gateway_error(e)),
        }
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        let key = idempotency_key(&request.idempotency_key)?;
        let amount = request.amount.minor.to_string();
        let currency = request.amount.currency.api_code();
        let metadata: Vec<(String, &str)> = request
            .metadata
            .iter()
            .map(|(name, value)| (format!("metadata[{name}]"), value.as_str()))
            .collect();
        let mut form = vec![
            ("amount", amount.as_str()),
            ("currency", currency.as_str()),
            ("customer", request.customer.as_str()),
            ("payment_method", request.payment_method.as_str()),
            ("description", request.description.as_str()),
            ("confirm", "true"),
            ("off_session", "true"),
            // Cards only in practice: nothing that would need a redirect (and a return URL).
            ("automatic_payment_methods[enabled]", "true"),
            ("automatic_payment_methods[allow_redirects]", "never"),
        ];
        form.extend(metadata.iter().map(|(name, value)| (name.as_str(), *value)));
        match self.post("payment_intents", Some(key), &form).await {
            Ok(intent) => charge_outcome(intent),
            Err(StripeFailure::Api { error, status }) => charge_failure(error, status),
            Err(other) => Err(gateway_error(other)),
        }
    }

    async fn action_outcome(&self, payment_intent: &str) -> Result<ChargeOutcome, GatewayError> {
        let intent: PaymentIntent = self
            .get(&format!("payment_intents/{}", segment(payment_intent)))
            .await
            .map_err(gateway_error)?;
        charge_outcome(intent)
    }

    async fn action_secret(&self, payment_intent: &str) -> Result<Option<String>, GatewayError> {
        let intent: PaymentIntent = self
            .get(&format!("payment_intents/{}", segment(payment_intent)))
            .await
            .map_err(gateway_error)?;
        Ok(intent.client_secret)
    }

    fn publishable_key(&self) -> Option<&str> {
        self.publishable_key.as_deref()
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundOutcome, GatewayError> {
        let key = idempotency_key(&request.idempotency_key)?;
        let amount = request.amount.map(|a| a.minor.to_string());
        let mut form = vec![("payment_intent", request.payment_intent.as_str())];
        if let Some(amount) = &amount {
            form.push(("amount", amount));
        }
        let refunded: Refund = self
            .post("refunds", Some(key), &form)
            .await
            .map_err(gateway_error)?;
        if matches!(refunded.status.as_deref(), Some("failed" | "canceled")) {
            return Err(GatewayError::Rejected {
                code: "refund_failed".into(),
                message: refunded
                    .failure_reason
                    .unwrap_or_else(|| "Stripe could not refund this payment".into()),
            });
        }
        let currency =
            Currency::from_code(&refunded.currency).map_err(|e| GatewayError::Rejected {
                code: "unknown_currency".into(),
                message: e.to_string(),
            })?;
        Ok(RefundOutcome {
            gateway_id: refunded.id,
            amount: Money::new(refunded.amount, currency),
        })
    }
}

/// What a confirmed PaymentIntent says about the charge.
fn charge_outcome(intent: PaymentIntent) -> Result<ChargeOutcome, GatewayError> {
    let payment_intent = intent.id;
    match intent.status.as_str() {
        "succeeded" => Ok(ChargeOutcome::Succeeded {
            payment_intent,
            charge: intent.latest_charge.as_ref().map(|c| c.id().to_owned()),
        }),
        "requires_action" => Ok(ChargeOutcome::RequiresAction { payment_intent }),
        // Confirmation failed without an error answer: the last error says why.
        "requires_payment_method" | "canceled" => {
            let error = intent.last_payment_error;
            let (code, decline_code, message) = match error {
                Some(e) => (e.code, e.decline_code, e.message),
                None => (None, None, None),
            };
            Ok(ChargeOutcome::Declined {
                payment_intent: Some(payment_intent),
                code: code.unwrap_or_else(|| "payment_failed".into()),
                decline_code,
                message: message.unwrap_or_else(|| format!("the payment is {}", intent.status)),
            })
        }
        // Not final yet (bank debits; cards do not get here): the payment_intent events
        // settle it, and the same key keeps this from becoming a second charge meanwhile.
        "processing" => Err(GatewayError::Unavailable(format!(
            "payment {payment_intent} is still processing"
        ))),
        other => Err(GatewayError::Rejected {
            code: "unexpected_status".into(),
            message: format!("payment {payment_intent} is {other}"),
        }),
    }
}

/// A charge Stripe answered with an error: card errors are declines (or, off-session, a
/// request to authenticate); anything else is a gateway error.
fn charge_failure(error: ApiError, status: u16) -> Result<ChargeOutcome, GatewayError> {
    if error.kind != "card_error" {
        return Err(status_error(error, status));
    }
    let payment_intent = error.payment_intent.map(|p| p.id);
    let code = error.code.unwrap_or_else(|| "card_declined".into());
    if let (AUTHENTICATION_REQUIRED, Some(payment_intent)) = (code.as_str(), &payment_intent) {
        return Ok(ChargeOutcome::RequiresAction {
            payment_intent: payment_intent.clone(),
        });
    }
    Ok(ChargeOutcome::Declined {
        payment_intent,
        message: error
            .message
            .unwrap_or_else(|| "the card was declined".into()),
        decline_code: error.decline_code,
        code,
    })
}

/// Stripe's answer to detaching a method that is not (or no longer) attached anywhere.
fn not_attached(error: &ApiError) -> bool {
    matches!(
        error.code.as_deref(),
        Some("payment_method_unexpected_state" | "resource_missing")
    )
}

fn gateway_error(failure: StripeFailure) -> GatewayError {
    match failure {
        StripeFailure::Api { error, status } => status_error(error, status),
        // Only a retry with the same key may find out what happened: never report it as
        // refused.
        StripeFailure::Unreadable(message) => {
            GatewayError::Unavailable(format!("unreadable answer from Stripe: {message}"))
        }
        StripeFailure::Unreachable(message) => {
            GatewayError::Unavailable(format!("Stripe did not answer: {message}"))
        }
    }
}

/// 429 (rate limit), 409 (the same key still in flight) and 5xx pass; other 4xx do not.
fn status_error(error: ApiError, status: u16) -> GatewayError {
    let message = error
        .message
        .unwrap_or_else(|| format!("Stripe answered {status}"));
    if status == 429 || status == 409 || status >= 500 {
        return GatewayError::Unavailable(message);
    }
    let code = error.decline_code.or(error.code).unwrap_or(error.kind);
    GatewayError::Rejected { code, message }
}
