//! Publishing a price version with a notice period (`migrate_existing` and
//! `migration_notice_days`): each of the plan's subscriptions gets its price notice armed
//! (see [`billing_domain::billing::price_notice`]), each with a write conditioned on the
//! subscription's version. A plan with at most [`SimulationJobs::per_request`]
//! subscriptions is armed in the request; a bigger one by `price_notices` jobs on the
//! billing queue, a chunk each, each queueing the next with where it stopped.
//!
//! Arming is idempotent (a subscription already armed for the version or a newer one is
//! left alone), so a chunk delivered twice arms nothing twice. Publishing never fails
//! after the version is written: a fan-out that fails is logged, and the subscriptions
//! it missed are armed at their next renewal instead (the migration gate never lets one
//! migrate without its notice; it only migrates a period later).
//!
//! [`SimulationJobs::per_request`]: super::SimulationJobs

use billing_domain::billing::price_notice::Migration;
use billing_domain::billing::subscription::{Subscription, SubscriptionStatus};
use billing_domain::catalog::plan::{NewPlanVersion, Plan, PlanVersion};
use billing_domain::events::record::AuditAction;
use billing_domain::kernel::ids::{PlanId, TenantId};

use super::BillingService;
use crate::kernel::{change, system_caller, to_json, AppError, Caller, ChangeSpec, WRITE_ATTEMPTS};
use crate::ports::{BillingJob, StoreError};

impl BillingService {
    /// Publishes the next price version of plan `id` (see
    /// [`crate::catalog::CatalogService::create_plan_version`]); one with a notice period
    /// then arms the notices of the plan's subscriptions.
    pub async fn publish_plan_version(
        &self,
        caller: &Caller,
        id: PlanId,
        input: NewPlanVersion,
    ) -> Result<PlanVersion, AppError> {
        let version = self.catalog.create_plan_version(caller, id, input).await?;
        if version.migrate_existing && version.migration_notice_days > 0 {
            let tenant = caller.tenant_id;
            if let Err(err) = self
                .arm_price_notices(tenant, id, version.number, None)
                .await
            {
                tracing::warn!(%err, %tenant, plan = %id, version = version.number, "arming price notices failed; renewals arm the rest");
            }
        }
        Ok(version)
    }

    /// The billing worker's `price_notices` job: arms the next chunk after `after` and
    /// queues the one after it (without a queue, or while the plan fits a request, arms
    /// them all).
    pub(super) async fn arm_price_notices(
        &self,
        tenant: TenantId,
        plan_id: PlanId,
        version: u32,
        mut after: Option<String>,
    ) -> Result<(), AppError> {
        let Some(catalog) = self.catalog.plan_with_versions(tenant, plan_id).await? else {
            return Ok(());
        };
        let (plan, versions) = catalog.as_ref();
        let Some(version) = versions.iter().find(|v| v.number == version) else {
            return Ok(());
        };
        let per_request = self.simulation_jobs.per_request;
        loop {
            let (subs, resume) = self
                .plan_subscriptions(tenant, plan_id, after, per_request, in_paid_period)
                .await?;
            for sub in subs {
                self.arm_price_notice(tenant, sub, plan, version).await?;
            }
            let Some(resume) = resume else {
                return Ok(());
            };
            if let Some(queue) = &self.simulation_jobs.queue {
                let next = BillingJob::PriceNotices {
                    tenant,
                    plan: plan_id,
                    version: version.number,
                    after: Some(resume),
                };
                // Failing here, the job comes back and arms this chunk again (a no-op).
                return Ok(queue.enqueue(&[next]).await?);
            }
            after = Some(resume);
        }
    }

    /// `sub` with `version`'s notice armed as publishing it arms it, on the subscription's
    /// time; `None` when it needs none (see [`Subscription::arm_price_notice`]). What a
    /// simulation prices too.
    pub(super) async fn armed_for(
        &self,
        tenant: TenantId,
        sub: &Subscription,
        plan: &Plan,
        version: &PlanVersion,
    ) -> Result<Option<Subscription>, AppError> {
        if !version.migrate_existing || version.migration_notice_days == 0 {
            return Ok(None);
        }
        // Not priced in its currency: it will not migrate, so there is nothing to announce.
        let Ok(migration) = Migration::to(plan, version, sub.currency) else {
            return Ok(None);
        };
        let now = self.clocks.now_for(tenant, sub.test_clock).await?;
        Ok(sub.arm_price_notice(&migration, now)?)
    }

    /// Arms one subscription's notice, read again after a conflicting write.
    async fn arm_price_notice(
        &self,
        tenant: TenantId,
        mut current: Subscription,
        plan: &Plan,
        version: &PlanVersion,
    ) -> Result<(), AppError> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(next) = self.armed_for(tenant, &current, plan, version).await? else {
                return Ok(());
            };
            let caller = system_caller(tenant, current.livemode);
            let (before, after) = (to_json(&current)?, to_json(&next)?);
            // Audited, not announced: the notice's own event comes when it is sent.
            let change = change(
                &caller,
                next.updated_at,
                ChangeSpec {
                    entity_type: "subscription",
                    entity_id: next.id.to_string(),
                    action: AuditAction::Update,
                    event_type: None,
                    before: Some(&before),
                    after: &after,
                },
            );
            match self
                .store
                .save_subscription(tenant, &current, &next, None, &change)
                .await
            {
                Ok(()) => return Ok(()),
                Err(StoreError::VersionConflict { .. }) => {
                    match self.store.get_subscription(tenant, current.id).await? {
                        Some(sub) => current = sub,
                        None => return Ok(()),
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(AppError::Unavailable(format!(
            "subscription {} kept changing while its price notice was being armed",
            current.id
        )))
    }
}

/// A subscription in a paid period: what a price notice is armed for.
fn in_paid_period(sub: &Subscription) -> bool {
    matches!(
        sub.status,
        SubscriptionStatus::Active | SubscriptionStatus::PastDue
    )
}
