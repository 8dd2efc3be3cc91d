//! Usage: event items, rollups, distinct-value markers and quota snapshots.
//!
//! Exactness: a batch is written as TransactWriteItems of at most 100 items, each holding
//! its events (created only if their transaction id is new), the rollups they move (each
//! conditioned on the `version` its writer read), the distinct values seen for the first
//! time (created only if new) and the quota snapshots. A duplicate therefore cannot be
//! counted (its event item already exists, so its transaction writes nothing), and two
//! writers cannot both move a rollup from the same state. The billing step marks a period's
//! rollups billed under the same version condition in the transaction that writes the
//! invoice, so usage that lands after it is seen as late, never lost or billed twice.
//!
//! Each transaction also holds a ConditionCheck on the `version` of every subscription its
//! events were placed by, so a write planned from a cached subscription that has since
//! moved (cancelled, renewed) fails as `VersionConflict { entity: "subscription" }` and is
//! planned again from a fresh read.
//!
//! Request cost, per batch of N events for one subscription and metric (the subscription and
//! the metric cached by the app): which transaction ids exist (BatchGetItem, ⌈N/100⌉), the
//! rollup (BatchGetItem), for unique_count the markers (BatchGetItem); writes — the app
//! states one unit per event and [`pack_usage`] packs them into TransactWriteItems of at most
//! 100 items (events, the rollup, the subscription check; a quota snapshot and any threshold
//! events take room too when the metric has an entitlement). A full batch of 100 events is 2
//! write requests. A single event (`POST /v1/usage`) is 1 write request when the app's
//! instance wrote the rollup last (it plans from the rollup it cached), else the rollup read
//! and 1 write request: it reads no transaction id, its conditional put finds a duplicate.
//! DynamoDB bills transactional writes at 2 WCU per item (≤ 1 KB), so an event costs about
//! 2 WCU plus its share of the rollup and the check.
//! Invoice time reads one Query over the period's rollups (one item per metric), whatever
//! the number of events.

use billing_domain::kernel::time::later;
use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use billing_app::ports::*;
use billing_domain::kernel::ids::{AccountId, SubscriptionId, TenantId};
use jiff::{SignedDuration, Timestamp};

use super::{from_item, sdk_error, to_item, DynamoStore, Item, Transaction, MAX_TRANSACTION_ITEMS};
use crate::keys::{self, Key, PK, SK};

/// How long an event item (and so its transaction id) is kept: far past the grace window,
/// after which an event of its period would be refused anyway.
const EVENT_RETENTION: SignedDuration = SignedDuration::from_hours(90 * 24);

const ROLLUP_CONFLICT: StoreError = StoreError::VersionConflict {
    entity: "usage rollup",
};

fn rollup_key(tenant: TenantId, key: &RollupKey) -> Key {
    keys::rollup(tenant, key.subscription, key.period_start, &key.metric)
}

impl Transaction<'_> {
    pub(super) fn rollups(
        &mut self,
        tenant: TenantId,
        rollups: &[RollupWrite],
    ) -> Result<&mut Self, StoreError> {
        for write in rollups {
            let rollup = &write.next;
            let key = rollup_key(tenant, &rollup.key());
            let mut item = to_item("usage_rollup", rollup, &key)?;
            // Late usage waits in the due index for its supplemental invoice.
            if let Some(at) = rollup.late_due_at {
                item.extend(match rollup.test_clock {
                    Some(clock) => keys::due_on_clock(clock, &key, at),
                    None => keys::due(&key, at),
                });
            }
            if write.expected_version == 0 {
                self.create(item, ROLLUP_CONFLICT)?;
            } else {
                self.put(
                    item,
                    "version = :expected",
                    Some(HashMap::from([(
                        ":expected".to_owned(),
                        AttributeValue::N(write.expected_version.to_string()),
                    )])),
                    ROLLUP_CONFLICT,
                )?;
            }
        }
        Ok(self)
    }
}

impl DynamoStore {
    /// Every stored item among `keys` (consistent reads, 100 keys per request, unprocessed
    /// keys retried), projected to `projection` when given.
    pub(super) async fn batch_get(
        &self,
        keys: Vec<Item>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .set_projection_expression(projection.map(str::to_owned))
                    .build()
                    .map_err(|e| StoreError::Internal(e.to_string()))?,
            );
            while let Some(request) = pending.take() {
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                found.extend(
                    output
                        .responses
                        .and_then(|mut r| r.remove(&self.table))
                        .unwrap_or_default(),
                );
                pending = output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
            }
        }
        Ok(found)
    }
}

