//! The store as the simulation sees it: the in-memory store (held to the DynamoDB store's
//! contract) behind a decorator that, for every call, sends the DynamoDB requests the
//! DynamoDB store issues for it through the simulated DynamoDB ([`super::model`]) before
//! the in-memory store applies it; and after a write, does what the DynamoDB store does
//! after a commit (publish its events, mark them published).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use billing_app::ports::*;
use billing_domain::billing::invoice::Invoice;
use billing_domain::billing::simulation::{SimulationChunk, SimulationRun};
use billing_domain::billing::subscription::Subscription;
use billing_domain::billing::test_clock::TestClock;
use billing_domain::catalog::metric::Metric;
use billing_domain::catalog::plan::{Plan, PlanVersion};
use billing_domain::collection::credit_note::CreditNote;
use billing_domain::collection::dunning::{DunningCase, DunningPolicy};
use billing_domain::collection::payment::Payment;
use billing_domain::collection::retry::PaymentSettings;
use billing_domain::coupons::account::AccountDiscounts;
use billing_domain::coupons::coupon::Coupon;
use billing_domain::credits::balance::{Balance, BalanceChange, BalanceTransaction, CreditGrant};
use billing_domain::customers::access::ApiKey;
use billing_domain::customers::account::Account;
use billing_domain::customers::limits::LimitSettings;
use billing_domain::customers::payment_method::PaymentProfile;
use billing_domain::customers::staff::{IdentityProvider, IssuerTrust};
use billing_domain::customers::tenant::Tenant;
use billing_domain::documents::branding::Branding;
use billing_domain::documents::email::EmailSettings;
use billing_domain::documents::stored::StoredDocument;
use billing_domain::events::record::{AuditRecord, DomainEvent};
use billing_domain::events::webhook::{WebhookDelivery, WebhookEndpoint};
use billing_domain::hosted::link::HostedLink;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{
    AccountId, ApiKeyId, CouponId, CreditGrantId, CreditNoteId, DeliveryId, EventId, InvoiceId,
    MetricId, PaymentId, PlanId, SubscriptionId, TaxRateId, TenantId, TestClockId, WalletId,
    WebhookEndpointId,
};
use billing_domain::tax::rates::{TaxRate, TaxSettings};
use billing_domain::wallets::wallet::{Wallet, WalletChange, WalletTransaction};
use billing_memory::MemoryStore;

use billing_aws::keys::{self, Key};
use jiff::Timestamp;
use serde::Serialize;
use tokio::time::Instant;

use super::model::{write_units, Dynamo, Op, Request};
use super::queues::DispatchSim;

/// Most writes one TransactWriteItems takes (the DynamoDB store's `MAX_TRANSACTION_ITEMS`).
const MAX_TRANSACTION_ITEMS: u32 = 100;
/// An entry of the `due` or `pending` index, which project keys only: its index keys and
/// the item's (`due_sk` repeats the item's key after the due time).
const INDEX_ENTRY_BYTES: usize = 300;

/// Outbox deletes per BatchWriteItem (the DynamoDB store's `MARKS_PER_BATCH`).
const MARKS_PER_BATCH: usize = 25;

/// An outbox item: its keys, its due-index keys and its expiry.
const OUTBOX_BYTES: usize = 250;

/// How far invoicing got: drafts written and numbers used, and when the last was.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks {
    pub drafted: u64,
    pub last_draft: Option<Instant>,
    pub numbered: u64,
    pub last_number: Option<Instant>,
    pub largest_invoice_items: InvoiceItemBytes,
}

/// The largest invoice item each of a renewal's three invoice writes wrote, in bytes as
/// DynamoDB counts them: under 1 KB each is a write unit (two, transactional) instead of
/// two (four).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvoiceItemBytes {
    /// The draft, pending its number.
    pub drafted: usize,
    /// Numbered, pending its follow-ups.
    pub numbered: usize,
    /// Its follow-ups written: an update, charged for the pending item it starts from.
    pub followed_up: usize,
}

/// The in-memory store behind the simulated DynamoDB.
pub struct SimStore {
    inner: Arc<MemoryStore>,
    dynamo: Dynamo,
    dispatch: Arc<DispatchSim>,
    marks: std::sync::Mutex<Marks>,
    /// The finalization terms of numbered invoices until their follow-ups, which
    /// `finish_invoice` is not handed but the item it updates holds.
    terms: std::sync::Mutex<std::collections::HashMap<InvoiceId, Finalization>>,
}

impl SimStore {
    pub fn new(inner: Arc<MemoryStore>, dynamo: Dynamo, dispatch: Arc<DispatchSim>) -> Self {
        Self {
            inner,
            dynamo,
            dispatch,
            marks: std::sync::Mutex::default(),
            terms: std::sync::Mutex::default(),
        }
    }

    fn numbered(&self, count: usize) {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        marks.numbered += count as u64;
        marks.last_number = Some(Instant::now());
    }

    /// Notes the size of an invoice item written at one stage.
    fn invoice_item(&self, stage: fn(&mut InvoiceItemBytes) -> &mut usize, bytes: usize) {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        let largest = stage(&mut marks.largest_invoice_items);
        *largest = (*largest).max(bytes);
    }

    pub fn marks(&self) -> Marks {
        *self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unmodelled(&self, method: &'static str) {
        self.dynamo.unmodelled(method);
    }

    /// Notes the invoices a committed write made: drafts (and the size of those written
    /// pending their number), and numbers used.
    fn invoiced<'a>(&self, tenant: TenantId, invoices: impl Iterator<Item = &'a InvoiceWrite>) {
        let now = Instant::now();
        for write in invoices {
            if let Some(finalization) = &write.pending {
                let bytes = pending_invoice_bytes(
                    tenant,
                    &write.invoice,
                    PendingStage::Number,
                    finalization,
                );
                self.invoice_item(|largest| &mut largest.drafted, bytes);
            }
            let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
            // A step that numbers its invoice drafts it in the same write.
            marks.drafted += 1;
            marks.last_draft = Some(now);
            if write.number.is_some() {
                marks.numbered += 1;
                marks.last_number = Some(now);
            }
        }
    }

    /// What the DynamoDB store does after a commit with events: publish them (bus and
    /// webhook queue), then mark them published with one BatchWriteItem per 25.
    async fn committed<T, E>(
        &self,
        done: &Result<T, E>,
        tenant: TenantId,
        change: impl Into<Option<&Change>>,
    ) {
        let Some(change) = change.into() else { return };
        if done.is_err() || change.events.is_empty() {
            return;
        }
        self.after_commit(tenant, &change.events).await;
    }

    /// The events of the balance settlement a committed write carried: the DynamoDB store
    /// publishes every record its transaction holds.
    async fn settled(
        &self,
        done: &Result<(), StoreError>,
        tenant: TenantId,
        settlement: Option<&BalanceSettlement>,
    ) {
        if let Some(settlement) = settlement {
            self.committed(done, tenant, &settlement.record).await;
        }
    }

    async fn after_commit(&self, tenant: TenantId, events: &[DomainEvent]) {
        use billing_app::ports::Dispatch;
        if self.dispatch.publish(tenant, events).await.is_err() {
            return;
        }
        for chunk in events.chunks(MARKS_PER_BATCH) {
            // Deleting an event's outbox item (a plain write) takes it out of the due index.
            let mut request = Request::new(Op::BatchWriteItem).items(chunk.len() as u32);
            for event in chunk {
                let key = keys::outbox(tenant, &event.id.to_string());
                let units = [
                    (key.pk.clone(), write_units(OUTBOX_BYTES)),
                    (due_shard(&key), write_units(INDEX_ENTRY_BYTES)),
                ];
                request.written.push((
                    "OUTBOX (deleted: marked published)".to_owned(),
                    units.iter().map(|(_, u)| u).sum(),
                ));
                request.writes.extend(units);
            }
            if self.dynamo.send(&request).await.is_ok() {
                for event in chunk {
                    let _ = self.inner.mark_published(tenant, event.id).await;
                }
            }
        }
    }

    async fn send(&self, request: Request) -> Result<(), StoreError> {
        self.dynamo.send(&request).await
    }

