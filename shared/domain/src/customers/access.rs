//! Who may do what: API keys, their roles, and the one role matrix every route obeys.
//!
//! An API key reads `sk_test_<tenant ulid>_<secret>` (or `sk_live_…`). Carrying the tenant
//! in the key lets authentication find the key's record under its tenant with one read,
//! so every stored key still starts with the tenant. Only the SHA-256 of the whole key is
//! stored; the secret is shown once, at creation.

use crate::kernel::error::ErrorCode;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ulid::Ulid;

use crate::customers::limits;
use crate::customers::tenant::TenantMode;
use crate::kernel::error::ValidationError;
use crate::kernel::ids::{ApiKeyId, TenantId};
use crate::kernel::time::supported;

/// The seeds' Super Admin, Billing Admin, Support Rep and Finance Viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    BillingAdmin,
    Support,
    FinanceViewer,
}

/// What a route needs. Every route declares exactly one, as the scope of its OpenAPI
/// security requirement (`write_billing`), which is read back with `Deserialize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read any billing data of the tenant.
    Read,
    /// Create and edit customer accounts.
    WriteAccounts,
    /// Change catalog, subscriptions, invoices and payments.
    WriteBilling,
    /// Create, list and revoke API keys.
    ManageApiKeys,
}

impl Role {
    /// The role matrix:
    ///
    /// | role            | read | write accounts | write billing | manage keys |
    /// |-----------------|------|----------------|---------------|-------------|
    /// | admin           | yes  | yes            | yes           | yes         |
    /// | billing_admin   | yes  | yes            | yes           | no          |
    /// | support         | yes  | yes            | no            | no          |
    /// | finance_viewer  | yes  | no             | no            | no          |
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::BillingAdmin => matches!(permission, Read | WriteAccounts | WriteBilling),
            Role::Support => matches!(permission, Read | WriteAccounts),
            Role::FinanceViewer => matches!(permission, Read),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::BillingAdmin => "billing_admin",
            Role::Support => "support",
            Role::FinanceViewer => "finance_viewer",
        }
    }
}

/// A stored API key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub role: Role,
    pub name: Option<String>,
    pub livemode: bool,
    /// Hex SHA-256 of the full key text.
    pub secret_hash: String,
    /// Last four characters of the key, for recognising it in a list.
    pub last4: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// Requests an hour this key may make, instead of the tenant's per-key limit.
    #[serde(default)]
    pub rate_limit_per_hour: Option<u32>,
    /// When the key stops working: set at creation, or by a roll (the overlap's end).
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// When the key was last used, to the minute ([`LAST_USED_PRECISION`]).
    #[serde(default)]
    pub last_used_at: Option<Timestamp>,
}

/// How stale a key's `last_used_at` may be: it is written at most once in this time, so
/// most requests cost no write.
pub const LAST_USED_PRECISION: SignedDuration = SignedDuration::from_secs(60);

/// What a new key is made with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "finance_viewer", "name": "month-end reporting", "expires_at": "2027-12-31T00:00:00Z"}))]
pub struct NewApiKey {
    pub role: Role,
    /// At most 100 characters.
    pub name: Option<String>,
    /// Requests an hour for this key, instead of the tenant's per-key limit.
    pub rate_limit_per_hour: Option<u64>,
    /// When the key stops working (then 401 `api_key_expired`); in the future. Never, if absent.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
}

/// A [`NewApiKey`] that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTerms {
    pub role: Role,
    pub name: Option<String>,
    pub rate_limit_per_hour: Option<u32>,
    pub expires_at: Option<Timestamp>,
}

impl NewApiKey {
    pub fn new(role: Role, name: Option<&str>) -> Self {
        Self {
            role,
            name: name.map(str::to_owned),
            rate_limit_per_hour: None,
            expires_at: None,
        }
    }

    pub fn validate(&self, now: Timestamp) -> Result<KeyTerms, ValidationError> {
        let expires_at = match self.expires_at {
            Some(at) if supported(at, "expires_at")? <= now => {
                return Err(ValidationError::new(
                    ErrorCode::InvalidExpiresAt,
                    "expires_at",
                    "a key's expires_at must be in the future",
                ))
            }
            other => other,
        };
        Ok(KeyTerms {
            role: self.role,
            name: validate_key_name(self.name.as_deref())?,
            rate_limit_per_hour: self
                .rate_limit_per_hour
                .map(|n| limits::limit(n, "rate_limit_per_hour"))
                .transpose()?,
            expires_at,
        })
    }
}

