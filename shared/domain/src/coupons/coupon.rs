//! Coupons: the terms of a discount, kept per tenant under a unique `code`.
//!
//! Terms are fixed once created (Stripe lets only `name` and `metadata` change): a discount
//! copies them when it is made, so a later change could not reach it anyway, and the store
//! counts redemptions against a `max_redemptions` that cannot move under it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::coupons::discount::AppliedDiscount;
use crate::kernel::currency::Currency;
use crate::kernel::decimal::{self, serde_decimal};
use crate::kernel::error::{ErrorCode, ValidationError};
use crate::kernel::ids::{CouponId, DiscountId, PlanId};
use crate::kernel::metadata::{self, Metadata};

/// Most billing periods a `repeating` coupon may run (ten years of months).
pub const MAX_DURATION_PERIODS: u32 = 120;
/// The largest amount off, in minor units (ten billion dollars): sums stay exact.
pub const MAX_AMOUNT_OFF: i64 = 1_000_000_000_000;
/// Most plans one coupon may be limited to.
pub const MAX_APPLIES_TO: usize = 100;

/// How long a discount made from the coupon lasts, counted in the subscription's billing
/// periods (Lago's `frequency`: once, recurring, forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CouponDuration {
    /// The next period invoice only.
    Once,
    /// `duration_in_periods` period invoices.
    Repeating,
    /// Every period invoice while the subscription lasts.
    Forever,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "coupon_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "code": "LAUNCH20", "name": "Launch offer",
    "percent_off": "20", "amount_off": {}, "duration": "repeating", "duration_in_periods": 2,
    "max_redemptions": 100, "times_redeemed": 3, "redeem_by": null, "applies_to": null,
    "metadata": {}, "deleted": false, "created_at": "2026-11-22T10:00:00Z",
    "updated_at": "2026-11-22T10:00:00Z", "version": 1
}))]
pub struct Coupon {
    #[schema(value_type = String)]
    pub id: CouponId,
    /// Unique per tenant (deleted coupons keep theirs); what customers type.
    pub code: String,
    pub name: Option<String>,
    /// Percent of each discountable line's amount, e.g. `"20"` or `"12.5"`.
    #[serde(with = "serde_decimal::option", default)]
    #[schema(value_type = Option<String>)]
    pub percent_off: Option<Decimal>,
    /// Minor units off per invoice, per currency (empty for a percent-off coupon).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, i64>)]
    pub amount_off: BTreeMap<Currency, i64>,
    pub duration: CouponDuration,
    /// For `repeating`: how many period invoices a discount lasts.
    pub duration_in_periods: Option<u32>,
    pub max_redemptions: Option<u32>,
    pub times_redeemed: u32,
    /// No redemption after this instant.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub redeem_by: Option<Timestamp>,
    /// The plans it may be redeemed on and discounts; `null` for every plan.
    #[schema(value_type = Option<Vec<String>>)]
    pub applies_to: Option<Vec<PlanId>>,
    pub metadata: Metadata,
    /// Deleted coupons take no new redemptions; discounts already made run their course.
    pub deleted: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub version: u64,
}

/// `POST /v1/coupons`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "LAUNCH20", "percent_off": "20", "duration": "repeating", "duration_in_periods": 2}))]
pub struct NewCoupon {
    pub code: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(with = "serde_decimal::option", default)]
    #[schema(value_type = Option<String>)]
    pub percent_off: Option<Decimal>,
    /// Currency code → minor units.
    #[serde(default)]
    pub amount_off: Option<BTreeMap<String, i64>>,
    pub duration: CouponDuration,
    #[serde(default)]
    pub duration_in_periods: Option<u32>,
    #[serde(default)]
    pub max_redemptions: Option<u32>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub redeem_by: Option<Timestamp>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub applies_to: Option<Vec<PlanId>>,
    #[serde(default)]
    pub metadata: Metadata,
}

/// `PATCH /v1/coupons/{id}`: only what no discount depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Launch offer (extended)"}))]
pub struct CouponPatch {
    pub name: Option<String>,
    pub metadata: Option<Metadata>,
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidCoupon, param, message)
}

