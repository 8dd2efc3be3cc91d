//! Tenants are created by the operator (the `billing-admin` tool), never over the API.

use billing_domain::customers::access::{KeyTerms, Role};
use billing_domain::customers::tenant::{self, Tenant, TenantMode};
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::TenantId;

use super::api_keys::{issue_key, IssuedKey};
use super::CustomersService;
use crate::kernel::{new_ulid, AppError};

impl CustomersService {
    /// Creates a tenant and its first admin key; the key's secret is returned once.
    pub async fn create_tenant(
        &self,
        name: &str,
        mode: TenantMode,
    ) -> Result<(Tenant, IssuedKey), AppError> {
        let now = self.clocks.now();
        let tenant = Tenant {
            id: TenantId::from_ulid(new_ulid()),
            name: tenant::validate_name(name)?,
            mode,
            created_at: now,
        };
        let terms = KeyTerms {
            role: Role::Admin,
            name: Some("first admin key".into()),
            rate_limit_per_hour: None,
            expires_at: None,
        };
        let issued = issue_key(tenant.id, mode, terms, now);
        self.store.create_tenant(&tenant, &issued.key).await?;
        Ok((tenant, issued))
    }
}

impl CustomersService {
    /// Makes sure the tenant that `key_text` belongs to exists with that key as an admin
    /// key. Running it again changes nothing, so a developer keeps one key across runs.
    pub async fn ensure_tenant_with_key(
        &self,
        name: &str,
        key_text: &str,
    ) -> Result<Tenant, AppError> {
        let presented = billing_domain::customers::access::parse_key(key_text).ok_or_else(|| {
            AppError::Invalid(billing_domain::kernel::error::ValidationError::new(
                ErrorCode::InvalidApiKey,
                "key",
                "expected an API key of the form sk_test_<26-character tenant id>_<43-character secret>",
            ))
        })?;
        if let Some(existing) = self.store.get_tenant(presented.tenant_id).await? {
            return Ok(existing);
        }
        let mode = if presented.livemode {
            TenantMode::Live
        } else {
            TenantMode::Sandbox
        };
        let now = self.clocks.now();
        let tenant = Tenant {
            id: presented.tenant_id,
            name: tenant::validate_name(name)?,
            mode,
            created_at: now,
        };
        let key = billing_domain::customers::access::ApiKey {
            id: presented.key_id,
            tenant_id: tenant.id,
            role: Role::Admin,
            name: Some("development key".into()),
            livemode: presented.livemode,
            secret_hash: presented.secret_hash,
            last4: key_text[key_text.len() - 4..].to_owned(),
            created_at: now,
            revoked_at: None,
            rate_limit_per_hour: None,
            expires_at: None,
            last_used_at: None,
        };
        self.store.create_tenant(&tenant, &key).await?;
        Ok(tenant)
    }
}
