//! Which payment gateway a process uses, decided once per cold start from the Stripe secret
//! in Secrets Manager. Every function's `main` (and the local runner) calls
//! [`payment_gateway`] once and keeps the result for the life of the process, so the secret
//! is read once per cold start; rotating the Stripe key takes effect as functions recycle.
//!
//! The secret (`STRIPE_SECRET_ID`, the template's `StripeSecret`) is a JSON object:
//!
//! ```json
//! {"secret_key": "sk_live_…", "webhook_secrets": ["whsec_…", "whsec_…"]}
//! ```
//!
//! `secret_key` selects Stripe; without it (the template's `{}`, and `make dev`) payments
//! go through the sandbox gateway. `webhook_secrets` are the signing secrets of the Stripe
//! webhook endpoints pointed at `POST /webhooks/stripe`: list two while rolling one.
//! `STRIPE_API_BASE` (optional) sends Stripe calls elsewhere, e.g. a local fake.

use std::sync::Arc;

use crate::sandbox_gateway::SandboxGateway;
use aws_config::SdkConfig;
use billing_app::ports::PaymentGateway;
use billing_domain::collection::stripe_signature::WebhookSecrets;
use serde::Deserialize;

use crate::stripe_gateway::StripeGateway;

pub const SECRET_ID_VAR: &str = "STRIPE_SECRET_ID";
pub const API_BASE_VAR: &str = "STRIPE_API_BASE";

/// The gateway to collect through and the secrets inbound Stripe events are signed with.
#[derive(Clone)]
pub struct PaymentSetup {
    pub gateway: Arc<dyn PaymentGateway>,
    pub webhook_secrets: WebhookSecrets,
}

impl std::fmt::Debug for PaymentSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentSetup")
            .field("gateway", &self.gateway.name())
            .field("webhook_secrets", &self.webhook_secrets)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentConfigError {
    /// Refusing to start beats silently collecting nothing through the sandbox.
    #[error("reading the Stripe secret {secret_id} failed: {message}")]
    Unreadable { secret_id: String, message: String },
    #[error("the Stripe secret {secret_id} is not {{\"secret_key\": …, \"webhook_secrets\": […]}}: {message}")]
    Malformed { secret_id: String, message: String },
}

/// What the secret holds; unknown keys are refused so a typo is not a silent sandbox.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StripeSecret {
    #[serde(default)]
    secret_key: Option<String>,
    #[serde(default)]
    webhook_secrets: Vec<String>,
}

/// The setup named by the environment (`STRIPE_SECRET_ID`, `STRIPE_API_BASE`).
pub async fn payment_gateway(sdk: &SdkConfig) -> Result<PaymentSetup, PaymentConfigError> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    load(
        sdk,
        var(SECRET_ID_VAR).as_deref(),
        var(API_BASE_VAR).as_deref(),
    )
    .await
}

/// The setup from the secret `secret_id` (the sandbox without one).
pub async fn load(
    sdk: &SdkConfig,
    secret_id: Option<&str>,
    api_base: Option<&str>,
) -> Result<PaymentSetup, PaymentConfigError> {
    let Some(secret_id) = secret_id else {
        return from_secret(StripeSecret::default(), api_base, "");
    };
    let value = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| PaymentConfigError::Unreadable {
            secret_id: secret_id.to_owned(),
            message: format!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(e)),
        })?;
    let malformed = |message: String| PaymentConfigError::Malformed {
        secret_id: secret_id.to_owned(),
        message,
    };
    let text = value
        .secret_string()
        .ok_or_else(|| malformed("it has no string value".into()))?;
    let secret: StripeSecret = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
    from_secret(secret, api_base, secret_id)
}

fn from_secret(
    secret: StripeSecret,
    api_base: Option<&str>,
    secret_id: &str,
) -> Result<PaymentSetup, PaymentConfigError> {
    let webhook_secrets = WebhookSecrets::new(secret.webhook_secrets);
    let gateway: Arc<dyn PaymentGateway> = match secret.secret_key.filter(|k| !k.is_empty()) {
        // A publishable key (`pk_…`) would fail on every call: refuse it at start.
        Some(key) if !(key.starts_with("sk_") || key.starts_with("rk_")) => {
            return Err(PaymentConfigError::Malformed {
                secret_id: secret_id.to_owned(),
                message: "secret_key must be a secret (sk_…) or restricted (rk_…) key".into(),
            })
        }
        Some(key) => Arc::new(StripeGateway::new(&key, api_base).map_err(|e| {
            PaymentConfigError::Malformed {
                secret_id: secret_id.to_owned(),
                message: e.to_string(),
            }
        })?),
        None => Arc::new(SandboxGateway::new()),
    };
    Ok(PaymentSetup {
        gateway,
        webhook_secrets,
    })
}
