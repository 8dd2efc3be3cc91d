//! The DynamoDB single-table store. Every multi-item change is one TransactWriteItems:
//! the entity, its uniqueness claims, its audit record and its domain events commit
//! together or not at all. Errors are mapped to [`StoreError`] here and nowhere else.

mod accounts;
mod audit;
mod billing;
mod catalog;
mod coupons;
mod credits;
mod documents;
mod dunning;
mod erasure;
mod events;
mod hosted;
mod idempotency;
mod packed;

pub use packed::unpack;
mod payments;
mod tax;
mod tenants;
mod usage;
mod wallets;

use std::collections::HashMap;
use std::fmt::Debug;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use billing_app::ports::*;
use billing_domain::kernel::ids::TenantId;
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::keys::{self, Key, GSI1, GSI1_PK, PK, SK};

pub(super) type Item = HashMap<String, AttributeValue>;

/// The attribute naming what an item is, for people reading the table.
pub(super) const ENTITY_ATTRIBUTE: &str = "entity";

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// Publishes events (and queues resends) right after their transaction commits; without
    /// it they wait for the due-index sweep.
    dispatch: Option<std::sync::Arc<dyn Dispatch>>,
    /// How long audit records are kept: their TTL is this long after they were made.
    audit_retention: jiff::SignedDuration,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            dispatch: None,
            audit_retention: audit_retention(
                billing_domain::customers::erasure::DEFAULT_AUDIT_RETENTION_DAYS,
            ),
        }
    }

    /// Keeps audit records `days` days (see [`crate::Config`]'s `AUDIT_RETENTION_DAYS`).
    pub fn with_audit_retention(mut self, days: u32) -> Self {
        self.audit_retention = audit_retention(days);
        self
    }

    /// Publishes every committed event through `dispatch` right after its commit.
    pub fn with_dispatch(mut self, dispatch: std::sync::Arc<dyn Dispatch>) -> Self {
        self.dispatch = Some(dispatch);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        key: &Key,
    ) -> Result<Option<T>, StoreError> {
        self.get_item(key).await?.map(from_item).transpose()
    }

    /// [`Self::get`]'s read, apart from its type: one copy for the 30-odd types read.
    async fn get_item(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key.primary()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(output.item)
    }

    /// One page of everything `query` returns from `start`.
    pub(super) async fn query_page<T: DeserializeOwned + Send>(
        &self,
        query: QueryFluentBuilder,
        start: Option<Item>,
        limit: usize,
    ) -> Result<Page<T>, StoreError> {
        let page = unfiltered(limit);
        self.scan_page(query, start, &page, |_: &T| true, |_: &T| String::new())
            .await
    }

    /// One page of everything `range` holds (see [`Self::scan_shards`]).
    pub(super) async fn query_shards_page<T: DeserializeOwned + Send>(
        &self,
        range: ShardRange<'_>,
        limit: usize,
    ) -> Result<Page<T>, StoreError> {
        let page = unfiltered(limit);
        self.scan_shards(range, &page, |_: &T| true, |_: &T| String::new())
            .await
    }

    /// Runs `query` page by page from `start`, keeping items `admit` accepts, until one
    /// more than the page's limit is found, the query is exhausted, or the page's scan
    /// budget of examined items is spent: then the page ends at the last item examined
    /// (`cursor` gives its id), so a filter no key serves costs each request a bounded read.
    pub(super) async fn scan_page<T: DeserializeOwned + Send>(
        &self,
        query: QueryFluentBuilder,
        start: Option<Item>,
        page: &PageRequest,
        admit: impl Fn(&T) -> bool + Sync,
        cursor: impl Fn(&T) -> String + Sync,
    ) -> Result<Page<T>, StoreError> {
        self.scan_merged(vec![Source::new(query, start)], false, page, admit, cursor)
            .await
    }

    /// [`Self::scan_page`] over the same range of every shard partition of a tenant: each
    /// shard resumes after the range's `after`, and the items are examined in sort-key
    /// order across shards, so the page, its order and its cursor are those of one
    /// partition holding them all.
    pub(super) async fn scan_shards<T: DeserializeOwned + Send>(
        &self,
        range: ShardRange<'_>,
        page: &PageRequest,
        admit: impl Fn(&T) -> bool + Sync,
        cursor: impl Fn(&T) -> String + Sync,
    ) -> Result<Page<T>, StoreError> {
        let sources = range
            .partitions
            .into_iter()
            .map(|pk| {
                let start = range.after.map(|sk| {
                    HashMap::from([
                        (PK.to_owned(), AttributeValue::S(pk.clone())),
                        (SK.to_owned(), AttributeValue::S(sk.to_owned())),
                    ])
                });
                let query = self
                    .query_partition(pk, range.sk_prefix)
                    .scan_index_forward(!range.descending);
                Source::new(query, start)
            })
            .collect();
        self.scan_merged(sources, range.descending, page, admit, cursor)
            .await
    }

    /// Examines the items of `sources` one at a time in sort-key order (the smallest, or
    /// the largest when `descending`, of every source's next item), as `scan_page` says.
    async fn scan_merged<T: DeserializeOwned + Send>(
        &self,
        sources: Vec<Source>,
        descending: bool,
        page: &PageRequest,
        admit: impl Fn(&T) -> bool + Sync,
        cursor: impl Fn(&T) -> String + Sync,
    ) -> Result<Page<T>, StoreError> {
        let limit = page.limit;
        let mut items = Vec::with_capacity(limit + 1);
        let budget_spent_at = examine_merged(sources, descending, page, &mut |item| {
            let item: T = from_item(item)?;
            let scanned = cursor(&item);
            if admit(&item) {
                items.push(item);
            }
            Ok((items.len(), scanned))
        })
        .await?;
        if let Some(scanned) = budget_spent_at {
            return Ok(Page {
                items,
                has_more: true,
                scanned_to: Some(scanned),
            });
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Page::new(items, has_more))
    }

    /// Every item a query returns, following its pages. For small, bounded collections
    /// (the versions of one plan), never for tenant-wide lists.
    pub(super) async fn query_all(
        &self,
        query: QueryFluentBuilder,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let output = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            items.extend(output.items.unwrap_or_default());
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// The id of the item that owns a unique value, read from its claim.
    pub(super) async fn claim_owner(&self, claim: &Key) -> Result<Option<String>, StoreError> {
        Ok(self.get::<Claim>(claim).await?.map(|c| c.owner_id))
    }

    pub(super) fn query_partition(&self, pk: String, sk_prefix: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .expression_attribute_values(":prefix", AttributeValue::S(sk_prefix.to_owned()))
    }

    pub(super) fn query_gsi1(&self, gsi1pk: String) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", GSI1_PK)
            .expression_attribute_values(":pk", AttributeValue::S(gsi1pk))
    }

    pub(super) fn transaction(&self) -> Transaction<'_> {
        Transaction {
            store: self,
            writes: Vec::new(),
            on_condition_failure: Vec::new(),
            committed: events::AfterCommit::default(),
            invoice_numbers: None,
        }
    }
}

