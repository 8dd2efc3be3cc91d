//! The job queues on SQS: the billing queue (`BILLING_QUEUE_URL`), consumed by
//! `billing-worker`, and the payments queue (`PAYMENT_QUEUE_URL`), consumed by
//! `payment-worker`. One adapter serves both: a job is a JSON message body.
//!
//! It is a FIFO queue with one message group per tenant: a tenant's jobs share its
//! gapless invoice sequence, so running two of them at once only makes one retry. With
//! groups, SQS hands a tenant's jobs to one worker at a time while other tenants' run in
//! parallel. Every send gets its own deduplication id: the jobs are idempotent, and a
//! content-based id would swallow a second test-clock advance within five minutes.

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

/// A job's message group on a FIFO queue: its tenant.
trait Job: Serialize {
    fn tenant(&self) -> billing_domain::kernel::ids::TenantId;
}

impl Job for BillingJob {
    fn tenant(&self) -> billing_domain::kernel::ids::TenantId {
        BillingJob::tenant(self)
    }
}

impl Job for PaymentJob {
    fn tenant(&self) -> billing_domain::kernel::ids::TenantId {
        PaymentJob::tenant(self)
    }
}

impl SqsQueue {
    /// Sends jobs as JSON messages, ten per batch request.
    async fn send<J: Job>(&self, jobs: &[J]) -> Result<(), StoreError> {
        let fifo = self.url.ends_with(".fifo");
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
                            .message_group_id(job.tenant().to_string())
                            .message_deduplication_id(ulid::Ulid::new().to_string())
                    } else {
                        entry
                    }
                    .build()
                    .map_err(|e| StoreError::Internal(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .sqs
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| StoreError::Unavailable(format!("queue: {e:?}")))?;
            if !output.failed().is_empty() {
                return Err(StoreError::Unavailable(format!(
                    "{} jobs were not queued",
                    output.failed().len()
                )));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl BillingQueue for SqsQueue {
    async fn enqueue(&self, jobs: &[BillingJob]) -> Result<(), StoreError> {
        self.send(jobs).await
    }
}

#[async_trait]
impl PaymentQueue for SqsQueue {
    async fn enqueue(&self, jobs: &[PaymentJob]) -> Result<(), StoreError> {
        self.send(jobs).await
    }
}
