//! The document pipeline: an `invoice.finalized` or `credit_note.created` event becomes a
//! PDF in the object store and a record of it next to the invoice or credit note.
//!
//! Exactly once, without a lock: the record is looked for first (a redelivered event is a
//! read and nothing more); the PDF is rendered from the stored record and branding, which
//! gives the same bytes each time, and stored under a key naming its SHA-256 (a second put
//! rewrites the same object); the record is then created only if absent, so a render that
//! races another writes no second record, and the loser reports the winner's.

use std::sync::Arc;

use billing_domain::billing::invoice::InvoiceStatus;
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
        let bytes = self
            .renderer
            .invoice(&invoice, &branding)
            .map_err(AppError::Internal)?;
        self.keep(tenant, livemode, DocumentKind::Invoice, &of, bytes)
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
        let bytes = self
            .renderer
            .credit_note(&note, &invoice, &branding)
            .map_err(AppError::Internal)?;
        self.keep(tenant, livemode, DocumentKind::CreditNote, &of, bytes)
            .await
    }

    async fn keep(
        &self,
        tenant: TenantId,
        livemode: bool,
        kind: DocumentKind,
        of: &str,
        bytes: Vec<u8>,
    ) -> Result<Rendered, AppError> {
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
