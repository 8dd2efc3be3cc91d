//! The event log and outbox, the due index sweep, webhook endpoints and deliveries.
//!
//! An event is written (by [`super::Transaction::record`]) with a TTL of
//! [`EVENT_RETENTION`], and with it a small outbox item ([`keys::outbox`], in the tenant's
//! outbox partitions) with a due-index entry [`OUTBOX_GRACE`] after the event's creation.
//! Right after the commit the store hands the events to its dispatcher and, once that
//! succeeded, deletes their outbox items ([`EventStore::mark_published`]); an outbox item
//! still there when due means the publish never happened, and the sweep does it. (Events
//! written before the outbox items carry their due entry themselves, and outbox items
//! written before the outbox partitions lie beside their event
//! ([`keys::outbox_beside_event`]); the sweep still reads both, and marking one published
//! removes it.)

use billing_domain::kernel::time::later;
use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::*;
use billing_domain::events::record::DomainEvent;
use billing_domain::events::webhook::{WebhookDelivery, WebhookEndpoint};
use billing_domain::kernel::ids::{DeliveryId, EventId, TenantId, WebhookEndpointId};
use jiff::{SignedDuration, Timestamp};

use super::{epoch_seconds, sdk_error, to_item, DynamoStore, Item, ShardRange};
use crate::keys::{self, DUE_INDEX, DUE_PK, DUE_SHARDS, DUE_SK, GSI1_PK, TTL};

const ENDPOINT: &str = "webhook endpoint";
/// BatchWriteItem's limit of requests per call.
const MARKS_PER_BATCH: usize = 25;
/// Sends of one batch of outbox deletes while DynamoDB leaves some unprocessed (it does
/// under throttling), the n-th after n × [`MARK_RETRY_PAUSE`].
const MARK_ATTEMPTS: u32 = 3;
const MARK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
const DELIVERY: &str = "webhook delivery";

/// What a committed transaction leaves for the dispatcher.
#[derive(Default)]
pub(super) struct AfterCommit {
    pub(super) events: Vec<(TenantId, DomainEvent)>,
    pub(super) jobs: Vec<DeliveryJob>,
}

/// An event item: its keys (with the per-resource index) and its expiry.
pub(super) fn event_item(tenant: TenantId, event: &DomainEvent) -> Result<Item, StoreError> {
    let key = keys::event_of_resource(tenant, &event.id.to_string(), &event.resource_id);
    let mut item = super::packed::to_packed_item("event", event, &key, &[])?;
    item.insert(
        TTL.to_owned(),
        epoch_seconds(later(event.created, EVENT_RETENTION)),
    );
    Ok(item)
}

/// An event's outbox item: its keys, its entry in the due index and the event's expiry.
pub(super) fn outbox_item(tenant: TenantId, event: &DomainEvent) -> Item {
    let key = keys::outbox(tenant, &event.id.to_string());
    let mut item = key.all();
    item.extend(keys::due(&key, later(event.created, OUTBOX_GRACE)));
    item.insert(
        TTL.to_owned(),
        epoch_seconds(later(event.created, EVENT_RETENTION)),
    );
    item
}

fn delivery_item(
    tenant: TenantId,
    delivery: &WebhookDelivery,
    due_at: Option<Timestamp>,
) -> Result<Item, StoreError> {
    let key = keys::webhook_delivery(tenant, delivery.endpoint_id, delivery.id);
    let mut item = to_item("webhook_delivery", delivery, &key)?;
    if let Some(at) = due_at {
        item.extend(keys::due(&key, at));
    }
    item.insert(
        TTL.to_owned(),
        epoch_seconds(later(delivery.created_at, EVENT_RETENTION)),
    );
    Ok(item)
}