    /// One Query per index shard, all at once, reading `entries` entries of
    /// `entry_bytes` spread evenly over them (eventually consistent, as index reads are).
    async fn shard_queries(
        &self,
        shards: Vec<String>,
        entries: usize,
        entry_bytes: usize,
    ) -> Result<(), StoreError> {
        let per_shard = entries.div_ceil(shards.len().max(1));
        let mut queries = tokio::task::JoinSet::new();
        for shard in shards {
            let dynamo = self.dynamo.clone();
            let request = Request::new(Op::Query).read_eventually(&shard, per_shard * entry_bytes);
            queries.spawn(async move { dynamo.send(&request).await });
        }
        while let Some(sent) = queries.join_next().await {
            sent.map_err(|e| StoreError::Internal(e.to_string()))??;
        }
        Ok(())
    }
}

/// An invoice's item as the DynamoDB store writes it (packed).
fn invoice_bytes(tenant: TenantId, invoice: &Invoice) -> usize {
    billing_aws::dynamo::stored_invoice_bytes(tenant, invoice).unwrap_or_else(|_| size(invoice))
}

/// A subscription's item as the DynamoDB store writes it (packed).
fn subscription_bytes(tenant: TenantId, subscription: &Subscription) -> usize {
    billing_aws::dynamo::stored_subscription_bytes(tenant, subscription)
        .unwrap_or_else(|_| size(subscription))
}

/// A pending invoice's item as the DynamoDB store writes it (packed, with its `pending`
/// and hand-over keys and its finalization terms).
fn pending_invoice_bytes(
    tenant: TenantId,
    invoice: &Invoice,
    stage: PendingStage,
    finalization: &Finalization,
) -> usize {
    billing_aws::dynamo::stored_pending_invoice_bytes(tenant, invoice, stage, finalization)
        .unwrap_or_else(|_| size(invoice) + size(finalization) + 2 * INDEX_ENTRY_BYTES)
}

/// The due index's shards.
fn due_shards() -> Vec<String> {
    (0..keys::DUE_SHARDS).map(keys::due_shard).collect()
}

/// An item's size as DynamoDB counts it, near enough: its JSON plus its keys.
fn size<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(1024, |v| v.len()) + 120
}

/// The due-index shard an item's due entry lives in.
fn due_shard(key: &Key) -> String {
    keys::due(key, jiff::Timestamp::UNIX_EPOCH)
        .remove(keys::DUE_PK)
        .and_then(|v| v.as_s().ok().cloned())
        .unwrap_or_default()
}

/// The index partitions a pending invoice's item is in: its pending shard and the due
/// shard of its hand-over entry.
fn pending_indexes(
    tenant: TenantId,
    invoice: &Invoice,
    stage: PendingStage,
    finalization: &Finalization,
) -> Vec<String> {
    let pending = keys::pending(tenant, invoice.id, invoice.created_at, stage)
        .remove(keys::PENDING_PK)
        .and_then(|v| v.as_s().ok().cloned())
        .unwrap_or_default();
    let due = keys::finalize_due(tenant, invoice.id, finalization.hand_over_at)
        .remove(keys::DUE_PK)
        .and_then(|v| v.as_s().ok().cloned())
        .unwrap_or_default();
    vec![pending, due]
}

fn tenant_pk(tenant: TenantId) -> String {
    keys::tenant_partition(tenant)
}

/// One TransactWriteItems being modelled: its items, the write units each partition key
/// (table or index) takes, and the items it holds while in flight.
#[derive(Default)]
struct Tx {
    items: u32,
    writes: Vec<(String, u64)>,
    touched: Vec<String>,
    written: Vec<(String, u64)>,
}

impl Tx {
    /// A transactional write of an item of `bytes`: 2 WCU per KB on its partition, a
    /// standard write of the whole item on `gsi1` (which projects every attribute), and of
    /// a key-only entry on each `due` or `pending` partition its index keys put it in.
    fn item(&mut self, key: &Key, bytes: usize, indexes: &[String]) -> &mut Self {
        // An item's kind is its sort key's prefix (`INVOICE`, `EVENT`, …).
        let kind = key.sk.split('#').next().unwrap_or_default().to_owned();
        self.item_as(&kind, key, bytes, indexes)
    }

    /// [`Tx::item`], its write units reported under `what`.
    fn item_as(&mut self, what: &str, key: &Key, bytes: usize, indexes: &[String]) -> &mut Self {
        self.items += 1;
        let before = self.writes.len();
        self.writes.push((key.pk.clone(), 2 * write_units(bytes)));
        if let Some((gsi_pk, _)) = &key.gsi1 {
            self.writes.push((gsi_pk.clone(), write_units(bytes)));
        }
        for index in indexes {
            self.writes
                .push((index.clone(), write_units(INDEX_ENTRY_BYTES)));
        }
        let units: u64 = self.writes[before..].iter().map(|(_, units)| units).sum();
        self.written.push((what.to_owned(), units));
        self.touched.push(format!("{}|{}", key.pk, key.sk));
        self
    }

    fn request(self) -> Request {
        let mut request = Request::new(Op::TransactWriteItems).items(self.items);
        request.writes = self.writes;
        request.touched = self.touched;
        request.written = self.written;
        request
    }

    /// The writes of one subscription step, as `Transaction::subscription_step` (and
    /// `rollups`) builds them.
    fn step(&mut self, tenant: TenantId, step: &SubscriptionStep) -> &mut Self {
        self.subscription_step(
            tenant,
            &step.previous,
            &step.next,
            step.invoice.as_ref(),
            &step.change,
        );
        for rollup in &step.rollups {
            let k = rollup.next.key();
            let key = keys::rollup(tenant, k.subscription, k.period_start, &k.metric);
            self.item(&key, size(&rollup.next), &[]);
        }
        self
    }

