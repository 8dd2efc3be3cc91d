//! Payments: one record per attempt to collect an invoice, and how a decline is judged.
//!
//! A payment is created `pending` with the time it falls due, in the same write that
//! finalizes its invoice (the first attempt) or records the failure before it (a retry). Its
//! id is derived from the invoice and the attempt number, so an attempt can be created only
//! once, and it is the gateway's idempotency key, so it is charged at most once however often
//! the worker runs it. Each attempt ends `succeeded`, `failed`, `requires_action` (the
//! customer must authenticate, 3-D Secure) or `canceled` (its invoice was settled another way
//! first).
//!
//! Declines are **hard** when retrying cannot help and may hurt (the card is reported stolen
//! or lost, suspected fraud, the account is closed or invalid, the card cannot be used for
//! this kind of charge): no retry, the customer must act. Everything else is **soft**
//! (insufficient funds, a processing error, "try again later", a generic decline, an expired
//! card that may be updated): retried on the tenant's schedule. Unknown codes are soft,
//! because the schedule is bounded and a missed retry costs revenue, while the known
//! dangerous codes are listed.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::kernel::money::MinorUnits;

use crate::billing::invoice::Invoice;
use crate::collection::connect::StripeAccount;
use crate::kernel::currency::Currency;
use crate::kernel::ids::{AccountId, InvoiceId, PaymentId, SubscriptionId, TestClockId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Waiting for its time (`due_at`) or for the worker.
    Pending,
    Succeeded,
    Failed,
    /// The customer must authenticate the payment (3-D Secure) before it can complete.
    RequiresAction,
    /// Not attempted: the invoice was paid, voided or written off first.
    Canceled,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RequiresAction => "requires_action",
            Self::Canceled => "canceled",
        }
    }
}

/// Whether a decline is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeclineKind {
    Hard,
    Soft,
}

/// Stripe `decline_code`s (and error `code`s) after which no retry is made.
const HARD_DECLINES: &[&str] = &[
    "stolen_card",
    "lost_card",
    "fraudulent",
    "merchant_blacklist",
    "pickup_card",
    "restricted_card",
    "security_violation",
    "invalid_account",
    "new_account_information_available",
    "card_not_supported",
    "currency_not_supported",
    "transaction_not_allowed",
    "do_not_honor_permanently",
    "revocation_of_all_authorizations",
    "revocation_of_authorization",
    "stop_payment_order",
    "incorrect_number",
    "invalid_number",
];

/// Judges a decline from the gateway's `code` (`card_declined`, `expired_card`, …) and,
/// when it has one, the issuer's `decline_code` (`insufficient_funds`, `stolen_card`, …).
pub fn classify_decline(code: &str, decline_code: Option<&str>) -> DeclineKind {
    let hard = |c: &str| HARD_DECLINES.contains(&c);
    if hard(code) || decline_code.is_some_and(hard) {
        DeclineKind::Hard
    } else {
        DeclineKind::Soft
    }
}

/// Why an attempt failed, in the gateway's words and ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentFailure {
    pub code: String,
    pub decline_code: Option<String>,
    pub message: String,
    pub kind: DeclineKind,
}

impl PaymentFailure {
    pub fn new(code: String, decline_code: Option<String>, message: String) -> Self {
        let kind = classify_decline(&code, decline_code.as_deref());
        Self {
            code,
            decline_code,
            message,
            kind,
        }
    }

