//! Invoices as records: statuses, gapless numbers, finalization and voiding. The arithmetic
//! lives in [`crate::billing::invoice_draft`]; this module decides what may happen to an invoice once built.
//!
//! `draft → open → paid | void | uncollectible`. Finalizing assigns the next number of the
//! tenant's sequence in the same transaction that opens the invoice, so a failed
//! finalization consumes no number. After finalization only the payment status changes.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::kernel::money::MinorUnits;

use crate::billing::invoice_draft::{InvoiceDraft, InvoiceLine, TaxSummary};
use crate::billing::periods::Period;
use crate::billing::subscription::{BillingReason, CollectionMethod};
use crate::kernel::currency::Currency;
use crate::kernel::error::ValidationError;
use crate::kernel::ids::{AccountId, InvoiceId, SubscriptionId, TestClockId};
use crate::tax::resolve::{InvoiceTax, TaxReason};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Void,
    Uncollectible,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Open => "open",
            Self::Paid => "paid",
            Self::Void => "void",
            Self::Uncollectible => "uncollectible",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Invoice {
    #[schema(value_type = String)]
    pub id: InvoiceId,
    /// `INV-000123`, assigned at finalization; gapless per tenant.
    pub number: Option<String>,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    #[schema(value_type = Option<String>)]
    pub subscription_id: Option<SubscriptionId>,
    #[schema(value_type = Option<String>)]
    pub test_clock: Option<TestClockId>,
    pub status: InvoiceStatus,
    pub billing_reason: BillingReason,
    #[schema(value_type = String)]
    pub currency: Currency,
    #[schema(value_type = Option<Object>)]
    pub period: Option<Period>,
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<InvoiceLine>,
    #[schema(value_type = i64)]
    pub subtotal: MinorUnits,
    #[schema(value_type = i64)]
    pub discount_total: MinorUnits,
    #[schema(value_type = i64)]
    pub tax_total: MinorUnits,
    #[schema(value_type = i64)]
    pub total: MinorUnits,
    #[schema(value_type = i64)]
    pub credit_total: MinorUnits,
    /// The balance's grants this invoice spent (its `credit_total` beyond what its own
    /// lines credited), soonest-expiring first.
    #[serde(default)]
    pub credits_applied: Vec<crate::credits::balance::GrantAmount>,
    /// A negative total moved into the account's balance (an `invoice_excess` grant).
    #[serde(default)]
    #[schema(value_type = i64)]
    pub credited_to_balance: MinorUnits,
    /// Prepaid wallet credit this invoice consumed (after discounts, tax and the
    /// account's balance), in minor units; not part of `credit_total`.
    #[serde(default)]
    #[schema(value_type = i64)]
    pub wallet_total: MinorUnits,
    /// The wallets it consumed, and how much of each.
    #[serde(default)]
    pub wallets_applied: Vec<crate::wallets::wallet::WalletAmount>,
    #[schema(value_type = i64)]
    pub amount_due: MinorUnits,
    #[schema(value_type = i64)]
    pub amount_paid: MinorUnits,
    pub collection_method: CollectionMethod,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_date: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finalized_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paid_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub voided_at: Option<Timestamp>,
    /// The status of the latest payment attempt (`requires_action` asks the customer to
    /// authenticate).
    #[serde(default)]
    pub payment_status: Option<crate::collection::payment::PaymentStatus>,
    /// Payment attempts made so far.
    #[serde(default)]
    pub attempt_count: u32,
    /// When the next automatic attempt is due, while one is scheduled.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_payment_attempt: Option<Timestamp>,
    /// Paid outside the platform (a bank transfer, a cheque): the reference given.
    #[serde(default)]
    pub paid_out_of_band: Option<String>,
    /// A `send_invoice` invoice still unpaid after its due date (dunning was told).
    #[serde(default)]
    pub overdue: bool,
    /// Who it was issued to, as the account read when it was finalized: it outlives
    /// changes to the account and the erasure of a deleted one.
    #[serde(default)]
    pub billing_details: Option<crate::customers::erasure::BillingDetails>,
    /// The tax per rate and jurisdiction: sums of the lines' taxes.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub tax_summary: Vec<TaxSummary>,
    /// Why the invoice is taxed as it is (see the README's tax section).
    #[serde(default)]
    pub tax_reason: Option<TaxReason>,
    /// The legal note printed on the invoice (reverse charge, exemption), if any.
    #[serde(default)]
    pub tax_note: Option<String>,
    /// The seller's tax ids, from the tenant's tax settings.
    #[serde(default)]
    pub seller_tax_ids: Vec<String>,
    /// The customer's VAT id, when it has one.
    #[serde(default)]
    pub buyer_tax_ids: Vec<String>,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceTransitionError {
    #[error("a {current} invoice cannot {action}")]
    InvalidTransition {
        current: &'static str,
        action: &'static str,
    },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// The invoice of a subscription's `sequence`-th billing: the same inputs always give the
/// same id, so writing it with "must not exist" makes billing a period exactly once.
pub fn subscription_invoice_id(
    subscription: SubscriptionId,
    sequence: u32,
    period_start: Timestamp,
) -> InvoiceId {
    let digest = Sha256::digest(format!("{subscription}:{sequence}").as_bytes());
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    let bits = u128::from_be_bytes(random);
    let millis = u64::try_from(period_start.as_millisecond().max(0)).unwrap_or(0);
    InvoiceId::from_ulid(Ulid::from_parts(millis, bits))
}

/// `INV-000123` style numbers.
pub fn format_number(prefix: &str, n: u64) -> String {
    format!("{prefix}-{n:06}")
}

pub struct DraftFacts {
    pub id: InvoiceId,
    pub account_id: AccountId,
    pub subscription_id: Option<SubscriptionId>,
    pub test_clock: Option<TestClockId>,
    pub billing_reason: BillingReason,
    pub period: Option<Period>,
    pub collection_method: CollectionMethod,
}

impl Invoice {
    pub fn draft(facts: DraftFacts, built: InvoiceDraft, now: Timestamp) -> Invoice {
        Invoice {
            id: facts.id,
            number: None,
            account_id: facts.account_id,
            subscription_id: facts.subscription_id,
            test_clock: facts.test_clock,
            status: InvoiceStatus::Draft,
            billing_reason: facts.billing_reason,
            currency: built.currency,
            period: facts.period,
            lines: built.lines,
            subtotal: built.subtotal.into(),
            discount_total: built.discount_total.into(),
            tax_total: built.tax_total.into(),
            total: built.total.into(),
            credit_total: built.credit_total.into(),
            credits_applied: Vec::new(),
            credited_to_balance: MinorUnits::ZERO,
            wallet_total: MinorUnits::ZERO,
            wallets_applied: Vec::new(),
            amount_due: built.amount_due.into(),
            amount_paid: MinorUnits::ZERO,
            collection_method: facts.collection_method,
            due_date: None,
            created_at: now,
            finalized_at: None,
            paid_at: None,
            voided_at: None,
            payment_status: None,
            attempt_count: 0,
            next_payment_attempt: None,
            paid_out_of_band: None,
            overdue: false,
            billing_details: None,
            tax_summary: built.taxes,
            tax_reason: None,
            tax_note: None,
            seller_tax_ids: Vec::new(),
            buyer_tax_ids: Vec::new(),
            version: 1,
        }
    }

    /// Records how the invoice was taxed (its lines already carry `tax`'s rates): the
    /// reason on every line and the invoice, the note, both parties' tax ids.
    pub fn with_tax(mut self, tax: &InvoiceTax) -> Invoice {
        tax.mark(&mut self.lines);
        self.tax_reason = Some(tax.reason);
        self.tax_note = tax.reason.note().map(str::to_owned);
        self.seller_tax_ids.clone_from(&tax.seller_tax_ids);
        self.buyer_tax_ids.clone_from(&tax.buyer_tax_ids);
        self
    }

    fn refuse(&self, action: &'static str) -> InvoiceTransitionError {
        InvoiceTransitionError::InvalidTransition {
            current: self.status.as_str(),
            action,
        }
    }

    /// Opens a draft under `number`; an invoice with nothing to pay is paid at once.
    pub fn finalize(
        &self,
        number: String,
        days_until_due: Option<u32>,
        now: Timestamp,
    ) -> Result<Invoice, InvoiceTransitionError> {
        if self.status != InvoiceStatus::Draft {
            return Err(self.refuse("be finalized"));
        }
        let mut next = self.clone();
        next.number = Some(number);
        next.finalized_at = Some(now);
        next.due_date = Some(days_until_due.map_or(now, |d| {
            crate::kernel::time::later(now, SignedDuration::from_hours(24 * i64::from(d)))
        }));
        next.version += 1;
        if !next.amount_due.is_positive() {
            next.status = InvoiceStatus::Paid;
            next.paid_at = Some(now);
        } else {
            next.status = InvoiceStatus::Open;
        }
        Ok(next)
    }

    /// Voids an open invoice, or a paid one when what was paid goes to the account's
    /// balance (`to_balance`; a paid invoice's money otherwise comes back by refunding its
    /// payment). What was paid comes back as a credit note.
    pub fn void(
        &self,
        now: Timestamp,
        to_balance: bool,
    ) -> Result<Invoice, InvoiceTransitionError> {
        let voidable = self.status == InvoiceStatus::Open
            || (to_balance && self.status == InvoiceStatus::Paid);
        if !voidable {
            return Err(self.refuse("be voided"));
        }
        let mut next = self.clone();
        next.status = InvoiceStatus::Void;
        next.voided_at = Some(now);
        next.version += 1;
        Ok(next)
    }

    /// What a void gives back as a credit note: payments, and credits applied other than
    /// the balance's (those go back to the balance's grants).
    pub fn refundable_on_void(&self) -> MinorUnits {
        let from_balance = self
            .credits_applied
            .iter()
            .fold(MinorUnits::ZERO, |sum, c| sum.saturating_add(c.amount));
        self.amount_paid
            .saturating_add(self.credit_total.saturating_sub(from_balance))
    }

    /// What is still to be paid.
    pub fn amount_remaining(&self) -> MinorUnits {
        self.amount_due
            .saturating_sub(self.amount_paid)
            .max(MinorUnits::ZERO)
    }

    /// Whether a payment can still settle it: open, or written off but payable later.
    pub fn is_payable(&self) -> bool {
        matches!(
            self.status,
            InvoiceStatus::Open | InvoiceStatus::Uncollectible
        ) && self.amount_remaining().is_positive()
    }

    /// Settles what remains: by a payment, or out of band with a `reference`. A paid
    /// invoice never goes back, so an invoice that is no longer payable refuses.
    pub fn pay(
        &self,
        out_of_band: Option<String>,
        now: Timestamp,
    ) -> Result<Invoice, InvoiceTransitionError> {
        if !self.is_payable() {
            return Err(self.refuse("be paid"));
        }
        let mut next = self.clone();
        next.amount_paid = self.amount_due;
        next.status = InvoiceStatus::Paid;
        next.paid_at = Some(now);
        next.next_payment_attempt = None;
        if out_of_band.is_none() {
            next.payment_status = Some(crate::collection::payment::PaymentStatus::Succeeded);
        }
        next.paid_out_of_band = out_of_band;
        next.version += 1;
        Ok(next)
    }

    /// Records an attempt that did not settle the invoice and when the next one is due.
    pub fn attempted(
        &self,
        status: crate::collection::payment::PaymentStatus,
        next_attempt: Option<Timestamp>,
    ) -> Result<Invoice, InvoiceTransitionError> {
        if !self.is_payable() {
            return Err(self.refuse("record a payment attempt"));
        }
        let mut next = self.clone();
        next.payment_status = Some(status);
        next.attempt_count += 1;
        next.next_payment_attempt = next_attempt;
        next.version += 1;
        Ok(next)
    }

    /// When an invoice the customer pays by themselves (`send_invoice`) becomes overdue,
    /// while it is open, unpaid and not yet marked: it waits in the due index until then.
    /// (Invoices charged automatically become overdue through their failed payments.)
    pub fn overdue_at(&self) -> Option<Timestamp> {
        (self.status == InvoiceStatus::Open
            && self.collection_method == CollectionMethod::SendInvoice
            && !self.overdue
            && self.amount_remaining().is_positive())
        .then_some(self.due_date)
        .flatten()
    }

    /// Marks it overdue when its due date has passed by `now`; `None` when there is
    /// nothing to mark.
    pub fn mark_overdue(&self, now: Timestamp) -> Option<Invoice> {
        self.overdue_at().filter(|at| *at <= now).map(|_| {
            let mut next = self.clone();
            next.overdue = true;
            next.version += 1;
            next
        })
    }

    /// Writes an open invoice off after its last payment attempt failed.
    pub fn mark_uncollectible(&self) -> Result<Invoice, InvoiceTransitionError> {
        if self.status != InvoiceStatus::Open {
            return Err(self.refuse("be marked uncollectible"));
        }
        let mut next = self.clone();
        next.status = InvoiceStatus::Uncollectible;
        next.next_payment_attempt = None;
        next.version += 1;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoice_ids_are_deterministic_per_subscription_billing() {
        let sub = SubscriptionId::from_ulid(Ulid::from_parts(1, 7));
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(
            subscription_invoice_id(sub, 3, at),
            subscription_invoice_id(sub, 3, at)
        );
        assert_ne!(
            subscription_invoice_id(sub, 3, at),
            subscription_invoice_id(sub, 4, at)
        );
        let other = SubscriptionId::from_ulid(Ulid::from_parts(1, 8));
        assert_ne!(
            subscription_invoice_id(sub, 3, at),
            subscription_invoice_id(other, 3, at)
        );
        assert!(
            subscription_invoice_id(sub, 1, at)
                < subscription_invoice_id(sub, 1, at + SignedDuration::from_secs(1))
        );
    }

    fn open_invoice(amount_due: i64, credit_total: i64) -> Invoice {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let draft = InvoiceDraft {
            currency: crate::kernel::currency::Currency::from_code("usd").unwrap(),
            lines: Vec::new(),
            subtotal: amount_due + credit_total,
            discount_total: 0,
            total_excluding_tax: amount_due + credit_total,
            tax_total: 0,
            total: amount_due + credit_total,
            discounts: Vec::new(),
            taxes: Vec::new(),
            credits_applied: Vec::new(),
            credit_total,
            wallet_total: 0,
            wallets_applied: Vec::new(),
            amount_due,
            ending_credit_balance: 0,
        };
        Invoice::draft(
            DraftFacts {
                id: InvoiceId::from_ulid(Ulid::from_parts(1, 1)),
                account_id: AccountId::from_ulid(Ulid::from_parts(1, 2)),
                subscription_id: None,
                test_clock: None,
                billing_reason: BillingReason::Manual,
                period: None,
                collection_method: CollectionMethod::ChargeAutomatically,
            },
            draft,
            now,
        )
        .finalize("INV-000001".into(), None, now)
        .unwrap()
    }

    #[test]
    fn a_paid_invoice_never_goes_back() {
        use crate::collection::payment::PaymentStatus;
        let now = Timestamp::from_second(1_800_000_100).unwrap();
        let open = open_invoice(1000, 0);
        let failed = open
            .attempted(
                PaymentStatus::Failed,
                Some(now + SignedDuration::from_hours(72)),
            )
            .unwrap();
        assert_eq!(failed.attempt_count, 1);
        assert_eq!(failed.status, InvoiceStatus::Open);
        let written_off = failed.mark_uncollectible().unwrap();
        assert_eq!(written_off.next_payment_attempt, None);
        // Written off, it can still be paid.
        let paid = written_off.pay(None, now).unwrap();
        assert_eq!(
            (paid.status, paid.amount_paid),
            (InvoiceStatus::Paid, MinorUnits::new(1000))
        );
        assert!(paid.pay(None, now).is_err());
        assert!(paid.attempted(PaymentStatus::Failed, None).is_err());
        assert!(paid.mark_uncollectible().is_err());
        assert!(paid.void(now, false).is_err());
        assert_eq!(paid.void(now, true).unwrap().status, InvoiceStatus::Void);
        let out_of_band = open.pay(Some("wire 42".into()), now).unwrap();
        assert_eq!(out_of_band.paid_out_of_band.as_deref(), Some("wire 42"));
        assert_eq!(out_of_band.payment_status, None);
    }

    #[test]
    fn a_sent_invoice_becomes_overdue_after_its_due_date_once() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut sent = open_invoice(1000, 0);
        assert_eq!(sent.overdue_at(), None, "charged automatically");
        sent.collection_method = CollectionMethod::SendInvoice;
        sent.due_date = Some(now + SignedDuration::from_hours(7 * 24));
        assert_eq!(sent.overdue_at(), sent.due_date);
        assert!(sent.mark_overdue(now).is_none(), "not yet due");
        let overdue = sent
            .mark_overdue(now + SignedDuration::from_hours(8 * 24))
            .unwrap();
        assert!(overdue.overdue);
        assert_eq!(overdue.overdue_at(), None);
        assert!(overdue
            .mark_overdue(now + SignedDuration::from_hours(9 * 24))
            .is_none());
        assert_eq!(sent.pay(None, now).unwrap().overdue_at(), None);
    }

    #[test]
    fn a_void_credits_what_was_paid_and_credited() {
        let now = Timestamp::from_second(1_800_000_100).unwrap();
        let credited = open_invoice(700, 300);
        assert_eq!(credited.refundable_on_void(), 300);
        let note = crate::collection::credit_note::CreditNote::for_void(
            crate::kernel::ids::CreditNoteId::from_ulid(Ulid::from_parts(1, 3)),
            &credited,
            true,
            now,
        )
        .unwrap();
        assert_eq!((note.amount.get(), note.credited_to_balance), (300, true));
        assert!(crate::collection::credit_note::CreditNote::for_void(
            crate::kernel::ids::CreditNoteId::from_ulid(Ulid::from_parts(1, 4)),
            &open_invoice(700, 0),
            false,
            now
        )
        .is_none());
    }

    #[test]
    fn numbers_are_zero_padded() {
        assert_eq!(format_number("INV", 123), "INV-000123");
        assert_eq!(format_number("ACME", 1_234_567), "ACME-1234567");
    }
}
