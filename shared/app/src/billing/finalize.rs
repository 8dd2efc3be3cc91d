//! The finalizer: the one serial stage of billing a tenant. Lifecycle steps draft
//! invoices on many workers at once; the finalizer numbers the tenant's drafts oldest
//! first, up to [`MAX_NUMBERED_PER_WRITE`] per write. Each write moves the tenant's
//! sequence once and is conditioned on it (and its prefix) and on every draft's version,
//! so a lost race or a failed write numbers nothing and consumes no number, and two
//! finalizers at once number nothing twice. Each numbered invoice then owes its follow-ups
//! (`invoice.finalized`, its first payment attempt), written once each, conditioned on the
//! invoice still owing them, while later rounds number ([`FOLLOW_UP_ROUNDS`] in flight);
//! the next round's page is read and credited while a numbering write is in flight, so the
//! serial path is the numbering writes alone (README, "Scale").

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use billing_domain::collection::payment::Payment;
use billing_domain::customers::account::Account;
use billing_domain::events::record::AuditAction;
use billing_domain::kernel::ids::{AccountId, InvoiceId, TenantId};
use jiff::Timestamp;
use tokio::time::Instant;

use super::subscriptions::{open_draft, opened_events};
use super::BillingService;
use crate::collection::first_attempt;
use crate::kernel::{change, system_caller, to_json, AppError, ChangeSpec, WRITE_ATTEMPTS};
use crate::ports::{
    BillingJob, NextInvoiceNumber, NumberedInvoice, PendingInvoice, PendingStage, StoreError,
    MAX_NUMBERED_PER_WRITE,
};

/// What one run of the finalizer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FinalizeReport {
    /// Drafts this run numbered.
    pub numbered: usize,
    /// Numbering writes it made (one transaction each).
    pub transactions: usize,
    /// Numbered invoices whose follow-ups it wrote (its own and ones left owed before).
    pub followed_up: usize,
}

/// How long after the second of its request a finalize job reads once more: the second
/// itself, then a margin for the `pending` index, which lags its table (normally by a
/// fraction of a second).
const SETTLE_AFTER_SECOND: Duration = Duration::from_secs(2);

/// How often a finalize job that has caught up with the drafts reads again until its last
/// read is due: drafts committed meanwhile are numbered within this instead of piling up
/// until then (their requests, in the job's second, were dropped).
const CAUGHT_UP_POLL: Duration = Duration::from_millis(100);

/// How long a finalize job numbers before it hands the rest to a new job (its own finalize
/// message) and ends: the billing worker's Lambda times out at 50 s, and a job cut off
/// there would come back only after the queue's 60 s visibility timeout, its round redone.
/// The margin covers the round in flight (under a second with its follow-ups) and the send.
const FINALIZE_JOB_BUDGET: Duration = Duration::from_secs(40);

/// The first pause after a transient failure; each further one doubles, up to
/// [`RETRY_PAUSE_MAX`]. The SDK has already retried a throttled request three times: this
/// waits for the partition's capacity to come back rather than failing the job, which
/// would come back only after the queue's 60 s visibility timeout.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(3);

/// How many rounds' follow-ups may be in flight at once. A round's follow-ups (its
/// invoices' writes, their events published, the payment attempts sent) take longer than
/// its numbering write: with one in flight, the next round would wait for them.
const FOLLOW_UP_ROUNDS: usize = 2;

/// One round: the drafts read and numbered, and the invoices left owed by an earlier
/// finalizer followed up.
struct Round {
    /// When its page was read.
    read_at: Instant,
    /// The read returned all it was asked for: there may be more.
    full: bool,
    /// `None`: another finalizer numbered first, or a draft changed (nothing written).
    numbered: Option<Vec<PendingInvoice>>,
    /// The next round's page, read while this round's numbering write was in flight (only
    /// when that write succeeded and the read did too).
    next: Option<Page>,
}

