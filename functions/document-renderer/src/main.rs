//! The `document-renderer` Lambda: clients built once per cold start, then the SQS handler.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use billing_app::ports::SystemClock;
use billing_app::App;
use billing_aws::{Config, DynamoStore, S3Objects, SandboxGateway};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_aws::logging::init();
    let config = Config::from_env()?;
    let sdk = config.sdk_config().await;
    // Recording a document commits no event, so no dispatch is wired.
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table_name)
        .with_audit_retention(config.audit_retention_days);
    let objects = Arc::new(S3Objects::from_env(&sdk)?);
    // No payment is made here: the sandbox gateway is never called.
    let app = App::new(
        Arc::new(store),
        Arc::new(SystemClock),
        Arc::new(SandboxGateway::new()),
    );
    let pipeline = app
        .documents
        .pipeline(objects, Arc::new(document_renderer::Pdfs));
    let pipeline = &pipeline;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(document_renderer::handle(pipeline, event.payload).await)
    }))
    .await
}
