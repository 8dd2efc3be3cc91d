//! Usage ingestion through the whole router (authentication, role check, request id,
//! logging, JSON parsing, validation, planning, the store write, serialisation) with the
//! in-memory store, in process, on one core: `POST /v1/usage/batch` with 100 events of one
//! subscription (a count metric with a hard limit, so quota snapshots and threshold checks
//! run too), then `POST /v1/usage` with one event. Prints events per second, then
//! criterion's estimates.
//!
//! `cargo bench -p billing-http --bench usage_ingest`

// Rates of a measurement, never money.
#![allow(clippy::float_arithmetic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use billing_app::billing::StartSubscription;
use billing_app::ports::SystemClock;
use billing_app::{App, Caller};
use billing_domain::customers::tenant::TenantMode;
use billing_http::{router, EmitMetrics};
use billing_memory::MemoryStore;
use criterion::{Criterion, Throughput};
use serde_json::json;
use tower::ServiceExt;

const BATCH: u64 = 100;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = App::new(
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        std::sync::Arc::new(billing_aws::SandboxGateway::new()),
    );
    let (key, subscription) = runtime.block_on(async {
        let (_, issued) = app.customers
            .create_tenant("Bench", TenantMode::Sandbox)
            .await
            .unwrap();
        let caller = Caller::of_key(&issued.key, None);
        let metric = json!({"code": "api_calls", "name": "API calls", "aggregation": "count"});
        app.catalog.create_metric(&caller, serde_json::from_value(metric).unwrap())
            .await
            .unwrap();
        let plan = json!({"code": "api", "name": "API", "interval": {"unit": "month"},
            "charges": {"usage_charges": [{"metric": "api_calls", "prices": {"usd": {"model": "graduated",
                "tiers": [{"up_to": "10000", "unit_price": "0"}, {"up_to": null, "unit_price": "0.002"}]}}}],
                "entitlements": [{"metric": "api_calls", "limit": "1000000000000", "enforcement": "soft"}]}});
        let plan = app.catalog
            .create_plan(&caller, serde_json::from_value(plan).unwrap())
            .await
            .unwrap();
        let account = json!({"email": "bench@example.com", "currency": "usd"});
        let account = app.customers
            .create_account(&caller, serde_json::from_value(account).unwrap())
            .await
            .unwrap();
        let sub = app.billing
            .create_subscription(
                &caller,
                StartSubscription::new(account.id, plan.plan.id),
            )
            .await
            .unwrap();
        (issued.secret, sub.id.to_string())
    });
    let api = router(app, EmitMetrics(false));
    let next_id = AtomicU64::new(0);
    let event = |id: u64| json!({"transaction_id": format!("evt-{id}"), "subscription": subscription, "metric": "api_calls"});
    let post = |path: &str, body: serde_json::Value| {
        Request::post(path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let batch = || async {
        let first = next_id.fetch_add(BATCH, Ordering::Relaxed);
        let events: Vec<_> = (first..first + BATCH).map(event).collect();
        let response = api
            .clone()
            .oneshot(post("/v1/usage/batch", json!({ "events": events })))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
    };
    let single = || async {
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let response = api
            .clone()
            .oneshot(post("/v1/usage", event(id)))
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
    };

    runtime.block_on(async {
        for _ in 0..50 {
            batch().await;
        }
        let requests = 500;
        let started = Instant::now();
        for _ in 0..requests {
            batch().await;
        }
        let elapsed = started.elapsed();
        println!(
            "POST /v1/usage/batch (100 events) in process, one core: {:.0} events/s ({:?} per batch)",
            (requests * BATCH) as f64 / elapsed.as_secs_f64(),
            elapsed / requests as u32
        );
        let requests = 20_000;
        let started = Instant::now();
        for _ in 0..requests {
            single().await;
        }
        let elapsed = started.elapsed();
        println!(
            "POST /v1/usage (1 event) in process, one core: {:.0} events/s ({:?} per request)",
            requests as f64 / elapsed.as_secs_f64(),
            elapsed / requests
        );
    });

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("usage_ingest");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("batch_of_100_in_memory", |b| {
        b.to_async(&runtime).iter(batch)
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_event_in_memory", |b| {
        b.to_async(&runtime).iter(single)
    });
    group.finish();
    criterion.final_summary();
}
