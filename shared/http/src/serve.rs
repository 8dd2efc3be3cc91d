//! The local runner's and the tests' HTTP/1 server. hyper answers a request whose headers
//! pass its own limits with an empty 431 before any handler runs, so its limits sit far
//! above the API's and the API's answer as problems. On AWS, API Gateway applies its own.

use std::future::Future;
use std::pin::pin;

use axum::extract::Request;
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use billing_domain::kernel::error::ErrorCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::problem::Problem;

/// Most headers a request may carry.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of header names and values a request may carry.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// hyper's own limits, only there to bound what one connection may buffer.
const TRANSPORT_MAX_HEADERS: usize = 1_000;
const TRANSPORT_MAX_BUF: usize = 1024 * 1024;

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = app.layer(from_fn(limit_headers));
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A connection that failed before it was accepted concerns only its client.
                Err(err) => {
                    tracing::debug!(%err, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut http1 = hyper::server::conn::http1::Builder::new();
            http1
                .timer(TokioTimer::new())
                .max_headers(TRANSPORT_MAX_HEADERS)
                .max_buf_size(TRANSPORT_MAX_BUF);
            if let Err(err) = http1.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%err, "connection ended with an error");
            }
        });
    }
}

async fn limit_headers(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() <= MAX_HEADERS && bytes <= MAX_HEADER_BYTES {
        return next.run(req).await;
    }
    Problem::new(
        ErrorCode::HeadersTooLarge,
        format!(
            "the request has {} headers of {bytes} bytes; at most {MAX_HEADERS} headers of \
             {MAX_HEADER_BYTES} bytes are read",
            headers.len()
        ),
    )
    .hint("Send fewer or shorter headers; large values belong in the body.")
    .into_response()
}
