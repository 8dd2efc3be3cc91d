//! `Idempotency-Key` on every POST: the first request under a key runs; a retry with the
//! same body gets the first response again (marked `Idempotent-Replayed: true`); the same
//! key with another body is refused; a concurrent duplicate waits its turn (409) instead
//! of creating a second object, until the first one's lease runs out unanswered.
//!
//! The claimed request runs in a task of its own: a client that hangs up drops this
//! middleware's future (hyper does so on disconnect), not the work, so the work finishes
//! and its answer is recorded for the client's retry.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use billing_app::ports::{IdempotencyClaim, StoredResponse};
use billing_app::{App, Caller};
use sha2::{Digest, Sha256};

use crate::extract::{too_large, MAX_BODY_BYTES};
use crate::problem::{Problem, CONTENT_TYPE as PROBLEM_CONTENT_TYPE};
use billing_domain::kernel::error::ErrorCode;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

pub async fn idempotent(State(app): State<App>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().map(str::to_owned))
    else {
        return next.run(req).await;
    };
    let Ok(key) = key else {
        return Problem::invalid(
            ErrorCode::InvalidIdempotencyKey,
            "Idempotency-Key",
            "the Idempotency-Key must be printable ASCII",
        )
        .into_response();
    };
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY_BYTES).await else {
        return too_large(MAX_BODY_BYTES).into_response();
    };
    let fingerprint = fingerprint(&parts.method, parts.uri.path(), &bytes);
    let owner = billing_app::new_ulid().to_string();
    match app
        .idempotency
        .claim_idempotency_key(caller.tenant_id, &key, &fingerprint, &owner)
        .await
    {
        Err(err) => Problem::from(err).into_response(),
        Ok(IdempotencyClaim::Replay(stored)) => replay(stored),
        Ok(IdempotencyClaim::Mismatch) => Problem::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was already used with a different request",
        )
        .param("Idempotency-Key")
        .hint("Use a new key for a new request; reuse a key only to retry the identical request.")
        .into_response(),
        Ok(IdempotencyClaim::InProgress) => Problem::new(
            ErrorCode::IdempotencyKeyInUse,
            "a request with this Idempotency-Key is still being processed",
        )
        .param("Idempotency-Key")
        .hint("Retry the same request shortly to receive its result.")
        .into_response(),
        Ok(IdempotencyClaim::Claimed) => {
            let request = Request::from_parts(parts, Body::from(bytes));
            let tenant = caller.tenant_id;
            let work = tokio::spawn({
                let (app, key, owner) = (app.clone(), key.clone(), owner.clone());
                async move {
                    let response = next.run(request).await;
                    let (parts, body) = response.into_parts();
                    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
                    let stored = StoredResponse {
                        status: parts.status.as_u16(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    if let Err(err) = app
                        .idempotency
                        .finish_idempotent_request(tenant, &key, &owner, stored)
                        .await
                    {
                        tracing::error!(error = %err, "could not record the idempotent response");
                    }
                    Response::from_parts(parts, Body::from(body))
                }
            });
            match work.await {
                Ok(response) => response,
                // The handler's panics are answered inside (see `catch_panic`); this is one
                // in recording the answer. The key is given back so that a retry can run.
                Err(err) => {
                    tracing::error!(error = %err, "an idempotent request failed");
                    if let Err(err) = app
                        .idempotency
                        .finish_idempotent_request(tenant, &key, &owner, internal_error())
                        .await
                    {
                        tracing::error!(error = %err, "could not release the idempotency key");
                    }
                    Problem::internal().into_response()
                }
            }
        }
    }
}

/// What identifies a request under a key: its method, path and body.
pub fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_str());
    hash.update(b" ");
    hash.update(path);
    hash.update(b"\n");
    hash.update(body);
    hex::encode(hash.finalize())
}

fn internal_error() -> StoredResponse {
    StoredResponse {
        status: StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
        body: String::new(),
    }
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let content_type = if status.is_client_error() || status.is_server_error() {
        PROBLEM_CONTENT_TYPE
    } else {
        "application/json"
    };
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}
