//! The Stripe payment gateway, on async-stripe.
//!
//! **Which async-stripe.** 1.0.0-rc.10, pinned exactly, over 0.41 (the latest stable):
//!
//! - 0.41 brings its own HTTP stack: hyper 0.14, http 0.2, hyper-rustls 0.24 and rustls 0.21,
//!   next to the hyper 1 / rustls 0.23 that reqwest and the AWS SDK already link. Two TLS
//!   stacks in every bootstrap, and two to build cold on two cores.
//! - 1.0 runs on hyper 1 + hyper-rustls 0.27 + rustls 0.23 with the `ring` provider: exactly
//!   the crates already in the tree (`cargo tree -i hyper` shows one hyper, `-i openssl-sys`
//!   nothing, `-i aws-lc-rs` nothing). It is split into crates per API area with a feature per
//!   resource, so only `customer`, `payment_intent`, `refund` (async-stripe-core) and
//!   `payment_method` (async-stripe-payment) are compiled. Responses are parsed with
//!   miniserde, which keeps the generated code smaller than serde's.
//! - The price: it builds no faster. Measured cold in debug on this two-core machine (busy),
//!   both versions add ~140 s of compile time to the workspace: 0.41 as one 74 s crate plus
//!   53 crates of its second stack, 1.0 as 16 crates, 93 s of them the shared types crate
//!   (`async-stripe-shared`, every object any resource can return), one long unit on the
//!   critical path. And the API is a release candidate: pinned with `=` so an upgrade is a
//!   decision, and everything it touches is in this file, behind the [`PaymentGateway`] port.
//!
//! **What it sends.** One request per call: a customer, an attach, a detach, a PaymentIntent
//! created and confirmed off-session in one request (so a successful payment costs one Stripe
//! request), a refund. A gateway made for a tenant's connected account
//! ([`PaymentGateway::connected`]) sends each of them with `Stripe-Account`. Every call that creates something carries the caller's idempotency key
//! as Stripe's `Idempotency-Key` (the payment attempt id for a charge), so a retry after a
//! crash or a timeout gets Stripe's first answer instead of a second charge. The client never
//! retries by itself: retrying is the payment worker's decision, with the same key.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use billing_app::ports::{
    CardDetails, ChargeOutcome, ChargeRequest, GatewayError, NewGatewayCustomer, PaymentGateway,
    RefundOutcome, RefundRequest,
};
use billing_domain::collection::connect::StripeAccount;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::money::Money;
use std::sync::Arc;
use stripe::{
    AccountId, ApiErrors, ApiErrorsType, Client, ClientBuilder, IdempotencyKey, RequestStrategy,
};
use stripe::{StripeError, StripeRequest};
use stripe_client_core::CustomizableStripeRequest;
use stripe_core::customer::CreateCustomer;
use stripe_core::payment_intent::{
    CreatePaymentIntent, CreatePaymentIntentAutomaticPaymentMethods,
    CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects, CreatePaymentIntentOffSession,
};
use stripe_core::refund::CreateRefund;
use stripe_core::{PaymentIntent, PaymentIntentStatus};
use stripe_payment::payment_method::{AttachPaymentMethod, DetachPaymentMethod};

/// Each HTTP attempt gets this long: less than the API function's 10 s, so a slow Stripe
/// becomes a 503 the caller can retry rather than a killed Lambda.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);

/// The Stripe error `code` of an off-session charge that needs the customer to authenticate.
const AUTHENTICATION_REQUIRED: &str = "authentication_required";

#[derive(Clone)]
pub struct StripeGateway {
    client: Client,
    /// The connected account every request is made on (`Stripe-Account`); `None`: the
    /// platform account of the key.
    account: Option<AccountId>,
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
    /// `https://api.stripe.com/` (a local fake in tests).
    pub fn new(secret_key: &str, api_base: Option<&str>) -> Result<Self, StripeConfigError> {
        let mut builder = ClientBuilder::new(secret_key)
            .app_info(
                "serverless-billing",
                Some(env!("CARGO_PKG_VERSION").into()),
                None,
            )
            .request_strategy(RequestStrategy::Once)
            .timeout(REQUEST_TIMEOUT);
        if let Some(base) = api_base {
            // The client appends `v1/…` to the base as it is.
            let base = if base.ends_with('/') {
                base.to_owned()
            } else {
                format!("{base}/")
            };
            builder = builder.url(base);
        }
        let client = builder
            .build()
            .map_err(|e| StripeConfigError(e.to_string()))?;
        Ok(Self {
            client,
            account: None,
        })
    }

