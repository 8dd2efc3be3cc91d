//! The event log, outbox and webhooks in memory. The due index is derived: an unpublished
//! event is due [`OUTBOX_GRACE`] after it was created, a delivery at the time it was given.

use billing_domain::kernel::time::later;
use std::collections::BTreeMap;

use async_trait::async_trait;
use billing_domain::events::record::DomainEvent;
use billing_domain::events::webhook::{WebhookDelivery, WebhookEndpoint};
use billing_domain::kernel::ids::{DeliveryId, EventId, TenantId, WebhookEndpointId};
use jiff::Timestamp;

use crate::{paginate, MemoryStore};
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct WebhookState {
    endpoints: BTreeMap<(TenantId, WebhookEndpointId), WebhookEndpoint>,
    /// Delivery and the time it is due, while it is in the due index.
    deliveries:
        BTreeMap<(TenantId, WebhookEndpointId, DeliveryId), (WebhookDelivery, Option<Timestamp>)>,
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn list_events(
        &self,
        tenant: TenantId,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<DomainEvent>, StoreError> {
        let s = self.state();
        let items = s
            .events
            .iter()
            .rev()
            // The resource filter is served by an index; the rest is examined.
            .filter(|((t, _), e)| {
                *t == tenant
                    && filter
                        .resource_id
                        .as_deref()
                        .is_none_or(|r| e.resource_id == r)
            })
            .map(|((_, id), e)| (id.clone(), e.clone()));
        Ok(paginate(items, page, |e| filter.admits(e)))
    }

    async fn get_event(
        &self,
        tenant: TenantId,
        id: EventId,
    ) -> Result<Option<DomainEvent>, StoreError> {
        Ok(self.state().events.get(&(tenant, id.to_string())).cloned())
    }

    async fn mark_published(&self, tenant: TenantId, id: EventId) -> Result<(), StoreError> {
        if let Some(event) = self.state().events.get_mut(&(tenant, id.to_string())) {
            event.published = true;
        }
        Ok(())
    }

    async fn due_items(&self, now: Timestamp, limit: usize) -> Result<Vec<DueItem>, StoreError> {
        let mut due = self.state().due(now);
        due.sort_by_key(|d| d.due_at);
        due.truncate(limit);
        Ok(due)
    }

    async fn due_page(
        &self,
        now: Timestamp,
        cursor: &DueCursor,
        per_shard: usize,
    ) -> Result<DuePage, StoreError> {
        // One shard, its items in the order of a position that sorts by due time first.
        let mut next = cursor.clone();
        if cursor.drained.contains(ONE_SHARD) {
            return Ok(DuePage {
                items: Vec::new(),
                cursor: next,
                done: true,
            });
        }
        let after = cursor.after.get(ONE_SHARD);
        let mut due: Vec<(String, DueItem)> = self
            .state()
            .due(now)
            .into_iter()
            .filter(|d| cursor.from.is_none_or(|from| d.due_at > from))
            .map(|d| (position(&d), d))
            .filter(|(at, _)| after.is_none_or(|after| at > after))
            .collect();
        due.sort_by(|a, b| a.0.cmp(&b.0));
        // Like a query with a limit: a full page does not yet know it was the last.
        if due.len() < per_shard {
            next.drained.insert(ONE_SHARD.to_owned());
        }
        due.truncate(per_shard);
        if let Some((last, _)) = due.last() {
            next.after.insert(ONE_SHARD.to_owned(), last.clone());
        }
        let done = next.drained.contains(ONE_SHARD);
        Ok(DuePage {
            items: due.into_iter().map(|(_, d)| d).collect(),
            cursor: next,
            done,
        })
    }

    async fn sweep_checkpoint(&self) -> Result<Option<SweepCheckpoint>, StoreError> {
        Ok(self.state().sweep.clone())
    }

    async fn save_sweep_checkpoint(&self, next: &SweepCheckpoint) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.sweep.as_ref().map_or(0, |c| c.version) + 1 != next.version {
            return Err(StoreError::VersionConflict {
                entity: "sweep checkpoint",
            });
        }
        s.sweep = Some(next.clone());
        Ok(())
    }
}

/// The memory store's due index is one shard.
const ONE_SHARD: &str = "all";

/// An item's place in the due index: its due time (zero-padded epoch milliseconds, so
/// that text order is time order), then what it is.
fn position(item: &DueItem) -> String {
    format!(
        "{:020}#{}#{:?}",
        item.due_at.as_millisecond(),
        item.tenant_id,
        item.kind
    )
}

