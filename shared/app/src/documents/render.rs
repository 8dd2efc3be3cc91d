//! The document pipeline: an `invoice.finalized` or `credit_note.created` event becomes a
//! PDF in the object store and a record of it next to the invoice or credit note.
//!
//! Exactly once, without a lock: the record is looked for first (a redelivered event is a
//! read and nothing more); the PDF is rendered from the stored record and branding, which
//! gives the same bytes each time, and stored under a key naming its SHA-256 (a second put
//! rewrites the same object); the record is then created only if absent, so a render that
//! races another writes no second record, and the loser reports the winner's.
//!
//! The branding's logo is read from the object store and drawn at the top of the first
//! page; a logo missing from the bucket or that does not decode leaves the document without
//! it and a warning in the log, never an undelivered invoice.

use std::sync::Arc;

use billing_domain::billing::invoice::InvoiceStatus;
use billing_domain::documents::branding::Branding;
use billing_domain::documents::stored::RenderedPdf;
use billing_domain::documents::stored::{DocumentKind, StoredDocument};
use billing_domain::events::types::EventType;
use billing_domain::kernel::ids::{CreditNoteId, InvoiceId, TenantId};
use serde::Deserialize;

use super::DocumentsPorts;
use crate::kernel::{AppError, Clocks};
use crate::ports::{DocumentRenderer, ObjectStore, StoreError};

/// One message of the documents queue: the event as EventBridge puts it on the queue
/// (`detail` is the bus's envelope: the tenant and the webhook envelope of the event).
#[derive(Debug, Clone, Deserialize)]
pub struct DocumentJob {
    pub detail: JobDetail,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobDetail {
    pub tenant_id: TenantId,
    #[serde(rename = "type")]
    pub event_type: String,
    pub livemode: bool,
    pub resource_id: String,
}

impl DocumentJob {
    /// Deliveries of one record's events run one after the other.
    pub fn batch_key(&self) -> String {
        self.detail.resource_id.clone()
    }
}

/// What handling a job came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// Rendered, stored and recorded now.
    New(StoredDocument),
    /// The record was there already (a redelivery, or a render that raced this one).
    Existing(StoredDocument),
    /// Nothing to draw: an event of another type, an unknown record, a draft.
    Skipped(&'static str),
}

#[derive(Clone)]
pub struct DocumentPipeline {
    store: Arc<dyn DocumentsPorts>,
    clocks: Clocks,
    objects: Arc<dyn ObjectStore>,
    renderer: Arc<dyn DocumentRenderer>,
}

impl DocumentPipeline {
    pub(super) fn new(
        store: Arc<dyn DocumentsPorts>,
        clocks: Clocks,
        objects: Arc<dyn ObjectStore>,
        renderer: Arc<dyn DocumentRenderer>,
    ) -> Self {
        Self {
            store,
            clocks,
            objects,
            renderer,
        }
    }

    /// Handles one queue message.
    pub async fn handle(&self, job: &DocumentJob) -> Result<Rendered, AppError> {
        let d = &job.detail;
        match EventType::parse(&d.event_type) {
            Some(EventType::InvoiceFinalized) => {
                let Ok(id) = InvoiceId::parse(&d.resource_id, "resource_id") else {
                    return Ok(Rendered::Skipped("not an invoice id"));
                };
                self.invoice(d.tenant_id, d.livemode, id).await
            }
            Some(EventType::CreditNoteCreated) => {
                let Ok(id) = CreditNoteId::parse(&d.resource_id, "resource_id") else {
                    return Ok(Rendered::Skipped("not a credit note id"));
                };
                self.credit_note(d.tenant_id, d.livemode, id).await
            }
            _ => Ok(Rendered::Skipped("an event no document is drawn for")),
        }
    }

    /// Renders and records the invoice's PDF unless it has one.
    pub async fn invoice(
        &self,
        tenant: TenantId,
        livemode: bool,
        id: InvoiceId,
    ) -> Result<Rendered, AppError> {
        let of = id.to_string();
        if let Some(existing) = self.store.document(tenant, &of).await? {
            return Ok(Rendered::Existing(existing));
        }
        let Some(invoice) = self.store.get_invoice(tenant, id).await? else {
            return Ok(Rendered::Skipped("no such invoice"));
        };
        if invoice.status == InvoiceStatus::Draft {
            return Ok(Rendered::Skipped("a draft invoice"));
        }
        let branding = self.store.branding(tenant).await?.unwrap_or_default();
        let logo = self.logo(tenant, &branding).await?;
        let pdf = self
            .renderer
            .invoice(&invoice, &branding, logo.as_deref())
            .map_err(AppError::Internal)?;
        self.keep(tenant, livemode, DocumentKind::Invoice, &of, pdf)
            .await
    }

    /// Renders and records the credit note's PDF unless it has one.
    pub async fn credit_note(
        &self,
        tenant: TenantId,
        livemode: bool,
        id: CreditNoteId,
    ) -> Result<Rendered, AppError> {
        let of = id.to_string();
        if let Some(existing) = self.store.document(tenant, &of).await? {
            return Ok(Rendered::Existing(existing));
        }
        let Some(note) = self.store.get_credit_note(tenant, id).await? else {
            return Ok(Rendered::Skipped("no such credit note"));
        };
        let Some(invoice) = self.store.get_invoice(tenant, note.invoice_id).await? else {
            return Ok(Rendered::Skipped("the credited invoice is gone"));
        };
        let branding = self.store.branding(tenant).await?.unwrap_or_default();
        let logo = self.logo(tenant, &branding).await?;
        let pdf = self
            .renderer
            .credit_note(&note, &invoice, &branding, logo.as_deref())
            .map_err(AppError::Internal)?;
        self.keep(tenant, livemode, DocumentKind::CreditNote, &of, pdf)
            .await
    }

    /// The file of the branding's logo. One the bucket does not have is drawn without (and
    /// warned about); a failing read is an error, so the delivery is retried.
    async fn logo(
        &self,
        tenant: TenantId,
        branding: &Branding,
    ) -> Result<Option<Vec<u8>>, AppError> {
        let Some(logo) = &branding.logo else {
            return Ok(None);
        };
        let bytes = self.objects.get(&logo.key).await?;
        if bytes.is_none() {
            tracing::warn!(%tenant, key = %logo.key, "the branding's logo is not in the bucket; the document is drawn without it");
        }
        Ok(bytes)
    }

    async fn keep(
        &self,
        tenant: TenantId,
        livemode: bool,
        kind: DocumentKind,
        of: &str,
        pdf: RenderedPdf,
    ) -> Result<Rendered, AppError> {
        if let Some(why) = &pdf.logo_skipped {
            tracing::warn!(%tenant, of, why, "the logo is not drawn on the document");
        }
        let bytes = pdf.bytes;
        let document =
            StoredDocument::of_bytes(tenant, livemode, kind, of, &bytes, self.clocks.now());
        // The object first: a record never names bytes that are not there.
        self.objects
            .put(&document.key, bytes, "application/pdf")
            .await?;
        match self.store.record_document(tenant, &document).await {
            Ok(()) => Ok(Rendered::New(document)),
            Err(StoreError::AlreadyExists { .. }) => self
                .store
                .document(tenant, of)
                .await?
                .map(Rendered::Existing)
                .ok_or_else(|| AppError::Internal(format!("the record of {of} vanished"))),
            Err(e) => Err(e.into()),
        }
    }
}
