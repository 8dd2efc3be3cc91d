//! Discounts on an account: coupons redeemed onto the customer rather than one subscription,
//! serving the period invoices of all its subscriptions (Stripe's customer discount).
//!
//! - **Precedence.** An invoice whose subscription gives it a discount of its own takes only
//!   that one: Stripe applies a subscription's discount instead of the customer's.
//! - **Duration.** `once` is taken by exactly one period invoice, whichever of the account's
//!   subscriptions drafts first: it leaves the account in that invoice's own write, which is
//!   conditional on the version of the account's discounts. `repeating` runs in time, as
//!   Stripe counts a customer discount's `duration_in_months` from its redemption: every
//!   period invoice whose period starts before `end` takes it, however many subscriptions
//!   the account has. `forever` never ends. Only `once` is ever written by billing, so an
//!   account's parallel renewals do not queue on one item.
//! - **Scope.** `applies_to` plans are checked per invoice (the subscription's plan then); an
//!   `amount_off` is in the account's currency and applies to invoices in it only.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::billing::invoice_draft::Discount;
use crate::billing::subscription::Billing;
use crate::coupons::coupon::CouponDuration;
use crate::coupons::discount::AppliedDiscount;
use crate::kernel::currency::Currency;
use crate::kernel::ids::{AccountId, PlanId};

/// The discounts redeemed on one account, stored as one versioned item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "account_id": "acct_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "currency": "usd",
    "discounts": [{"id": "di_01JD3X7M2Q8Z5V6W9Y0A1B2C3E", "coupon_id": "coupon_01JD3X7M2Q8Z5V6W9Y0A1B2C3F",
        "coupon_code": "LOYAL20", "percent_off": "20", "amount_off": null, "duration": "repeating",
        "periods_remaining": null, "applies_to": null, "start": "2027-01-01T00:00:00Z",
        "end": "2027-03-01T00:00:00Z"}],
    "updated_at": "2027-01-01T00:00:00Z", "version": 1
}))]
pub struct AccountDiscounts {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// The account's currency: what an `amount_off` is in.
    #[schema(value_type = String, example = "usd")]
    pub currency: Currency,
    /// In redemption order; a `repeating` one whose `end` has passed no longer applies.
    pub discounts: Vec<AppliedDiscount>,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// 0 until the first redemption is stored.
    pub version: u64,
}

impl AccountDiscounts {
    /// An account with no discounts yet (nothing stored).
    pub fn none(account_id: AccountId, currency: Currency, now: Timestamp) -> AccountDiscounts {
        AccountDiscounts {
            account_id,
            currency,
            discounts: Vec::new(),
            updated_at: now,
            version: 0,
        }
    }

    /// Whether `discount` still applies to some invoice billed from `at` on.
    pub fn running(discount: &AppliedDiscount, at: Timestamp) -> bool {
        discount.end.is_none_or(|end| at < end)
    }

    /// The next version, changed by `change` at `now`.
    pub fn changed(
        &self,
        now: Timestamp,
        change: impl FnOnce(&mut Vec<AppliedDiscount>),
    ) -> AccountDiscounts {
        let mut next = self.clone();
        change(&mut next.discounts);
        next.updated_at = now;
        next.version += 1;
        next
    }

    /// What a period invoice of a subscription on `plan`, billed in `currency` for a period
    /// starting at `at`, takes, in redemption order; and the account's discounts as they
    /// must be written with that invoice when it took a `once` discount (`None`: unchanged).
    pub fn bill_period(
        &self,
        plan: PlanId,
        currency: Currency,
        at: Timestamp,
    ) -> (Vec<Discount>, Option<AccountDiscounts>) {
        let taken: Vec<&AppliedDiscount> = self
            .discounts
            .iter()
            .filter(|d| d.covers(plan) && Self::running(d, at))
            .filter(|d| d.amount_off.is_none() || currency == self.currency)
            .collect();
        let used_up: Vec<_> = taken
            .iter()
            .filter(|d| d.duration == CouponDuration::Once)
            .map(|d| d.id)
            .collect();
        let discounts = taken.iter().map(|d| d.invoice_discount()).collect();
        let next = (!used_up.is_empty())
            .then(|| self.changed(at, |all| all.retain(|d| !used_up.contains(&d.id))));
        (discounts, next)
    }
}

