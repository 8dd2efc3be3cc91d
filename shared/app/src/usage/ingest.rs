//! Ingest: events (one or a batch) into rollups exactly once.
//!
//! Ingest plans every write from what it read and conditions each rollup write on the
//! version it read; events are created only if their transaction id is new. Each event is
//! one unit with everything it moves (its rollup, a new distinct value, the quota snapshot,
//! a threshold it crosses), so an event is never half applied; the store packs units into
//! as few transactions as its limits allow. Units that lose a race (a duplicate delivered
//! concurrently, a rollup moved) are re-planned from fresh reads; what committed is found
//! committed. A lone event is planned from the rollup its instance last wrote, when it holds
//! it ([`super::ROLLUP_TTL`]): the version condition makes a stale one fail the write, which
//! then reads.

use billing_domain::kernel::time::later;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use billing_domain::billing::subscription::{Subscription, SubscriptionStatus};
use billing_domain::catalog::metric::Metric;
use billing_domain::customers::access::Permission;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::{check_key_text, ErrorCode, ValidationError};
use billing_domain::kernel::ids::{AccountId, SubscriptionId, TenantId, TestClockId};
use billing_domain::usage::entitlements::{Entitlement, UsageThreshold};
use billing_domain::usage::meter::{
    self, Placement, UsageEvent, UsageEventInput, UsageOutcome, DEFAULT_GRACE, LATE_USAGE_DEBOUNCE,
    MAX_BATCH,
};
use jiff::Timestamp;

use super::pricing::with_levels;
use super::{invalid, CachedRollup, UsageService};
use crate::kernel::{event, to_json, AppError, Caller, ChangeSpec, WRITE_ATTEMPTS};
use crate::ports::*;

/// Each event's transaction id and outcome, by position in the batch, once decided.
type Outcomes = Vec<Option<(String, Result<UsageOutcome, ValidationError>)>>;

/// One unit per planned candidate, with whether its event is late, and each candidate's
/// refusal (if the rollup could not take its event).
type Plan = (Vec<UsageWrite>, Vec<bool>, Vec<Option<ValidationError>>);

fn duplicate(c: &Candidate, outcomes: &mut Outcomes) {
    let id = c.event.transaction_id.clone();
    outcomes[c.index] = Some((id.clone(), Ok(UsageOutcome::duplicate(id))));
}

/// An event ready to be written: validated, placed, with what it belongs to.
struct Candidate {
    index: usize,
    sub: Arc<Subscription>,
    metric: Arc<Metric>,
    event: UsageEvent,
    placement: Placement,
    now: Timestamp,
    /// Where the event's value was read: `value`, or its metric's field in `properties`.
    value_param: &'static str,
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

/// How an event names its subscription: `(true, id)` or `(false, external account id)`.
type SubscriptionKey = (bool, String);

fn subscription_key(input: &UsageEventInput) -> Option<SubscriptionKey> {
    match (&input.subscription, &input.external_account_id) {
        (Some(id), None) => Some((true, id.clone())),
        (None, Some(external)) => Some((false, external.clone())),
        _ => None,
    }
}

/// What a batch looked up, so each subscription, metric and clock is read once.
#[derive(Default)]
struct Lookups {
    subscriptions: HashMap<SubscriptionKey, Result<Arc<Subscription>, ValidationError>>,
    /// Subscriptions read again after a refusal (not to be read a third time).
    fresh: BTreeSet<SubscriptionKey>,
    metrics: HashMap<String, Option<Arc<Metric>>>,
    clocks: HashMap<Option<TestClockId>, Timestamp>,
}

/// Adds `c`'s event to `rollup` if the period stays billable by the subscription's charge
/// for the metric ([`meter::Aggregate::admit`]); otherwise `rollup` is left as it was.
fn billable_after(
    c: &Candidate,
    rollup: &mut Rollup,
    new_value: bool,
) -> Result<(), ValidationError> {
    let charge = c
        .sub
        .terms
        .usage_charges
        .iter()
        .find(|t| t.metric == c.metric.code)
        .map(|t| &t.model);
    rollup.aggregate = rollup.aggregate.admit(
        &c.event,
        new_value,
        rollup.aggregation,
        rollup.period,
        charge,
        c.sub.currency,
        c.value_param,
    )?;
    Ok(())
}

fn entitlement<'a>(sub: Option<&'a Arc<Subscription>>, metric: &str) -> Option<&'a Entitlement> {
    sub?.terms.entitlements.iter().find(|e| e.metric == metric)
}

