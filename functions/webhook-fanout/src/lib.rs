//! The `webhook-fanout` Lambda's handler: each SQS record is one [`WebhookMessage`] (an
//! event to fan out, or a delivery attempt to make). Records are handled concurrently;
//! the ones that failed (store or queue trouble, or an unreadable body) are reported back
//! as batch item failures so SQS redelivers only them, and after five receives moves
//! them to the dead-letter queue. A receiver answering 500 is not a failure here: the
//! attempt is recorded and a retry scheduled on the backoff.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use billing_app::ports::WebhookMessage;
use billing_app::relay::Fanout;

pub async fn handle(fanout: &Fanout, event: SqsEvent) -> SqsBatchResponse {
    let mut records = tokio::task::JoinSet::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let fanout = fanout.clone();
        records.spawn(async move {
            let body = record.body.as_deref().unwrap_or_default();
            let outcome = match serde_json::from_str::<WebhookMessage>(body) {
                Ok(message) => fanout.handle(message).await.map_err(|e| e.to_string()),
                Err(err) => Err(format!("unreadable message: {err}")),
            };
            (id, outcome)
        });
    }
    let mut response = SqsBatchResponse::default();
    while let Some(joined) = records.join_next().await {
        match joined {
            Ok((_, Ok(report))) => tracing::debug!(?report, "webhook message handled"),
            Ok((id, Err(err))) => {
                tracing::warn!(message_id = %id, %err, "webhook message failed; SQS will redeliver it");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
            // A panicking task loses its message id; the whole batch is retried by
            // returning an error from the runtime instead.
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }
    response
}
