//! The one error type for rejected input, shared by every validation in the domain.

use std::borrow::Cow;

/// Input that breaks a rule. `param` names the field at fault (`billing_address.country`,
/// `metadata`, `tiers[1].up_to`) so the API can point the caller at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ValidationError {
    /// Stable, machine-readable reason, e.g. `invalid_email`.
    pub code: &'static str,
    pub param: Cow<'static, str>,
    pub message: String,
}

impl ValidationError {
    pub fn new(
        code: &'static str,
        param: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code,
            param: param.into(),
            message: message.into(),
        }
    }

    /// Re-roots the field path under a parent object: `country` → `billing_address.country`.
    pub fn within(mut self, parent: &str) -> Self {
        self.param = format!("{parent}.{}", self.param).into();
        self
    }
}