/// The same sort-key range of every shard partition of a tenant ([`keys::tenant_shards`]),
/// listed as one.
pub(super) struct ShardRange<'a> {
    partitions: Vec<String>,
    sk_prefix: &'a str,
    /// The sort key of the last item of the previous page.
    after: Option<&'a str>,
    /// Greatest sort key (newest id) first.
    descending: bool,
}

impl<'a> ShardRange<'a> {
    /// The tenant's items whose sort keys start with `sk_prefix`, smallest first, after `after`.
    pub(super) fn oldest_first(
        tenant: TenantId,
        sk_prefix: &'a str,
        after: Option<&'a str>,
    ) -> Self {
        Self {
            partitions: keys::tenant_shards(tenant),
            sk_prefix,
            after,
            descending: false,
        }
    }

    /// The same, greatest first.
    pub(super) fn newest_first(
        tenant: TenantId,
        sk_prefix: &'a str,
        after: Option<&'a str>,
    ) -> Self {
        Self {
            descending: true,
            ..Self::oldest_first(tenant, sk_prefix, after)
        }
    }
}

/// A page that admits every item, so it fills (or the query ends) first.
fn unfiltered(limit: usize) -> PageRequest {
    PageRequest {
        scan_budget: usize::MAX,
        ..PageRequest::first(limit)
    }
}

