//! Which payment gateways a process uses, decided once per cold start from the Stripe
//! secret in Secrets Manager. Every function's `main` (and the local runner) calls
//! [`payment_gateway`] once and keeps the result for the life of the process, so the secret
//! is read once per cold start; rotating a Stripe key takes effect as functions recycle.
//!
//! The secret (`STRIPE_SECRET_ID`, the template's `StripeSecret`) is a JSON object:
//!
//! ```json
//! {"live_secret_key": "sk_live_…", "test_secret_key": "sk_test_…", "webhook_secrets": ["whsec_…"],
//!  "live_publishable_key": "pk_live_…", "test_publishable_key": "pk_test_…"}
//! ```
//!
//! **Modes never meet.** Sandbox tenants (test clocks included) collect through
//! `test_secret_key` when set, else through the sandbox gateway; they never reach a live
//! key. Live tenants collect only through `live_secret_key`: without one their attempts fail
//! with `live_gateway_not_configured` recorded, and nothing is sent anywhere. Each key must
//! be of the mode it is configured for (`sk_live_`/`rk_live_`, `sk_test_`/`rk_test_`), or
//! the process refuses to start. `secret_key`, the older single field, counts as the key of
//! the mode its prefix names. A local deployment (`make dev`) without any key lets live
//! tenants use the sandbox as well, since nothing there is real.
//!
//! **Several tenants: Stripe Connect.** The keys are the platform's, the only Stripe
//! credentials a deployment holds. A tenant whose payment settings name a connected account
//! (`stripe_account`, `acct_…`) has every request made on that account with the platform key
//! of its mode and `Stripe-Account` ([`Gateways::for_tenant`]); a tenant without one collects
//! into the platform account. Each charge still carries `tenant_id`, `invoice_id` and
//! `attempt_id` in its metadata so Stripe's events find their tenant, and an event is applied
//! only when its `account` is that tenant's.
//!
//! The publishable keys (optional) let hosted invoice pages take cards with Stripe.js;
//! without one a Stripe-collected invoice's page shows no card form.
//!
//! `webhook_secrets` are the signing secrets of the Stripe webhook endpoints pointed at
//! `POST /webhooks/stripe`: list two while rolling one. `STRIPE_API_BASE` (optional) sends
//! Stripe calls elsewhere, e.g. a local fake.

use std::sync::Arc;

use crate::config::{check_stripe_key, StripeKeyError, StripeMode};
use crate::sandbox_gateway::SandboxGateway;
use aws_config::SdkConfig;
use billing_app::ports::{Gateways, PaymentGateway};
use billing_domain::collection::stripe_signature::WebhookSecrets;
use billing_domain::kernel::deployment::Deployment;
use serde::Deserialize;
use tracing::Instrument;

use crate::sigv4::Signer;
use crate::stripe_gateway::StripeGateway;

/// Bounds the one read of the secret per cold start.
const SECRET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub const SECRET_ID_VAR: &str = "STRIPE_SECRET_ID";
pub const API_BASE_VAR: &str = "STRIPE_API_BASE";

/// The gateways to collect through, by tenant mode, and the secrets inbound Stripe events
/// are signed with.
#[derive(Clone)]
pub struct PaymentSetup {
    pub gateways: Gateways,
    pub webhook_secrets: WebhookSecrets,
}

impl std::fmt::Debug for PaymentSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentSetup")
            .field("sandbox", &self.gateways.name(false))
            .field("live", &self.gateways.name(true))
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
    live_secret_key: Option<String>,
    #[serde(default)]
    test_secret_key: Option<String>,
    /// The older single key: the mode its prefix names.
    #[serde(default)]
    secret_key: Option<String>,
    #[serde(default)]
    webhook_secrets: Vec<String>,
    /// Stripe.js keys of the hosted invoice pages (`pk_live_…`, `pk_test_…`), by mode.
    #[serde(default)]
    live_publishable_key: Option<String>,
    #[serde(default)]
    test_publishable_key: Option<String>,
}

/// The setup named by the environment (`STRIPE_SECRET_ID`, `STRIPE_API_BASE`).
pub async fn payment_gateway(
    sdk: &SdkConfig,
    deployment: Deployment,
) -> Result<PaymentSetup, PaymentConfigError> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    load(
        sdk,
        var(SECRET_ID_VAR).as_deref(),
        var(API_BASE_VAR).as_deref(),
        deployment,
    )
    .await
}

/// The setup from the secret `secret_id` (the sandbox without one).
pub async fn load(
    sdk: &SdkConfig,
    secret_id: Option<&str>,
    api_base: Option<&str>,
    deployment: Deployment,
) -> Result<PaymentSetup, PaymentConfigError> {
    let Some(secret_id) = secret_id else {
        return from_secret(StripeSecret::default(), api_base, "", deployment);
    };
    let unreadable = |message: String| PaymentConfigError::Unreadable {
        secret_id: secret_id.to_owned(),
        message,
    };
    let text = secret_string(sdk, secret_id).await.map_err(unreadable)?;
    let text = text.ok_or_else(|| PaymentConfigError::Malformed {
        secret_id: secret_id.to_owned(),
        message: "it has no string value".into(),
    })?;
    from_json(&text, api_base, secret_id, deployment)
}

