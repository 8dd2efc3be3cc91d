//! `GET /v1/accounts/{id}` through the whole router (authentication, role check,
//! request id, logging, handler, serialisation) with the in-memory store, in process.
//! Prints p50/p99 over 20,000 requests, then criterion's estimate of the mean.
//!
//! `cargo bench -p billing-http --bench get_account`

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use billing_app::ports::SystemClock;
use billing_app::{App, Caller};
use billing_domain::customers::account::NewAccount;
use billing_domain::customers::tenant::TenantMode;
use billing_http::{router, EmitMetrics};
use billing_memory::MemoryStore;
use criterion::Criterion;
use tower::ServiceExt;

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
    let (key, path) = runtime.block_on(async {
        let (_, issued) = app
            .customers
            .create_tenant("Bench", TenantMode::Sandbox)
            .await
            .unwrap();
        let caller = Caller::of_key(&issued.key, None);
        let input = NewAccount {
            email: "bench@example.com".into(),
            currency: "usd".into(),
            ..Default::default()
        };
        let account = app.customers.create_account(&caller, input).await.unwrap();
        (issued.secret, format!("/v1/accounts/{}", account.id))
    });
    let api = router(app, EmitMetrics(false));
    let request = || {
        Request::get(&path)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    let call = || async {
        let response = api.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), 200);
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
    };

    let mut samples: Vec<Duration> = Vec::with_capacity(20_000);
    runtime.block_on(async {
        for _ in 0..2_000 {
            call().await;
        }
        for _ in 0..20_000 {
            let started = Instant::now();
            call().await;
            samples.push(started.elapsed());
        }
    });
    samples.sort();
    let pct = |p: usize| samples[samples.len() * p / 100 - 1];
    println!(
        "GET /v1/accounts/{{id}} in process: p50 {:?}  p99 {:?}  max {:?}  (n = {})",
        pct(50),
        pct(99),
        samples[samples.len() - 1],
        samples.len()
    );

    let mut criterion = Criterion::default().configure_from_args();
    criterion.bench_function("get_account_in_memory", |b| b.to_async(&runtime).iter(call));
    criterion.final_summary();
}
