//! The `webhook-fanout` Lambda's handler: each SQS record is one [`WebhookMessage`] (an
//! event to fan out, or a delivery attempt to make). Records are handled concurrently,
//! except those of one [`WebhookMessage::batch_key`] (one event or one delivery), which
//! run one after the other. The ones that failed (store or queue trouble, or an
//! unreadable body) are reported back as batch item failures so SQS redelivers only them,
//! and after five receives moves them to the dead-letter queue. A receiver answering 500
//! is not a failure here: the attempt is recorded and a retry scheduled on the backoff.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billing_app::events::Fanout;
use billing_app::ports::WebhookMessage;
use billing_aws::sqs_batch::handle_batch;

pub async fn handle(fanout: &Fanout, event: SqsEvent) -> SqsBatchResponse {
    handle_batch(
        event,
        WebhookMessage::batch_key,
        |message: WebhookMessage| {
            let fanout = fanout.clone();
            async move {
                let report = fanout.handle(message).await.map_err(|e| e.to_string())?;
                tracing::debug!(?report, "webhook message handled");
                Ok(())
            }
        },
    )
    .await
}
