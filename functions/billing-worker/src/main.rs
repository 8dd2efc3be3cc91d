//! The `billing-worker` Lambda: clients built once per cold start, then the SQS handler.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use billing_app::ports::SystemClock;
use billing_app::App;
use billing_aws::{payment_gateway, AwsDispatch, Config, DynamoStore, SqsQueue};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_aws::logging::init();
    let config = Config::from_env()?;
    let sdk = config.sdk_config().await;
    let dispatch = Arc::new(AwsDispatch::from_env(&sdk)?);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table_name)
        .with_audit_retention(config.audit_retention_days)
        .with_dispatch(dispatch);
    // New invoices' first payment attempts are handed to the payment worker after commit.
    let payments = Arc::new(SqsQueue::from_env(&sdk, "PAYMENT_QUEUE_URL")?);
    // Test-clock advances collect the payments that fall due on the way.
    let gateways = payment_gateway(&sdk, config.deployment).await?.gateways;
    // Drafting hands the tenant's numbering to a finalize job on the same queue.
    let billing = Arc::new(SqsQueue::from_env(&sdk, "BILLING_QUEUE_URL")?);
    let app = App::by_mode(Arc::new(store), Arc::new(SystemClock), gateways)
        .with_payment_queue(payments)
        .with_finalize_queue(billing.clone())
        // A simulation job queues its next chunk.
        .with_simulation_jobs(billing_app::billing::SimulationJobs {
            queue: Some(billing),
            per_request: config.simulation_per_request,
        })
        // Invoices of tenants that check VAT ids online ask VIES of unverified ones.
        .with_vat_registry(Arc::new(billing_aws::vies::ViesRegistry::new(None)?));
    let app = &app;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(billing_worker::handle(app, event.payload).await)
    }))
    .await
}
