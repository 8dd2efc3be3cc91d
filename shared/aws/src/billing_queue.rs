//! The job queues on SQS: the billing queue (`BILLING_QUEUE_URL`), consumed by
//! `billing-worker`, and the payments queue (`PAYMENT_QUEUE_URL`), consumed by
//! `payment-worker`. One adapter serves both: a job is a JSON message body.
//!
//! The billing queue is FIFO with the groups of [`BillingJob::group`]: a subscription's
//! (or test clock's) jobs run one at a time, all subscriptions of a tenant in parallel, as
//! drafting touches only its subscription; a tenant's finalize jobs share one group, so one
//! finalizer at a time moves its gapless sequence. Every send gets its own deduplication
//! id (the jobs are idempotent, and a content-based id would swallow a second test-clock
//! advance within five minutes), except finalize jobs: one per tenant per second is
//! enough, as a finalizer runs until no draft is left.

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use billing_app::ports::{BillingJob, BillingQueue, PaymentJob, PaymentQueue, StoreError};
use serde::Serialize;

use crate::config::MissingVar;

#[derive(Clone)]
pub struct SqsQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(sdk: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self {
            sqs: aws_sdk_sqs::Client::new(sdk),
            url: url.into(),
        }
    }

    /// The queue whose URL is in the environment variable `var`.
    pub fn from_env(sdk: &aws_config::SdkConfig, var: &'static str) -> Result<Self, MissingVar> {
        let url = std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or(MissingVar(var))?;
        Ok(Self::new(sdk, url))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// For the local stack, where queues are known by name.
    pub async fn by_name(sdk: &aws_config::SdkConfig, name: &str) -> Result<Self, StoreError> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let url = sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("queue {name}: {e:?}")))?
            .queue_url
            .unwrap_or_default();
        Ok(Self { sqs, url })
    }
}

/// A job's message group and deduplication id on a FIFO queue.
trait Job: Serialize {
    fn group(&self) -> String;
    fn deduplication_id(&self) -> String {
        ulid::Ulid::new().to_string()
    }
}

impl Job for BillingJob {
    fn group(&self) -> String {
        BillingJob::group(self)
    }

    fn deduplication_id(&self) -> String {
        match self {
            BillingJob::Finalize { tenant } => {
                let second = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                format!("finalize-{tenant}-{second}")
            }
            _ => ulid::Ulid::new().to_string(),
        }
    }
}

impl Job for PaymentJob {
    fn group(&self) -> String {
        PaymentJob::tenant(self).to_string()
    }
}

/// SendMessageBatch requests a send keeps in flight at once: a sweep hands thousands of
/// jobs on per page.
pub const SENDS_IN_FLIGHT: usize = 32;

impl SqsQueue {
    /// Sends jobs as JSON messages, ten per batch request, [`SENDS_IN_FLIGHT`] requests
    /// at once.
    async fn send<J: Job>(&self, jobs: &[J]) -> Result<(), StoreError> {
        let fifo = self.url.ends_with(".fifo");
        let mut batches = Vec::new();
        for chunk in jobs.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, job)| {
                    let body = serde_json::to_string(job)
                        .map_err(|e| StoreError::Internal(e.to_string()))?;
                    let entry = SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body);
                    if fifo {
                        entry
                            .message_group_id(job.group())
                            .message_deduplication_id(job.deduplication_id())
                    } else {
                        entry
                    }
                    .build()
                    .map_err(|e| StoreError::Internal(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            batches.push(entries);
        }
        let mut in_flight = tokio::task::JoinSet::new();
        let mut failed = 0;
        for entries in batches {
            if in_flight.len() >= SENDS_IN_FLIGHT {
                failed += sent(in_flight.join_next().await)?;
            }
            let (sqs, url) = (self.sqs.clone(), self.url.clone());
            in_flight.spawn(async move {
                sqs.send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map(|output| output.failed().len())
                    .map_err(|e| StoreError::Unavailable(format!("queue: {e:?}")))
            });
        }
        while let Some(joined) = in_flight.join_next().await {
            failed += sent(Some(joined))?;
        }
        if failed > 0 {
            return Err(StoreError::Unavailable(format!(
                "{failed} jobs were not queued"
            )));
        }
        Ok(())
    }
}

/// How many entries of a finished SendMessageBatch failed.
fn sent(
    joined: Option<Result<Result<usize, StoreError>, tokio::task::JoinError>>,
) -> Result<usize, StoreError> {
    match joined {
        Some(joined) => joined.map_err(|e| StoreError::Internal(e.to_string()))?,
        None => Ok(0),
    }
}

#[async_trait]
impl BillingQueue for SqsQueue {
    async fn enqueue(&self, jobs: &[BillingJob]) -> Result<(), StoreError> {
        self.send(jobs).await
    }

    fn coalesces_finalize_jobs_per_second(&self) -> bool {
        self.url.ends_with(".fifo")
    }
}

#[async_trait]
impl PaymentQueue for SqsQueue {
    async fn enqueue(&self, jobs: &[PaymentJob]) -> Result<(), StoreError> {
        self.send(jobs).await
    }
}
