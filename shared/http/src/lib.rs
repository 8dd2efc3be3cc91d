//! The HTTP API as one axum router, served by the `api` Lambda through `lambda_http::run`
//! and by the local runner on a TCP port. Handlers are thin: extract, call one use case,
//! map the result.

pub mod auth;
pub mod docs;
pub mod event_catalog;
pub mod extract;
pub mod idempotency;
pub mod observe;
pub mod openapi;
pub mod pagination;
pub mod problem;
pub mod routes;
pub mod stripe_webhook;

use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, patch, post};
use axum::Router;
use billing_app::App;
use billing_domain::kernel::error::ErrorCode;

pub use observe::{EmitMetrics, RequestId};
use problem::Problem;
use routes::{
    accounts, api_keys, audit, billing, catalog, dunning, events, health, payments, usage, webhooks,
};

pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// The whole API. Every `/v1` route passes authentication, the route's permission check
/// and, for POSTs, idempotency; `/health*`, the OpenAPI document and `/docs` are open.
pub fn router(app: App, metrics: EmitMetrics) -> Router {
    let authenticated = Router::new()
        .route("/v1/accounts", post(accounts::create).get(accounts::list))
        .route(
            "/v1/accounts/{id}",
            get(accounts::get)
                .patch(accounts::update)
                .delete(accounts::delete),
        )
        .route("/v1/api-keys", post(api_keys::create).get(api_keys::list))
        .route("/v1/api-keys/{id}", delete(api_keys::revoke))
        .route("/v1/audit-log", get(audit::list))
        .route(
            "/v1/metrics",
            post(catalog::create_metric).get(catalog::list_metrics),
        )
        .route(
            "/v1/metrics/{id}",
            get(catalog::get_metric).patch(catalog::update_metric),
        )
        .route(
            "/v1/plans",
            post(catalog::create_plan).get(catalog::list_plans),
        )
        .route(
            "/v1/plans/{id}",
            get(catalog::get_plan)
                .patch(catalog::update_plan)
                .delete(catalog::deactivate_plan),
        )
        .route(
            "/v1/plans/{id}/versions",
            get(catalog::list_versions).post(catalog::create_version),
        )
        .route(
            "/v1/plans/{id}/subscription-count",
            get(catalog::subscription_count),
        )
        .route("/v1/prices/preview", post(catalog::preview_price))
        .route(
            "/v1/subscriptions",
            post(billing::create_subscription).get(billing::list_subscriptions),
        )
        .route(
            "/v1/subscriptions/{id}",
            get(billing::get_subscription).patch(billing::update_subscription),
        )
        .route(
            "/v1/subscriptions/{id}/cancel",
            post(billing::cancel_subscription),
        )
        .route(
            "/v1/subscriptions/{id}/reactivate",
            post(billing::reactivate_subscription),
        )
        .route(
            "/v1/subscriptions/{id}/pause",
            post(billing::pause_subscription),
        )
        .route(
            "/v1/subscriptions/{id}/resume",
            post(billing::resume_subscription),
        )
        .route(
            "/v1/subscriptions/{id}/change-plan",
            post(billing::change_plan),
        )
        .route(
            "/v1/subscriptions/{id}/scheduled-change",
            delete(billing::cancel_scheduled_change),
        )
        .route("/v1/subscriptions/{id}/history", get(billing::history))
        .route(
            "/v1/subscriptions/{id}/usage",
            get(usage::subscription_usage),
        )
        .route("/v1/usage", post(usage::record))
        .route("/v1/usage/batch", post(usage::record_batch))
        .route("/v1/entitlements/check", get(usage::check))
        .route(
            "/v1/invoices",
            post(billing::create_invoice).get(billing::list_invoices),
        )
        .route("/v1/invoices/preview", post(billing::preview_invoice))
        .route("/v1/invoices/{id}", get(billing::get_invoice))
        .route(
            "/v1/invoices/{id}/finalize",
            post(billing::finalize_invoice),
        )
        .route("/v1/invoices/{id}/void", post(billing::void_invoice))
        .route(
            "/v1/settings/invoices",
            get(billing::get_invoice_settings).patch(billing::update_invoice_settings),
        )
        .route(
            "/v1/settings/dunning",
            get(dunning::get_settings).patch(dunning::update_settings),
        )
        .route("/v1/accounts/{id}/dunning", get(dunning::get_case))
        .route(
            "/v1/accounts/{id}/payment-methods",
            post(payments::attach).get(payments::list_methods),
        )
        .route(
            "/v1/accounts/{id}/payment-methods/{pm}",
            patch(payments::update_method).delete(payments::detach),
        )
        .route("/v1/payments", get(payments::list_payments))
        .route("/v1/payments/retry", post(payments::retry))
        .route("/v1/payments/{id}", get(payments::get_payment))
        .route("/v1/payments/{id}/refunds", post(payments::refund))
        .route("/v1/invoices/{id}/pay", post(payments::pay_invoice))
        .route("/v1/invoices/{id}/mark-paid", post(payments::mark_paid))
        .route("/v1/credit-notes", get(payments::list_credit_notes))
        .route(
            "/v1/settings/payments",
            get(payments::get_settings).patch(payments::update_settings),
        )
        .route("/v1/test-clocks", post(billing::create_test_clock))
        .route("/v1/test-clocks/{id}", get(billing::get_test_clock))
        .route(
            "/v1/test-clocks/{id}/advance",
            post(billing::advance_test_clock),
        )
        .route("/v1/events", get(events::list))
        .route("/v1/events/{id}", get(events::get))
        .route("/v1/events/{id}/resend", post(events::resend))
        .route(
            "/v1/webhook-endpoints",
            post(webhooks::create).get(webhooks::list),
        )
        .route(
            "/v1/webhook-endpoints/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/v1/webhook-endpoints/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route(
            "/v1/webhook-endpoints/{id}/deliveries",
            get(webhooks::deliveries),
        )
        .route_layer(from_fn_with_state(app.clone(), idempotency::idempotent))
        .route_layer(from_fn_with_state(app.clone(), auth::authenticate));
    Router::new()
        .merge(authenticated)
        .route("/health", get(health::live))
        .route("/health/ready", get(health::ready))
        .route(OPENAPI_PATH, get(openapi::serve))
        .route("/docs", get(docs::page))
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                ErrorCode::MethodNotAllowed,
                "this route does not accept that method",
            )
        })
        .layer(from_fn(move |req, next| {
            observe::observe(metrics, req, next)
        }))
        .with_state(app)
}
