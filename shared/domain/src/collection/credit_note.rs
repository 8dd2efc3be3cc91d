//! Credit notes: the record of money given back on an invoice. A refund of a payment makes
//! one (for the amount refunded), and so does voiding an invoice that had been partly paid
//! or had credit applied (for [`Invoice::refundable_on_void`]). The invoice itself never
//! changes its totals afterwards; its credit notes say what was given back.
//!
//! The rule that holds across all of them: the credit notes of an invoice never add up to
//! more than was paid or credited on it. Refunds enforce it per payment
//! ([`crate::collection::payment::Payment::refund`]); [`check_within`] states it for the invoice.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kernel::money::MinorUnits;

use crate::billing::invoice::Invoice;
use crate::kernel::currency::Currency;
use crate::kernel::ids::{AccountId, CreditNoteId, InvoiceId, PaymentId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CreditNoteReason {
    /// Money returned to the customer's card.
    Refund,
    /// The invoice was voided after something was paid or credited on it.
    Void,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreditNote {
    #[schema(value_type = String)]
    pub id: CreditNoteId,
    #[schema(value_type = String)]
    pub invoice_id: InvoiceId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// The payment refunded, for a refund.
    #[schema(value_type = Option<String>)]
    pub payment_id: Option<PaymentId>,
    /// Positive.
    #[schema(value_type = i64)]
    pub amount: MinorUnits,
    #[schema(value_type = String)]
    pub currency: Currency,
    pub reason: CreditNoteReason,
    /// The gateway's refund id.
    pub refund: Option<String>,
    /// The amount went into the account's balance (a void with `credit_to_balance`)
    /// instead of being owed back.
    #[serde(default)]
    pub credited_to_balance: bool,
    pub memo: Option<String>,
    /// The invoice's tax this note gives back: its share of the invoice's tax in proportion
    /// to the amount ([`tax_reversed`]); included in `amount`.
    #[serde(default)]
    #[schema(value_type = i64)]
    pub tax_amount: MinorUnits,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// The tax given back with `amount` of `invoice`'s total: `tax_total × amount / total`,
/// rounded once (half away from zero), never more than the invoice's tax.
pub fn tax_reversed(invoice: &Invoice, amount: MinorUnits) -> MinorUnits {
    let (tax, total) = (invoice.tax_total.get(), invoice.total.get());
    if tax == 0 || total <= 0 {
        return MinorUnits::ZERO;
    }
    let exact = rust_decimal::Decimal::from(tax) * rust_decimal::Decimal::from(amount.get())
        / rust_decimal::Decimal::from(total);
    let share = crate::kernel::decimal::round_minor(exact).unwrap_or(tax);
    MinorUnits::new(share.clamp(0, tax))
}

impl CreditNote {
    /// The credit note of voiding `invoice`, when anything was paid or credited on it;
    /// `to_balance` when its amount goes to the account's balance.
    pub fn for_void(
        id: CreditNoteId,
        invoice: &Invoice,
        to_balance: bool,
        now: Timestamp,
    ) -> Option<CreditNote> {
        let amount = invoice.refundable_on_void();
        amount.is_positive().then(|| CreditNote {
            id,
            invoice_id: invoice.id,
            account_id: invoice.account_id,
            payment_id: None,
            amount,
            currency: invoice.currency,
            reason: CreditNoteReason::Void,
            refund: None,
            credited_to_balance: to_balance,
            memo: Some("invoice voided".into()),
            tax_amount: tax_reversed(invoice, amount),
            created_at: now,
        })
    }
}

/// Whether credit notes of `amounts` fit within what was paid and credited on an invoice.
pub fn check_within(
    paid_and_credited: MinorUnits,
    amounts: impl IntoIterator<Item = MinorUnits>,
) -> bool {
    let mut total = MinorUnits::ZERO;
    for amount in amounts {
        if !amount.is_positive() {
            return false;
        }
        total = match total.checked_add(amount) {
            Some(t) => t,
            None => return false,
        };
    }
    total <= paid_and_credited
}

#[cfg(test)]
mod tax_tests {
    use super::*;

    #[test]
    fn half_of_an_inclusive_119_gives_back_half_of_its_19_tax() {
        let mut invoice: Invoice = serde_json::from_value(serde_json::json!({
            "id": "in_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "number": null,
            "account_id": "acct_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "subscription_id": null,
            "test_clock": null, "status": "paid", "billing_reason": "manual", "currency": "eur",
            "period": null, "lines": [], "subtotal": 11900, "discount_total": 0,
            "tax_total": 1900, "total": 11900, "credit_total": 0, "amount_due": 11900,
            "amount_paid": 11900, "collection_method": "charge_automatically",
            "due_date": null, "created_at": "2026-01-01T00:00:00Z", "finalized_at": null,
            "paid_at": null, "voided_at": null, "version": 1
        }))
        .unwrap();
        assert_eq!(
            tax_reversed(&invoice, MinorUnits::new(5950)),
            MinorUnits::new(950)
        );
        assert_eq!(
            tax_reversed(&invoice, MinorUnits::new(11900)),
            MinorUnits::new(1900)
        );
        assert_eq!(
            tax_reversed(&invoice, MinorUnits::new(1)),
            MinorUnits::new(0)
        );
        invoice.tax_total = MinorUnits::ZERO;
        assert_eq!(
            tax_reversed(&invoice, MinorUnits::new(5950)),
            MinorUnits::ZERO
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::payment::{ChargeResult, Payment, PaymentError, PaymentStatus};
    use proptest::prelude::*;

    fn paid(amount: i64) -> Payment {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut payment = Payment {
            id: crate::collection::payment::payment_id(
                InvoiceId::from_ulid(ulid::Ulid::from_parts(1, 1)),
                1,
                now,
            ),
            invoice_id: InvoiceId::from_ulid(ulid::Ulid::from_parts(1, 1)),
            account_id: AccountId::from_ulid(ulid::Ulid::from_parts(1, 2)),
            subscription_id: None,
            test_clock: None,
            livemode: false,
            amount: amount.into(),
            currency: Currency::from_code("USD").unwrap(),
            attempt: 1,
            manual: false,
            status: PaymentStatus::Pending,
            due_at: now,
            first_failed_at: None,
            gateway: None,
            payment_method: None,
            payment_intent: None,
            charge: None,
            failure: None,
            amount_refunded: MinorUnits::ZERO,
            dispute: None,
            sent_to: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        payment = payment
            .record(
                "sandbox",
                None,
                ChargeResult::Succeeded {
                    payment_intent: "pi_1".into(),
                    charge: None,
                },
                now,
            )
            .unwrap();
        payment
    }

    #[test]
    fn a_full_refund_takes_what_is_left_and_then_nothing_more() {
        let now = Timestamp::from_second(1_800_000_100).unwrap();
        let (after_part, part) = paid(1000).refund(Some(300.into()), now).unwrap();
        assert_eq!(part, 300);
        let (after_rest, rest) = after_part.refund(None, now).unwrap();
        assert_eq!(rest, 700);
        assert_eq!(after_rest.refundable(), 0);
        assert_eq!(
            after_rest.refund(Some(1.into()), now).unwrap_err(),
            PaymentError::RefundTooLarge {
                requested: 1.into(),
                refundable: MinorUnits::ZERO
            }
        );
        assert_eq!(
            paid(10).refund(Some(MinorUnits::ZERO), now).unwrap_err(),
            PaymentError::RefundNotPositive
        );
    }

    proptest! {
        /// Whatever refunds are asked for, in whatever order, the accepted ones never add
        /// up to more than was paid, each accepted one moves the refunded total by exactly
        /// its amount, and their credit notes fit within the payment.
        #[test]
        fn refunds_never_exceed_what_was_paid(amount in 1i64..1_000_000, asks in proptest::collection::vec(proptest::option::of(-10i64..600_000), 0..12)) {
            let now = Timestamp::from_second(1_800_000_100).unwrap();
            let mut payment = paid(amount);
            let mut notes = Vec::new();
            for ask in asks {
                match payment.refund(ask.map(MinorUnits::new), now) {
                    Ok((next, refunded)) => {
                        prop_assert_eq!(Some(next.amount_refunded), payment.amount_refunded.checked_add(refunded));
                        notes.push(refunded);
                        payment = next;
                    }
                    Err(_) => {
                        let left = payment.refundable();
                        prop_assert!(left == 0 || ask.is_some_and(|a| a <= 0 || MinorUnits::new(a) > left));
                    }
                }
            }
            prop_assert!(payment.amount_refunded <= MinorUnits::new(amount));
            prop_assert_eq!(notes.iter().map(|n| n.get()).sum::<i64>(), payment.amount_refunded.get());
            prop_assert!(check_within(amount.into(), notes.iter().copied()));
        }

        /// A gateway's running total (`charge.refunded`, delivered late, out of order or
        /// twice) only moves the refunded amount forward: after each one it is the largest
        /// total seen, capped at the payment, never less than before. The totals are built
        /// to rise (so refunds happen in every case) with stale ones replayed in between.
        #[test]
        fn gateway_refund_totals_only_move_forward(
            amount in 1i64..100_000,
            rises in proptest::collection::vec(1i64..40_000, 1..8),
            replays in proptest::collection::vec((any::<proptest::sample::Index>(), 0usize..8), 0..6),
        ) {
            let now = Timestamp::from_second(1_800_000_100).unwrap();
            let mut totals: Vec<i64> = rises.iter().scan(0, |t, r| { *t += r; Some(*t) }).collect();
            for (which, at) in replays {
                let stale = totals[which.index(totals.len())];
                totals.insert(at.min(totals.len()), stale);
            }
            let mut payment = paid(amount);
            let mut seen = 0i64;
            let mut moved = 0;
            for total in totals {
                let before = payment.amount_refunded;
                seen = seen.max(total);
                let expected = MinorUnits::new(seen.min(amount));
                match payment.refunded_total(total.into(), now) {
                    Some(next) => {
                        prop_assert!(next.amount_refunded > before);
                        prop_assert_eq!(next.version, payment.version + 1);
                        moved += 1;
                        payment = next;
                    }
                    None => prop_assert!(MinorUnits::new(total.min(amount)) <= before, "{} ignored at {:?}", total, before),
                }
                prop_assert_eq!(payment.amount_refunded, expected);
                prop_assert!(payment.amount_refunded <= MinorUnits::new(amount));
            }
            prop_assert!(moved >= 1, "a rising total refunds");
        }
    }
}
