//! When a failed payment is tried again, and what happens after the last try.
//!
//! A tenant's schedule is a list of days counted from the **first** failure (Stripe's smart
//! retries count the same way): the default `3, 5, 7, 10` tries again on days 3, 5, 7 and 10,
//! five attempts in all. Counting from the first failure, not from the previous attempt,
//! keeps the whole collection window fixed however late a worker ran.
//!
//! After the last attempt fails the subscription goes `past_due`, and the invoice either
//! stays `open` (dunning goes on, a later payment still settles it) or becomes
//! `uncollectible`, as the tenant chose.

use crate::collection::connect::StripeAccount;
use crate::kernel::error::ErrorCode;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kernel::error::ValidationError;

/// Days after the first failure on which a payment is retried, by default.
pub const DEFAULT_RETRY_DAYS: [u32; 4] = [3, 5, 7, 10];
/// A schedule has at most this many retries.
pub const MAX_RETRIES: usize = 8;
/// No retry later than this many days after the first failure.
pub const MAX_RETRY_DAY: u32 = 60;

/// What becomes of an invoice whose last payment attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinalAction {
    /// The invoice stays open: dunning continues and any later payment settles it.
    #[default]
    LeaveOpen,
    /// The invoice is written off as uncollectible (it can still be paid later).
    MarkUncollectible,
}

/// A tenant's payment collection settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentSettings {
    /// Days after the first failure on which the payment is retried, increasing.
    pub retry_days: Vec<u32>,
    pub final_action: FinalAction,
    /// The Stripe connected account (`acct_…`) this tenant's payments are made on, through
    /// the platform's keys with `Stripe-Account`; absent: the platform account itself.
    /// Settings stored before it existed read as absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_account: Option<StripeAccount>,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            retry_days: DEFAULT_RETRY_DAYS.to_vec(),
            final_action: FinalAction::default(),
            stripe_account: None,
        }
    }
}

impl PaymentSettings {
    /// Checks the schedule: at most [`MAX_RETRIES`] days, strictly increasing, each from 1
    /// to [`MAX_RETRY_DAY`]. An empty schedule means no retries.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let invalid = |message: String| {
            Err(ValidationError::new(
                ErrorCode::InvalidRetrySchedule,
                "retry_days",
                message,
            ))
        };
        if self.retry_days.len() > MAX_RETRIES {
            return invalid(format!("at most {MAX_RETRIES} retries"));
        }
        if self
            .retry_days
            .iter()
            .any(|d| *d == 0 || *d > MAX_RETRY_DAY)
        {
            return invalid(format!(
                "each retry day is from 1 to {MAX_RETRY_DAY} days after the first failure"
            ));
        }
        if self.retry_days.windows(2).any(|w| w[0] >= w[1]) {
            return invalid("retry days must increase, such as [3, 5, 7, 10]".into());
        }
        Ok(())
    }

    /// When to try again after `failed_attempts` attempts have failed, the first of them at
    /// `first_failure`; `None` when the schedule is spent.
    pub fn next_attempt_at(
        &self,
        first_failure: Timestamp,
        failed_attempts: u32,
    ) -> Option<Timestamp> {
        let index = usize::try_from(failed_attempts.checked_sub(1)?).ok()?;
        let day = *self.retry_days.get(index)?;
        first_failure
            .checked_add(SignedDuration::from_hours(24 * i64::from(day)))
            .ok()
    }

    /// How many attempts an invoice gets in all: the first and every retry.
    pub fn total_attempts(&self) -> u32 {
        u32::try_from(self.retry_days.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t0() -> Timestamp {
        "2026-01-31T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn default_schedule_retries_on_days_3_5_7_10_after_the_first_failure() {
        let settings = PaymentSettings::default();
        let days: Vec<i64> = (1..=4)
            .map(|n| {
                settings
                    .next_attempt_at(t0(), n)
                    .unwrap()
                    .duration_since(t0())
                    .as_hours()
                    / 24
            })
            .collect();
        assert_eq!(days, vec![3, 5, 7, 10]);
        assert_eq!(settings.next_attempt_at(t0(), 5), None);
        assert_eq!(settings.next_attempt_at(t0(), 0), None);
        assert_eq!(settings.total_attempts(), 5);
    }

    #[test]
    fn settings_stored_before_connect_read_without_an_account() {
        let old: PaymentSettings =
            serde_json::from_str(r#"{"retry_days": [1], "final_action": "leave_open"}"#).unwrap();
        assert_eq!(old.stripe_account, None);
        let with: PaymentSettings = serde_json::from_str(
            r#"{"retry_days": [], "final_action": "leave_open", "stripe_account": "acct_1A"}"#,
        )
        .unwrap();
        assert_eq!(with.stripe_account.unwrap().as_str(), "acct_1A");
        let bad = r#"{"retry_days": [], "final_action": "leave_open", "stripe_account": "cus_1"}"#;
        assert!(serde_json::from_str::<PaymentSettings>(bad).is_err());
    }

    #[test]
    fn schedules_must_increase_within_bounds() {
        let with = |days: Vec<u32>| PaymentSettings {
            retry_days: days,
            final_action: FinalAction::LeaveOpen,
            stripe_account: None,
        };
        assert!(with(vec![]).validate().is_ok());
        assert!(with(vec![1, 2, 60]).validate().is_ok());
        for bad in [vec![0], vec![3, 3], vec![5, 3], vec![61], vec![1; 9]] {
            let err = with(bad.clone()).validate().unwrap_err();
            assert_eq!(err.code, "invalid_retry_schedule", "{bad:?}");
            assert_eq!(err.param, "retry_days");
        }
    }

    proptest! {
        /// Every valid schedule gives exactly one attempt per day listed: retry `n` (attempt
        /// `n + 1`) lands exactly `retry_days[n - 1]` whole days after the first failure,
        /// whenever that was (Stripe's smart retries count from the first failure too), and
        /// none follows the last.
        #[test]
        fn retries_follow_the_schedule_and_stop(
            days in proptest::collection::btree_set(1u32..=MAX_RETRY_DAY, 0..=MAX_RETRIES),
            first_failure in 1_600_000_000i64..1_900_000_000,
        ) {
            let retry_days: Vec<u32> = days.into_iter().collect();
            let settings = PaymentSettings { retry_days: retry_days.clone(), final_action: FinalAction::MarkUncollectible, stripe_account: None };
            prop_assert!(settings.validate().is_ok());
            let first = Timestamp::from_second(first_failure).unwrap();
            prop_assert_eq!(settings.next_attempt_at(first, 0), None, "no failure, no retry");
            for (n, day) in (1u32..).zip(&retry_days) {
                let expected = Timestamp::from_second(first_failure + 86_400 * i64::from(*day)).unwrap();
                prop_assert_eq!(settings.next_attempt_at(first, n), Some(expected), "retry {} is on day {}", n, day);
            }
            let spent = u32::try_from(retry_days.len()).unwrap() + 1;
            for after in [spent, spent + 1, spent + 7, u32::MAX] {
                prop_assert_eq!(settings.next_attempt_at(first, after), None, "nothing after the last");
            }
            prop_assert_eq!(settings.total_attempts(), spent);
        }
    }
}
