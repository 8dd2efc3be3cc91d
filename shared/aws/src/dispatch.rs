//! The [`Dispatch`] port on AWS: events go to the EventBridge bus (so tenants' AWS
//! accounts can route them anywhere) and, as fan-out messages, to the webhook queue;
//! delivery retries go to the same queue with an SQS delay.
//!
//! | variable            | meaning                                 |
//! |---------------------|-----------------------------------------|
//! | `EVENT_BUS_NAME`    | the EventBridge bus events are put on   |
//! | `WEBHOOK_QUEUE_URL` | the queue `webhook-fanout` consumes     |

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use billing_app::ports::{DeliveryJob, Dispatch, StoreError, WebhookMessage, MAX_QUEUE_DELAY};
use billing_domain::events::record::DomainEvent;
use billing_domain::events::types::EventEnvelope;
use billing_domain::kernel::ids::TenantId;
use jiff::SignedDuration;
use serde::Serialize;

use crate::config::MissingVar;

/// `source` of every event on the bus; `detail-type` is the event type.
pub const EVENT_SOURCE: &str = "billing";
/// PutEvents and SendMessageBatch both take at most ten entries.
const BATCH: usize = 10;

#[derive(Clone)]
pub struct AwsDispatch {
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
    queue_url: String,
    bus: String,
}

/// The EventBridge `detail`: the envelope webhooks get, plus the tenant, since one bus
/// carries every tenant's events.
#[derive(Serialize)]
struct Detail {
    tenant_id: TenantId,
    #[serde(flatten)]
    event: EventEnvelope,
}

fn unavailable<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Unavailable(format!("{what}: {e:?}"))
}

impl AwsDispatch {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        queue_url: impl Into<String>,
        bus: impl Into<String>,
    ) -> Self {
        Self {
            sqs: aws_sdk_sqs::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            queue_url: queue_url.into(),
            bus: bus.into(),
        }
    }

    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, MissingVar> {
        let var = |name: &'static str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or(MissingVar(name))
        };
        Ok(Self::new(
            sdk,
            var("WEBHOOK_QUEUE_URL")?,
            var("EVENT_BUS_NAME")?,
        ))
    }

    /// For the local stack, where queues are known by name.
    pub async fn by_queue_name(
        sdk: &aws_config::SdkConfig,
        queue: &str,
        bus: &str,
    ) -> Result<Self, StoreError> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let url = sqs
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .map_err(unavailable("queue url"))?
            .queue_url
            .ok_or_else(|| StoreError::Internal(format!("queue {queue} has no url")))?;
        Ok(Self::new(sdk, url, bus))
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    async fn put_on_bus(&self, tenant: TenantId, events: &[DomainEvent]) -> Result<(), StoreError> {
        for chunk in events.chunks(BATCH) {
            let mut request = self.events.put_events();
            for event in chunk {
                let detail = serde_json::to_string(&Detail {
                    tenant_id: tenant,
                    event: EventEnvelope::from(event),
                })
                .map_err(|e| StoreError::Internal(e.to_string()))?;
                request = request.entries(
                    aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(EVENT_SOURCE)
                        .detail_type(event.event_type.as_str())
                        .resources(tenant.to_string())
                        .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
                            event.created.as_millisecond(),
                        ))
                        .detail(detail)
                        .build(),
                );
            }
            let output = request.send().await.map_err(unavailable("PutEvents"))?;
            if output.failed_entry_count() > 0 {
                return Err(StoreError::Unavailable(format!(
                    "PutEvents refused {} entries",
                    output.failed_entry_count()
                )));
            }
        }
        crate::metrics::events_published(events.iter().map(|e| e.event_type.as_str()));
        Ok(())
    }

    async fn enqueue(
        &self,
        messages: Vec<(String, WebhookMessage)>,
        delay: SignedDuration,
    ) -> Result<(), StoreError> {
        let delay = i32::try_from(delay.clamp(SignedDuration::ZERO, MAX_QUEUE_DELAY).as_secs())
            .unwrap_or(0);
        for chunk in messages.chunks(BATCH) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, (_, message)) in chunk.iter().enumerate() {
                let body = serde_json::to_string(message)
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .delay_seconds(delay)
                        .build()
                        .map_err(|e| StoreError::Internal(e.to_string()))?,
                );
            }
            let output = self
                .sqs
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(unavailable("SendMessageBatch"))?;
            if let Some(failed) = output.failed.first() {
                let id = failed
                    .id
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| chunk.get(i))
                    .map(|(id, _)| id.as_str());
                return Err(StoreError::Unavailable(format!(
                    "SendMessageBatch refused {:?}: {}",
                    id,
                    failed.message.as_deref().unwrap_or(&failed.code)
                )));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Dispatch for AwsDispatch {
    async fn publish(&self, tenant: TenantId, events: &[DomainEvent]) -> Result<(), StoreError> {
        let messages = events
            .iter()
            .map(|e| {
                (
                    e.id.to_string(),
                    WebhookMessage::Event {
                        tenant_id: tenant,
                        event: e.clone(),
                    },
                )
            })
            .collect();
        // Independent destinations: in parallel, and both must succeed before the event
        // counts as published (a retry republishes to both; consumers dedupe by id).
        let (bus, queue) = tokio::join!(
            self.put_on_bus(tenant, events),
            self.enqueue(messages, SignedDuration::ZERO)
        );
        bus.and(queue)
    }

    async fn schedule_delivery(
        &self,
        job: &DeliveryJob,
        delay: SignedDuration,
    ) -> Result<(), StoreError> {
        self.enqueue(
            vec![(
                job.delivery_id.to_string(),
                WebhookMessage::Deliver(job.clone()),
            )],
            delay,
        )
        .await
    }
}