    /// Sends a request on this gateway's connected account, if it has one.
    fn on_account<T>(&self, request: CustomizableStripeRequest<T>) -> CustomizableStripeRequest<T> {
        match &self.account {
            Some(account) => request.account_id(account.clone()),
            None => request,
        }
    }
}

fn idempotent(key: &str) -> Result<RequestStrategy, GatewayError> {
    IdempotencyKey::new(key)
        .map(RequestStrategy::Idempotent)
        .map_err(|e| GatewayError::Rejected {
            code: "invalid_idempotency_key".into(),
            message: e.to_string(),
        })
}

fn stripe_currency(money: Money) -> stripe_types::Currency {
    // Infallible: an unknown code becomes `Currency::Unknown`, which Stripe then refuses.
    money
        .currency
        .api_code()
        .parse()
        .unwrap_or_else(|e| match e {})
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn connected(&self, account: &StripeAccount) -> Option<Arc<dyn PaymentGateway>> {
        Some(Arc::new(Self {
            client: self.client.clone(),
            account: Some(AccountId::from(account.as_str())),
        }))
    }

    async fn create_customer(&self, customer: &NewGatewayCustomer) -> Result<String, GatewayError> {
        let create = CreateCustomer::new()
            .email(customer.email.clone())
            .name(customer.name.clone())
            .metadata(HashMap::from([(
                "account_id".to_owned(),
                customer.account_id.clone(),
            )]));
        let created = self
            .on_account(create.customize())
            .request_strategy(idempotent(&customer.idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(gateway_error)?;
        Ok(created.id.to_string())
    }

    async fn attach_payment_method(
        &self,
        customer: &str,
        token: &str,
    ) -> Result<CardDetails, GatewayError> {
        // Attaching twice is harmless (Stripe answers with the attached method), so no key.
        let attach = AttachPaymentMethod::new(token).customer(customer);
        let method = self
            .on_account(attach.customize())
            .send(&self.client)
            .await
            .map_err(gateway_error)?;
        let card = method.card.ok_or_else(|| GatewayError::Rejected {
            code: "unsupported_payment_method".into(),
            message: format!("{} is not a card", method.id),
        })?;
        Ok(CardDetails {
            gateway_id: method.id.to_string(),
            brand: card.brand,
            last4: card.last4,
            exp_month: u8::try_from(card.exp_month).unwrap_or_default(),
            exp_year: u16::try_from(card.exp_year).unwrap_or_default(),
            country: card.country,
        })
    }

    async fn detach_payment_method(&self, gateway_id: &str) -> Result<(), GatewayError> {
        let detach = DetachPaymentMethod::new(gateway_id);
        match self.on_account(detach.customize()).send(&self.client).await {
            Ok(_) => Ok(()),
            // Detached already (a retry, or the customer removed it in Stripe): done.
            Err(StripeError::Stripe(e, _)) if not_attached(&e) => Ok(()),
            Err(e) => Err(gateway_error(e)),
        }
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        let metadata: HashMap<String, String> = request.metadata.iter().cloned().collect();
        let create =
            CreatePaymentIntent::new(request.amount.minor, stripe_currency(request.amount))
                .customer(request.customer.clone())
                .payment_method(request.payment_method.clone())
                .description(request.description.clone())
                .metadata(metadata)
                .confirm(true)
                .off_session(CreatePaymentIntentOffSession::Bool(true))
                // Cards only in practice: nothing that would need a redirect (and a return URL).
                .automatic_payment_methods(CreatePaymentIntentAutomaticPaymentMethods {
                    enabled: true,
                    allow_redirects: Some(
                        CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects::Never,
                    ),
                });
        let sent = self
            .on_account(create.customize())
            .request_strategy(idempotent(&request.idempotency_key)?)
            .send(&self.client)
            .await;
        match sent {
            Ok(intent) => charge_outcome(&intent),
            Err(StripeError::Stripe(error, status)) => charge_failure(*error, status),
            Err(other) => Err(gateway_error(other)),
        }
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundOutcome, GatewayError> {
        let mut refund = CreateRefund::new().payment_intent(request.payment_intent.clone());
        if let Some(amount) = request.amount {
            refund = refund.amount(amount.minor);
        }
        let refunded = self
            .on_account(refund.customize())
            .request_strategy(idempotent(&request.idempotency_key)?)
            .send(&self.client)
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
        let currency = Currency::from_code(&refunded.currency.to_string()).map_err(|e| {
            GatewayError::Rejected {
                code: "unknown_currency".into(),
                message: e.to_string(),
            }
        })?;
        Ok(RefundOutcome {
            gateway_id: refunded.id.to_string(),
            amount: Money::new(refunded.amount, currency),
        })
    }
}

/// What a confirmed PaymentIntent says about the charge.
fn charge_outcome(intent: &PaymentIntent) -> Result<ChargeOutcome, GatewayError> {
    let payment_intent = intent.id.to_string();
    match &intent.status {
        PaymentIntentStatus::Succeeded => Ok(ChargeOutcome::Succeeded {
            payment_intent,
            charge: intent.latest_charge.as_ref().map(|c| c.id().to_string()),
        }),
        PaymentIntentStatus::RequiresAction => Ok(ChargeOutcome::RequiresAction { payment_intent }),
        // Confirmation failed without an error answer: the last error says why.
        PaymentIntentStatus::RequiresPaymentMethod | PaymentIntentStatus::Canceled => {
            let error = intent.last_payment_error.as_deref();
            Ok(ChargeOutcome::Declined {
                payment_intent: Some(payment_intent),
                code: error
                    .and_then(|e| e.code.as_ref())
                    .map_or("payment_failed", |c| c.as_str())
                    .to_owned(),
                decline_code: error.and_then(|e| e.decline_code.clone()),
                message: error
                    .and_then(|e| e.message.clone())
                    .unwrap_or_else(|| format!("the payment is {}", intent.status.as_str())),
            })
        }
        // Not final yet (bank debits; cards do not get here): the payment_intent events
        // settle it, and the same key keeps this from becoming a second charge meanwhile.
        PaymentIntentStatus::Processing => Err(GatewayError::Unavailable(format!(
            "payment {payment_intent} is still processing"
        ))),
        other => Err(GatewayError::Rejected {
            code: "unexpected_status".into(),
            message: format!("payment {payment_intent} is {}", other.as_str()),
        }),
    }
}

/// A charge Stripe answered with an error: card errors are declines (or, off-session, a
/// request to authenticate); anything else is a gateway error.
fn charge_failure(error: ApiErrors, status: u16) -> Result<ChargeOutcome, GatewayError> {
    if error.type_ != ApiErrorsType::CardError {
        return Err(status_error(&error, status));
    }
    let payment_intent = error.payment_intent.as_ref().map(|p| p.id.to_string());
    let code = error
        .code
        .as_ref()
        .map_or("card_declined", |c| c.as_str())
        .to_owned();
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
fn not_attached(error: &ApiErrors) -> bool {
    matches!(
        error.code.as_ref().map(|c| c.as_str()),
        Some("payment_method_unexpected_state" | "resource_missing")
    )
}

fn gateway_error(error: StripeError) -> GatewayError {
    match error {
        StripeError::Stripe(error, status) => status_error(&error, status),
        // A success or an error body we cannot read: the request may have done its work, so
        // only a retry with the same key may find out; never report it as refused.
        StripeError::JSONDeserialize(message) => {
            GatewayError::Unavailable(format!("unreadable answer from Stripe: {message}"))
        }
        StripeError::ClientError(message) => GatewayError::Unavailable(message),
        StripeError::Timeout => GatewayError::Unavailable("Stripe did not answer in time".into()),
        StripeError::ConfigError(message) => GatewayError::Rejected {
            code: "gateway_configuration".into(),
            message,
        },
    }
}

/// 429 (rate limit), 409 (the same key still in flight) and 5xx pass; other 4xx do not.
fn status_error(error: &ApiErrors, status: u16) -> GatewayError {
    let message = error
        .message
        .clone()
        .unwrap_or_else(|| format!("Stripe answered {status}"));
    if status == 429 || status == 409 || status >= 500 {
        return GatewayError::Unavailable(message);
    }
    let code = error
        .decline_code
        .clone()
        .or_else(|| error.code.as_ref().map(|c| c.as_str().to_owned()))
        .unwrap_or_else(|| error.type_.as_str().to_owned());
    GatewayError::Rejected { code, message }
}
