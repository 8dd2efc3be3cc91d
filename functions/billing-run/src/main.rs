//! The `billing-run` Lambda: clients built once per cold start, then the scheduled sweep.

use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use billing_app::jobs::Sweeper;
use billing_app::ports::SystemClock;
use billing_app::App;
use billing_aws::{AwsDispatch, Config, DynamoStore, SqsQueue};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_aws::logging::init();
    let config = Config::from_env()?;
    let sdk = config.sdk_config().await;
    let dispatch = Arc::new(AwsDispatch::from_env(&sdk)?);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table_name)
        .with_audit_retention(config.audit_retention_days);
    let payments = Arc::new(SqsQueue::from_env(&sdk, "PAYMENT_QUEUE_URL")?);
    let app = App::new(
        Arc::new(store),
        Arc::new(SystemClock),
        std::sync::Arc::new(billing_aws::SandboxGateway::new()),
    )
    .with_payment_queue(payments);
    let billing = Arc::new(SqsQueue::from_env(&sdk, "BILLING_QUEUE_URL")?);
    let sweeper = Sweeper::new(app, dispatch, billing);
    let sweeper = &sweeper;
    run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let deadline = i64::try_from(event.context.deadline)
                .ok()
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .ok_or("the invocation's deadline is not a time")?;
            billing_run::handle(sweeper, event.payload, deadline)
                .await
                .map_err(Error::from)
        },
    ))
    .await
}
