//! Subscriptions, invoices, the invoice-number sequence and test clocks.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::*;
use billing_domain::billing::invoice::Invoice;
use billing_domain::billing::simulation::{SimulationChunk, SimulationRun};
use billing_domain::billing::subscription::{Subscription, SubscriptionStatus};
use billing_domain::billing::test_clock::TestClock;
use billing_domain::kernel::ids::{InvoiceId, SimulationId, SubscriptionId, TenantId, TestClockId};
use jiff::Timestamp;

use super::catalog::SUBSCRIPTION_COUNT;
use super::{
    epoch_seconds, from_item, sdk_error, to_item, DynamoStore, Item, ShardRange, Transaction,
    MAX_TRANSACTION_ITEMS,
};
use crate::keys::{self, DUE_INDEX, DUE_PK, DUE_SK};

/// The last number used (not `last`, which DynamoDB reserves).
const SEQUENCE_LAST: &str = "last_number";
const SEQUENCE_PREFIX: &str = "prefix";

/// A subscription item, its fields packed ([`super::packed`]) but its `version`, which
/// every replace is conditioned on: a renewal writes it, transactionally, with its `gsi1`
/// copy.
pub(super) fn subscription_item(tenant: TenantId, sub: &Subscription) -> Result<Item, StoreError> {
    let key = keys::subscription(tenant, sub.id, sub.account_id);
    let mut item = super::packed::to_packed_item("subscription", sub, &key, &["version"])?;
    if let Some(at) = sub.due_at() {
        item.extend(match sub.test_clock {
            Some(clock) => keys::due_on_clock(clock, &key, at),
            None => keys::due(&key, at),
        });
    }
    Ok(item)
}

/// A run of a tenant's invoice numbers that one transaction uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InvoiceNumbers {
    tenant: TenantId,
    first: u64,
    last: u64,
    /// The prefix they are printed with, when the write must find it still the tenant's.
    prefix: Option<String>,
}

/// An invoice item; a sent invoice waits in the due index for its due date.
pub(super) fn invoice_item(tenant: TenantId, invoice: &Invoice) -> Result<Item, StoreError> {
    let key = keys::invoice(tenant, invoice.id, invoice.account_id);
    let mut item = packed_invoice(invoice, &key)?;
    item.extend(overdue_entry(&key, invoice).unwrap_or_default());
    Ok(item)
}

/// An invoice's fields packed ([`super::packed`]) but its `version`, which every replace
/// is conditioned on.
fn packed_invoice(invoice: &Invoice, key: &keys::Key) -> Result<Item, StoreError> {
    super::packed::to_packed_item("invoice", invoice, key, &["version"])
}

fn overdue_entry(key: &keys::Key, invoice: &Invoice) -> Option<Item> {
    let at = invoice.overdue_at()?;
    Some(match invoice.test_clock {
        Some(clock) => keys::due_on_clock(clock, key, at),
        None => keys::due(key, at),
    })
}

/// The invoice's finalization terms, kept on its item while it is pending: a list of its
/// days until due (or null), its mode and its hand-over time in epoch nanoseconds, about 25
/// bytes with the name where their JSON took 90 (a pending item under 1 KB is half the
/// write units).
const TERMS: &str = "terms";
/// Where items written before [`TERMS`] keep them: their JSON.
const FINALIZATION_BEFORE_TERMS: &str = "finalization";

fn terms(finalization: &Finalization) -> AttributeValue {
    AttributeValue::L(vec![
        finalization
            .days_until_due
            .map_or(AttributeValue::Null(true), |days| {
                AttributeValue::N(days.to_string())
            }),
        AttributeValue::Bool(finalization.livemode),
        AttributeValue::N(finalization.hand_over_at.as_nanosecond().to_string()),
    ])
}

