//! The OpenAPI 3.1 description, generated from the handlers and types themselves: the
//! paths come from the routes the router serves ([`routes::all`]), so they cannot differ.

use billing_app::App;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::Access;
use crate::event_catalog::EventCatalog;
use crate::problem::CONTENT_TYPE as PROBLEM_CONTENT_TYPE;
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Billing API",
        description = "Subscription billing on AWS Lambda. Amounts are integers in the currency's minor unit; \
                       errors are RFC 9457 problem+json with a stable `code` and the `param` at fault; \
                       every POST accepts an `Idempotency-Key`; lists use cursor pagination. \
                       Times a client sends must lie in 1970-01-01T00:00:00Z..=2999-12-31T23:59:59Z \
                       (else 400 `timestamp_out_of_range`), counts of days in 0..=3650 \
                       (else 400 `duration_out_of_range`).",
        version = "1.0.0"
    ),
    components(schemas(
        crate::problem::ProblemDocument,
        billing_domain::usage::entitlements::UsageThreshold
    )),
    modifiers(&BearerAuth),
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
            crate::auth::SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sk_test_… / sk_live_…")
                    .build(),
            ),
        );
    }
}

/// Every error response is a problem document, documented as `application/problem+json`;
/// the errors the shared layers answer (authentication, idempotency, body and parameter
/// parsing, an unavailable store) are added to each operation they can happen on, so the
/// handlers declare only their own.
struct ErrorResponses;

impl ErrorResponses {
    /// The statuses the shared layers can answer for `operation`, with what they mean.
    fn standard(method: &str, operation: &Operation) -> Vec<(&'static str, &'static str)> {
        let parameters = operation.parameters.as_deref().unwrap_or_default();
        let has = |place: ParameterIn| parameters.iter().any(|p| p.parameter_in == place);
        let writes = matches!(method, "post" | "put" | "patch");
        let keyed = matches!(Access::of(operation), Some(Access::Key(_)));
        let mut statuses = Vec::new();
        if writes || !parameters.is_empty() || operation.request_body.is_some() {
            statuses.push(("400", "The request is invalid: `code` says why and `param` names the field, parameter or header at fault."));
        }
        if keyed {
            statuses.push((
                "401",
                "No API key, or one that is unknown (`unauthenticated`), revoked (`api_key_revoked`) or expired (`api_key_expired`).",
            ));
            statuses.push((
                "403",
                "The key's role does not have the permission this operation needs.",
            ));
            statuses.push((
                "429",
                "Over the key's or the tenant's rate limit (`rate_limited`): `Retry-After` says in how many seconds to try again. Every answer to a key carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.",
            ));
        }
        if has(ParameterIn::Path) {
            statuses.push(("404", "No such object, or one of another tenant."));
        }
        if method == "post" {
            statuses.push(("409", "The `Idempotency-Key` is in use by a request still running, or was used with another body; or the object's state does not allow the change."));
        }
        if writes {
            statuses.push(("413", "The body is larger than 64 KiB."));
        }
        if operation.request_body.is_some() {
            statuses.push(("415", "The body is not `application/json`."));
        }
        statuses.push((
            "431",
            "More than 100 request headers, or more than 16 KiB of them.",
        ));
        statuses.push((
            "503",
            "The store is briefly unavailable: retry with backoff.",
        ));
        statuses
    }
}

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let problem = || {
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("ProblemDocument"))))
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for (method, operation) in [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ] {
                let Some(operation) = operation else { continue };
                for (status, description) in Self::standard(method, operation) {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            RefOr::T(ResponseBuilder::new().description(description).build())
                        });
                }
                for (status, response) in operation.responses.responses.iter_mut() {
                    if let (false, RefOr::T(response)) =
                        (status.starts_with(['1', '2', '3']), response)
                    {
                        response.content.clear();
                        response
                            .content
                            .insert(PROBLEM_CONTENT_TYPE.to_owned(), problem());
                    }
                }
            }
        }
    }
}

/// Built with the router and kept for the process: the document's pages serve it without
/// building the routes again.
static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();

/// The documented routes and the whole document describing them.
pub fn split() -> (axum::Router<App>, &'static utoipa::openapi::OpenApi) {
    let (router, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::all())
        .split_for_parts();
    // The catalog points at the schemas the routes bring, so it comes after them.
    EventCatalog.modify(&mut document);
    ErrorResponses.modify(&mut document);
    (router, DOCUMENT.get_or_init(|| document))
}

pub fn document() -> &'static utoipa::openapi::OpenApi {
    match DOCUMENT.get() {
        Some(document) => document,
        None => split().1,
    }
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
