use billing_domain::customers::account::AccountChangeError;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::error::ValidationError;

use crate::ports::{GatewayError, StoreError};

/// Why a use case did not do what it was asked. The HTTP layer maps each variant to one
/// status and problem `code`; nothing here knows about HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("no such {resource}: {id}")]
    NotFound { resource: &'static str, id: String },
    /// The request is well-formed but clashes with the current state.
    #[error("{message}")]
    Conflict {
        code: ErrorCode,
        message: String,
        param: Option<&'static str>,
    },
    /// No valid credential: `code` says why (`unauthenticated`, `api_key_expired`, …).
    #[error("{message}")]
    Unauthenticated { code: ErrorCode, message: String },
    #[error("{0}")]
    Forbidden(String),
    /// A transient failure; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    pub fn not_found(resource: &'static str, id: impl ToString) -> Self {
        AppError::NotFound {
            resource,
            id: id.to_string(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::AlreadyExists { entity } => AppError::Conflict {
                code: ErrorCode::AlreadyExists,
                message: format!("the {entity} already exists"),
                param: None,
            },
            StoreError::Duplicate { entity, field } => AppError::Conflict {
                code: ErrorCode::DuplicateValue,
                message: format!("another {entity} already has this {field}"),
                param: Some(field),
            },
            StoreError::VersionConflict { entity } => AppError::Conflict {
                code: ErrorCode::ConcurrentModification,
                message: format!("the {entity} was changed by another request; fetch it and retry"),
                param: None,
            },
            StoreError::Unavailable(m) => AppError::Unavailable(m),
            StoreError::Internal(m) => AppError::Internal(m),
        }
    }
}

impl From<AccountChangeError> for AppError {
    fn from(err: AccountChangeError) -> Self {
        match err {
            AccountChangeError::Invalid(e) => AppError::Invalid(e),
            AccountChangeError::Deleted => AppError::Conflict {
                code: ErrorCode::AccountDeleted,
                message: err.to_string(),
                param: None,
            },
        }
    }
}

/// A gateway that could not answer: the caller may retry.
pub fn gateway_unavailable(err: GatewayError) -> AppError {
    AppError::Unavailable(err.to_string())
}
