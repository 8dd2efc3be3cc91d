//! Catalog change simulation: what publishing a price version would do to the plan's
//! subscriptions, priced by the preview billing itself uses (the next invoice of each, with
//! its usage so far, discounts and credit), once with the catalog as it is and once with the
//! version added. Writes nothing of billing's.
//!
//! A plan with at most [`SimulationJobs::per_request`] live subscriptions is priced in the
//! request. One with more runs as a job on the billing queue: the request saves a
//! [`SimulationRun`] (the catalog as it is then) and answers where to read it; each job
//! prices the next chunk of as many subscriptions and saves it over the run's version,
//! then queues the next; the last completes the run. A chunk delivered twice, or redone
//! after a crash, is priced again but saved once: the second save finds the run's version
//! moved and stops, and the delivery that saved it queued the next.

use std::sync::Arc;

use billing_domain::billing::price_notice::PriceNotice;
use billing_domain::billing::simulation::{
    self, CurrencyImpact, PricedImpact, SimulationRun, SimulationStatus, SubscriptionImpact,
};
use billing_domain::billing::subscription::{Subscription, SubscriptionStatus};
use billing_domain::catalog::plan::{NewPlanVersion, Plan, PlanVersion};
use billing_domain::customers::access::Permission;
use billing_domain::kernel::error::{ErrorCode, ValidationError};
use billing_domain::kernel::ids::{PlanId, SimulationId, TenantId};
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use super::BillingService;
use crate::kernel::{new_ulid, AppError, Caller};
use crate::ports::{BillingJob, BillingQueue, PageRequest, StoreError, SubscriptionFilter};

/// How many subscriptions a simulation prices in its request by default, and a job in one
/// chunk: the bound the synchronous answer was built to (two previews each within the API
/// function's 10 s); a billing worker has 50 s for the same.
pub const PER_REQUEST: usize = 500;

/// Where simulations and price notice fan-outs too big for a request go.
#[derive(Clone)]
pub struct SimulationJobs {
    /// The billing queue; without one (tests, the local runner) the request runs the job
    /// itself, chunk after chunk, before it answers.
    pub queue: Option<Arc<dyn BillingQueue>>,
    /// Live subscriptions priced in the request (more: a job) and per chunk of a job.
    pub per_request: usize,
}

impl Default for SimulationJobs {
    fn default() -> Self {
        Self {
            queue: None,
            per_request: PER_REQUEST,
        }
    }
}

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

/// A simulation run as a job, as `GET /v1/simulations/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"object": "simulation", "id": "sim_01JD3X7M2Q8Z5V6W9Y0A1B2C3D",
    "status": "running", "plan_id": "plan_01JD3X7M2Q8Z5V6W9Y0A1B2C3D",
    "url": "/v1/simulations/sim_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "subscriptions_priced": 1500,
    "failure_reason": null, "created_at": "2026-11-22T10:00:00Z",
    "expires_at": "2026-11-29T10:00:00Z", "result": null}))]
pub struct SimulationView {
    pub object: &'static str,
    #[schema(value_type = String)]
    pub id: SimulationId,
    pub status: SimulationStatus,
    #[schema(value_type = String)]
    pub plan_id: PlanId,
    /// Where to read it.
    pub url: String,
    /// Subscriptions priced so far.
    pub subscriptions_priced: u64,
    /// Why it failed (`status: failed`).
    pub failure_reason: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When the run and its result are deleted (a week after it was asked).
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    /// Once `completed`: the same answer as a simulation priced in its request.
    pub result: Option<Simulation>,
}

/// A simulation's answer: priced in the request, or started as a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Simulated {
    Priced(Simulation),
    Started(SimulationView),
}

