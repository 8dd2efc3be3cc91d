//! API keys: authenticate a presented key (and note when it was last used), and let
//! admins create, list, roll and revoke keys.

use base64::Engine;
use billing_domain::customers::access::{self, ApiKey, KeyTerms, NewApiKey, Permission};
use billing_domain::customers::tenant::TenantMode;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{ApiKeyId, TenantId};
use billing_domain::kernel::time::{later, rotation_overlap, DEFAULT_ROTATION_OVERLAP};
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use serde::Serialize;

use super::CustomersService;
use crate::kernel::{change, to_json, AppError, Caller, ChangeSpec};
use crate::ports::{Change, Page, PageRequest};

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
    terms: KeyTerms,
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
            role: terms.role,
            name: terms.name,
            livemode: mode.is_live(),
            secret_hash,
            last4: text[text.len() - 4..].to_owned(),
            created_at: now,
            revoked_at: None,
            rate_limit_per_hour: terms.rate_limit_per_hour,
            expires_at: terms.expires_at,
            last_used_at: None,
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
        let unknown = || AppError::Unauthenticated {
            code: ErrorCode::Unauthenticated,
            message: "the API key is not valid".into(),
        };
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
        match key.refusal(now) {
            Some(code @ ErrorCode::ApiKeyRevoked) => {
                return Err(AppError::Unauthenticated {
                    code,
                    message: "the API key has been revoked".into(),
                })
            }
            Some(code) => {
                return Err(AppError::Unauthenticated {
                    code,
                    message: format!("the API key expired at {}", key.expires_at.unwrap_or(now)),
                })
            }
            None => {}
        }
        if key.use_is_news(now) {
            self.record_use(&key, now).await;
        }
        Ok(Caller::of_key(&key, request_id))
    }

    /// Writes `last_used_at` (to the second) unless another instance wrote it within the
    /// last minute, and remembers it here so this instance writes at most once a minute.
    /// A failed write costs the request nothing: the time is only informative.
    async fn record_use(&self, key: &ApiKey, now: Timestamp) {
        let at = Timestamp::from_second(now.as_second()).unwrap_or(now);
        let stale_since = later(at, -access::LAST_USED_PRECISION);
        if let Err(err) = self
            .store
            .record_key_use(key.tenant_id, key.id, at, stale_since)
            .await
        {
            tracing::warn!(key = %key.id, cause = %err, "could not record the key's use");
            return;
        }
        let used = ApiKey {
            last_used_at: Some(at),
            ..key.clone()
        };
        self.keys.put((key.tenant_id, key.id), used, now);
    }

    pub async fn create_api_key(
        &self,
        caller: &Caller,
        new: &NewApiKey,
    ) -> Result<IssuedKey, AppError> {
        caller.require(Permission::ManageApiKeys)?;
        let now = self.clocks.now();
        let issued = issue_key(
            caller.tenant_id,
            caller_mode(caller),
            new.validate(now)?,
            now,
        );
        let change = creation(caller, &issued.key, now)?;
        self.store.insert_api_key(&issued.key, &change).await?;
        Ok(issued)
    }

    /// Rolls a key: a successor with the same role, name and limit, whose secret is shown
    /// now, while the old key keeps working for `overlap` (default 24 hours, at most 7
    /// days; 0 ends it now), then answers 401 `api_key_expired`.
    pub async fn roll_api_key(
        &self,
        caller: &Caller,
        id: ApiKeyId,
        overlap: Option<SignedDuration>,
    ) -> Result<(IssuedKey, ApiKey), AppError> {
        caller.require(Permission::ManageApiKeys)?;
        let overlap = rotation_overlap(overlap.unwrap_or(DEFAULT_ROTATION_OVERLAP))?;
        let current = self
            .store
            .get_api_key(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found(ENTITY, id))?;
        let now = self.clocks.now();
        if let Some(code) = current.refusal(now) {
            return Err(AppError::Conflict {
                code: if code == ErrorCode::ApiKeyRevoked {
                    ErrorCode::AlreadyRevoked
                } else {
                    ErrorCode::InvalidTransition
                },
                message: "only a key that still works can be rolled".into(),
                param: None,
            });
        }
        let ends = later(now, overlap);
        let retired = ApiKey {
            expires_at: Some(current.expires_at.map_or(ends, |at| at.min(ends))),
            ..current.clone()
        };
        let terms = KeyTerms {
            role: current.role,
            name: current.name.clone(),
            rate_limit_per_hour: current.rate_limit_per_hour,
            expires_at: None,
        };
        let successor = issue_key(caller.tenant_id, caller_mode(caller), terms, now);
        let (before, after) = (key_json(&current)?, key_json(&retired)?);
        let retirement = change(
            caller,
            now,
            ChangeSpec {
                entity_type: ENTITY,
                entity_id: id.to_string(),
                action: AuditAction::Update,
                event_type: Some(EventType::ApiKeyRolled),
                before: Some(&before),
                after: &after,
            },
        );
        let creation = creation(caller, &successor.key, now)?;
        self.store
            .roll_api_key(&retired, &successor.key, &retirement, &creation)
            .await?;
        self.keys.forget(&(caller.tenant_id, id));
        Ok((successor, retired))
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

fn caller_mode(caller: &Caller) -> TenantMode {
    if caller.livemode {
        TenantMode::Live
    } else {
        TenantMode::Sandbox
    }
}

/// The audit record and `api_key.created` of a new key.
fn creation(caller: &Caller, key: &ApiKey, now: Timestamp) -> Result<Change, AppError> {
    let after = key_json(key)?;
    Ok(change(
        caller,
        now,
        ChangeSpec {
            entity_type: ENTITY,
            entity_id: key.id.to_string(),
            action: AuditAction::Create,
            event_type: Some(EventType::ApiKeyCreated),
            before: None,
            after: &after,
        },
    ))
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