/// The work a due-index entry stands for, from the key it points at; `None` for kinds
/// this build does not know (a newer deployment's), which it leaves alone.
fn due_kind(tenant: TenantId, sk: &str) -> Option<DueKind> {
    if sk.starts_with(keys::FINALIZE_PREFIX) {
        return Some(DueKind::Billing(BillingJob::Finalize { tenant }));
    }
    if let Some(id) = sk.strip_prefix(keys::SUBSCRIPTION_PREFIX) {
        let id = billing_domain::kernel::ids::SubscriptionId::parse(id, "due_sk").ok()?;
        return Some(DueKind::Billing(BillingJob::Subscription { tenant, id }));
    }
    // Late usage waiting for its supplemental invoice: the subscription's worker bills it.
    if let Some(id) = keys::rollup_subscription(sk) {
        return Some(DueKind::Billing(BillingJob::Subscription { tenant, id }));
    }
    if let Some(id) = sk.strip_prefix(keys::TEST_CLOCK_PREFIX) {
        let id = billing_domain::kernel::ids::TestClockId::parse(id, "due_sk").ok()?;
        return Some(DueKind::Billing(BillingJob::TestClock { tenant, id }));
    }
    if let Some(id) = sk.strip_prefix(keys::INVOICE_PREFIX) {
        let invoice = billing_domain::kernel::ids::InvoiceId::parse(id, "due_sk").ok()?;
        return Some(DueKind::Payment(PaymentJob::Overdue { tenant, invoice }));
    }
    if let Some(id) = sk.strip_prefix(keys::PAYMENT_PREFIX) {
        let id = billing_domain::kernel::ids::PaymentId::parse(id, "due_sk").ok()?;
        return Some(DueKind::Payment(PaymentJob::Attempt { tenant, id }));
    }
    if let Some(account) = sk.strip_prefix(keys::DUNNING_PREFIX) {
        let account = billing_domain::kernel::ids::AccountId::parse(account, "due_sk").ok()?;
        return Some(DueKind::Payment(PaymentJob::Dunning { tenant, account }));
    }
    if let Some(rest) = sk.strip_prefix(keys::DUNNING_NOTICE_PREFIX) {
        let (account, key) = rest.split_once('#')?;
        return Some(DueKind::Payment(PaymentJob::DunningNotice {
            tenant,
            account: billing_domain::kernel::ids::AccountId::parse(account, "due_sk").ok()?,
            key: key.to_owned(),
        }));
    }
    if let Some((account, currency)) = keys::balance_of(sk) {
        return Some(DueKind::Billing(BillingJob::CreditExpiry {
            tenant,
            account,
            currency,
        }));
    }
    if let Some(id) = sk.strip_prefix(keys::WALLET_PREFIX) {
        let wallet = billing_domain::kernel::ids::WalletId::parse(id, "due_sk").ok()?;
        return Some(DueKind::Billing(BillingJob::Wallet { tenant, wallet }));
    }
    if let Some(id) = sk.strip_prefix(keys::ACCOUNT_PREFIX) {
        let account = billing_domain::kernel::ids::AccountId::parse(id, "due_sk").ok()?;
        return Some(DueKind::Billing(BillingJob::AccountPurge {
            tenant,
            account,
        }));
    }
    // An outbox item, or an event written before them that carries its own due entry.
    if let Some(id) = sk
        .strip_prefix(keys::OUTBOX_PREFIX)
        .or_else(|| sk.strip_prefix(keys::EVENT_PREFIX))
    {
        return Some(DueKind::Outbox {
            event_id: EventId::parse(id, "due_sk").ok()?,
        });
    }
    let rest = sk.strip_prefix(keys::WEBHOOK_DELIVERY_PREFIX)?;
    let (endpoint, delivery) = rest.split_once('#')?;
    Some(DueKind::WebhookRetry(DeliveryJob {
        tenant_id: tenant,
        endpoint_id: WebhookEndpointId::parse(endpoint, "due_sk").ok()?,
        delivery_id: DeliveryId::parse(delivery, "due_sk").ok()?,
    }))
}