/// Takes a pending item's finalization terms off it, in either form.
fn take_terms(item: &mut Item) -> Option<Finalization> {
    if let Some(AttributeValue::L(terms)) = item.remove(TERMS) {
        let [days, livemode, hand_over_at] = terms.as_slice() else {
            return None;
        };
        let days_until_due = match days {
            AttributeValue::Null(_) => None,
            days => Some(days.as_n().ok()?.parse().ok()?),
        };
        let nanos: i128 = hand_over_at.as_n().ok()?.parse().ok()?;
        return Some(Finalization {
            days_until_due,
            livemode: *livemode.as_bool().ok()?,
            hand_over_at: Timestamp::from_nanosecond(nanos).ok()?,
        });
    }
    let json = item.remove(FINALIZATION_BEFORE_TERMS)?;
    serde_json::from_str(json.as_s().ok()?).ok()
}

/// An invoice waiting at `stage` of the finalizer: in the pending index, and in the due
/// index at its hand-over time (the sweep's backstop for a lost finalize job).
pub(super) fn pending_invoice_item(
    tenant: TenantId,
    invoice: &Invoice,
    stage: PendingStage,
    finalization: &Finalization,
) -> Result<Item, StoreError> {
    let key = keys::invoice(tenant, invoice.id, invoice.account_id);
    let mut item = packed_invoice(invoice, &key)?;
    item.extend(keys::pending(tenant, invoice.id, invoice.created_at, stage));
    item.extend(keys::finalize_due(
        tenant,
        invoice.id,
        finalization.hand_over_at,
    ));
    item.insert(TERMS.to_owned(), terms(finalization));
    Ok(item)
}

impl Transaction<'_> {
    /// Replaces an invoice over its stored `expected` version, unless it is numbered and
    /// still owes its follow-ups: a whole-item write would take it off the pending index
    /// and its `invoice.finalized` and first payment attempt would never be written. The
    /// writer gets a version conflict and reads again; the finalizer writes the follow-ups
    /// within moments (or the sweep's backstop hands them over).
    pub(super) fn replace_invoice(
        &mut self,
        item: Item,
        expected: u64,
    ) -> Result<&mut Self, StoreError> {
        self.put(
            item,
            &format!(
                "version = :expected AND NOT begins_with({}, :owing)",
                keys::PENDING_SK
            ),
            Some(HashMap::from([
                (
                    ":expected".to_owned(),
                    AttributeValue::N(expected.to_string()),
                ),
                (
                    ":owing".to_owned(),
                    AttributeValue::S(keys::pending_stage(PendingStage::FollowUps).to_owned()),
                ),
            ])),
            StoreError::VersionConflict { entity: "invoice" },
        )
    }
}

/// The condition that an invoice is still pending at `stage`.
fn still_pending(stage: PendingStage) -> (&'static str, Item) {
    (
        "begins_with(pending_sk, :stage)",
        HashMap::from([(
            ":stage".to_owned(),
            AttributeValue::S(keys::pending_stage(stage).to_owned()),
        )]),
    )
}

/// The plan version a subscription counts towards, while it is not cancelled.
fn counted(sub: &Subscription) -> Option<(billing_domain::kernel::ids::PlanId, u32)> {
    (sub.status != SubscriptionStatus::Cancelled)
        .then_some((sub.terms.plan_id, sub.terms.plan_version))
}

