//! Tenants: the companies that use the platform. Each is a wall: nothing crosses it.

use crate::kernel::error::ErrorCode;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::kernel::error::ValidationError;
use crate::kernel::ids::TenantId;

/// Sandbox tenants use test cards and may own test clocks; live tenants move real money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantMode {
    Sandbox,
    Live,
}

impl TenantMode {
    pub fn is_live(self) -> bool {
        self == TenantMode::Live
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub mode: TenantMode,
    pub created_at: Timestamp,
}

pub const MAX_NAME_CHARS: usize = 200;

pub fn validate_name(name: &str) -> Result<String, ValidationError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ValidationError::new(
            ErrorCode::InvalidName,
            "name",
            format!("a tenant name must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name.to_owned())
}
