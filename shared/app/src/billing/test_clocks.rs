//! Test clocks: create one, put accounts on it, advance it. Advancing runs every
//! subscription step that falls due up to the new time through the same lifecycle path the
//! billing worker uses, earliest first, each at the moment it fell due.

use billing_domain::billing::test_clock::{TestClock, TestClockError};
use billing_domain::customers::access::Permission;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{TenantId, TestClockId};
use jiff::Timestamp;

use super::BillingService;
use crate::kernel::{change, new_ulid, to_json, AppError, Caller, ChangeSpec};
use crate::ports::{BillingJob, DueItem, DueKind, StoreError};

/// Most items (a subscription step, a payment attempt, a dunning step…) the advance request
/// runs itself before answering `advancing`: each is a few store requests and perhaps a
/// gateway call (~0.1 s on DynamoDB, up to ~0.5 s with a Stripe test charge), so 20 stay
/// well inside the API function's 10 s timeout. The sweep's worker runs the rest.
pub const INLINE_CLOCK_ITEMS: usize = 20;
/// Most items one billing-worker run of an advance takes on (its function times out after
/// 50 s); an unfinished clock stays due and the next sweep hands it over again.
pub const WORKER_CLOCK_ITEMS: usize = 100;

impl From<TestClockError> for AppError {
    fn from(err: TestClockError) -> Self {
        match err {
            TestClockError::Invalid(v) => AppError::Invalid(v),
            TestClockError::Busy => AppError::Conflict {
                code: ErrorCode::TestClockAdvancing,
                message: "the clock is still advancing; wait until its status is ready".into(),
                param: None,
            },
        }
    }
}

impl BillingService {
    pub async fn create_test_clock(
        &self,
        caller: &Caller,
        name: Option<String>,
        frozen_time: Timestamp,
    ) -> Result<TestClock, AppError> {
        caller.require(Permission::WriteBilling)?;
        if caller.livemode {
            return Err(AppError::Forbidden(
                "test clocks exist only for sandbox tenants".into(),
            ));
        }
        let now = self.clocks.now();
        let clock = TestClock::new(TestClockId::from_ulid(new_ulid()), name, frozen_time, now)?;
        let after = to_json(&clock)?;
        let change = change(
            caller,
            now,
            ChangeSpec {
                entity_type: "test_clock",
                entity_id: clock.id.to_string(),
                action: AuditAction::Create,
                event_type: Some(EventType::TestClockCreated),
                before: None,
                after: &after,
            },
        );
        self.store
            .insert_test_clock(caller.tenant_id, &clock, &change)
            .await?;
        Ok(clock)
    }