/// One query of a merged list: where it resumes, and what it returned but was not
/// examined yet.
pub(super) struct Source {
    query: QueryFluentBuilder,
    start: Option<Item>,
    buffered: std::collections::VecDeque<Item>,
    exhausted: bool,
}

impl Source {
    fn new(query: QueryFluentBuilder, start: Option<Item>) -> Self {
        Self {
            query,
            start,
            buffered: std::collections::VecDeque::new(),
            exhausted: false,
        }
    }

    fn has_more(&self) -> bool {
        !self.buffered.is_empty() || !self.exhausted
    }
}

/// Reads the next page (of at most `room` items) of every source that has nothing
/// buffered and is not exhausted, concurrently, until each has an item or is exhausted:
/// only then is the smallest buffered item the next one in order.
async fn refill(sources: &mut [Source], room: usize) -> Result<(), StoreError> {
    let room = i32::try_from(room.max(1)).unwrap_or(i32::MAX);
    loop {
        let mut reads = tokio::task::JoinSet::new();
        for (index, source) in sources.iter_mut().enumerate() {
            if source.buffered.is_empty() && !source.exhausted {
                let query = source
                    .query
                    .clone()
                    .set_exclusive_start_key(source.start.take())
                    .limit(room);
                reads.spawn(async move { (index, query.send().await) });
            }
        }
        if reads.is_empty() {
            return Ok(());
        }
        while let Some(joined) = reads.join_next().await {
            let (index, output) = joined.map_err(|e| StoreError::Internal(e.to_string()))?;
            let output = output.map_err(sdk_error)?;
            let source = &mut sources[index];
            source.buffered.extend(output.items.unwrap_or_default());
            source.start = output.last_evaluated_key;
            source.exhausted = source.start.is_none();
        }
    }
}

/// Takes the next item in sort-key order from the sources' buffers.
fn next_in_order(sources: &mut [Source], descending: bool) -> Option<Item> {
    let sort_key = |source: &Source| {
        source
            .buffered
            .front()
            .and_then(|item| item.get(SK))
            .and_then(|sk| sk.as_s().ok())
            .cloned()
    };
    let mut best: Option<(usize, String)> = None;
    for (index, source) in sources.iter().enumerate() {
        let Some(sk) = sort_key(source) else {
            continue;
        };
        let better = best.as_ref().is_none_or(|(_, best_sk)| {
            if descending {
                sk > *best_sk
            } else {
                sk < *best_sk
            }
        });
        if better {
            best = Some((index, sk));
        }
    }
    // A single source (an index query) needs no order: its next item is the next.
    let index = match best {
        Some((index, _)) => index,
        None => sources.iter().position(|s| !s.buffered.is_empty())?,
    };
    sources[index].buffered.pop_front()
}

/// A uniqueness claim: the item that makes a value (an external_id, a code) taken, naming
/// the id of its owner.
#[derive(serde::Deserialize)]
struct Claim {
    owner_id: String,
}

pub(super) fn claim_item(key: &Key, owner_id: &str) -> Item {
    let mut item = key.all();
    item.insert(
        "owner_id".to_owned(),
        AttributeValue::S(owner_id.to_owned()),
    );
    item.insert(
        ENTITY_ATTRIBUTE.to_owned(),
        AttributeValue::S("unique_claim".into()),
    );
    item
}

/// The condition that a claim is still held by `owner_id`, for releasing it.
pub(super) fn claim_held_by(owner_id: &str) -> (&'static str, Item) {
    (
        "owner_id = :owner",
        HashMap::from([(":owner".to_owned(), AttributeValue::S(owner_id.to_owned()))]),
    )
}

