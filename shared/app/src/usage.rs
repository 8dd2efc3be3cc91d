//! Usage metering: ingesting events (one or a batch) into rollups exactly once, the live
//! usage of a subscription, entitlement checks, and the billing side — the usage lines of
//! a period a lifecycle step closes, and supplemental invoices for late usage.
//!
//! Ingest plans every write from what it read and conditions each rollup write on the
//! version it read; events are created only if their transaction id is new. A batch is
//! written in chunks of at most [`MAX_ITEMS`] items (one TransactWriteItems each), every
//! event in the same chunk as the rollup change it causes, so an event is never half
//! applied. A chunk that loses a race (a duplicate delivered concurrently, a rollup moved)
//! is re-planned from fresh reads; what committed is found committed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use billing_domain::billing::invoice_draft::{
    build_invoice, InvoiceDraft, InvoiceInput, LineInput, LineSource,
};
use billing_domain::billing::periods::Period;
use billing_domain::billing::subscription::{
    Billing, BillingReason, Subscription, SubscriptionStatus, Transition, UsageTerm,
};
use billing_domain::catalog::charges::{Derivation, Priced};
use billing_domain::catalog::metric::Metric;
use billing_domain::customers::access::Permission;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::error::ValidationError;
use billing_domain::kernel::ids::{AccountId, SubscriptionId, TenantId, TestClockId};
use billing_domain::kernel::money::Money;
use billing_domain::usage::entitlements::{Check, Entitlement, UsageThreshold};
use billing_domain::usage::meter::{
    self, Placement, UsageEvent, UsageEventInput, UsageOutcome, DEFAULT_GRACE, LATE_USAGE_DEBOUNCE,
    MAX_BATCH,
};
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ports::*;
use crate::webhooks::system_caller;
use crate::{to_json, App, AppError, Caller, ChangeSpec};

/// Most items one usage write touches (DynamoDB's TransactWriteItems limit).
pub const MAX_ITEMS: usize = 100;
/// How often a batch is re-planned after losing a race before the caller is told to retry.
const WRITE_ATTEMPTS: usize = 8;

/// Each event's transaction id and outcome, by position in the batch, once decided.
type Outcomes = Vec<Option<(String, Result<UsageOutcome, ValidationError>)>>;

/// An event ready to be written: validated, placed, with what it belongs to.
struct Candidate {
    index: usize,
    sub: Arc<Subscription>,
    metric: Arc<Metric>,
    event: UsageEvent,
    placement: Placement,
    now: Timestamp,
}

impl Candidate {
    fn rollup_key(&self) -> Option<RollupKey> {
        self.placement.period().map(|p| RollupKey {
            subscription: self.sub.id,
            period_start: p.start,
            metric: self.metric.code.clone(),
        })
    }
}

/// What a batch looked up, so each subscription, metric and clock is read once.
#[derive(Default)]
struct Lookups {
    subscriptions: HashMap<(bool, String), Result<Arc<Subscription>, ValidationError>>,
    metrics: HashMap<String, Option<Arc<Metric>>>,
    clocks: HashMap<Option<TestClockId>, Timestamp>,
}

/// One chunk of a batch, as it is being planned.
#[derive(Default)]
struct Chunk {
    write: UsageWrite,
    /// Rollups this chunk moves, by key: (version read, state after the chunk).
    rollups: BTreeMap<RollupKey, (u64, Rollup)>,
    /// Candidates (by position in the batch) and whether each is late.
    members: Vec<(usize, bool)>,
}

impl Chunk {
    /// Items the chunk writes, with room for its threshold events.
    fn cost(&self, subs: &HashMap<SubscriptionId, Arc<Subscription>>) -> usize {
        let limited = self
            .rollups
            .keys()
            .filter(|k| entitlement(subs.get(&k.subscription), &k.metric).is_some())
            .count();
        self.write.events.len()
            + self.write.distinct_values.len()
            + self.rollups.len()
            // a quota snapshot, and up to two threshold events, per limited rollup
            + limited * 3
            + usize::from(limited > 0)
    }
}

fn entitlement<'a>(sub: Option<&'a Arc<Subscription>>, metric: &str) -> Option<&'a Entitlement> {
    sub?.terms.entitlements.iter().find(|e| e.metric == metric)
}

fn invalid(code: ErrorCode, param: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(code, param, message)
}

