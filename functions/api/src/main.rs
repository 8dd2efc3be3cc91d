//! The `api` Lambda: the shared router behind API Gateway's HTTP API.

use std::sync::Arc;

use billing_app::ports::SystemClock;
use billing_app::App;
use billing_aws::{Config, DynamoStore};
use billing_http::{router, EmitMetrics, RequestId};
use lambda_http::request::RequestContext;
use lambda_http::{run, tracing, Error, RequestExt};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = config.sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table_name);
    let app = App::new(Arc::new(store), Arc::new(SystemClock));
    let api = router(app, EmitMetrics(true))
        .layer(axum::middleware::map_request(with_gateway_request_id));
    run(api).await
}

/// Uses API Gateway's request id, so logs, metrics and the `Request-Id` header agree with
/// the gateway's access log.
async fn with_gateway_request_id(mut req: axum::extract::Request) -> axum::extract::Request {
    let id = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    if let Some(id) = id {
        req.extensions_mut().insert(RequestId(id));
    }
    req
}
