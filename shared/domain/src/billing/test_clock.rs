//! Test clocks (sandbox only): a frozen time that accounts can live on. Advancing one runs
//! everything that falls due up to the new time through the normal billing path, in order.

use crate::kernel::error::ErrorCode;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kernel::error::ValidationError;
use crate::kernel::ids::TestClockId;
use crate::kernel::time;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestClockStatus {
    Ready,
    /// Work due up to `advancing_to` is being processed.
    Advancing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TestClock {
    #[schema(value_type = String)]
    pub id: TestClockId,
    pub name: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub frozen_time: Timestamp,
    pub status: TestClockStatus,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub advancing_to: Option<Timestamp>,
    /// When the advance was asked for (real time): from then on the billing sweep finishes
    /// whatever the request itself did not.
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(default)]
    pub advance_requested_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TestClockError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the clock is still advancing")]
    Busy,
}

impl TestClock {
    /// A clock standing at `frozen_time`, which must be in the supported time range.
    pub fn new(
        id: TestClockId,
        name: Option<String>,
        frozen_time: Timestamp,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        Ok(TestClock {
            id,
            name,
            frozen_time: time::supported(frozen_time, "frozen_time")?,
            status: TestClockStatus::Ready,
            advancing_to: None,
            advance_requested_at: None,
            created_at: now,
            version: 1,
        })
    }

    /// Starts moving time forward to `to`; time never goes back.
    pub fn begin_advance(
        &self,
        to: Timestamp,
        now: Timestamp,
    ) -> Result<TestClock, TestClockError> {
        if self.status == TestClockStatus::Advancing {
            return Err(TestClockError::Busy);
        }
        let to = time::supported(to, "frozen_time")?;
        if to <= self.frozen_time {
            return Err(ValidationError::new(
                ErrorCode::InvalidFrozenTime,
                "frozen_time",
                format!(
                    "a test clock only moves forward; it is at {}",
                    self.frozen_time
                ),
            )
            .into());
        }
        Ok(TestClock {
            status: TestClockStatus::Advancing,
            advancing_to: Some(to),
            advance_requested_at: Some(now),
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// Everything due up to the target has run: time now stands there.
    pub fn finish_advance(&self) -> TestClock {
        TestClock {
            frozen_time: self.advancing_to.unwrap_or(self.frozen_time),
            status: TestClockStatus::Ready,
            advancing_to: None,
            advance_requested_at: None,
            version: self.version + 1,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    #[test]
    fn a_clock_stands_and_moves_only_inside_the_supported_range() {
        let id = TestClockId::from_ulid(Ulid::from_parts(1, 1));
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let far: Timestamp = "9999-12-30T00:00:00Z".parse().unwrap();
        let refused = TestClock::new(id, None, far, t0).unwrap_err();
        assert_eq!(
            (refused.code, refused.param.as_str()),
            (ErrorCode::TimestampOutOfRange, "frozen_time")
        );
        let clock = TestClock::new(id, None, t0, t0).unwrap();
        assert!(matches!(
            clock.begin_advance(far, t0),
            Err(TestClockError::Invalid(e)) if e.code == ErrorCode::TimestampOutOfRange && e.param == "frozen_time"
        ));
        assert!(clock.begin_advance(time::SUPPORTED_UNTIL, t0).is_ok());
    }

    #[test]
    fn a_clock_moves_forward_once_at_a_time() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let clock =
            TestClock::new(TestClockId::from_ulid(Ulid::from_parts(1, 1)), None, t0, t0).unwrap();
        assert!(clock.begin_advance(t0, t0).is_err());
        let moving = clock
            .begin_advance(t0 + jiff::SignedDuration::from_hours(1), t0)
            .unwrap();
        assert_eq!(moving.advance_requested_at, Some(t0));
        assert_eq!(
            moving.begin_advance(t0 + jiff::SignedDuration::from_hours(2), t0),
            Err(TestClockError::Busy)
        );
        let done = moving.finish_advance();
        assert_eq!(done.advance_requested_at, None);
        assert_eq!(
            (done.frozen_time, done.status),
            (
                t0 + jiff::SignedDuration::from_hours(1),
                TestClockStatus::Ready
            )
        );
    }
}
