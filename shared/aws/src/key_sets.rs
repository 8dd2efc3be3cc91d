//! The [`KeySetFetcher`] port over HTTPS (reqwest, rustls): one GET of an identity
//! provider's JWKS, a 5-second limit, no redirects, at most 64 KiB, and the webhooks' rules
//! on the addresses a host name resolves to (a JWKS URL is a tenant's choice, so it must
//! not reach into the platform's network).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use billing_app::ports::KeySetFetcher;
use billing_domain::customers::staff::KeySet;
use billing_domain::kernel::deployment::Deployment;

use crate::webhook_sender::{describe, GuardedResolver};

const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct HttpKeySets {
    client: reqwest::Client,
}

impl HttpKeySets {
    /// A fetcher for `deployment`: the loopback host is reachable only from a local one.
    pub fn new(deployment: Deployment) -> Self {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("billing-jwks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver {
                allow_loopback: deployment.allows_loopback(),
            }))
            .build()
            .expect("a client with static settings builds");
        Self { client }
    }
}

#[async_trait]
impl KeySetFetcher for HttpKeySets {
    async fn fetch(&self, url: &str) -> Result<KeySet, String> {
        let mut response = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| describe(&e, TIMEOUT))?;
        if !response.status().is_success() {
            return Err(format!("the JWKS URL answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e, TIMEOUT))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BYTES {
                return Err(format!("the JWKS is larger than {MAX_BYTES} bytes"));
            }
        }
        serde_json::from_slice(&body).map_err(|e| format!("the JWKS cannot be read: {e}"))
    }
}
