//! The OpenAPI 3.1 description, generated from the handlers and types themselves.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::event_catalog::EventCatalog;
use crate::routes::{
    accounts, api_keys, audit, billing, catalog, dunning, events, health, payments, usage, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Billing API",
        description = "Subscription billing on AWS Lambda. Amounts are integers in the currency's minor unit; \
                       errors are RFC 9457 problem+json with a stable `code` and the `param` at fault; \
                       every POST accepts an `Idempotency-Key`; lists use cursor pagination.",
        version = "1.0.0"
    ),
    paths(
        accounts::create, accounts::get, accounts::list, accounts::update, accounts::delete,
        api_keys::create, api_keys::list, api_keys::revoke,
        audit::list,
        catalog::create_metric, catalog::list_metrics, catalog::get_metric, catalog::update_metric,
        catalog::create_plan, catalog::list_plans, catalog::get_plan, catalog::update_plan, catalog::deactivate_plan,
        catalog::list_versions, catalog::create_version, catalog::subscription_count, catalog::preview_price,
        billing::create_subscription, billing::list_subscriptions, billing::get_subscription, billing::update_subscription,
        billing::cancel_subscription, billing::reactivate_subscription, billing::pause_subscription, billing::resume_subscription,
        billing::change_plan, billing::cancel_scheduled_change, billing::history,
        billing::create_invoice, billing::list_invoices, billing::get_invoice, billing::finalize_invoice, billing::void_invoice,
        billing::preview_invoice, billing::get_invoice_settings, billing::update_invoice_settings, billing::create_test_clock, billing::get_test_clock, billing::advance_test_clock,
        dunning::get_settings, dunning::update_settings, dunning::get_case,
        payments::attach, payments::list_methods, payments::update_method, payments::detach,
        payments::list_payments, payments::get_payment, payments::pay_invoice, payments::retry, payments::mark_paid,
        payments::refund, payments::list_credit_notes, payments::get_settings, payments::update_settings,
        usage::record, usage::record_batch, usage::subscription_usage, usage::check,
        events::list, events::get, events::resend,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::rotate_secret, webhooks::deliveries,
        health::live, health::ready,
    ),
    components(schemas(
        crate::problem::ProblemDocument,
        billing_domain::usage::entitlements::UsageThreshold
    )),
    modifiers(&BearerAuth, &EventCatalog),
    security(("api_key" = [])),
    tags(
        (name = "accounts", description = "Customer accounts"),
        (name = "api-keys", description = "API keys and roles (admin only)"),
        (name = "audit", description = "Who changed what"),
        (name = "subscriptions", description = "Subscriptions and their lifecycle"),
        (name = "invoices", description = "Invoices: gapless numbers, finalize, void, previews"),
        (name = "payments", description = "Payment methods, payment attempts and retries, paying invoices, refunds and credit notes, retry settings"),
        (name = "dunning", description = "Dunning: reminders, warnings and blocks for accounts with overdue invoices, per-tenant policy"),
        (name = "usage", description = "Usage metering: idempotent events, live usage with its price, entitlement checks"),
        (name = "test-clocks", description = "Sandbox test clocks: move time and watch billing happen"),
        (name = "catalog", description = "Billable metrics, plans with versioned multi-currency prices, the price calculator"),
        (name = "events", description = "The event log (30 days): every change as a versioned event; the same JSON is posted to webhooks and put on EventBridge"),
        (name = "webhooks", description = "Webhook endpoints, their signing secrets and delivery logs"),
        (name = "health", description = "Liveness and readiness, no authentication"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sk_test_… / sk_live_…")
                    .build(),
            ),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /v1/openapi.json`, rendered once per process.
pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    static JSON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = JSON.get_or_init(|| document().to_json().unwrap_or_default());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.as_str(),
    )
        .into_response()
}
