//! Request extractors that answer bad input with a problem naming the field at fault,
//! instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use billing_app::Caller;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::problem::Problem;
use billing_domain::kernel::error::{check_key_text, ErrorCode};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body, deserialized strictly (unknown fields are refused by the target types).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, _: &S) -> Result<Self, Problem> {
        parse_json(&json_body(req).await?).map(ApiJson)
    }
}

/// The body of a request that says it is JSON. Apart from `T` (as is all that the generic
/// extractors call), so that the 50-odd body types share one copy of it.
async fn json_body(req: Request) -> Result<Bytes, Problem> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json")
        });
    if !is_json {
        return Err(Problem::new(
            ErrorCode::UnsupportedMediaType,
            "the request body must be JSON",
        )
        .param("Content-Type")
        .hint("Send `Content-Type: application/json`."));
    }
    body_bytes(req, MAX_BODY_BYTES).await
}

/// The whole body, refused as too large past `limit` bytes (axum's own limit answers in
/// plain text).
pub async fn body_bytes(req: Request, limit: usize) -> Result<Bytes, Problem> {
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| too_large(limit))
}

pub fn too_large(limit: usize) -> Problem {
    Problem::new(
        ErrorCode::BodyTooLarge,
        format!("the request body is larger than {limit} bytes"),
    )
    .hint("Send a smaller body; lists are paginated and batches have their own limits.")
}

/// Deserializes JSON, turning serde's error into a problem with the failing field's path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(body_problem)?;
    // A second value after the first (`{…}{"is_admin":true}`) is refused, not ignored.
    de.end().map_err(trailing_problem)?;
    Ok(value)
}

fn body_problem(err: serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let message = inner.to_string();
    if inner.is_syntax() || inner.is_eof() {
        return Problem::invalid(
            ErrorCode::MalformedJson,
            "body",
            format!("the body is not valid JSON: {message}"),
        )
        .hint("Send a well-formed JSON object.");
    }
    let (code, param) = match unknown_field(&message) {
        Some(field) => (ErrorCode::UnknownField, join_path(&path, field)),
        None if message.starts_with("missing field") => (
            ErrorCode::MissingField,
            join_path(&path, message.split('`').nth(1).unwrap_or("")),
        ),
        None => (
            ErrorCode::InvalidValue,
            if path == "." { "body".into() } else { path },
        ),
    };
    Problem::invalid(code, param, first_sentence(&message))
}

fn trailing_problem(err: serde_json::Error) -> Problem {
    Problem::invalid(
        ErrorCode::MalformedJson,
        "body",
        format!("the body is not valid JSON: {err}"),
    )
    .hint("Send exactly one JSON value; nothing may follow it but white space.")
}

fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// serde_path_to_error already ends the path with an unknown field; a missing field is
/// reported at its parent.
fn join_path(parent: &str, field: &str) -> String {
    if parent == field || parent.ends_with(&format!(".{field}")) {
        parent.to_owned()
    } else if parent.is_empty() || parent == "." {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

/// serde appends ` at line 1 column 20`; the param already says where.
fn first_sentence(message: &str) -> String {
    message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned()
}

/// An optional JSON body (`POST …/resend`, `POST …/rotate-secret`): empty means defaults.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, _: &S) -> Result<Self, Problem> {
        let bytes = body_bytes(req, MAX_BODY_BYTES).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Path parameters. axum refuses a segment that is not UTF-8 once percent-decoded
/// (`/v1/accounts/%ff%fe`) in plain text; this answers a problem.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(path_problem)
    }
}

fn path_problem(rejection: axum::extract::rejection::PathRejection) -> Problem {
    Problem::invalid(ErrorCode::InvalidPath, "path", rejection.body_text())
        .hint("Percent-encode the path's ids as UTF-8; ids are ASCII.")
}

/// Query parameters, deserialized strictly.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(query_problem)
    }
}

fn query_problem(err: serde_path_to_error::Error<serde_urlencoded::de::Error>) -> Problem {
    let path = err.path().to_string();
    let message = err.into_inner().to_string();
    let param = unknown_field(&message).map(str::to_owned).unwrap_or(path);
    Problem::invalid(ErrorCode::InvalidQuery, param, message)
}

/// A query parameter that is looked up by key (a filter, a cursor): bounded in bytes, so a
/// long one is refused instead of failing in the store.
pub fn key_text(value: Option<String>, param: &str) -> Result<Option<String>, Problem> {
    if let Some(v) = &value {
        check_key_text(v, param)?;
    }
    Ok(value)
}

/// The authenticated caller, put in place by the authentication layer.
pub struct Auth(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(Auth)
            .ok_or_else(|| Problem::new(ErrorCode::Unauthenticated, "no API key was presented"))
    }
}

/// A JSON response with a status.
pub struct Reply<T>(pub StatusCode, pub T);

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

/// Parses a typed id from the path; a malformed id names nothing, so it is a 404.
pub fn path_id<T>(
    raw: &str,
    resource: &str,
    parse: impl Fn(&str, &'static str) -> Result<T, billing_domain::kernel::error::ValidationError>,
) -> Result<T, Problem> {
    parse(raw, "id").map_err(|_| Problem::not_found(format!("no such {resource}: `{raw}`")))
}

/// An optional RFC 3339 time from a query parameter.
pub fn timestamp(
    raw: Option<&str>,
    param: &'static str,
) -> Result<Option<jiff::Timestamp>, Problem> {
    raw.map(|r| {
        r.parse::<jiff::Timestamp>().map_err(|_| {
            Problem::invalid(
                ErrorCode::InvalidTimestamp,
                param,
                "expected an RFC 3339 time such as 2026-11-22T10:00:00Z",
            )
        })
    })
    .transpose()
}