impl Transaction<'_> {
    /// A lifecycle step: the subscription (version-checked), the invoice it made, the
    /// plan counts it moves, and its audit record and events.
    pub(super) fn subscription_step(
        &mut self,
        tenant: TenantId,
        previous: &Subscription,
        next: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<&mut Self, StoreError> {
        self.replace_version(
            subscription_item(tenant, next)?,
            previous.version,
            "subscription",
        )?;
        if let Some(invoice) = invoice {
            self.invoice(tenant, invoice, true, 0)?;
        }
        self.plan_counts(tenant, Some(previous), next)?
            .record(tenant, change)
    }

    /// A subscription created with its first invoice, the plan count it adds to, and its
    /// audit record and events.
    pub(super) fn new_subscription(
        &mut self,
        tenant: TenantId,
        subscription: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<&mut Self, StoreError> {
        self.create(
            subscription_item(tenant, subscription)?,
            StoreError::AlreadyExists {
                entity: "subscription",
            },
        )?;
        if let Some(invoice) = invoice {
            self.invoice(tenant, invoice, true, 0)?;
        }
        self.plan_counts(tenant, None, subscription)?
            .record(tenant, change)
    }

    pub(super) fn invoice(
        &mut self,
        tenant: TenantId,
        write: &InvoiceWrite,
        create: bool,
        previous_version: u64,
    ) -> Result<&mut Self, StoreError> {
        let invoice = &write.invoice;
        let item = match &write.pending {
            Some(finalization) => {
                pending_invoice_item(tenant, invoice, PendingStage::Number, finalization)?
            }
            None => invoice_item(tenant, invoice)?,
        };
        if create {
            self.create(item, StoreError::AlreadyExists { entity: "invoice" })?;
        } else {
            self.replace_invoice(item, previous_version)?;
        }
        if let Some(payment) = &write.payment {
            self.payment(tenant, None, payment)?;
        }
        if let Some(settlement) = &write.balance {
            self.balance(tenant, &settlement.change)?
                .record(tenant, &settlement.record)?;
        }
        self.wallets(tenant, write.wallets.as_deref())?
            .account_discounts(tenant, write.account_discounts.as_deref())?;
        if let Some(number) = write.number {
            self.use_invoice_numbers(InvoiceNumbers {
                tenant,
                first: number,
                last: number,
                prefix: None,
            })?;
        }
        Ok(self)
    }

    /// Notes that invoices written here take these numbers; they must follow on from the
    /// ones noted before.
    pub(super) fn use_invoice_numbers(
        &mut self,
        numbers: InvoiceNumbers,
    ) -> Result<&mut Self, StoreError> {
        self.invoice_numbers = Some(match self.invoice_numbers.take() {
            None => numbers,
            Some(so_far)
                if so_far.tenant == numbers.tenant
                    && so_far.last + 1 == numbers.first
                    && (so_far.prefix.is_none()
                        || numbers.prefix.is_none()
                        || so_far.prefix == numbers.prefix) =>
            {
                InvoiceNumbers {
                    last: numbers.last,
                    prefix: so_far.prefix.or(numbers.prefix),
                    ..so_far
                }
            }
            Some(_) => {
                return Err(StoreError::Internal(
                    "invoice numbers of one write must be consecutive".into(),
                ))
            }
        });
        Ok(self)
    }

    /// The sequence moves from the number before the first used here to the last, in
    /// this same transaction: a number is used exactly when its invoice is written. An
    /// update, so the prefix kept beside it stays.
    pub(super) fn move_invoice_sequence(&mut self) -> Result<&mut Self, StoreError> {
        let Some(numbers) = self.invoice_numbers.take() else {
            return Ok(self);
        };
        let mut condition = "((attribute_not_exists(last_number) AND :previous = :zero) OR last_number = :previous)".to_owned();
        let mut values = HashMap::from([
            (
                ":number".to_owned(),
                AttributeValue::N(numbers.last.to_string()),
            ),
            (
                ":previous".to_owned(),
                AttributeValue::N(numbers.first.saturating_sub(1).to_string()),
            ),
            (":zero".to_owned(), AttributeValue::N("0".into())),
        ]);
        if let Some(prefix) = numbers.prefix {
            condition.push_str(
                " AND (prefix = :prefix OR (attribute_not_exists(prefix) AND :prefix = :default_prefix))",
            );
            values.insert(":prefix".to_owned(), AttributeValue::S(prefix));
            values.insert(
                ":default_prefix".to_owned(),
                AttributeValue::S(DEFAULT_INVOICE_PREFIX.to_owned()),
            );
        }
        self.update(
            &keys::invoice_sequence(numbers.tenant),
            "SET last_number = :number",
            Some(&condition),
            values,
            StoreError::VersionConflict {
                entity: "invoice sequence",
            },
        )
    }

    fn plan_counts(
        &mut self,
        tenant: TenantId,
        before: Option<&Subscription>,
        after: &Subscription,
    ) -> Result<&mut Self, StoreError> {
        let (old, new) = (before.and_then(counted), counted(after));
        if old == new {
            return Ok(self);
        }
        for (version, delta) in [(old, -1), (new, 1)] {
            if let Some((plan, number)) = version {
                self.update(
                    &keys::plan_version(tenant, plan, number),
                    &format!("ADD {SUBSCRIPTION_COUNT} :delta"),
                    Some("attribute_exists(pk)"),
                    HashMap::from([(":delta".to_owned(), AttributeValue::N(delta.to_string()))]),
                    StoreError::Internal("the plan version of a subscription is gone".into()),
                )?;
            }
        }
        Ok(self)
    }
}

#[async_trait]
impl SubscriptionStore for DynamoStore {
    async fn insert_subscription(
        &self,
        tenant: TenantId,
        subscription: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.new_subscription(tenant, subscription, invoice, change)?;
        tx.commit().await
    }

    async fn save_subscription(
        &self,
        tenant: TenantId,
        previous: &Subscription,
        next: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.subscription_step(tenant, previous, next, invoice, change)?;
        tx.commit().await
    }

    async fn save_subscription_steps(
        &self,
        tenant: TenantId,
        steps: &[SubscriptionStep],
    ) -> Result<(), StepsFailed> {
        // As many whole steps per transaction as fit; each transaction moves the invoice
        // sequence over the numbers of its own steps.
        let mut written = 0;
        let mut pending = 0;
        let mut tx = self.transaction();
        for step in steps {
            let done = written;
            let failed = |error| StepsFailed {
                written: done,
                error,
            };
            let mut one = self.transaction();
            one.subscription_step(
                tenant,
                &step.previous,
                &step.next,
                step.invoice.as_ref(),
                &step.change,
            )
            .and_then(|one| one.rollups(tenant, &step.rollups))
            .map_err(failed)?;
            if pending > 0 && tx.len() + one.len() > MAX_TRANSACTION_ITEMS {
                std::mem::replace(&mut tx, self.transaction())
                    .commit()
                    .await
                    .map_err(failed)?;
                written += pending;
                pending = 0;
            }
            tx.absorb(one).map_err(failed)?;
            pending += 1;
        }
        if pending > 0 {
            tx.commit()
                .await
                .map_err(|error| StepsFailed { written, error })?;
        }
        Ok(())
    }

    async fn get_subscriptions(
        &self,
        tenant: TenantId,
        ids: &[SubscriptionId],
    ) -> Result<Vec<Subscription>, StoreError> {
        let keys = ids
            .iter()
            .map(|id| keys::subscription_primary(tenant, *id).primary())
            .collect();
        self.batch_get(keys, None)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn get_subscription(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        self.get(&keys::subscription_primary(tenant, id)).await
    }

    async fn list_subscriptions(
        &self,
        tenant: TenantId,
        filter: &SubscriptionFilter,
        page: &PageRequest,
    ) -> Result<Page<Subscription>, StoreError> {
        let cursor = page
            .starting_after
            .as_deref()
            .and_then(|id| SubscriptionId::parse(id, "starting_after").ok());
        let admit = |s: &Subscription| filter.admits(s);
        let id_of = |s: &Subscription| s.id.to_string();
        match filter.account {
            Some(account) => {
                let start = cursor.map(|id| keys::subscription(tenant, id, account).all());
                let query = self.query_gsi1(keys::account_subscriptions_index(tenant, account));
                self.scan_page(query, start, page, admit, id_of).await
            }
            None => {
                let after = cursor.map(|id| keys::subscription_primary(tenant, id).sk);
                self.scan_shards(
                    ShardRange::oldest_first(tenant, keys::SUBSCRIPTION_PREFIX, after.as_deref()),
                    page,
                    admit,
                    id_of,
                )
                .await
            }
        }
    }

    async fn clock_due_items(
        &self,
        _tenant: TenantId,
        clock: TestClockId,
        up_to: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueItem>, StoreError> {
        // Clock ids are unique across tenants, so the clock's partition is the tenant's.
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(DUE_INDEX)
            .key_condition_expression("#pk = :pk AND #sk <= :up_to")
            .expression_attribute_names("#pk", DUE_PK)
            .expression_attribute_names("#sk", DUE_SK)
            .expression_attribute_values(":pk", AttributeValue::S(keys::clock_due_partition(clock)))
            // `~` sorts after every character of a key, so everything due at `up_to` is in.
            .expression_attribute_values(
                ":up_to",
                AttributeValue::S(format!("{}~", keys::due_time(up_to))),
            )
            .projection_expression("#sk")
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(output
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| super::events::due_item(item.get(DUE_SK)?.as_s().ok()?))
            .collect())
    }
}

#[async_trait]
impl InvoiceStore for DynamoStore {
    async fn next_invoice_number(&self, tenant: TenantId) -> Result<NextInvoiceNumber, StoreError> {
        let item: Option<HashMap<String, serde_json::Value>> =
            self.get(&keys::invoice_sequence(tenant)).await?;
        let field = |name: &str| item.as_ref().and_then(|i| i.get(name).cloned());
        Ok(NextInvoiceNumber {
            number: field(SEQUENCE_LAST).and_then(|v| v.as_u64()).unwrap_or(0) + 1,
            prefix: field(SEQUENCE_PREFIX)
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| DEFAULT_INVOICE_PREFIX.to_owned()),
        })
    }

    async fn set_invoice_prefix(
        &self,
        tenant: TenantId,
        prefix: &str,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.update(
            &keys::invoice_sequence(tenant),
            "SET prefix = :prefix",
            None,
            HashMap::from([(":prefix".to_owned(), AttributeValue::S(prefix.to_owned()))]),
            StoreError::Internal("an unconditional update failed its condition".into()),
        )?
        .record(tenant, change)?;
        tx.commit().await
    }

    async fn insert_invoice(
        &self,
        tenant: TenantId,
        invoice: &InvoiceWrite,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.invoice(tenant, invoice, true, 0)?
            .record(tenant, change)?;
        tx.commit().await
    }

    async fn save_invoice(
        &self,
        tenant: TenantId,
        previous: &Invoice,
        next: &InvoiceWrite,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.invoice(tenant, next, false, previous.version)?
            .record(tenant, change)?;
        tx.commit().await
    }

    async fn get_invoice(
        &self,
        tenant: TenantId,
        id: InvoiceId,
    ) -> Result<Option<Invoice>, StoreError> {
        self.get(&keys::invoice_primary(tenant, id)).await
    }

    async fn pending_invoices(
        &self,
        tenant: TenantId,
        limit: usize,
    ) -> Result<Vec<PendingInvoice>, StoreError> {
        // The first `limit` of each shard, all at once, merged (`F#` sorts before `N#`, then
        // by time); then the invoices as stored now (the index lags its table), keeping
        // those still pending, at the stage they are at now.
        let mut queries = tokio::task::JoinSet::new();
        for shard in 0..keys::PENDING_SHARDS {
            let store = self.clone();
            queries.spawn(async move { store.pending_in_shard(tenant, shard, limit).await });
        }
        let mut entries = Vec::new();
        while let Some(joined) = queries.join_next().await {
            entries.extend(joined.map_err(|e| StoreError::Internal(e.to_string()))??);
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.truncate(limit);
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<Item> = entries.iter().map(|(_, key)| key.clone()).collect();
        let mut found: HashMap<String, Item> = self
            .batch_get(wanted, None)
            .await?
            .into_iter()
            .filter_map(|item| Some((item.get(keys::SK)?.as_s().ok()?.clone(), item)))
            .collect();
        let mut pending = Vec::with_capacity(entries.len());
        for (_, key) in entries {
            let Some(mut item) = key
                .get(keys::SK)
                .and_then(|v| v.as_s().ok())
                .and_then(|sk| found.remove(sk))
            else {
                continue;
            };
            let stage = item
                .get(keys::PENDING_SK)
                .and_then(|v| v.as_s().ok())
                .and_then(|sk| {
                    [PendingStage::FollowUps, PendingStage::Number]
                        .into_iter()
                        .find(|stage| sk.starts_with(keys::pending_stage(*stage)))
                });
            let finalization = take_terms(&mut item);
            if let (Some(stage), Some(finalization)) = (stage, finalization) {
                pending.push(PendingInvoice {
                    stage,
                    invoice: from_item(item)?,
                    finalization,
                });
            }
        }
        // An invoice that moved on to its follow-ups since the index was read comes first.
        pending.sort_by_key(|p| p.stage != PendingStage::FollowUps);
        Ok(pending)
    }

    async fn number_invoices(
        &self,
        tenant: TenantId,
        prefix: &str,
        numbered: &[NumberedInvoice],
    ) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (numbered.first(), numbered.last()) else {
            return Ok(());
        };
        if numbered.len() > MAX_NUMBERED_PER_WRITE {
            return Err(StoreError::Internal(format!(
                "at most {MAX_NUMBERED_PER_WRITE} invoices are numbered per write"
            )));
        }
        let mut tx = self.transaction();
        let (condition, mut values) = still_pending(PendingStage::Number);
        let condition = format!("version = :expected AND {condition}");
        for (n, expected) in numbered.iter().zip(first.number..) {
            if n.number != expected {
                return Err(StoreError::Internal(
                    "invoice numbers of one write must be consecutive".into(),
                ));
            }
            values.insert(
                ":expected".to_owned(),
                AttributeValue::N(n.previous_version.to_string()),
            );
            tx.put(
                pending_invoice_item(tenant, &n.invoice, PendingStage::FollowUps, &n.finalization)?,
                &condition,
                Some(values.clone()),
                StoreError::VersionConflict { entity: "invoice" },
            )?;
        }
        tx.use_invoice_numbers(InvoiceNumbers {
            tenant,
            first: first.number,
            last: last.number,
            prefix: Some(prefix.to_owned()),
        })?;
        tx.commit().await
    }

    async fn finish_invoice(
        &self,
        tenant: TenantId,
        invoice: &Invoice,
        payment: Option<&billing_domain::collection::payment::Payment>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let key = keys::invoice(tenant, invoice.id, invoice.account_id);
        let (condition, mut values) = still_pending(PendingStage::FollowUps);
        // Off the pending index; in the due index only for its due date, if it has one.
        let expression = match overdue_entry(&key, invoice) {
            Some(due) => {
                values.extend(
                    due.into_iter()
                        .map(|(name, value)| (format!(":{name}"), value)),
                );
                format!(
                    "SET {DUE_PK} = :{DUE_PK}, {DUE_SK} = :{DUE_SK} REMOVE {}, {}, {TERMS}, {FINALIZATION_BEFORE_TERMS}",
                    keys::PENDING_PK,
                    keys::PENDING_SK
                )
            }
            None => format!(
                "REMOVE {}, {}, {TERMS}, {FINALIZATION_BEFORE_TERMS}, {DUE_PK}, {DUE_SK}",
                keys::PENDING_PK,
                keys::PENDING_SK
            ),
        };
        let mut tx = self.transaction();
        tx.update(
            &key,
            &expression,
            Some(condition),
            values,
            StoreError::VersionConflict { entity: "invoice" },
        )?;
        if let Some(payment) = payment {
            tx.payment(tenant, None, payment)?;
        }
        tx.record(tenant, change)?;
        tx.commit().await
    }

    async fn list_invoices(
        &self,
        tenant: TenantId,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> Result<Page<Invoice>, StoreError> {
        let cursor = page
            .starting_after
            .as_deref()
            .and_then(|id| InvoiceId::parse(id, "starting_after").ok());
        let admit = |i: &Invoice| filter.admits(i);
        let id_of = |i: &Invoice| i.id.to_string();
        match filter.account {
            Some(account) => {
                let start = cursor.map(|id| keys::invoice(tenant, id, account).all());
                let query = self
                    .query_gsi1(keys::account_invoices_index(tenant, account))
                    .scan_index_forward(false);
                self.scan_page(query, start, page, admit, id_of).await
            }
            None => {
                let after = cursor.map(|id| keys::invoice_primary(tenant, id).sk);
                self.scan_shards(
                    ShardRange::newest_first(tenant, keys::INVOICE_PREFIX, after.as_deref()),
                    page,
                    admit,
                    id_of,
                )
                .await
            }
        }
    }
}

impl DynamoStore {
    /// The first `limit` of one shard's entries: each its `pending_sk` (stage, time, id)
    /// and its invoice's primary key.
    async fn pending_in_shard(
        &self,
        tenant: TenantId,
        shard: u32,
        limit: usize,
    ) -> Result<Vec<(String, Item)>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(keys::PENDING_INDEX)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", keys::PENDING_PK)
            .expression_attribute_names("#sk", keys::PENDING_SK)
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(keys::pending_shard(tenant, shard)),
            )
            .expression_attribute_names("#table_pk", keys::PK)
            .expression_attribute_names("#table_sk", keys::SK)
            .projection_expression("#table_pk, #table_sk, #sk")
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(output
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|mut item| {
                let order = item.remove(keys::PENDING_SK)?.as_s().ok()?.clone();
                Some((order, item))
            })
            .collect())
    }
}

