//! Measures end-to-end webhook latency on the local stack: from sending `POST
//! /v1/accounts` to a local receiver getting the signed `account.created` delivery,
//! through everything `make dev` runs (DynamoDB commit, post-commit publish to the bus
//! and the webhook queue, queue consumer, fan-out, signed POST). Events are sent one at
//! a time, so each figure is one event's latency, not a queueing effect.
//!
//! `cargo run --release -p billing-infra --bin webhook-latency -- --events 200`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use billing_app::ports::SystemClock;
use billing_aws::Config;
use billing_domain::customers::tenant::TenantMode;
use billing_domain::events::webhook;
use billing_http::{router, EmitMetrics};
use billing_infra::{moto, stack, workers};
use clap::Parser;
use tokio::sync::Notify;

#[derive(Parser)]
#[command(about = "End-to-end latency from an API call to the webhook it causes, locally")]
struct Args {
    /// How many events to time.
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// Webhook queue consumers, as in `make dev`.
    #[arg(long, default_value_t = 2)]
    consumers: usize,
}

/// A delivery as received: when, its signature header and its body.
type Arrival = (Instant, String, String);

/// Each delivery, by the account id in its `data`.
#[derive(Clone, Default)]
struct Arrivals {
    at: Arc<Mutex<HashMap<String, Arrival>>>,
    notify: Arc<Notify>,
}

async fn receive(State(arrivals): State<Arrivals>, headers: axum::http::HeaderMap, body: String) {
    let now = Instant::now();
    let event: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let signature = headers
        .get(webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if let Some(id) = event["data"]["id"].as_str() {
        arrivals
            .at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), (now, signature, body));
        arrivals.notify.notify_waiters();
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let port = moto::free_port()?;
    let mut moto = moto::start(port)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let table = "webhook-latency";
    let sdk = Config::local(table, &endpoint).sdk_config().await;
    stack::ensure(&sdk, table).await?;
    let local = workers::Local::new(&sdk, table, Arc::new(SystemClock))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let _workers = local.spawn(args.consumers, Duration::from_secs(2));

    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", api.local_addr()?);
    let app = local.app.clone();
    tokio::spawn(async move { axum::serve(api, router(app, EmitMetrics(false))).await });
    let arrivals = Arrivals::default();
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", hook.local_addr()?);
    let receiver = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(hook, receiver).await });

    let (_, key) = local
        .app
        .customers
        .create_tenant("Latency bench", TenantMode::Sandbox)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = key.secret;
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{base}/v1/webhook-endpoints"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"url": hook_url, "enabled_events": ["account.created"]}))
        .send()
        .await?
        .json()
        .await?;
    let secret = created["secret"].as_str().context("no secret")?.to_owned();

    let mut latencies = Vec::with_capacity(args.events);
    let mut api_times = Vec::with_capacity(args.events);
    for i in 0..args.events {
        let started = Instant::now();
        let account: serde_json::Value = http
            .post(format!("{base}/v1/accounts"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"email": format!("bench{i}@example.com"), "currency": "usd"}))
            .send()
            .await?
            .json()
            .await?;
        api_times.push(started.elapsed());
        let id = account["id"].as_str().context("no account id")?.to_owned();
        let arrived = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let notified = arrivals.notify.notified();
                if let Some(found) = arrivals
                    .at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id)
                {
                    return found;
                }
                notified.await;
            }
        })
        .await
        .with_context(|| format!("no webhook for {id} within 30 s"))?;
        let (at, signature, body) = arrived;
        webhook::verify(
            &signature,
            body.as_bytes(),
            &secret,
            jiff::Timestamp::now().as_second(),
            300,
        )
        .map_err(|e| anyhow::anyhow!("bad signature: {e}"))?;
        latencies.push(at.duration_since(started));
    }
    latencies.sort();
    api_times.sort();
    let ms = |d: Duration| d.as_micros() as u64 / 1000;
    println!(
        "{} events, API call -> signed webhook received: p50 {} ms, p99 {} ms, max {} ms (API response alone: p50 {} ms, p99 {} ms)",
        latencies.len(),
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 99)),
        ms(*latencies.last().context("no events")?),
        ms(percentile(&api_times, 50)),
        ms(percentile(&api_times, 99)),
    );
    let _ = moto.kill();
    let _ = moto.wait();
    Ok(())
}