/// The due item a `due_sk` stands for (on a shard or on a test clock).
pub(super) fn due_item(due_sk: &str) -> Option<DueItem> {
    let (due_at, pk, sk) = keys::parse_due(due_sk)?;
    let tenant_id = keys::tenant_of(&pk)?;
    Some(DueItem {
        tenant_id,
        due_at,
        kind: due_kind(tenant_id, &sk)?,
    })
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

impl DynamoStore {
    /// Hands a committed transaction's events and jobs on. A failure is only logged: the
    /// commit stands, and the due index brings the work back to the sweep.
    pub(super) async fn after_commit(&self, committed: AfterCommit) {
        let Some(dispatch) = &self.dispatch else {
            return;
        };
        let mut by_tenant: Vec<(TenantId, Vec<DomainEvent>)> = Vec::new();
        for (tenant, event) in committed.events {
            match by_tenant.iter_mut().find(|(t, _)| *t == tenant) {
                Some((_, events)) => events.push(event),
                None => by_tenant.push((tenant, vec![event])),
            }
        }
        for (tenant, events) in by_tenant {
            if let Err(err) = dispatch.publish(tenant, &events).await {
                tracing::warn!(%err, %tenant, "publishing after commit failed; the sweep will publish");
                continue;
            }
            if let Err(err) = self.mark_all_published(tenant, &events).await {
                tracing::warn!(%err, %tenant, "marking events published failed; the sweep may publish them again");
            }
        }
        for job in committed.jobs {
            if let Err(err) = dispatch.schedule_delivery(&job, SignedDuration::ZERO).await {
                tracing::warn!(%err, delivery = %job.delivery_id, "queueing a delivery failed; the sweep will queue it");
            }
        }
    }

    /// Marks a commit's events published: deletes their outbox items (the commit wrote
    /// them in the outbox partitions).
    async fn mark_all_published(
        &self,
        tenant: TenantId,
        events: &[DomainEvent],
    ) -> Result<(), StoreError> {
        let outboxed: Vec<keys::Key> = events
            .iter()
            .map(|event| keys::outbox(tenant, &event.id.to_string()))
            .collect();
        self.delete_outbox_items(&outboxed).await
    }

    /// Deletes outbox items, 25 per BatchWriteItem (a plain delete is 1 write unit, half a
    /// transactional one; nothing needs the deletes together, as each stands alone). Items
    /// DynamoDB leaves unprocessed are sent again, [`MARK_ATTEMPTS`] times in all; what is
    /// still left stays in the outbox and the sweep publishes it again (events are
    /// delivered at least once, by id). A delete of an item already gone is no error.
    async fn delete_outbox_items(&self, outboxed: &[keys::Key]) -> Result<(), StoreError> {
        for chunk in outboxed.chunks(MARKS_PER_BATCH) {
            let mut deletes = chunk
                .iter()
                .map(|key| {
                    aws_sdk_dynamodb::types::DeleteRequest::builder()
                        .set_key(Some(key.primary()))
                        .build()
                        .map(|d| {
                            aws_sdk_dynamodb::types::WriteRequest::builder()
                                .delete_request(d)
                                .build()
                        })
                        .map_err(|e| StoreError::Internal(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            for attempt in 0..MARK_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(MARK_RETRY_PAUSE * attempt).await;
                }
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut deletes))
                    .send()
                    .await
                    .map_err(sdk_error)?;
                deletes = output
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
                if deletes.is_empty() {
                    break;
                }
            }
            if !deletes.is_empty() {
                return Err(StoreError::Unavailable(format!(
                    "{} outbox deletes left unprocessed",
                    deletes.len()
                )));
            }
        }
        Ok(())
    }

    /// One page of one shard of a pass: up to `limit` items after the shard's position
    /// (or after the pass's `from`), due at or before `now`; and whether the shard is
    /// drained (DynamoDB returned no `LastEvaluatedKey`).
    async fn due_in_shard(
        &self,
        shard: String,
        cursor: &DueCursor,
        now: Timestamp,
        limit: usize,
    ) -> Result<(Vec<DueItem>, Option<String>, bool), StoreError> {
        // `~` sorts after every character of a key, so this is "due up to and including now".
        let upper = format!("{}~", keys::due_time(now));
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .expression_attribute_names("#pk", DUE_PK)
            .expression_attribute_names("#sk", DUE_SK)
            .expression_attribute_values(":shard", AttributeValue::S(shard.clone()))
            .expression_attribute_values(":upper", AttributeValue::S(upper.clone()))
            .projection_expression("#sk")
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        match cursor.from {
            Some(from) => {
                let lower = format!("{}~", keys::due_time(from));
                if lower >= upper {
                    return Ok((Vec::new(), None, true));
                }
                query = query
                    .key_condition_expression("#pk = :shard AND #sk BETWEEN :lower AND :upper")
                    .expression_attribute_values(":lower", AttributeValue::S(lower));
            }
            None => query = query.key_condition_expression("#pk = :shard AND #sk <= :upper"),
        }
        // Resuming after the last item read: the index keys and the item's own, all of
        // which its `due_sk` holds.
        if let Some(after) = cursor.after.get(&shard) {
            let (_, pk, sk) = keys::parse_due(after).ok_or_else(|| {
                StoreError::Internal(format!("unreadable sweep position {after}"))
            })?;
            query = query.set_exclusive_start_key(Some(HashMap::from([
                (DUE_PK.to_owned(), AttributeValue::S(shard.clone())),
                (DUE_SK.to_owned(), AttributeValue::S(after.clone())),
                (keys::PK.to_owned(), AttributeValue::S(pk)),
                (keys::SK.to_owned(), AttributeValue::S(sk)),
            ])));
        }
        let output = query.send().await.map_err(sdk_error)?;
        let sort_keys: Vec<String> = output
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| item.get(DUE_SK)?.as_s().ok().cloned())
            .collect();
        let drained = output.last_evaluated_key.is_none();
        let last = sort_keys.last().cloned();
        Ok((
            sort_keys.iter().filter_map(|sk| due_item(sk)).collect(),
            last,
            drained,
        ))
    }

    /// Puts `item` if `condition` holds; `false` when it did not.
    async fn put_if(
        &self,
        item: Item,
        condition: &str,
        values: Option<Item>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(is_condition_failure) => Ok(false),
            Err(err) => Err(sdk_error(err)),
        }
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn list_events(
        &self,
        tenant: TenantId,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<DomainEvent>, StoreError> {
        let admit = |e: &DomainEvent| filter.admits(e);
        let id_of = |e: &DomainEvent| e.id.to_string();
        match &filter.resource_id {
            Some(resource) => {
                let index = keys::event_resource_index(tenant, resource);
                let start = page.starting_after.as_deref().map(|id| {
                    let mut start = keys::event_of_resource(tenant, id, resource).all();
                    start.insert(GSI1_PK.to_owned(), AttributeValue::S(index.clone()));
                    start
                });
                let query = self.query_gsi1(index.clone()).scan_index_forward(false);
                self.scan_page(query, start, page, admit, id_of).await
            }
            None => {
                let after = page
                    .starting_after
                    .as_deref()
                    .map(|id| keys::event(tenant, id).sk);
                self.scan_shards(
                    ShardRange::newest_first(tenant, keys::EVENT_PREFIX, after.as_deref()),
                    page,
                    admit,
                    id_of,
                )
                .await
            }
        }
    }

    async fn get_event(
        &self,
        tenant: TenantId,
        id: EventId,
    ) -> Result<Option<DomainEvent>, StoreError> {
        // The event and its outbox item in one read: published unless the outbox item is
        // still there (in the outbox partitions or, written before them, beside the event;
        // for an event written before outbox items, its own due entry).
        let id = id.to_string();
        let wanted = vec![
            keys::event(tenant, &id).primary(),
            keys::outbox(tenant, &id).primary(),
            keys::outbox_beside_event(tenant, &id).primary(),
        ];
        let mut event = None;
        let mut outboxed = false;
        for item in self.batch_get(wanted, None).await? {
            let sk = item.get(keys::SK).and_then(|v| v.as_s().ok());
            if sk.is_some_and(|sk| sk.starts_with(keys::OUTBOX_PREFIX)) {
                outboxed = true;
            } else {
                outboxed |= item.contains_key(DUE_PK);
                event = Some(super::from_item::<DomainEvent>(item)?);
            }
        }
        Ok(event.map(|mut event| {
            event.published |= !outboxed;
            event
        }))
    }

    async fn mark_published(&self, tenant: TenantId, id: EventId) -> Result<(), StoreError> {
        let id_text = id.to_string();
        self.delete_outbox_items(&[
            keys::outbox(tenant, &id_text),
            keys::outbox_beside_event(tenant, &id_text),
        ])
        .await?;
        // The sweep's path (rare): the event itself is marked too, which also takes an
        // event written before outbox items out of the due index.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(keys::event(tenant, &id_text).primary()))
            .update_expression("SET published = :yes REMOVE #due_pk, #due_sk")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#due_pk", DUE_PK)
            .expression_attribute_names("#due_sk", DUE_SK)
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Gone already (TTL): nothing left to publish.
            Err(err) if err.as_service_error().is_some_and(is_condition_failure) => Ok(()),
            Err(err) => Err(sdk_error(err)),
        }
    }

    async fn due_items(&self, now: Timestamp, limit: usize) -> Result<Vec<DueItem>, StoreError> {
        let page = self.due_page(now, &DueCursor::default(), limit).await?;
        let mut due = page.items;
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
        // One range query per shard not yet drained, all at once.
        let mut queries = tokio::task::JoinSet::new();
        for shard in (0..DUE_SHARDS).map(keys::due_shard) {
            if cursor.drained.contains(&shard) {
                continue;
            }
            let (store, cursor) = (self.clone(), cursor.clone());
            queries.spawn(async move {
                let read = store
                    .due_in_shard(shard.clone(), &cursor, now, per_shard)
                    .await;
                read.map(|read| (shard, read))
            });
        }
        let mut next = cursor.clone();
        let mut items = Vec::new();
        while let Some(joined) = queries.join_next().await {
            let (shard, (due, last, drained)) =
                joined.map_err(|e| StoreError::Internal(e.to_string()))??;
            items.extend(due);
            if let Some(last) = last {
                next.after.insert(shard.clone(), last);
            }
            if drained {
                next.drained.insert(shard);
            }
        }
        let done = next.drained.len() == DUE_SHARDS as usize;
        Ok(DuePage {
            items,
            cursor: next,
            done,
        })
    }

    async fn sweep_checkpoint(&self) -> Result<Option<SweepCheckpoint>, StoreError> {
        self.get(&keys::sweep_checkpoint()).await
    }

    async fn save_sweep_checkpoint(&self, next: &SweepCheckpoint) -> Result<(), StoreError> {
        let item = to_item("sweep_checkpoint", next, &keys::sweep_checkpoint())?;
        let (condition, values) = if next.version <= 1 {
            ("attribute_not_exists(pk)", None)
        } else {
            (
                "version = :previous",
                Some(HashMap::from([(
                    ":previous".to_owned(),
                    AttributeValue::N((next.version - 1).to_string()),
                )])),
            )
        };
        let saved = self.put_if(item, condition, values).await?;
        if saved {
            Ok(())
        } else {
            Err(StoreError::VersionConflict {
                entity: "sweep checkpoint",
            })
        }
    }
}