/// The discounts the invoice of `billing` (a subscription on `plan`, in `currency`) takes:
/// the subscription's own when it gives any, else, for a period invoice, the account's;
/// with the account's discounts to write beside the invoice (see
/// [`AccountDiscounts::bill_period`]).
pub fn invoice_discounts(
    billing: &Billing,
    plan: PlanId,
    currency: Currency,
    account: Option<&AccountDiscounts>,
) -> (Vec<Discount>, Option<AccountDiscounts>) {
    match account {
        Some(account) if billing.discounts.is_empty() && billing.reason.is_period() => {
            account.bill_period(plan, currency, billing.period.start)
        }
        _ => (billing.discounts.clone(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::invoice_draft::{build_invoice, InvoiceInput, LineInput, LineSource};
    use crate::billing::periods::Period;
    use crate::billing::subscription::BillingReason;
    use crate::kernel::ids::{CouponId, DiscountId};
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use ulid::Ulid;

    fn usd() -> Currency {
        Currency::from_code("usd").unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn discount(
        duration: CouponDuration,
        percent: Option<u32>,
        amount: Option<i64>,
    ) -> AppliedDiscount {
        AppliedDiscount {
            id: DiscountId::from_ulid(Ulid::new()),
            coupon_id: CouponId::from_ulid(Ulid::new()),
            coupon_code: "ACCT".into(),
            percent_off: percent.map(|p| Decimal::new(i64::from(p), 2)),
            amount_off: amount,
            duration,
            periods_remaining: (duration == CouponDuration::Once).then_some(1),
            applies_to: None,
            start: at("2027-01-01T00:00:00Z"),
            end: None,
        }
    }

    fn account(discounts: Vec<AppliedDiscount>) -> AccountDiscounts {
        AccountDiscounts {
            discounts,
            version: 1,
            ..AccountDiscounts::none(
                crate::kernel::ids::AccountId::from_ulid(Ulid::new()),
                usd(),
                at("2027-01-01T00:00:00Z"),
            )
        }
    }

    fn billing(reason: BillingReason, own: Vec<Discount>, fees: &[i64]) -> Billing {
        Billing {
            reason,
            period: Period::new(at("2027-02-01T00:00:00Z"), at("2027-03-01T00:00:00Z")).unwrap(),
            lines: fees
                .iter()
                .map(|fee| LineInput {
                    id: None,
                    description: "fee".into(),
                    period: None,
                    source: LineSource::Fixed {
                        amount: *fee,
                        quantity: None,
                    },
                    tax_rates: Vec::new(),
                    tax_behavior: None,
                    discountable: true,
                })
                .collect(),
            discounts: own,
        }
    }

    fn ids(discounts: &[Discount]) -> Vec<String> {
        discounts
            .iter()
            .map(|d| match d {
                Discount::PercentOff { id, .. } | Discount::AmountOff { id, .. } => id.clone(),
            })
            .collect()
    }

    proptest! {
        /// An account's discounts (a percentage and an amount off, any size) never take a
        /// line below zero, and `discount_total` is at most the subtotal.
        #[test]
        fn an_account_discount_never_makes_a_line_negative(
            fees in proptest::collection::vec(0i64..1_000_000, 1..5),
            percent in 1u32..=10_000,
            amount in 1i64..2_000_000,
        ) {
            let plan = PlanId::from_ulid(Ulid::new());
            let account = account(vec![
                discount(CouponDuration::Forever, Some(percent), None),
                discount(CouponDuration::Once, None, Some(amount)),
            ]);
            let billing = billing(BillingReason::SubscriptionCycle, Vec::new(), &fees);
            let (discounts, next) = invoice_discounts(&billing, plan, usd(), Some(&account));
            prop_assert_eq!(discounts.len(), 2);
            prop_assert_eq!(next.map(|n| n.discounts.len()), Some(1));
            let draft = build_invoice(&InvoiceInput {
                currency: usd(),
                lines: billing.lines.clone(),
                discounts,
                credits: Vec::new(),
                minimum_commitment: None,
            }).unwrap();
            let subtotal: i64 = fees.iter().sum();
            prop_assert!(draft.lines.iter().all(|l| l.total >= 0 && l.discount_amount <= l.amount));
            prop_assert!(draft.discount_total >= 0 && draft.discount_total <= subtotal);
            prop_assert_eq!(draft.total, subtotal - draft.discount_total);
        }

        /// Stripe: a discount on the subscription is applied instead of the customer's. Any
        /// own discount leaves the account's untouched (a `once` one is not used up); with
        /// none, a period invoice takes the account's and a mid-period change's does not.
        #[test]
        fn a_subscription_discount_overrides_the_account_discount(
            own in 0usize..3,
            durations in proptest::collection::vec(0u8..3, 1..4),
            period_invoice in any::<bool>(),
        ) {
            let plan = PlanId::from_ulid(Ulid::new());
            let account = account(durations.iter().map(|d| match d {
                0 => discount(CouponDuration::Once, Some(1000), None),
                1 => discount(CouponDuration::Repeating, None, Some(500)),
                _ => discount(CouponDuration::Forever, Some(2000), None),
            }).collect());
            let own_discounts: Vec<Discount> = (0..own)
                .map(|i| Discount::AmountOff { id: format!("sub_{i}"), amount: 100, applies_to: None })
                .collect();
            let reason = if period_invoice { BillingReason::SubscriptionCycle } else { BillingReason::SubscriptionUpdate };
            let billing = billing(reason, own_discounts.clone(), &[5000]);
            let (taken, next) = invoice_discounts(&billing, plan, usd(), Some(&account));
            if own > 0 || !period_invoice {
                prop_assert_eq!(taken, own_discounts);
                prop_assert_eq!(next, None);
            } else {
                let expected: Vec<String> = account.discounts.iter().map(|d| d.id.to_string()).collect();
                prop_assert_eq!(ids(&taken), expected);
                let onces = durations.iter().filter(|d| **d == 0).count();
                prop_assert_eq!(next.is_some(), onces > 0);
                if let Some(next) = next {
                    prop_assert_eq!(next.version, account.version + 1);
                    prop_assert_eq!(next.discounts.len(), durations.len() - onces);
                }
            }
        }
    }

    #[test]
    fn repeating_runs_until_its_end_and_plans_and_currency_limit_it() {
        let plan = PlanId::from_ulid(Ulid::new());
        let mut repeating = discount(CouponDuration::Repeating, Some(2000), None);
        repeating.end = Some(at("2027-03-01T00:00:00Z"));
        let mut limited = discount(CouponDuration::Forever, Some(1000), None);
        limited.applies_to = Some(vec![PlanId::from_ulid(Ulid::new())]);
        let amount = discount(CouponDuration::Forever, None, Some(300));
        let account = account(vec![repeating.clone(), limited, amount.clone()]);
        let (taken, next) = account.bill_period(plan, usd(), at("2027-02-01T00:00:00Z"));
        assert_eq!(
            ids(&taken),
            [repeating.id.to_string(), amount.id.to_string()]
        );
        assert_eq!(next, None);
        let (taken, _) = account.bill_period(plan, usd(), at("2027-03-01T00:00:00Z"));
        assert_eq!(ids(&taken), [amount.id.to_string()]);
        let eur = Currency::from_code("eur").unwrap();
        let (taken, _) = account.bill_period(plan, eur, at("2027-02-01T00:00:00Z"));
        assert_eq!(ids(&taken), [repeating.id.to_string()]);
    }
}
