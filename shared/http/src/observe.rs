//! One request id per request (API Gateway's when there is one), echoed in `Request-Id`;
//! one JSON log line per request; and one CloudWatch Embedded Metric Format line per
//! request (count, latency, errors by route), which CloudWatch turns into metrics
//! without any API call. Under active tracing the request is an X-Ray subsegment named by
//! its route (`billing_aws::xray`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use billing_aws::metrics::{self, Metric};
use serde_json::json;
use tracing::Instrument;

use crate::auth::TenantTag;

/// The id of the request being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

pub const HEADER: &str = "request-id";

/// Whether to write EMF metric lines (on in Lambda and the local runner, off in tests).
#[derive(Debug, Clone, Copy)]
pub struct EmitMetrics(pub bool);

pub async fn observe(emit: EmitMetrics, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .cloned()
        .unwrap_or_else(|| RequestId(format!("req_{}", ulid::Ulid::new())));
    req.extensions_mut().insert(request_id.clone());
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!("request", request_id = %request_id.0);
    let traced = billing_aws::xray::work(&format!("{method} {route}"));
    let mut response = next.run(req).instrument(traced).instrument(span).await;
    let duration = started.elapsed();
    if let Ok(value) = HeaderValue::from_str(&request_id.0) {
        response.headers_mut().insert(HEADER, value);
    }
    let status = response.status().as_u16();
    let tenant = response
        .extensions()
        .get::<TenantTag>()
        .map(|t| t.0.as_str())
        .unwrap_or("-");
    let duration_ms = duration.as_millis() as u64;
    if status >= 500 {
        tracing::error!(request_id = %request_id.0, tenant, method, route, status, duration_ms, "request failed");
    } else {
        tracing::info!(request_id = %request_id.0, tenant, method, route, status, duration_ms, "request");
    }
    if emit.0 {
        metrics::emit(&metrics::document(
            &[("Route", &route), ("Method", &method)],
            &[
                Metric::count("Requests", 1),
                Metric {
                    name: "Latency",
                    unit: "Microseconds",
                    value: duration.as_micros() as u64,
                },
                Metric::count("Errors", u64::from(status >= 500)),
                Metric::count("ClientErrors", u64::from((400..500).contains(&status))),
            ],
            json!({"request_id": request_id.0}),
        ));
    }
    response
}
