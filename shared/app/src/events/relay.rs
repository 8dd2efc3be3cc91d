//! What happens to an event after its commit: republishing one whose publish never
//! confirmed (the due-index sweep, [`crate::jobs::Sweeper`], asks), and webhook fan-out and
//! delivery ([`Fanout`], run by `webhook-fanout`).
//!
//! Guarantees, and how:
//! - **No lost event.** Every event is written with a due-index entry
//!   ([`OUTBOX_GRACE`] after it was created). The publish right after the commit removes
//!   it; if the process dies first, the sweep finds the entry and publishes the event.
//! - **At-least-once, deduplicated where we can.** A republished event fans out to the same
//!   deterministic delivery ids ([`super::delivery_id`]), so an endpoint gets it
//!   once per fan-out; a delivery attempt is recorded with a version check, so two workers
//!   racing on one attempt record it once. A receiver may still, rarely, see an event
//!   twice (both racers POSTed): it dedupes by the event `id`.
//! - **Retries survive anything.** Each pending delivery carries its next attempt in the
//!   due index. Waits up to 15 minutes also go on the queue with an SQS delay (the fast
//!   path); the due entry then sits [`DELIVERY_GRACE`] later as a safety net. Longer waits
//!   are only in the due index, which the sweep turns into queue messages.

use billing_domain::kernel::time::later;
use std::sync::Arc;

use billing_domain::events::record::{AuditAction, DomainEvent};
use billing_domain::events::types::EventEnvelope;
use billing_domain::events::types::EventType;
use billing_domain::events::webhook::{
    self, DeliveryAttempt, EndpointStatus, HealthChange, WebhookDelivery, WebhookEndpoint,
};
use billing_domain::kernel::ids::TenantId;

use super::{delivery_id, EventsService};
use crate::kernel::{system_caller, AppError};
use crate::ports::*;

/// Fans events out to endpoints and makes delivery attempts.
#[derive(Clone)]
pub struct Fanout {
    pub events: EventsService,
    pub dispatch: Arc<dyn Dispatch>,
    pub sender: Arc<dyn WebhookSender>,
}

/// What handling one queue message did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanoutReport {
    pub attempted: usize,
    pub delivered: usize,
    /// Duplicates and deliveries not due yet.
    pub skipped: usize,
}

impl Fanout {
    pub fn new(
        events: EventsService,
        dispatch: Arc<dyn Dispatch>,
        sender: Arc<dyn WebhookSender>,
    ) -> Self {
        Self {
            events,
            dispatch,
            sender,
        }
    }

    /// Handles one message from the webhook queue. An error means "retry the message"
    /// (the store or queue failed); a receiver failing is not an error, it is a retry
    /// scheduled on the backoff.
    pub async fn handle(&self, message: WebhookMessage) -> Result<FanoutReport, AppError> {
        match message {
            WebhookMessage::Event { tenant_id, event } => self.fan_out(tenant_id, event).await,
            WebhookMessage::Deliver(job) => self.retry(&job).await,
        }
    }

    async fn fan_out(
        &self,
        tenant: TenantId,
        event: DomainEvent,
    ) -> Result<FanoutReport, AppError> {
        let endpoints = self
            .events
            .store
            .list_webhook_endpoints(tenant, &PageRequest::first(webhook::MAX_ENDPOINTS))
            .await?
            .items;
        let now = self.events.clocks.now();
        let event = Arc::new(event);
        let mut attempts = tokio::task::JoinSet::new();
        let mut report = FanoutReport::default();
        for endpoint in endpoints.into_iter().filter(|e| e.wants(event.event_type)) {
            let delivery = WebhookDelivery::new(
                delivery_id(event.id, endpoint.id),
                endpoint.id,
                event.id,
                event.event_type,
                false,
                now,
            );
            if !self
                .events
                .store
                .insert_delivery(tenant, &delivery, later(now, DELIVERY_GRACE))
                .await?
            {
                report.skipped += 1;
                continue;
            }
            let (this, event) = (self.clone(), event.clone());
            attempts.spawn(async move { this.attempt(tenant, endpoint, delivery, &event).await });
        }
        // Endpoints are attempted concurrently, so one slow receiver does not hold up the rest.
        while let Some(joined) = attempts.join_next().await {
            let delivered = joined.map_err(|e| AppError::Internal(e.to_string()))??;
            report.attempted += 1;
            report.delivered += usize::from(delivered);
        }
        Ok(report)
    }

