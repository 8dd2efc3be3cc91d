//! Documents: the tenant's branding, which the invoice and credit note PDFs and the
//! customer emails are rendered with, and the tenant's email settings (which emails go
//! out, and where replies go). Depends on the kernel only; the emails themselves are
//! collection's notices.

use std::sync::Arc;

use billing_domain::customers::access::Permission;
use billing_domain::documents::branding::{Branding, BrandingPatch};
use billing_domain::documents::email::{EmailSettings, EmailSettingsPatch};
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use jiff::Timestamp;
use serde_json::Value;

use crate::kernel::{change, to_json, until_committed, AppError, Caller, ChangeSpec, Clocks};
use crate::ports::{BrandingStore, Change, EmailSettingsStore, StoreError};

/// What the documents service reads and writes.
pub trait DocumentsPorts: BrandingStore + EmailSettingsStore {}

impl<T> DocumentsPorts for T where T: BrandingStore + EmailSettingsStore {}

/// The change that writes one of the tenant's settings documents (created by its first
/// write).
fn settings_change(
    caller: &Caller,
    now: Timestamp,
    entity_type: &'static str,
    event_type: Option<EventType>,
    before: Option<&Value>,
    after: &Value,
) -> Change {
    change(
        caller,
        now,
        ChangeSpec {
            entity_type,
            entity_id: caller.tenant_id.to_string(),
            action: if before.is_some() {
                AuditAction::Update
            } else {
                AuditAction::Create
            },
            event_type,
            before,
            after,
        },
    )
}

fn busy(what: &str) -> AppError {
    AppError::Conflict {
        code: ErrorCode::ConcurrentModification,
        message: format!("the {what} kept changing under this request; retry"),
        param: None,
    }
}

#[derive(Clone)]
pub struct DocumentsService {
    store: Arc<dyn DocumentsPorts>,
    clocks: Clocks,
}

impl DocumentsService {
    pub(crate) fn new(store: Arc<dyn DocumentsPorts>, clocks: Clocks) -> Self {
        Self { store, clocks }
    }

    /// The tenant's branding; the defaults (version 0) until it sets any.
    pub async fn branding(&self, caller: &Caller) -> Result<Branding, AppError> {
        caller.require(Permission::Read)?;
        Ok(self
            .store
            .branding(caller.tenant_id)
            .await?
            .unwrap_or_default())
    }

    /// Applies `patch` to the current branding; a concurrent write makes it apply again to
    /// the newer one.
    pub async fn update_branding(
        &self,
        caller: &Caller,
        patch: BrandingPatch,
    ) -> Result<Branding, AppError> {
        caller.require(Permission::WriteBilling)?;
        let tenant = caller.tenant_id;
        until_committed(
            || {
                let patch = patch.clone();
                async move {
                    let stored = self.store.branding(tenant).await?;
                    let current = stored.clone().unwrap_or_default();
                    let now = self.clocks.now();
                    let next = current.patched(patch, now)?;
                    let before = stored.as_ref().map(to_json).transpose()?;
                    let after = to_json(&next)?;
                    let change =
                        settings_change(caller, now, "branding", None, before.as_ref(), &after);
                    match self.store.save_branding(tenant, &next, &change).await {
                        Ok(()) => Ok(Some(next)),
                        Err(StoreError::VersionConflict { .. }) => Ok(None),
                        Err(e) => Err(e.into()),
                    }
                }
            },
            || busy("branding"),
        )
        .await
    }

    /// The tenant's email settings; the defaults (every kind on, version 0) until it sets
    /// any.
    pub async fn email_settings(&self, caller: &Caller) -> Result<EmailSettings, AppError> {
        caller.require(Permission::Read)?;
        Ok(self
            .store
            .email_settings(caller.tenant_id)
            .await?
            .unwrap_or_default())
    }

    /// Applies `patch` to the current email settings (`email_settings.updated`); a
    /// concurrent write makes it apply again to the newer ones.
    pub async fn update_email_settings(
        &self,
        caller: &Caller,
        patch: EmailSettingsPatch,
    ) -> Result<EmailSettings, AppError> {
        caller.require(Permission::WriteBilling)?;
        let tenant = caller.tenant_id;
        until_committed(
            || {
                let patch = patch.clone();
                async move {
                    let stored = self.store.email_settings(tenant).await?;
                    let current = stored.clone().unwrap_or_default();
                    let now = self.clocks.now();
                    let next = current.patched(patch, now)?;
                    let before = stored.as_ref().map(to_json).transpose()?;
                    let after = to_json(&next)?;
                    let change = settings_change(
                        caller,
                        now,
                        "email_settings",
                        Some(EventType::EmailSettingsUpdated),
                        before.as_ref(),
                        &after,
                    );
                    match self.store.save_email_settings(tenant, &next, &change).await {
                        Ok(()) => Ok(Some(next)),
                        Err(StoreError::VersionConflict { .. }) => Ok(None),
                        Err(e) => Err(e.into()),
                    }
                }
            },
            || busy("email settings"),
        )
        .await
    }
}