#[async_trait]
impl TestClockStore for DynamoStore {
    async fn insert_test_clock(
        &self,
        tenant: TenantId,
        clock: &TestClock,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            to_item("test_clock", clock, &keys::test_clock(tenant, clock.id))?,
            StoreError::AlreadyExists {
                entity: "test clock",
            },
        )?
        .record(tenant, change)?;
        tx.commit().await
    }

    async fn save_test_clock(
        &self,
        tenant: TenantId,
        previous: &TestClock,
        next: &TestClock,
    ) -> Result<(), StoreError> {
        let key = keys::test_clock(tenant, next.id);
        let mut item = to_item("test_clock", next, &key)?;
        // While advancing, the clock waits in the due index so the sweep finishes the work.
        if let Some(at) = next.advance_requested_at {
            item.extend(keys::due(&key, at));
        }
        let mut tx = self.transaction();
        tx.replace_version(item, previous.version, "test clock")?;
        tx.commit().await
    }

    async fn get_test_clock(
        &self,
        tenant: TenantId,
        id: TestClockId,
    ) -> Result<Option<TestClock>, StoreError> {
        self.get(&keys::test_clock(tenant, id)).await
    }
}

/// A simulation job's item (or one of its chunks'), deleted by TTL when the job expires.
fn expiring_item<T: serde::Serialize>(
    entity: &str,
    value: &T,
    key: &keys::Key,
    run: &SimulationRun,
) -> Result<Item, StoreError> {
    let mut item = to_item(entity, value, key)?;
    item.insert(keys::TTL.to_owned(), epoch_seconds(run.retained_until));
    Ok(item)
}

