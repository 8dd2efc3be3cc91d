//! The `billing-worker` Lambda's handler: each SQS record is one [`BillingJob`]. A batch's
//! jobs are grouped by tenant; each tenant's subscriptions are drafted together (their
//! first steps in a few writes), then a finalize job numbers the tenant's drafts; a
//! test-clock job finishes that clock's advance; a credit-expiry job moves what expired out
//! of an account's balance; a simulation job prices the next chunk of a catalog change
//! simulation and queues the one after. The FIFO queue's message groups (one per
//! subscription, one per tenant's finalizer) let many workers draft one tenant at once
//! while its numbering stays serial. Every step's invoice id is derived from its
//! subscription and period, so a duplicate delivery or a concurrent worker bills nothing
//! twice. Failed records are reported as batch item failures and come back.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billing_app::ports::BillingJob;
use billing_app::App;
use billing_aws::sqs_batch::handle_batch_in_groups;

pub async fn handle(app: &App, event: SqsEvent) -> SqsBatchResponse {
    handle_batch_in_groups(
        event,
        BillingJob::tenant,
        |tenant, jobs: Vec<BillingJob>| {
            let app = app.clone();
            async move {
                app.billing
                    .run_billing_jobs(tenant, &jobs)
                    .await
                    .into_iter()
                    .map(|result| result.map_err(|e| e.to_string()))
                    .collect()
            }
        },
    )
    .await
}
