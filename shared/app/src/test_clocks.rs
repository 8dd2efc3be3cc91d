//! Test clocks: create one, put accounts on it, advance it. Advancing runs every
//! subscription step that falls due up to the new time through the same lifecycle path the
//! billing worker uses, earliest first, each at the moment it fell due.

use billing_domain::access::Permission;
use billing_domain::event::AuditAction;
use billing_domain::ids::{TenantId, TestClockId};
use billing_domain::test_clock::{TestClock, TestClockError};
use jiff::Timestamp;

use crate::{new_ulid, to_json, App, AppError, Caller, ChangeSpec};

/// Subscriptions handled per round of an advance.
const ROUND: usize = 100;

impl From<TestClockError> for AppError {
    fn from(err: TestClockError) -> Self {
        match err {
            TestClockError::Invalid(v) => AppError::Invalid(v),
            TestClockError::Busy => AppError::Conflict {
                code: "test_clock_advancing",
                message: "the clock is still advancing; wait until its status is ready".into(),
                param: None,
            },
        }
    }
}

impl App {
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
        let now = self.now();
        let clock = TestClock::new(TestClockId::from_ulid(new_ulid()), name, frozen_time, now);
        let after = to_json(&clock)?;
        let change = self.change(
            caller,
            now,
            ChangeSpec {
                entity_type: "test_clock",
                entity_id: clock.id.to_string(),
                action: AuditAction::Create,
                event_type: "test_clock.created",
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

    /// Marks the clock advancing towards `to`. The work itself is [`App::run_test_clock`],
    /// which the billing worker runs from a queue message (or the caller runs inline).
    pub async fn begin_test_clock_advance(
        &self,
        caller: &Caller,
        id: TestClockId,
        to: Timestamp,
    ) -> Result<TestClock, AppError> {
        caller.require(Permission::WriteBilling)?;
        let current = self.get_test_clock(caller, id).await?;
        let next = current.begin_advance(to, self.now())?;
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
        loop {
            let due = self
                .store
                .clock_due_subscriptions(tenant, id, target, ROUND)
                .await?;
            if due.is_empty() {
                break;
            }
            // The earliest item first; each runs its own steps up to the target in order.
            // Items of different subscriptions do not depend on each other.
            for subscription in due {
                self.run_due_subscription(tenant, subscription, target)
                    .await?;
            }
        }
        let done = clock.finish_advance();
        self.store.save_test_clock(tenant, &clock, &done).await?;
        Ok(done)
    }
}
