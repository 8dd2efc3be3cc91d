//! Documents: the tenant's branding, which the invoice and credit note PDFs are rendered
//! with. Depends on the kernel only.

use std::sync::Arc;

use billing_domain::customers::access::Permission;
use billing_domain::documents::branding::{Branding, BrandingPatch};
use billing_domain::events::record::AuditAction;
use billing_domain::kernel::error::ErrorCode;

use crate::kernel::{change, to_json, until_committed, AppError, Caller, ChangeSpec, Clocks};
use crate::ports::{BrandingStore, StoreError};

/// What the documents service reads and writes.
pub trait DocumentsPorts: BrandingStore {}

impl<T> DocumentsPorts for T where T: BrandingStore {}

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
                    let change = change(
                        caller,
                        now,
                        ChangeSpec {
                            entity_type: "branding",
                            entity_id: tenant.to_string(),
                            action: if before.is_some() {
                                AuditAction::Update
                            } else {
                                AuditAction::Create
                            },
                            event_type: None,
                            before: before.as_ref(),
                            after: &after,
                        },
                    );
                    match self.store.save_branding(tenant, &next, &change).await {
                        Ok(()) => Ok(Some(next)),
                        Err(StoreError::VersionConflict { .. }) => Ok(None),
                        Err(e) => Err(e.into()),
                    }
                }
            },
            || AppError::Conflict {
                code: ErrorCode::ConcurrentModification,
                message: "the branding kept changing under this request; retry".into(),
                param: None,
            },
        )
        .await
    }
}
