//! The `billing-worker` Lambda's handler: each SQS record is one [`BillingJob`]. A
//! subscription job runs every lifecycle step due by now (each step one transaction with
//! its deterministic invoice, so a duplicate delivery or a concurrent worker bills
//! nothing twice); a test-clock job finishes that clock's advance. Failed records are
//! reported as batch item failures and come back.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billing_app::ports::BillingJob;
use billing_app::App;
use billing_aws::sqs_batch::handle_batch_grouped;

pub async fn handle(app: &App, event: SqsEvent) -> SqsBatchResponse {
    // One tenant's jobs run one after the other (the FIFO queue's message groups keep
    // other workers off them too).
    handle_batch_grouped(event, BillingJob::tenant, |job: BillingJob| {
        let app = app.clone();
        async move {
            match job {
                BillingJob::Subscription { tenant, id } => {
                    let now = app.clock.now();
                    app.run_due_subscription(tenant, id, now).await.map(|_| ())
                }
                BillingJob::TestClock { tenant, id } => {
                    app.run_test_clock(tenant, id).await.map(|_| ())
                }
            }
            .map_err(|e| e.to_string())
        }
    })
    .await
}
