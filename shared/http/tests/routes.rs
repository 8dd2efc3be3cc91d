//! Every route is declared once and completely: the router serves exactly the operations of
//! the OpenAPI document (plus the listed undocumented open routes), and every operation says
//! who may call it. The router takes its routes from nowhere else ([`routes::router`] and
//! [`UNDOCUMENTED`]), so walking the document's paths with every method walks the router.
//! The document is the checked-in one the API serves, and it is the one the handlers declare.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use billing_app::ports::SystemClock;
use billing_app::App;
use billing_domain::collection::stripe_signature::WebhookSecrets;
use billing_domain::customers::access::Permission;
use billing_http::auth::{operations, Access, SCHEME};
use billing_http::{openapi, router, stripe_webhook, EmitMetrics, UNDOCUMENTED};
use billing_memory::MemoryStore;
use tower::ServiceExt;
use utoipa::openapi::path::OperationBuilder;
use utoipa::openapi::security::SecurityRequirement;

type Route = (Method, String);

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// What the local runner serves: the API and Stripe's webhook on one port.
fn served() -> Router {
    let app = App::new(
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        Arc::new(billing_aws::SandboxGateway::new()),
    );
    router(app.clone(), EmitMetrics(false)).merge(stripe_webhook::router(
        app,
        WebhookSecrets::new(["whsec_test"]),
        EmitMetrics(false),
    ))
}

/// Sends `method path` without a key, `{params}` filled with a placeholder.
async fn call(router: &Router, method: &Method, path: &str) -> StatusCode {
    let uri = path
        .split('/')
        .map(|part| if part.starts_with('{') { "x" } else { part })
        .collect::<Vec<_>>()
        .join("/");
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    router.clone().oneshot(request).await.unwrap().status()
}

#[test]
fn the_checked_in_document_is_the_one_the_handlers_declare() {
    let checked_in = include_str!("../openapi.json");
    assert!(
        checked_in == openapi::live_json(),
        "shared/http/openapi.json is stale: run `make docs`"
    );
    // What the API serves and its guards read is that document.
    let parsed: serde_json::Value = serde_json::from_str(checked_in).unwrap();
    assert_eq!(openapi::document(), &parsed);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(openapi::json()).unwrap(),
        parsed
    );
}

#[test]
fn every_operation_declares_a_permission_or_that_it_is_open() {
    let document = openapi::document();
    let mut count = 0;
    for (method, path, operation) in operations(document) {
        count += 1;
        let access = Access::of(operation);
        let expected_open = path.starts_with("/health");
        match access {
            Some(Access::Open) => assert!(expected_open, "{method} {path} is open"),
            Some(Access::Key(_)) => assert!(!expected_open, "{method} {path} wants a key"),
            None => panic!(
                "{method} {path} declares no access: add security((\"api_key\" = [\"<permission>\"])) \
                 or security(()) to its #[utoipa::path]"
            ),
        }
    }
    assert!(count > 70, "the document has its operations ({count})");
}

#[test]
fn a_malformed_declaration_declares_nothing() {
    let of = |security: Option<Vec<SecurityRequirement>>| {
        let operation = OperationBuilder::new().securities(security).build();
        Access::of(&serde_json::to_value(operation).unwrap())
    };
    let key = |scopes: &[&str]| SecurityRequirement::new(SCHEME, scopes.iter().copied());
    assert_eq!(
        of(Some(vec![SecurityRequirement::default()])),
        Some(Access::Open)
    );
    assert_eq!(
        of(Some(vec![key(&["write_billing"])])),
        Some(Access::Key(Permission::WriteBilling))
    );
    assert_eq!(of(None), None);
    assert_eq!(of(Some(vec![])), None);
    assert_eq!(of(Some(vec![key(&[])])), None);
    assert_eq!(of(Some(vec![key(&["writes"])])), None);
    assert_eq!(of(Some(vec![key(&["read", "write_billing"])])), None);
    assert_eq!(
        of(Some(vec![key(&["read"]), SecurityRequirement::default()])),
        None
    );
    let other = SecurityRequirement::new("other", ["read"]);
    assert_eq!(of(Some(vec![other])), None);
    let both = key(&["read"]).add("other", ["read"]);
    assert_eq!(of(Some(vec![both])), None);
}

#[tokio::test]
async fn the_router_serves_exactly_the_documented_operations_and_the_listed_open_routes() {
    let document = openapi::document();
    let operations: BTreeSet<Route> = operations(document)
        .map(|(method, path, _)| (method, path.to_owned()))
        .collect();
    let undocumented: BTreeSet<Route> = UNDOCUMENTED
        .iter()
        .map(|(method, path)| (method.clone(), (*path).to_owned()))
        .collect();
    let paths: BTreeSet<&str> = operations
        .iter()
        .chain(&undocumented)
        .map(|(_, path)| path.as_str())
        .collect();
    let router = served();
    let mut routes = BTreeSet::new();
    for path in paths {
        for method in &METHODS {
            let status = call(&router, method, path).await;
            assert_ne!(status, StatusCode::NOT_FOUND, "{path} is routed");
            if status != StatusCode::METHOD_NOT_ALLOWED {
                routes.insert((method.clone(), path.to_owned()));
            }
        }
    }
    let served_documented: BTreeSet<Route> = routes.difference(&undocumented).cloned().collect();
    let missing: Vec<_> = operations.difference(&served_documented).collect();
    let extra: Vec<_> = served_documented.difference(&operations).collect();
    assert!(missing.is_empty(), "documented, not served: {missing:?}");
    assert!(extra.is_empty(), "served, not documented: {extra:?}");
    assert!(undocumented.is_subset(&routes), "the open pages are served");
    assert_eq!(operations.len(), routes.len() - undocumented.len());
}

#[tokio::test]
async fn each_route_asks_for_what_its_operation_declares() {
    let document = openapi::document();
    let router = served();
    for (method, path, operation) in operations(document) {
        let status = call(&router, &method, path).await;
        match Access::of(operation) {
            Some(Access::Key(_)) => {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} wants a key"
                )
            }
            Some(Access::Open) => assert!(status.is_success(), "{method} {path} is open: {status}"),
            None => assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} is refused"),
        }
    }
    for (method, path) in &UNDOCUMENTED {
        let status = call(&router, method, path).await;
        // Stripe's webhook answers 400 to a request Stripe did not sign, never 401.
        assert!(
            status.is_success() || status == StatusCode::BAD_REQUEST,
            "{method} {path} is open: {status}"
        );
    }
}