/// [`DynamoStore::scan_merged`]'s loop, apart from the item type (one copy for every list
/// read): hands each item to `examine`, which answers how many items the page holds now
/// and the examined item's cursor. Ends when the page is full or the sources are exhausted
/// (`None`), or when the scan budget is spent with items left (the last cursor examined).
async fn examine_merged(
    mut sources: Vec<Source>,
    descending: bool,
    page: &PageRequest,
    examine: &mut (dyn FnMut(Item) -> Result<(usize, String), StoreError> + Send),
) -> Result<Option<String>, StoreError> {
    let limit = page.limit;
    let budget = page.scan_budget.max(1);
    let mut examined = 0;
    loop {
        // No server-side filter: DynamoDB's Limit counts exactly the items examined.
        let room = (limit + 1).min(budget - examined);
        refill(&mut sources, room).await?;
        let Some(next) = next_in_order(&mut sources, descending) else {
            return Ok(None);
        };
        examined += 1;
        let (kept, scanned) = examine(next)?;
        if kept > limit {
            return Ok(None);
        }
        if examined >= budget && sources.iter().any(Source::has_more) {
            return Ok(Some(scanned));
        }
    }
}

pub(super) fn from_item<T: DeserializeOwned>(mut item: Item) -> Result<T, StoreError> {
    packed::unpack(&mut item)?;
    serde_dynamo::from_item(item).map_err(|e| StoreError::Internal(format!("unreadable item: {e}")))
}

/// An entity as a table item: its fields, its keys and what it is.
pub(super) fn to_item<T: Serialize>(
    entity: &str,
    value: &T,
    key: &Key,
) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(value)
        .map_err(|e| StoreError::Internal(format!("unstorable item: {e}")))?;
    item.extend(key.all());
    item.insert(
        ENTITY_ATTRIBUTE.to_owned(),
        AttributeValue::S(entity.to_owned()),
    );
    Ok(item)
}

/// An audit record item (its `changes` packed), kept for `retention`.
fn audit_item(
    tenant: TenantId,
    audit: &billing_domain::events::record::AuditRecord,
    retention: jiff::SignedDuration,
) -> Result<Item, StoreError> {
    let key = keys::audit(tenant, &audit.id.to_string(), &audit.entity_id);
    let mut item = packed::to_packed_item("audit", audit, &key, &[])?;
    item.insert(
        keys::TTL.to_owned(),
        epoch_seconds(billing_domain::kernel::time::later(audit.at, retention)),
    );
    Ok(item)
}

/// The size DynamoDB counts for an invoice's item as this store writes it (packed, not
/// pending): what the simulation prices its writes by.
pub fn stored_invoice_bytes(
    tenant: TenantId,
    invoice: &billing_domain::billing::invoice::Invoice,
) -> Result<usize, StoreError> {
    billing::invoice_item(tenant, invoice).map(|item| packed::item_bytes(&item))
}

/// The size DynamoDB counts for a subscription's item as this store writes it (packed):
/// what the simulation prices its writes and reads by.
pub fn stored_subscription_bytes(
    tenant: TenantId,
    subscription: &billing_domain::billing::subscription::Subscription,
) -> Result<usize, StoreError> {
    billing::subscription_item(tenant, subscription).map(|item| packed::item_bytes(&item))
}

/// The size DynamoDB counts for an invoice's item while it waits at `stage` of the
/// finalizer (with its `pending` and hand-over keys and its finalization terms): what the
/// simulation prices the writes of a draft, its numbering and its follow-ups by.
pub fn stored_pending_invoice_bytes(
    tenant: TenantId,
    invoice: &billing_domain::billing::invoice::Invoice,
    stage: PendingStage,
    finalization: &Finalization,
) -> Result<usize, StoreError> {
    let item = billing::pending_invoice_item(tenant, invoice, stage, finalization)?;
    Ok(packed::item_bytes(&item))
}

/// The size DynamoDB counts for an audit record's item and for each event's item as this
/// store writes them (packed): what the simulation prices their writes by.
pub fn stored_change_bytes(
    tenant: TenantId,
    change: &Change,
) -> Result<(usize, Vec<usize>), StoreError> {
    let audit = audit_item(tenant, &change.audit, jiff::SignedDuration::ZERO)?;
    let events = change
        .events
        .iter()
        .map(|event| events::event_item(tenant, event).map(|item| packed::item_bytes(&item)))
        .collect::<Result<_, _>>()?;
    Ok((packed::item_bytes(&audit), events))
}

