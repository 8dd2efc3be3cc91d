//! The top of the service graph: the due-index sweep ([`Sweeper`], run by `billing-run`),
//! which turns what fell due into work for each capability's worker.

use std::sync::Arc;

use billing_domain::kernel::ids::TenantId;
use jiff::{SignedDuration, Timestamp};

use crate::kernel::AppError;
use crate::ports::*;
use crate::App;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Events published because their post-commit publish never confirmed.
    pub republished: usize,
    /// Delivery attempts queued because they fell due.
    pub retries_queued: usize,
    /// Subscription steps and test-clock advances handed to the billing worker.
    pub billing_jobs_queued: usize,
    /// Payment attempts (and other payment work) handed to the payment worker.
    pub payment_jobs_queued: usize,
    /// Items that failed; they stay due and the next sweep tries again.
    pub errors: Vec<String>,
    /// Pages of the due index read (a page is up to its size from every shard at once).
    pub pages: usize,
    /// The pass over the due index was finished (not left for the next run).
    pub pass_done: bool,
}

impl SweepReport {
    fn add(&mut self, page: SweepReport) {
        self.republished += page.republished;
        self.retries_queued += page.retries_queued;
        self.billing_jobs_queued += page.billing_jobs_queued;
        self.payment_jobs_queued += page.payment_jobs_queued;
        self.errors.extend(page.errors);
        self.pages += 1;
    }
}

/// Turns due-index items into work.
#[derive(Clone)]
pub struct Sweeper {
    pub app: App,
    pub dispatch: Arc<dyn Dispatch>,
    pub billing: Arc<dyn BillingQueue>,
}

impl Sweeper {
    pub fn new(app: App, dispatch: Arc<dyn Dispatch>, billing: Arc<dyn BillingQueue>) -> Self {
        Self {
            app,
            dispatch,
            billing,
        }
    }

    /// Handles up to `limit` items due now. Items are independent: one failure is
    /// reported and left due, the rest go on.
    pub async fn sweep(&self, limit: usize) -> Result<SweepReport, AppError> {
        let due = self.app.events.due_now(limit).await?;
        Ok(self.hand_on(due).await)
    }

    /// One scheduled run: goes on with the pass the last run left unfinished, or begins
    /// the next (over what fell due since the last pass, or every [`FULL_PASS_EVERY`] over
    /// the whole index), and reads it page by page, `per_shard` items of every shard at
    /// once, handing each page on before reading the next, until the pass is done or
    /// less than `margin` is left before `deadline`; the next run goes on from there.
    pub async fn run(
        &self,
        deadline: Timestamp,
        margin: SignedDuration,
        per_shard: usize,
    ) -> Result<SweepReport, AppError> {
        let mut pass = self.app.events.sweep_pass().await?;
        let mut report = SweepReport::default();
        while !pass.done && self.app.clock.now() + margin < deadline {
            // The page is saved as read before it is handed on: a run that dies while
            // handing it on loses it to the next full pass (its items stay due); saving
            // after would have the next run hand it on twice instead.
            let due = self.app.events.next_due_page(&mut pass, per_shard).await?;
            report.add(self.hand_on(due).await);
        }
        report.pass_done = pass.done;
        Ok(report)
    }

    /// Hands due items on to their workers. Items are independent: one failure is
    /// reported and left due, the rest go on.
    async fn hand_on(&self, due: Vec<DueItem>) -> SweepReport {
        let mut report = SweepReport::default();
        // Billing jobs go to the queue in batches; an item stays due until the worker has
        // made its step, so a lost message is only a delay.
        let mut billing = Vec::new();
        let mut payments = Vec::new();
        for item in due {
            let result = match &item.kind {
                // Many of a tenant's drafts waiting for a finalizer make one finalize job.
                DueKind::Billing(job) => {
                    if !billing.contains(job) {
                        billing.push(job.clone());
                    }
                    Ok(())
                }
                DueKind::Payment(job) => {
                    payments.push(job.clone());
                    Ok(())
                }
                DueKind::Outbox { event_id } => self
                    .republish(item.tenant_id, *event_id)
                    .await
                    .map(|done| report.republished += usize::from(done)),
                DueKind::WebhookRetry(job) => self
                    .dispatch
                    .schedule_delivery(job, SignedDuration::ZERO)
                    .await
                    .map(|()| report.retries_queued += 1)
                    .map_err(AppError::from),
            };
            if let Err(err) = result {
                report.errors.push(format!("{:?}: {err}", item.kind));
            }
        }
        match self.billing.enqueue(&billing).await {
            Ok(()) => report.billing_jobs_queued = billing.len(),
            Err(err) => report
                .errors
                .push(format!("{} billing jobs: {err}", billing.len())),
        }
        if !payments.is_empty() {
            match self.app.collection.release_payments(&payments).await {
                Ok(()) => report.payment_jobs_queued = payments.len(),
                Err(err) => report
                    .errors
                    .push(format!("{} payment jobs: {err}", payments.len())),
            }
        }
        report
    }

    async fn republish(
        &self,
        tenant: TenantId,
        id: billing_domain::kernel::ids::EventId,
    ) -> Result<bool, AppError> {
        self.app
            .events
            .republish(self.dispatch.as_ref(), tenant, id)
            .await
    }
}