impl ApiKey {
    /// `sk_test_…abcd`: enough to recognise a key, nothing to use it with.
    pub fn masked(&self) -> String {
        let mode = if self.livemode { "live" } else { "test" };
        format!("sk_{mode}_…{}", self.last4)
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// Why the key no longer works at `now`, if it does not: revoked, or past `expires_at`.
    pub fn refusal(&self, now: Timestamp) -> Option<ErrorCode> {
        if self.is_revoked() {
            Some(ErrorCode::ApiKeyRevoked)
        } else if self.expires_at.is_some_and(|at| at <= now) {
            Some(ErrorCode::ApiKeyExpired)
        } else {
            None
        }
    }

    /// Whether a use at `now` should be written: none yet, or the last one written is
    /// [`LAST_USED_PRECISION`] old.
    pub fn use_is_news(&self, now: Timestamp) -> bool {
        self.last_used_at
            .is_none_or(|last| now.duration_since(last) >= LAST_USED_PRECISION)
    }

    /// Constant-time comparison of a presented key's hash with the stored one.
    pub fn matches(&self, presented: &PresentedKey) -> bool {
        let a = self.secret_hash.as_bytes();
        let b = presented.secret_hash.as_bytes();
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// A key as it arrives in `Authorization: Bearer …`, already hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey {
    pub tenant_id: TenantId,
    pub livemode: bool,
    pub key_id: ApiKeyId,
    pub secret_hash: String,
}

const SECRET_CHARS: usize = 43;

/// Reads a key's tenant and id out of its text. `None` for anything not shaped like a key.
pub fn parse_key(text: &str) -> Option<PresentedKey> {
    let (livemode, rest) = if let Some(rest) = text.strip_prefix("sk_test_") {
        (false, rest)
    } else if let Some(rest) = text.strip_prefix("sk_live_") {
        (true, rest)
    } else {
        return None;
    };
    let (tenant, secret) = rest.split_at_checked(26)?;
    let secret = secret.strip_prefix('_')?;
    if secret.len() != SECRET_CHARS
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let tenant_id = TenantId::from_ulid(Ulid::from_string(tenant).ok()?);
    let secret_hash = hash_key(text);
    Some(PresentedKey {
        tenant_id,
        livemode,
        key_id: key_id_for_hash(&secret_hash),
        secret_hash,
    })
}

/// Builds the text of a new key from 32 random bytes encoded as 43 url-safe characters.
pub fn format_key(tenant_id: TenantId, mode: TenantMode, secret: &str) -> String {
    let mode = if mode.is_live() { "live" } else { "test" };
    format!("sk_{mode}_{}_{secret}", tenant_id.ulid())
}

pub fn hash_key(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A key's id is derived from its hash, so authentication finds the record with one read
/// and revocation can name the key without ever seeing its secret.
pub fn key_id_for_hash(secret_hash: &str) -> ApiKeyId {
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&secret_hash[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    ApiKeyId::from_ulid(Ulid::from_bytes(bytes))
}

pub fn validate_key_name(name: Option<&str>) -> Result<Option<String>, ValidationError> {
    match name.map(str::trim) {
        None | Some("") => Ok(None),
        Some(n) if n.chars().count() <= 100 => Ok(Some(n.to_owned())),
        Some(_) => Err(ValidationError::new(
            ErrorCode::InvalidName,
            "name",
            "an API key name must be at most 100 characters",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456";

    #[test]
    fn matrix_matches_the_seed_roles() {
        use Permission::*;
        let all = [Read, WriteAccounts, WriteBilling, ManageApiKeys];
        assert!(all.iter().all(|p| Role::Admin.allows(*p)));
        assert!(!Role::BillingAdmin.allows(ManageApiKeys));
        assert!(Role::BillingAdmin.allows(WriteBilling));
        assert!(Role::Support.allows(WriteAccounts));
        assert!(!Role::Support.allows(WriteBilling));
        assert_eq!(
            all.iter()
                .filter(|p| Role::FinanceViewer.allows(**p))
                .count(),
            1
        );
    }

    #[test]
    fn a_formatted_key_parses_back_to_its_tenant_and_id() {
        let tenant = TenantId::from_ulid(Ulid::from_parts(1_700_000_000_000, 7));
        let text = format_key(tenant, TenantMode::Sandbox, SECRET);
        assert!(text.starts_with("sk_test_"));
        let presented = parse_key(&text).unwrap();
        assert_eq!(presented.tenant_id, tenant);
        assert!(!presented.livemode);
        assert_eq!(presented.secret_hash, hash_key(&text));
        assert_eq!(presented.key_id, key_id_for_hash(&presented.secret_hash));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let tenant = TenantId::from_ulid(Ulid::from_parts(1, 7));
        let good = format_key(tenant, TenantMode::Live, SECRET);
        assert!(parse_key(&good).is_some());
        for bad in [
            "",
            "sk_test_",
            "pk_test_whatever",
            &good[..good.len() - 1],
            &format!("{good}x"),
            &good.replacen('_', "-", 3),
        ] {
            assert!(parse_key(bad).is_none(), "{bad}");
        }
    }
}