impl BillingService {
    /// Prices `input` as the plan's next version against each of its live subscriptions:
    /// the same validation as publishing it, the same preview as billing, nothing of
    /// billing's written. A plan with more live subscriptions than
    /// [`SimulationJobs::per_request`] starts a job instead.
    pub async fn simulate_plan_version(
        &self,
        caller: &Caller,
        plan_id: PlanId,
        input: NewPlanVersion,
        threshold_percent: Decimal,
    ) -> Result<Simulated, AppError> {
        caller.require(Permission::Read)?;
        if threshold_percent.is_sign_negative() {
            return Err(ValidationError::new(
                ErrorCode::InvalidValue,
                "threshold_percent",
                "a threshold is a percentage of zero or more",
            )
            .into());
        }
        let tenant = caller.tenant_id;
        let draft = self
            .catalog
            .draft_plan_version(caller, plan_id, input)
            .await?;
        let run = SimulationRun::start(
            SimulationId::from_ulid(new_ulid()),
            (draft.current, draft.versions),
            draft.next,
            draft.version,
            threshold_percent,
            self.clocks.now(),
        );
        let per_request = self.simulation_jobs.per_request;
        let (subs, more) = self
            .plan_subscriptions(tenant, plan_id, None, per_request + 1, bills_again)
            .await?;
        if more.is_none() && subs.len() <= per_request {
            let (as_is, would_be) = run.catalogs();
            let mut impacts = Vec::with_capacity(subs.len());
            for sub in &subs {
                impacts.push(self.impact(tenant, sub, &as_is, &would_be).await?);
            }
            return Ok(Simulated::Priced(result(&run, impacts)));
        }
        self.store.insert_simulation(tenant, &run).await?;
        let job = BillingJob::Simulation {
            tenant,
            simulation: run.id,
        };
        match &self.simulation_jobs.queue {
            Some(queue) => queue.enqueue(&[job]).await?,
            None => self.run_simulation_job(tenant, run.id).await?,
        }
        self.simulation(caller, run.id)
            .await
            .map(Simulated::Started)
    }

    /// A simulation job as it stands; its result once completed. An expired one is gone.
    pub async fn simulation(
        &self,
        caller: &Caller,
        id: SimulationId,
    ) -> Result<SimulationView, AppError> {
        caller.require(Permission::Read)?;
        let run = self
            .store
            .get_simulation(caller.tenant_id, id)
            .await?
            .filter(|run| !run.expired(self.clocks.now()))
            .ok_or_else(|| AppError::not_found("simulation", id))?;
        let result = match run.status {
            SimulationStatus::Completed => {
                let chunks = self.store.simulation_chunks(caller.tenant_id, id).await?;
                let impacts = chunks
                    .into_iter()
                    .flat_map(|c| c.impacts)
                    .map(SubscriptionImpact::from)
                    .collect();
                Some(result(&run, impacts))
            }
            SimulationStatus::Running | SimulationStatus::Failed => None,
        };
        Ok(SimulationView {
            object: "simulation",
            id: run.id,
            status: run.status,
            plan_id: run.plan_id,
            url: format!("/v1/simulations/{}", run.id),
            subscriptions_priced: run.priced,
            failure_reason: run.failure,
            created_at: run.created_at,
            expires_at: run.retained_until,
            result,
        })
    }

    /// The billing worker's job: prices the run's next chunk and queues the one after it
    /// (without a queue, prices them all). A run that is finished, expired or gone is left
    /// alone; a chunk another delivery saved first ends this one (that delivery queued the
    /// next).
    pub(super) async fn run_simulation_job(
        &self,
        tenant: TenantId,
        id: SimulationId,
    ) -> Result<(), AppError> {
        loop {
            let now = self.clocks.now();
            let Some(run) = self.store.get_simulation(tenant, id).await? else {
                return Ok(());
            };
            if run.status != SimulationStatus::Running || run.expired(now) {
                return Ok(());
            }
            let Some(saved) = self.price_next_chunk(tenant, &run, now).await? else {
                return Ok(());
            };
            if saved.status != SimulationStatus::Running {
                return Ok(());
            }
            if let Some(queue) = &self.simulation_jobs.queue {
                let next = BillingJob::Simulation {
                    tenant,
                    simulation: id,
                };
                // Failing here, the job comes back and prices the chunk after the saved.
                return Ok(queue.enqueue(&[next]).await?);
            }
        }
    }

