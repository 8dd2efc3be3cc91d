//! The `document-renderer` Lambda's handler: each SQS record is one `invoice.finalized` or
//! `credit_note.created` event, as the EventBridge rule put it on the documents queue
//! ([`DocumentJob`]). The PDF is drawn, stored in the documents bucket under a key naming
//! its SHA-256, and recorded once; a redelivery finds the record and does nothing. Records
//! of one invoice or credit note run one after the other; failures come back as batch item
//! failures and, after five receives, go to the dead-letter queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billing_app::documents::render::{DocumentJob, DocumentPipeline, Rendered};
use billing_app::ports::DocumentRenderer;
use billing_aws::sqs_batch::handle_batch;
use billing_domain::billing::invoice::Invoice;
use billing_domain::collection::credit_note::CreditNote;
use billing_domain::documents::branding::Branding;
use billing_domain::documents::stored::RenderedPdf;

/// The renderer port over `billing-documents` (krilla): linked here, never into `api`.
pub struct Pdfs;

impl DocumentRenderer for Pdfs {
    fn invoice(
        &self,
        invoice: &Invoice,
        branding: &Branding,
        logo: Option<&[u8]>,
    ) -> Result<RenderedPdf, String> {
        billing_documents::render_invoice(invoice, branding, logo).map_err(|e| e.to_string())
    }

    fn credit_note(
        &self,
        note: &CreditNote,
        invoice: &Invoice,
        branding: &Branding,
        logo: Option<&[u8]>,
    ) -> Result<RenderedPdf, String> {
        billing_documents::render_credit_note(note, invoice, branding, logo)
            .map_err(|e| e.to_string())
    }
}

pub async fn handle(pipeline: &DocumentPipeline, event: SqsEvent) -> SqsBatchResponse {
    handle_batch(event, DocumentJob::batch_key, |job: DocumentJob| {
        let pipeline = pipeline.clone();
        async move {
            match pipeline.handle(&job).await.map_err(|e| e.to_string())? {
                Rendered::New(doc) => {
                    tracing::info!(of = %doc.of, key = %doc.key, size = doc.size, "document rendered")
                }
                Rendered::Existing(doc) => {
                    tracing::debug!(of = %doc.of, "document already rendered")
                }
                Rendered::Skipped(why) => {
                    tracing::info!(resource = %job.detail.resource_id, why, "no document drawn")
                }
            }
            Ok(())
        }
    })
    .await
}
