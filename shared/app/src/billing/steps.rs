//! The lifecycle steps that the billing worker (and a test clock's advance) runs when
//! something falls due: each step is one store write of the subscription (version-checked,
//! with its new place in the due index), the draft invoice the step made (its id derived
//! from the subscription and the billing's sequence, so it can only be written once), the
//! audit record and the events. Running a step twice, or two workers at once, bills once.
//! The draft takes no number here: the tenant's finalizer (`finalize.rs`) numbers drafts
//! in bulk, so that many workers draft one tenant's renewals in parallel.

use std::collections::{HashMap, HashSet};

use billing_domain::billing::price_notice::Migration;
use billing_domain::billing::subscription::Subscription;
use billing_domain::customers::account::AccountStatus;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::ids::{SubscriptionId, TenantId};
use jiff::Timestamp;

use super::subscriptions::{plain, Numbering};
use super::BillingService;
use crate::kernel::{system_caller, AppError, WRITE_ATTEMPTS};
use crate::ports::{BillingJob, StoreError, SubscriptionStep};
use crate::usage::pricing::is_unpriceable;

/// Most lifecycle steps one call performs (a year of daily renewals, with room).
const MAX_STEPS: usize = 1000;

impl BillingService {
    /// Runs every lifecycle step of the subscription due at or before `until` (for a
    /// test clock, its target time), each as its own write, each at the moment it fell due,
    /// then finalizes the tenant's drafts (in-process callers: a test clock's advance,
    /// tools, tests). Returns how many steps ran; zero for a duplicate or early delivery.
    pub async fn run_due_subscription(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        until: Timestamp,
    ) -> Result<usize, AppError> {
        let steps = self
            .run_due_subscription_from(tenant, id, until, None)
            .await?;
        self.finalize_pending_invoices(tenant).await?;
        Ok(steps)
    }