#[async_trait]
impl WebhookStore for DynamoStore {
    async fn insert_webhook_endpoint(
        &self,
        tenant: TenantId,
        endpoint: &WebhookEndpoint,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            to_item(
                "webhook_endpoint",
                endpoint,
                &keys::webhook_endpoint(tenant, endpoint.id),
            )?,
            StoreError::AlreadyExists { entity: ENDPOINT },
        )?;
        tx.record(tenant, change)?;
        tx.commit().await
    }

    async fn update_webhook_endpoint(
        &self,
        tenant: TenantId,
        previous: &WebhookEndpoint,
        next: &WebhookEndpoint,
        change: Option<&Change>,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.replace_version(
            to_item(
                "webhook_endpoint",
                next,
                &keys::webhook_endpoint(tenant, next.id),
            )?,
            previous.version,
            ENDPOINT,
        )?;
        if let Some(change) = change {
            tx.record(tenant, change)?;
        }
        tx.commit().await
    }

    async fn delete_webhook_endpoint(
        &self,
        tenant: TenantId,
        endpoint: &WebhookEndpoint,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.delete(
            &keys::webhook_endpoint(tenant, endpoint.id),
            "version = :expected",
            HashMap::from([(
                ":expected".to_owned(),
                AttributeValue::N(endpoint.version.to_string()),
            )]),
            StoreError::VersionConflict { entity: ENDPOINT },
        )?;
        tx.record(tenant, change)?;
        tx.commit().await
    }

    async fn get_webhook_endpoint(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        self.get(&keys::webhook_endpoint(tenant, id)).await
    }

    async fn list_webhook_endpoints(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError> {
        let start = page
            .starting_after
            .as_deref()
            .and_then(|id| WebhookEndpointId::parse(id, "starting_after").ok())
            .map(|id| keys::webhook_endpoint(tenant, id).primary());
        let query = self.query_partition(
            keys::tenant_partition(tenant),
            keys::WEBHOOK_ENDPOINT_PREFIX,
        );
        self.query_page(query, start, page.limit).await
    }

    async fn insert_delivery(
        &self,
        tenant: TenantId,
        delivery: &WebhookDelivery,
        due_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.put_if(
            delivery_item(tenant, delivery, Some(due_at))?,
            "attribute_not_exists(pk)",
            None,
        )
        .await
    }

    async fn insert_due_deliveries(
        &self,
        tenant: TenantId,
        deliveries: &[WebhookDelivery],
        due_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        for delivery in deliveries {
            tx.create(
                delivery_item(tenant, delivery, Some(due_at))?,
                StoreError::AlreadyExists { entity: DELIVERY },
            )?;
            tx.committed.jobs.push(DeliveryJob {
                tenant_id: tenant,
                endpoint_id: delivery.endpoint_id,
                delivery_id: delivery.id,
            });
        }
        tx.commit().await
    }

    async fn update_delivery(
        &self,
        tenant: TenantId,
        expected_version: u64,
        next: &WebhookDelivery,
        due_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let replaced = self
            .put_if(
                delivery_item(tenant, next, due_at)?,
                "version = :expected",
                Some(HashMap::from([(
                    ":expected".to_owned(),
                    AttributeValue::N(expected_version.to_string()),
                )])),
            )
            .await?;
        if replaced {
            Ok(())
        } else {
            Err(StoreError::VersionConflict { entity: DELIVERY })
        }
    }

    async fn get_delivery(
        &self,
        tenant: TenantId,
        endpoint: WebhookEndpointId,
        id: DeliveryId,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        self.get(&keys::webhook_delivery(tenant, endpoint, id))
            .await
    }

    async fn list_deliveries(
        &self,
        tenant: TenantId,
        endpoint: WebhookEndpointId,
        page: &PageRequest,
    ) -> Result<Page<WebhookDelivery>, StoreError> {
        let after = page
            .starting_after
            .as_deref()
            .and_then(|id| DeliveryId::parse(id, "starting_after").ok())
            .map(|id| keys::webhook_delivery(tenant, endpoint, id).sk);
        self.query_shards_page(
            ShardRange::newest_first(
                tenant,
                &keys::webhook_deliveries_of(endpoint),
                after.as_deref(),
            ),
            page.limit,
        )
        .await
    }
}
