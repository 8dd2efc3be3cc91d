//! Documents: the tenant's branding, which the invoice and credit note PDFs and the
//! customer emails are rendered with; the tenant's email settings (which emails go out, and
//! where replies go); the PDFs' downloads; and the pipeline that renders them off the
//! request path ([`render`]). Depends on the kernel only; the emails themselves are
//! collection's notices.

pub mod render;

use std::sync::Arc;

use billing_domain::billing::invoice::{Invoice, InvoiceStatus};
use billing_domain::customers::access::Permission;
use billing_domain::documents::branding::{Branding, BrandingPatch};
use billing_domain::documents::email::{EmailSettings, EmailSettingsPatch};
use billing_domain::documents::logo::Logo;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{CreditNoteId, InvoiceId, TenantId};
use jiff::Timestamp;
use serde_json::Value;

use crate::kernel::{change, to_json, until_committed, AppError, Caller, ChangeSpec, Clocks};
use crate::ports::{
    BrandingStore, Change, DocumentRenderer, DocumentStore, EmailSettingsStore, InvoiceStore,
    ObjectStore, PaymentStore, StoreError,
};

/// What the documents service reads and writes.
pub trait DocumentsPorts:
    BrandingStore + EmailSettingsStore + DocumentStore + InvoiceStore + PaymentStore
{
}

impl<T> DocumentsPorts for T where
    T: BrandingStore + EmailSettingsStore + DocumentStore + InvoiceStore + PaymentStore
{
}

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

/// How a PDF download is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Download {
    /// The file itself.
    File { bytes: Vec<u8>, file_name: String },
    /// A short-lived link to the object (S3 presigned GET), when the store is set so.
    Link(String),
}

#[derive(Clone)]
pub struct DocumentsService {
    store: Arc<dyn DocumentsPorts>,
    clocks: Clocks,
    /// Where rendered PDFs are kept; `None` where nothing renders them (tools), so every
    /// download answers `document_not_ready`.
    objects: Option<Arc<dyn ObjectStore>>,
}

impl DocumentsService {
    pub(crate) fn new(
        store: Arc<dyn DocumentsPorts>,
        clocks: Clocks,
        objects: Option<Arc<dyn ObjectStore>>,
    ) -> Self {
        Self {
            store,
            clocks,
            objects,
        }
    }

    /// The pipeline that renders with `renderer` into `objects` (built only where the
    /// renderer is linked: the `document-renderer` function, the local runner, tests).
    pub fn pipeline(
        &self,
        objects: Arc<dyn ObjectStore>,
        renderer: Arc<dyn DocumentRenderer>,
    ) -> render::DocumentPipeline {
        render::DocumentPipeline::new(self.store.clone(), self.clocks.clone(), objects, renderer)
    }

    /// `GET /v1/invoices/{id}/pdf`.
    pub async fn invoice_pdf(&self, caller: &Caller, id: InvoiceId) -> Result<Download, AppError> {
        caller.require(Permission::Read)?;
        let invoice = self
            .store
            .get_invoice(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("invoice", id))?;
        self.invoice_download(caller.tenant_id, &invoice).await
    }

    /// The PDF of an invoice already read (also the hosted page's download).
    pub(crate) async fn invoice_download(
        &self,
        tenant: TenantId,
        invoice: &Invoice,
    ) -> Result<Download, AppError> {
        if invoice.status == InvoiceStatus::Draft {
            return Err(AppError::Conflict {
                code: ErrorCode::InvoiceNotFinalized,
                message: "a draft invoice has no PDF; finalize it first".into(),
                param: None,
            });
        }
        let id = invoice.id.to_string();
        self.download(tenant, &id, invoice.number.as_deref().unwrap_or(&id))
            .await
    }