/// Up to [`MAX_NUMBERED_PER_WRITE`] of the tenant's oldest pending invoices, ready to
/// number: the drafts credited, their accounts read.
struct Page {
    read_at: Instant,
    /// The read returned all it was asked for: there may be more.
    full: bool,
    /// Numbered invoices an earlier finalizer left owing their follow-ups.
    owed: Vec<PendingInvoice>,
    /// The drafts, as stored once credited.
    drafts: Vec<PendingInvoice>,
    /// The drafts' accounts, each invoice issued to its account as read with the page.
    accounts: HashMap<AccountId, Account>,
}

/// A round's follow-ups, written while the next round numbers.
struct FollowingUp {
    invoices: HashSet<InvoiceId>,
    task: tokio::task::JoinHandle<Result<usize, AppError>>,
}

impl FollowingUp {
    async fn finished(self) -> Result<usize, AppError> {
        self.task
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?
    }
}

impl BillingService {
    /// Numbers the tenant's drafts waiting for their numbers, oldest first, until none is
    /// left, and writes the follow-ups of every invoice that owes them (first those an
    /// earlier finalizer left owed). The end of the in-process paths that draft; a billing
    /// worker's finalize job runs [`BillingService::run_finalize_job`].
    pub async fn finalize_pending_invoices(
        &self,
        tenant: TenantId,
    ) -> Result<FinalizeReport, AppError> {
        self.finalize(tenant, None, None).await
    }

    /// A billing worker's finalize job (one at a time per tenant: its FIFO message group):
    /// [`BillingService::finalize_pending_invoices`], and on a queue that drops repeat
    /// requests within a second, reads every [`CAUGHT_UP_POLL`] once caught up, until a
    /// read after this job's second has passed finds nothing. A draft committed in that
    /// second whose request was dropped would otherwise wait for its hand-over and the
    /// sweep (60 to 120 s). The job's request was sent no later than the job started, so
    /// the second the job started in bounds it.
    ///
    /// On a queue, a job still numbering after [`FINALIZE_JOB_BUDGET`] lets its round's
    /// follow-ups finish, sends a new finalize job for the tenant and ends: the new job
    /// goes on from the store (which holds every draft and owed follow-up), so a job that
    /// dies before or after that send loses nothing (its message comes back) and numbers
    /// nothing twice (the sequence's condition).
    pub async fn run_finalize_job(&self, tenant: TenantId) -> Result<FinalizeReport, AppError> {
        let started = self.clocks.now();
        let coalesced = self
            .finalize_queue
            .as_ref()
            .is_some_and(|queue| queue.coalesces_finalize_jobs_per_second());
        let settle_at = coalesced
            .then(|| {
                let at = Timestamp::from_second(started.as_second())
                    .ok()?
                    .checked_add(SETTLE_AFTER_SECOND)
                    .ok()?;
                let wait = Duration::try_from(started.duration_until(at)).ok()?;
                Some(Instant::now() + wait)
            })
            .flatten();
        let hand_over_at = self
            .finalize_queue
            .is_some()
            .then(|| started.checked_add(FINALIZE_JOB_BUDGET).ok())
            .flatten();
        self.finalize(tenant, settle_at, hand_over_at).await
    }