impl crate::State {
    /// Everything due at or before `now`, in no order.
    fn due(&self, now: Timestamp) -> Vec<DueItem> {
        let events = self.events.iter().filter_map(|((tenant, _), e)| {
            let due_at = later(e.created, OUTBOX_GRACE);
            (!e.published && due_at <= now).then_some(DueItem {
                tenant_id: *tenant,
                due_at,
                kind: DueKind::Outbox { event_id: e.id },
            })
        });
        let deliveries =
            self.webhooks
                .deliveries
                .iter()
                .filter_map(|((tenant, endpoint, id), (_, due))| {
                    due.filter(|at| *at <= now).map(|due_at| DueItem {
                        tenant_id: *tenant,
                        due_at,
                        kind: DueKind::WebhookRetry(DeliveryJob {
                            tenant_id: *tenant,
                            endpoint_id: *endpoint,
                            delivery_id: *id,
                        }),
                    })
                });
        events
            .chain(deliveries)
            .chain(self.due_billing(now))
            .chain(self.due_payments(now))
            .chain(self.due_dunning(now))
            .chain(self.due_purges(now, |_, clock| clock.is_none()))
            .collect()
    }
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn insert_webhook_endpoint(
        &self,
        tenant: TenantId,
        endpoint: &WebhookEndpoint,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.webhooks.endpoints.contains_key(&(tenant, endpoint.id)) {
            return Err(StoreError::AlreadyExists {
                entity: "webhook endpoint",
            });
        }
        s.webhooks
            .endpoints
            .insert((tenant, endpoint.id), endpoint.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn update_webhook_endpoint(
        &self,
        tenant: TenantId,
        previous: &WebhookEndpoint,
        next: &WebhookEndpoint,
        change: Option<&Change>,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let stored = s
            .webhooks
            .endpoints
            .get(&(tenant, next.id))
            .map(|e| e.version);
        if stored != Some(previous.version) {
            return Err(StoreError::VersionConflict {
                entity: "webhook endpoint",
            });
        }
        s.webhooks.endpoints.insert((tenant, next.id), next.clone());
        if let Some(change) = change {
            s.record(tenant, change);
        }
        Ok(())
    }

    async fn delete_webhook_endpoint(
        &self,
        tenant: TenantId,
        endpoint: &WebhookEndpoint,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let stored = s
            .webhooks
            .endpoints
            .get(&(tenant, endpoint.id))
            .map(|e| e.version);
        if stored != Some(endpoint.version) {
            return Err(StoreError::VersionConflict {
                entity: "webhook endpoint",
            });
        }
        s.webhooks.endpoints.remove(&(tenant, endpoint.id));
        s.record(tenant, change);
        Ok(())
    }

    async fn get_webhook_endpoint(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        Ok(self.state().webhooks.endpoints.get(&(tenant, id)).cloned())
    }

    async fn list_webhook_endpoints(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError> {
        let s = self.state();
        let items = s
            .webhooks
            .endpoints
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|((_, id), e)| (id.to_string(), e.clone()));
        Ok(paginate(items, page, |_| true))
    }

    async fn insert_delivery(
        &self,
        tenant: TenantId,
        delivery: &WebhookDelivery,
        due_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut s = self.state();
        let key = (tenant, delivery.endpoint_id, delivery.id);
        if s.webhooks.deliveries.contains_key(&key) {
            return Ok(false);
        }
        s.webhooks
            .deliveries
            .insert(key, (delivery.clone(), Some(due_at)));
        Ok(true)
    }

    async fn insert_due_deliveries(
        &self,
        tenant: TenantId,
        deliveries: &[WebhookDelivery],
        due_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        if deliveries.iter().any(|d| {
            s.webhooks
                .deliveries
                .contains_key(&(tenant, d.endpoint_id, d.id))
        }) {
            return Err(StoreError::AlreadyExists {
                entity: "webhook delivery",
            });
        }
        for d in deliveries {
            s.webhooks
                .deliveries
                .insert((tenant, d.endpoint_id, d.id), (d.clone(), Some(due_at)));
        }
        Ok(())
    }

    async fn update_delivery(
        &self,
        tenant: TenantId,
        expected_version: u64,
        next: &WebhookDelivery,
        due_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let key = (tenant, next.endpoint_id, next.id);
        match s.webhooks.deliveries.get_mut(&key) {
            Some((stored, due)) if stored.version == expected_version => {
                *stored = next.clone();
                *due = due_at;
                Ok(())
            }
            _ => Err(StoreError::VersionConflict {
                entity: "webhook delivery",
            }),
        }
    }

    async fn get_delivery(
        &self,
        tenant: TenantId,
        endpoint: WebhookEndpointId,
        id: DeliveryId,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        Ok(self
            .state()
            .webhooks
            .deliveries
            .get(&(tenant, endpoint, id))
            .map(|(d, _)| d.clone()))
    }

    async fn list_deliveries(
        &self,
        tenant: TenantId,
        endpoint: WebhookEndpointId,
        page: &PageRequest,
    ) -> Result<Page<WebhookDelivery>, StoreError> {
        let s = self.state();
        let items = s
            .webhooks
            .deliveries
            .iter()
            .rev()
            .filter(|((t, e, _), _)| *t == tenant && *e == endpoint)
            .map(|((_, _, id), (d, _))| (id.to_string(), d.clone()));
        Ok(paginate(items, page, |_| true))
    }
}
