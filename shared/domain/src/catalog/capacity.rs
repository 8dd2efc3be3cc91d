//! Capacity pricing (Kill Bill's `CAPACITY` usage): one price per period chosen by limits on
//! several unit types at once. The price is that of the **first tier whose every limit holds**
//! for the period's usage; a period with no usage at all costs nothing (Kill Bill's "$0 usage
//! item"). Limits are inclusive maxima; `null` is unlimited, and the last tier must be unlimited
//! on every unit so any usage has a price.
//!
//! ```json
//! {"tiers": [
//!   {"limits": {"api_calls": "1000", "storage_gb": "100"}, "price": 1000},
//!   {"limits": {"api_calls": null,   "storage_gb": null},  "price": 3000}]}
//! ```
//!
//! Reproduces `TestContiguousIntervalCapacityInArrear#testComputeBilledUsage` (killbill/killbill,
//! `invoice/src/test/java/org/killbill/billing/invoice/usage/`): see the tests below.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::catalog::charges::{PricingError, MAX_TIERS};
use crate::kernel::currency::Currency;
use crate::kernel::decimal::serde_decimal;
use crate::kernel::error::{ErrorCode, ValidationError};
use crate::kernel::money::Money;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    pub tiers: Vec<CapacityTier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacityTier {
    /// Inclusive maximum per unit type (decimal string); `null` for unlimited.
    #[schema(value_type = BTreeMap<String, Option<String>>)]
    pub limits: BTreeMap<String, Limit>,
    /// Minor units for the period when this tier applies.
    pub price: i64,
}

/// An inclusive maximum, or unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Limit(#[serde(with = "serde_decimal::option")] pub Option<Decimal>);

/// The tier a period's usage falls in and its price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityPriced {
    pub amount: Money,
    /// 0-based index of the tier chosen (`None` when there was no usage).
    pub tier: Option<usize>,
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidCharge, param, message)
}