/// One metric of a period: the aggregate, and what it costs so far.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MetricUsage {
    pub metric: String,
    /// The metric's aggregate (count, sum, max, unique_count or latest) in the period.
    #[serde(with = "billing_domain::kernel::decimal::serde_decimal")]
    #[schema(value_type = String)]
    pub quantity: Decimal,
    pub events: u64,
    /// Priced by the subscription's usage charge; `null` for a metric it does not charge.
    #[schema(value_type = Option<Object>)]
    pub amount: Option<Money>,
    /// How the amount was computed (the engine's derivation: tiers, rounding, commitment).
    #[schema(value_type = Option<Object>)]
    pub derivation: Option<Derivation>,
    /// What invoices billed for it so far (once the period is invoiced).
    pub billed_amount: Option<i64>,
    /// The plan's limit on it, and what is left.
    pub entitlement: Option<Check>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PeriodUsage {
    #[schema(value_type = Object)]
    pub period: Period,
    pub current: bool,
    pub metrics: Vec<MetricUsage>,
    /// For the current period: the invoice its end would produce with the usage so far.
    #[schema(value_type = Option<Object>)]
    pub projected_invoice: Option<InvoiceDraft>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SubscriptionUsage {
    #[schema(value_type = String)]
    pub subscription_id: SubscriptionId,
    pub currency: String,
    pub periods: Vec<PeriodUsage>,
}

/// The answer to an entitlement check.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EntitlementCheck {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub metric: String,
    #[schema(value_type = Option<String>)]
    pub subscription_id: Option<SubscriptionId>,
    #[schema(value_type = Option<Object>)]
    pub period: Option<Period>,
    #[serde(flatten)]
    pub check: Check,
}

impl App {
    /// Records a batch (at most [`MAX_BATCH`]); answers per event, in order.
    pub async fn record_usage(
        &self,
        caller: &Caller,
        inputs: Vec<UsageEventInput>,
    ) -> Result<Vec<UsageOutcome>, AppError> {
        Ok(self
            .ingest(caller, inputs)
            .await?
            .into_iter()
            .map(|(id, outcome)| outcome.unwrap_or_else(|e| UsageOutcome::rejected(id, e)))
            .collect())
    }

    /// Records one event; a refusal is an error.
    pub async fn record_usage_event(
        &self,
        caller: &Caller,
        input: UsageEventInput,
    ) -> Result<UsageOutcome, AppError> {
        let (_, outcome) = self
            .ingest(caller, vec![input])
            .await?
            .pop()
            .ok_or_else(|| AppError::Internal("an event without an outcome".into()))?;
        Ok(outcome?)
    }

