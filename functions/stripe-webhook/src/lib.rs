//! The `stripe-webhook` Lambda's handler: the shared webhook router (the local runner serves
//! the same one next to the API).

use billing_app::App;
use billing_domain::collection::stripe_signature::WebhookSecrets;
use billing_http::{stripe_webhook, EmitMetrics};

/// What [`billing_http::lambda::run`] serves.
pub fn handler(app: App, secrets: WebhookSecrets) -> axum::Router {
    stripe_webhook::router(app, secrets, EmitMetrics(true))
}
