//! The `api` Lambda's handler: the shared router, plus API Gateway's request id.

use billing_app::App;
use billing_http::{router, EmitMetrics, RequestId};
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;

/// What [`billing_http::lambda::run`] serves.
pub fn handler(app: App) -> axum::Router {
    router(app, EmitMetrics(true)).layer(axum::middleware::map_request(with_gateway_request_id))
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