    /// Each event's outcome (or why it was refused), by transaction id, in order.
    async fn ingest(
        &self,
        caller: &Caller,
        inputs: Vec<UsageEventInput>,
    ) -> Result<Vec<(String, Result<UsageOutcome, ValidationError>)>, AppError> {
        caller.require(Permission::WriteBilling)?;
        if inputs.is_empty() || inputs.len() > MAX_BATCH {
            return Err(invalid(
                ErrorCode::InvalidBatch,
                "events",
                format!("a batch holds 1 to {MAX_BATCH} events"),
            )
            .into());
        }
        let mut outcomes: Outcomes = vec![None; inputs.len()];
        let mut lookups = Lookups::default();
        let mut candidates = Vec::with_capacity(inputs.len());
        let mut in_batch = BTreeSet::new();
        for (index, input) in inputs.into_iter().enumerate() {
            let transaction_id = input.transaction_id.clone();
            match self.prepare(caller, &mut lookups, index, input).await {
                Ok(c) if !in_batch.insert(c.event.transaction_id.clone()) => {
                    outcomes[index] = Some((
                        transaction_id.clone(),
                        Ok(UsageOutcome::duplicate(transaction_id)),
                    ));
                }
                Ok(c) => candidates.push(c),
                Err(AppError::Invalid(e)) => {
                    outcomes[index] = Some((transaction_id, Err(e)));
                }
                Err(other) => return Err(other),
            }
        }
        for _ in 0..WRITE_ATTEMPTS {
            if candidates.is_empty() {
                break;
            }
            self.write_candidates(caller, &mut candidates, &mut outcomes)
                .await?;
        }
        if !candidates.is_empty() {
            return Err(AppError::Unavailable(
                "usage of these subscriptions kept changing under this request; retry it (accepted events come back as duplicates)".into(),
            ));
        }
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// Validates one event and decides where it counts.
    async fn prepare(
        &self,
        caller: &Caller,
        lookups: &mut Lookups,
        index: usize,
        input: UsageEventInput,
    ) -> Result<Candidate, AppError> {
        meter::validate_transaction_id(&input.transaction_id)?;
        let sub = self.usage_subscription(caller, lookups, &input).await?;
        let metric = match lookups.metrics.get(&input.metric) {
            Some(m) => m.clone(),
            None => {
                let m = self
                    .store
                    .get_metric_by_code(caller.tenant_id, &input.metric)
                    .await?
                    .map(Arc::new);
                lookups.metrics.insert(input.metric.clone(), m.clone());
                m
            }
        }
        .ok_or_else(|| {
            invalid(
                ErrorCode::UnknownMetric,
                "metric",
                format!(
                    "no billable metric has the code `{}`; create it with POST /v1/metrics",
                    input.metric
                ),
            )
        })?;
        let now = match lookups.clocks.get(&sub.test_clock) {
            Some(now) => *now,
            None => {
                let now = self.now_for(caller, sub.test_clock).await?;
                lookups.clocks.insert(sub.test_clock, now);
                now
            }
        };
        let event = UsageEvent::validate(
            input.transaction_id,
            &metric,
            input.value.as_ref(),
            input.properties,
            input.timestamp.unwrap_or(now),
            now,
        )?;
        let placement = meter::place(&sub, event.timestamp, now, DEFAULT_GRACE)?;
        Ok(Candidate {
            index,
            sub,
            metric,
            event,
            placement,
            now,
        })
    }

    /// The subscription an event names, by id or by its account's external_id.
    async fn usage_subscription(
        &self,
        caller: &Caller,
        lookups: &mut Lookups,
        input: &UsageEventInput,
    ) -> Result<Arc<Subscription>, AppError> {
        let key =
            match (&input.subscription, &input.external_account_id) {
                (Some(id), None) => (true, id.clone()),
                (None, Some(external)) => (false, external.clone()),
                _ => return Err(invalid(
                    ErrorCode::MissingSubscription,
                    "subscription",
                    "name the subscription, or the account by external_account_id (one of the two)",
                )
                .into()),
            };
        if let Some(found) = lookups.subscriptions.get(&key) {
            return Ok(found.clone()?);
        }
        let found = self.find_usage_subscription(caller, &key).await?;
        lookups.subscriptions.insert(key, found.clone());
        Ok(found?)
    }

    async fn find_usage_subscription(
        &self,
        caller: &Caller,
        (by_id, value): &(bool, String),
    ) -> Result<Result<Arc<Subscription>, ValidationError>, AppError> {
        let tenant = caller.tenant_id;
        if *by_id {
            let id = SubscriptionId::parse(value, "subscription")?;
            return Ok(self
                .store
                .get_subscription(tenant, id)
                .await?
                .map(Arc::new)
                .ok_or_else(|| {
                    invalid(
                        ErrorCode::UnknownSubscription,
                        "subscription",
                        format!("no such subscription: {id}"),
                    )
                }));
        }
        let Some(account) = self.account_by_external_id(tenant, value).await? else {
            return Ok(Err(invalid(
                ErrorCode::UnknownAccount,
                "external_account_id",
                format!("no account has the external_id `{value}`"),
            )));
        };
        let live = self.live_subscriptions(tenant, account).await?;
        Ok(match live.as_slice() {
            [one] => Ok(Arc::new(one.clone())),
            [] => Err(invalid(
                ErrorCode::NoSubscription,
                "external_account_id",
                format!("the account `{value}` has no live subscription"),
            )),
            _ => Err(invalid(
                ErrorCode::AmbiguousSubscription,
                "external_account_id",
                format!("the account `{value}` has several live subscriptions; name one with `subscription`"),
            )),
        })
    }

    async fn account_by_external_id(
        &self,
        tenant: TenantId,
        external_id: &str,
    ) -> Result<Option<AccountId>, AppError> {
        let page = self
            .store
            .list_accounts(
                tenant,
                &AccountFilter {
                    external_id: Some(external_id.to_owned()),
                    ..AccountFilter::default()
                },
                &PageRequest::first(1),
            )
            .await?;
        Ok(page.items.first().map(|a| a.id))
    }

    async fn live_subscriptions(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Vec<Subscription>, AppError> {
        let page = self
            .store
            .list_subscriptions(
                tenant,
                &SubscriptionFilter {
                    account: Some(account),
                    ..SubscriptionFilter::default()
                },
                &PageRequest::first(100),
            )
            .await?;
        Ok(page
            .items
            .into_iter()
            .filter(|s| s.status != SubscriptionStatus::Cancelled)
            .collect())
    }

    /// One attempt at writing the candidates: finds duplicates, plans chunks from fresh
    /// reads, and writes them in order. Written and duplicate candidates leave the list.
    async fn write_candidates(
        &self,
        caller: &Caller,
        candidates: &mut Vec<Candidate>,
        outcomes: &mut Outcomes,
    ) -> Result<(), AppError> {
        let tenant = caller.tenant_id;
        let ids: Vec<String> = candidates
            .iter()
            .map(|c| c.event.transaction_id.clone())
            .collect();
        let stored = self.store.stored_usage_events(tenant, &ids).await?;
        candidates.retain(|c| {
            let duplicate = stored.contains(&c.event.transaction_id);
            if duplicate {
                let id = c.event.transaction_id.clone();
                outcomes[c.index] = Some((id.clone(), Ok(UsageOutcome::duplicate(id))));
            }
            !duplicate
        });
        let chunks = self.plan_chunks(caller, candidates).await?;
        let mut written = BTreeSet::new();
        let mut result = Ok(());
        for chunk in chunks {
            match self.store.record_usage(tenant, &chunk.write).await {
                Ok(()) => {
                    for (position, late) in chunk.members {
                        let c = &candidates[position];
                        let id = c.event.transaction_id.clone();
                        outcomes[c.index] = Some((
                            id.clone(),
                            Ok(UsageOutcome::accepted(id, c.placement, late)),
                        ));
                        written.insert(position);
                    }
                }
                // Lost a race: re-plan what is left from fresh reads.
                Err(StoreError::AlreadyExists { .. } | StoreError::VersionConflict { .. }) => break,
                Err(other) => {
                    result = Err(other.into());
                    break;
                }
            }
        }
        let mut position = 0;
        candidates.retain(|_| {
            position += 1;
            !written.contains(&(position - 1))
        });
        result
    }

    /// Reads the rollups and distinct values the candidates touch and plans the chunks.
    async fn plan_chunks(
        &self,
        caller: &Caller,
        candidates: &[Candidate],
    ) -> Result<Vec<Chunk>, AppError> {
        let tenant = caller.tenant_id;
        let keys: BTreeSet<RollupKey> = candidates
            .iter()
            .filter_map(Candidate::rollup_key)
            .collect();
        let keys: Vec<RollupKey> = keys.into_iter().collect();
        let mut state: BTreeMap<RollupKey, Rollup> = self
            .store
            .get_rollups(tenant, &keys)
            .await?
            .into_iter()
            .map(|r| (r.key(), r))
            .collect();
        let mut seen: BTreeMap<RollupKey, BTreeSet<String>> = BTreeMap::new();
        for key in &keys {
            let values: BTreeSet<String> = candidates
                .iter()
                .filter(|c| c.rollup_key().as_ref() == Some(key))
                .filter_map(|c| match &c.event.value {
                    meter::Measured::Distinct { value } => Some(value.clone()),
                    _ => None,
                })
                .collect();
            if !values.is_empty() {
                let values: Vec<String> = values.into_iter().collect();
                let known = self
                    .store
                    .seen_distinct_values(tenant, key, &values)
                    .await?;
                seen.insert(key.clone(), known);
            }
        }
        let subs: HashMap<SubscriptionId, Arc<Subscription>> = candidates
            .iter()
            .map(|c| (c.sub.id, c.sub.clone()))
            .collect();
        let mut chunks = Vec::new();
        let mut chunk = Chunk::default();
        for (position, c) in candidates.iter().enumerate() {
            let key = c.rollup_key();
            let new_value = match (&key, &c.event.value) {
                (Some(k), meter::Measured::Distinct { value }) => {
                    !seen.get(k).is_some_and(|s| s.contains(value))
                }
                _ => false,
            };
            let added = 1
                + usize::from(new_value)
                + key.as_ref().map_or(0, |k| {
                    if chunk.rollups.contains_key(k) {
                        0
                    } else {
                        1 + if entitlement(Some(&c.sub), &c.metric.code).is_some() {
                            4
                        } else {
                            0
                        }
                    }
                });
            if chunk.cost(&subs) + added > MAX_ITEMS {
                chunks.push(self.close_chunk(
                    caller,
                    std::mem::take(&mut chunk),
                    &mut state,
                    &subs,
                )?);
            }
            let mut late = false;
            if let Some(key) = key {
                let period = c.placement.period().unwrap_or(c.sub.current_period);
                let (_, rollup) = chunk.rollups.entry(key.clone()).or_insert_with(|| {
                    let current = state.get(&key).cloned().unwrap_or_else(|| {
                        Rollup::empty(&c.sub, &c.metric.code, c.metric.aggregation, period)
                    });
                    (current.version, current)
                });
                rollup.aggregation = c.metric.aggregation;
                rollup
                    .aggregate
                    .apply(&c.event, new_value)
                    .map_err(|e| invalid(ErrorCode::InvalidValue, "value", e.to_string()))?;
                if rollup.billed.is_some() {
                    late = true;
                    rollup
                        .late_due_at
                        .get_or_insert(c.now + LATE_USAGE_DEBOUNCE);
                }
                if new_value {
                    if let meter::Measured::Distinct { value } = &c.event.value {
                        seen.entry(key.clone()).or_default().insert(value.clone());
                        chunk.write.distinct_values.push((key, value.clone()));
                    }
                }
            }
            chunk.write.events.push(StoredUsageEvent {
                event: c.event.clone(),
                subscription_id: c.sub.id,
                period_start: c.placement.period().map(|p| p.start),
                received_at: c.now,
            });
            chunk.members.push((position, late));
        }
        if !chunk.members.is_empty() {
            chunks.push(self.close_chunk(caller, chunk, &mut state, &subs)?);
        }
        Ok(chunks)
    }

    /// Finishes a chunk: its rollup writes, quota snapshots and threshold events; the
    /// next chunk continues from the state this one leaves.
    fn close_chunk(
        &self,
        caller: &Caller,
        mut chunk: Chunk,
        state: &mut BTreeMap<RollupKey, Rollup>,
        subs: &HashMap<SubscriptionId, Arc<Subscription>>,
    ) -> Result<Chunk, AppError> {
        let mut change: Option<crate::ports::Change> = None;
        for (key, (read, mut rollup)) in std::mem::take(&mut chunk.rollups) {
            rollup.version = read + 1;
            let sub = subs.get(&key.subscription);
            if let (Some(sub), Some(limit), None) =
                (sub, entitlement(sub, &key.metric), &rollup.billed)
            {
                let used = rollup.quantity();
                let now = chunk
                    .write
                    .events
                    .iter()
                    .find(|e| e.subscription_id == sub.id)
                    .map_or(sub.updated_at, |e| e.received_at);
                chunk.write.quotas.push(QuotaSnapshot {
                    account_id: sub.account_id,
                    subscription_id: sub.id,
                    metric: key.metric.clone(),
                    period: rollup.period,
                    used,
                    test_clock: sub.test_clock,
                    entitlement: limit.clone(),
                });
                for threshold in limit.reached(rollup.announced, used) {
                    rollup.announced = threshold;
                    let data = to_json(&UsageThreshold {
                        subscription_id: sub.id,
                        account_id: sub.account_id,
                        metric: key.metric.clone(),
                        period: rollup.period,
                        threshold,
                        limit: limit.limit,
                        used,
                        enforcement: limit.enforcement,
                    })?;
                    match &mut change {
                        None => {
                            change = Some(self.change(
                                caller,
                                now,
                                ChangeSpec {
                                    entity_type: "usage",
                                    entity_id: sub.id.to_string(),
                                    action: AuditAction::Update,
                                    event_type: Some(EventType::UsageThresholdReached),
                                    before: None,
                                    after: &data,
                                },
                            ))
                        }
                        Some(change) => change.events.push(self.event(
                            caller,
                            now,
                            EventType::UsageThresholdReached,
                            sub.id.to_string(),
                            data,
                            None,
                        )),
                    }
                }
            }
            state.insert(key, rollup.clone());
            chunk.write.rollups.push(RollupWrite {
                expected_version: read,
                next: rollup,
            });
        }
        chunk.write.change = change;
        Ok(chunk)
    }

    /// The usage of a subscription: the current period (with its projected invoice), or
    /// the periods starting in `[from, to)`.
    pub async fn subscription_usage(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        range: Option<(Timestamp, Timestamp)>,
    ) -> Result<SubscriptionUsage, AppError> {
        let sub = self.get_subscription(caller, id).await?;
        let current = sub.current_period;
        let (from, to) = range.unwrap_or((
            current.start,
            current.start + SignedDuration::from_millis(1),
        ));
        if from >= to {
            return Err(invalid(ErrorCode::InvalidRange, "to", "`to` must be after `from`").into());
        }
        let rollups = self
            .store
            .list_rollups(caller.tenant_id, sub.id, from, to)
            .await?;
        let mut by_period: BTreeMap<Timestamp, (Period, Vec<Rollup>)> = BTreeMap::new();
        for r in rollups {
            by_period
                .entry(r.period.start)
                .or_insert_with(|| (r.period, Vec::new()))
                .1
                .push(r);
        }
        if (from..to).contains(&current.start) {
            by_period
                .entry(current.start)
                .or_insert_with(|| (current, Vec::new()));
        }
        let mut periods = Vec::with_capacity(by_period.len());
        for (start, (period, rollups)) in by_period {
            let is_current = start == current.start;
            let metrics = period_metrics(&sub, &rollups, is_current)?;
            let projected_invoice = if is_current {
                projected_invoice(&sub, &rollups)?
            } else {
                None
            };
            periods.push(PeriodUsage {
                period,
                current: is_current,
                metrics,
                projected_invoice,
            });
        }
        Ok(SubscriptionUsage {
            subscription_id: sub.id,
            currency: sub.currency.api_code().to_owned(),
            periods,
        })
    }

    /// May the account use `quantity` more of `metric` now? One read of its quota
    /// snapshot in the common case.
    pub async fn check_entitlement(
        &self,
        caller: &Caller,
        account: &str,
        metric: &str,
        quantity: Decimal,
    ) -> Result<EntitlementCheck, AppError> {
        caller.require(Permission::Read)?;
        let tenant = caller.tenant_id;
        let account_id = match AccountId::parse(account, "account") {
            Ok(id) => id,
            Err(_) => self
                .account_by_external_id(tenant, account)
                .await?
                .ok_or_else(|| {
                    invalid(
                        ErrorCode::UnknownAccount,
                        "account",
                        format!("no account has the id or external_id `{account}`"),
                    )
                })?,
        };
        if let Some(quota) = self.store.get_quota(tenant, account_id, metric).await? {
            let now = self.now_for(caller, quota.test_clock).await?;
            let used = if quota.period.contains(now) || now < quota.period.start {
                quota.used
            } else {
                // A new period began and nothing was reported in it yet.
                Decimal::ZERO
            };
            return Ok(EntitlementCheck {
                account_id,
                metric: metric.to_owned(),
                subscription_id: Some(quota.subscription_id),
                period: Some(quota.period),
                check: quota.entitlement.check(used, quantity),
            });
        }
        // Nothing reported yet with a limit: the plan decides, with nothing used.
        if self
            .store
            .get_metric_by_code(tenant, metric)
            .await?
            .is_none()
        {
            return Err(invalid(
                ErrorCode::UnknownMetric,
                "metric",
                format!("no billable metric has the code `{metric}`"),
            )
            .into());
        }
        let live = self.live_subscriptions(tenant, account_id).await?;
        let limited = live.iter().find_map(|s| {
            s.terms
                .entitlements
                .iter()
                .find(|e| e.metric == metric)
                .map(|e| (s, e))
        });
        Ok(match limited {
            Some((sub, e)) => EntitlementCheck {
                account_id,
                metric: metric.to_owned(),
                subscription_id: Some(sub.id),
                period: Some(sub.current_period),
                check: e.check(Decimal::ZERO, quantity),
            },
            None => EntitlementCheck {
                account_id,
                metric: metric.to_owned(),
                subscription_id: live.first().map(|s| s.id),
                period: live.first().map(|s| s.current_period),
                check: Check::unlimited(Decimal::ZERO),
            },
        })
    }

    /// Adds the usage of the period a lifecycle step closes to the step's invoice, and
    /// returns the rollups to mark billed in the same write.
    pub(crate) async fn bill_closed_usage(
        &self,
        tenant: TenantId,
        previous: &Subscription,
        transition: &mut Transition,
    ) -> Result<Vec<RollupWrite>, AppError> {
        let Some(period) = meter::closed_by(previous, &transition.next) else {
            return Ok(Vec::new());
        };
        let terms = &previous.terms.usage_charges;
        if terms.is_empty() {
            // Nothing to price, and no usage billed that could arrive late: no read, and
            // the last period that did bill usage stays the one late usage lands on.
            return Ok(Vec::new());
        }
        let stored = self
            .store
            .list_rollups(
                tenant,
                previous.id,
                period.start,
                period.start + SignedDuration::from_millis(1),
            )
            .await?;
        let mut rollups = Vec::with_capacity(terms.len());
        let mut lines = Vec::with_capacity(terms.len());
        for term in terms {
            let rollup = stored
                .iter()
                .find(|r| r.metric == term.metric)
                .cloned()
                .unwrap_or_else(|| {
                    Rollup::empty(
                        previous,
                        &term.metric,
                        billing_domain::catalog::metric::Aggregation::Count,
                        period,
                    )
                });
            let usage = rollup.aggregate.usage(rollup.aggregation, &term.model);
            let priced = price(term, &usage, previous)?;
            lines.push(term.line(usage, period));
            rollups.push((rollup, priced));
        }
        transition.bill_usage(period, lines);
        let Some(billing) = &transition.billing else {
            return Ok(Vec::new());
        };
        let invoice_id = billing_domain::billing::invoice::subscription_invoice_id(
            transition.next.id,
            transition.next.invoice_count,
            billing.period.start,
        );
        Ok(rollups
            .into_iter()
            .zip(terms)
            .map(|((rollup, priced), term)| billed(rollup, term, priced, invoice_id))
            .collect())
    }

    /// Adds the usage so far of the period a previewed step would close to its invoice
    /// (what [`App::bill_closed_usage`] will bill, without writing anything).
    pub(crate) async fn preview_usage(
        &self,
        tenant: TenantId,
        previous: &Subscription,
        step: &mut Transition,
    ) -> Result<(), AppError> {
        let Some(period) = meter::closed_by(previous, &step.next) else {
            return Ok(());
        };
        let rollups = if previous.terms.usage_charges.is_empty() {
            Vec::new()
        } else {
            self.store
                .list_rollups(
                    tenant,
                    previous.id,
                    period.start,
                    period.start + SignedDuration::from_millis(1),
                )
                .await?
        };
        step.bill_usage(period, usage_lines(previous, &rollups, period));
        Ok(())
    }

    /// Bills late usage of the subscription that is due by `until` on a supplemental
    /// invoice (the difference to what was billed), exactly once. Returns whether it
    /// wrote anything.
    pub async fn bill_late_usage(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        until: Timestamp,
    ) -> Result<bool, AppError> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(sub) = self.store.get_subscription(tenant, id).await? else {
                return Ok(false);
            };
            let Some(period) = sub.last_usage_period else {
                return Ok(false);
            };
            let rollups = self
                .store
                .list_rollups(
                    tenant,
                    id,
                    period.start,
                    period.start + SignedDuration::from_millis(1),
                )
                .await?;
            let due: Vec<Rollup> = rollups
                .into_iter()
                .filter(|r| r.late_due_at.is_some_and(|d| d <= until))
                .collect();
            let Some(at) = due.iter().filter_map(|r| r.late_due_at).max() else {
                return Ok(false);
            };
            let invoice_id = meter::supplemental_invoice_id(
                id,
                period.start,
                &due.iter()
                    .map(|r| (r.metric.clone(), r.version))
                    .collect::<Vec<_>>(),
            );
            let mut lines = Vec::new();
            let mut writes = Vec::with_capacity(due.len());
            for mut rollup in due {
                let read = rollup.version;
                rollup.late_due_at = None;
                rollup.version += 1;
                if let Some(was) = rollup.billed.clone() {
                    let term = UsageTerm {
                        metric: rollup.metric.clone(),
                        model: was.model.clone(),
                        commitment: was.commitment,
                    };
                    let usage = rollup.aggregate.usage(rollup.aggregation, &term.model);
                    let priced = price(&term, &usage, &sub)?;
                    let delta = priced.amount.minor - was.amount;
                    if delta != 0 {
                        lines.push(LineInput {
                            id: Some(format!("late_usage:{}", rollup.metric)),
                            description: format!("Late usage: {}", rollup.metric),
                            period: Some(rollup.period),
                            source: LineSource::Fixed {
                                amount: delta,
                                quantity: Some(rollup.quantity() - was.quantity),
                            },
                            tax_rates: Vec::new(),
                            discountable: true,
                        });
                    }
                    rollup = billed(rollup, &term, priced, invoice_id).next;
                    rollup.version = read + 1;
                }
                writes.push(RollupWrite {
                    expected_version: read,
                    next: rollup,
                });
            }
            let caller = &system_caller(tenant, sub.livemode);
            let (invoice, change) = if lines.is_empty() {
                (None, None)
            } else {
                let billing = Billing {
                    reason: BillingReason::LateUsage,
                    period,
                    lines,
                };
                let invoice = self
                    .finalized_invoice(caller, &sub, &billing, invoice_id, None, at)
                    .await?;
                let data = to_json(&invoice.invoice)?;
                let mut change = self.change(
                    caller,
                    at,
                    ChangeSpec {
                        entity_type: "invoice",
                        entity_id: invoice_id.to_string(),
                        action: AuditAction::Create,
                        event_type: Some(EventType::InvoiceCreated),
                        before: None,
                        after: &data,
                    },
                );
                change.events.push(self.event(
                    caller,
                    at,
                    EventType::InvoiceFinalized,
                    invoice_id.to_string(),
                    data,
                    None,
                ));
                (Some(invoice), Some(change))
            };
            match self
                .store
                .bill_late_usage(tenant, invoice.as_ref(), &writes, change.as_ref())
                .await
            {
                Ok(()) => {
                    self.release_invoice_payment(tenant, invoice.as_ref(), at)
                        .await;
                    return Ok(true);
                }
                // More late usage landed, the sequence moved, or another worker billed it.
                Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => {}
                Err(other) => return Err(other.into()),
            }
        }
        Err(AppError::Unavailable(
            "late usage kept changing while billing it; the job will be retried".into(),
        ))
    }
}