    pub async fn get_test_clock(
        &self,
        caller: &Caller,
        id: TestClockId,
    ) -> Result<TestClock, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_test_clock(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("test clock", id))
    }

    /// Advances the clock to `to`: runs up to [`INLINE_CLOCK_ITEMS`] of what falls due on
    /// the way, and answers the clock, `ready` when that was all, else `advancing` (the
    /// sweep's billing worker runs the rest, [`WORKER_CLOCK_ITEMS`] at a time).
    pub async fn advance_test_clock(
        &self,
        caller: &Caller,
        id: TestClockId,
        to: Timestamp,
    ) -> Result<TestClock, AppError> {
        self.begin_test_clock_advance(caller, id, to).await?;
        self.run_test_clock_for(caller.tenant_id, id, INLINE_CLOCK_ITEMS)
            .await
    }

    /// Marks the clock advancing towards `to`. The work itself is [`BillingService::run_test_clock`],
    /// which the billing worker runs from a queue message (or the caller runs inline).
    pub async fn begin_test_clock_advance(
        &self,
        caller: &Caller,
        id: TestClockId,
        to: Timestamp,
    ) -> Result<TestClock, AppError> {
        caller.require(Permission::WriteBilling)?;
        let current = self.get_test_clock(caller, id).await?;
        let next = current.begin_advance(to, self.clocks.now())?;
        self.store
            .save_test_clock(caller.tenant_id, &current, &next)
            .await?;
        Ok(next)
    }

    /// A billing worker's turn at an advance: [`BillingService::run_test_clock_for`] with
    /// [`WORKER_CLOCK_ITEMS`].
    pub async fn run_test_clock(
        &self,
        tenant: TenantId,
        id: TestClockId,
    ) -> Result<TestClock, AppError> {
        self.run_test_clock_for(tenant, id, WORKER_CLOCK_ITEMS)
            .await
    }

    /// Runs up to `budget` items due on the clock up to its target, earliest first; when
    /// none is left, lets time stand there (`ready`), else leaves it `advancing` and due, for
    /// the next run. Safe to run twice: steps already made are found made.
    pub async fn run_test_clock_for(
        &self,
        tenant: TenantId,
        id: TestClockId,
        budget: usize,
    ) -> Result<TestClock, AppError> {
        let clock = self
            .store
            .get_test_clock(tenant, id)
            .await?
            .ok_or_else(|| AppError::not_found("test clock", id))?;
        let Some(target) = clock.advancing_to else {
            return Ok(clock);
        };
        // One item at a time, always the earliest, each run at the moment it fell due: a
        // step may put new work on the clock (a renewal's payment attempt, a retry), which
        // must run in time order with what was already there.
        let mut ran = 0;
        loop {
            let due = self.store.clock_due_items(tenant, id, target, 1).await?;
            let Some(item) = due.into_iter().next() else {
                break;
            };
            if ran == budget {
                return Ok(clock);
            }
            self.run_clock_item(&item).await?;
            ran += 1;
        }
        let done = clock.finish_advance();
        match self.store.save_test_clock(tenant, &clock, &done).await {
            Ok(()) => Ok(done),
            // Another run of this advance finished it first (the request that asked for it
            // and the worker the sweep woke run the same work), or a newer advance began:
            // the work up to `target` is done either way, and the stored clock says the rest.
            Err(StoreError::VersionConflict { .. }) => self
                .store
                .get_test_clock(tenant, id)
                .await?
                .ok_or_else(|| AppError::not_found("test clock", id)),
            Err(other) => Err(other.into()),
        }
    }

    /// Runs one item due on a test clock through the same use case its worker runs, at
    /// the moment it fell due. Each must make progress (move or leave the due index).
    async fn run_clock_item(&self, item: &DueItem) -> Result<(), AppError> {
        match &item.kind {
            DueKind::Billing(BillingJob::Subscription { tenant, id }) => {
                self.run_due_subscription(*tenant, *id, item.due_at).await?;
            }
            DueKind::Payment(job) => self.collection.run_payment_job(job, item.due_at).await?,
            DueKind::Billing(BillingJob::CreditExpiry {
                tenant,
                account,
                currency,
            }) => {
                self.credits
                    .expire_credits(*tenant, *account, *currency, item.due_at)
                    .await?;
            }
            DueKind::Billing(BillingJob::AccountPurge { tenant, account }) => {
                self.retention
                    .purge_account(*tenant, *account, item.due_at)
                    .await?;
            }
            DueKind::Billing(BillingJob::Wallet { tenant, wallet }) => {
                self.credits
                    .run_wallet_job(*tenant, *wallet, item.due_at)
                    .await?;
            }
            // Clocks hold only subscription steps, payment work, credit expiries, purges and wallets;
            // anything else is not time on the clock.
            DueKind::Billing(
                BillingJob::TestClock { .. }
                | BillingJob::Finalize { .. }
                | BillingJob::Simulation { .. }
                | BillingJob::PriceNotices { .. },
            )
            | DueKind::Outbox { .. }
            | DueKind::WebhookRetry(_) => {
                return Err(AppError::Internal(format!(
                    "unexpected item on a test clock: {:?}",
                    item.kind
                )))
            }
        }
        Ok(())
    }
}
