//! The one error type for rejected input, shared by every validation in the domain.

/// Input that breaks a rule. `param` names the field at fault (`billing_address.country`,
/// `metadata`, `tiers[1].up_to`) so the API can point the caller at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ValidationError {
    /// Stable, machine-readable reason, e.g. `invalid_email`.
    pub code: &'static str,
    pub param: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(code: &'static str, param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            param: param.into(),
            message: message.into(),
        }
    }

    /// Re-roots the field path under a parent object: `country` → `billing_address.country`.
    pub fn within(mut self, parent: &str) -> Self {
        if !parent.is_empty() {
            self.param = if self.param.is_empty() {
                parent.to_owned()
            } else {
                format!("{parent}.{}", self.param)
            };
        }
        self
    }
}