impl App {
    /// Stores a lifecycle step, with the rollups it bills when it closed a usage period.
    pub(crate) async fn save_step(
        &self,
        tenant: TenantId,
        step: &SubscriptionStep,
    ) -> Result<(), StoreError> {
        if step.rollups.is_empty() {
            self.store
                .save_subscription(
                    tenant,
                    &step.previous,
                    &step.next,
                    step.invoice.as_ref(),
                    &step.change,
                )
                .await
        } else {
            self.store
                .save_subscription_steps(tenant, std::slice::from_ref(step))
                .await
                .map_err(|failed| failed.error)
        }
    }
}

/// A usage charge priced at `usage`, with its commitment.
fn price(
    term: &UsageTerm,
    usage: &billing_domain::catalog::charges::Usage,
    sub: &Subscription,
) -> Result<Priced, AppError> {
    let priced = term
        .model
        .price(usage, sub.currency)
        .map_err(|e| AppError::Internal(format!("pricing {} of {}: {e}", term.metric, sub.id)))?;
    Ok(match &term.commitment {
        Some(c) => priced.with_commitment(c),
        None => priced,
    })
}

/// The rollup marked billed at `priced` by invoice `invoice_id`, written from its version.
fn billed(
    mut rollup: Rollup,
    term: &UsageTerm,
    priced: Priced,
    invoice_id: billing_domain::kernel::ids::InvoiceId,
) -> RollupWrite {
    let read = rollup.version;
    rollup.billed = Some(BilledUsage {
        quantity: rollup.quantity(),
        amount: priced.amount.minor,
        model: term.model.clone(),
        commitment: term.commitment,
        invoice_id,
    });
    rollup.late_due_at = None;
    rollup.version = read + 1;
    RollupWrite {
        expected_version: read,
        next: rollup,
    }
}

