//! SQS batches for Lambda handlers: records that touch different things run concurrently,
//! records of the same key one after the other, and the ones that failed are reported as
//! batch item failures, so SQS redelivers only them (and after five receives moves them to
//! the dead-letter queue).
//!
//! Why same-key records wait for each other: two records of one key in one batch are a
//! duplicate delivery or two jobs of one aggregate. Run at once, they would both read it,
//! one would win the conditional write and the other redo its reads and lose; run in turn,
//! the second finds the work done. The outcome is the same (the writes are conditional
//! either way); only the wasted requests differ.

use std::future::Future;
use std::hash::Hash;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde::de::DeserializeOwned;

/// Parses each record's body as `M` and runs `handle` on it: records whose messages share
/// a `key` one after the other, in batch order; different keys at once. An unreadable body
/// is a failure like any other.
pub async fn handle_batch<M, G, K, F, Fut>(event: SqsEvent, key: G, handle: F) -> SqsBatchResponse
where
    M: DeserializeOwned + Send + 'static,
    G: Fn(&M) -> K,
    K: Eq + Hash + Send + 'static,
    F: Fn(M) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    handle_batch_in_groups(event, key, |_, messages: Vec<M>| {
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
        let span = crate::xray::work(message_kind::<M>());
        tasks.spawn(tracing::Instrument::instrument(
            async move {
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
            },
            span,
        ));
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

/// A message type's own name (`BillingJob`), naming the work in traces.
fn message_kind<M>() -> &'static str {
    let name = std::any::type_name::<M>();
    name.rsplit("::").next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use aws_lambda_events::event::sqs::SqsMessage;
    use serde_json::{json, Value};

    use super::*;

    /// How many handlers are in flight, overall and per key, and the most there ever were.
    #[derive(Default)]
    struct Gauge {
        in_flight: usize,
        most: usize,
        by_key: HashMap<String, (usize, usize)>,
        handled: Vec<(String, u64)>,
    }

    impl Gauge {
        fn enter(&mut self, key: &str) {
            self.in_flight += 1;
            self.most = self.most.max(self.in_flight);
            let (now, most) = self.by_key.entry(key.to_owned()).or_default();
            *now += 1;
            *most = (*most).max(*now);
        }

        fn leave(&mut self, key: &str, n: u64) {
            self.in_flight -= 1;
            if let Some((now, _)) = self.by_key.get_mut(key) {
                *now -= 1;
            }
            self.handled.push((key.to_owned(), n));
        }
    }

    fn batch(bodies: &[String]) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let mut message = SqsMessage::default();
                message.message_id = Some(format!("m{i}"));
                message.body = Some(body.clone());
                message
            })
            .collect();
        event
    }

    fn key_of(message: &Value) -> String {
        message["key"].as_str().unwrap_or_default().to_owned()
    }

    /// Keys a, b and c (a twice, c three times, one of c's failing) and an unreadable body:
    /// the three keys are in flight together, no key ever twice, each key's records in
    /// batch order, and exactly the failed and the unreadable record are reported. Every
    /// handler yields to the scheduler while in flight, so a batch run record by record
    /// shows one in flight, and same-key records run at once show two.
    #[tokio::test]
    async fn different_keys_run_at_once_and_one_keys_records_in_turn() {
        let mut bodies: Vec<String> = [("a", 1), ("c", 1), ("a", 2), ("b", 1), ("c", 2), ("c", 3)]
            .iter()
            .map(|(key, n)| json!({"key": key, "n": n, "fail": *key == "c" && *n == 2}).to_string())
            .collect();
        bodies.insert(3, "not json".to_owned());
        let gauge = Arc::new(Mutex::new(Gauge::default()));
        let response = handle_batch(batch(&bodies), key_of, |message: Value| {
            let gauge = gauge.clone();
            async move {
                let key = key_of(&message);
                gauge.lock().unwrap().enter(&key);
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                gauge
                    .lock()
                    .unwrap()
                    .leave(&key, message["n"].as_u64().unwrap_or_default());
                if message["fail"] == json!(true) {
                    return Err("refused".to_owned());
                }
                Ok(())
            }
        })
        .await;

        let gauge = gauge.lock().unwrap();
        assert_eq!(gauge.most, 3, "a, b and c were in flight together");
        for (key, (_, most)) in &gauge.by_key {
            assert_eq!(*most, 1, "the records of {key} ran one after the other");
        }
        let order = |key: &str| -> Vec<u64> {
            gauge
                .handled
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, n)| *n)
                .collect()
        };
        assert_eq!(
            (order("a"), order("b"), order("c")),
            (vec![1, 2], vec![1], vec![1, 2, 3])
        );
        let mut failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        failed.sort();
        // m3 is the unreadable body, m5 the second record of c.
        assert_eq!(failed, ["m3", "m5"]);
    }
}
