//! The [`WebhookSender`] port over HTTPS (reqwest, rustls): one POST with the signature,
//! a 10-second limit, no redirects, and the SSRF rules applied to the addresses a host
//! name resolves to, so a public name pointing at a private address is refused too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use billing_app::ports::{SendOutcome, WebhookRequest, WebhookSender};
use billing_domain::events::webhook::{self, ATTEMPT_TIMEOUT, SIGNATURE_HEADER};
use billing_domain::kernel::deployment::Deployment;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Resolves with the system resolver, then drops forbidden addresses; a name left with
/// none fails to resolve, and the attempt fails with that reason.
pub(crate) struct GuardedResolver {
    /// A local deployment may reach the loopback host (a receiver on the developer's
    /// machine); nothing else forbidden.
    pub(crate) allow_loopback: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| {
                    !webhook::is_forbidden_address(a.ip())
                        || (allow_loopback && a.ip().is_loopback())
                })
                .collect();
            if allowed.is_empty() {
                return Err(
                    format!("`{host}` resolves only to addresses webhooks may not reach").into(),
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[derive(Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    deployment: Deployment,
}

fn client(allow_loopback: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT.unsigned_abs())
        .connect_timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("billing-webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver { allow_loopback }))
        .build()
        .expect("a client with static settings builds")
}

impl HttpSender {
    /// A sender for `deployment`: the loopback host is reachable only from a local one,
    /// whatever the tenant's mode (a deployed function's loopback is its own runtime).
    pub fn new(deployment: Deployment) -> Self {
        Self {
            client: client(deployment.allows_loopback()),
            deployment,
        }
    }
}

#[async_trait]
impl WebhookSender for HttpSender {
    async fn send(&self, request: &WebhookRequest) -> SendOutcome {
        let started = Instant::now();
        let elapsed = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // The URL was checked when it was saved; check again in case the rules tightened
        // since, and because IP literals never reach the resolver.
        if let Err(err) = webhook::validate_url(&request.url, self.deployment) {
            return SendOutcome {
                status: None,
                error: Some(err.message),
                latency_ms: 0,
            };
        }
        let result = self
            .client
            .post(&request.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, &request.signature)
            .header("Billing-Event-Id", request.event_id.to_string())
            .header("Billing-Delivery-Id", request.delivery_id.to_string())
            .body(request.body.clone())
            .send()
            .await;
        match result {
            Ok(response) => SendOutcome {
                status: Some(response.status().as_u16()),
                error: None,
                latency_ms: elapsed(),
            },
            Err(err) => SendOutcome {
                status: None,
                error: Some(describe(&err, ATTEMPT_TIMEOUT.unsigned_abs())),
                latency_ms: elapsed(),
            },
        }
    }
}

/// The reason, with its causes: reqwest's top-level message alone says little. `timeout`
/// is the client's, named when it was the reason.
pub(crate) fn describe(err: &reqwest::Error, timeout: std::time::Duration) -> String {
    let mut text = if err.is_timeout() {
        format!("timed out after {} s", timeout.as_secs())
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