/// Secrets Manager's `GetSecretValue` (JSON 1.1 protocol) as one signed POST: the secret's
/// string, `None` when it holds only binary. Not retried: a failed read fails the cold
/// start, and Lambda starts the function again on the next invocation.
async fn secret_string(sdk: &SdkConfig, secret_id: &str) -> Result<Option<String>, String> {
    #[derive(Deserialize)]
    struct Value {
        #[serde(rename = "SecretString")]
        secret_string: Option<String>,
    }
    #[derive(Deserialize)]
    struct Failure {
        #[serde(rename = "__type", default)]
        kind: String,
        #[serde(alias = "Message", default)]
        message: String,
    }
    let signer = Signer::new(sdk).map_err(|e| e.to_string())?;
    let url = match sdk.endpoint_url() {
        Some(endpoint) => format!("{}/", endpoint.trim_end_matches('/')),
        None => format!("https://secretsmanager.{}.amazonaws.com/", signer.region()),
    };
    let body = serde_json::json!({ "SecretId": secret_id }).to_string();
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "secretsmanager.GetSecretValue"),
    ];
    let (signed, _) = signer
        .sign(
            "secretsmanager",
            "POST",
            &url,
            &headers,
            body.as_bytes(),
            None,
        )
        .await?;
    let mut request = reqwest::Client::builder()
        .connect_timeout(crate::config::CONNECT_TIMEOUT)
        .timeout(SECRET_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?
        .post(url)
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    for (name, value) in signed {
        request = request.header(name, value);
    }
    // A subsegment named as `sdk_http` names the SDK's calls (from `x-amz-target`).
    let (status, bytes) = async {
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        tracing::Span::current().record("status", status.as_u16());
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, bytes))
    }
    .instrument(crate::xray::aws_call("secretsmanager", "GetSecretValue"))
    .await?;
    if status.is_success() {
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        return Ok(value.secret_string);
    }
    // `__type` is `[namespace#]ResourceNotFoundException` and the like.
    Err(match serde_json::from_slice::<Failure>(&bytes) {
        Ok(f) => format!(
            "{status}: {}: {}",
            f.kind.rsplit('#').next().unwrap_or_default(),
            f.message
        ),
        Err(_) => format!("{status}: {}", String::from_utf8_lossy(&bytes)),
    })
}

/// The setup from the secret's JSON `text`, as read from the secret `secret_id`.
pub fn from_json(
    text: &str,
    api_base: Option<&str>,
    secret_id: &str,
    deployment: Deployment,
) -> Result<PaymentSetup, PaymentConfigError> {
    let secret: StripeSecret =
        serde_json::from_str(text).map_err(|e| PaymentConfigError::Malformed {
            secret_id: secret_id.to_owned(),
            message: e.to_string(),
        })?;
    from_secret(secret, api_base, secret_id, deployment)
}

fn from_secret(
    secret: StripeSecret,
    api_base: Option<&str>,
    secret_id: &str,
    deployment: Deployment,
) -> Result<PaymentSetup, PaymentConfigError> {
    let malformed = |message: String| PaymentConfigError::Malformed {
        secret_id: secret_id.to_owned(),
        message,
    };
    let wrong = |e: StripeKeyError| malformed(e.to_string());
    let present = |key: Option<String>| key.filter(|k| !k.is_empty());
    let (mut live, mut test) = (None, None);
    for (field, key, expected) in [
        (
            "live_secret_key",
            present(secret.live_secret_key),
            Some(StripeMode::Live),
        ),
        (
            "test_secret_key",
            present(secret.test_secret_key),
            Some(StripeMode::Test),
        ),
        ("secret_key", present(secret.secret_key), None),
    ] {
        let Some(key) = key else { continue };
        let slot_mode = check_stripe_key(field, &key, expected).map_err(wrong)?;
        let slot = match slot_mode {
            StripeMode::Live => &mut live,
            StripeMode::Test => &mut test,
        };
        if slot.is_some() {
            return Err(malformed(format!(
                "{field} names a mode another field already has a key for"
            )));
        }
        let mut gateway =
            StripeGateway::new(&key, api_base).map_err(|e| malformed(e.to_string()))?;
        let publishable = match slot_mode {
            StripeMode::Live => &secret.live_publishable_key,
            StripeMode::Test => &secret.test_publishable_key,
        };
        if let Some(publishable) = publishable.as_deref().filter(|k| !k.is_empty()) {
            gateway = gateway.with_publishable_key(publishable);
        }
        *slot = Some(Arc::new(gateway) as Arc<dyn PaymentGateway>);
    }
    let sandbox: Arc<dyn PaymentGateway> = Arc::new(SandboxGateway::new());
    let gateways = match (test, live) {
        // Nothing real is configured: a local deployment's live tenants use the sandbox too.
        (None, None) if deployment == Deployment::Local => Gateways::same(sandbox),
        (test, live) => Gateways::by_mode(test.unwrap_or(sandbox), live),
    };
    Ok(PaymentSetup {
        gateways,
        webhook_secrets: WebhookSecrets::new(secret.webhook_secrets),
    })
}
