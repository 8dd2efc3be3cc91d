//! The `payment-worker` Lambda's handler: each SQS record is one [`PaymentJob`]. An attempt
//! is charged with the gateway idempotency key = its id and its result written over the
//! version it was read at, so a duplicate delivery or a crash after the gateway accepted the
//! charge charges once. A batch's jobs run at once, except those of one
//! [`PaymentJob::batch_key`] (an attempt delivered twice, an account's dunning jobs), which
//! run one after the other. Failed records are reported as batch item failures and come back.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billing_app::ports::PaymentJob;
use billing_app::App;
use billing_aws::sqs_batch::handle_batch;

pub async fn handle(app: &App, event: SqsEvent) -> SqsBatchResponse {
    handle_batch(event, PaymentJob::batch_key, |job: PaymentJob| {
        let app = app.clone();
        async move {
            app.collection
                .handle_payment_job(&job)
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await
}
