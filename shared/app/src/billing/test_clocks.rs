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

/// Most items one advance runs (years of renewals, payment retries and the rest for a few
/// hundred subscriptions); the rest waits for the next advance.
const MAX_CLOCK_ITEMS: usize = 20_000;

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

    /// Runs everything due on the clock up to its target, then lets time stand there.
    /// Safe to run twice: steps already made are found made.
    pub async fn run_test_clock(
        &self,
        tenant: TenantId,
        id: TestClockId,
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
        for _ in 0..MAX_CLOCK_ITEMS {
            let due = self.store.clock_due_items(tenant, id, target, 1).await?;
            let Some(item) = due.into_iter().next() else {
                break;
            };
            self.run_clock_item(&item).await?;
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
            // Clocks hold only subscription steps and payment work; anything else is not
            // time on the clock.
            DueKind::Billing(BillingJob::TestClock { .. })
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
