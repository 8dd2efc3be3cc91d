use std::sync::Arc;

use billing_domain::kernel::ids::{TenantId, TestClockId};
use jiff::Timestamp;

use super::AppError;
use crate::ports::{Clock, TestClockStore};

/// The time a use case runs at: the real time, or, for an account on a test clock, the
/// clock's frozen time.
#[derive(Clone)]
pub struct Clocks {
    clock: Arc<dyn Clock>,
    test_clocks: Arc<dyn TestClockStore>,
}

impl Clocks {
    pub fn new(clock: Arc<dyn Clock>, test_clocks: Arc<dyn TestClockStore>) -> Self {
        Self { clock, test_clocks }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// `now` for something on `test_clock`: the clock's time, or the real time.
    pub async fn now_for(
        &self,
        tenant: TenantId,
        test_clock: Option<TestClockId>,
    ) -> Result<Timestamp, AppError> {
        match test_clock {
            None => Ok(self.now()),
            Some(id) => Ok(self
                .test_clocks
                .get_test_clock(tenant, id)
                .await?
                .ok_or_else(|| AppError::not_found("test clock", id))?
                .frozen_time),
        }
    }
}