    /// The account has no payment method to charge: soft, the customer can add one
    /// before the next retry.
    pub fn no_payment_method() -> Self {
        Self {
            code: "no_payment_method".into(),
            decline_code: None,
            message: "the account has no default payment method".into(),
            kind: DeclineKind::Soft,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "pay_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "object": "payment", "invoice_id": "in_01JD3X7M2Q8Z5V6W9Y0A1B2C3E",
    "account_id": "acct_01JD3X7M2Q8Z5V6W9Y0A1B2C3F", "amount": 1999, "currency": "usd", "attempt": 1,
    "status": "succeeded", "gateway": "sandbox", "payment_method": "pm_sb_4242424242424242_01JD3X7M2Q8Z5V6W9Y0A1B2C3G"
}))]
pub struct Payment {
    #[schema(value_type = String)]
    pub id: PaymentId,
    #[schema(value_type = String)]
    pub invoice_id: InvoiceId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    #[schema(value_type = Option<String>)]
    pub subscription_id: Option<SubscriptionId>,
    #[schema(value_type = Option<String>)]
    pub test_clock: Option<TestClockId>,
    pub livemode: bool,
    #[schema(value_type = i64)]
    pub amount: MinorUnits,
    #[schema(value_type = String)]
    pub currency: Currency,
    /// 1 for the first attempt on the invoice, then 2, 3, …
    pub attempt: u32,
    /// Made by hand (pay now, a manual retry): its failure is recorded but schedules
    /// nothing, since the automatic attempts keep their own schedule.
    #[serde(default)]
    pub manual: bool,
    pub status: PaymentStatus,
    /// When the attempt is (or was) to be made.
    #[schema(value_type = String, format = DateTime)]
    pub due_at: Timestamp,
    /// When the invoice's first attempt failed; retries are counted from it.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub first_failed_at: Option<Timestamp>,
    /// `stripe` or `sandbox`, once attempted.
    pub gateway: Option<String>,
    /// The gateway's payment method charged.
    pub payment_method: Option<String>,
    pub payment_intent: Option<String>,
    pub charge: Option<String>,
    pub failure: Option<PaymentFailure>,
    /// Refunded so far; never more than `amount`.
    #[schema(value_type = i64)]
    pub amount_refunded: MinorUnits,
    /// The gateway's dispute, when the customer disputed the charge.
    pub dispute: Option<String>,
    /// Where the attempt was sent, recorded before its first gateway call.
    #[serde(default)]
    pub sent_to: Option<SentTo>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub version: u64,
}

/// The Stripe account an attempt went to. The attempt's id is its idempotency key and
/// Stripe keeps keys per account, so a retry after a lost answer must go to the same
/// account even if the tenant has changed its connected account since: elsewhere the key
/// would be new and the card charged again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SentTo {
    /// The tenant's connected account; absent for the platform's own account.
    pub stripe_account: Option<StripeAccount>,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("a {current} payment cannot {action}")]
    InvalidTransition {
        current: &'static str,
        action: &'static str,
    },
    #[error("a refund of {requested} exceeds the {refundable} left to refund")]
    RefundTooLarge {
        requested: MinorUnits,
        refundable: MinorUnits,
    },
    #[error("a refund must be a positive amount")]
    RefundNotPositive,
}

/// The id of the `attempt`-th payment of an invoice: the same inputs always give the same
/// id, so an attempt is created once, and its time part sorts attempts by when they fall due.
pub fn payment_id(invoice: InvoiceId, attempt: u32, due_at: Timestamp) -> PaymentId {
    let digest = Sha256::digest(format!("{invoice}:payment:{attempt}").as_bytes());
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    let millis = u64::try_from(due_at.as_millisecond().max(0)).unwrap_or(0);
    PaymentId::from_ulid(Ulid::from_parts(millis, u128::from_be_bytes(random)))
}

/// What the gateway said about a charge, in the terms a payment records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    Succeeded {
        payment_intent: String,
        charge: Option<String>,
    },
    Failed {
        payment_intent: Option<String>,
        failure: PaymentFailure,
    },
    RequiresAction {
        payment_intent: String,
    },
}

impl Payment {
    /// The first attempt on a just-finalized invoice, due at once.
    pub fn first(invoice: &Invoice, livemode: bool, now: Timestamp) -> Payment {
        Self::attempt_on(invoice, livemode, 1, None, now, now)
    }

    fn attempt_on(
        invoice: &Invoice,
        livemode: bool,
        attempt: u32,
        first_failed_at: Option<Timestamp>,
        due_at: Timestamp,
        now: Timestamp,
    ) -> Payment {
        Payment {
            id: payment_id(invoice.id, attempt, due_at),
            invoice_id: invoice.id,
            account_id: invoice.account_id,
            subscription_id: invoice.subscription_id,
            test_clock: invoice.test_clock,
            livemode,
            amount: invoice.amount_remaining(),
            currency: invoice.currency,
            attempt,
            manual: false,
            status: PaymentStatus::Pending,
            due_at,
            first_failed_at,
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
        }
    }

