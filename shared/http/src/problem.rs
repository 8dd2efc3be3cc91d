//! RFC 9457 problem details: every error the API returns, with a stable `code`, the
//! `param` at fault and a hint on what to do about it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use billing_app::AppError;
use billing_domain::kernel::error::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/invalid_email", "title": "Invalid request", "status": 400,
    "detail": "`ada@` is not a valid email address", "code": "invalid_email", "param": "email",
    "hint": "Correct the field named in `param` and send the request again."
}))]
pub struct ProblemDocument {
    /// A URI reference naming the problem type: `/problems/{code}`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
    /// The request field, query parameter or header at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// What to do about it.
    pub hint: String,
}

/// A problem on its way to becoming a response (boxed: errors travel through `Result`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(Box<ProblemDocument>);

impl Problem {
    /// A problem with `code`, which fixes its status.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self(Box::new(ProblemDocument {
            problem_type: format!("/problems/{code}"),
            title: title(status),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            param: None,
            hint: hint(status).to_owned(),
        }))
    }

    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.0.param = Some(param.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hint = hint.into();
        self
    }

    pub fn document(&self) -> &ProblemDocument {
        &self.0
    }

    pub fn invalid(code: ErrorCode, param: impl Into<String>, detail: impl Into<String>) -> Self {
        Problem::new(code, detail).param(param)
    }

    /// A fault of ours; its cause goes to the log, never to the client.
    pub fn internal() -> Self {
        Problem::new(ErrorCode::InternalError, "something went wrong on our side")
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(ErrorCode::ResourceMissing, detail)
    }
}

fn title(status: StatusCode) -> String {
    match status {
        StatusCode::BAD_REQUEST => "Invalid request".into(),
        StatusCode::UNAUTHORIZED => "Authentication required".into(),
        StatusCode::FORBIDDEN => "Not allowed".into(),
        StatusCode::NOT_FOUND => "Not found".into(),
        StatusCode::CONFLICT => "Conflict".into(),
        StatusCode::PAYLOAD_TOO_LARGE => "Request too large".into(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported media type".into(),
        StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable".into(),
        other => other.canonical_reason().unwrap_or("Error").into(),
    }
}

fn hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "Correct the field named in `param` and send the request again.",
        StatusCode::UNAUTHORIZED => {
            "Send `Authorization: Bearer sk_test_…` with an active API key."
        }
        StatusCode::FORBIDDEN => "Use a key whose role allows this operation, or ask an admin.",
        StatusCode::NOT_FOUND => "Check the id and that it belongs to the tenant of your API key.",
        StatusCode::CONFLICT => "Fetch the current state of the resource and decide again.",
        StatusCode::SERVICE_UNAVAILABLE => {
            "Retry with the same Idempotency-Key after a short wait."
        }
        StatusCode::TOO_MANY_REQUESTS => {
            "Wait the `Retry-After` seconds, or ask an admin to raise the limit \
             (`/v1/settings/limits`, or the key's `rate_limit_per_hour`)."
        }
        _ => "If this persists, contact support with the Request-Id header of the response.",
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if matches!(
            self.0.code,
            ErrorCode::BodyTooLarge | ErrorCode::HeadersTooLarge
        ) {
            // The rest of the request is left unread, so the server cannot keep the connection:
            // say so, or the client's next request on it fails.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<AppError> for Problem {
    fn from(err: AppError) -> Self {
        match err {
            AppError::Invalid(v) => Problem::invalid(v.code, v.param, v.message),
            AppError::NotFound { resource, id } => {
                Problem::not_found(format!("no such {resource}: `{id}`"))
            }
            AppError::Conflict {
                code,
                message,
                param,
            } => {
                let mut problem = Problem::new(code, message);
                if code == ErrorCode::DocumentNotReady {
                    problem = problem.hint(
                        "The PDF is rendered off the request path within seconds of the \
                         invoice's finalization (or the credit note's creation): ask again \
                         shortly.",
                    );
                }
                match param {
                    Some(p) => problem.param(p),
                    None => problem,
                }
            }
            AppError::Unauthenticated { code, message } if code.as_str().starts_with("jwt_") => {
                Problem::new(code, message).hint(
                    "Sign in again with your identity provider and send its ID token; an admin \
                     can check the tenant's /v1/settings/identity-provider.",
                )
            }
            AppError::Unauthenticated { code, message } => Problem::new(code, message),
            AppError::Forbidden(m) => Problem::new(ErrorCode::Forbidden, m),
            AppError::Unavailable(m) => {
                tracing::warn!(cause = %m, "store unavailable");
                Problem::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the service is briefly unavailable",
                )
            }
            AppError::Internal(m) => {
                tracing::error!(cause = %m, "internal error");
                Problem::internal()
            }
        }
    }
}

impl From<billing_domain::kernel::error::ValidationError> for Problem {
    fn from(v: billing_domain::kernel::error::ValidationError) -> Self {
        Problem::invalid(v.code, v.param, v.message)
    }
}

/// Handlers return `ApiResult<T>`: the value, or the problem that explains why not.
pub type ApiResult<T> = Result<T, Problem>;
