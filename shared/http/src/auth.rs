//! Authentication (`Authorization: Bearer <key>`) and authorization: every route names
//! the one permission it needs in [`ROUTES`]; the role matrix in the domain decides.
//! A route missing from the table is refused, so a new route cannot ship unguarded.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use billing_app::App;
use billing_domain::customers::access::Permission;

use crate::observe::RequestId;
use crate::problem::Problem;

/// (method, route template, permission) for every authenticated route.
pub const ROUTES: &[(Method, &str, Permission)] = &[
    (Method::POST, "/v1/accounts", Permission::WriteAccounts),
    (Method::GET, "/v1/accounts", Permission::Read),
    (Method::GET, "/v1/accounts/{id}", Permission::Read),
    (
        Method::PATCH,
        "/v1/accounts/{id}",
        Permission::WriteAccounts,
    ),
    (
        Method::DELETE,
        "/v1/accounts/{id}",
        Permission::WriteAccounts,
    ),
    (Method::POST, "/v1/api-keys", Permission::ManageApiKeys),
    (Method::GET, "/v1/api-keys", Permission::ManageApiKeys),
    (
        Method::DELETE,
        "/v1/api-keys/{id}",
        Permission::ManageApiKeys,
    ),
    (Method::GET, "/v1/audit-log", Permission::Read),
    (Method::POST, "/v1/metrics", Permission::WriteBilling),
    (Method::GET, "/v1/metrics", Permission::Read),
    (Method::GET, "/v1/metrics/{id}", Permission::Read),
    (Method::PATCH, "/v1/metrics/{id}", Permission::WriteBilling),
    (Method::POST, "/v1/plans", Permission::WriteBilling),
    (Method::GET, "/v1/plans", Permission::Read),
    (Method::GET, "/v1/plans/{id}", Permission::Read),
    (Method::PATCH, "/v1/plans/{id}", Permission::WriteBilling),
    (Method::DELETE, "/v1/plans/{id}", Permission::WriteBilling),
    (Method::GET, "/v1/plans/{id}/versions", Permission::Read),
    (
        Method::POST,
        "/v1/plans/{id}/versions",
        Permission::WriteBilling,
    ),
    (
        Method::GET,
        "/v1/plans/{id}/subscription-count",
        Permission::Read,
    ),
    (Method::POST, "/v1/prices/preview", Permission::Read),
    (Method::POST, "/v1/subscriptions", Permission::WriteBilling),
    (Method::GET, "/v1/subscriptions", Permission::Read),
    (Method::GET, "/v1/subscriptions/{id}", Permission::Read),
    (
        Method::PATCH,
        "/v1/subscriptions/{id}",
        Permission::WriteBilling,
    ),
    (
        Method::POST,
        "/v1/subscriptions/{id}/cancel",
        Permission::WriteBilling,
    ),
    (
        Method::POST,
        "/v1/subscriptions/{id}/reactivate",
        Permission::WriteBilling,
    ),
    (
        Method::POST,
        "/v1/subscriptions/{id}/pause",
        Permission::WriteBilling,
    ),
    (
        Method::POST,
        "/v1/subscriptions/{id}/resume",
        Permission::WriteBilling,
    ),
    (
        Method::POST,
        "/v1/subscriptions/{id}/change-plan",
        Permission::WriteBilling,
    ),
    (
        Method::DELETE,
        "/v1/subscriptions/{id}/scheduled-change",
        Permission::WriteBilling,
    ),
    (
        Method::GET,
        "/v1/subscriptions/{id}/history",
        Permission::Read,
    ),
    (
        Method::GET,
        "/v1/subscriptions/{id}/usage",
        Permission::Read,
    ),
    (Method::POST, "/v1/usage", Permission::WriteBilling),
    (Method::POST, "/v1/usage/batch", Permission::WriteBilling),
    (Method::GET, "/v1/entitlements/check", Permission::Read),
    (Method::POST, "/v1/invoices", Permission::WriteBilling),
    (Method::GET, "/v1/invoices", Permission::Read),
    (Method::POST, "/v1/invoices/preview", Permission::Read),
    (Method::GET, "/v1/invoices/{id}", Permission::Read),
    (
        Method::POST,
        "/v1/invoices/{id}/finalize",
        Permission::WriteBilling,
    ),
    (
        Method::POST,
        "/v1/invoices/{id}/void",
        Permission::WriteBilling,
    ),
    (Method::GET, "/v1/settings/dunning", Permission::Read),
    (
        Method::PATCH,
        "/v1/settings/dunning",
        Permission::WriteBilling,
    ),
    (Method::GET, "/v1/accounts/{id}/dunning", Permission::Read),
    (
        Method::POST,
        "/v1/accounts/{id}/payment-methods",
        Permission::WriteAccounts,
    ),
    (
        Method::GET,
        "/v1/accounts/{id}/payment-methods",
        Permission::Read,
    ),
    (
        Method::PATCH,
        "/v1/accounts/{id}/payment-methods/{pm}",
        Permission::WriteAccounts,
    ),
    (
        Method::DELETE,
        "/v1/accounts/{id}/payment-methods/{pm}",
        Permission::WriteAccounts,
    ),
    (Method::GET, "/v1/payments", Permission::Read),
    (Method::POST, "/v1/payments/retry", Permission::WriteBilling),
    (Method::GET, "/v1/payments/{id}", Permission::Read),
    (
        Method::POST,
        "/v1/payments/{id}/refunds",
        Permission::WriteBilling,
    ),
    (
        Method::POST,
        "/v1/invoices/{id}/pay",
        Permission::WriteBilling,
    ),
    (
        Method::POST,
        "/v1/invoices/{id}/mark-paid",
        Permission::WriteBilling,
    ),
    (Method::GET, "/v1/credit-notes", Permission::Read),
    (Method::GET, "/v1/settings/payments", Permission::Read),
    (
        Method::PATCH,
        "/v1/settings/payments",
        Permission::WriteBilling,
    ),
    (Method::GET, "/v1/settings/invoices", Permission::Read),
    (
        Method::PATCH,
        "/v1/settings/invoices",
        Permission::WriteBilling,
    ),
    (Method::POST, "/v1/test-clocks", Permission::WriteBilling),
    (Method::GET, "/v1/test-clocks/{id}", Permission::Read),
    (
        Method::POST,
        "/v1/test-clocks/{id}/advance",
        Permission::WriteBilling,
    ),
    (Method::GET, "/v1/events", Permission::Read),
    (Method::GET, "/v1/events/{id}", Permission::Read),
    // Webhook endpoints hold signing secrets: managed like API keys.
    (
        Method::POST,
        "/v1/events/{id}/resend",
        Permission::ManageApiKeys,
    ),
    (
        Method::POST,
        "/v1/webhook-endpoints",
        Permission::ManageApiKeys,
    ),
    (Method::GET, "/v1/webhook-endpoints", Permission::Read),
    (Method::GET, "/v1/webhook-endpoints/{id}", Permission::Read),
    (
        Method::PATCH,
        "/v1/webhook-endpoints/{id}",
        Permission::ManageApiKeys,
    ),
    (
        Method::DELETE,
        "/v1/webhook-endpoints/{id}",
        Permission::ManageApiKeys,
    ),
    (
        Method::POST,
        "/v1/webhook-endpoints/{id}/rotate-secret",
        Permission::ManageApiKeys,
    ),
    (
        Method::GET,
        "/v1/webhook-endpoints/{id}/deliveries",
        Permission::Read,
    ),
];

pub fn permission_for(method: &Method, route: &str) -> Option<Permission> {
    ROUTES
        .iter()
        .find(|(m, r, _)| m == method && *r == route)
        .map(|(_, _, p)| *p)
}

/// Marks a response with the tenant that made the request, for the request log.
#[derive(Clone, Debug)]
pub struct TenantTag(pub String);

pub async fn authenticate(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some(permission) = permission_for(req.method(), &route) else {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this route is not open to API keys",
        )
        .into_response();
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(bearer) = bearer else {
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "no API key was presented",
        )
        .into_response();
    };
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let caller = match app.customers.authenticate(bearer, request_id).await {
        Ok(caller) => caller,
        Err(err) => return Problem::from(err).into_response(),
    };
    let tenant = TenantTag(caller.tenant_id.to_string());
    if let Err(err) = caller.require(permission) {
        let mut response = Problem::from(err).into_response();
        response.extensions_mut().insert(tenant);
        return response;
    }
    req.extensions_mut().insert(caller);
    let mut response = next.run(req).await;
    response.extensions_mut().insert(tenant);
    response
}