    /// The attempt after this one, on `invoice` (as it stands after this attempt),
    /// due at `due_at`.
    pub fn next_attempt(&self, invoice: &Invoice, due_at: Timestamp, now: Timestamp) -> Payment {
        Self::attempt_on(
            invoice,
            self.livemode,
            self.attempt + 1,
            self.first_failed_at.or(Some(now)),
            due_at,
            now,
        )
    }

    /// A manual attempt (pay now, a manual retry), due now. Its id is fresh: a request is
    /// made once by its `Idempotency-Key`, not by its attempt number.
    pub fn manual(
        id: PaymentId,
        invoice: &Invoice,
        livemode: bool,
        attempt: u32,
        now: Timestamp,
    ) -> Payment {
        Payment {
            id,
            manual: true,
            ..Self::attempt_on(invoice, livemode, attempt, None, now, now)
        }
    }

    /// Whether the worker should charge it at `now`.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.status == PaymentStatus::Pending && self.due_at <= now
    }

    /// The pending attempt bound to `stripe_account` before it is first sent; `None` when
    /// it is bound already (then [`Payment::sent_to`] says where every call goes).
    pub fn send_to(
        &self,
        stripe_account: Option<StripeAccount>,
        now: Timestamp,
    ) -> Option<Payment> {
        if self.sent_to.is_some() || self.status != PaymentStatus::Pending {
            return None;
        }
        let mut next = self.clone();
        next.sent_to = Some(SentTo {
            stripe_account,
            at: now,
        });
        next.updated_at = now;
        next.version += 1;
        Some(next)
    }

    fn refuse(&self, action: &'static str) -> PaymentError {
        PaymentError::InvalidTransition {
            current: self.status.as_str(),
            action,
        }
    }

    /// Whether `result` may still be recorded: on a pending attempt, or as the outcome of
    /// one that waited for the customer to authenticate.
    pub fn awaits(&self, result: &ChargeResult) -> bool {
        match self.status {
            PaymentStatus::Pending => true,
            PaymentStatus::RequiresAction => !matches!(result, ChargeResult::RequiresAction { .. }),
            _ => false,
        }
    }

    /// Records the gateway's answer to a charge of `payment_method`.
    pub fn record(
        &self,
        gateway: &str,
        payment_method: Option<String>,
        result: ChargeResult,
        now: Timestamp,
    ) -> Result<Payment, PaymentError> {
        if !self.awaits(&result) {
            return Err(self.refuse("record a charge"));
        }
        let mut next = self.clone();
        next.gateway = Some(gateway.to_owned());
        next.payment_method = payment_method;
        match result {
            ChargeResult::Succeeded {
                payment_intent,
                charge,
            } => {
                next.status = PaymentStatus::Succeeded;
                next.payment_intent = Some(payment_intent);
                next.charge = charge;
            }
            ChargeResult::Failed {
                payment_intent,
                failure,
            } => {
                next.status = PaymentStatus::Failed;
                next.payment_intent = payment_intent;
                next.failure = Some(failure);
                next.first_failed_at = self.first_failed_at.or(Some(now));
            }
            ChargeResult::RequiresAction { payment_intent } => {
                next.status = PaymentStatus::RequiresAction;
                next.payment_intent = Some(payment_intent);
            }
        }
        next.updated_at = now;
        next.version += 1;
        Ok(next)
    }

    /// A later word from the gateway (an inbound event) about an attempt that was waiting
    /// or had failed: it succeeded after all (the customer authenticated, a delayed
    /// capture). A succeeded payment stays as it is.
    pub fn settle_late(
        &self,
        payment_intent: String,
        charge: Option<String>,
        now: Timestamp,
    ) -> Option<Payment> {
        if self.status == PaymentStatus::Succeeded {
            return None;
        }
        let mut next = self.clone();
        next.status = PaymentStatus::Succeeded;
        next.payment_intent = Some(payment_intent);
        next.charge = charge.or(next.charge);
        next.failure = None;
        next.updated_at = now;
        next.version += 1;
        Some(next)
    }

    /// An attempt that is no longer needed: its invoice was settled another way.
    pub fn cancel(&self, now: Timestamp) -> Result<Payment, PaymentError> {
        if !matches!(
            self.status,
            PaymentStatus::Pending | PaymentStatus::RequiresAction
        ) {
            return Err(self.refuse("be canceled"));
        }
        let mut next = self.clone();
        next.status = PaymentStatus::Canceled;
        next.updated_at = now;
        next.version += 1;
        Ok(next)
    }

    /// What may still be refunded.
    pub fn refundable(&self) -> MinorUnits {
        if self.status == PaymentStatus::Succeeded {
            self.amount.saturating_sub(self.amount_refunded)
        } else {
            MinorUnits::ZERO
        }
    }

    /// Refunds `amount` (all that is left when `None`): never more than was paid.
    pub fn refund(
        &self,
        amount: Option<MinorUnits>,
        now: Timestamp,
    ) -> Result<(Payment, MinorUnits), PaymentError> {
        if self.status != PaymentStatus::Succeeded {
            return Err(self.refuse("be refunded"));
        }
        let refundable = self.refundable();
        let amount = amount.unwrap_or(refundable);
        if !amount.is_positive() {
            return Err(PaymentError::RefundNotPositive);
        }
        if amount > refundable {
            return Err(PaymentError::RefundTooLarge {
                requested: amount,
                refundable,
            });
        }
        let mut next = self.clone();
        next.amount_refunded =
            self.amount_refunded
                .checked_add(amount)
                .ok_or(PaymentError::RefundTooLarge {
                    requested: amount,
                    refundable,
                })?;
        next.updated_at = now;
        next.version += 1;
        Ok((next, amount))
    }

    /// The gateway's total refunded on the charge (an inbound `charge.refunded`): moves
    /// forward only, and never beyond the amount.
    pub fn refunded_total(&self, total: MinorUnits, now: Timestamp) -> Option<Payment> {
        let total = total.min(self.amount);
        if total <= self.amount_refunded || self.status != PaymentStatus::Succeeded {
            return None;
        }
        let mut next = self.clone();
        next.amount_refunded = total;
        next.updated_at = now;
        next.version += 1;
        Some(next)
    }

    pub fn disputed(&self, dispute: String, now: Timestamp) -> Option<Payment> {
        if self.dispute.as_deref() == Some(dispute.as_str()) {
            return None;
        }
        let mut next = self.clone();
        next.dispute = Some(dispute);
        next.updated_at = now;
        next.version += 1;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_declines_are_hard_and_the_rest_soft() {
        for (code, decline) in [
            ("card_declined", Some("stolen_card")),
            ("card_declined", Some("lost_card")),
            ("card_declined", Some("fraudulent")),
            ("card_declined", Some("pickup_card")),
            ("card_declined", Some("invalid_account")),
            ("card_declined", Some("card_not_supported")),
            ("incorrect_number", None),
        ] {
            assert_eq!(
                classify_decline(code, decline),
                DeclineKind::Hard,
                "{decline:?}"
            );
        }
        for (code, decline) in [
            ("card_declined", Some("insufficient_funds")),
            ("card_declined", Some("generic_decline")),
            ("card_declined", Some("try_again_later")),
            ("processing_error", None),
            ("expired_card", None),
            ("card_declined", Some("something_new")),
            ("no_payment_method", None),
        ] {
            assert_eq!(
                classify_decline(code, decline),
                DeclineKind::Soft,
                "{decline:?}"
            );
        }
    }

    #[test]
    fn payment_ids_are_deterministic_per_invoice_attempt() {
        let invoice = InvoiceId::from_ulid(Ulid::from_parts(1, 9));
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(payment_id(invoice, 1, at), payment_id(invoice, 1, at));
        assert_ne!(payment_id(invoice, 1, at), payment_id(invoice, 2, at));
        let later = at + jiff::SignedDuration::from_hours(72);
        assert!(payment_id(invoice, 1, at) < payment_id(invoice, 2, later));
    }
}
