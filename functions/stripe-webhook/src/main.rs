//! The `stripe-webhook` Lambda: the Stripe secret is read and the SDK clients are built once
//! per cold start, then every request goes through the shared webhook router.

use std::sync::Arc;

use billing_app::ports::SystemClock;
use billing_app::App;
use billing_aws::{payment_gateway, AwsDispatch, Config, DynamoStore};
use billing_http::lambda::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_aws::logging::init();
    let config = Config::from_env()?;
    let sdk = config.sdk_config().await;
    let payments = payment_gateway(&sdk, config.deployment).await?;
    // Events of the changes applied are published right after each commit.
    let dispatch = AwsDispatch::from_env(&sdk)?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table_name)
        .with_audit_retention(config.audit_retention_days)
        .with_dispatch(Arc::new(dispatch));
    let app = App::by_mode(Arc::new(store), Arc::new(SystemClock), payments.gateways);
    billing_http::lambda::run(stripe_webhook::handler(app, payments.webhook_secrets)).await
}
