//! A query parameter an operation does not declare is refused (`invalid_query`), instead of
//! being ignored: `limit=abc` on a list that is not paginated, or a misspelt filter, would
//! otherwise answer every item. The declarations are the OpenAPI document's, so what is
//! documented is what is accepted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use billing_domain::kernel::error::ErrorCode;
use serde_json::Value;

use crate::auth::operations;
use crate::problem::Problem;

/// Per (method, route template), the query parameters its operation declares.
#[derive(Clone)]
pub struct Declared(Arc<HashMap<(Method, String), HashSet<String>>>);

impl Declared {
    pub fn new(document: &Value) -> Self {
        let declared = operations(document)
            .map(|(method, path, operation)| {
                let names = operation
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|p| p.get("in").and_then(Value::as_str) == Some("query"))
                    .filter_map(|p| Some(p.get("name")?.as_str()?.to_owned()))
                    .collect();
                ((method, path.to_owned()), names)
            })
            .collect();
        Declared(Arc::new(declared))
    }
}

pub async fn refuse_undeclared(
    State(declared): State<Declared>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let names = route.and_then(|route| declared.0.get(&(req.method().clone(), route.to_owned())));
    if let (Some(names), Some(query)) = (names, req.uri().query()) {
        let unknown = form_urlencoded::parse(query.as_bytes())
            .map(|(name, _)| name)
            .find(|name| !names.contains(name.as_ref()));
        if let Some(name) = unknown {
            return Problem::invalid(
                ErrorCode::InvalidQuery,
                name.to_string(),
                format!("`{name}` is not a query parameter of this operation"),
            )
            .hint("The operation's parameters are listed in /v1/openapi.json.")
            .into_response();
        }
    }
    next.run(req).await
}