#[async_trait]
impl SimulationStore for DynamoStore {
    async fn insert_simulation(
        &self,
        tenant: TenantId,
        run: &SimulationRun,
    ) -> Result<(), StoreError> {
        let key = keys::simulation(tenant, run.id);
        let mut tx = self.transaction();
        tx.create(
            expiring_item("simulation", run, &key, run)?,
            StoreError::AlreadyExists {
                entity: "simulation",
            },
        )?;
        tx.commit().await
    }

    async fn save_simulation(
        &self,
        tenant: TenantId,
        previous: &SimulationRun,
        next: &SimulationRun,
        chunk: Option<&SimulationChunk>,
    ) -> Result<(), StoreError> {
        let key = keys::simulation(tenant, next.id);
        let mut tx = self.transaction();
        tx.replace_version(
            expiring_item("simulation", next, &key, next)?,
            previous.version,
            "simulation",
        )?;
        if let Some(chunk) = chunk {
            let key = keys::simulation_chunk(tenant, next.id, chunk.number);
            tx.create(
                expiring_item("simulation_chunk", chunk, &key, next)?,
                StoreError::VersionConflict {
                    entity: "simulation",
                },
            )?;
        }
        tx.commit().await
    }

    async fn get_simulation(
        &self,
        tenant: TenantId,
        id: SimulationId,
    ) -> Result<Option<SimulationRun>, StoreError> {
        self.get(&keys::simulation(tenant, id)).await
    }

