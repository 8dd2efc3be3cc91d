//! The `api` Lambda: SDK clients built once per cold start, then the shared router.

use std::sync::Arc;

use billing_app::ports::SystemClock;
use billing_app::App;
use billing_aws::{
    payment_gateway, AwsDispatch, Config, DynamoStore, HttpKeySets, S3Objects, SqsQueue,
};
use billing_http::lambda::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_aws::logging::init();
    let config = Config::from_env()?;
    let sdk = config.sdk_config().await;
    // Events are published right after each commit; the billing-run sweep covers a crash.
    let dispatch = AwsDispatch::from_env(&sdk)?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table_name)
        .with_audit_retention(config.audit_retention_days)
        .with_dispatch(Arc::new(dispatch));
    // First payment attempts of finalized invoices go to the payment worker after commit.
    let payments = Arc::new(SqsQueue::from_env(&sdk, "PAYMENT_QUEUE_URL")?);
    // Simulations of plans with many subscriptions run as jobs on the billing queue.
    let simulations = billing_app::billing::SimulationJobs {
        queue: Some(Arc::new(SqsQueue::from_env(&sdk, "BILLING_QUEUE_URL")?)),
        per_request: config.simulation_per_request,
    };
    // Stripe when its secret holds a key, else the sandbox: read once per cold start.
    let gateways = payment_gateway(&sdk, config.deployment).await?.gateways;
    let mut app = App::by_mode(Arc::new(store), Arc::new(SystemClock), gateways)
        .with_payment_queue(payments)
        .with_simulation_jobs(simulations)
        .with_deployment(config.deployment)
        // Staff sign-in: identity providers' JWKS, fetched when a token first needs them.
        .with_key_sets(Arc::new(HttpKeySets::new(config.deployment)))
        // Accounts' VAT ids, for tenants that check them online.
        .with_vat_registry(Arc::new(billing_aws::vies::ViesRegistry::new(None)?))
        // PDF downloads: the documents bucket (the renderer is another function).
        .with_objects(Arc::new(S3Objects::from_env(&sdk)?));
    // Keep it at least the function's Timeout: a claim's holder must be stopped before a
    // retry may take its Idempotency-Key over.
    if let Ok(secs) = std::env::var("IDEMPOTENCY_LEASE_SECONDS") {
        let secs: u32 = secs
            .parse()
            .map_err(|e| format!("IDEMPOTENCY_LEASE_SECONDS={secs}: {e}"))?;
        app = app.with_idempotency_lease(jiff::SignedDuration::from_secs(secs.into()));
    }
    billing_http::lambda::run(api::handler(app)).await
}
