//! Discounts on subscriptions: a coupon's terms copied at redemption, and the count-down
//! of a `once` or `repeating` discount over the subscription's period invoices.
//!
//! The count-down is part of the subscription's own state, so it moves in the same
//! version-checked write as the invoice it was applied to: a step run twice, or by two
//! workers, discounts and counts once (Lago decrements `frequency_duration_remaining` per
//! invoice; Stripe counts `duration_in_months` in time. Per period invoice is both, for a
//! monthly plan, and stays exact for any interval).

use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::billing::invoice_draft::Discount;
use crate::coupons::coupon::CouponDuration;
use crate::kernel::decimal::serde_decimal;
use crate::kernel::ids::{CouponId, DiscountId, PlanId};

/// Most discounts one subscription carries at once.
pub const MAX_DISCOUNTS: usize = 20;

/// One redemption of a coupon on a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppliedDiscount {
    #[schema(value_type = String)]
    pub id: DiscountId,
    #[schema(value_type = String)]
    pub coupon_id: CouponId,
    pub coupon_code: String,
    #[serde(with = "serde_decimal::option", default)]
    #[schema(value_type = Option<String>)]
    pub percent_off: Option<Decimal>,
    /// Minor units of the subscription's currency off each period invoice.
    pub amount_off: Option<i64>,
    pub duration: CouponDuration,
    /// Period invoices still to be discounted; `null` for `forever`.
    pub periods_remaining: Option<u32>,
    #[schema(value_type = Option<Vec<String>>)]
    pub applies_to: Option<Vec<PlanId>>,
    /// When it was redeemed.
    #[schema(value_type = String, format = DateTime)]
    pub start: Timestamp,
    /// On an account, when a `repeating` discount stops applying: `duration_in_periods`
    /// months after `start` (see [`crate::coupons::account`]). Absent on subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<Timestamp>,
}

impl AppliedDiscount {
    /// What the invoice builder takes: every discountable line of the invoice.
    pub fn invoice_discount(&self) -> Discount {
        let id = self.id.to_string();
        match (self.percent_off, self.amount_off) {
            (Some(percent), _) => Discount::PercentOff {
                id,
                percent,
                applies_to: None,
            },
            (None, amount) => Discount::AmountOff {
                id,
                amount: amount.unwrap_or(0),
                applies_to: None,
            },
        }
    }

    pub(crate) fn covers(&self, plan: PlanId) -> bool {
        self.applies_to
            .as_ref()
            .is_none_or(|plans| plans.contains(&plan))
    }
}