fn string(item: &Item, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

#[async_trait]
impl UsageStore for DynamoStore {
    async fn stored_usage_events(
        &self,
        tenant: TenantId,
        transaction_ids: &[String],
    ) -> Result<BTreeSet<String>, StoreError> {
        let by_pk: HashMap<String, &String> = transaction_ids
            .iter()
            .map(|id| (keys::usage_event(tenant, id).pk, id))
            .collect();
        let keys = transaction_ids
            .iter()
            .map(|id| keys::usage_event(tenant, id).primary())
            .collect();
        let items = self.batch_get(keys, Some("pk")).await?;
        Ok(items
            .iter()
            .filter_map(|item| by_pk.get(&string(item, PK)?).map(|id| (*id).clone()))
            .collect())
    }

    async fn get_rollups(
        &self,
        tenant: TenantId,
        keys: &[RollupKey],
    ) -> Result<Vec<Rollup>, StoreError> {
        let keys = keys
            .iter()
            .map(|k| rollup_key(tenant, k).primary())
            .collect();
        self.batch_get(keys, None)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn seen_distinct_values(
        &self,
        tenant: TenantId,
        key: &RollupKey,
        values: &[String],
    ) -> Result<BTreeSet<String>, StoreError> {
        let marker = |v: &str| {
            keys::distinct_value(tenant, key.subscription, key.period_start, &key.metric, v)
        };
        let by_sk: HashMap<String, &String> = values.iter().map(|v| (marker(v).sk, v)).collect();
        let keys = values.iter().map(|v| marker(v).primary()).collect();
        let items = self.batch_get(keys, Some("sk")).await?;
        Ok(items
            .iter()
            .filter_map(|item| by_sk.get(&string(item, SK)?).map(|v| (*v).clone()))
            .collect())
    }

    async fn record_usage(
        &self,
        tenant: TenantId,
        units: &[UsageWrite],
    ) -> Result<(), StepsFailed> {
        let mut written = 0;
        for (write, count) in pack_usage(units, MAX_TRANSACTION_ITEMS) {
            self.record_usage_write(tenant, &write)
                .await
                .map_err(|error| StepsFailed { written, error })?;
            written += count;
        }
        Ok(())
    }

    async fn list_rollups(
        &self,
        tenant: TenantId,
        subscription: SubscriptionId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Rollup>, StoreError> {
        let prefix = keys::rollups_of(subscription);
        let last = to - SignedDuration::from_millis(1);
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(keys::subscription_partition(tenant, subscription)),
            )
            .expression_attribute_values(
                ":from",
                AttributeValue::S(format!("{prefix}{}#", keys::due_time(from))),
            )
            // `~` sorts after every character of a metric code.
            .expression_attribute_values(
                ":to",
                AttributeValue::S(format!("{prefix}{}#~", keys::due_time(last))),
            );
        self.query_all(query)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn get_quota(
        &self,
        tenant: TenantId,
        account: AccountId,
        metric: &str,
    ) -> Result<Option<QuotaSnapshot>, StoreError> {
        self.get(&keys::quota(tenant, account, metric)).await
    }

    async fn bill_late_usage(
        &self,
        tenant: TenantId,
        invoice: Option<&InvoiceWrite>,
        rollups: &[RollupWrite],
        change: Option<&Change>,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        if let Some(invoice) = invoice {
            tx.invoice(tenant, invoice, true, 0)?;
        }
        tx.rollups(tenant, rollups)?;
        if let Some(change) = change {
            tx.record(tenant, change)?;
        }
        tx.commit().await
    }
}

impl DynamoStore {
    /// One transaction of packed usage units.
    async fn record_usage_write(
        &self,
        tenant: TenantId,
        write: &UsageWrite,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        for stored in &write.events {
            let mut item = to_item(
                "usage_event",
                stored,
                &keys::usage_event(tenant, &stored.event.transaction_id),
            )?;
            item.insert(
                keys::TTL.to_owned(),
                super::epoch_seconds(later(stored.received_at, EVENT_RETENTION)),
            );
            tx.create(
                item,
                StoreError::AlreadyExists {
                    entity: "usage event",
                },
            )?;
        }
        for (id, version) in &write.subscriptions {
            tx.check_version(
                &keys::subscription_primary(tenant, *id),
                *version,
                "subscription",
            )?;
        }
        tx.rollups(tenant, &write.rollups)?;
        for (key, value) in &write.distinct_values {
            let marker = keys::distinct_value(
                tenant,
                key.subscription,
                key.period_start,
                &key.metric,
                value,
            );
            let mut item = marker.all();
            item.insert(
                super::ENTITY_ATTRIBUTE.to_owned(),
                AttributeValue::S("distinct_value".into()),
            );
            tx.create(item, ROLLUP_CONFLICT)?;
        }
        for quota in &write.quotas {
            tx.upsert(to_item(
                "quota",
                quota,
                &keys::quota(tenant, quota.account_id, &quota.metric),
            )?)?;
        }
        for change in &write.changes {
            tx.record(tenant, change)?;
        }
        tx.commit().await
    }
}
