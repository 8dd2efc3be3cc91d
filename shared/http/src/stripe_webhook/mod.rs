//! `POST /webhooks/stripe`: Stripe's calls to us, served by the `stripe-webhook` Lambda and,
//! on the API's port, by the local runner (one router for both).
//!
//! The raw body bytes are verified against `Stripe-Signature` before anything reads them
//! (a parse and re-serialise would change the bytes Stripe signed); a missing, forged or
//! stale signature is a 400 and nothing is applied. A verified event is parsed into our
//! terms and applied once by [`App::apply_gateway_event`]: replays (Stripe delivers at
//! least once, and retries for three days) are acknowledged without effect. A store outage
//! answers 503 so Stripe delivers again. "Now" for the signature's tolerance is the app's
//! clock, like every other use of time.

pub mod event;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use billing_app::collection::AppliedEvent;
use billing_app::App;
use billing_domain::collection::stripe_signature::{self, SignatureError, WebhookSecrets};
use billing_domain::kernel::error::ErrorCode;
use serde_json::json;

use crate::extract::body_bytes;
use crate::observe::{self, EmitMetrics};
use crate::problem::Problem;

pub const PATH: &str = "/webhooks/stripe";

/// Stripe's events (an invoice with many lines) can outgrow the API's 64 KiB bodies.
pub const MAX_EVENT_BYTES: usize = 2 * 1024 * 1024;

struct Receiver {
    app: App,
    secrets: WebhookSecrets,
}

/// The webhook route alone; merge it into the API's router to serve both on one port.
pub fn router(app: App, secrets: WebhookSecrets, metrics: EmitMetrics) -> Router {
    if secrets.is_empty() {
        tracing::warn!(
            "no Stripe webhook signing secret is configured: every Stripe event will be refused"
        );
    }
    Router::new()
        .route(PATH, post(receive))
        .layer(from_fn(move |req, next| {
            observe::observe(metrics, req, next)
        }))
        .with_state(Arc::new(Receiver { app, secrets }))
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, Problem> {
    let body = body_bytes(req, MAX_EVENT_BYTES).await?;
    let header = headers
        .get(stripe_signature::HEADER)
        .ok_or_else(|| {
            Problem::invalid(
                ErrorCode::MissingSignature,
                stripe_signature::HEADER,
                "the request has no Stripe-Signature header",
            )
        })?
        .to_str()
        .map_err(|_| signature_problem(SignatureError::Malformed))?;
    receiver
        .secrets
        .verify(header, &body, receiver.app.clock.now())
        .map_err(signature_problem)?;
    let event = event::parse(&body).map_err(|e| {
        Problem::invalid(ErrorCode::InvalidStripeEvent, "body", e.to_string())
            .hint("Stripe signed this body but it is not an event this version can read.")
    })?;
    let applied = receiver.app.collection.apply_gateway_event(&event).await?;
    let result = match applied {
        AppliedEvent::Applied => "applied",
        AppliedEvent::Duplicate => "duplicate",
        AppliedEvent::Ignored(why) => {
            tracing::info!(event = %event.id, why, "Stripe event acknowledged without effect");
            "ignored"
        }
    };
    tracing::info!(event = %event.id, result, "Stripe event");
    Ok((
        StatusCode::OK,
        Json(json!({"received": true, "id": event.id, "result": result})),
    )
        .into_response())
}

fn signature_problem(error: SignatureError) -> Problem {
    let code = match error {
        SignatureError::Malformed => ErrorCode::MalformedSignature,
        SignatureError::Stale => ErrorCode::StaleSignature,
        SignatureError::Mismatch => ErrorCode::InvalidSignature,
    };
    Problem::invalid(code, stripe_signature::HEADER, error.to_string()).hint(
        "Stripe signs with the endpoint's whsec_ secret: list it in the Stripe secret's \
         webhook_secrets, and check the server clock (5-minute tolerance).",
    )
}
