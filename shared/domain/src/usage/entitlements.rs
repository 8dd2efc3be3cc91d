//! Entitlements: a plan's limit on a metric per period, hard (refuse past it) or soft
//! (allow, but say so), the answer to "may this account use it now?", and the usage
//! thresholds (80 % and 100 % of the limit) that are announced once per period.

use crate::kernel::error::ErrorCode;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::catalog::metric::validate_code;
use crate::kernel::decimal::serde_decimal;
use crate::kernel::error::ValidationError;

/// Percentages of a limit at which `usage.threshold_reached` is emitted, in order.
pub const THRESHOLDS: [u8; 2] = [80, 100];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Past the limit, checks answer `allowed: false`.
    Hard,
    /// Past the limit, checks still allow (overage is billed); thresholds still fire.
    Soft,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"metric": "api_calls", "limit": "10000", "enforcement": "hard"}))]
pub struct Entitlement {
    /// The metric's code.
    pub metric: String,
    /// The most the metric's aggregate may reach per period (a decimal string or integer).
    #[serde(with = "serde_decimal")]
    #[schema(value_type = String)]
    pub limit: Decimal,
    pub enforcement: Enforcement,
}

impl Entitlement {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_code(&self.metric, "metric")?;
        if self.limit <= Decimal::ZERO {
            return Err(ValidationError::new(
                ErrorCode::InvalidLimit,
                "limit",
                "a limit must be greater than zero",
            ));
        }
        Ok(())
    }

    /// May `requested` more units be used when `used` are used this period?
    pub fn check(&self, used: Decimal, requested: Decimal) -> Check {
        let remaining = (self.limit - used).max(Decimal::ZERO);
        let allowed = self.enforcement == Enforcement::Soft || used + requested <= self.limit;
        Check {
            allowed,
            reason: (!allowed).then_some(Denial::LimitReached),
            limit: Some(self.limit),
            used,
            remaining: Some(remaining),
            enforcement: Some(self.enforcement),
        }
    }

    /// The thresholds newly reached when usage moves to `used`, given the highest one
    /// already announced this period: each fires once, even if usage falls back (latest)
    /// and rises again, and a jump past both fires both, in order.
    pub fn reached(&self, announced: u8, used: Decimal) -> Vec<u8> {
        THRESHOLDS
            .into_iter()
            .filter(|t| *t > announced)
            .filter(|t| used * Decimal::ONE_HUNDRED >= self.limit * Decimal::from(*t))
            .collect()
    }
}

/// The `data` of a `usage.threshold_reached` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageThreshold {
    #[schema(value_type = String)]
    pub subscription_id: crate::kernel::ids::SubscriptionId,
    #[schema(value_type = String)]
    pub account_id: crate::kernel::ids::AccountId,
    pub metric: String,
    #[schema(value_type = Object)]
    pub period: crate::billing::periods::Period,
    /// 80 or 100 (percent of the limit).
    pub threshold: u8,
    #[serde(with = "serde_decimal")]
    #[schema(value_type = String)]
    pub limit: Decimal,
    #[serde(with = "serde_decimal")]
    #[schema(value_type = String)]
    pub used: Decimal,
    pub enforcement: Enforcement,
}

/// The answer to an entitlement check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Check {
    pub allowed: bool,
    /// Why not, when not allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Denial>,
    /// `null`: the plan sets no limit on the metric.
    #[serde(with = "serde_decimal::option")]
    #[schema(value_type = Option<String>)]
    pub limit: Option<Decimal>,
    #[serde(with = "serde_decimal")]
    #[schema(value_type = String)]
    pub used: Decimal,
    #[serde(with = "serde_decimal::option")]
    #[schema(value_type = Option<String>)]
    pub remaining: Option<Decimal>,
    pub enforcement: Option<Enforcement>,
}

impl Check {
    /// A metric without a limit: always allowed.
    pub fn unlimited(used: Decimal) -> Check {
        Check {
            allowed: true,
            reason: None,
            limit: None,
            used,
            remaining: None,
            enforcement: None,
        }
    }

    /// The same check of an account blocked by dunning: nothing is allowed, whatever is
    /// left of the limit.
    pub fn blocked(self) -> Check {
        Check {
            allowed: false,
            reason: Some(Denial::AccountBlocked),
            ..self
        }
    }
}

/// Why a check answers `allowed: false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Denial {
    /// A hard limit would be passed.
    LimitReached,
    /// The account is blocked by dunning and the tenant's policy denies entitlements.
    AccountBlocked,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hard(limit: i64) -> Entitlement {
        Entitlement {
            metric: "api_calls".into(),
            limit: Decimal::from(limit),
            enforcement: Enforcement::Hard,
        }
    }

    #[test]
    fn hard_limits_refuse_past_the_limit_and_soft_ones_allow() {
        let e = hard(100);
        let c = e.check(Decimal::from(99), Decimal::ONE);
        assert!(c.allowed);
        assert_eq!(c.remaining, Some(Decimal::ONE));
        let c = e.check(Decimal::from(100), Decimal::ONE);
        assert!(!c.allowed);
        assert_eq!(c.reason, Some(Denial::LimitReached));
        let blocked = e.check(Decimal::ZERO, Decimal::ONE).blocked();
        assert!(!blocked.allowed);
        assert_eq!(blocked.reason, Some(Denial::AccountBlocked));
        assert_eq!(blocked.remaining, Some(Decimal::from(100)));
        assert_eq!(c.remaining, Some(Decimal::ZERO));
        let soft = Entitlement {
            enforcement: Enforcement::Soft,
            ..e
        };
        let c = soft.check(Decimal::from(150), Decimal::ONE);
        assert!(c.allowed);
        assert_eq!(c.remaining, Some(Decimal::ZERO));
    }

    #[test]
    fn thresholds_are_exact_percentages() {
        let e = hard(1000);
        assert!(e.reached(0, Decimal::from(799)).is_empty());
        assert_eq!(e.reached(0, Decimal::from(800)), vec![80]);
        assert_eq!(e.reached(80, Decimal::from(999)), Vec::<u8>::new());
        assert_eq!(e.reached(0, Decimal::from(1000)), vec![80, 100]);
        assert!(hard(0).validate().is_err());
    }

    proptest! {
        /// Whatever path usage takes (up, down for `latest`), each threshold fires once.
        #[test]
        fn thresholds_fire_once_per_period(path in prop::collection::vec(0i64..2000, 1..50)) {
            let e = hard(1000);
            let mut announced = 0u8;
            let mut fired = Vec::new();
            for used in path.iter().copied() {
                let new = e.reached(announced, Decimal::from(used));
                if let Some(last) = new.last() {
                    announced = *last;
                }
                fired.extend(new);
            }
            let max = *path.iter().max().unwrap();
            let expected: Vec<u8> = THRESHOLDS
                .into_iter()
                .filter(|t| max * 100 >= 1000 * i64::from(*t))
                .collect();
            prop_assert_eq!(fired, expected);
        }
    }
}
