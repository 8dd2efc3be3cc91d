//! Configuration from the environment, shared by every function and the local runner.
//!
//! | variable            | meaning                                                    | default      |
//! |---------------------|------------------------------------------------------------|--------------|
//! | `TABLE_NAME`        | the DynamoDB table                                         | required     |
//! | `AWS_ENDPOINT_URL`  | send every AWS call here (the local stand-in)              | AWS itself   |
//! | `AWS_REGION`        | region                                                     | `us-east-1`  |

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table_name: String,
    pub region: String,
    /// Set for the local stack; in AWS the SDK finds the endpoints itself.
    pub endpoint_url: Option<String>,
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
        })
    }

    /// Settings for a local stand-in at `endpoint_url`.
    pub fn local(table_name: impl Into<String>, endpoint_url: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            region: "us-east-1".into(),
            endpoint_url: Some(endpoint_url.into()),
        }
    }

    /// The SDK configuration every client is built from, once per process. A local
    /// endpoint gets static dummy credentials so nothing searches for real ones.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https)
            .region(Region::new(self.region.clone()));
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader
                .endpoint_url(endpoint)
                .credentials_provider(Credentials::from_keys("local", "local", None));
        }
        loader.load().await
    }
}