/// The discounts a period invoice of a subscription on `plan` gets, in redemption order;
/// each counts down one period, and those with none left leave `discounts`. A discount
/// limited to other plans (the subscription changed plan) neither applies nor counts.
pub fn bill_period(discounts: &mut Vec<AppliedDiscount>, plan: PlanId) -> Vec<Discount> {
    let mut applied = Vec::new();
    discounts.retain_mut(|d| {
        if !d.covers(plan) {
            return true;
        }
        applied.push(d.invoice_discount());
        match &mut d.periods_remaining {
            None => true,
            Some(left) => {
                *left = left.saturating_sub(1);
                *left > 0
            }
        }
    });
    applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ulid::Ulid;

    fn discount(duration: CouponDuration, periods: Option<u32>, percent: bool) -> AppliedDiscount {
        AppliedDiscount {
            id: DiscountId::from_ulid(Ulid::new()),
            coupon_id: CouponId::from_ulid(Ulid::new()),
            coupon_code: "C".into(),
            percent_off: percent.then(|| Decimal::from(20)),
            amount_off: (!percent).then_some(500),
            duration,
            periods_remaining: periods,
            applies_to: None,
            start: Timestamp::UNIX_EPOCH,
            end: None,
        }
    }

    proptest! {
        /// A repeating discount applies to exactly `n` period invoices, then is gone; a
        /// forever one never leaves.
        #[test]
        fn repeating_counts_down_to_zero_exactly(n in 1u32..=120, extra in 0u32..10) {
            let plan = PlanId::from_ulid(Ulid::new());
            let mut discounts = vec![
                discount(CouponDuration::Repeating, Some(n), true),
                discount(CouponDuration::Forever, None, false),
            ];
            let repeating = discounts[0].id.to_string();
            let mut applied_times = 0;
            for _ in 0..(n + extra) {
                let applied = bill_period(&mut discounts, plan);
                applied_times += applied.iter().filter(|d| match d {
                    Discount::PercentOff { id, .. } | Discount::AmountOff { id, .. } => *id == repeating,
                }).count();
                prop_assert!(!applied.is_empty());
            }
            prop_assert_eq!(applied_times, n as usize);
            prop_assert_eq!(discounts.len(), 1);
            prop_assert_eq!(discounts[0].duration, CouponDuration::Forever);
        }
    }

    proptest! {
        /// On an invoice of fee lines, the discounts of a period never exceed what they
        /// apply to: no line goes below zero, `discount_total` is at most the subtotal,
        /// and `total = Σ rounded lines − discounts` (no tax here).
        #[test]
        fn discounts_never_exceed_the_lines_they_apply_to(
            fees in proptest::collection::vec(0i64..1_000_000, 1..5),
            percent in 1u32..=10_000,
            amount in 1i64..2_000_000,
        ) {
            use crate::billing::invoice_draft::{build_invoice, InvoiceInput, LineInput, LineSource};
            let plan = PlanId::from_ulid(Ulid::new());
            let mut by_percent = discount(CouponDuration::Forever, None, true);
            by_percent.percent_off = Some(Decimal::new(i64::from(percent), 2));
            let mut by_amount = discount(CouponDuration::Forever, None, false);
            by_amount.amount_off = Some(amount);
            let mut discounts = vec![by_percent, by_amount];
            let input = InvoiceInput {
                currency: crate::kernel::currency::Currency::from_code("usd").unwrap(),
                lines: fees
                    .iter()
                    .map(|fee| LineInput {
                        id: None,
                        description: "fee".into(),
                        period: None,
                        source: LineSource::Fixed { amount: *fee, quantity: None },
                        tax_rates: Vec::new(),
                        tax_behavior: None,
                        discountable: true,
                    })
                    .collect(),
                discounts: bill_period(&mut discounts, plan),
                credits: Vec::new(),
                minimum_commitment: None,
            };
            let draft = build_invoice(&input).unwrap();
            let subtotal: i64 = fees.iter().sum();
            prop_assert_eq!(draft.subtotal, subtotal);
            prop_assert!(draft.discount_total >= 0 && draft.discount_total <= subtotal);
            prop_assert!(draft.lines.iter().all(|l| l.total >= 0 && l.discount_amount <= l.amount));
            prop_assert_eq!(draft.total, subtotal - draft.discount_total);
            prop_assert_eq!(draft.discount_total, draft.lines.iter().map(|l| l.discount_amount).sum::<i64>());
            prop_assert!(draft.amount_due >= 0);
        }
    }

    #[test]
    fn once_applies_to_one_invoice() {
        let plan = PlanId::from_ulid(Ulid::new());
        let mut discounts = vec![discount(CouponDuration::Once, Some(1), false)];
        assert_eq!(bill_period(&mut discounts, plan).len(), 1);
        assert!(discounts.is_empty());
        assert!(bill_period(&mut discounts, plan).is_empty());
    }

    #[test]
    fn a_discount_for_other_plans_waits_without_counting() {
        let plan = PlanId::from_ulid(Ulid::new());
        let mut limited = discount(CouponDuration::Repeating, Some(2), true);
        limited.applies_to = Some(vec![PlanId::from_ulid(Ulid::new())]);
        let mut discounts = vec![limited];
        assert!(bill_period(&mut discounts, plan).is_empty());
        assert_eq!(discounts[0].periods_remaining, Some(2));
    }
}