fn audit_retention(days: u32) -> jiff::SignedDuration {
    jiff::SignedDuration::from_hours(24 * i64::from(days))
}

pub(super) fn epoch_seconds(t: Timestamp) -> AttributeValue {
    AttributeValue::N(t.as_second().to_string())
}

/// Maps an SDK failure once: throttling and transport faults are retryable, the rest is not.
pub(super) fn sdk_error<E: ProvideErrorMetadata + Debug>(
    err: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError {
    const RETRYABLE: &[&str] = &[
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "TransactionInProgressException",
    ];
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(format!("{err:?}"))
        }
        SdkError::ServiceError(service)
            if service.err().code().is_some_and(|c| RETRYABLE.contains(&c)) =>
        {
            StoreError::Unavailable(service.err().code().unwrap_or_default().to_owned())
        }
        // A server-side failure without a code of its own is worth another try.
        SdkError::ServiceError(service) if service.raw().status().is_server_error() => {
            StoreError::Unavailable(format!("HTTP {}", service.raw().status().as_u16()))
        }
        _ => StoreError::Internal(format!(
            "{}: {}",
            err.code().unwrap_or("unknown"),
            err.message().unwrap_or("no message")
        )),
    }
}

/// One TransactWriteItems under construction; each write remembers which error a failure
/// of its condition means, so a cancellation maps to the right domain conflict.
pub(super) struct Transaction<'a> {
    store: &'a DynamoStore,
    writes: Vec<TransactWriteItem>,
    on_condition_failure: Vec<StoreError>,
    /// What to hand to the dispatcher once the transaction has committed.
    committed: events::AfterCommit,
    /// The tenant's invoice numbers this transaction uses; the sequence moves over them
    /// with one update when it commits.
    invoice_numbers: Option<billing::InvoiceNumbers>,
}

/// Most writes one TransactWriteItems takes.
pub(super) const MAX_TRANSACTION_ITEMS: usize = 100;