    /// `GET /v1/credit-notes/{id}/pdf`.
    pub async fn credit_note_pdf(
        &self,
        caller: &Caller,
        id: CreditNoteId,
    ) -> Result<Download, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_credit_note(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("credit note", id))?;
        let id = id.to_string();
        self.download(caller.tenant_id, &id, &id).await
    }

    async fn download(&self, tenant: TenantId, of: &str, name: &str) -> Result<Download, AppError> {
        let not_ready = || AppError::Conflict {
            code: ErrorCode::DocumentNotReady,
            message: format!("the PDF of {of} is not rendered yet"),
            param: None,
        };
        let (Some(objects), Some(document)) =
            (&self.objects, self.store.document(tenant, of).await?)
        else {
            return Err(not_ready());
        };
        let file_name = document.file_name(name);
        if let Some(link) = objects.download_link(&document.key, &file_name).await? {
            return Ok(Download::Link(link));
        }
        let bytes = objects.get(&document.key).await?.ok_or_else(|| {
            AppError::Internal(format!("the recorded PDF {} is missing", document.key))
        })?;
        Ok(Download::File { bytes, file_name })
    }

    /// The tenant's branding; the defaults (version 0) until it sets any.
    pub async fn branding(&self, caller: &Caller) -> Result<Branding, AppError> {
        caller.require(Permission::Read)?;
        self.tenant_branding(caller.tenant_id).await
    }

    /// The same without a caller: what the hosted page shows.
    pub(crate) async fn tenant_branding(&self, tenant: TenantId) -> Result<Branding, AppError> {
        Ok(self.store.branding(tenant).await?.unwrap_or_default())
    }

    /// Applies `patch` to the current branding; a concurrent write makes it apply again to
    /// the newer one.
    pub async fn update_branding(
        &self,
        caller: &Caller,
        patch: BrandingPatch,
    ) -> Result<Branding, AppError> {
        self.write_branding(caller, |current, now| {
            Ok(current.patched(patch.clone(), now)?)
        })
        .await
    }

    /// `PUT /v1/settings/branding/logo`: checks the file, stores it under its hash (a
    /// second upload of the same file writes the same object), then names it in the
    /// branding.
    pub async fn set_logo(
        &self,
        caller: &Caller,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Branding, AppError> {
        caller.require(Permission::WriteBilling)?;
        let logo = Logo::of_upload(caller.tenant_id, content_type, &bytes)?;
        self.objects()?
            .put(&logo.key, bytes, &logo.content_type)
            .await?;
        self.write_branding(caller, |current, now| {
            Ok(current.with_logo(Some(logo.clone()), now))
        })
        .await
    }

    /// `DELETE /v1/settings/branding/logo`: the branding names no logo any more (the object
    /// stays: it is content-addressed and a re-upload reuses it).
    pub async fn delete_logo(&self, caller: &Caller) -> Result<Branding, AppError> {
        self.write_branding(caller, |current, now| Ok(current.with_logo(None, now)))
            .await
    }

    /// The tenant's logo file and its content type, if it has one (the hosted page's).
    pub(crate) async fn logo_file(
        &self,
        tenant: TenantId,
    ) -> Result<Option<(Vec<u8>, String)>, AppError> {
        let Some(logo) = self.tenant_branding(tenant).await?.logo else {
            return Ok(None);
        };
        let bytes = self.objects()?.get(&logo.key).await?.ok_or_else(|| {
            AppError::Internal(format!("the recorded logo {} is missing", logo.key))
        })?;
        Ok(Some((bytes, logo.content_type)))
    }

    fn objects(&self) -> Result<&Arc<dyn ObjectStore>, AppError> {
        self.objects
            .as_ref()
            .ok_or_else(|| AppError::Unavailable("this deployment keeps no objects".into()))
    }

    /// Writes the branding `next` makes of the current one (audited, version-checked); a
    /// concurrent write makes it apply again to the newer one.
    async fn write_branding(
        &self,
        caller: &Caller,
        next: impl Fn(&Branding, Timestamp) -> Result<Branding, AppError>,
    ) -> Result<Branding, AppError> {
        caller.require(Permission::WriteBilling)?;
        let tenant = caller.tenant_id;
        let next = &next;
        until_committed(
            || async move {
                let stored = self.store.branding(tenant).await?;
                let current = stored.clone().unwrap_or_default();
                let now = self.clocks.now();
                let next = next(&current, now)?;
                let before = stored.as_ref().map(to_json).transpose()?;
                let after = to_json(&next)?;
                let change =
                    settings_change(caller, now, "branding", None, before.as_ref(), &after);
                match self.store.save_branding(tenant, &next, &change).await {
                    Ok(()) => Ok(Some(next)),
                    Err(StoreError::VersionConflict { .. }) => Ok(None),
                    Err(e) => Err(e.into()),
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