/// Codes are what customers type: letters (either case), digits, `_` and `-`, 1–64.
pub fn validate_code(code: &str, param: &'static str) -> Result<String, ValidationError> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(code.to_owned())
    } else {
        Err(ValidationError::new(
            ErrorCode::InvalidCouponCode,
            param,
            format!("`{code}` must be 1 to 64 letters, digits, `_` or `-`"),
        ))
    }
}

fn validate_name(name: Option<String>) -> Result<Option<String>, ValidationError> {
    match name.as_deref().map(str::trim) {
        None => Ok(None),
        Some(n) if n.is_empty() || n.chars().count() > 200 => Err(ValidationError::new(
            ErrorCode::InvalidName,
            "name",
            "a name must be 1 to 200 characters",
        )),
        Some(n) => Ok(Some(n.to_owned())),
    }
}

fn validate_percent(p: Decimal) -> Result<Decimal, ValidationError> {
    if p <= Decimal::ZERO || p > Decimal::ONE_HUNDRED {
        return Err(invalid(
            "percent_off",
            "percent_off must be above 0 and at most 100",
        ));
    }
    if decimal::significant_scale(p) > 4 {
        return Err(invalid(
            "percent_off",
            "percent_off has at most 4 decimal places",
        ));
    }
    Ok(p.normalize())
}

fn validate_amounts(
    amounts: BTreeMap<String, i64>,
) -> Result<BTreeMap<Currency, i64>, ValidationError> {
    if amounts.is_empty() {
        return Err(invalid(
            "amount_off",
            "amount_off needs an amount in at least one currency",
        ));
    }
    let mut out = BTreeMap::new();
    for (code, amount) in amounts {
        let currency = Currency::from_code(&code).map_err(|_| {
            ValidationError::new(
                ErrorCode::InvalidCurrency,
                format!("amount_off.{code}"),
                format!("`{code}` is not a supported ISO 4217 currency"),
            )
        })?;
        // Bounded like every amount the API takes, so that sums of them stay exact.
        if amount <= 0 || amount > MAX_AMOUNT_OFF {
            return Err(invalid(
                format!("amount_off.{code}"),
                "an amount off is a positive number of minor units",
            ));
        }
        if out.insert(currency, amount).is_some() {
            return Err(ValidationError::new(
                ErrorCode::DuplicateCurrency,
                format!("amount_off.{code}"),
                "a currency is given twice",
            ));
        }
    }
    Ok(out)
}

/// Why a coupon cannot be redeemed now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("the coupon is deleted")]
    Deleted,
    #[error("the coupon could be redeemed until {0}")]
    Expired(Timestamp),
    #[error("the coupon was redeemed its maximum of {0} times")]
    MaxedOut(u32),
    #[error("the coupon does not apply to plan {0}")]
    PlanNotCovered(PlanId),
    #[error("the coupon has no amount off in {0}")]
    NoAmountIn(Currency),
}

impl RedeemError {
    /// The problem a caller redeeming under `param` gets.
    pub fn problem(&self, param: &'static str) -> ValidationError {
        let code = match self {
            RedeemError::Deleted => ErrorCode::CouponDeleted,
            RedeemError::Expired(_) => ErrorCode::CouponExpired,
            RedeemError::MaxedOut(_) => ErrorCode::CouponMaxedOut,
            RedeemError::PlanNotCovered(_) | RedeemError::NoAmountIn(_) => {
                ErrorCode::CouponNotApplicable
            }
        };
        ValidationError::new(code, param, self.to_string())
    }
}

