use billing_domain::customers::access::{ApiKey, Permission, Role};
use billing_domain::customers::staff::StaffUser;
use billing_domain::events::record::Actor;
use billing_domain::kernel::ids::{ApiKeyId, TenantId};

use super::AppError;

/// The authenticated caller of a use case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub livemode: bool,
    pub key_id: Option<ApiKeyId>,
    pub role: Role,
    /// The key's own hourly limit, when it has one (else the tenant's per-key limit).
    pub rate_limit_per_hour: Option<u32>,
    pub request_id: Option<String>,
    /// A staff user signed in with their identity provider's token (no key then).
    pub user: Option<StaffUser>,
}

impl Caller {
    /// Who presents `key`.
    pub fn of_key(key: &ApiKey, request_id: Option<String>) -> Self {
        Self {
            tenant_id: key.tenant_id,
            livemode: key.livemode,
            key_id: Some(key.id),
            role: key.role,
            rate_limit_per_hour: key.rate_limit_per_hour,
            request_id,
            user: None,
        }
    }

    /// A staff `user` of `tenant` signed in with `role`.
    pub fn of_staff(
        tenant_id: TenantId,
        livemode: bool,
        user: StaffUser,
        role: Role,
        request_id: Option<String>,
    ) -> Self {
        Self {
            tenant_id,
            livemode,
            key_id: None,
            role,
            rate_limit_per_hour: None,
            request_id,
            user: Some(user),
        }
    }

    /// Whose count a request of this caller is counted in: its key's, or its user's
    /// (under the tenant's per-key limit).
    pub fn rate_subject(&self) -> String {
        match (self.key_id, &self.user) {
            (Some(key), _) => key.to_string(),
            (None, Some(user)) => format!("user:{}", user.subject),
            (None, None) => "platform".to_owned(),
        }
    }

    /// Neither a key nor a signed-in user: the platform acting by itself or an operator tool.
    pub fn is_system(&self) -> bool {
        self.key_id.is_none() && self.user.is_none()
    }

    pub fn require(&self, permission: Permission) -> Result<(), AppError> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "the {} role may not do this",
                self.role.as_str()
            )))
        }
    }

    pub(crate) fn actor(&self) -> Actor {
        Actor {
            key_id: self.key_id,
            role: Some(self.role),
            subject: self.user.as_ref().map(|u| u.subject.clone()),
            email: self.user.as_ref().and_then(|u| u.email.clone()),
            via: if self.is_system() {
                "billing-admin"
            } else {
                "api"
            }
            .to_owned(),
        }
    }
}

/// The caller for changes the platform makes by itself (a lifecycle step, a payment
/// attempt, disabling a failing endpoint).
pub fn system_caller(tenant_id: TenantId, livemode: bool) -> Caller {
    Caller {
        tenant_id,
        livemode,
        key_id: None,
        role: Role::Admin,
        rate_limit_per_hour: None,
        request_id: None,
        user: None,
    }
}
