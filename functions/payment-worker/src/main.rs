//! The `payment-worker` Lambda: clients built once per cold start, then the SQS handler.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use billing_app::ports::SystemClock;
use billing_app::App;
use billing_aws::{payment_gateway, AwsDispatch, Config, DynamoStore, SesNotifier, SqsQueue};
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
    let payments = Arc::new(SqsQueue::from_env(&sdk, "PAYMENT_QUEUE_URL")?);
    // Customer emails (dunning notices, invoices, receipts, ...) go out from here.
    let notifier = Arc::new(SesNotifier::from_env(&sdk)?);
    // Stripe when its secret holds a key, else the sandbox: read once per cold start.
    let gateways = payment_gateway(&sdk, config.deployment).await?.gateways;
    let mut app = App::by_mode(Arc::new(store), Arc::new(SystemClock), gateways)
        .with_payment_queue(payments)
        .with_notifier(notifier);
    // Where the links in emails point (the hosted invoice pages); unset: no links.
    if let Some(url) = std::env::var("PUBLIC_URL").ok().filter(|u| !u.is_empty()) {
        app = app.with_public_url(url);
    }
    let app = &app;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(payment_worker::handle(app, event.payload).await)
    }))
    .await
}
