//! The Lambdas that are not HTTP, run in-process for the local stack: queue consumers
//! (feeding SQS batches to `webhook-fanout`'s, `billing-worker`'s, `payment-worker`'s and
//! `document-renderer`'s handlers, the last fed by the bus's documents rule; deleting
//! what they handled, leaving failures for redelivery and the dead-letter queue, as the
//! Lambda event source does) and `billing-run` on a timer instead of an EventBridge
//! schedule.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use billing_app::ports::Clock;
use billing_app::App;
use billing_app::{events::Fanout, jobs::Sweeper};
use billing_aws::{AwsDispatch, DynamoStore, HttpKeySets, HttpSender, S3Objects, SqsQueue};
use billing_domain::kernel::deployment::Deployment;
use tokio::task::JoinSet;

use crate::stack;

/// Everything a local process needs to publish, sweep and deliver.
pub struct Local {
    pub app: App,
    pub dispatch: Arc<AwsDispatch>,
    pub billing: Arc<SqsQueue>,
    pub payments: Arc<SqsQueue>,
    /// Where the bus's documents rule puts the events a PDF is drawn for.
    pub documents: Arc<SqsQueue>,
    /// The documents bucket, which the app's downloads read too.
    pub objects: Arc<S3Objects>,
    pub sqs: aws_sdk_sqs::Client,
}

impl Local {
    /// The app on `table` with post-commit publishing to the local bus and webhook queue.
    pub async fn new(
        sdk: &aws_config::SdkConfig,
        table: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, billing_app::ports::StoreError> {
        Self::with_queue(sdk, table, stack::WEBHOOK_QUEUE, clock).await
    }

    /// The same on another webhook queue (tests give each their own).
    pub async fn with_queue(
        sdk: &aws_config::SdkConfig,
        table: &str,
        queue: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, billing_app::ports::StoreError> {
        let dispatch = Arc::new(AwsDispatch::by_queue_name(sdk, queue, stack::EVENT_BUS).await?);
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table)
            .with_dispatch(dispatch.clone());
        let payments = Arc::new(SqsQueue::by_name(sdk, stack::PAYMENT_QUEUE).await?);
        let billing = Arc::new(SqsQueue::by_name(sdk, stack::BILLING_QUEUE).await?);
        let documents = Arc::new(SqsQueue::by_name(sdk, stack::DOCUMENTS_QUEUE).await?);
        let objects = Arc::new(
            S3Objects::new(sdk, stack::DOCUMENTS_BUCKET, None)
                .map_err(|e| billing_app::ports::StoreError::Internal(e.to_string()))?,
        );
        Ok(Self {
            app: App::new(
                Arc::new(store),
                clock,
                std::sync::Arc::new(billing_aws::SandboxGateway::new()),
            )
            .with_payment_queue(payments.clone())
            .with_finalize_queue(billing.clone())
            .with_simulation_jobs(billing_app::billing::SimulationJobs {
                queue: Some(billing.clone()),
                ..Default::default()
            })
            .with_objects(objects.clone())
            // The local runner and its tests: webhooks may reach the developer's machine.
            .with_deployment(Deployment::Local)
            .with_key_sets(Arc::new(HttpKeySets::new(Deployment::Local))),
            dispatch,
            billing,
            payments,
            documents,
            objects,
            sqs: aws_sdk_sqs::Client::new(sdk),
        })
    }

    /// Starts `consumers` webhook queue consumers and a sweep every `sweep_every`.
    pub fn spawn(&self, consumers: usize, sweep_every: Duration) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        let fanout = Fanout::new(
            self.app.events.clone(),
            self.dispatch.clone(),
            Arc::new(HttpSender::new(Deployment::Local)),
        );
        for _ in 0..consumers {
            let (sqs, url, fanout) = (
                self.sqs.clone(),
                self.dispatch.queue_url().to_owned(),
                fanout.clone(),
            );
            tasks.spawn(async move {
                consume(sqs, url, |event| {
                    let fanout = fanout.clone();
                    async move { webhook_fanout::handle(&fanout, event).await }
                })
                .await
            });
        }
        for _ in 0..consumers {
            let (sqs, url, app) = (
                self.sqs.clone(),
                self.billing.url().to_owned(),
                self.app.clone(),
            );
            tasks.spawn(async move {
                consume(sqs, url, |event| {
                    let app = app.clone();
                    async move { billing_worker::handle(&app, event).await }
                })
                .await
            });
        }
        for _ in 0..consumers {
            let (sqs, url, app) = (
                self.sqs.clone(),
                self.payments.url().to_owned(),
                self.app.clone(),
            );
            tasks.spawn(async move {
                consume(sqs, url, |event| {
                    let app = app.clone();
                    async move { payment_worker::handle(&app, event).await }
                })
                .await
            });
        }
        let pipeline = self
            .app
            .documents
            .pipeline(self.objects.clone(), Arc::new(document_renderer::Pdfs));
        for _ in 0..consumers {
            let (sqs, url, pipeline) = (
                self.sqs.clone(),
                self.documents.url().to_owned(),
                pipeline.clone(),
            );
            tasks.spawn(async move {
                consume(sqs, url, |event| {
                    let pipeline = pipeline.clone();
                    async move { document_renderer::handle(&pipeline, event).await }
                })
                .await
            });
        }
        let sweeper = Sweeper::new(
            self.app.clone(),
            self.dispatch.clone(),
            self.billing.clone(),
        );
        tasks.spawn(async move {
            let mut timer = tokio::time::interval(sweep_every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                timer.tick().await;
                let deadline = sweeper.app.clock.now() + billing_run::TIMEOUT;
                let run = billing_run::handle(&sweeper, EventBridgeEvent::default(), deadline);
                if let Err(err) = run.await {
                    tracing::warn!(%err, "local billing run failed");
                }
            }
        });
        tasks
    }
}

/// Receives batches from a queue forever and hands them to `handle`, as the Lambda SQS
/// event source does.
pub async fn consume<F, Fut>(sqs: aws_sdk_sqs::Client, queue_url: String, handle: F)
where
    F: Fn(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await;
        let messages = match received {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(err) => {
                tracing::warn!(error = ?err, "receiving from a queue failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let records: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                serde_json::json!({
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt_handle,
                    "body": m.body,
                    "eventSource": "aws:sqs",
                    "messageAttributes": {},
                    "attributes": {},
                })
            })
            .collect();
        let event: SqsEvent =
            match serde_json::from_value(serde_json::json!({ "Records": records })) {
                Ok(event) => event,
                Err(err) => {
                    tracing::error!(%err, "could not build an SQS event");
                    continue;
                }
            };
        let response = handle(event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| !failed.contains(&m.message_id().unwrap_or_default()))
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        if !done.is_empty() {
            if let Err(err) = sqs
                .delete_message_batch()
                .queue_url(&queue_url)
                .set_entries(Some(done))
                .send()
                .await
            {
                tracing::warn!(error = ?err, "deleting handled messages failed; they will be handled again");
            }
        }
    }
}