    async fn retry(&self, job: &DeliveryJob) -> Result<FanoutReport, AppError> {
        let store = &self.events.store;
        let now = self.events.clocks.now();
        let skipped = FanoutReport {
            skipped: 1,
            ..Default::default()
        };
        let Some(delivery) = store
            .get_delivery(job.tenant_id, job.endpoint_id, job.delivery_id)
            .await?
        else {
            return Ok(skipped);
        };
        // A duplicate message, or one for an attempt already made: nothing to do.
        if !delivery.is_due(now) {
            return Ok(skipped);
        }
        let endpoint = store
            .get_webhook_endpoint(job.tenant_id, job.endpoint_id)
            .await?
            .filter(|e| e.status == EndpointStatus::Enabled);
        let event = store.get_event(job.tenant_id, delivery.event_id).await?;
        let (Some(endpoint), Some(event)) = (endpoint, event) else {
            // The endpoint was deleted or disabled, or the event expired: give up.
            match store
                .update_delivery(
                    job.tenant_id,
                    delivery.version,
                    &delivery.abandon(now),
                    None,
                )
                .await
            {
                Ok(()) | Err(StoreError::VersionConflict { .. }) => return Ok(skipped),
                Err(err) => return Err(err.into()),
            }
        };
        let delivered = self
            .attempt(job.tenant_id, endpoint, delivery, &event)
            .await?;
        Ok(FanoutReport {
            attempted: 1,
            delivered: usize::from(delivered),
            skipped: 0,
        })
    }

    /// One signed POST, its record, the next attempt's schedule and the endpoint's health.
    async fn attempt(
        &self,
        tenant: TenantId,
        endpoint: WebhookEndpoint,
        delivery: WebhookDelivery,
        event: &DomainEvent,
    ) -> Result<bool, AppError> {
        let now = self.events.clocks.now();
        let body = serde_json::to_string(&EventEnvelope::from(event))
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let signature = webhook::signature_header(
            &endpoint.signing_secrets(now),
            now.as_second(),
            body.as_bytes(),
        );
        let outcome = self
            .sender
            .send(&WebhookRequest {
                url: endpoint.url.clone(),
                body,
                signature,
                livemode: endpoint.livemode,
                event_id: event.id,
                delivery_id: delivery.id,
            })
            .await;
        let attempt = DeliveryAttempt {
            number: delivery.attempts.len() as u32 + 1,
            at: now,
            response_status: outcome.status,
            latency_ms: outcome.latency_ms,
            error: outcome.error,
        };
        let delivered = attempt.succeeded();
        let next = delivery.record(attempt);
        let wait = next.next_attempt_at.map(|at| at.duration_since(now));
        let due_at = match (next.next_attempt_at, wait) {
            (Some(at), Some(wait)) if wait <= MAX_QUEUE_DELAY => Some(later(at, DELIVERY_GRACE)),
            (at, _) => at,
        };
        match self
            .events
            .store
            .update_delivery(tenant, delivery.version, &next, due_at)
            .await
        {
            Ok(()) => {}
            // Another worker made and recorded this attempt; its record stands.
            Err(StoreError::VersionConflict { .. }) => return Ok(delivered),
            Err(err) => return Err(err.into()),
        }
        if let Some(wait) = wait.filter(|w| *w <= MAX_QUEUE_DELAY) {
            let job = DeliveryJob {
                tenant_id: tenant,
                endpoint_id: endpoint.id,
                delivery_id: next.id,
            };
            // If queueing fails the due index still holds the attempt; the sweep queues it.
            let _ = self.dispatch.schedule_delivery(&job, wait).await;
        }
        self.record_health(tenant, &endpoint, delivered).await?;
        Ok(delivered)
    }

