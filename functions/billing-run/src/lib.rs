//! The `billing-run` Lambda's handler, run by an EventBridge schedule: sweeps the due
//! index and hands what is due to the queues. What each kind of due item becomes is
//! decided in [`billing_app::jobs::Sweeper`] (one `match` arm per kind).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use billing_app::jobs::Sweeper;
use billing_app::AppError;
use serde::Serialize;

/// Items read per round; rounds repeat until the index is drained up to now or the
/// round budget is spent (the next scheduled run continues).
pub const BATCH: usize = 500;
pub const MAX_ROUNDS: usize = 20;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct RunSummary {
    pub republished: usize,
    pub retries_queued: usize,
    pub billing_jobs_queued: usize,
    pub payment_jobs_queued: usize,
    pub errors: usize,
}

pub async fn handle(
    sweeper: &Sweeper,
    _schedule: EventBridgeEvent<serde_json::Value>,
) -> Result<RunSummary, AppError> {
    let mut summary = RunSummary::default();
    for _ in 0..MAX_ROUNDS {
        let report = sweeper.sweep(BATCH).await?;
        for err in &report.errors {
            tracing::warn!(%err, "a due item failed; it stays due");
        }
        // Billing and payment items stay due until their worker has handled them, so
        // another round would only find them again: only outbox and retry items justify one.
        let handled = report.republished + report.retries_queued;
        summary.republished += report.republished;
        summary.retries_queued += report.retries_queued;
        summary.billing_jobs_queued += report.billing_jobs_queued;
        summary.payment_jobs_queued += report.payment_jobs_queued;
        summary.errors += report.errors.len();
        // Errors stay due: stop rather than spin on them within one run.
        let stays_due = report.billing_jobs_queued + report.payment_jobs_queued;
        if handled + report.errors.len() + stays_due < BATCH
            || stays_due > 0
            || !report.errors.is_empty()
        {
            break;
        }
    }
    if summary != RunSummary::default() {
        tracing::info!(?summary, "billing run");
    }
    Ok(summary)
}