impl UsageService {
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
        let mut candidates = self
            .prepare_all(caller, inputs.iter().cloned().enumerate(), &mut outcomes)
            .await?;
        for _ in 0..WRITE_ATTEMPTS {
            if candidates.is_empty() {
                break;
            }
            let moved = self
                .write_candidates(caller, &mut candidates, &mut outcomes)
                .await?;
            if moved {
                // Planned from a subscription that changed since it was read (or cached):
                // forget it and decide again, so a cancelled subscription refuses at once.
                for c in &candidates {
                    self.forget_subscription(caller, c.sub.id);
                }
                let again: Vec<_> = candidates
                    .drain(..)
                    .map(|c| (c.index, inputs[c.index].clone()))
                    .collect();
                candidates = self.prepare_all(caller, again, &mut outcomes).await?;
            }
        }
        if !candidates.is_empty() {
            return Err(AppError::Unavailable(
                "usage of these subscriptions kept changing under this request; retry it (accepted events come back as duplicates)".into(),
            ));
        }
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// Validates the events and decides where each counts; a refused event, or one
    /// repeated in the batch, gets its outcome at once.
    async fn prepare_all(
        &self,
        caller: &Caller,
        inputs: impl IntoIterator<Item = (usize, UsageEventInput)>,
        outcomes: &mut Outcomes,
    ) -> Result<Vec<Candidate>, AppError> {
        let mut lookups = Lookups::default();
        let mut candidates = Vec::new();
        let mut in_batch = BTreeSet::new();
        for (index, input) in inputs {
            let transaction_id = input.transaction_id.clone();
            let mut prepared = self
                .prepare(caller, &mut lookups, index, input.clone())
                .await;
            // Only a write is conditioned on the subscription's version: a refusal decided
            // from a cached one is decided again from a fresh read (once per subscription).
            if matches!(prepared, Err(AppError::Invalid(_)))
                && self.forget_named(caller, &mut lookups, &input)
            {
                prepared = self.prepare(caller, &mut lookups, index, input).await;
            }
            match prepared {
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
        Ok(candidates)
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
        // Both are looked up by key.
        check_key_text(&input.metric, "metric")?;
        if let Some(external) = &input.external_account_id {
            check_key_text(external, "external_account_id")?;
        }
        let sub = self.usage_subscription(caller, lookups, &input).await?;
        let metric = match lookups.metrics.get(&input.metric) {
            Some(m) => m.clone(),
            None => {
                let m = self.metric(caller, &input.metric).await?;
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
                let now = self
                    .clocks
                    .now_for(caller.tenant_id, sub.test_clock)
                    .await?;
                lookups.clocks.insert(sub.test_clock, now);
                now
            }
        };
        let value_param = if input.value.is_some() {
            "value"
        } else {
            "properties"
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
            value_param,
        })
    }

    /// The subscription an event names, by id or by its account's external_id.
    async fn usage_subscription(
        &self,
        caller: &Caller,
        lookups: &mut Lookups,
        input: &UsageEventInput,
    ) -> Result<Arc<Subscription>, AppError> {
        let key = subscription_key(input).ok_or_else(|| {
            invalid(
                ErrorCode::MissingSubscription,
                "subscription",
                "name the subscription, or the account by external_account_id (one of the two)",
            )
        })?;
        if let Some(found) = lookups.subscriptions.get(&key) {
            return Ok(found.clone()?);
        }
        let found = self.find_usage_subscription(caller, &key).await?;
        lookups.subscriptions.insert(key, found.clone());
        Ok(found?)
    }

    /// A metric by code, cached (an unknown code is not: see [`crate::kernel::MetricCache`]).
    async fn metric(&self, caller: &Caller, code: &str) -> Result<Option<Arc<Metric>>, AppError> {
        let key = (caller.tenant_id, caller.livemode, code.to_owned());
        let now = self.clocks.now();
        if let Some(metric) = self.metrics.get(&key, now) {
            return Ok(Some(metric));
        }
        let metric = self
            .store
            .get_metric_by_code(caller.tenant_id, code)
            .await?
            .map(Arc::new);
        if let Some(metric) = &metric {
            self.metrics.put(key, metric.clone(), now);
        }
        Ok(metric)
    }

    /// A subscription as cached or read; the usage write it plans is conditioned on its
    /// version, so a stale one is never written from.
    async fn subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
    ) -> Result<Option<Arc<Subscription>>, AppError> {
        let key = (caller.tenant_id, caller.livemode, id);
        let now = self.clocks.now();
        if let Some(sub) = self.subscriptions.get(&key, now) {
            return Ok(Some(sub));
        }
        let sub = self
            .store
            .get_subscription(caller.tenant_id, id)
            .await?
            .map(Arc::new);
        if let Some(sub) = &sub {
            self.subscriptions.put(key, sub.clone(), now);
        }
        Ok(sub)
    }

