//! Configuration from the environment, shared by every function and the local runner.
//!
//! | variable            | meaning                                                    | default      |
//! |---------------------|------------------------------------------------------------|--------------|
//! | `TABLE_NAME`        | the DynamoDB table                                         | required     |
//! | `AWS_ENDPOINT_URL`  | send every AWS call here (the local stand-in)              | AWS itself   |
//! | `AWS_REGION`        | region                                                     | `us-east-1`  |
//! | `AUDIT_RETENTION_DAYS` | days an audit record is kept (its TTL)                  | 1096 (3 years) |
//! | `SIMULATION_PER_REQUEST` | live subscriptions a catalog change simulation prices in its request (more: a job), and per job chunk | 500 |
//!
//! The environment always describes a deployed platform; only [`Config::local`] (the local
//! runner and the tests) gives [`Deployment::Local`], so no variable can turn a deployed
//! function into a local one.

use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::SharedTimeSource;
use billing_domain::customers::erasure::DEFAULT_AUDIT_RETENTION_DAYS;
use billing_domain::kernel::deployment::Deployment;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table_name: String,
    pub region: String,
    /// Set for the local stack; in AWS the SDK finds the endpoints itself.
    pub endpoint_url: Option<String>,
    pub deployment: Deployment,
    /// Days an audit record is kept before the table's TTL deletes it.
    pub audit_retention_days: u32,
    /// Live subscriptions a simulation prices in its request, and a job per chunk: the api
    /// and billing-worker read the same value.
    pub simulation_per_request: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("missing environment variable {0}")]
pub struct MissingVar(pub &'static str);

impl Config {
    pub fn from_env() -> Result<Self, MissingVar> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(Self {
            table_name: var("TABLE_NAME").ok_or(MissingVar("TABLE_NAME"))?,
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            endpoint_url: var("AWS_ENDPOINT_URL"),
            deployment: Deployment::Deployed,
            audit_retention_days: match var("AUDIT_RETENTION_DAYS") {
                Some(days) => days.parse().ok().filter(|d| *d > 0).ok_or(MissingVar(
                    "AUDIT_RETENTION_DAYS (a positive number of days)",
                ))?,
                None => DEFAULT_AUDIT_RETENTION_DAYS,
            },
            simulation_per_request: match var("SIMULATION_PER_REQUEST") {
                Some(n) => n.parse().ok().filter(|n| *n > 0).ok_or(MissingVar(
                    "SIMULATION_PER_REQUEST (a positive number of subscriptions)",
                ))?,
                None => billing_app::billing::PER_REQUEST,
            },
        })
    }

    /// Settings for a local stand-in at `endpoint_url`.
    pub fn local(table_name: impl Into<String>, endpoint_url: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            region: "us-east-1".into(),
            endpoint_url: Some(endpoint_url.into()),
            deployment: Deployment::Local,
            audit_retention_days: DEFAULT_AUDIT_RETENTION_DAYS,
            simulation_per_request: billing_app::billing::PER_REQUEST,
        }
    }

    /// The SDK configuration every client is built from, once per process, assembled here
    /// rather than by `aws_config::defaults`. In Lambda the credentials are always the
    /// execution role's, in the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`); the default chain's profile files, SSO, STS web identity, ECS
    /// and IMDS providers would only add to every bootstrap (see the README's bootstrap
    /// sizes). A local endpoint gets static dummy credentials so nothing searches for real
    /// ones. Retries and timeouts are the SDK's defaults, as `aws_config::defaults` gives.
    pub async fn sdk_config(&self) -> SdkConfig {
        let credentials = match &self.endpoint_url {
            Some(_) => {
                SharedCredentialsProvider::new(Credentials::from_keys("local", "local", None))
            }
            None => SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()),
        };
        let mut builder = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(credentials)
            .identity_cache(IdentityCache::lazy().build())
            .http_client(crate::sdk_http::client(CONNECT_TIMEOUT))
            .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
            .time_source(SharedTimeSource::default())
            .retry_config(RetryConfig::standard())
            // DynamoDB's answers are small and come whole; a transaction the service takes
            // over a second to commit is not a stalled download.
            .stalled_stream_protection(
                aws_smithy_runtime_api::client::stalled_stream_protection::StalledStreamProtectionConfig::disabled(),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build(),
            );
        builder.set_endpoint_url(self.endpoint_url.clone());
        builder.build()
    }

    /// For an operator's tools at a workstation (`billing-admin` against a deployed table):
    /// the SDK's whole default chain (profiles, SSO, environment, …), never linked into a
    /// function.
    pub async fn workstation_sdk_config(&self) -> SdkConfig {
        if self.endpoint_url.is_some() {
            return self.sdk_config().await;
        }
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(crate::sdk_http::client(CONNECT_TIMEOUT))
            .region(Region::new(self.region.clone()))
            .load()
            .await
    }
}

