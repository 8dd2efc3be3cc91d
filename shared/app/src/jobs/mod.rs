//! The top of the service graph: the due-index sweep ([`Sweeper`], run by `billing-run`),
//! which turns what fell due into work for each capability's worker.

use std::sync::Arc;

use billing_domain::kernel::ids::TenantId;
use jiff::SignedDuration;

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
        Ok(report)
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
