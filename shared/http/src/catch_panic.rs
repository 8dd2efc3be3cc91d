//! The last resort for a bug: a handler that panics answers 500 problem+json (and, under an
//! `Idempotency-Key`, gives the key back, as any 5xx does) instead of dropping the
//! connection. Client mistakes never get here; they are refused before any arithmetic.
//! It catches where panics unwind (tests, `make dev`); the release bootstraps abort on
//! panic, and the runtime's hook gives the same answer (`billing_aws::runtime`), the key
//! then taken over after its lease.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;

pub async fn catch_panic(req: Request, next: Next) -> Response {
    // A task of its own, so that a panic ends the task, not the connection; it also runs
    // to completion when the client hangs up.
    match tokio::spawn(next.run(req)).await {
        Ok(response) => response,
        Err(err) => {
            tracing::error!(error = %err, "a handler panicked");
            Problem::internal().into_response()
        }
    }
}