impl Coupon {
    pub fn create(
        id: CouponId,
        input: NewCoupon,
        now: Timestamp,
    ) -> Result<Coupon, ValidationError> {
        let code = validate_code(&input.code, "code")?;
        let name = validate_name(input.name)?;
        metadata::validate(&input.metadata)?;
        let (percent_off, amount_off) = match (input.percent_off, input.amount_off) {
            (Some(p), None) => (Some(validate_percent(p)?), BTreeMap::new()),
            (None, Some(a)) => (None, validate_amounts(a)?),
            _ => {
                return Err(invalid(
                    "percent_off",
                    "give exactly one of percent_off and amount_off",
                ))
            }
        };
        match (input.duration, input.duration_in_periods) {
            (CouponDuration::Repeating, Some(n)) if (1..=MAX_DURATION_PERIODS).contains(&n) => {}
            (CouponDuration::Repeating, _) => {
                return Err(invalid(
                    "duration_in_periods",
                    format!(
                    "a repeating coupon needs duration_in_periods from 1 to {MAX_DURATION_PERIODS}"
                ),
                ))
            }
            (_, Some(_)) => {
                return Err(invalid(
                    "duration_in_periods",
                    "duration_in_periods is for repeating coupons only",
                ))
            }
            (_, None) => {}
        }
        if input.max_redemptions == Some(0) {
            return Err(invalid(
                "max_redemptions",
                "max_redemptions must be at least 1",
            ));
        }
        if let Some(by) = input.redeem_by {
            crate::kernel::time::supported(by, "redeem_by")?;
            if by <= now {
                return Err(invalid("redeem_by", "redeem_by must be in the future"));
            }
        }
        if let Some(plans) = &input.applies_to {
            if plans.is_empty() || plans.len() > MAX_APPLIES_TO {
                return Err(invalid(
                    "applies_to",
                    format!("applies_to names 1 to {MAX_APPLIES_TO} plans (or is left out for every plan)"),
                ));
            }
        }
        let applies_to = input.applies_to.map(|mut plans| {
            plans.sort();
            plans.dedup();
            plans
        });
        Ok(Coupon {
            id,
            code,
            name,
            percent_off,
            amount_off,
            duration: input.duration,
            duration_in_periods: input.duration_in_periods,
            max_redemptions: input.max_redemptions,
            times_redeemed: 0,
            redeem_by: input.redeem_by,
            applies_to,
            metadata: input.metadata,
            deleted: false,
            created_at: now,
            updated_at: now,
            version: 1,
        })
    }

    pub fn apply(&self, patch: CouponPatch, now: Timestamp) -> Result<Coupon, ValidationError> {
        let mut next = self.clone();
        if patch.name.is_some() {
            next.name = validate_name(patch.name)?;
        }
        if let Some(metadata) = patch.metadata {
            metadata::validate(&metadata)?;
            next.metadata = metadata;
        }
        next.updated_at = now;
        next.version += 1;
        Ok(next)
    }

