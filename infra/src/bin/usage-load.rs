//! Usage ingestion on the local stack: events per second through the API router and what
//! an event costs in DynamoDB requests (by operation), on the batch path, the single-event
//! path and for a redelivered batch. Starts its own stand-in, creates a count metric, a
//! plan charging it (with a soft limit, so quota snapshots are written as in production
//! with entitlements) and `--subscriptions` subscriptions, then posts `--batches` batches
//! of 100 events (`--concurrency` at a time, spread over the subscriptions),
//! `--singles` single events (then each of them again, as duplicates, and a few with an
//! `Idempotency-Key`), counting every DynamoDB request. The tenant's burst limit is raised
//! (the single events would pass 50 a second); its hourly limit stays the default. Counts
//! are deterministic, times are not: nothing here asserts a time.
//!
//! `cargo run --release -p billing-infra --bin usage-load -- --batches 40 --singles 200`

// Rates and ratios of a measurement, never money.
#![allow(clippy::float_arithmetic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use billing_app::billing::StartSubscription;
use billing_app::ports::SystemClock;
use billing_app::{App, Caller};
use billing_aws::DynamoStore;
use billing_domain::customers::limits::LimitSettingsPatch;
use billing_domain::customers::tenant::TenantMode;
use billing_http::{router, EmitMetrics};
use billing_infra::request_count::{counted_client, Counter};
use billing_infra::stack;
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Usage events per second and DynamoDB requests per event, locally")]
struct Args {
    /// Batches of 100 events.
    #[arg(long, default_value_t = 40)]
    batches: usize,
    /// Single events (`POST /v1/usage`), one after another.
    #[arg(long, default_value_t = 200)]
    singles: usize,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 4)]
    subscriptions: usize,
}

const BATCH: usize = 100;
const WRITES: &[&str] = &[
    "TransactWriteItems",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
];

