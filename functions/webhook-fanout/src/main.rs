//! The `webhook-fanout` Lambda: clients built once per cold start, then the SQS handler.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use billing_app::events::Fanout;
use billing_app::ports::SystemClock;
use billing_app::App;
use billing_aws::{AwsDispatch, Config, DynamoStore, HttpSender};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_aws::logging::init();
    let config = Config::from_env()?;
    let sdk = config.sdk_config().await;
    let dispatch = Arc::new(AwsDispatch::from_env(&sdk)?);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table_name)
        .with_audit_retention(config.audit_retention_days)
        .with_dispatch(dispatch.clone());
    let app = App::new(
        Arc::new(store),
        Arc::new(SystemClock),
        std::sync::Arc::new(billing_aws::SandboxGateway::new()),
    );
    let fanout = Fanout::new(
        app.events,
        dispatch,
        Arc::new(HttpSender::new(config.deployment)),
    );
    let fanout = &fanout;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(webhook_fanout::handle(fanout, event.payload).await)
    }))
    .await
}
