//! Process start to first answered invocation of a function's bootstrap, locally: starts its
//! own stand-in, a fake Lambda Runtime API that hands out one sample event, then starts the
//! bootstrap `--runs` times as Lambda would (`AWS_LAMBDA_RUNTIME_API` and the function's
//! variables), timing each from spawn to the event's response. Each run is a fresh process:
//! SDK clients built, the Stripe secret read, the router built, the event answered through
//! DynamoDB. The sample event's `Bearer` key is made a tenant's key first.
//!
//! `make size && cargo run --release -p billing-infra --bin cold-start -- --bootstrap
//! <target-dir>/release/api --event events/api-list-accounts.json`

// Durations of a measurement, never money.
#![allow(clippy::float_arithmetic)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use billing_aws::DynamoStore;
use billing_infra::{function_env, stack};
use clap::Parser;
use serde_json::Value;
use tokio::sync::{mpsc, Mutex};

#[derive(Parser)]
#[command(about = "Process start to first answered invocation of a bootstrap, locally")]
struct Args {
    /// The bootstrap to start (a release build of an HTTP function: api).
    #[arg(long)]
    bootstrap: PathBuf,
    /// The API Gateway event it answers.
    #[arg(long, default_value = "events/api-list-accounts.json")]
    event: PathBuf,
    #[arg(long, default_value_t = 20)]
    runs: usize,
}

/// What the fake Runtime API hands out and hears back.
struct Runtime {
    event: String,
    /// The event goes to each process once; later polls wait (the process is killed).
    handed_out: Mutex<bool>,
    answers: mpsc::UnboundedSender<Result<Value, String>>,
}

async fn next(State(runtime): State<Arc<Runtime>>) -> (HeaderMap, String) {
    let first = !std::mem::replace(&mut *runtime.handed_out.lock().await, true);
    if !first {
        std::future::pending::<()>().await;
    }
    let mut headers = HeaderMap::new();
    let deadline = jiff::Timestamp::now().as_millisecond() + 10_000;
    for (name, value) in [
        ("lambda-runtime-aws-request-id", "cold-start".to_owned()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:api".to_owned(),
        ),
    ] {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
    (headers, runtime.event.clone())
}

async fn response(State(runtime): State<Arc<Runtime>>, body: String) -> StatusCode {
    let _ = runtime
        .answers
        .send(serde_json::from_str(&body).map_err(|e| format!("{e}: {body}")));
    StatusCode::ACCEPTED
}

async fn error(
    State(runtime): State<Arc<Runtime>>,
    Path(kind): Path<String>,
    body: String,
) -> StatusCode {
    let _ = runtime.answers.send(Err(format!("{kind}: {body}")));
    StatusCode::ACCEPTED
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    let index = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[index].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let event = std::fs::read_to_string(&args.event)
        .with_context(|| format!("reading {}", args.event.display()))?;
    let parsed: Value = serde_json::from_str(&event)?;

    let stack::OwnStack {
        stand_in: mut child,
        config,
        sdk,
    } = stack::own_stack("cold-start").await?;
    if let Some(key) = parsed
        .pointer("/headers/authorization")
        .and_then(Value::as_str)
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table_name);
        let app = billing_app::App::new(
            Arc::new(store),
            Arc::new(billing_app::ports::SystemClock),
            Arc::new(billing_aws::SandboxGateway::new()),
        );
        app.customers
            .ensure_tenant_with_key("Cold start", key)
            .await?;
    }
    let endpoint = config.endpoint_url.clone().unwrap_or_default();
    // The api function's environment as the template declares it, on this stack.
    let references = stack::references(&sdk, &config.table_name).await?;
    let env = function_env::local(function_env::TEMPLATE, &references, &endpoint)?
        .into_iter()
        .find(|(function, _)| function.binary == "api")
        .context("template.yaml has no api function")?
        .1;

    let (answers, mut answered) = mpsc::unbounded_channel();
    let runtime = Arc::new(Runtime {
        event,
        handed_out: Mutex::new(false),
        answers,
    });
    let router = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(error))
        .route("/2018-06-01/runtime/{kind}/error", post(error))
        .with_state(runtime.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let runtime_api = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mut times = Vec::with_capacity(args.runs);
    for run in 0..args.runs {
        *runtime.handed_out.lock().await = false;
        let started = Instant::now();
        let mut process = tokio::process::Command::new(&args.bootstrap)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", "api")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .envs(&env)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", args.bootstrap.display()))?;
        let answer = tokio::select! {
            answer = answered.recv() => answer.ok_or_else(|| anyhow!("the runtime API stopped"))?,
            exit = process.wait() => return Err(anyhow!("run {run}: the bootstrap exited first: {exit:?}")),
        };
        let elapsed = started.elapsed();
        let answer = answer.map_err(|e| anyhow!("run {run}: {e}"))?;
        let status = answer["statusCode"].as_u64().unwrap_or_default();
        anyhow::ensure!(status == 200, "run {run}: answered {status}: {answer}");
        process.kill().await?;
        times.push(elapsed);
    }
    child.kill()?;
    times.sort();
    println!(
        "{}: {} cold starts, process start to first answered invocation ({}): \
         min {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        args.bootstrap.display(),
        times.len(),
        args.event.display(),
        percentile(&times, 0),
        percentile(&times, 50),
        percentile(&times, 90),
        percentile(&times, 100),
    );
    Ok(())
}
