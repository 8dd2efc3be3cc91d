//! Ports for the event log, the outbox, the due index and outgoing webhooks.

use async_trait::async_trait;
use billing_domain::events::record::DomainEvent;
use billing_domain::events::webhook::{WebhookDelivery, WebhookEndpoint};
use billing_domain::kernel::ids::{DeliveryId, EventId, TenantId, WebhookEndpointId};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Change, Page, PageRequest, StoreError};

/// How long the outbox waits for the publish that follows a commit before the sweep
/// republishes the event itself. Long enough that the normal path always wins.
pub const OUTBOX_GRACE: SignedDuration = SignedDuration::from_secs(30);
/// How long after a delivery attempt is due the sweep steps in, when the queue message
/// that should have triggered it (SQS delay) got lost.
pub const DELIVERY_GRACE: SignedDuration = SignedDuration::from_secs(120);
/// Events (and their deliveries) are kept this long, then DynamoDB's TTL removes them.
pub const EVENT_RETENTION: SignedDuration = SignedDuration::from_secs(30 * 24 * 60 * 60);
/// SQS delays stop here; longer waits go through the due index.
pub const MAX_QUEUE_DELAY: SignedDuration = SignedDuration::from_secs(15 * 60);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub resource_id: Option<String>,
}

impl EventFilter {
    pub fn admits(&self, event: &DomainEvent) -> bool {
        self.event_type
            .as_deref()
            .is_none_or(|t| event.event_type == t)
            && self
                .resource_id
                .as_deref()
                .is_none_or(|r| event.resource_id == r)
    }
}

/// Something waiting in the due index. New kinds (renewals, trial ends, …) are new
/// variants; the sweep's `match` makes each one name its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueKind {
    /// An event whose post-commit publish has not been confirmed.
    Outbox { event_id: EventId },
    /// A subscription step or a test-clock advance for the billing worker.
    Billing(super::BillingJob),
    /// A webhook delivery whose next attempt is due.
    WebhookRetry(DeliveryJob),
    /// Payment work (an attempt, a retry, …) for the payment worker.
    Payment(super::PaymentJob),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueItem {
    pub tenant_id: TenantId,
    pub due_at: Timestamp,
    pub kind: DueKind,
}

/// The event log and outbox. Webhook storage is a supertrait so that [`super::Store`]
/// picks both up through this one name.
#[async_trait]
pub trait EventStore: WebhookStore + Send + Sync {
    /// The tenant's events, newest first, filtered by type and resource.
    async fn list_events(
        &self,
        tenant: TenantId,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<DomainEvent>, StoreError>;
    async fn get_event(
        &self,
        tenant: TenantId,
        id: EventId,
    ) -> Result<Option<DomainEvent>, StoreError>;
    /// Records that the event was handed on, taking it out of the due index. Marking an
    /// event twice (or one the TTL removed) is not an error.
    async fn mark_published(&self, tenant: TenantId, id: EventId) -> Result<(), StoreError>;
    /// Everything in the due index due at or before `now`, across shards and tenants,
    /// at most `limit` items, earliest first.
    async fn due_items(&self, now: Timestamp, limit: usize) -> Result<Vec<DueItem>, StoreError>;
    /// The next page of a pass over the due index: up to `per_shard` items of each shard
    /// not yet drained, due after `cursor.from` and at or before `now`, past the cursor's
    /// position in that shard; and the cursor after them. A sweep reads all shards at once
    /// this way and never reads an item twice in one pass.
    async fn due_page(
        &self,
        now: Timestamp,
        cursor: &DueCursor,
        per_shard: usize,
    ) -> Result<DuePage, StoreError>;
    /// Where the last run of the sweep left its pass, and the version to save over.
    async fn sweep_checkpoint(&self) -> Result<Option<SweepCheckpoint>, StoreError>;
    /// Saves `next` if the stored checkpoint is still at `next.version - 1` (none stored
    /// for version 1); a `VersionConflict` means another run moved it meanwhile.
    async fn save_sweep_checkpoint(&self, next: &SweepCheckpoint) -> Result<(), StoreError>;
}

/// Where a pass over the due index stands. A pass reads items due after `from` (all of
/// them when `None`); each shard's position is the index sort key of the last item read
/// from it, and a shard in `drained` has nothing more due. The keys are the store's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueCursor {
    pub from: Option<Timestamp>,
    pub after: std::collections::BTreeMap<String, String>,
    pub drained: std::collections::BTreeSet<String>,
}

impl DueCursor {
    /// A pass over what fell due after `from`.
    pub fn from(from: Option<Timestamp>) -> Self {
        Self {
            from,
            ..Self::default()
        }
    }
}

/// One page of a pass: its items, earliest first within each shard, and the cursor after
/// them; `done` when every shard is drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuePage {
    pub items: Vec<DueItem>,
    pub cursor: DueCursor,
    pub done: bool,
}

