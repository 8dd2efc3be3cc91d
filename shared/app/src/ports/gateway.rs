//! The payment gateway: where cards are kept and charged. Two adapters implement it: Stripe
//! (`billing-aws`) and the sandbox (no network, Stripe's test-card behaviour), which is used
//! whenever no Stripe secret is configured.
//!
//! Every call that moves money carries an idempotency key that the gateway honours, so a
//! retried call (a redelivered SQS message, a worker that crashed after the gateway accepted
//! the charge) returns the first outcome instead of charging again.

use std::sync::Arc;

use async_trait::async_trait;
use billing_domain::collection::connect::StripeAccount;
use billing_domain::collection::payment::Payment;
use billing_domain::kernel::ids::TenantId;
use billing_domain::kernel::money::Money;

use super::{PaymentStore, StoreError};

/// A gateway customer to create for an account on first need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGatewayCustomer {
    /// Derived from the account, so two racing first uses create one customer.
    pub idempotency_key: String,
    /// Our account id, kept in the gateway's metadata.
    pub account_id: String,
    pub name: String,
    pub email: String,
}

/// What is kept of a card: never the number, only what identifies it to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardDetails {
    /// The gateway's payment method id (`pm_…`).
    pub gateway_id: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: u8,
    pub exp_year: u16,
    /// ISO 3166-1 alpha-2, when the gateway knows it.
    pub country: Option<String>,
}

/// One charge of a payment attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// The payment attempt id: the gateway charges at most once per key.
    pub idempotency_key: String,
    pub customer: String,
    pub payment_method: String,
    pub amount: Money,
    pub description: String,
    /// Kept in the gateway's metadata (`invoice_id`, `attempt_id`, `tenant_id`) so inbound
    /// gateway events can be matched to our records.
    pub metadata: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded {
        payment_intent: String,
        charge: Option<String>,
    },
    /// The card was declined; `decline_code` and `code` are the gateway's own words, which
    /// the domain classifies as hard or soft.
    Declined {
        payment_intent: Option<String>,
        code: String,
        decline_code: Option<String>,
        message: String,
    },
    /// The customer must authenticate (3-D Secure) before the charge can complete.
    RequiresAction { payment_intent: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// The refund id: the gateway refunds at most once per key.
    pub idempotency_key: String,
    pub payment_intent: String,
    /// Minor units; the whole payment when `None`.
    pub amount: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOutcome {
    pub gateway_id: String,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// A network fault, a 5xx or a rate limit: the same call (same idempotency key) may
    /// succeed later.
    #[error("the payment gateway is unavailable: {0}")]
    Unavailable(String),
    /// The gateway refused the request itself (unknown or unusable payment method, a refund
    /// larger than the payment, …): retrying will not help.
    #[error("the payment gateway refused the request ({code}): {message}")]
    Rejected { code: String, message: String },
}

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Which adapter this is (`stripe` or `sandbox`), recorded on payments.
    fn name(&self) -> &'static str;
    /// The same gateway acting for a tenant's Stripe connected account: every request it
    /// makes carries `Stripe-Account`. `None` (the default, the sandbox) when the gateway
    /// has no accounts, so the tenant uses this one as it is.
    fn connected(&self, _account: &StripeAccount) -> Option<Arc<dyn PaymentGateway>> {
        None
    }
    /// Creates the gateway customer an account's payment methods are attached to.
    async fn create_customer(&self, customer: &NewGatewayCustomer) -> Result<String, GatewayError>;
    /// Attaches a payment method (a Stripe `pm_…` id or a sandbox test token) to a customer.
    async fn attach_payment_method(
        &self,
        customer: &str,
        token: &str,
    ) -> Result<CardDetails, GatewayError>;
    async fn detach_payment_method(&self, gateway_id: &str) -> Result<(), GatewayError>;
    /// Creates and confirms an off-session charge.
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError>;
    async fn refund(&self, request: &RefundRequest) -> Result<RefundOutcome, GatewayError>;
    /// What became of a charge that waited for the customer to authenticate (3-D Secure),
    /// asked after the customer's page says they did: Stripe reads the PaymentIntent; the
    /// sandbox's challenge (our own page) passes. Still `RequiresAction` while they have not.
    async fn action_outcome(&self, payment_intent: &str) -> Result<ChargeOutcome, GatewayError>;
    /// What the customer's browser needs to authenticate or re-confirm a charge with
    /// Stripe.js: the PaymentIntent's client secret. `None` where the challenge is our own
    /// page (the sandbox).
    async fn action_secret(&self, payment_intent: &str) -> Result<Option<String>, GatewayError>;
    /// The publishable key a page loads Stripe.js with, when this gateway is Stripe and one
    /// is configured; `None` for the sandbox (the page shows its own card form).
    fn publishable_key(&self) -> Option<&str> {
        None
    }
}

/// A gateway event whose signature has been verified, in our terms. The inbound webhook
/// adapter parses the gateway's payload into this; the payments use cases apply it once
/// per `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayEvent {
    /// The gateway's event id (`evt_…`): an event is applied at most once.
    pub id: String,
    pub created: jiff::Timestamp,
    pub livemode: bool,
    /// The connected account the event happened on (Stripe's `account`); `None` for the
    /// platform account. Applied only to a tenant whose settings name the same account.
    pub account: Option<String>,
    pub kind: GatewayEventKind,
}