    /// The coupon deleted; `None` when it already is.
    pub fn delete(&self, now: Timestamp) -> Option<Coupon> {
        (!self.deleted).then(|| Coupon {
            deleted: true,
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// Whether it covers `plan`.
    pub fn covers(&self, plan: PlanId) -> bool {
        self.applies_to
            .as_ref()
            .is_none_or(|plans| plans.contains(&plan))
    }

    /// The discount one more redemption makes on a subscription of `plan` billed in
    /// `currency`, if the coupon can be redeemed at `now`. The store takes the redemption
    /// slot (`times_redeemed` below `max_redemptions`) in the same write as the discount.
    pub fn redeem(
        &self,
        id: DiscountId,
        plan: PlanId,
        currency: Currency,
        now: Timestamp,
    ) -> Result<AppliedDiscount, RedeemError> {
        self.check_redeemable(now)?;
        if !self.covers(plan) {
            return Err(RedeemError::PlanNotCovered(plan));
        }
        let periods_remaining = match self.duration {
            CouponDuration::Once => Some(1),
            CouponDuration::Repeating => self.duration_in_periods,
            CouponDuration::Forever => None,
        };
        self.discount(id, currency, now, periods_remaining, None)
    }

    /// The discount one more redemption makes on an account billed in `currency` whose
    /// periods run in `time_zone`. Its plans are checked on each invoice, not here (the
    /// account's subscriptions change). `repeating` runs in time, as Stripe's customer
    /// discounts do: until `duration_in_periods` months after `now` (its `end`).
    pub fn redeem_on_account(
        &self,
        id: DiscountId,
        currency: Currency,
        time_zone: &jiff::tz::TimeZone,
        now: Timestamp,
    ) -> Result<AppliedDiscount, RedeemError> {
        self.check_redeemable(now)?;
        let end = match (self.duration, self.duration_in_periods) {
            (CouponDuration::Repeating, Some(months)) => Some(
                now.to_zoned(time_zone.clone())
                    .checked_add(jiff::Span::new().months(i64::from(months)))
                    .map_err(|_| RedeemError::Expired(now))?
                    .timestamp(),
            ),
            _ => None,
        };
        let once = (self.duration == CouponDuration::Once).then_some(1);
        self.discount(id, currency, now, once, end)
    }

    fn check_redeemable(&self, now: Timestamp) -> Result<(), RedeemError> {
        if self.deleted {
            return Err(RedeemError::Deleted);
        }
        if let Some(by) = self.redeem_by.filter(|by| now > *by) {
            return Err(RedeemError::Expired(by));
        }
        if let Some(max) = self
            .max_redemptions
            .filter(|max| self.times_redeemed >= *max)
        {
            return Err(RedeemError::MaxedOut(max));
        }
        Ok(())
    }

    fn discount(
        &self,
        id: DiscountId,
        currency: Currency,
        now: Timestamp,
        periods_remaining: Option<u32>,
        end: Option<Timestamp>,
    ) -> Result<AppliedDiscount, RedeemError> {
        let amount_off = match self.percent_off {
            Some(_) => None,
            None => Some(
                *self
                    .amount_off
                    .get(&currency)
                    .ok_or(RedeemError::NoAmountIn(currency))?,
            ),
        };
        Ok(AppliedDiscount {
            id,
            coupon_id: self.id,
            coupon_code: self.code.clone(),
            percent_off: self.percent_off,
            amount_off,
            duration: self.duration,
            periods_remaining,
            applies_to: self.applies_to.clone(),
            start: now,
            end,
        })
    }

    /// The coupon with one more redemption counted (what the store's counter makes of it).
    pub fn redeemed(&self) -> Coupon {
        Coupon {
            times_redeemed: self.times_redeemed + 1,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    fn now() -> Timestamp {
        "2026-11-01T00:00:00Z".parse().unwrap()
    }

    fn new(json: serde_json::Value) -> Result<Coupon, ValidationError> {
        let input: NewCoupon = serde_json::from_value(json).unwrap();
        Coupon::create(CouponId::from_ulid(Ulid::new()), input, now())
    }

    fn code_of(json: serde_json::Value) -> (ErrorCode, String) {
        let err = new(json).unwrap_err();
        (err.code, err.param)
    }

    #[test]
    fn terms_are_validated_with_a_code_and_the_field() {
        use serde_json::json;
        assert_eq!(
            code_of(json!({"code": "X", "duration": "once"})),
            (ErrorCode::InvalidCoupon, "percent_off".into())
        );
        assert_eq!(
            code_of(
                json!({"code": "X", "percent_off": "20", "amount_off": {"usd": 5}, "duration": "once"})
            ),
            (ErrorCode::InvalidCoupon, "percent_off".into())
        );
        assert_eq!(
            code_of(json!({"code": "X", "percent_off": "100.5", "duration": "once"})),
            (ErrorCode::InvalidCoupon, "percent_off".into())
        );
        assert_eq!(
            code_of(json!({"code": "X", "percent_off": "0", "duration": "once"})),
            (ErrorCode::InvalidCoupon, "percent_off".into())
        );
        assert_eq!(
            code_of(json!({"code": "X", "amount_off": {"usd": 0}, "duration": "once"})),
            (ErrorCode::InvalidCoupon, "amount_off.usd".into())
        );
        assert_eq!(
            code_of(json!({"code": "X", "amount_off": {"zzz": 5}, "duration": "once"})),
            (ErrorCode::InvalidCurrency, "amount_off.zzz".into())
        );
        assert_eq!(
            code_of(json!({"code": "X", "percent_off": "5", "duration": "repeating"})),
            (ErrorCode::InvalidCoupon, "duration_in_periods".into())
        );
        assert_eq!(
            code_of(
                json!({"code": "X", "percent_off": "5", "duration": "forever", "duration_in_periods": 3})
            ),
            (ErrorCode::InvalidCoupon, "duration_in_periods".into())
        );
        assert_eq!(
            code_of(
                json!({"code": "X", "percent_off": "5", "duration": "once", "max_redemptions": 0})
            ),
            (ErrorCode::InvalidCoupon, "max_redemptions".into())
        );
        assert_eq!(
            code_of(json!({"code": "no spaces", "percent_off": "5", "duration": "once"})),
            (ErrorCode::InvalidCouponCode, "code".into())
        );
        assert_eq!(
            code_of(
                json!({"code": "X", "percent_off": "5", "duration": "once", "redeem_by": "2026-10-01T00:00:00Z"})
            ),
            (ErrorCode::InvalidCoupon, "redeem_by".into())
        );
        assert_eq!(
            code_of(json!({"code": "X", "percent_off": "5", "duration": "once", "applies_to": []})),
            (ErrorCode::InvalidCoupon, "applies_to".into())
        );
    }

    #[test]
    fn a_redemption_copies_the_terms_in_the_subscriptions_currency() {
        let usd = Currency::from_code("usd").unwrap();
        let eur = Currency::from_code("eur").unwrap();
        let plan = PlanId::from_ulid(Ulid::new());
        let coupon = new(serde_json::json!({
            "code": "FIVE", "amount_off": {"usd": 500}, "duration": "repeating",
            "duration_in_periods": 3, "max_redemptions": 1
        }))
        .unwrap();
        let id = DiscountId::from_ulid(Ulid::new());
        let discount = coupon.redeem(id, plan, usd, now()).unwrap();
        assert_eq!(discount.amount_off, Some(500));
        assert_eq!(discount.periods_remaining, Some(3));
        assert_eq!(
            coupon.redeem(id, plan, eur, now()),
            Err(RedeemError::NoAmountIn(eur))
        );
        assert_eq!(
            coupon.redeemed().redeem(id, plan, usd, now()),
            Err(RedeemError::MaxedOut(1))
        );
        let deleted = coupon.delete(now()).unwrap();
        assert_eq!(deleted.delete(now()), None);
        assert_eq!(
            deleted.redeem(id, plan, usd, now()),
            Err(RedeemError::Deleted)
        );
    }

    #[test]
    fn redeem_by_and_applies_to_limit_redemptions() {
        let usd = Currency::from_code("usd").unwrap();
        let plan = PlanId::from_ulid(Ulid::new());
        let other = PlanId::from_ulid(Ulid::new());
        let coupon = new(serde_json::json!({
            "code": "LIMITED", "percent_off": "10", "duration": "forever",
            "redeem_by": "2026-12-01T00:00:00Z", "applies_to": [plan.to_string()]
        }))
        .unwrap();
        let id = DiscountId::from_ulid(Ulid::new());
        assert!(coupon.redeem(id, plan, usd, now()).is_ok());
        assert_eq!(
            coupon.redeem(id, other, usd, now()),
            Err(RedeemError::PlanNotCovered(other))
        );
        let late: Timestamp = "2026-12-01T00:00:01Z".parse().unwrap();
        assert!(matches!(
            coupon.redeem(id, plan, usd, late),
            Err(RedeemError::Expired(_))
        ));
    }

    /// Stripe counts a customer discount's `duration_in_months` from its redemption: the
    /// `end` is that many months later on the account's calendar (a DST change between
    /// does not move it off midnight), and plans are not checked at redemption.
    #[test]
    fn an_account_redemption_ends_in_months_on_the_accounts_calendar() {
        let usd = Currency::from_code("usd").unwrap();
        let berlin = crate::kernel::time_zones::get("Europe/Berlin").unwrap();
        let coupon = new(serde_json::json!({
            "code": "LOYAL", "percent_off": "20", "duration": "repeating",
            "duration_in_periods": 2, "applies_to": [PlanId::from_ulid(Ulid::new()).to_string()]
        }))
        .unwrap();
        let id = DiscountId::from_ulid(Ulid::new());
        let midnight: Timestamp = "2027-01-31T23:00:00Z".parse().unwrap();
        let discount = coupon
            .redeem_on_account(id, usd, &berlin, midnight)
            .unwrap();
        // Feb 1 00:00 in Berlin (winter, +01:00) plus two months: Apr 1 00:00 (+02:00).
        assert_eq!(discount.end, Some("2027-03-31T22:00:00Z".parse().unwrap()));
        assert_eq!(discount.periods_remaining, None);
        let once = new(
            serde_json::json!({"code": "ONCE", "amount_off": {"usd": 100}, "duration": "once"}),
        )
        .unwrap()
        .redeem_on_account(id, usd, &berlin, midnight)
        .unwrap();
        assert_eq!(
            (once.end, once.periods_remaining, once.amount_off),
            (None, Some(1), Some(100))
        );
    }
}