/// The sweep's progress, kept between runs so that a run stopped by its deadline is
/// continued by the next one, and so that a finished pass is not read again: the next
/// pass reads only what fell due after `upper`, except every [`FULL_PASS_EVERY`] one reads
/// the whole index again (work whose queue message was lost, items written already due).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepCheckpoint {
    pub version: u64,
    /// The pass reads what was due at or before this time.
    pub upper: Timestamp,
    pub cursor: DueCursor,
    /// Every shard drained: the pass is over.
    pub done: bool,
    /// When the last pass over the whole index began.
    pub full_pass_at: Timestamp,
}

/// How often a pass reads the whole due index rather than only what fell due since the
/// last pass. Also how long a billing job queued but not yet handled is left to its
/// queue before the sweep queues it again.
pub const FULL_PASS_EVERY: SignedDuration = SignedDuration::from_secs(15 * 60);

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn insert_webhook_endpoint(
        &self,
        tenant: TenantId,
        endpoint: &WebhookEndpoint,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Replaces `previous` with `next` if the stored version is still `previous.version`;
    /// `change` is `None` for bookkeeping that is neither audited nor an event (health).
    async fn update_webhook_endpoint(
        &self,
        tenant: TenantId,
        previous: &WebhookEndpoint,
        next: &WebhookEndpoint,
        change: Option<&Change>,
    ) -> Result<(), StoreError>;
    async fn delete_webhook_endpoint(
        &self,
        tenant: TenantId,
        endpoint: &WebhookEndpoint,
        change: &Change,
    ) -> Result<(), StoreError>;
    async fn get_webhook_endpoint(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// Oldest first.
    async fn list_webhook_endpoints(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError>;
    /// Creates the delivery in the due index at `due_at` unless its id exists; `false`
    /// when it did (a duplicate fan-out of the same event).
    async fn insert_delivery(
        &self,
        tenant: TenantId,
        delivery: &WebhookDelivery,
        due_at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Creates deliveries that should be attempted now (a resend): in the due index at
    /// `due_at`, and queued right after the commit when the store has a dispatcher.
    async fn insert_due_deliveries(
        &self,
        tenant: TenantId,
        deliveries: &[WebhookDelivery],
        due_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Replaces the delivery if its stored version is still `expected_version`, keeping it
    /// in the due index at `due_at` (or taking it out).
    async fn update_delivery(
        &self,
        tenant: TenantId,
        expected_version: u64,
        next: &WebhookDelivery,
        due_at: Option<Timestamp>,
    ) -> Result<(), StoreError>;
    async fn get_delivery(
        &self,
        tenant: TenantId,
        endpoint: WebhookEndpointId,
        id: DeliveryId,
    ) -> Result<Option<WebhookDelivery>, StoreError>;
    /// One endpoint's deliveries, newest first.
    async fn list_deliveries(
        &self,
        tenant: TenantId,
        endpoint: WebhookEndpointId,
        page: &PageRequest,
    ) -> Result<Page<WebhookDelivery>, StoreError>;
}

/// One delivery attempt to make; the body of a `deliver` message on the webhook queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub tenant_id: TenantId,
    pub endpoint_id: WebhookEndpointId,
    pub delivery_id: DeliveryId,
}

/// What travels on the webhook queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WebhookMessage {
    /// A committed event to fan out to the tenant's endpoints.
    Event {
        tenant_id: TenantId,
        event: DomainEvent,
    },
    /// A retry (or resend) of one delivery.
    Deliver(DeliveryJob),
}

impl WebhookMessage {
    /// What the message writes: messages of one key in a batch (an event queued twice, a
    /// delivery retried twice) run one after the other, others at once.
    pub fn batch_key(&self) -> String {
        match self {
            WebhookMessage::Event { event, .. } => event.id.to_string(),
            WebhookMessage::Deliver(job) => job.delivery_id.to_string(),
        }
    }
}

/// Hands work to the queues and the bus. Failures are retried by the due-index sweep,
/// so a caller that already committed logs them rather than failing the request.
#[async_trait]
pub trait Dispatch: Send + Sync {
    /// Publishes committed events to the event bus and queues them for webhook fan-out.
    async fn publish(&self, tenant: TenantId, events: &[DomainEvent]) -> Result<(), StoreError>;
    /// Queues a delivery attempt to run after `delay` (at most [`MAX_QUEUE_DELAY`]).
    async fn schedule_delivery(
        &self,
        job: &DeliveryJob,
        delay: SignedDuration,
    ) -> Result<(), StoreError>;
}

/// One signed POST to a webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub url: String,
    pub body: String,
    pub signature: String,
    /// Live endpoints are held to the strict address rules after DNS resolution.
    pub livemode: bool,
    pub event_id: EventId,
    pub delivery_id: DeliveryId,
}

/// What the receiver did: its status, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// Sends webhook POSTs (with the timeout and the SSRF rules); never fails, it reports.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    async fn send(&self, request: &WebhookRequest) -> SendOutcome;
}