/// The metadata we put on a charge (`tenant_id`, `invoice_id`, `attempt_id`), as it comes
/// back on the gateway's objects.
pub type GatewayMetadata = std::collections::BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEventKind {
    PaymentSucceeded {
        payment_intent: String,
        charge: Option<String>,
        amount: i64,
        currency: String,
        metadata: GatewayMetadata,
    },
    PaymentFailed {
        payment_intent: String,
        code: String,
        decline_code: Option<String>,
        message: String,
        metadata: GatewayMetadata,
    },
    RequiresAction {
        payment_intent: String,
        metadata: GatewayMetadata,
    },
    ChargeRefunded {
        charge: String,
        payment_intent: Option<String>,
        /// The total refunded on the charge so far, in minor units.
        amount_refunded: i64,
        currency: String,
        metadata: GatewayMetadata,
    },
    DisputeCreated {
        dispute: String,
        charge: String,
        payment_intent: Option<String>,
        amount: i64,
        currency: String,
        reason: String,
    },
    PaymentMethodDetached {
        payment_method: String,
    },
    /// A type we do not act on: acknowledged and logged.
    Other {
        event_type: String,
    },
}

/// What a payment records as its gateway when its mode has none to collect through.
pub const NO_GATEWAY: &str = "none";

/// The gateways a deployment collects through, one per tenant mode, so that modes never
/// meet: a sandbox tenant reaches only the sandbox or a Stripe test-mode key, a live tenant
/// only a live-mode key. A mode without one is refused at each call, before any request.
#[derive(Clone)]
pub struct Gateways {
    sandbox: Arc<dyn PaymentGateway>,
    live: Option<Arc<dyn PaymentGateway>>,
}

impl Gateways {
    /// One gateway for both modes: tests, and the local runner without Stripe keys.
    pub fn same(gateway: Arc<dyn PaymentGateway>) -> Self {
        Self {
            sandbox: gateway.clone(),
            live: Some(gateway),
        }
    }

    /// `sandbox` for sandbox tenants, `live` (if any) for live ones.
    pub fn by_mode(
        sandbox: Arc<dyn PaymentGateway>,
        live: Option<Arc<dyn PaymentGateway>>,
    ) -> Self {
        Self { sandbox, live }
    }

    /// The gateway of a tenant in `livemode`, or the refusal a payment records.
    pub fn for_mode(&self, livemode: bool) -> Result<&Arc<dyn PaymentGateway>, GatewayError> {
        if !livemode {
            return Ok(&self.sandbox);
        }
        self.live.as_ref().ok_or_else(|| GatewayError::Rejected {
            code: LIVE_GATEWAY_MISSING.into(),
            message: "live tenants collect only through a live-mode Stripe key (sk_live_… or \
                      rk_live_…) and none is configured; nothing was charged"
                .into(),
        })
    }

    /// The gateway of a tenant in `livemode` with its payment settings' connected account
    /// (if any): what every gateway call made for that tenant goes through.
    pub fn for_tenant(
        &self,
        livemode: bool,
        account: Option<&StripeAccount>,
    ) -> Result<Arc<dyn PaymentGateway>, GatewayError> {
        let gateway = self.for_mode(livemode)?;
        Ok(account
            .and_then(|a| gateway.connected(a))
            .unwrap_or_else(|| gateway.clone()))
    }

    /// [`Gateways::for_tenant`] with the connected account read from the tenant's payment
    /// settings: the outer error is the store's, the inner one the refusal of a mode
    /// without a gateway.
    pub async fn of_tenant<S: PaymentStore + ?Sized>(
        &self,
        store: &S,
        tenant: TenantId,
        livemode: bool,
    ) -> Result<Result<Arc<dyn PaymentGateway>, GatewayError>, StoreError> {
        let settings = store.payment_settings(tenant).await?;
        Ok(self.for_tenant(livemode, settings.stripe_account.as_ref()))
    }

    /// The gateway that calls about `payment` (a refund) go through: the Stripe account
    /// it was sent to, or, for one never sent, the tenant's as [`Gateways::of_tenant`].
    pub async fn of_payment<S: PaymentStore + ?Sized>(
        &self,
        store: &S,
        tenant: TenantId,
        payment: &Payment,
    ) -> Result<Result<Arc<dyn PaymentGateway>, GatewayError>, StoreError> {
        match &payment.sent_to {
            Some(sent) => Ok(self.for_tenant(payment.livemode, sent.stripe_account.as_ref())),
            None => self.of_tenant(store, tenant, payment.livemode).await,
        }
    }

    /// The name payments of `livemode` record: [`NO_GATEWAY`] when the mode has none.
    pub fn name(&self, livemode: bool) -> &'static str {
        self.for_mode(livemode).map_or(NO_GATEWAY, |g| g.name())
    }
}

/// The gateway code of a live payment refused because no live-mode key is configured.
pub const LIVE_GATEWAY_MISSING: &str = "live_gateway_not_configured";
