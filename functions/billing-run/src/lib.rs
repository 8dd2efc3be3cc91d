//! The `billing-run` Lambda's handler, run by an EventBridge schedule: sweeps the due
//! index and hands what is due to the queues. What each kind of due item becomes is
//! decided in [`billing_app::jobs::Sweeper`] (one `match` arm per kind).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use billing_app::jobs::Sweeper;
use billing_app::AppError;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// Items read from each shard of the due index per page: a page is read from every shard
/// at once and handed on (ten billing jobs per SQS request, many requests at once) before
/// the next is read.
pub const PER_SHARD: usize = 1000;
/// A run reads no new page with less than this left before its deadline: time to hand
/// the last page on. The next scheduled run goes on where it stopped.
pub const MARGIN: SignedDuration = SignedDuration::from_secs(10);

/// The function's timeout (template.yaml's `BillingRunFunction.Timeout`): a run outside
/// Lambda (the local runner, the simulation) gets this long.
pub const TIMEOUT: SignedDuration = SignedDuration::from_secs(60);

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct RunSummary {
    pub republished: usize,
    pub retries_queued: usize,
    pub billing_jobs_queued: usize,
    pub payment_jobs_queued: usize,
    pub errors: usize,
    pub pages: usize,
    pub pass_done: bool,
}

/// One run until the pass over the due index is done or `deadline` (the invocation's)
/// is near.
pub async fn handle(
    sweeper: &Sweeper,
    _schedule: EventBridgeEvent<serde_json::Value>,
    deadline: Timestamp,
) -> Result<RunSummary, AppError> {
    let report = sweeper.run(deadline, MARGIN, PER_SHARD).await?;
    for err in &report.errors {
        tracing::warn!(%err, "a due item failed; it stays due");
    }
    let summary = RunSummary {
        republished: report.republished,
        retries_queued: report.retries_queued,
        billing_jobs_queued: report.billing_jobs_queued,
        payment_jobs_queued: report.payment_jobs_queued,
        errors: report.errors.len(),
        pages: report.pages,
        pass_done: report.pass_done,
    };
    tracing::info!(?summary, "billing run");
    Ok(summary)
}
