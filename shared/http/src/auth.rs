//! Authentication (`Authorization: Bearer <key>`, or a staff user's JWT from the tenant's
//! identity provider, which is told apart by its shape), authorization and rate limits (429 with
//! `Retry-After`; `RateLimit-Limit`, `-Remaining` and `-Reset` on every authenticated answer). Every route declares
//! who may call it in its handler's `#[utoipa::path]`: `security(("api_key" = ["read"]))`
//! names the one permission a key needs (the role matrix in the domain decides), and
//! `security(())` marks an open route. The table is read from the OpenAPI document
//! ([`crate::openapi::document`]) once, when the router is built; a route that declares
//! neither is refused, so none ships unguarded.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use billing_app::customers::Admission;
use billing_app::App;
use billing_domain::customers::access::Permission;
use billing_domain::customers::staff::looks_like_jwt;
use billing_domain::kernel::error::ErrorCode;
use serde_json::Value;

use crate::observe::RequestId;
use crate::problem::Problem;

/// The security scheme every key route names.
pub const SCHEME: &str = "api_key";
/// The scheme of staff JWTs, accepted wherever [`SCHEME`] is (documented, never named by a
/// route: the permission is the same).
pub const STAFF_SCHEME: &str = "staff_jwt";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key: `security(())`.
    Open,
    /// A key whose role has this permission: `security(("api_key" = ["write_billing"]))`.
    Key(Permission),
}

impl Access {
    /// What an operation (its JSON in the document) declares, or `None` unless it declares
    /// exactly one of the two forms above.
    pub fn of(operation: &Value) -> Option<Access> {
        let [requirement] = operation.get("security")?.as_array()?.as_slice() else {
            return None;
        };
        // A requirement is `{}` (open) or `{"api_key": ["read"]}`.
        let requirement = requirement.as_object()?;
        if requirement.is_empty() {
            return Some(Access::Open);
        }
        let [scope] = requirement.get(SCHEME)?.as_array()?.as_slice() else {
            return None;
        };
        if requirement.len() != 1 {
            return None;
        }
        serde_json::from_value(scope.clone()).ok().map(Access::Key)
    }
}

/// Every (method, route template, operation) of an OpenAPI document.
pub fn operations(document: &Value) -> impl Iterator<Item = (Method, &str, &Value)> {
    const METHODS: [(&str, Method); 8] = [
        ("get", Method::GET),
        ("put", Method::PUT),
        ("post", Method::POST),
        ("delete", Method::DELETE),
        ("options", Method::OPTIONS),
        ("head", Method::HEAD),
        ("patch", Method::PATCH),
        ("trace", Method::TRACE),
    ];
    document
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            METHODS
                .into_iter()
                .filter_map(move |(name, method)| Some((method, path.as_str(), item.get(name)?)))
        })
}

/// The authentication layer's state: the app and, per (method, route template), the access
/// its operation declares.
#[derive(Clone)]
pub struct Guard {
    app: App,
    access: Arc<HashMap<(Method, String), Access>>,
}

impl Guard {
    pub fn new(app: App, document: &Value) -> Self {
        let access = operations(document)
            .filter_map(|(method, path, operation)| {
                Some(((method, path.to_owned()), Access::of(operation)?))
            })
            .collect();
        Guard {
            app,
            access: Arc::new(access),
        }
    }
}

/// Marks a response with the tenant that made the request, for the request log.
#[derive(Clone, Debug)]
pub struct TenantTag(pub String);

pub async fn authenticate(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let permission = match guard.access.get(&(req.method().clone(), route)) {
        Some(Access::Open) => return next.run(req).await,
        Some(Access::Key(permission)) => *permission,
        None => {
            return Problem::new(ErrorCode::Forbidden, "this route is not open to API keys")
                .into_response()
        }
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
            ErrorCode::Unauthenticated,
            "no API key or staff token was presented",
        )
        .into_response();
    };
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let customers = &guard.app.customers;
    let caller = if looks_like_jwt(bearer) {
        customers.authenticate_staff(bearer, request_id).await
    } else {
        customers.authenticate(bearer, request_id).await
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(err) => return Problem::from(err).into_response(),
    };
    let tenant = TenantTag(caller.tenant_id.to_string());
    if let Err(err) = caller.require(permission) {
        let mut response = Problem::from(err).into_response();
        response.extensions_mut().insert(tenant);
        return response;
    }
    let (status, retry_after) = match guard.app.customers.admit(&caller).await {
        Ok(Admission::Admitted(status)) => (status, None),
        Ok(Admission::Limited {
            status,
            retry_after,
        }) => (status, Some(retry_after)),
        Err(err) => return Problem::from(err).into_response(),
    };
    let mut response = match retry_after {
        Some(seconds) => {
            let mut response = Problem::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} requests in the limit's window; retry in {seconds} s",
                    status.limit
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
        None => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
    };
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(status.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(status.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(status.reset_seconds));
    response.extensions_mut().insert(tenant);
    response
}
