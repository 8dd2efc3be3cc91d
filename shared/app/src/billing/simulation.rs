//! Catalog change simulation: what publishing a price version would do to the plan's
//! subscriptions, priced by the preview billing itself uses (the next invoice of each, with
//! its usage so far, discounts and credit), once with the catalog as it is and once with the
//! version added. Writes nothing.

use billing_domain::billing::simulation::{self, CurrencyImpact, SubscriptionImpact};
use billing_domain::billing::subscription::{Subscription, SubscriptionStatus};
use billing_domain::catalog::plan::{NewPlanVersion, Plan, PlanVersion};
use billing_domain::customers::access::Permission;
use billing_domain::kernel::error::{ErrorCode, ValidationError};
use billing_domain::kernel::ids::PlanId;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use super::BillingService;
use crate::kernel::{AppError, Caller};
use crate::ports::{PageRequest, SubscriptionFilter};

/// Most subscriptions one simulation prices in a request.
pub const MAX_SIMULATED: usize = 500;

/// What publishing a version would do.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Simulation {
    #[schema(value_type = String)]
    pub plan_id: PlanId,
    /// The version as it would be published (its number, prices and `effective_from`).
    #[schema(value_type = Object)]
    pub version: PlanVersion,
    /// Subscriptions whose next invoice changes by more than this many percent are listed
    /// in `over_threshold`.
    #[serde(with = "billing_domain::kernel::decimal::serde_decimal")]
    #[schema(value_type = String)]
    pub threshold_percent: Decimal,
    pub currencies: Vec<CurrencyImpact>,
    /// Every live subscription of the plan, with its next invoice before and after.
    pub subscriptions: Vec<SubscriptionImpact>,
}

impl BillingService {
    /// Prices `input` as the plan's next version against each of its live subscriptions:
    /// the same validation as publishing it, the same preview as billing, nothing written.
    /// A plan with more than [`MAX_SIMULATED`] live subscriptions is refused
    /// (`too_many_subscriptions`).
    pub async fn simulate_plan_version(
        &self,
        caller: &Caller,
        plan_id: PlanId,
        input: NewPlanVersion,
        threshold_percent: Decimal,
    ) -> Result<Simulation, AppError> {
        caller.require(Permission::Read)?;
        if threshold_percent.is_sign_negative() {
            return Err(ValidationError::new(
                ErrorCode::InvalidValue,
                "threshold_percent",
                "a threshold is a percentage of zero or more",
            )
            .into());
        }
        let draft = self
            .catalog
            .draft_plan_version(caller, plan_id, input)
            .await?;
        let as_is = (draft.current.clone(), draft.versions.clone());
        let mut versions = draft.versions;
        versions.push(draft.version.clone());
        let would_be = (draft.next, versions);
        let subs = self.live_subscriptions_of(caller, plan_id).await?;
        let mut impacts = Vec::with_capacity(subs.len());
        for sub in &subs {
            impacts.push(self.impact(caller, sub, &as_is, &would_be).await?);
        }
        Ok(Simulation {
            plan_id,
            currencies: simulation::summarize(&impacts, threshold_percent),
            version: draft.version,
            threshold_percent,
            subscriptions: impacts,
        })
    }

    async fn impact(
        &self,
        caller: &Caller,
        sub: &Subscription,
        as_is: &(Plan, Vec<PlanVersion>),
        would_be: &(Plan, Vec<PlanVersion>),
    ) -> Result<SubscriptionImpact, AppError> {
        let tenant = caller.tenant_id;
        let (at, before) = self.next_invoice(tenant, sub, Some(as_is)).await?;
        let (_, after) = self.next_invoice(tenant, sub, Some(would_be)).await?;
        let new_number = would_be.1.last().map(|v| v.number);
        let moves_to = |catalog: &(Plan, Vec<PlanVersion>), at: Timestamp| {
            self.catalog
                .terms_after(tenant, sub, &catalog.0, &catalog.1, at)
        };
        let migrates = sub.renews_at(at)
            && sub.scheduled_change.is_none()
            && moves_to(would_be, at)?.map(|t| t.plan_version) == new_number;
        // MRR with the change: the terms the subscription will be on once it has renewed
        // past the version's start, else its own.
        let later = draft_start(would_be).max(sub.current_period.end);
        let terms_after = moves_to(would_be, later)?.unwrap_or_else(|| sub.terms.clone());
        let mrr = |terms: &billing_domain::billing::subscription::SubscriptionTerms| {
            Ok::<_, AppError>(simulation::monthly(
                terms.fee(sub.quantity, sub.currency)?.minor,
                terms.interval,
            ))
        };
        Ok(SubscriptionImpact::new(
            sub.id,
            sub.currency.api_code(),
            at,
            before.total,
            after.total,
            migrates,
            mrr(&sub.terms)?,
            mrr(&terms_after)?,
        ))
    }

    /// The plan's subscriptions that will bill again (not cancelled), all of them.
    async fn live_subscriptions_of(
        &self,
        caller: &Caller,
        plan: PlanId,
    ) -> Result<Vec<Subscription>, AppError> {
        let filter = SubscriptionFilter {
            plan: Some(plan),
            ..SubscriptionFilter::default()
        };
        let mut live = Vec::new();
        let mut page = PageRequest::first(100);
        loop {
            let found = self
                .store
                .list_subscriptions(caller.tenant_id, &filter, &page)
                .await?;
            let resume = found
                .scanned_to
                .clone()
                .or_else(|| found.items.last().map(|s| s.id.to_string()))
                .filter(|_| found.has_more || found.scanned_to.is_some());
            live.extend(
                found
                    .items
                    .into_iter()
                    .filter(|s| s.status != SubscriptionStatus::Cancelled && s.due_at().is_some()),
            );
            if live.len() > MAX_SIMULATED {
                return Err(AppError::Conflict {
                    code: ErrorCode::TooManySubscriptions,
                    message: format!(
                        "the plan has more than {MAX_SIMULATED} live subscriptions: too many to simulate in one request"
                    ),
                    param: None,
                });
            }
            match resume {
                Some(after) => {
                    page = PageRequest {
                        starting_after: Some(after),
                        ..PageRequest::first(100)
                    }
                }
                None => return Ok(live),
            }
        }
    }
}

/// When the simulated version takes effect.
fn draft_start(catalog: &(Plan, Vec<PlanVersion>)) -> Timestamp {
    catalog
        .1
        .last()
        .map(|v| v.effective_from)
        .unwrap_or(Timestamp::MIN)
}
