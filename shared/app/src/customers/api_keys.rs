//! API keys: authenticate a presented key, and let admins create, list and revoke keys.

use base64::Engine;
use billing_domain::customers::access::{self, ApiKey, Permission, Role};
use billing_domain::customers::tenant::TenantMode;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{ApiKeyId, TenantId};
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use serde::Serialize;

use super::CustomersService;
use crate::kernel::{change, to_json, AppError, Caller, ChangeSpec};
use crate::ports::{Page, PageRequest};

const ENTITY: &str = "api_key";

/// How long an instance trusts a key it has read: the bound on when a revocation made
/// elsewhere (another instance, `billing-admin`) takes effect here. A revocation through
/// this instance takes effect at once. Every request would otherwise read its key.
pub const KEY_TTL: SignedDuration = SignedDuration::from_secs(60);

/// A newly created key: the only moment its secret is visible.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedKey {
    #[serde(flatten)]
    pub key: ApiKey,
    pub secret: String,
}

/// Generates a key for `tenant` from 32 bytes of OS randomness.
pub fn issue_key(
    tenant_id: TenantId,
    mode: TenantMode,
    role: Role,
    name: Option<String>,
    now: Timestamp,
) -> IssuedKey {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let text = access::format_key(tenant_id, mode, &secret);
    let secret_hash = access::hash_key(&text);
    IssuedKey {
        key: ApiKey {
            id: access::key_id_for_hash(&secret_hash),
            tenant_id,
            role,
            name,
            livemode: mode.is_live(),
            secret_hash,
            last4: text[text.len() - 4..].to_owned(),
            created_at: now,
            revoked_at: None,
        },
        secret: text,
    }
}

impl CustomersService {
    /// Resolves `Authorization: Bearer <key>` to the caller it speaks for.
    pub async fn authenticate(
        &self,
        bearer: &str,
        request_id: Option<String>,
    ) -> Result<Caller, AppError> {
        let unknown = || AppError::Unauthenticated("the API key is not valid".into());
        let presented = access::parse_key(bearer).ok_or_else(unknown)?;
        let id = (presented.tenant_id, presented.key_id);
        let now = self.clocks.now();
        let key = match self.keys.get(&id, now) {
            Some(key) => Some(key),
            None => {
                let key = self
                    .store
                    .get_api_key(presented.tenant_id, presented.key_id)
                    .await?;
                if let Some(key) = &key {
                    self.keys.put(id, key.clone(), now);
                }
                key
            }
        };
        // Checked on every request, cached or not: a wrong secret under a cached id is refused.
        let key = key
            .filter(|k| k.matches(&presented) && k.livemode == presented.livemode)
            .ok_or_else(unknown)?;
        if key.is_revoked() {
            return Err(AppError::Unauthenticated(
                "the API key has been revoked".into(),
            ));
        }
        Ok(Caller::of_key(&key, request_id))
    }

    pub async fn create_api_key(
        &self,
        caller: &Caller,
        role: Role,
        name: Option<&str>,
    ) -> Result<IssuedKey, AppError> {
        caller.require(Permission::ManageApiKeys)?;
        let name = access::validate_key_name(name)?;
        let mode = if caller.livemode {
            TenantMode::Live
        } else {
            TenantMode::Sandbox
        };
        let now = self.clocks.now();
        let issued = issue_key(caller.tenant_id, mode, role, name, now);
        let after = key_json(&issued.key)?;
        let change = change(
            caller,
            now,
            ChangeSpec {
                entity_type: ENTITY,
                entity_id: issued.key.id.to_string(),
                action: AuditAction::Create,
                event_type: Some(EventType::ApiKeyCreated),
                before: None,
                after: &after,
            },
        );
        self.store.insert_api_key(&issued.key, &change).await?;
        Ok(issued)
    }

    pub async fn list_api_keys(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>, AppError> {
        caller.require(Permission::ManageApiKeys)?;
        Ok(self.store.list_api_keys(caller.tenant_id, page).await?)
    }

    pub async fn revoke_api_key(&self, caller: &Caller, id: ApiKeyId) -> Result<ApiKey, AppError> {
        caller.require(Permission::ManageApiKeys)?;
        let current = self
            .store
            .get_api_key(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found(ENTITY, id))?;
        if current.is_revoked() {
            return Err(AppError::Conflict {
                code: ErrorCode::AlreadyRevoked,
                message: "the API key is already revoked".into(),
                param: None,
            });
        }
        if caller.key_id == Some(id) {
            return Err(AppError::Conflict {
                code: ErrorCode::CannotRevokeOwnKey,
                message: "a key cannot revoke itself; use another admin key".into(),
                param: None,
            });
        }
        let now = self.clocks.now();
        let revoked = ApiKey {
            revoked_at: Some(now),
            ..current.clone()
        };
        let (before, after) = (key_json(&current)?, key_json(&revoked)?);
        let change = change(
            caller,
            now,
            ChangeSpec {
                entity_type: ENTITY,
                entity_id: id.to_string(),
                action: AuditAction::Revoke,
                event_type: Some(EventType::ApiKeyRevoked),
                before: Some(&before),
                after: &after,
            },
        );
        self.store.revoke_api_key(&revoked, &change).await?;
        self.keys.forget(&(caller.tenant_id, id));
        Ok(revoked)
    }
}

/// A key as its audit record and events show it: without the secret's hash, which
/// webhooks and EventBridge would otherwise carry out of the platform.
fn key_json(key: &ApiKey) -> Result<serde_json::Value, AppError> {
    let mut json = to_json(key)?;
    if let Some(fields) = json.as_object_mut() {
        fields.remove("secret_hash");
    }
    Ok(json)
}