impl Transaction<'_> {
    pub(super) fn put(
        &mut self,
        item: Item,
        condition: &str,
        values: Option<Item>,
        on_failure: StoreError,
    ) -> Result<&mut Self, StoreError> {
        let put = Put::builder()
            .table_name(&self.store.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.writes
            .push(TransactWriteItem::builder().put(put).build());
        self.on_condition_failure.push(on_failure);
        Ok(self)
    }

    /// Writes an item whatever is stored (a snapshot whose writers are serialized by
    /// another item of the same transaction).
    pub(super) fn upsert(&mut self, item: Item) -> Result<&mut Self, StoreError> {
        let put = Put::builder()
            .table_name(&self.store.table)
            .set_item(Some(item))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.writes
            .push(TransactWriteItem::builder().put(put).build());
        self.on_condition_failure
            .push(StoreError::Internal("an unconditional put failed".into()));
        Ok(self)
    }

    /// Creates an item that must not exist yet.
    pub(super) fn create(
        &mut self,
        item: Item,
        on_failure: StoreError,
    ) -> Result<&mut Self, StoreError> {
        self.put(item, "attribute_not_exists(pk)", None, on_failure)
    }

    /// Replaces an item whose stored `version` must still be `expected`.
    pub(super) fn replace_version(
        &mut self,
        item: Item,
        expected: u64,
        entity: &'static str,
    ) -> Result<&mut Self, StoreError> {
        self.put(
            item,
            "version = :expected",
            Some(HashMap::from([(
                ":expected".to_owned(),
                AttributeValue::N(expected.to_string()),
            )])),
            StoreError::VersionConflict { entity },
        )
    }

    /// Writes nothing, but commits only while the item's `version` is still `expected`.
    pub(super) fn check_version(
        &mut self,
        key: &Key,
        expected: u64,
        entity: &'static str,
    ) -> Result<&mut Self, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.store.table)
            .set_key(Some(key.primary()))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.writes
            .push(TransactWriteItem::builder().condition_check(check).build());
        self.on_condition_failure
            .push(StoreError::VersionConflict { entity });
        Ok(self)
    }

    pub(super) fn delete(
        &mut self,
        key: &Key,
        condition: &str,
        values: Item,
        on_failure: StoreError,
    ) -> Result<&mut Self, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.store.table)
            .set_key(Some(key.primary()))
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.writes
            .push(TransactWriteItem::builder().delete(delete).build());
        self.on_condition_failure.push(on_failure);
        Ok(self)
    }

    /// Updates (or creates) an item with `expression` under `condition`.
    pub(super) fn update(
        &mut self,
        key: &Key,
        expression: &str,
        condition: Option<&str>,
        values: Item,
        on_failure: StoreError,
    ) -> Result<&mut Self, StoreError> {
        let update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.store.table)
            .set_key(Some(key.primary()))
            .update_expression(expression)
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.writes
            .push(TransactWriteItem::builder().update(update).build());
        self.on_condition_failure.push(on_failure);
        Ok(self)
    }

    /// Adds the change's audit record, its domain events, each with its outbox item, and the
    /// customer email each event asks for (a pending notice, due at once).
    pub(super) fn record(
        &mut self,
        tenant: TenantId,
        change: &Change,
    ) -> Result<&mut Self, StoreError> {
        let item = audit_item(tenant, &change.audit, self.store.audit_retention)?;
        self.create(item, StoreError::Internal("audit record id reused".into()))?;
        for event in &change.events {
            self.create(
                events::event_item(tenant, event)?,
                StoreError::Internal("event id reused".into()),
            )?;
            if let Some(notice) = PendingNotice::for_event(event) {
                self.create(
                    dunning::notice_item(tenant, &notice)?,
                    StoreError::Internal("event id reused".into()),
                )?;
            }
            self.create(
                events::outbox_item(tenant, event),
                StoreError::Internal("event id reused".into()),
            )?;
            self.committed.events.push((tenant, event.clone()));
        }
        Ok(self)
    }

    /// How many writes the transaction holds (the sequence update it will add included).
    pub(super) fn len(&self) -> usize {
        self.writes.len() + usize::from(self.invoice_numbers.is_some())
    }

    /// Takes over another transaction's writes, so that several steps built one by one
    /// commit as one.
    pub(super) fn absorb(&mut self, other: Transaction<'_>) -> Result<&mut Self, StoreError> {
        self.writes.extend(other.writes);
        self.on_condition_failure.extend(other.on_condition_failure);
        self.committed.events.extend(other.committed.events);
        self.committed.jobs.extend(other.committed.jobs);
        if let Some(numbers) = other.invoice_numbers {
            self.use_invoice_numbers(numbers)?;
        }
        Ok(self)
    }

    pub(super) async fn commit(mut self) -> Result<(), StoreError> {
        self.move_invoice_sequence()?;
        let result = self
            .store
            .client
            .transact_write_items()
            .set_transact_items(Some(self.writes))
            .send()
            .await;
        let err = match result {
            Ok(_) => {
                self.store.after_commit(self.committed).await;
                return Ok(());
            }
            Err(err) => err,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            err.as_service_error()
        {
            let reasons = cancelled.cancellation_reasons();
            if let Some(index) = reasons
                .iter()
                .position(|r| r.code() == Some("ConditionalCheckFailed"))
            {
                return Err(self.on_condition_failure[index].clone());
            }
            if reasons
                .iter()
                .any(|r| matches!(r.code(), Some("TransactionConflict" | "ThrottlingError")))
            {
                return Err(StoreError::Unavailable("transaction conflict".into()));
            }
        }
        Err(sdk_error(err))
    }
}

#[async_trait]
impl HealthProbe for DynamoStore {
    async fn ready(&self) -> Result<(), StoreError> {
        self.get::<serde::de::IgnoredAny>(&keys::health_probe())
            .await
            .map(|_| ())
    }
}