/// Each charged metric (and each other metric with usage) of a period, priced.
fn period_metrics(
    sub: &Subscription,
    rollups: &[Rollup],
    current: bool,
) -> Result<Vec<MetricUsage>, AppError> {
    let mut metrics = Vec::new();
    let mut named: BTreeSet<&str> = BTreeSet::new();
    for term in &sub.terms.usage_charges {
        named.insert(&term.metric);
        let rollup = rollups.iter().find(|r| r.metric == term.metric);
        let aggregate = rollup.map(|r| (r.aggregation, &r.aggregate));
        let usage = match aggregate {
            Some((aggregation, a)) => a.usage(aggregation, &term.model),
            None => billing_domain::usage::meter::Aggregate::default().usage(
                billing_domain::catalog::metric::Aggregation::Count,
                &term.model,
            ),
        };
        let priced = price(term, &usage, sub)?;
        metrics.push(metric_usage(
            sub,
            &term.metric,
            rollup,
            Some(priced),
            current,
        ));
    }
    for rollup in rollups
        .iter()
        .filter(|r| !named.contains(r.metric.as_str()))
    {
        metrics.push(metric_usage(
            sub,
            &rollup.metric,
            Some(rollup),
            None,
            current,
        ));
    }
    Ok(metrics)
}

fn metric_usage(
    sub: &Subscription,
    metric: &str,
    rollup: Option<&Rollup>,
    priced: Option<Priced>,
    current: bool,
) -> MetricUsage {
    let quantity = rollup.map(Rollup::quantity).unwrap_or_default();
    MetricUsage {
        metric: metric.to_owned(),
        quantity,
        events: rollup.map_or(0, |r| r.aggregate.events),
        amount: priced.as_ref().map(|p| p.amount),
        derivation: priced.map(|p| p.derivation),
        billed_amount: rollup.and_then(|r| r.billed.as_ref()).map(|b| b.amount),
        entitlement: current
            .then(|| sub.terms.entitlements.iter().find(|e| e.metric == metric))
            .flatten()
            .map(|e| e.check(quantity, Decimal::ONE)),
    }
}