fn report(title: &str, events: usize, counts: &BTreeMap<String, u64>) {
    let per = |n: u64| n as f64 / events as f64;
    println!("{title}: DynamoDB requests per event ({events} events)");
    for (operation, n) in counts {
        println!("  {operation:<20} {:.4}", per(*n));
    }
    let writes: u64 = counts
        .iter()
        .filter(|(op, _)| WRITES.contains(&op.as_str()))
        .map(|(_, n)| n)
        .sum();
    println!(
        "  {:<20} {:.4}  (one write request per {:.1} events)",
        "writes",
        per(writes),
        if writes == 0 {
            f64::INFINITY
        } else {
            events as f64 / writes as f64
        }
    );
    println!("  {:<20} {:.4}", "total", per(counts.values().sum::<u64>()));
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_writer(std::io::stderr)
        .init();
    let stack::OwnStack {
        stand_in: mut child,
        config,
        sdk,
    } = stack::own_stack("usage-load").await?;
    let counter = Arc::new(Counter::default());
    let store = DynamoStore::new(counted_client(&sdk, counter.clone()), &config.table_name);
    let app = App::new(
        Arc::new(store),
        Arc::new(SystemClock),
        std::sync::Arc::new(billing_aws::SandboxGateway::new()),
    );

    let (_, issued) = app
        .customers
        .create_tenant("Metered", TenantMode::Sandbox)
        .await?;
    let caller = Caller::of_key(&issued.key, None);
    // Single events one after another pass the default burst of 50 a second now that each is
    // one round trip; this counts requests, not throttling (the hourly shares stay default).
    app.customers
        .update_limit_settings(
            &caller,
            LimitSettingsPatch {
                burst_per_second: Some(10_000),
                ..LimitSettingsPatch::default()
            },
        )
        .await?;
    app.catalog
        .create_metric(
            &caller,
            serde_json::from_value(
                json!({"code": "api_calls", "name": "API calls", "aggregation": "count"}),
            )?,
        )
        .await?;
    let plan = app.catalog
        .create_plan(
            &caller,
            serde_json::from_value(json!({"code": "api", "name": "API", "interval": {"unit": "month"},
                "charges": {"usage_charges": [{"metric": "api_calls", "prices": {"usd": {"model": "graduated",
                    "tiers": [{"up_to": "10000", "unit_price": "0"}, {"up_to": null, "unit_price": "0.002"}]}}}],
                    "entitlements": [{"metric": "api_calls", "limit": "1000000000", "enforcement": "soft"}]}}))?,
        )
        .await?;
    let mut subscriptions = Vec::with_capacity(args.subscriptions);
    for i in 0..args.subscriptions {
        let account = app
            .customers
            .create_account(
                &caller,
                serde_json::from_value(
                    json!({"email": format!("meter{i}@example.com"), "currency": "usd"}),
                )?,
            )
            .await?;
        let sub = app
            .billing
            .create_subscription(&caller, StartSubscription::new(account.id, plan.plan.id))
            .await?;
        subscriptions.push(sub.id.to_string());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(app, EmitMetrics(false))).await;
    });
    let http = reqwest::Client::new();
    let key = issued.secret;
    let batch_body = |b: usize| {
        let sub = &subscriptions[b % subscriptions.len()];
        let events: Vec<Value> = (0..BATCH)
            .map(|i| json!({"transaction_id": format!("b{b}-{i}"), "subscription": sub, "metric": "api_calls"}))
            .collect();
        json!({ "events": events })
    };
    let post_with = |path: &'static str, body: Value, idempotency_key: Option<String>| {
        let (http, key, base) = (http.clone(), key.clone(), base.clone());
        async move {
            let mut request = http
                .post(format!("{base}{path}"))
                .bearer_auth(key)
                .json(&body);
            if let Some(idempotency_key) = idempotency_key {
                request = request.header("Idempotency-Key", idempotency_key);
            }
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
            Ok::<Value, anyhow::Error>(body)
        }
    };
    let post = |path: &'static str, body: Value| post_with(path, body, None);

    counter.start();
    let started = Instant::now();
    let mut accepted = 0;
    for wave in (0..args.batches)
        .collect::<Vec<_>>()
        .chunks(args.concurrency)
    {
        let calls: Vec<_> = wave
            .iter()
            .map(|b| tokio::spawn(post("/v1/usage/batch", batch_body(*b))))
            .collect();
        for call in calls {
            accepted += call.await??["accepted"].as_u64().unwrap_or(0);
        }
    }
    let elapsed = started.elapsed();
    let counts = counter.stop();
    let events = args.batches * BATCH;
    anyhow::ensure!(
        accepted as usize == events,
        "{accepted} of {events} accepted"
    );
    println!(
        "batch path on the stand-in: {events} events in {elapsed:?}: {:.0} events/s ({} batches in flight)",
        events as f64 / elapsed.as_secs_f64(),
        args.concurrency
    );
    report("batch path", events, &counts);

    counter.start();
    let redelivered = post("/v1/usage/batch", batch_body(0)).await?;
    let counts = counter.stop();
    anyhow::ensure!(redelivered["duplicates"] == BATCH, "{redelivered}");
    report("a redelivered batch (all duplicates)", BATCH, &counts);

    // The batches left the key, the metric and the subscriptions cached: a warm instance.
    let single = |i: usize| json!({"transaction_id": format!("s{i}"), "subscription": subscriptions[i % subscriptions.len()], "metric": "api_calls"});
    counter.start();
    let started = Instant::now();
    for i in 0..args.singles {
        let answer = post("/v1/usage", single(i)).await?;
        anyhow::ensure!(answer["status"] == "accepted", "{answer}");
    }
    let elapsed = started.elapsed();
    let counts = counter.stop();
    println!(
        "single-event path on the stand-in: {:.0} events/s, one at a time",
        args.singles as f64 / elapsed.as_secs_f64()
    );
    report("single-event path (warm instance)", args.singles, &counts);
    let per_single = counts.values().sum::<u64>() as f64 / args.singles as f64;
    println!("requests per single event: {per_single:.2} (target <= 2)");

    counter.start();
    for i in 0..args.singles {
        let answer = post("/v1/usage", single(i)).await?;
        anyhow::ensure!(answer["status"] == "duplicate", "{answer}");
    }
    report(
        "single events sent again (all duplicates)",
        args.singles,
        &counter.stop(),
    );

    const KEYED: usize = 20;
    counter.start();
    for i in 0..KEYED {
        let answer = post_with(
            "/v1/usage",
            single(args.singles + i),
            Some(format!("idem-{i}")),
        )
        .await?;
        anyhow::ensure!(answer["status"] == "accepted", "{answer}");
    }
    report(
        "single events with an Idempotency-Key header",
        KEYED,
        &counter.stop(),
    );
    let _ = child.kill();
    Ok(())
}
