//! The local runner: starts the AWS stand-in, creates the stack, seeds a sandbox tenant
//! (and the tenant the sample events act as), writes the functions' environment for
//! `cargo lambda` and `sam local invoke`, and serves the very router the `api` Lambda
//! serves, on 127.0.0.1. Ctrl-C saves the table and stops everything it started.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use billing_app::ports::SystemClock;
use billing_app::App;
use billing_aws::Config;
use billing_domain::customers::tenant::TenantMode;
use billing_http::{router, stripe_webhook, EmitMetrics};
use billing_infra::{function_env, invoke, mailbox, moto, snapshot, stack, workers};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Run the whole billing platform locally")]
struct Args {
    /// Port of the API.
    #[arg(long, env = "BILLING_PORT", default_value_t = 3000)]
    port: u16,
    /// Port of the local AWS stand-in.
    #[arg(long, env = "BILLING_AWS_PORT", default_value_t = moto::DEFAULT_PORT)]
    aws_port: u16,
    /// Use an already running stand-in at AWS_ENDPOINT_URL instead of starting one.
    #[arg(long)]
    external_aws: bool,
    #[arg(long, env = "TABLE_NAME", default_value = "billing-local")]
    table: String,
    /// Start from an empty table instead of the previous run's data.
    #[arg(long)]
    reset: bool,
    /// Where the table snapshot, the generated dev key and the functions' environment
    /// files are kept.
    #[arg(long, default_value = ".local")]
    state_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws=warn".into()),
        )
        .init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.state_dir)?;

    let (moto, endpoint) = if args.external_aws {
        let endpoint =
            std::env::var("AWS_ENDPOINT_URL").context("--external-aws needs AWS_ENDPOINT_URL")?;
        (None, endpoint)
    } else {
        let child = moto::start(args.aws_port)?;
        (Some(child), format!("http://127.0.0.1:{}", args.aws_port))
    };

    let config = Config::local(&args.table, &endpoint);
    let sdk = config.sdk_config().await;
    stack::ensure(&sdk, &config.table_name).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let snapshot_path = args.state_dir.join("table-snapshot.jsonl");
    if args.reset {
        let _ = std::fs::remove_file(&snapshot_path);
    } else if snapshot_path.exists() {
        let n = snapshot::load(&dynamodb, &config.table_name, &snapshot_path)
            .await
            .map_err(|e| anyhow::anyhow!("loading {}: {e}", snapshot_path.display()))?;
        tracing::info!(items = n, "restored the previous run's data");
    }

    // Events publish after each commit to the local bus and webhook queue; the queue is
    // consumed and the due index swept in this process, as the Lambdas do in AWS.
    let mut local = workers::Local::new(&sdk, &config.table_name, Arc::new(SystemClock)).await?;
    // Customer emails are written as files a developer can read (text and HTML), their
    // links pointing at this API.
    let mailbox = mailbox::Mailbox::new(args.state_dir.join("mail"));
    local.app = local
        .app
        .clone()
        .with_notifier(Arc::new(mailbox))
        .with_public_url(format!("http://127.0.0.1:{}", args.port));
    // Payments go through the sandbox unless STRIPE_SECRET gives the local secret Stripe
    // keys: then each mode through its own key, read the way the Lambdas read it.
    if let Ok(value) = std::env::var("STRIPE_SECRET") {
        aws_sdk_secretsmanager::Client::new(&sdk)
            .put_secret_value()
            .secret_id(stack::STRIPE_SECRET)
            .secret_string(value)
            .send()
            .await
            .context("storing STRIPE_SECRET in the local secret")?;
    }
    let api_base = std::env::var(billing_aws::payment_gateway::API_BASE_VAR).ok();
    let payments = billing_aws::payment_gateway::load(
        &sdk,
        Some(stack::STRIPE_SECRET),
        api_base.as_deref(),
        config.deployment,
    )
    .await?;
    local.app = local.app.clone().with_gateways(payments.gateways.clone());
    let app = local.app.clone();
    let _workers = local.spawn(2, std::time::Duration::from_secs(2));
    let key = seed_tenant(&app, &args.state_dir).await?;
    app.customers
        .ensure_tenant_with_key(invoke::SAMPLE_EVENTS_TENANT, invoke::SAMPLE_EVENTS_KEY)
        .await?;

    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("port {} is taken; pass --port", args.port))?;
    // Last, once all is up: `make invoke` takes these files as the sign that the stack is ready.
    let references = stack::references(&sdk, &config.table_name).await?;
    let functions = function_env::local(function_env::TEMPLATE, &references, &endpoint)?;
    function_env::write(&args.state_dir, &functions)?;
    println!();
    println!("  Billing API   http://{addr}   (docs: http://{addr}/docs)");
    println!(
        "  Payments      sandbox tenants: {}, live tenants: {}; Stripe webhooks at http://{addr}{}",
        payments.gateways.name(false),
        payments.gateways.name(true),
        stripe_webhook::PATH
    );
    println!("  Local AWS     {endpoint}   table {}", config.table_name);
    println!("  Sandbox key   {key}");
    println!(
        "  Functions     make invoke FN=api EVENT=events/api-health.json   (environment: {})",
        args.state_dir.join(function_env::ENV_FILE).display()
    );
    println!(
        "  Customer mail {}   (every email: {{key}}.txt and {{key}}.html)",
        args.state_dir.join("mail").display()
    );
    println!();
    println!("  curl -H 'Authorization: Bearer {key}' http://{addr}/v1/accounts");
    println!();
    // Stripe's webhook route on the API's port, as one router.
    let routes = router(app.clone(), EmitMetrics(true)).merge(stripe_webhook::router(
        app,
        payments.webhook_secrets,
        EmitMetrics(true),
    ));
    billing_http::serve::serve(listener, routes, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;

    let saved = snapshot::save(&dynamodb, &config.table_name, &snapshot_path)
        .await
        .map_err(|e| anyhow::anyhow!("saving {}: {e}", snapshot_path.display()))?;
    tracing::info!(items = saved, path = %snapshot_path.display(), "saved the table for the next run");
    if let Some(mut child) = moto {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}

/// The sandbox tenant's admin key: `BILLING_DEV_API_KEY`, else the one generated on an
/// earlier run, else a new one written to `<state_dir>/dev-api-key`.
async fn seed_tenant(app: &App, state_dir: &std::path::Path) -> anyhow::Result<String> {
    let key_file = state_dir.join("dev-api-key");
    let known = std::env::var("BILLING_DEV_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .or_else(|| {
            std::fs::read_to_string(&key_file)
                .ok()
                .map(|k| k.trim().to_owned())
        });
    if let Some(key) = known {
        app.customers
            .ensure_tenant_with_key("Local sandbox", &key)
            .await?;
        return Ok(key);
    }
    let (_, issued) = app
        .customers
        .create_tenant("Local sandbox", TenantMode::Sandbox)
        .await?;
    std::fs::write(&key_file, &issued.secret)?;
    Ok(issued.secret)
}