    fn subscription_step(
        &mut self,
        tenant: TenantId,
        previous: &Subscription,
        next: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> &mut Self {
        let key = keys::subscription(tenant, next.id, next.account_id);
        // Moving its due time deletes the old index entry and puts the new one.
        let mut due = Vec::new();
        if previous.due_at().is_some() {
            due.push(due_shard(&key));
        }
        if next.due_at().is_some() {
            due.push(due_shard(&key));
        }
        self.item(&key, subscription_bytes(tenant, next), &due);
        if let Some(invoice) = invoice {
            self.invoice(tenant, invoice);
        }
        let counted = |s: &Subscription| {
            (s.status != billing_domain::billing::subscription::SubscriptionStatus::Cancelled)
                .then_some((s.terms.plan_id, s.terms.plan_version))
        };
        let (old, new) = (counted(previous), counted(next));
        if old != new {
            for (plan, number) in [old, new].into_iter().flatten() {
                self.item(&keys::plan_version(tenant, plan, number), 200, &[]);
            }
        }
        self.change(tenant, change)
    }

    fn invoice(&mut self, tenant: TenantId, write: &InvoiceWrite) -> &mut Self {
        let invoice = &write.invoice;
        let key = keys::invoice(tenant, invoice.id, invoice.account_id);
        let indexes = match &write.pending {
            // A draft waits in its pending shard, and in the due index for its hand-over.
            Some(finalization) => {
                pending_indexes(tenant, invoice, PendingStage::Number, finalization)
            }
            None => invoice
                .overdue_at()
                .map(|_| due_shard(&key))
                .into_iter()
                .collect(),
        };
        let bytes = match &write.pending {
            Some(finalization) => {
                pending_invoice_bytes(tenant, invoice, PendingStage::Number, finalization)
            }
            None => invoice_bytes(tenant, invoice),
        };
        self.item(&key, bytes, &indexes);
        if let Some(payment) = &write.payment {
            let key = keys::payment(tenant, payment.id, payment.account_id);
            let due = [due_shard(&key)];
            self.item(&key, size(payment), &due);
        }
        if let Some(settlement) = &write.balance {
            self.balance(tenant, &settlement.change)
                .change(tenant, &settlement.record);
        }
        if let Some(discounts) = &write.account_discounts {
            let key = keys::account_discounts(tenant, discounts.account_id);
            self.item(&key, size(discounts.as_ref()), &[]);
        }
        self
    }

    /// A balance change, as `Transaction::balance` writes it: the balance (in the due
    /// index while something of it expires), its grants moved, its ledger entries.
    fn balance(&mut self, tenant: TenantId, change: &BalanceChange) -> &mut Self {
        let b = &change.balance;
        let key = keys::balance(tenant, b.account_id, b.currency.code());
        let due: Vec<String> = b.next_expiry.map(|_| due_shard(&key)).into_iter().collect();
        self.item(&key, size(b), &due);
        for grant in &change.grants {
            let key = keys::credit_grant(tenant, grant.account_id, grant.id);
            self.item(&key, size(grant), &[]);
        }
        for entry in &change.entries {
            let key = keys::balance_transaction(tenant, entry.account_id, entry.id);
            self.item(&key, size(entry), &[]);
        }
        self
    }

    /// The audit record and the events, each with its outbox item (in the due index until
    /// the event is published).
    fn change(&mut self, tenant: TenantId, change: &Change) -> &mut Self {
        // Sized as the DynamoDB store writes them (their JSON payloads packed).
        let (audit_bytes, event_bytes) = billing_aws::dynamo::stored_change_bytes(tenant, change)
            .unwrap_or_else(|_| {
                (
                    size(&change.audit),
                    change.events.iter().map(size).collect(),
                )
            });
        let audit = &change.audit;
        let key = keys::audit(tenant, &audit.id.to_string(), &audit.entity_id);
        self.item(&key, audit_bytes, &[]);
        for (event, bytes) in change.events.iter().zip(event_bytes) {
            let id = event.id.to_string();
            self.item(
                &keys::event_of_resource(tenant, &id, &event.resource_id),
                bytes,
                &[],
            );
            let outbox = keys::outbox(tenant, &id);
            let due = [due_shard(&outbox)];
            self.item(&outbox, OUTBOX_BYTES, &due);
        }
        self
    }

    /// The update that moves the tenant's invoice sequence.
    fn sequence(&mut self, tenant: TenantId) -> &mut Self {
        self.item(&keys::invoice_sequence(tenant), 100, &[])
    }
}

#[async_trait]
impl SubscriptionStore for SimStore {
    async fn insert_subscription(
        &self,
        tenant: TenantId,
        subscription: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("insert_subscription");
        let done = self
            .inner
            .insert_subscription(tenant, subscription, invoice, change)
            .await;
        self.committed(&done, tenant, change).await;
        self.settled(&done, tenant, invoice.and_then(|w| w.balance.as_deref()))
            .await;
        done
    }
    async fn save_subscription(
        &self,
        tenant: TenantId,
        previous: &Subscription,
        next: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = Tx::default();
        tx.subscription_step(tenant, previous, next, invoice, change);
        if invoice.is_some_and(|w| w.number.is_some()) {
            tx.sequence(tenant);
        }
        self.send(tx.request()).await?;
        let done = self
            .inner
            .save_subscription(tenant, previous, next, invoice, change)
            .await;
        if done.is_ok() {
            self.invoiced(tenant, invoice.into_iter());
        }
        self.committed(&done, tenant, change).await;
        self.settled(&done, tenant, invoice.and_then(|w| w.balance.as_deref()))
            .await;
        done
    }
    async fn save_subscription_steps(
        &self,
        tenant: TenantId,
        steps: &[SubscriptionStep],
    ) -> Result<(), StepsFailed> {
        // Whole steps per transaction, at most a hundred items with the sequence update,
        // as the DynamoDB store chunks them; each transaction moves the sequence over its
        // own numbers and publishes its own events once committed.
        let mut chunks: Vec<(std::ops::Range<usize>, Tx, bool)> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let mut one = Tx::default();
            one.step(tenant, step);
            let numbered = step.invoice.as_ref().is_some_and(|w| w.number.is_some());
            match chunks.last_mut() {
                Some((range, tx, numbers))
                    if tx.items + one.items + u32::from(*numbers || numbered)
                        <= MAX_TRANSACTION_ITEMS =>
                {
                    range.end = i + 1;
                    tx.items += one.items;
                    tx.writes.extend(one.writes);
                    tx.touched.extend(one.touched);
                    *numbers |= numbered;
                }
                _ => chunks.push((i..i + 1, one, numbered)),
            }
        }
        for (range, mut tx, numbered) in chunks {
            if numbered {
                tx.sequence(tenant);
            }
            let written = range.start;
            let failed = |error| StepsFailed { written, error };
            self.send(tx.request()).await.map_err(failed)?;
            let chunk = &steps[range];
            self.inner
                .save_subscription_steps(tenant, chunk)
                .await
                .map_err(|e| StepsFailed {
                    written: written + e.written,
                    error: e.error,
                })?;
            self.invoiced(tenant, chunk.iter().filter_map(|s| s.invoice.as_ref()));
            let events: Vec<DomainEvent> = chunk
                .iter()
                .flat_map(|s| s.change.events.iter().cloned())
                .collect();
            if !events.is_empty() {
                self.after_commit(tenant, &events).await;
            }
        }
        Ok(())
    }
    async fn get_subscription(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        let found = self.inner.get_subscription(tenant, id).await?;
        let bytes = found.as_ref().map_or(0, size);
        let partition = keys::subscription_partition(tenant, id);
        self.send(Request::new(Op::GetItem).read(&partition, bytes))
            .await?;
        Ok(found)
    }
    async fn get_subscriptions(
        &self,
        tenant: TenantId,
        ids: &[SubscriptionId],
    ) -> Result<Vec<Subscription>, StoreError> {
        // BatchGetItem, a hundred keys per request, strongly consistent.
        let found = self.inner.get_subscriptions(tenant, ids).await?;
        for chunk in found.chunks(100) {
            let request = chunk.iter().fold(
                Request::new(Op::BatchGetItem).items(chunk.len() as u32),
                |request, s| {
                    request.read(
                        &keys::subscription_partition(tenant, s.id),
                        subscription_bytes(tenant, s),
                    )
                },
            );
            self.send(request).await?;
        }
        Ok(found)
    }
    async fn list_subscriptions(
        &self,
        tenant: TenantId,
        filter: &SubscriptionFilter,
        page: &PageRequest,
    ) -> Result<Page<Subscription>, StoreError> {
        self.unmodelled("list_subscriptions");
        self.inner.list_subscriptions(tenant, filter, page).await
    }
    async fn clock_due_items(
        &self,
        tenant: TenantId,
        clock: TestClockId,
        up_to: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueItem>, StoreError> {
        self.unmodelled("clock_due_items");
        self.inner
            .clock_due_items(tenant, clock, up_to, limit)
            .await
    }
}

#[async_trait]
impl InvoiceStore for SimStore {
    async fn next_invoice_number(&self, tenant: TenantId) -> Result<NextInvoiceNumber, StoreError> {
        self.send(Request::new(Op::GetItem).read(&tenant_pk(tenant), 100))
            .await?;
        self.inner.next_invoice_number(tenant).await
    }
    async fn set_invoice_prefix(
        &self,
        tenant: TenantId,
        prefix: &str,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("set_invoice_prefix");
        let done = self.inner.set_invoice_prefix(tenant, prefix, change).await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn insert_invoice(
        &self,
        tenant: TenantId,
        invoice: &InvoiceWrite,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("insert_invoice");
        let done = self.inner.insert_invoice(tenant, invoice, change).await;
        self.committed(&done, tenant, change).await;
        self.settled(&done, tenant, invoice.balance.as_deref())
            .await;
        done
    }
    async fn save_invoice(
        &self,
        tenant: TenantId,
        previous: &Invoice,
        next: &InvoiceWrite,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("save_invoice");
        let done = self
            .inner
            .save_invoice(tenant, previous, next, change)
            .await;
        self.committed(&done, tenant, change).await;
        self.settled(&done, tenant, next.balance.as_deref()).await;
        done
    }
    async fn get_invoice(
        &self,
        tenant: TenantId,
        id: InvoiceId,
    ) -> Result<Option<Invoice>, StoreError> {
        self.unmodelled("get_invoice");
        self.inner.get_invoice(tenant, id).await
    }
    async fn pending_invoices(
        &self,
        tenant: TenantId,
        limit: usize,
    ) -> Result<Vec<PendingInvoice>, StoreError> {
        // One Query per pending shard, all at once, then the invoices as stored now
        // (BatchGetItem, strongly consistent, a hundred per request).
        let pending = self.inner.pending_invoices(tenant, limit).await?;
        let shards = (0..keys::PENDING_SHARDS).map(|shard| keys::pending_shard(tenant, shard));
        self.shard_queries(shards.collect(), pending.len(), INDEX_ENTRY_BYTES)
            .await?;
        for chunk in pending.chunks(100) {
            let request = chunk.iter().fold(
                Request::new(Op::BatchGetItem).items(chunk.len() as u32),
                |request, p| {
                    let key = keys::invoice_primary(tenant, p.invoice.id);
                    request.read(
                        &key.pk,
                        pending_invoice_bytes(tenant, &p.invoice, p.stage, &p.finalization),
                    )
                },
            );
            self.send(request).await?;
        }
        Ok(pending)
    }
    async fn number_invoices(
        &self,
        tenant: TenantId,
        prefix: &str,
        numbered: &[NumberedInvoice],
    ) -> Result<(), StoreError> {
        // One transaction: each draft replaced by its numbered invoice (now pending its
        // follow-ups), and the sequence.
        if numbered.is_empty() {
            return self.inner.number_invoices(tenant, prefix, numbered).await;
        }
        let mut tx = Tx::default();
        for n in numbered {
            let key = keys::invoice(tenant, n.invoice.id, n.invoice.account_id);
            let mut indexes =
                pending_indexes(tenant, &n.invoice, PendingStage::Number, &n.finalization);
            indexes.extend(pending_indexes(
                tenant,
                &n.invoice,
                PendingStage::FollowUps,
                &n.finalization,
            ));
            // A put is charged for the larger of the item it replaces and its own: the
            // numbered one, which holds more (its number, its finalization time).
            let bytes =
                pending_invoice_bytes(tenant, &n.invoice, PendingStage::FollowUps, &n.finalization);
            self.invoice_item(|largest| &mut largest.numbered, bytes);
            tx.item(&key, bytes, &indexes);
        }
        tx.sequence(tenant);
        self.send(tx.request()).await?;
        self.inner.number_invoices(tenant, prefix, numbered).await?;
        self.numbered(numbered.len());
        let mut terms = self.terms.lock().unwrap_or_else(|e| e.into_inner());
        terms.extend(numbered.iter().map(|n| (n.invoice.id, n.finalization)));
        Ok(())
    }
    async fn finish_invoice(
        &self,
        tenant: TenantId,
        invoice: &Invoice,
        payment: Option<&billing_domain::collection::payment::Payment>,
        change: &Change,
    ) -> Result<(), StoreError> {
        // One transaction: the invoice off the pending index (and its hand-over entry off
        // the due index), its first payment attempt, its audit record and events.
        let mut tx = Tx::default();
        let key = keys::invoice(tenant, invoice.id, invoice.account_id);
        let pending = keys::pending(
            tenant,
            invoice.id,
            invoice.created_at,
            PendingStage::FollowUps,
        )
        .remove(keys::PENDING_PK)
        .and_then(|v| v.as_s().ok().cloned())
        .unwrap_or_default();
        let mut indexes = vec![pending, due_shard(&key)];
        indexes.extend(invoice.overdue_at().map(|_| due_shard(&key)));
        // An update is charged for the larger item, the pending one it starts from.
        let terms = self
            .terms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&invoice.id)
            .copied();
        let bytes = match &terms {
            Some(finalization) => {
                pending_invoice_bytes(tenant, invoice, PendingStage::FollowUps, finalization)
            }
            None => invoice_bytes(tenant, invoice),
        };
        self.invoice_item(|largest| &mut largest.followed_up, bytes);
        tx.item(&key, bytes, &indexes);
        if let Some(payment) = payment {
            let key = keys::payment(tenant, payment.id, payment.account_id);
            let due = [due_shard(&key)];
            tx.item(&key, size(payment), &due);
        }
        tx.change(tenant, change);
        self.send(tx.request()).await?;
        let done = self
            .inner
            .finish_invoice(tenant, invoice, payment, change)
            .await;
        if done.is_ok() {
            let mut terms = self.terms.lock().unwrap_or_else(|e| e.into_inner());
            terms.remove(&invoice.id);
        }
        self.committed(&done, tenant, change).await;
        done
    }
    async fn list_invoices(
        &self,
        tenant: TenantId,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> Result<Page<Invoice>, StoreError> {
        self.unmodelled("list_invoices");
        self.inner.list_invoices(tenant, filter, page).await
    }
}

#[async_trait]
impl TestClockStore for SimStore {
    async fn insert_test_clock(
        &self,
        tenant: TenantId,
        clock: &TestClock,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("insert_test_clock");
        let done = self.inner.insert_test_clock(tenant, clock, change).await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn save_test_clock(
        &self,
        tenant: TenantId,
        previous: &TestClock,
        next: &TestClock,
    ) -> Result<(), StoreError> {
        self.unmodelled("save_test_clock");
        self.inner.save_test_clock(tenant, previous, next).await
    }
    async fn get_test_clock(
        &self,
        tenant: TenantId,
        id: TestClockId,
    ) -> Result<Option<TestClock>, StoreError> {
        self.unmodelled("get_test_clock");
        self.inner.get_test_clock(tenant, id).await
    }
}

// Catalog change simulations are not part of the renewal load this models.
#[async_trait]
impl SimulationStore for SimStore {
    async fn insert_simulation(
        &self,
        tenant: TenantId,
        run: &SimulationRun,
    ) -> Result<(), StoreError> {
        self.unmodelled("insert_simulation");
        self.inner.insert_simulation(tenant, run).await
    }
    async fn save_simulation(
        &self,
        tenant: TenantId,
        previous: &SimulationRun,
        next: &SimulationRun,
        chunk: Option<&SimulationChunk>,
    ) -> Result<(), StoreError> {
        self.unmodelled("save_simulation");
        self.inner
            .save_simulation(tenant, previous, next, chunk)
            .await
    }
    async fn get_simulation(
        &self,
        tenant: TenantId,
        id: billing_domain::kernel::ids::SimulationId,
    ) -> Result<Option<SimulationRun>, StoreError> {
        self.unmodelled("get_simulation");
        self.inner.get_simulation(tenant, id).await
    }
    async fn simulation_chunks(
        &self,
        tenant: TenantId,
        id: billing_domain::kernel::ids::SimulationId,
    ) -> Result<Vec<SimulationChunk>, StoreError> {
        self.unmodelled("simulation_chunks");
        self.inner.simulation_chunks(tenant, id).await
    }
}

#[async_trait]
impl MetricStore for SimStore {
    async fn insert_metric(
        &self,
        tenant: TenantId,
        metric: &Metric,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("insert_metric");
        let done = self.inner.insert_metric(tenant, metric, change).await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn update_metric(
        &self,
        tenant: TenantId,
        previous: &Metric,
        next: &Metric,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("update_metric");
        let done = self
            .inner
            .update_metric(tenant, previous, next, change)
            .await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn get_metric(
        &self,
        tenant: TenantId,
        id: MetricId,
    ) -> Result<Option<Metric>, StoreError> {
        self.unmodelled("get_metric");
        self.inner.get_metric(tenant, id).await
    }
    async fn get_metric_by_code(
        &self,
        tenant: TenantId,
        code: &str,
    ) -> Result<Option<Metric>, StoreError> {
        self.unmodelled("get_metric_by_code");
        self.inner.get_metric_by_code(tenant, code).await
    }
    async fn list_metrics(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Metric>, StoreError> {
        self.unmodelled("list_metrics");
        self.inner.list_metrics(tenant, page).await
    }
}

#[async_trait]
impl CouponStore for SimStore {
    async fn insert_coupon(
        &self,
        tenant: TenantId,
        coupon: &Coupon,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("insert_coupon");
        let done = self.inner.insert_coupon(tenant, coupon, change).await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn save_coupon(
        &self,
        tenant: TenantId,
        previous: &Coupon,
        next: &Coupon,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("save_coupon");
        let done = self.inner.save_coupon(tenant, previous, next, change).await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn get_coupon(
        &self,
        tenant: TenantId,
        id: CouponId,
    ) -> Result<Option<Coupon>, StoreError> {
        self.unmodelled("get_coupon");
        self.inner.get_coupon(tenant, id).await
    }
    async fn get_coupon_by_code(
        &self,
        tenant: TenantId,
        code: &str,
    ) -> Result<Option<Coupon>, StoreError> {
        self.unmodelled("get_coupon_by_code");
        self.inner.get_coupon_by_code(tenant, code).await
    }
    async fn list_coupons(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Coupon>, StoreError> {
        self.unmodelled("list_coupons");
        self.inner.list_coupons(tenant, page).await
    }
}

#[async_trait]
impl BrandingStore for SimStore {
    async fn branding(&self, tenant: TenantId) -> Result<Option<Branding>, StoreError> {
        self.unmodelled("branding");
        self.inner.branding(tenant).await
    }
    async fn save_branding(
        &self,
        tenant: TenantId,
        branding: &Branding,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("save_branding");
        self.inner.save_branding(tenant, branding, change).await
    }
}

#[async_trait]
impl EmailSettingsStore for SimStore {
    async fn email_settings(&self, tenant: TenantId) -> Result<Option<EmailSettings>, StoreError> {
        self.unmodelled("email_settings");
        self.inner.email_settings(tenant).await
    }
    async fn save_email_settings(
        &self,
        tenant: TenantId,
        settings: &EmailSettings,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("save_email_settings");
        self.inner
            .save_email_settings(tenant, settings, change)
            .await
    }
}

#[async_trait]
impl DocumentStore for SimStore {
    async fn document(
        &self,
        tenant: TenantId,
        of: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        self.unmodelled("document");
        self.inner.document(tenant, of).await
    }
    async fn record_document(
        &self,
        tenant: TenantId,
        document: &StoredDocument,
    ) -> Result<(), StoreError> {
        self.unmodelled("record_document");
        self.inner.record_document(tenant, document).await
    }
}

#[async_trait]
impl TaxStore for SimStore {
    async fn tax_settings(&self, tenant: TenantId) -> Result<Option<TaxSettings>, StoreError> {
        // Every drafted invoice asks: a GetItem in the tenant's partition.
        let found = self.inner.tax_settings(tenant).await?;
        let partition = keys::tenant_partition(tenant);
        self.send(Request::new(Op::GetItem).read(&partition, found.as_ref().map_or(0, size)))
            .await?;
        Ok(found)
    }
    async fn set_tax_settings(
        &self,
        tenant: TenantId,
        settings: &TaxSettings,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("set_tax_settings");
        self.inner.set_tax_settings(tenant, settings, change).await
    }
    async fn insert_tax_rates(
        &self,
        tenant: TenantId,
        rates: &[TaxRate],
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("insert_tax_rates");
        self.inner.insert_tax_rates(tenant, rates, change).await
    }
    async fn replace_tax_rate(
        &self,
        tenant: TenantId,
        ended: &TaxRate,
        next: &TaxRate,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("replace_tax_rate");
        self.inner
            .replace_tax_rate(tenant, ended, next, change)
            .await
    }
    async fn get_tax_rate(
        &self,
        tenant: TenantId,
        id: TaxRateId,
    ) -> Result<Option<TaxRate>, StoreError> {
        self.unmodelled("get_tax_rate");
        self.inner.get_tax_rate(tenant, id).await
    }
    async fn list_tax_rates(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<TaxRate>, StoreError> {
        self.unmodelled("list_tax_rates");
        self.inner.list_tax_rates(tenant, page).await
    }
}

#[async_trait]
impl HostedLinkStore for SimStore {
    async fn insert_hosted_link(&self, link: &HostedLink) -> Result<(), StoreError> {
        self.unmodelled("insert_hosted_link");
        self.inner.insert_hosted_link(link).await
    }
    async fn get_hosted_link(&self, token_hash: &str) -> Result<Option<HostedLink>, StoreError> {
        self.unmodelled("get_hosted_link");
        self.inner.get_hosted_link(token_hash).await
    }
    async fn hosted_link_epoch(
        &self,
        tenant: TenantId,
        invoice: InvoiceId,
    ) -> Result<u32, StoreError> {
        self.unmodelled("hosted_link_epoch");
        self.inner.hosted_link_epoch(tenant, invoice).await
    }
    async fn revoke_hosted_links(
        &self,
        tenant: TenantId,
        invoice: InvoiceId,
        current: u32,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("revoke_hosted_links");
        self.inner
            .revoke_hosted_links(tenant, invoice, current, change)
            .await
    }
}

#[async_trait]
impl RedemptionStore for SimStore {
    async fn redeem_coupon(
        &self,
        tenant: TenantId,
        coupon: &Coupon,
        target: RedemptionTarget<'_>,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("redeem_coupon");
        let done = self
            .inner
            .redeem_coupon(tenant, coupon, target, change)
            .await;
        self.committed(&done, tenant, change).await;
        done
    }
}

#[async_trait]
impl AccountDiscountStore for SimStore {
    async fn get_account_discounts(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<AccountDiscounts>, StoreError> {
        // Every period invoice without a discount of its own reads it.
        let found = self.inner.get_account_discounts(tenant, account).await?;
        let partition = keys::account_partition(tenant, account);
        self.send(Request::new(Op::GetItem).read(&partition, found.as_ref().map_or(0, size)))
            .await?;
        Ok(found)
    }

    async fn save_account_discounts(
        &self,
        tenant: TenantId,
        next: &AccountDiscounts,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("save_account_discounts");
        let done = self
            .inner
            .save_account_discounts(tenant, next, change)
            .await;
        self.committed(&done, tenant, change).await;
        done
    }
}

#[async_trait]
impl PlanStore for SimStore {
    async fn insert_plan(
        &self,
        tenant: TenantId,
        plan: &Plan,
        first: &PlanVersion,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("insert_plan");
        let done = self.inner.insert_plan(tenant, plan, first, change).await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn update_plan(
        &self,
        tenant: TenantId,
        previous: &Plan,
        next: &Plan,
        new_version: Option<&PlanVersion>,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("update_plan");
        let done = self
            .inner
            .update_plan(tenant, previous, next, new_version, change)
            .await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn get_plan(&self, tenant: TenantId, id: PlanId) -> Result<Option<Plan>, StoreError> {
        // A renewal's migration check (cached per worker for 60 s).
        let found = self.inner.get_plan(tenant, id).await?;
        let partition = keys::tenant_partition(tenant);
        self.send(Request::new(Op::GetItem).read(&partition, found.as_ref().map_or(0, size)))
            .await?;
        Ok(found)
    }
    async fn list_plans(
        &self,
        tenant: TenantId,
        filter: PlanFilter,
        page: &PageRequest,
    ) -> Result<Page<Plan>, StoreError> {
        self.unmodelled("list_plans");
        self.inner.list_plans(tenant, filter, page).await
    }
    async fn list_plan_versions(
        &self,
        tenant: TenantId,
        plan: PlanId,
    ) -> Result<Vec<PlanVersion>, StoreError> {
        let found = self.inner.list_plan_versions(tenant, plan).await?;
        let partition = keys::tenant_partition(tenant);
        let bytes: usize = found.iter().map(size).sum();
        self.send(Request::new(Op::Query).read(&partition, bytes))
            .await?;
        Ok(found)
    }
    async fn plan_subscription_counts(
        &self,
        tenant: TenantId,
        plan: PlanId,
    ) -> Result<Vec<(u32, u64)>, StoreError> {
        self.unmodelled("plan_subscription_counts");
        self.inner.plan_subscription_counts(tenant, plan).await
    }
}

#[async_trait]
impl DunningStore for SimStore {
    async fn get_dunning_policy(
        &self,
        tenant: TenantId,
    ) -> Result<Option<DunningPolicy>, StoreError> {
        // A renewal asks what a block does (cached per worker for 60 s).
        let found = self.inner.get_dunning_policy(tenant).await?;
        let partition = keys::tenant_partition(tenant);
        self.send(Request::new(Op::GetItem).read(&partition, found.as_ref().map_or(0, size)))
            .await?;
        Ok(found)
    }
    async fn set_dunning_policy(
        &self,
        tenant: TenantId,
        policy: &DunningPolicy,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("set_dunning_policy");
        let done = self.inner.set_dunning_policy(tenant, policy, change).await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn get_dunning_case(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<DunningCase>, StoreError> {
        self.unmodelled("get_dunning_case");
        self.inner.get_dunning_case(tenant, account).await
    }
    async fn save_dunning_case(
        &self,
        tenant: TenantId,
        previous: Option<&DunningCase>,
        next: &DunningCase,
        account: Option<AccountStatusWrite<'_>>,
        notice: Option<&PendingNotice>,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("save_dunning_case");
        let done = self
            .inner
            .save_dunning_case(tenant, previous, next, account, notice, change)
            .await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn get_dunning_notice(
        &self,
        tenant: TenantId,
        account: AccountId,
        key: &str,
    ) -> Result<Option<PendingNotice>, StoreError> {
        self.unmodelled("get_dunning_notice");
        self.inner.get_dunning_notice(tenant, account, key).await
    }
    async fn claim_dunning_notice(
        &self,
        tenant: TenantId,
        previous: &PendingNotice,
        next: &PendingNotice,
    ) -> Result<(), StoreError> {
        self.unmodelled("claim_dunning_notice");
        self.inner
            .claim_dunning_notice(tenant, previous, next)
            .await
    }
    async fn delete_dunning_notice(
        &self,
        tenant: TenantId,
        account: AccountId,
        key: &str,
    ) -> Result<(), StoreError> {
        self.unmodelled("delete_dunning_notice");
        self.inner.delete_dunning_notice(tenant, account, key).await
    }
}

#[async_trait]
impl EventStore for SimStore {
    async fn list_events(
        &self,
        tenant: TenantId,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<DomainEvent>, StoreError> {
        self.unmodelled("list_events");
        self.inner.list_events(tenant, filter, page).await
    }
    async fn get_event(
        &self,
        tenant: TenantId,
        id: EventId,
    ) -> Result<Option<DomainEvent>, StoreError> {
        self.unmodelled("get_event");
        self.inner.get_event(tenant, id).await
    }
    async fn mark_published(&self, tenant: TenantId, id: EventId) -> Result<(), StoreError> {
        self.unmodelled("mark_published");
        self.inner.mark_published(tenant, id).await
    }
    async fn due_items(&self, now: Timestamp, limit: usize) -> Result<Vec<DueItem>, StoreError> {
        let due = self.inner.due_items(now, limit).await?;
        self.shard_queries(due_shards(), due.len(), INDEX_ENTRY_BYTES)
            .await?;
        Ok(due)
    }
    async fn due_page(
        &self,
        now: Timestamp,
        cursor: &DueCursor,
        per_shard: usize,
    ) -> Result<DuePage, StoreError> {
        // The in-memory index is one shard: a page of the `DUE_SHARDS` is that many times
        // as long, read by one Query per shard, all at once (the items spread evenly, so
        // the shards run dry on the same page).
        let shards = keys::DUE_SHARDS as usize;
        let page = self.inner.due_page(now, cursor, per_shard * shards).await?;
        // A pass from now on reads nothing and asks nothing.
        let empty_range = cursor
            .from
            .is_some_and(|from| from.as_millisecond() >= now.as_millisecond());
        if !empty_range {
            self.shard_queries(due_shards(), page.items.len(), INDEX_ENTRY_BYTES)
                .await?;
        }
        Ok(page)
    }
    async fn sweep_checkpoint(&self) -> Result<Option<SweepCheckpoint>, StoreError> {
        let found = self.inner.sweep_checkpoint().await?;
        let bytes = found.as_ref().map_or(0, size);
        self.send(Request::new(Op::GetItem).read(&keys::sweep_checkpoint().pk, bytes))
            .await?;
        Ok(found)
    }
    async fn save_sweep_checkpoint(&self, next: &SweepCheckpoint) -> Result<(), StoreError> {
        let mut request = Request::new(Op::PutItem);
        request
            .writes
            .push((keys::sweep_checkpoint().pk, write_units(size(next))));
        self.send(request).await?;
        self.inner.save_sweep_checkpoint(next).await
    }
}

#[async_trait]
impl WebhookStore for SimStore {
    async fn insert_webhook_endpoint(
        &self,
        tenant: TenantId,
        endpoint: &WebhookEndpoint,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("insert_webhook_endpoint");
        let done = self
            .inner
            .insert_webhook_endpoint(tenant, endpoint, change)
            .await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn update_webhook_endpoint(
        &self,
        tenant: TenantId,
        previous: &WebhookEndpoint,
        next: &WebhookEndpoint,
        change: Option<&Change>,
    ) -> Result<(), StoreError> {
        self.unmodelled("update_webhook_endpoint");
        let done = self
            .inner
            .update_webhook_endpoint(tenant, previous, next, change)
            .await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn delete_webhook_endpoint(
        &self,
        tenant: TenantId,
        endpoint: &WebhookEndpoint,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("delete_webhook_endpoint");
        let done = self
            .inner
            .delete_webhook_endpoint(tenant, endpoint, change)
            .await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn get_webhook_endpoint(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        self.unmodelled("get_webhook_endpoint");
        self.inner.get_webhook_endpoint(tenant, id).await
    }
    async fn list_webhook_endpoints(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpoint>, StoreError> {
        self.unmodelled("list_webhook_endpoints");
        self.inner.list_webhook_endpoints(tenant, page).await
    }
    async fn insert_delivery(
        &self,
        tenant: TenantId,
        delivery: &WebhookDelivery,
        due_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.unmodelled("insert_delivery");
        self.inner.insert_delivery(tenant, delivery, due_at).await
    }
    async fn insert_due_deliveries(
        &self,
        tenant: TenantId,
        deliveries: &[WebhookDelivery],
        due_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.unmodelled("insert_due_deliveries");
        self.inner
            .insert_due_deliveries(tenant, deliveries, due_at)
            .await
    }
    async fn update_delivery(
        &self,
        tenant: TenantId,
        expected_version: u64,
        next: &WebhookDelivery,
        due_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.unmodelled("update_delivery");
        self.inner
            .update_delivery(tenant, expected_version, next, due_at)
            .await
    }
    async fn get_delivery(
        &self,
        tenant: TenantId,
        endpoint: WebhookEndpointId,
        id: DeliveryId,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        self.unmodelled("get_delivery");
        self.inner.get_delivery(tenant, endpoint, id).await
    }
    async fn list_deliveries(
        &self,
        tenant: TenantId,
        endpoint: WebhookEndpointId,
        page: &PageRequest,
    ) -> Result<Page<WebhookDelivery>, StoreError> {
        self.unmodelled("list_deliveries");
        self.inner.list_deliveries(tenant, endpoint, page).await
    }
}

#[async_trait]
impl TenantStore for SimStore {
    async fn create_tenant(&self, tenant: &Tenant, first_key: &ApiKey) -> Result<(), StoreError> {
        self.unmodelled("create_tenant");
        self.inner.create_tenant(tenant, first_key).await
    }
    async fn get_tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        self.unmodelled("get_tenant");
        self.inner.get_tenant(id).await
    }
}

#[async_trait]
impl ApiKeyStore for SimStore {
    async fn get_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
    ) -> Result<Option<ApiKey>, StoreError> {
        self.unmodelled("get_api_key");
        self.inner.get_api_key(tenant, id).await
    }
    async fn insert_api_key(&self, key: &ApiKey, change: &Change) -> Result<(), StoreError> {
        self.unmodelled("insert_api_key");
        self.inner.insert_api_key(key, change).await
    }
    async fn revoke_api_key(&self, key: &ApiKey, change: &Change) -> Result<(), StoreError> {
        self.unmodelled("revoke_api_key");
        self.inner.revoke_api_key(key, change).await
    }
    async fn roll_api_key(
        &self,
        retired: &ApiKey,
        successor: &ApiKey,
        retirement: &Change,
        creation: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("roll_api_key");
        self.inner
            .roll_api_key(retired, successor, retirement, creation)
            .await
    }
    async fn record_key_use(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        at: Timestamp,
        stale_since: Timestamp,
    ) -> Result<(), StoreError> {
        self.unmodelled("record_key_use");
        self.inner.record_key_use(tenant, id, at, stale_since).await
    }
    async fn list_api_keys(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>, StoreError> {
        self.unmodelled("list_api_keys");
        self.inner.list_api_keys(tenant, page).await
    }
}

#[async_trait]
impl IdentityProviderStore for SimStore {
    async fn identity_provider(
        &self,
        tenant: TenantId,
    ) -> Result<Option<IdentityProvider>, StoreError> {
        self.unmodelled("identity_provider");
        self.inner.identity_provider(tenant).await
    }
    async fn set_identity_provider(
        &self,
        trust: &IssuerTrust,
        previous: Option<&IdentityProvider>,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("set_identity_provider");
        self.inner
            .set_identity_provider(trust, previous, change)
            .await
    }
    async fn issuer_trusts(&self, issuer: &str) -> Result<Vec<IssuerTrust>, StoreError> {
        self.unmodelled("issuer_trusts");
        self.inner.issuer_trusts(issuer).await
    }
}

#[async_trait]
impl RateLimitStore for SimStore {
    async fn claim_rate(
        &self,
        tenant: TenantId,
        subject: &str,
        window: (Timestamp, Timestamp),
        want: u32,
        limit: u32,
    ) -> Result<RateClaim, StoreError> {
        self.unmodelled("claim_rate");
        self.inner
            .claim_rate(tenant, subject, window, want, limit)
            .await
    }
    async fn limit_settings(&self, tenant: TenantId) -> Result<LimitSettings, StoreError> {
        self.unmodelled("limit_settings");
        self.inner.limit_settings(tenant).await
    }
    async fn set_limit_settings(
        &self,
        tenant: TenantId,
        settings: &LimitSettings,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("set_limit_settings");
        self.inner
            .set_limit_settings(tenant, settings, change)
            .await
    }
}

#[async_trait]
impl AccountStore for SimStore {
    async fn insert_account(
        &self,
        tenant: TenantId,
        account: &Account,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("insert_account");
        let done = self.inner.insert_account(tenant, account, change).await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn update_account(
        &self,
        tenant: TenantId,
        previous: &Account,
        next: &Account,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("update_account");
        let done = self
            .inner
            .update_account(tenant, previous, next, change)
            .await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn get_account(
        &self,
        tenant: TenantId,
        id: AccountId,
    ) -> Result<Option<Account>, StoreError> {
        self.unmodelled("get_account");
        self.inner.get_account(tenant, id).await
    }
    async fn list_accounts(
        &self,
        tenant: TenantId,
        filter: &AccountFilter,
        page: &PageRequest,
    ) -> Result<Page<Account>, StoreError> {
        self.unmodelled("list_accounts");
        self.inner.list_accounts(tenant, filter, page).await
    }
    async fn get_accounts(
        &self,
        tenant: TenantId,
        ids: &[AccountId],
    ) -> Result<Vec<Account>, StoreError> {
        // BatchGetItem, a hundred keys per request, all in the tenant's partition (the
        // finalizer reads the accounts of each page of drafts it numbers).
        let found = self.inner.get_accounts(tenant, ids).await?;
        for chunk in ids.chunks(100) {
            let request = chunk.iter().fold(
                Request::new(Op::BatchGetItem).items(chunk.len() as u32),
                |request, id| {
                    let bytes = found.iter().find(|a| a.id == *id).map_or(0, size);
                    request.read(&keys::tenant_partition(tenant), bytes)
                },
            );
            self.send(request).await?;
        }
        Ok(found)
    }
}

#[async_trait]
impl ErasureStore for SimStore {
    async fn erase_account_records(
        &self,
        tenant: TenantId,
        account: AccountId,
        entities: &[String],
    ) -> Result<(), StoreError> {
        self.unmodelled("erase_account_records");
        self.inner
            .erase_account_records(tenant, account, entities)
            .await
    }
}

#[async_trait]
impl AuditStore for SimStore {
    async fn list_audit(
        &self,
        tenant: TenantId,
        entity_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError> {
        self.unmodelled("list_audit");
        self.inner.list_audit(tenant, entity_id, page).await
    }
}

#[async_trait]
impl IdempotencyStore for SimStore {
    async fn claim_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        terms: &ClaimTerms<'_>,
    ) -> Result<IdempotencyClaim, StoreError> {
        self.unmodelled("claim_idempotency_key");
        self.inner.claim_idempotency_key(tenant, key, terms).await
    }
    async fn complete_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        owner: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.unmodelled("complete_idempotency_key");
        self.inner
            .complete_idempotency_key(tenant, key, owner, response)
            .await
    }
    async fn release_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        self.unmodelled("release_idempotency_key");
        self.inner.release_idempotency_key(tenant, key, owner).await
    }
}

#[async_trait]
impl HealthProbe for SimStore {
    async fn ready(&self) -> Result<(), StoreError> {
        self.unmodelled("ready");
        self.inner.ready().await
    }
}

#[async_trait]
impl PaymentStore for SimStore {
    async fn get_payment_profile(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<PaymentProfile>, StoreError> {
        self.unmodelled("get_payment_profile");
        self.inner.get_payment_profile(tenant, account).await
    }
    async fn save_payment_profile(
        &self,
        tenant: TenantId,
        next: &PaymentProfile,
        refs: &[(String, GatewayRef)],
        change: Option<&Change>,
    ) -> Result<(), StoreError> {
        self.unmodelled("save_payment_profile");
        let done = self
            .inner
            .save_payment_profile(tenant, next, refs, change)
            .await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn get_payment(
        &self,
        tenant: TenantId,
        id: PaymentId,
    ) -> Result<Option<Payment>, StoreError> {
        self.unmodelled("get_payment");
        self.inner.get_payment(tenant, id).await
    }
    async fn list_payments(
        &self,
        tenant: TenantId,
        filter: &PaymentFilter,
        page: &PageRequest,
    ) -> Result<Page<Payment>, StoreError> {
        self.unmodelled("list_payments");
        self.inner.list_payments(tenant, filter, page).await
    }
    async fn save_collection(
        &self,
        tenant: TenantId,
        write: &CollectionWrite,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("save_collection");
        let done = self.inner.save_collection(tenant, write, change).await;
        self.committed(&done, tenant, change).await;
        self.settled(&done, tenant, write.balance.as_deref()).await;
        done
    }
    async fn get_credit_note(
        &self,
        tenant: TenantId,
        id: CreditNoteId,
    ) -> Result<Option<CreditNote>, StoreError> {
        self.unmodelled("get_credit_note");
        self.inner.get_credit_note(tenant, id).await
    }
    async fn list_credit_notes(
        &self,
        tenant: TenantId,
        filter: &CreditNoteFilter,
        page: &PageRequest,
    ) -> Result<Page<CreditNote>, StoreError> {
        self.unmodelled("list_credit_notes");
        self.inner.list_credit_notes(tenant, filter, page).await
    }
    async fn payment_settings(&self, tenant: TenantId) -> Result<PaymentSettings, StoreError> {
        self.unmodelled("payment_settings");
        self.inner.payment_settings(tenant).await
    }
    async fn set_payment_settings(
        &self,
        tenant: TenantId,
        settings: &PaymentSettings,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("set_payment_settings");
        let done = self
            .inner
            .set_payment_settings(tenant, settings, change)
            .await;
        self.committed(&done, tenant, change).await;
        done
    }
    async fn resolve_gateway_ref(
        &self,
        gateway_id: &str,
    ) -> Result<Option<GatewayRef>, StoreError> {
        self.unmodelled("resolve_gateway_ref");
        self.inner.resolve_gateway_ref(gateway_id).await
    }
    async fn record_gateway_event(
        &self,
        tenant: TenantId,
        event_id: &str,
    ) -> Result<(), StoreError> {
        self.unmodelled("record_gateway_event");
        self.inner.record_gateway_event(tenant, event_id).await
    }
}

#[async_trait]
impl UsageStore for SimStore {
    async fn stored_usage_events(
        &self,
        tenant: TenantId,
        transaction_ids: &[String],
    ) -> Result<BTreeSet<String>, StoreError> {
        self.unmodelled("stored_usage_events");
        self.inner
            .stored_usage_events(tenant, transaction_ids)
            .await
    }
    async fn get_rollups(
        &self,
        tenant: TenantId,
        keys: &[RollupKey],
    ) -> Result<Vec<Rollup>, StoreError> {
        self.unmodelled("get_rollups");
        self.inner.get_rollups(tenant, keys).await
    }
    async fn seen_distinct_values(
        &self,
        tenant: TenantId,
        key: &RollupKey,
        values: &[String],
    ) -> Result<BTreeSet<String>, StoreError> {
        self.unmodelled("seen_distinct_values");
        self.inner.seen_distinct_values(tenant, key, values).await
    }
    async fn record_usage(
        &self,
        tenant: TenantId,
        units: &[UsageWrite],
    ) -> Result<(), StepsFailed> {
        self.unmodelled("record_usage");
        self.inner.record_usage(tenant, units).await
    }
    async fn list_rollups(
        &self,
        tenant: TenantId,
        subscription: SubscriptionId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Rollup>, StoreError> {
        self.unmodelled("list_rollups");
        self.inner
            .list_rollups(tenant, subscription, from, to)
            .await
    }
    async fn get_quota(
        &self,
        tenant: TenantId,
        account: AccountId,
        metric: &str,
    ) -> Result<Option<QuotaSnapshot>, StoreError> {
        self.unmodelled("get_quota");
        self.inner.get_quota(tenant, account, metric).await
    }
    async fn bill_late_usage(
        &self,
        tenant: TenantId,
        invoice: Option<&InvoiceWrite>,
        rollups: &[RollupWrite],
        change: Option<&Change>,
    ) -> Result<(), StoreError> {
        self.unmodelled("bill_late_usage");
        let done = self
            .inner
            .bill_late_usage(tenant, invoice, rollups, change)
            .await;
        self.committed(&done, tenant, change).await;
        done
    }
}

#[async_trait]
impl CreditStore for SimStore {
    async fn get_balance(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Currency,
    ) -> Result<Option<Balance>, StoreError> {
        let found = self.inner.get_balance(tenant, account, currency).await?;
        let partition = keys::account_partition(tenant, account);
        self.send(Request::new(Op::GetItem).read(&partition, found.as_ref().map_or(0, size)))
            .await?;
        Ok(found)
    }
    async fn get_balances(
        &self,
        tenant: TenantId,
        wanted: &[(AccountId, Currency)],
    ) -> Result<Vec<Balance>, StoreError> {
        // BatchGetItem of the distinct keys, a hundred per request, whether found or not
        // (the finalizer asks for the balances of every page of drafts that owe something).
        let found = self.inner.get_balances(tenant, wanted).await?;
        let mut keys: Vec<(AccountId, &str)> = wanted.iter().map(|(a, c)| (*a, c.code())).collect();
        keys.sort();
        keys.dedup();
        for chunk in keys.chunks(100) {
            // Each key reads its account's shard: what was found by its size, the rest
            // as the smallest read.
            let request = chunk.iter().fold(
                Request::new(Op::BatchGetItem).items(chunk.len() as u32),
                |request, (account, code)| {
                    let bytes = found
                        .iter()
                        .find(|b| b.account_id == *account && b.currency.code() == *code)
                        .map_or(0, size);
                    request.read(&keys::account_partition(tenant, *account), bytes)
                },
            );
            self.send(request).await?;
        }
        Ok(found)
    }
    async fn list_balances(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Vec<Balance>, StoreError> {
        self.unmodelled("list_balances");
        self.inner.list_balances(tenant, account).await
    }
    async fn get_grants(
        &self,
        tenant: TenantId,
        account: AccountId,
        ids: &[CreditGrantId],
    ) -> Result<Vec<CreditGrant>, StoreError> {
        self.unmodelled("get_grants");
        self.inner.get_grants(tenant, account, ids).await
    }
    async fn list_grants(
        &self,
        tenant: TenantId,
        account: AccountId,
        page: &PageRequest,
    ) -> Result<Page<CreditGrant>, StoreError> {
        self.unmodelled("list_grants");
        self.inner.list_grants(tenant, account, page).await
    }
    async fn list_balance_transactions(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Option<Currency>,
        page: &PageRequest,
    ) -> Result<Page<BalanceTransaction>, StoreError> {
        self.unmodelled("list_balance_transactions");
        self.inner
            .list_balance_transactions(tenant, account, currency, page)
            .await
    }
    async fn save_balance(
        &self,
        tenant: TenantId,
        change: &BalanceChange,
        record: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = Tx::default();
        tx.balance(tenant, change).change(tenant, record);
        self.send(tx.request()).await?;
        let done = self.inner.save_balance(tenant, change, record).await;
        self.committed(&done, tenant, record).await;
        done
    }
}

#[async_trait]
impl WalletStore for SimStore {
    async fn get_wallet(
        &self,
        tenant: TenantId,
        id: WalletId,
    ) -> Result<Option<Wallet>, StoreError> {
        self.unmodelled("get_wallet");
        self.inner.get_wallet(tenant, id).await
    }
    async fn list_wallets(
        &self,
        tenant: TenantId,
        account: AccountId,
        page: &PageRequest,
    ) -> Result<Page<Wallet>, StoreError> {
        self.unmodelled("list_wallets");
        self.inner.list_wallets(tenant, account, page).await
    }
    async fn active_wallets(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Vec<Wallet>, StoreError> {
        // A Query of the account's wallet index (eventually consistent), then a
        // BatchGetItem of the active ones when there are any.
        let found = self.inner.active_wallets(tenant, account).await?;
        let index = keys::account_wallets_index(tenant, account);
        let bytes: usize = found.iter().map(size).sum();
        self.send(Request::new(Op::Query).read_eventually(&index, bytes))
            .await?;
        if !found.is_empty() {
            let partition = keys::tenant_partition(tenant);
            self.send(
                Request::new(Op::BatchGetItem)
                    .items(found.len() as u32)
                    .read(&partition, bytes),
            )
            .await?;
        }
        Ok(found)
    }
    async fn wallet_holders(
        &self,
        tenant: TenantId,
        wanted: &[(AccountId, Currency)],
    ) -> Result<Vec<(AccountId, Currency)>, StoreError> {
        // BatchGetItem of the distinct keys, a hundred per request, like the balances.
        let found = self.inner.wallet_holders(tenant, wanted).await?;
        let mut keys: Vec<(AccountId, &str)> = wanted.iter().map(|(a, c)| (*a, c.code())).collect();
        keys.sort();
        keys.dedup();
        for chunk in keys.chunks(100) {
            let request = chunk.iter().fold(
                Request::new(Op::BatchGetItem).items(chunk.len() as u32),
                |request, (account, _)| request.read(&keys::account_partition(tenant, *account), 0),
            );
            self.send(request).await?;
        }
        Ok(found)
    }
    async fn list_wallet_transactions(
        &self,
        tenant: TenantId,
        wallet: WalletId,
        page: &PageRequest,
    ) -> Result<Page<WalletTransaction>, StoreError> {
        self.unmodelled("list_wallet_transactions");
        self.inner
            .list_wallet_transactions(tenant, wallet, page)
            .await
    }
    async fn save_wallet(
        &self,
        tenant: TenantId,
        change: &WalletChange,
        record: &Change,
    ) -> Result<(), StoreError> {
        self.unmodelled("save_wallet");
        let done = self.inner.save_wallet(tenant, change, record).await;
        self.committed(&done, tenant, record).await;
        done
    }
}
