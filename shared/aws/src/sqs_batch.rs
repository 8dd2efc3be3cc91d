//! SQS batches for Lambda handlers: records are handled concurrently and the ones that
//! failed are reported as batch item failures, so SQS redelivers only them (and after
//! five receives moves them to the dead-letter queue).

use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde::de::DeserializeOwned;

/// Parses each record's body as `M` and runs `handle` on it; an unreadable body is a
/// failure like any other.
pub async fn handle_batch<M, F, Fut>(event: SqsEvent, handle: F) -> SqsBatchResponse
where
    M: DeserializeOwned + Send + 'static,
    F: Fn(M) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let mut records = tokio::task::JoinSet::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        match serde_json::from_str::<M>(record.body.as_deref().unwrap_or_default()) {
            Ok(message) => {
                let work = handle(message);
                records.spawn(async move { (id, work.await) });
            }
            Err(err) => {
                records.spawn(async move { (id, Err(format!("unreadable message: {err}"))) });
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    while let Some(joined) = records.join_next().await {
        match joined {
            Ok((_, Ok(()))) => {}
            Ok((id, Err(err))) => {
                tracing::warn!(message_id = %id, %err, "message failed; SQS will redeliver it");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
            // A panicking task loses its message id: fail the whole invocation instead,
            // and the batch is retried.
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }
    response
}