/// `aws_config::defaults`' connect timeout.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// The Stripe mode a key belongs to, as its prefix says: `sk_test_`/`rk_test_` are test
/// mode, `sk_live_`/`rk_live_` live mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeMode {
    Test,
    Live,
}

impl StripeMode {
    pub fn of_key(key: &str) -> Option<Self> {
        let mode = ["sk_", "rk_"]
            .iter()
            .find_map(|kind| key.strip_prefix(kind))?;
        if mode.starts_with("test_") {
            Some(Self::Test)
        } else if mode.starts_with("live_") {
            Some(Self::Live)
        } else {
            None
        }
    }

    fn prefixes(self) -> &'static str {
        match self {
            Self::Test => "sk_test_… or rk_test_…",
            Self::Live => "sk_live_… or rk_live_…",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeKeyError {
    /// A publishable key (`pk_…`) or anything else would fail on every call.
    #[error("{field} must be a Stripe secret or restricted key of test or live mode (sk_test_…, sk_live_…, rk_test_…, rk_live_…)")]
    NotASecretKey { field: &'static str },
    /// A live key where test mode is configured would charge real cards for sandbox
    /// tenants; a test key where live is configured would collect nothing for live ones.
    #[error("{field} must be a {expected:?}-mode key ({}), not a {found:?}-mode one", expected.prefixes())]
    WrongMode {
        field: &'static str,
        expected: StripeMode,
        found: StripeMode,
    },
}

/// The mode of the key configured as `field`, which must be `expected` when given.
pub fn check_stripe_key(
    field: &'static str,
    key: &str,
    expected: Option<StripeMode>,
) -> Result<StripeMode, StripeKeyError> {
    let found = StripeMode::of_key(key).ok_or(StripeKeyError::NotASecretKey { field })?;
    match expected {
        Some(expected) if expected != found => Err(StripeKeyError::WrongMode {
            field,
            expected,
            found,
        }),
        _ => Ok(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_configured_for_one_mode_must_be_of_that_mode() {
        use StripeMode::*;
        assert_eq!(check_stripe_key("k", "sk_test_1", Some(Test)), Ok(Test));
        assert_eq!(check_stripe_key("k", "rk_live_1", Some(Live)), Ok(Live));
        assert_eq!(check_stripe_key("k", "sk_live_1", None), Ok(Live));
        for (key, expected) in [
            ("sk_live_1", Test),
            ("rk_live_1", Test),
            ("sk_test_1", Live),
            ("rk_test_1", Live),
        ] {
            assert!(
                matches!(
                    check_stripe_key("k", key, Some(expected)),
                    Err(StripeKeyError::WrongMode { .. })
                ),
                "{key} as {expected:?}"
            );
        }
        for key in [
            "pk_test_1",
            "pk_live_1",
            "sk_1",
            "sk_other_1",
            "whsec_1",
            "",
        ] {
            assert_eq!(
                check_stripe_key("k", key, None),
                Err(StripeKeyError::NotASecretKey { field: "k" }),
                "{key}"
            );
        }
    }
}