    async fn simulation_chunks(
        &self,
        tenant: TenantId,
        id: SimulationId,
    ) -> Result<Vec<SimulationChunk>, StoreError> {
        let query = self.query_partition(
            keys::tenant_partition(tenant),
            &keys::simulation_chunks_prefix(id),
        );
        self.query_all(query)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use billing_domain::billing::invoice::InvoiceStatus;
    use serde_json::json;

    use super::*;
    use crate::dynamo::packed::item_bytes;

    /// A renewal's invoice as the simulation bills it (one flat monthly fee), drafted.
    fn renewal_draft() -> Invoice {
        let period = json!({"start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"});
        serde_json::from_value(json!({
            "id": "in_01M8QEDC00129E22K6NT482WWW", "number": null,
            "account_id": "acct_01M8YV63VZN2ZX6S097VCXP26R",
            "subscription_id": "sub_01M8YV63W4QXW0T2S98SSBPK1P", "test_clock": null,
            "status": "draft", "billing_reason": "subscription_cycle", "currency": "usd",
            "period": period, "lines": [{"id": "recurring_fee", "kind": "charge",
                "description": "1 × Pro plan (monthly)", "amount": 4900, "quantity": "1",
                "unit_price": null, "period": period, "discount_amount": 0, "discounts": [],
                "tax_amount": 0, "tax_reason": "not_configured", "taxes": [], "total": 4900,
                "total_excluding_tax": 4900, "derivation": {"model": "flat_fee",
                "quantity": "1", "source": "charge", "steps": [{"amount": "49", "step": "flat"}],
                "rounding": {"adjustment": "0", "decimals": 2, "rounded_minor": 4900,
                "rule": "half_away_from_zero", "unrounded": "49"}}}],
            "subtotal": 4900, "discount_total": 0, "tax_total": 0, "total": 4900,
            "credit_total": 0, "amount_due": 4900, "amount_paid": 0,
            "collection_method": "charge_automatically", "due_date": null,
            "created_at": "2026-12-01T00:00:00Z", "finalized_at": null, "paid_at": null,
            "voided_at": null, "tax_reason": "not_configured", "version": 1
        }))
        .unwrap()
    }

    fn terms_of(hand_over_at: &str, days_until_due: Option<u32>) -> Finalization {
        Finalization {
            days_until_due,
            livemode: true,
            hand_over_at: hand_over_at.parse().unwrap(),
        }
    }

    /// Each of the renewal invoice's three writes (drafted, numbered, followed up) is of an
    /// item under 1 KB (1 write unit a copy, not 2), read back as written.
    #[test]
    fn a_renewal_invoice_item_is_under_1_kb_at_each_write_and_reads_back_with_its_terms() {
        let tenant = TenantId::from_ulid(ulid::Ulid::new());
        let draft = renewal_draft();
        let mut numbered = draft.clone();
        numbered.number = Some("INV-000123".into());
        numbered.status = InvoiceStatus::Open;
        numbered.finalized_at = Some("2026-12-01T00:00:07.123456789Z".parse().unwrap());
        numbered.version = 2;
        let terms = terms_of("2026-12-01T00:10:00.000000001Z", None);
        for (invoice, stage) in [
            (&draft, PendingStage::Number),
            (&numbered, PendingStage::FollowUps),
        ] {
            let mut item = pending_invoice_item(tenant, invoice, stage, &terms).unwrap();
            let bytes = item_bytes(&item);
            assert!(bytes < 1024, "pending at {stage:?}: {bytes} bytes");
            assert_eq!(take_terms(&mut item), Some(terms));
            assert_eq!(&from_item::<Invoice>(item).unwrap(), invoice);
        }
        let finished = invoice_item(tenant, &numbered).unwrap();
        let bytes = item_bytes(&finished);
        assert!(bytes < 1024, "followed up: {bytes} bytes");
        assert_eq!(from_item::<Invoice>(finished).unwrap(), numbered);
    }

    #[test]
    fn terms_read_back_exactly_and_so_do_those_written_as_json_before() {
        let tenant = TenantId::from_ulid(ulid::Ulid::new());
        let draft = renewal_draft();
        for terms in [
            terms_of("2026-12-01T00:10:00Z", Some(30)),
            terms_of("1970-01-01T00:00:00.000000001Z", Some(0)),
            terms_of("2099-12-31T23:59:59.999999999Z", None),
        ] {
            let mut item =
                pending_invoice_item(tenant, &draft, PendingStage::Number, &terms).unwrap();
            assert_eq!(take_terms(&mut item), Some(terms));
            assert!(!item.contains_key(TERMS));
            let mut before = Item::from([(
                FINALIZATION_BEFORE_TERMS.to_owned(),
                AttributeValue::S(serde_json::to_string(&terms).unwrap()),
            )]);
            assert_eq!(take_terms(&mut before), Some(terms));
        }
    }
}
