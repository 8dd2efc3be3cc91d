//! The HTTP API as one axum router, served by the `api` Lambda through [`lambda::run`]
//! and by the local runner on a TCP port. Handlers are thin: extract, call one use case,
//! map the result.

pub mod auth;
pub mod catch_panic;
pub mod docs;
pub mod event_catalog;
pub mod extract;
pub mod hosted;
pub mod idempotency;
pub mod lambda;
pub mod observe;
pub mod openapi;
pub mod pagination;
pub mod params;
pub mod problem;
pub mod routes;
pub mod serve;
pub mod stripe_webhook;

use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use axum::Router;
use billing_app::App;
use billing_domain::kernel::error::ErrorCode;

pub use observe::{EmitMetrics, RequestId};
use problem::Problem;

pub const OPENAPI_PATH: &str = "/v1/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// The open routes outside the OpenAPI document: the document, its page, Stripe's webhook
/// (its own router, [`stripe_webhook::router`], guarded by Stripe's signature) and the
/// hosted invoice pages ([`hosted`], guarded by their tokens). Every other route is an
/// operation of the document.
pub const UNDOCUMENTED: [(Method, &str); 7] = [
    (Method::GET, OPENAPI_PATH),
    (Method::GET, DOCS_PATH),
    (Method::POST, stripe_webhook::PATH),
    (Method::GET, hosted::PAGE_PATH),
    (Method::POST, hosted::PAY_PATH),
    (Method::POST, hosted::AUTHENTICATE_PATH),
    (Method::GET, hosted::page::SCRIPT_PATH),
];

/// The whole API: the routes of [`routes::router`] and the document's pages. Each route
/// passes the access its operation declares (see [`auth`]) and, for POSTs, idempotency.
pub fn router(app: App, metrics: EmitMetrics) -> Router {
    let document = openapi::document();
    handling(
        routes::router().route_layer(from_fn_with_state(
            params::Declared::new(document),
            params::refuse_undeclared,
        )),
        &app,
    )
    .route_layer(from_fn_with_state(
        auth::Guard::new(app.clone(), document),
        auth::authenticate,
    ))
    .route(OPENAPI_PATH, get(openapi::serve))
    .route(DOCS_PATH, get(docs::page))
    .merge(hosted::router())
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

/// What every authenticated route runs inside: idempotency for POSTs, around the panic
/// guard (so that a panic's 500 gives its key back).
pub fn handling(routes: Router<App>, app: &App) -> Router<App> {
    routes
        .route_layer(from_fn(catch_panic::catch_panic))
        .route_layer(from_fn_with_state(app.clone(), idempotency::idempotent))
}