    /// A billing worker's jobs of one tenant, answered in order: the subscriptions' drafted
    /// together ([`BillingService::draft_due_subscriptions`]) and then handed to the
    /// finalizer ([`BillingService::request_finalization`]), test clocks one at a time,
    /// finalize jobs by [`BillingService::run_finalize_job`], credit expiries by
    /// [`crate::credits::CreditsService::expire_credits`], purges by
    /// [`crate::retention::RetentionService::purge_account`], wallet jobs by
    /// [`crate::wallets::WalletsService::run_wallet_job`], price notices by
    /// [`BillingService::arm_price_notices`].
    pub async fn run_billing_jobs(
        &self,
        tenant: TenantId,
        jobs: &[BillingJob],
    ) -> Vec<Result<(), AppError>> {
        let ids: Vec<SubscriptionId> = jobs
            .iter()
            .filter_map(|job| match job {
                BillingJob::Subscription { id, .. } => Some(*id),
                BillingJob::TestClock { .. }
                | BillingJob::Finalize { .. }
                | BillingJob::CreditExpiry { .. }
                | BillingJob::AccountPurge { .. }
                | BillingJob::Wallet { .. }
                | BillingJob::Simulation { .. }
                | BillingJob::PriceNotices { .. } => None,
            })
            .collect();
        let drafted = self
            .draft_due_subscriptions(tenant, &ids, self.clocks.now())
            .await;
        if drafted
            .iter()
            .any(|steps| steps.as_ref().is_ok_and(|n| *n > 0))
        {
            self.request_finalization(tenant).await;
        }
        let mut drafted = drafted.into_iter();
        // One finalize run per batch: a later finalize message of the batch was sent before
        // the batch came, so the first run's reads (or the job it handed over to) cover
        // what it asks for, and the invocation stays within the finalizer's time budget.
        let mut finalized = false;
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(match job {
                BillingJob::Subscription { .. } => drafted
                    .next()
                    .unwrap_or_else(|| Err(AppError::Internal("a job went unanswered".into())))
                    .map(|_| ()),
                BillingJob::TestClock { id, .. } => {
                    self.run_test_clock(tenant, *id).await.map(|_| ())
                }
                BillingJob::Finalize { .. } if finalized => Ok(()),
                BillingJob::Finalize { .. } => {
                    let run = self.run_finalize_job(tenant).await.map(|_| ());
                    finalized = run.is_ok();
                    run
                }
                BillingJob::CreditExpiry {
                    account, currency, ..
                } => self
                    .credits
                    .expire_credits(tenant, *account, *currency, self.clocks.now())
                    .await
                    .map(|_| ()),
                BillingJob::AccountPurge { account, .. } => self
                    .retention
                    .purge_account(tenant, *account, self.clocks.now())
                    .await
                    .map(|_| ()),
                BillingJob::Wallet { wallet, .. } => {
                    self.credits
                        .run_wallet_job(tenant, *wallet, self.clocks.now())
                        .await
                }
                BillingJob::Simulation { simulation, .. } => {
                    self.run_simulation_job(tenant, *simulation).await
                }
                BillingJob::PriceNotices {
                    plan,
                    version,
                    after,
                    ..
                } => {
                    self.arm_price_notices(tenant, *plan, *version, after.clone())
                        .await
                }
            });
        }
        results
    }

    /// [`BillingService::draft_due_subscriptions`], then the tenant's drafts finalized, for
    /// in-process callers. A failed finalization is only logged: the drafts wait for the
    /// next finalizer (at the latest the sweep's).
    pub async fn run_due_subscriptions(
        &self,
        tenant: TenantId,
        ids: &[SubscriptionId],
        until: Timestamp,
    ) -> Vec<Result<usize, AppError>> {
        let drafted = self.draft_due_subscriptions(tenant, ids, until).await;
        if let Err(err) = self.finalize_pending_invoices(tenant).await {
            tracing::warn!(%err, %tenant, "finalizing drafts failed; the sweep hands them over again");
        }
        drafted
    }

    /// Drafts what is due of several of a tenant's subscriptions (a billing worker's
    /// batch): the first step of each is written together, in a few requests for all of
    /// them. Anything more that is due, and any step the shared write could not take
    /// (another writer got there first), runs one subscription at a time. One result per
    /// id, in order. The drafts wait for the finalizer.
    pub async fn draft_due_subscriptions(
        &self,
        tenant: TenantId,
        ids: &[SubscriptionId],
        until: Timestamp,
    ) -> Vec<Result<usize, AppError>> {
        let mut made = match self.first_steps_together(tenant, ids, until).await {
            Ok(made) => made,
            Err(err) => {
                tracing::warn!(%err, %tenant, "steps written together failed; one at a time instead");
                HashMap::new()
            }
        };
        let mut results = Vec::with_capacity(ids.len());
        for id in ids {
            // A duplicate of an id counts the shared step once.
            let known = made.remove(id);
            let together = usize::from(known.is_some());
            results.push(
                self.run_due_subscription_from(tenant, *id, until, known)
                    .await
                    .map(|steps| steps + together),
            );
        }
        results
    }

    /// Writes the first due step of each of `ids` with [`SubscriptionStore::save_subscription_steps`];
    /// returns the subscriptions it wrote.
    async fn first_steps_together(
        &self,
        tenant: TenantId,
        ids: &[SubscriptionId],
        until: Timestamp,
    ) -> Result<HashMap<SubscriptionId, Subscription>, AppError> {
        let mut unique = ids.to_vec();
        unique.sort();
        unique.dedup();
        let subscriptions = self.store.get_subscriptions(tenant, &unique).await?;
        if !subscriptions
            .iter()
            .any(|s| s.due_at().is_some_and(|d| d <= until))
        {
            return Ok(HashMap::new());
        }
        let mut steps = Vec::new();
        let mut claimed = HashSet::new();
        for current in &subscriptions {
            if let Some(step) = self.prepare_step(tenant, current, until).await? {
                // Two drafts taking one account's `once` discount cannot share a write: the
                // later one goes alone afterwards, from a fresh read (and finds it gone).
                let claim = step
                    .invoice
                    .as_ref()
                    .and_then(|i| i.account_discounts.as_ref());
                if claim.is_some_and(|d| !claimed.insert(d.account_id)) {
                    continue;
                }
                steps.push(step);
            }
        }
        let written = match self.store.save_subscription_steps(tenant, &steps).await {
            Ok(()) => steps.len(),
            Err(failed) => {
                tracing::info!(error = %failed.error, written = failed.written, %tenant, "a shared write stopped; the rest go one at a time");
                failed.written
            }
        };
        Ok(steps
            .into_iter()
            .take(written)
            .map(|step| (step.next.id, step.next))
            .collect())
    }

    /// [`BillingService::run_due_subscription`], from `known` (the subscription as stored) when given.
    async fn run_due_subscription_from(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        until: Timestamp,
        mut known: Option<Subscription>,
    ) -> Result<usize, AppError> {
        let mut steps = 0;
        let mut transient_failures = 0;
        for _ in 0..MAX_STEPS {
            match self.run_one_step(tenant, id, until, known.take()).await {
                // After a step of our own we know the stored subscription exactly: no
                // read needed.
                Ok(Step::Made(next)) => {
                    steps += 1;
                    known = Some(*next);
                }
                // Nothing of the lifecycle is due: late usage may be, once a period's
                // usage has been billed.
                Ok(Step::Nothing(current)) => {
                    let late = match current {
                        Some(sub)
                            if sub.last_usage_period.is_none() || sub.billing_failure.is_some() =>
                        {
                            Ok(false)
                        }
                        _ => self.bill_late_usage(tenant, id, until).await,
                    };
                    return match late {
                        Ok(late) => Ok(steps + usize::from(late)),
                        Err(err) if is_unpriceable(&err) => {
                            self.park_billing(tenant, id, until, &err).await?;
                            Ok(steps)
                        }
                        Err(err) => Err(err),
                    };
                }
                // Someone else made this step (a duplicate delivery, a concurrent run):
                // read again and carry on from where they left it.
                Ok(Step::Lost) => {}
                // A transient failure: a short pause, then the same step from a fresh read.
                // Past the budget the error goes back to the queue, which redelivers.
                Err(AppError::Unavailable(cause)) => {
                    transient_failures += 1;
                    if transient_failures > WRITE_ATTEMPTS {
                        return Err(AppError::Unavailable(cause));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(
                        20 * transient_failures as u64,
                    ))
                    .await;
                }
                // No retry can price it: parked, so the job is answered (and not failed on
                // every delivery, holding up the tenant's queue) and others go on.
                Err(err) if is_unpriceable(&err) => {
                    self.park_billing(tenant, id, until, &err).await?;
                    return Ok(steps);
                }
                Err(other) => return Err(other),
            }
        }
        Ok(steps)
    }

    /// Parks `id`'s billing on `cause`: the subscription shows it in `billing_failure`,
    /// `subscription.billing_failed` announces it, and nothing of it falls due (so no
    /// worker or sweep retries it) until an operator calls [`BillingService::retry_billing`].
    async fn park_billing(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        until: Timestamp,
        cause: &AppError,
    ) -> Result<(), AppError> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(current) = self.store.get_subscription(tenant, id).await? else {
                return Ok(());
            };
            if current.billing_failure.is_some() {
                return Ok(());
            }
            let due = current.due_at().filter(|d| *d <= until).unwrap_or(until);
            let now = self.clocks.now_for(tenant, current.test_clock).await?;
            let transition = plain(
                current.park_billing(cause.to_string(), due, now),
                EventType::SubscriptionBillingFailed,
            );
            let caller = system_caller(tenant, current.livemode);
            let (_, change) = self
                .step_records(
                    &caller,
                    Some(&current),
                    &transition,
                    AuditAction::Update,
                    now,
                    Numbering::Deferred,
                )
                .await?;
            let step = SubscriptionStep {
                previous: current,
                next: transition.next,
                invoice: None,
                rollups: Vec::new(),
                change,
            };
            match self.save_step(tenant, &step).await {
                Ok(()) => {
                    tracing::warn!(%tenant, subscription = %id, %cause, "billing parked");
                    return Ok(());
                }
                Err(StoreError::VersionConflict { .. }) => {}
                Err(other) => return Err(other.into()),
            }
        }
        Err(AppError::Unavailable(format!(
            "subscription {id} kept changing while its billing was being parked"
        )))
    }

    /// The step of `current` due by `until`, ready to write, its invoice a draft waiting
    /// for the finalizer.
    async fn prepare_step(
        &self,
        tenant: TenantId,
        current: &Subscription,
        until: Timestamp,
    ) -> Result<Option<SubscriptionStep>, AppError> {
        let Some(due) = current.due_at().filter(|d| *d <= until) else {
            return Ok(None);
        };
        let mut transition =
            if current.suspension_due(due) && self.held_by_block(tenant, current).await? {
                current.hold_for_block(due)
            } else {
                let migration = self.migration(tenant, current, due).await?;
                let Some(transition) = current.advance_migrating(due, migration)? else {
                    return Ok(None);
                };
                transition
            };
        let rollups = self
            .bill_closed_usage(tenant, current, &mut transition)
            .await?;
        let caller = &system_caller(tenant, current.livemode);
        let (invoice, change) = self
            .step_records(
                caller,
                Some(current),
                &transition,
                AuditAction::Update,
                due,
                Numbering::Deferred,
            )
            .await?;
        Ok(Some(SubscriptionStep {
            previous: current.clone(),
            next: transition.next,
            invoice,
            rollups,
            change,
        }))
    }

    /// The version `sub` moves to if its step due at `due` renews it, or the one its price
    /// notice due then announces (see [`crate::catalog::CatalogService::migration_terms`]);
    /// the catalog is read only for a renewal without a scheduled change or a notice.
    /// Billing and previews both ask here.
    pub(super) async fn migration(
        &self,
        tenant: TenantId,
        sub: &Subscription,
        due: Timestamp,
    ) -> Result<Option<Migration>, AppError> {
        let renewal = sub.renews_at(due) && sub.scheduled_change.is_none();
        if !renewal && sub.notice_due(due).is_none() {
            return Ok(None);
        }
        self.catalog.migration_terms(tenant, sub, due).await
    }

    /// Does the tenant suspend renewals of blocked accounts, and is `sub`'s account blocked?
    /// The account is read only when the policy suspends; the policy once a minute per
    /// tenant and process (a change applies within 60 s; on a test clock, at once).
    async fn held_by_block(&self, tenant: TenantId, sub: &Subscription) -> Result<bool, AppError> {
        let now = self.clocks.now();
        let cached = self
            .block_effects
            .get(&tenant, now)
            .filter(|_| sub.test_clock.is_none());
        let effects = match cached {
            Some(effects) => effects,
            None => {
                let effects = self.collection.block_effects(tenant).await?;
                self.block_effects.put(tenant, effects, now);
                effects
            }
        };
        if !effects.suspend_subscriptions {
            return Ok(false);
        }
        let account = self.store.get_account(tenant, sub.account_id).await?;
        Ok(account.is_some_and(|a| a.status == AccountStatus::Blocked))
    }

    async fn run_one_step(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        until: Timestamp,
        known: Option<Subscription>,
    ) -> Result<Step, AppError> {
        let current = match known {
            Some(sub) => sub,
            None => match self.store.get_subscription(tenant, id).await? {
                Some(sub) => sub,
                None => return Ok(Step::Nothing(None)),
            },
        };
        let Some(step) = self.prepare_step(tenant, &current, until).await? else {
            return Ok(Step::Nothing(Some(Box::new(current))));
        };
        match self.save_step(tenant, &step).await {
            Ok(()) => Ok(Step::Made(Box::new(step.next))),
            Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => {
                Ok(Step::Lost)
            }
            Err(other) => Err(other.into()),
        }
    }
}

/// What one attempt at a lifecycle step came to.
enum Step {
    /// Made by us; the subscription as now stored.
    Made(Box<Subscription>),
    /// Another writer made it (or moved the invoice sequence) first.
    Lost,
    /// Nothing was due; the subscription as read, if it exists.
    Nothing(Option<Box<Subscription>>),
}
