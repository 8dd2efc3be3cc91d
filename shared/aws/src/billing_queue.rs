//! The billing queue on SQS (`BILLING_QUEUE_URL`), consumed by `billing-worker`.
//!
//! It is a FIFO queue with one message group per tenant: a tenant's jobs share its
//! gapless invoice sequence, so running two of them at once only makes one retry. With
//! groups, SQS hands a tenant's jobs to one worker at a time while other tenants' run in
//! parallel. Every send gets its own deduplication id: the jobs are idempotent, and a
//! content-based id would swallow a second test-clock advance within five minutes.

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use billing_app::ports::{BillingJob, BillingQueue, StoreError};

use crate::config::MissingVar;

#[derive(Clone)]
pub struct SqsBillingQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl SqsBillingQueue {
    pub fn new(sdk: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self {
            sqs: aws_sdk_sqs::Client::new(sdk),
            url: url.into(),
        }
    }

    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, MissingVar> {
        let url = std::env::var("BILLING_QUEUE_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or(MissingVar("BILLING_QUEUE_URL"))?;
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
            .map_err(|e| StoreError::Unavailable(format!("billing queue: {e:?}")))?
            .queue_url
            .unwrap_or_default();
        Ok(Self { sqs, url })
    }
}

#[async_trait]
impl BillingQueue for SqsBillingQueue {
    async fn enqueue(&self, jobs: &[BillingJob]) -> Result<(), StoreError> {
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
                .map_err(|e| StoreError::Unavailable(format!("billing queue: {e:?}")))?;
            if !output.failed().is_empty() {
                return Err(StoreError::Unavailable(format!(
                    "{} billing jobs were not queued",
                    output.failed().len()
                )));
            }
        }
        Ok(())
    }
}