impl Capacity {
    /// Every tier limits the same unit types; the last is unlimited on all of them.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let n = self.tiers.len();
        if n == 0 {
            return Err(invalid("tiers", "at least one tier is required"));
        }
        if n > MAX_TIERS {
            return Err(invalid(
                "tiers",
                format!("at most {MAX_TIERS} tiers are allowed"),
            ));
        }
        let units: Vec<&String> = self.tiers[0].limits.keys().collect();
        if units.is_empty() {
            return Err(invalid("tiers[0].limits", "name at least one unit type"));
        }
        for (i, tier) in self.tiers.iter().enumerate() {
            if tier.limits.keys().collect::<Vec<_>>() != units {
                return Err(invalid(
                    format!("tiers[{i}].limits"),
                    "every tier must limit the same unit types",
                ));
            }
            if tier.price < 0 || tier.price > 1_000_000_000_000_000 {
                return Err(invalid(
                    format!("tiers[{i}].price"),
                    "must be 0 to 10^18 minor units",
                ));
            }
            for (unit, limit) in &tier.limits {
                if let Some(max) = limit.0 {
                    if max.is_sign_negative() {
                        return Err(invalid(
                            format!("tiers[{i}].limits.{unit}"),
                            "must not be negative",
                        ));
                    }
                    if i + 1 == n {
                        return Err(invalid(
                            format!("tiers[{i}].limits.{unit}"),
                            "the last tier must be unlimited (null) so any usage has a price",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The price for a period whose usage per unit type is `usage` (absent units count 0).
    pub fn price(
        &self,
        usage: &BTreeMap<String, Decimal>,
        currency: Currency,
    ) -> Result<CapacityPriced, PricingError> {
        if let Some(amount) = usage
            .values()
            .find(|a| a.is_sign_negative() && !a.is_zero())
        {
            return Err(PricingError::NegativeQuantity(*amount));
        }
        if let Some(first) = self.tiers.first() {
            if let Some(unit) = usage.keys().find(|u| !first.limits.contains_key(*u)) {
                return Err(PricingError::Invalid(invalid(
                    format!("usage.{unit}"),
                    "the capacity charge has no limit on this unit type",
                )));
            }
        }
        if usage.values().all(|a| a.is_zero()) {
            return Ok(CapacityPriced {
                amount: Money::zero(currency),
                tier: None,
            });
        }
        let complies = |tier: &CapacityTier| {
            usage.iter().all(|(unit, amount)| {
                tier.limits
                    .get(unit)
                    .and_then(|l| l.0)
                    .is_none_or(|max| *amount <= max)
            })
        };
        let (i, tier) = self
            .tiers
            .iter()
            .enumerate()
            .find(|(_, t)| complies(t))
            .ok_or_else(|| PricingError::Invalid(invalid("tiers", "no tier holds this usage")))?;
        Ok(CapacityPriced {
            amount: Money::new(tier.price, currency),
            tier: Some(i),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn usd() -> Currency {
        Currency::from_code("usd").unwrap()
    }

    fn kill_bill_tiers() -> Capacity {
        serde_json::from_str(
            r#"{"tiers":[
                {"limits":{"unit1":"100","unit2":"1000","unit3":"50"},"price":1000},
                {"limits":{"unit1":"200","unit2":"2000","unit3":"100"},"price":2000},
                {"limits":{"unit1":null,"unit2":null,"unit3":null},"price":3000}]}"#,
        )
        .unwrap()
    }

    fn usage(pairs: &[(&str, Decimal)]) -> BTreeMap<String, Decimal> {
        pairs.iter().map(|(u, a)| ((*u).to_owned(), *a)).collect()
    }

    /// killbill/killbill `invoice/src/test/java/org/killbill/billing/invoice/usage/
    /// TestContiguousIntervalCapacityInArrear.java#testComputeBilledUsage`: tiers $10
    /// (100/1000/50), $20 (200/2000/100), $30 (unlimited).
    #[test]
    fn kill_bill_capacity_first_tier_whose_every_limit_holds() {
        let c = kill_bill_tiers();
        c.validate().unwrap();
        let cases = [
            (
                usage(&[
                    ("unit1", dec!(100)),
                    ("unit2", dec!(1000)),
                    ("unit3", dec!(50)),
                ]),
                1000,
            ),
            (usage(&[("unit1", dec!(100)), ("unit2", dec!(1001))]), 2000),
            (usage(&[("unit1", dec!(101)), ("unit2", dec!(1000))]), 2000),
            (usage(&[("unit1", dec!(101)), ("unit2", dec!(1001))]), 2000),
            (usage(&[("unit1", dec!(10)), ("unit2", dec!(2001))]), 3000),
        ];
        for (u, price) in cases {
            assert_eq!(c.price(&u, usd()).unwrap().amount.minor, price, "{u:?}");
        }
        // No usage at all: a $0 item.
        let zero = c.price(&usage(&[("unit1", dec!(0))]), usd()).unwrap();
        assert_eq!((zero.amount.minor, zero.tier), (0, None));
        assert!(c.price(&usage(&[("other", dec!(1))]), usd()).is_err());
        assert!(c.price(&usage(&[("unit1", dec!(-1))]), usd()).is_err());
    }

    #[test]
    fn capacity_validation_names_the_field() {
        let bad: Capacity = serde_json::from_str(
            r#"{"tiers":[{"limits":{"a":"1"},"price":100},{"limits":{"a":"2"},"price":200}]}"#,
        )
        .unwrap();
        assert_eq!(bad.validate().unwrap_err().param, "tiers[1].limits.a");
        let mixed: Capacity = serde_json::from_str(
            r#"{"tiers":[{"limits":{"a":"1"},"price":100},{"limits":{"b":null},"price":200}]}"#,
        )
        .unwrap();
        assert_eq!(mixed.validate().unwrap_err().param, "tiers[1].limits");
    }
}