    async fn record_health(
        &self,
        tenant: TenantId,
        endpoint: &WebhookEndpoint,
        delivered: bool,
    ) -> Result<(), AppError> {
        let now = self.events.clocks.now();
        let (next, change) = match endpoint.after_attempt(delivered, now) {
            None => return Ok(()),
            Some(HealthChange::Recovered(next) | HealthChange::Failing(next)) => (next, None),
            Some(HealthChange::Disabled(next)) => {
                let caller = system_caller(tenant, endpoint.livemode);
                let mut change = self.events.endpoint_change(
                    &caller,
                    Some(endpoint),
                    &next,
                    AuditAction::Update,
                    EventType::WebhookEndpointDisabled,
                )?;
                change.audit.actor.via = "system".into();
                (next, Some(change))
            }
        };
        match self
            .events
            .store
            .update_webhook_endpoint(tenant, endpoint, &next, change.as_ref())
            .await
        {
            // A concurrent attempt updated the endpoint first; the next attempt re-judges.
            Ok(()) | Err(StoreError::VersionConflict { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

impl EventsService {
    /// Publishes an event whose publish right after its commit never confirmed, and takes
    /// it out of the due index. True when it was still unpublished.
    pub async fn republish(
        &self,
        dispatch: &dyn Dispatch,
        tenant: TenantId,
        id: billing_domain::kernel::ids::EventId,
    ) -> Result<bool, AppError> {
        let Some(event) = self.store.get_event(tenant, id).await? else {
            return Ok(false);
        };
        if !event.published {
            dispatch
                .publish(tenant, std::slice::from_ref(&event))
                .await?;
        }
        self.store.mark_published(tenant, id).await?;
        Ok(!event.published)
    }

    /// Up to `limit` items of the due index due now, of every capability.
    pub async fn due_now(&self, limit: usize) -> Result<Vec<DueItem>, AppError> {
        Ok(self.store.due_items(self.clocks.now(), limit).await?)
    }

    /// The sweep's pass to go on with: the one the last run left unfinished, or the next
    /// (over what fell due since the last pass began, or every [`FULL_PASS_EVERY`] over
    /// the whole index).
    pub async fn sweep_pass(&self) -> Result<SweepCheckpoint, AppError> {
        let now = self.clocks.now();
        Ok(match self.store.sweep_checkpoint().await? {
            Some(last) if !last.done => last,
            Some(last) if now < last.full_pass_at + FULL_PASS_EVERY => SweepCheckpoint {
                version: last.version,
                upper: now,
                cursor: DueCursor::from(Some(last.upper)),
                done: false,
                full_pass_at: last.full_pass_at,
            },
            last => SweepCheckpoint {
                version: last.map_or(0, |c| c.version),
                upper: now,
                cursor: DueCursor::default(),
                done: false,
                full_pass_at: now,
            },
        })
    }

    /// The next page of `pass` (`per_shard` items of every shard at once), and the pass
    /// moved past it, saved: a conflict means another run moved the pass meanwhile.
    pub async fn next_due_page(
        &self,
        pass: &mut SweepCheckpoint,
        per_shard: usize,
    ) -> Result<Vec<DueItem>, AppError> {
        let page = self
            .store
            .due_page(pass.upper, &pass.cursor, per_shard)
            .await?;
        pass.cursor = page.cursor;
        pass.done = page.done;
        pass.version += 1;
        self.store.save_sweep_checkpoint(pass).await?;
        Ok(page.items)
    }
}