/// One line per usage charge of `sub`, priced from the period's `rollups`.
fn usage_lines(sub: &Subscription, rollups: &[Rollup], period: Period) -> Vec<LineInput> {
    sub.terms
        .usage_charges
        .iter()
        .map(|term| {
            let usage = match rollups.iter().find(|r| r.metric == term.metric) {
                Some(r) => r.aggregate.usage(r.aggregation, &term.model),
                None => billing_domain::usage::meter::Aggregate::default().usage(
                    billing_domain::catalog::metric::Aggregation::Count,
                    &term.model,
                ),
            };
            term.line(usage, period)
        })
        .collect()
}

/// The invoice the end of the current period would produce, with the usage so far.
fn projected_invoice(
    sub: &Subscription,
    rollups: &[Rollup],
) -> Result<Option<InvoiceDraft>, AppError> {
    let Some(mut transition) = sub.advance(sub.current_period.end)? else {
        return Ok(None);
    };
    if let Some(period) = meter::closed_by(sub, &transition.next) {
        transition.bill_usage(period, usage_lines(sub, rollups, period));
    }
    let Some(billing) = transition.billing else {
        return Ok(None);
    };
    build_invoice(&InvoiceInput {
        currency: sub.currency,
        lines: billing.lines,
        discounts: Vec::new(),
        credits: Vec::new(),
        minimum_commitment: None,
    })
    .map(Some)
    .map_err(|e| AppError::Internal(format!("projecting the invoice of {}: {e}", sub.id)))
}
