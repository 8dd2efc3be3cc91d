//! SQS batches for Lambda handlers: records are handled concurrently and the ones that
//! failed are reported as batch item failures, so SQS redelivers only them (and after
//! five receives moves them to the dead-letter queue).

use std::future::Future;
use std::hash::Hash;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde::de::DeserializeOwned;

/// Parses each record's body as `M` and runs `handle` on it, all at once; an unreadable
/// body is a failure like any other.
pub async fn handle_batch<M, F, Fut>(event: SqsEvent, handle: F) -> SqsBatchResponse
where
    M: DeserializeOwned + Send + 'static,
    F: Fn(M) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    handle_batch_grouped(event, |_: &M| (), handle).await
}

/// Like [`handle_batch`], but records whose messages share a `group` run one after the
/// other (groups run at once): work that contends for one thing, such as a tenant's
/// invoice sequence, then does not fight itself.
pub async fn handle_batch_grouped<M, G, K, F, Fut>(
    event: SqsEvent,
    group: G,
    handle: F,
) -> SqsBatchResponse
where
    M: DeserializeOwned + Send + 'static,
    G: Fn(&M) -> K,
    K: Eq + Hash + Send + 'static,
    F: Fn(M) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    handle_batch_in_groups(event, group, |_, messages: Vec<M>| {
        let work: Vec<Fut> = messages.into_iter().map(&handle).collect();
        async move {
            let mut results = Vec::with_capacity(work.len());
            for future in work {
                results.push(future.await);
            }
            results
        }
    })
    .await
}

/// Hands each `group`'s messages to `handle` together (groups run at once), which answers
/// for each message in order: for work that is cheaper done for a group at once, such as
/// billing several of a tenant's subscriptions with one write.
pub async fn handle_batch_in_groups<M, G, K, F, Fut>(
    event: SqsEvent,
    group: G,
    handle: F,
) -> SqsBatchResponse
where
    M: DeserializeOwned + Send + 'static,
    G: Fn(&M) -> K,
    K: Eq + Hash + Send + 'static,
    F: Fn(K, Vec<M>) -> Fut,
    Fut: Future<Output = Vec<Result<(), String>>> + Send + 'static,
{
    let mut response = SqsBatchResponse::default();
    let mut groups: std::collections::HashMap<K, (Vec<String>, Vec<M>)> =
        std::collections::HashMap::new();
    let mut failed = Vec::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        match serde_json::from_str::<M>(record.body.as_deref().unwrap_or_default()) {
            Ok(message) => {
                let (ids, messages) = groups.entry(group(&message)).or_default();
                ids.push(id);
                messages.push(message);
            }
            Err(err) => failed.push((id, format!("unreadable message: {err}"))),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (key, (ids, messages)) in groups {
        let work = handle(key, messages);
        tasks.spawn(async move {
            let results = work.await;
            let answered = results.len();
            let mut failures: Vec<(String, String)> = ids
                .iter()
                .zip(results)
                .filter_map(|(id, result)| result.err().map(|err| (id.clone(), err)))
                .collect();
            // A message the handler gave no answer for was not handled.
            failures.extend(
                ids.into_iter()
                    .skip(answered)
                    .map(|id| (id, "not handled".to_owned())),
            );
            failures
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(failures) => failed.extend(failures),
            // A panicking task loses its message ids: fail the whole invocation instead,
            // and the batch is retried.
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }
    for (id, err) in failed {
        tracing::warn!(message_id = %id, %err, "message failed; SQS will redeliver it");
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}