    /// The finalizer's rounds; when `settle_at` is given, the last read starts no earlier;
    /// when `hand_over_at` is, no round starts after it: the rest goes to a new job.
    async fn finalize(
        &self,
        tenant: TenantId,
        settle_at: Option<Instant>,
        hand_over_at: Option<Timestamp>,
    ) -> Result<FinalizeReport, AppError> {
        let mut report = FinalizeReport::default();
        let mut conflicts = 0;
        let mut transient = 0;
        // The rounds whose follow-ups are being written, oldest first.
        let mut following: VecDeque<FollowingUp> = VecDeque::new();
        // The sequence as this finalizer's last numbering write left it, if that succeeded.
        let mut sequence: Option<NextInvoiceNumber> = None;
        // The next round's page, read while the last numbering write was in flight.
        let mut prefetched: Option<Page> = None;
        loop {
            if hand_over_at.is_some_and(|at| self.clocks.now() >= at) {
                while let Some(oldest) = following.pop_front() {
                    report.followed_up += oldest.finished().await?;
                }
                self.hand_over(tenant).await?;
                return Ok(report);
            }
            let before = report;
            let in_flight: HashSet<InvoiceId> = following
                .iter()
                .flat_map(|f| f.invoices.iter().copied())
                .collect();
            let mut round = self
                .round(
                    tenant,
                    &in_flight,
                    prefetched.take(),
                    &mut sequence,
                    &mut report,
                )
                .await;
            // A round that numbered leaves up to `FOLLOW_UP_ROUNDS - 1` earlier rounds'
            // follow-ups in flight beside its own; any other ends them all first.
            let keep = |round: &Result<Round, AppError>| match round {
                Ok(Round {
                    numbered: Some(numbered),
                    ..
                }) if !numbered.is_empty() => FOLLOW_UP_ROUNDS - 1,
                _ => 0,
            };
            while following.len() > keep(&round) {
                if let Some(oldest) = following.pop_front() {
                    match oldest.finished().await {
                        Ok(written) => report.followed_up += written,
                        Err(err) => round = round.and(Err(err)),
                    }
                }
            }
            match round {
                Ok(Round { numbered: None, .. }) => {
                    conflicts += 1;
                    if conflicts > WRITE_ATTEMPTS {
                        return Err(AppError::Unavailable(
                            "the invoice sequence is busy; the finalize job comes back".into(),
                        ));
                    }
                }
                Ok(Round {
                    numbered: Some(numbered),
                    full,
                    read_at,
                    next,
                }) => {
                    conflicts = 0;
                    transient = 0;
                    prefetched = next;
                    if !numbered.is_empty() {
                        let service = self.clone();
                        following.push_back(FollowingUp {
                            invoices: numbered.iter().map(|p| p.invoice.id).collect(),
                            task: tokio::spawn(
                                async move { service.follow_up(tenant, numbered).await },
                            ),
                        });
                        continue;
                    }
                    // A page not full was all there was; a full one that moved nothing
                    // is another finalizer's (or the index lagging), which will finish it.
                    if full && report != before {
                        continue;
                    }
                    if let Some(at) = settle_at.filter(|at| read_at < *at) {
                        tokio::time::sleep_until(at.min(Instant::now() + CAUGHT_UP_POLL)).await;
                        continue;
                    }
                    return Ok(report);
                }
                Err(AppError::Unavailable(cause)) => {
                    transient += 1;
                    if transient > WRITE_ATTEMPTS {
                        return Err(AppError::Unavailable(cause));
                    }
                    let doublings = u32::try_from(transient - 1).unwrap_or(u32::MAX).min(8);
                    tokio::time::sleep((RETRY_PAUSE * (1 << doublings)).min(RETRY_PAUSE_MAX)).await;
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Reads the oldest pending invoices (past those in `in_flight`, whose follow-ups are
    /// being written), follows up the ones an earlier finalizer left owed, and numbers the
    /// drafts (from `sequence` when known); counts what it did in `report`. The numbered
    /// invoices owe their follow-ups.
    async fn round(
        &self,
        tenant: TenantId,
        in_flight: &HashSet<InvoiceId>,
        prefetched: Option<Page>,
        sequence: &mut Option<NextInvoiceNumber>,
        report: &mut FinalizeReport,
    ) -> Result<Round, AppError> {
        let Page {
            read_at,
            full,
            owed,
            drafts,
            accounts,
        } = match prefetched {
            Some(page) => page,
            None => self.read_page(tenant, in_flight).await?,
        };
        if !owed.is_empty() {
            report.followed_up += self.follow_up(tenant, owed).await?;
        }
        if drafts.is_empty() {
            return Ok(Round {
                read_at,
                full,
                numbered: Some(Vec::new()),
                next: None,
            });
        }
        // The next round's page is read, credited and its accounts read while this
        // round's write is in flight, past the invoices this round numbers and those
        // being followed up (all owe follow-ups this finalizer writes); its drafts are
        // numbered only after this write commits, each conditioned on its version as read.
        let mut skip = in_flight.clone();
        skip.extend(drafts.iter().map(|d| d.invoice.id));
        let numbered = self
            .number(tenant, drafts, &accounts, sequence, &skip)
            .await?;
        let (numbered, next) = match numbered {
            Some((numbered, next)) => {
                report.numbered += numbered.len();
                report.transactions += 1;
                (Some(numbered), next)
            }
            None => (None, None),
        };
        Ok(Round {
            read_at,
            full,
            numbered,
            next,
        })
    }

    /// The oldest pending invoices but those in `skip` (whose follow-ups are this
    /// finalizer's to write), the drafts among them credited and their accounts read.
    async fn read_page(
        &self,
        tenant: TenantId,
        skip: &HashSet<InvoiceId>,
    ) -> Result<Page, AppError> {
        let read_at = Instant::now();
        let limit = MAX_NUMBERED_PER_WRITE + skip.len();
        let mut pending = self.store.pending_invoices(tenant, limit).await?;
        let full = pending.len() == limit;
        pending.retain(|p| !skip.contains(&p.invoice.id));
        pending.truncate(MAX_NUMBERED_PER_WRITE);
        let (owed, drafts): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|p| p.stage == PendingStage::FollowUps);
        if drafts.is_empty() {
            return Ok(Page {
                read_at,
                full,
                owed,
                drafts,
                accounts: HashMap::new(),
            });
        }
        let mut ids: Vec<_> = drafts.iter().map(|d| d.invoice.account_id).collect();
        ids.sort_unstable();
        ids.dedup();
        // Credit is applied (and negative totals moved into the balance) before the
        // numbering write, which must not touch a balance: see `credits::settle`.
        let (drafts, accounts) = tokio::join!(
            self.credits.settle_drafts(tenant, drafts),
            self.store.get_accounts(tenant, &ids)
        );
        Ok(Page {
            read_at,
            full,
            owed,
            drafts: drafts?,
            accounts: accounts?.into_iter().map(|a| (a.id, a)).collect(),
        })
    }

    /// Numbers `drafts` (in order) in one write from the tenant's next number, `sequence`
    /// if known (else read), each issued to its account in `accounts`; `None` when the
    /// sequence, its prefix or a draft moved meanwhile (nothing written). Returns the
    /// numbered invoices, owing their follow-ups, and leaves in `sequence` where the write
    /// moved it (nothing when it failed: the next one reads). With them, the next page
    /// past `skip`, read while the write is in flight (`None` if that read failed: the
    /// next round reads again).
    async fn number(
        &self,
        tenant: TenantId,
        drafts: Vec<PendingInvoice>,
        accounts: &HashMap<AccountId, Account>,
        sequence: &mut Option<NextInvoiceNumber>,
        skip: &HashSet<InvoiceId>,
    ) -> Result<Option<(Vec<PendingInvoice>, Option<Page>)>, AppError> {
        let next = match sequence.take() {
            Some(known) => known,
            None => self.store.next_invoice_number(tenant).await?,
        };
        let numbered = drafts
            .iter()
            .zip(next.number..)
            .map(|(draft, number)| {
                let terms = draft.finalization;
                // Dated when it was drafted (the step's moment): the number comes seconds
                // later, the dates do not depend on it.
                let (invoice, _) = open_draft(
                    &draft.invoice,
                    accounts.get(&draft.invoice.account_id),
                    &next.prefix,
                    number,
                    terms.days_until_due,
                    terms.livemode,
                    draft.invoice.created_at,
                )?;
                Ok(NumberedInvoice {
                    previous_version: draft.invoice.version,
                    invoice,
                    number,
                    finalization: terms,
                })
            })
            .collect::<Result<Vec<_>, AppError>>()?;
        let (written, page) = tokio::join!(
            self.store.number_invoices(tenant, &next.prefix, &numbered),
            self.read_page(tenant, skip)
        );
        match written {
            Ok(()) => {
                *sequence = Some(NextInvoiceNumber {
                    number: next.number + numbered.len() as u64,
                    prefix: next.prefix,
                });
                let numbered = numbered
                    .into_iter()
                    .map(|n| PendingInvoice {
                        stage: PendingStage::FollowUps,
                        invoice: n.invoice,
                        finalization: n.finalization,
                    })
                    .collect();
                Ok(Some((numbered, page.ok())))
            }
            Err(StoreError::VersionConflict { .. }) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }

    /// Sends the rest of a finalize job's work to a new finalize job for the tenant. A send
    /// that fails fails the job, whose message comes back.
    async fn hand_over(&self, tenant: TenantId) -> Result<(), AppError> {
        let queue = self
            .finalize_queue
            .as_ref()
            .ok_or_else(|| AppError::Internal("a hand-over without a queue".into()))?;
        queue.enqueue(&[BillingJob::Finalize { tenant }]).await?;
        tracing::info!(%tenant, "finalize job out of time: the rest handed to a new job");
        Ok(())
    }

    /// After drafting: a finalize job for the tenant on the billing queue, or, in a process
    /// without one (tests, tools), the finalizer itself. A failure is only logged: the
    /// sweep hands drafts still waiting a minute later to a finalizer.
    pub async fn request_finalization(&self, tenant: TenantId) {
        let result = match &self.finalize_queue {
            Some(queue) => queue
                .enqueue(&[BillingJob::Finalize { tenant }])
                .await
                .map_err(AppError::from),
            None => self.finalize_pending_invoices(tenant).await.map(|_| ()),
        };
        if let Err(err) = result {
            tracing::warn!(%err, %tenant, "finalization not started; the sweep hands the drafts over");
        }
    }

    /// Writes the follow-ups of `owed`, all at once, then hands their first payment
    /// attempts to the payment queue together. Returns how many this call wrote (one
    /// another finalizer wrote first is not counted, nor an error).
    async fn follow_up(
        &self,
        tenant: TenantId,
        owed: Vec<PendingInvoice>,
    ) -> Result<usize, AppError> {
        let mut writes = tokio::task::JoinSet::new();
        for pending in owed {
            let service = self.clone();
            writes.spawn(async move { service.follow_up_one(tenant, pending).await });
        }
        let mut written = 0;
        let mut payments = Vec::new();
        let mut failure = None;
        while let Some(joined) = writes.join_next().await {
            match joined.map_err(|e| AppError::Internal(e.to_string()))? {
                Ok(Some(payment)) => {
                    written += 1;
                    payments.extend(payment);
                }
                Ok(None) => {}
                Err(err) => failure = Some(err),
            }
        }
        if let Some(latest) = payments.iter().map(|p| p.due_at).max() {
            let payments: Vec<&Payment> = payments.iter().collect();
            self.collection
                .release_due_payments(tenant, &payments, latest)
                .await;
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(written),
        }
    }

    /// One invoice's follow-ups; `None` when another finalizer wrote them first, else the
    /// first payment attempt written, if any.
    async fn follow_up_one(
        &self,
        tenant: TenantId,
        pending: PendingInvoice,
    ) -> Result<Option<Option<Payment>>, AppError> {
        let invoice = &pending.invoice;
        let at = invoice.finalized_at.unwrap_or(invoice.created_at);
        let caller = system_caller(tenant, pending.finalization.livemode);
        let payment = first_attempt(invoice, pending.finalization.livemode, at);
        let data = to_json(invoice)?;
        let mut change = change(
            &caller,
            at,
            ChangeSpec {
                entity_type: "invoice",
                entity_id: invoice.id.to_string(),
                action: AuditAction::Update,
                event_type: None,
                before: None,
                after: &data,
            },
        );
        change.events = opened_events(&caller, at, invoice, &data);
        match self
            .store
            .finish_invoice(tenant, invoice, payment.as_ref(), &change)
            .await
        {
            Ok(()) => Ok(Some(payment)),
            Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }
}