    /// Forgets the subscription `input` names, unless this batch already read it fresh;
    /// whether it did forget.
    fn forget_named(
        &self,
        caller: &Caller,
        lookups: &mut Lookups,
        input: &UsageEventInput,
    ) -> bool {
        let Some(key) = subscription_key(input) else {
            return false;
        };
        if !lookups.fresh.insert(key.clone()) {
            return false;
        }
        if let Some(Ok(sub)) = lookups.subscriptions.remove(&key) {
            self.forget_subscription(caller, sub.id);
        }
        if !key.0 {
            self.external_ids
                .forget(&(caller.tenant_id, caller.livemode, key.1));
        }
        true
    }

    /// Forgets a subscription found moved, and any external id that led to it.
    fn forget_subscription(&self, caller: &Caller, id: SubscriptionId) {
        self.subscriptions
            .forget(&(caller.tenant_id, caller.livemode, id));
        self.external_ids.forget_where(|_, named| *named == id);
    }

    async fn find_usage_subscription(
        &self,
        caller: &Caller,
        (by_id, value): &(bool, String),
    ) -> Result<Result<Arc<Subscription>, ValidationError>, AppError> {
        let tenant = caller.tenant_id;
        if *by_id {
            let id = SubscriptionId::parse(value, "subscription")?;
            return Ok(self.subscription(caller, id).await?.ok_or_else(|| {
                invalid(
                    ErrorCode::UnknownSubscription,
                    "subscription",
                    format!("no such subscription: {id}"),
                )
            }));
        }
        let external = (tenant, caller.livemode, value.clone());
        if let Some(id) = self.external_ids.get(&external, self.clocks.now()) {
            match self.subscription(caller, id).await? {
                Some(sub) if sub.status != SubscriptionStatus::Cancelled => return Ok(Ok(sub)),
                _ => self.external_ids.forget(&external),
            }
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
            [one] => {
                let now = self.clocks.now();
                let sub = Arc::new(one.clone());
                self.external_ids.put(external, one.id, now);
                self.subscriptions
                    .put((tenant, caller.livemode, one.id), sub.clone(), now);
                Ok(sub)
            }
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

    pub(super) async fn account_by_external_id(
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

    pub(super) async fn live_subscriptions(
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

    /// One attempt at writing the candidates: finds duplicates, plans their units from
    /// fresh reads, and writes them in order. Written and duplicate candidates leave the
    /// list. Answers whether a subscription moved since the candidates were prepared (then
    /// they must be prepared again).
    async fn write_candidates(
        &self,
        caller: &Caller,
        candidates: &mut Vec<Candidate>,
        outcomes: &mut Outcomes,
    ) -> Result<bool, AppError> {
        let tenant = caller.tenant_id;
        // A lone event needs no read to be found a duplicate: its put is conditional on its
        // transaction id being new, and it fails alone. A batch reads, so that a redelivered
        // one costs no failing transaction per 100 items.
        let read = candidates.len() > 1;
        if read {
            self.drop_stored(tenant, candidates, outcomes).await?;
        }
        let (units, late, refusals) = self.plan_units(caller, candidates, !read).await?;
        if !read && refusals.iter().any(Option::is_some) {
            // A retry is a duplicate, even of an event the rollup could no longer take.
            self.drop_stored(tenant, candidates, outcomes).await?;
            if candidates.is_empty() {
                return Ok(false);
            }
        }
        let mut refusals = refusals.into_iter();
        candidates.retain(|c| match refusals.next().flatten() {
            Some(refused) => {
                let id = c.event.transaction_id.clone();
                outcomes[c.index] = Some((id, Err(refused)));
                false
            }
            None => true,
        });
        let (written, failure) = match self.store.record_usage(tenant, &units).await {
            Ok(()) => (units.len(), None),
            Err(StepsFailed { written, error }) => (written, Some(error)),
        };
        self.remember_rollups(caller, &units, written, failure.as_ref());
        for (c, late) in candidates.iter().zip(late).take(written) {
            let id = c.event.transaction_id.clone();
            outcomes[c.index] = Some((
                id.clone(),
                Ok(UsageOutcome::accepted(id, c.placement, late)),
            ));
        }
        candidates.drain(..written);
        match failure {
            None => Ok(false),
            // The one unit left was the write that failed: its event is stored.
            Some(StoreError::AlreadyExists {
                entity: "usage event",
            }) if candidates.len() == 1 => {
                duplicate(&candidates[0], outcomes);
                candidates.clear();
                Ok(false)
            }
            Some(StoreError::VersionConflict {
                entity: "subscription",
            }) => Ok(true),
            // Lost a race: re-plan what is left from fresh reads.
            Some(StoreError::AlreadyExists { .. } | StoreError::VersionConflict { .. }) => {
                Ok(false)
            }
            Some(error) => Err(error.into()),
        }
    }

    /// Answers the candidates whose event is stored as duplicates, and drops them.
    async fn drop_stored(
        &self,
        tenant: TenantId,
        candidates: &mut Vec<Candidate>,
        outcomes: &mut Outcomes,
    ) -> Result<(), AppError> {
        let ids: Vec<String> = candidates
            .iter()
            .map(|c| c.event.transaction_id.clone())
            .collect();
        let stored = self.store.stored_usage_events(tenant, &ids).await?;
        candidates.retain(|c| {
            let stored = stored.contains(&c.event.transaction_id);
            if stored {
                duplicate(c, outcomes);
            }
            !stored
        });
        Ok(())
    }

    /// Plans the candidates' units from their rollups: a lone event's from the rollup this
    /// instance last wrote, if it holds it (the write is conditioned on its version, so a
    /// stale one is never written from), a batch's from fresh reads (a stale rollup would
    /// fail a transaction of up to 100 items).
    async fn plan_units(
        &self,
        caller: &Caller,
        candidates: &[Candidate],
        lone: bool,
    ) -> Result<Plan, AppError> {
        let keys: BTreeSet<RollupKey> = candidates
            .iter()
            .filter_map(Candidate::rollup_key)
            .collect();
        let keys: Vec<RollupKey> = keys.into_iter().collect();
        let (state, cached) = self.read_rollups(caller, &keys, lone).await?;
        let plan = self.plan_from(caller, candidates, &keys, state).await?;
        if !cached || plan.2.iter().all(Option::is_none) {
            return Ok(plan);
        }
        // A refusal is conditioned on no version: decide it again from the stored rollups.
        let (state, _) = self.read_rollups(caller, &keys, false).await?;
        self.plan_from(caller, candidates, &keys, state).await
    }

    /// The stored rollups among `keys`, those this instance holds taken from its cache when
    /// `cached`; and whether any was.
    async fn read_rollups(
        &self,
        caller: &Caller,
        keys: &[RollupKey],
        cached: bool,
    ) -> Result<(BTreeMap<RollupKey, Rollup>, bool), AppError> {
        let now = self.clocks.now();
        let mut state = BTreeMap::new();
        let mut unread = Vec::new();
        for key in keys {
            let held = cached
                .then(|| {
                    self.rollups
                        .get(&(caller.tenant_id, caller.livemode, key.clone()), now)
                })
                .flatten();
            match held {
                Some(CachedRollup::Written(rollup)) => {
                    state.insert(key.clone(), Arc::unwrap_or_clone(rollup));
                }
                Some(CachedRollup::Contended) | None => unread.push(key.clone()),
            }
        }
        let from_cache = !state.is_empty();
        if !unread.is_empty() {
            let read = self.store.get_rollups(caller.tenant_id, &unread).await?;
            state.extend(read.into_iter().map(|r| (r.key(), r)));
        }
        Ok((state, from_cache))
    }

    /// After a write: keeps the rollups the written units left (unless marked contended),
    /// marks contended those of units that lost to another writer, and forgets those of
    /// units that failed otherwise or may not have been written.
    fn remember_rollups(
        &self,
        caller: &Caller,
        units: &[UsageWrite],
        written: usize,
        failure: Option<&StoreError>,
    ) {
        let now = self.clocks.now();
        let key = |r: &Rollup| (caller.tenant_id, caller.livemode, r.key());
        let (done, failed) = units.split_at(written.min(units.len()));
        for write in done.iter().flat_map(|u| &u.rollups) {
            let key = key(&write.next);
            if !matches!(self.rollups.get(&key, now), Some(CachedRollup::Contended)) {
                self.rollups.put(
                    key,
                    CachedRollup::Written(Arc::new(write.next.clone())),
                    now,
                );
            }
        }
        let contended = matches!(
            failure,
            Some(StoreError::VersionConflict {
                entity: "usage rollup"
            })
        );
        for write in failed.iter().flat_map(|u| &u.rollups) {
            let key = key(&write.next);
            if contended {
                self.rollups.put(key, CachedRollup::Contended, now);
            } else {
                self.rollups.forget(&key);
            }
        }
    }

    /// Plans one unit per candidate from `state` (the rollups among `keys` that exist) and
    /// the distinct values read, in order, each moving its rollup on from the state the one
    /// before left; with each, whether its event is late. A candidate whose event would
    /// take its period beyond what can be billed gets no unit: its refusal is at its
    /// position in the third list (one entry per candidate).
    async fn plan_from(
        &self,
        caller: &Caller,
        candidates: &[Candidate],
        keys: &[RollupKey],
        mut state: BTreeMap<RollupKey, Rollup>,
    ) -> Result<Plan, AppError> {
        let tenant = caller.tenant_id;
        // A level's rollup is planned with the level carried in, so that the priceability
        // check and the quota see the level, not only this period's changes.
        for key in keys {
            let Some(c) = candidates
                .iter()
                .find(|c| c.metric.recurring && c.rollup_key().as_ref() == Some(key))
            else {
                continue;
            };
            let period = c.placement.period().unwrap_or(c.sub.current_period);
            let earlier = self
                .store
                .list_rollups(
                    tenant,
                    c.sub.id,
                    c.sub.started_at.min(period.start),
                    period.start,
                )
                .await?;
            let opening = with_levels(&c.sub, &earlier, period)
                .into_iter()
                .find(|r| r.metric == key.metric)
                .and_then(|r| r.aggregate.opening);
            let rollup = state.entry(key.clone()).or_insert_with(|| {
                Rollup::empty(&c.sub, &c.metric.code, c.metric.aggregation, period)
            });
            rollup.aggregate.opening = opening;
        }
        let mut seen: BTreeMap<RollupKey, BTreeSet<String>> = BTreeMap::new();
        for key in keys {
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
        let mut units = Vec::with_capacity(candidates.len());
        let mut late = Vec::with_capacity(candidates.len());
        let mut refusals = Vec::with_capacity(candidates.len());
        for c in candidates {
            let mut unit = UsageWrite {
                events: vec![StoredUsageEvent {
                    event: c.event.clone(),
                    subscription_id: c.sub.id,
                    period_start: c.placement.period().map(|p| p.start),
                    received_at: c.now,
                }],
                subscriptions: vec![(c.sub.id, c.sub.version)],
                ..UsageWrite::default()
            };
            let mut is_late = false;
            if let Some(key) = c.rollup_key() {
                let period = c.placement.period().unwrap_or(c.sub.current_period);
                let mut rollup = state.get(&key).cloned().unwrap_or_else(|| {
                    Rollup::empty(&c.sub, &c.metric.code, c.metric.aggregation, period)
                });
                let read = rollup.version;
                let new_value = match &c.event.value {
                    meter::Measured::Distinct { value } => {
                        !seen.get(&key).is_some_and(|known| known.contains(value))
                    }
                    _ => false,
                };
                rollup.aggregation = c.metric.aggregation;
                rollup.recurring = c.metric.recurring;
                if let Err(refused) = billable_after(c, &mut rollup, new_value) {
                    refusals.push(Some(refused));
                    continue;
                }
                if let meter::Measured::Distinct { value } = &c.event.value {
                    seen.entry(key.clone()).or_default().insert(value.clone());
                }
                if rollup.billed.is_some() {
                    is_late = true;
                    rollup
                        .late_due_at
                        .get_or_insert(later(c.now, LATE_USAGE_DEBOUNCE));
                }
                if new_value {
                    if let meter::Measured::Distinct { value } = &c.event.value {
                        unit.distinct_values.push((key.clone(), value.clone()));
                    }
                }
                rollup.version = read + 1;
                if let (Some(limit), None) =
                    (entitlement(Some(&c.sub), &key.metric), &rollup.billed)
                {
                    self.limited(caller, c, limit, &mut rollup, &mut unit)?;
                }
                state.insert(key, rollup.clone());
                unit.rollups.push(RollupWrite {
                    expected_version: read,
                    next: rollup,
                });
            }
            units.push(unit);
            late.push(is_late);
            refusals.push(None);
        }
        Ok((units, late, refusals))
    }

    /// What an event on a limited rollup adds to its unit: the quota snapshot, and the
    /// events of the thresholds it crosses.
    fn limited(
        &self,
        caller: &Caller,
        c: &Candidate,
        limit: &Entitlement,
        rollup: &mut Rollup,
        unit: &mut UsageWrite,
    ) -> Result<(), AppError> {
        let sub = &c.sub;
        let used = rollup.quantity();
        unit.quotas.push(QuotaSnapshot {
            account_id: sub.account_id,
            subscription_id: sub.id,
            metric: rollup.metric.clone(),
            period: rollup.period,
            used,
            test_clock: sub.test_clock,
            entitlement: limit.clone(),
            recurring: rollup.recurring,
        });
        let mut change: Option<Change> = None;
        for threshold in limit.reached(rollup.announced, used) {
            rollup.announced = threshold;
            let data = to_json(&UsageThreshold {
                subscription_id: sub.id,
                account_id: sub.account_id,
                metric: rollup.metric.clone(),
                period: rollup.period,
                threshold,
                limit: limit.limit,
                used,
                enforcement: limit.enforcement,
            })?;
            match &mut change {
                None => {
                    change = Some(crate::kernel::change(
                        caller,
                        c.now,
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
                Some(change) => change.events.push(event(
                    caller,
                    c.now,
                    EventType::UsageThresholdReached,
                    sub.id.to_string(),
                    data,
                    None,
                )),
            }
        }
        unit.changes.extend(change);
        Ok(())
    }
}
