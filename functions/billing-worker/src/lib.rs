//! The `billing-worker` Lambda's handler: each SQS record is one [`BillingJob`]. A batch's
//! jobs are grouped by tenant (the FIFO queue's message groups hand a tenant's jobs to one
//! worker at a time); each tenant's subscriptions are billed together, their first steps
//! in one write with consecutive invoice numbers, and a test-clock job finishes that
//! clock's advance. Every step's invoice id is derived from its subscription and period,
//! so a duplicate delivery or a concurrent worker bills nothing twice. Failed records are
//! reported as batch item failures and come back.

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