    /// Prices the chunk after `run`'s progress and saves it: the run as saved, or `None`
    /// when another delivery saved first. A subscription that cannot be priced fails the
    /// run with its reason; a store that is unavailable fails only this delivery.
    async fn price_next_chunk(
        &self,
        tenant: TenantId,
        run: &SimulationRun,
        now: Timestamp,
    ) -> Result<Option<SimulationRun>, AppError> {
        let (as_is, would_be) = run.catalogs();
        let (subs, resume) = self
            .plan_subscriptions(
                tenant,
                run.plan_id,
                run.resume_after.clone(),
                self.simulation_jobs.per_request,
                bills_again,
            )
            .await?;
        let mut impacts = Vec::with_capacity(subs.len());
        let mut failure = None;
        for sub in &subs {
            match self.impact(tenant, sub, &as_is, &would_be).await {
                Ok(impact) => impacts.push(PricedImpact::from(&impact)),
                Err(err @ AppError::Unavailable(_)) => return Err(err),
                Err(err) => {
                    failure = Some(format!(
                        "subscription {} could not be priced: {err}",
                        sub.id
                    ));
                    break;
                }
            }
        }
        let (chunk, next) = match failure {
            Some(reason) => (None, run.fail(reason, now)),
            None => {
                let (chunk, next) = run.advance(impacts, resume, now);
                (Some(chunk), next)
            }
        };
        match self
            .store
            .save_simulation(tenant, run, &next, chunk.as_ref())
            .await
        {
            Ok(()) => Ok(Some(next)),
            Err(StoreError::VersionConflict { .. }) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }

    async fn impact(
        &self,
        tenant: TenantId,
        sub: &Subscription,
        as_is: &(Plan, Vec<PlanVersion>),
        would_be: &(Plan, Vec<PlanVersion>),
    ) -> Result<SubscriptionImpact, AppError> {
        let (at, before) = self.next_invoice(tenant, sub, Some(as_is)).await?;
        // Published, a version with a notice period arms the subscription's notice first
        // (and its renewal migrates only if the notice comes early enough).
        let armed = match would_be.1.last() {
            Some(version) => self.armed_for(tenant, sub, &would_be.0, version).await?,
            None => None,
        };
        let priced = armed.as_ref().unwrap_or(sub);
        let (_, after) = self.next_invoice(tenant, priced, Some(would_be)).await?;
        let new_number = would_be.1.last().map(|v| v.number);
        let moves_to = |catalog: &(Plan, Vec<PlanVersion>), at: Timestamp| {
            self.catalog
                .terms_after(tenant, sub, &catalog.0, &catalog.1, at)
        };
        // The notice as it will have been sent by the renewal.
        let sent = priced.price_notice.clone().map(|n| PriceNotice {
            sent_at: n.sent_at.or(Some(n.send_at)),
            ..n
        });
        let migrates = sub.renews_at(at)
            && sub.scheduled_change.is_none()
            && moves_to(would_be, at)?.is_some_and(|m| {
                Some(m.terms.plan_version) == new_number && m.allowed(sent.as_ref(), at)
            });
        // MRR with the change: the terms the subscription will be on once it has renewed
        // past the version's start (and its notice), else its own.
        let later = draft_start(would_be).max(sub.current_period.end);
        let terms_after = moves_to(would_be, later)?
            .map(|m| m.terms)
            .unwrap_or_else(|| sub.terms.clone());
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

    /// Up to `want` of the plan's subscriptions that `keep` takes, from after `after`, and
    /// where the next chunk resumes (`None`: there are no more).
    pub(super) async fn plan_subscriptions(
        &self,
        tenant: TenantId,
        plan: PlanId,
        after: Option<String>,
        want: usize,
        keep: fn(&Subscription) -> bool,
    ) -> Result<(Vec<Subscription>, Option<String>), AppError> {
        let filter = SubscriptionFilter {
            plan: Some(plan),
            ..SubscriptionFilter::default()
        };
        let mut live = Vec::new();
        let mut page = PageRequest {
            starting_after: after,
            ..PageRequest::first(100)
        };
        loop {
            let found = self
                .store
                .list_subscriptions(tenant, &filter, &page)
                .await?;
            let resume = found.next_cursor(|s| s.id.to_string());
            for sub in found.items {
                if live.len() == want {
                    // The chunk is full before this one: the next resumes after the last taken.
                    let last = live.last().map(|s: &Subscription| s.id.to_string());
                    return Ok((live, last));
                }
                if keep(&sub) {
                    live.push(sub);
                }
            }
            match resume {
                Some(after) => {
                    page = PageRequest {
                        starting_after: Some(after),
                        ..PageRequest::first(100)
                    }
                }
                None => return Ok((live, None)),
            }
        }
    }
}

/// A subscription that will bill again: what a simulation prices.
fn bills_again(sub: &Subscription) -> bool {
    sub.status != SubscriptionStatus::Cancelled && sub.due_at().is_some()
}

/// The simulation of `run`'s version over `impacts`.
fn result(run: &SimulationRun, impacts: Vec<SubscriptionImpact>) -> Simulation {
    Simulation {
        plan_id: run.plan_id,
        version: run.simulated.clone(),
        threshold_percent: run.threshold_percent,
        currencies: simulation::summarize(&impacts, run.threshold_percent),
        subscriptions: impacts,
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
