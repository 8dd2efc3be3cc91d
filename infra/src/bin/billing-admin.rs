//! Operator tool. Creates tenants against the configured table: the local stack by
//! default, a deployed table when `TABLE_NAME` (and AWS credentials) point at AWS; and
//! regenerates the README's catalog tables and the API's OpenAPI document (`docs`, what
//! `make docs` runs).

use std::sync::Arc;

use billing_app::ports::SystemClock;
use billing_app::App;
use billing_aws::{Config, DynamoStore};
use billing_domain::customers::tenant::TenantMode;
use billing_infra::moto;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "billing-admin", about = "Operate a billing deployment")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tenants: the companies using this deployment.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Rewrite the README's event-type and error-code tables from the catalogs, and the
    /// OpenAPI document the API serves from its handlers.
    Docs {
        #[arg(long, default_value = "README.md")]
        readme: std::path::PathBuf,
        #[arg(long, default_value = "shared/http/openapi.json")]
        openapi: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints its id and its first admin API key (shown once).
    Create {
        #[arg(long)]
        name: String,
        /// A live tenant (real money) instead of a sandbox.
        #[arg(long)]
        live: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Docs { readme, openapi } => {
            let text = std::fs::read_to_string(&readme)?;
            std::fs::write(&readme, billing_infra::readme::render(&text)?)?;
            std::fs::write(&openapi, billing_http::openapi::live_json())?;
            println!("{} and {} regenerated", readme.display(), openapi.display());
            return Ok(());
        }
        Command::Tenant { command } => command,
    };
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(_) => Config::local(
            "billing-local",
            std::env::var("AWS_ENDPOINT_URL")
                .unwrap_or_else(|_| format!("http://127.0.0.1:{}", moto::DEFAULT_PORT)),
        ),
    };
    let sdk = config.workstation_sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table_name);
    let app = App::new(
        Arc::new(store),
        Arc::new(SystemClock),
        std::sync::Arc::new(billing_aws::SandboxGateway::new()),
    );
    match command {
        TenantCommand::Create { name, live } => {
            let mode = if live {
                TenantMode::Live
            } else {
                TenantMode::Sandbox
            };
            let (tenant, issued) = app.customers.create_tenant(&name, mode).await?;
            println!("tenant_id: {}", tenant.id);
            println!("mode:      {}", if live { "live" } else { "sandbox" });
            println!("api_key:   {}", issued.secret);
            println!("(the key is shown once; store it now)");
        }
    }
    Ok(())
}
