//! An account's balance in one currency: the lots of credit it holds ([`CreditGrant`]) and
//! the append-only ledger of every movement ([`BalanceTransaction`]).
//!
//! Every change starts from the [`Ledger`] as stored (the balance and its open grants) and
//! gives one [`BalanceChange`]: the balance as it becomes (one version further), the grants
//! it creates or moves, and the entries it appends. Stores write a change in one
//! transaction conditioned on the balance's version, so two changes made from the same
//! read never both commit and no credit is spent twice.
//!
//! Rules (property-tested):
//! - the balance is the sum of its ledger entries and of its open grants' remaining amounts,
//!   and is never negative;
//! - credit is spent soonest-expiring first (grants without an expiry last), then oldest
//!   first (Stripe's customer credit grants use the same priority);
//! - a grant past its `expires_at` is never spent: every change first moves what expired
//!   out of the balance, with an `expired` entry;
//! - an invoice is never credited more than it owes; a negative invoice total is not lost,
//!   it becomes a grant of its own (`invoice_excess`).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::billing::invoice::{Invoice, InvoiceStatus};
use crate::kernel::currency::Currency;
use crate::kernel::error::{ErrorCode, ValidationError};
use crate::kernel::ids::{AccountId, BalanceTransactionId, CreditGrantId, InvoiceId, TestClockId};
use crate::kernel::money::MinorUnits;

/// The longest `reason` of a grant or adjustment, in characters.
pub const MAX_REASON_CHARS: usize = 200;
/// The longest `note` of a grant, in characters.
pub const MAX_NOTE_CHARS: usize = 500;
/// The largest single grant or adjustment: 10^15 minor units (ten trillion dollars), so
/// that sums of many of them never come near `i64::MAX`.
pub const MAX_CREDIT_AMOUNT: i64 = 1_000_000_000_000_000;

/// Why a lot of credit is in the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CreditSource {
    /// Granted through `POST /v1/credits` (a promotion, goodwill, a prepayment).
    Grant,
    /// A manual adjustment that added to the balance.
    Adjustment,
    /// The negative total of an invoice (a cancellation or downgrade credit larger than
    /// what the invoice charged).
    InvoiceExcess,
    /// What a voided invoice gives back (its credit note), kept as balance instead of
    /// refunded (`credit_to_balance`).
    CreditNote,
}

/// A lot of credit of one account and currency. `remaining` goes down as invoices spend it
/// and to zero when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreditGrant {
    #[schema(value_type = String)]
    pub id: CreditGrantId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    #[schema(value_type = String)]
    pub currency: Currency,
    pub source: CreditSource,
    /// Minor units granted.
    #[schema(value_type = i64)]
    pub amount: MinorUnits,
    /// Minor units not yet spent nor expired.
    #[schema(value_type = i64)]
    pub remaining: MinorUnits,
    pub reason: String,
    pub note: Option<String>,
    /// The invoice it came from (`invoice_excess`).
    #[schema(value_type = Option<String>)]
    pub invoice_id: Option<InvoiceId>,
    /// After this moment it is no longer spent; what remains leaves the balance.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl CreditGrant {
    /// Whether it can still be spent at `now`.
    pub fn usable(&self, now: Timestamp) -> bool {
        self.remaining.is_positive() && self.expires_at.is_none_or(|at| at > now)
    }

    /// Spending order: soonest-expiring first (no expiry last), then oldest.
    fn priority(&self) -> (bool, Option<Timestamp>, Timestamp, CreditGrantId) {
        (
            self.expires_at.is_none(),
            self.expires_at,
            self.created_at,
            self.id,
        )
    }
}

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    /// A credit grant added to the balance.
    Granted,
    /// A manual adjustment, up or down.
    Adjusted,
    /// Credit spent on an invoice.
    Applied,
    /// An invoice's negative total added to the balance.
    InvoiceExcess,
    /// Credit an invoice had spent, given back when it was voided.
    Restored,
    /// A voided invoice's credit note credited to the balance instead of refunded.
    CreditNote,
    /// What remained of a grant at its expiry left the balance.
    Expired,
}

/// Minor units of one grant moved by an entry (or spent on an invoice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GrantAmount {
    #[schema(value_type = String)]
    pub grant_id: CreditGrantId,
    /// Positive.
    #[schema(value_type = i64)]
    pub amount: MinorUnits,
}

/// One entry of the ledger. Entries are only ever appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BalanceTransaction {
    #[schema(value_type = String)]
    pub id: BalanceTransactionId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    #[schema(value_type = String)]
    pub currency: Currency,
    pub kind: TransactionKind,
    /// Signed minor units: positive adds to the balance, negative takes from it.
    #[schema(value_type = i64)]
    pub amount: MinorUnits,
    /// The balance right after this entry.
    #[schema(value_type = i64)]
    pub ending_balance: MinorUnits,
    /// The grants it moved.
    pub grants: Vec<GrantAmount>,
    #[schema(value_type = Option<String>)]
    pub invoice_id: Option<InvoiceId>,
    pub reason: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// An account's balance in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Balance {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    #[schema(value_type = String)]
    pub currency: Currency,
    /// Minor units the account's next invoices in this currency can spend.
    #[schema(value_type = i64)]
    pub available: MinorUnits,
    /// When the soonest-expiring open grant expires: the balance waits in the due index
    /// until then.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_expiry: Option<Timestamp>,
    /// The account's test clock: its expiries fall due on the clock's time.
    #[schema(value_type = Option<String>)]
    pub test_clock: Option<TestClockId>,
    /// The grants with something remaining, which the next change reads.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub open_grants: Vec<CreditGrantId>,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// 0 while nothing was ever written.
    pub version: u64,
}

/// A new grant, as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant {
    pub id: CreditGrantId,
    pub source: CreditSource,
    pub amount: i64,
    pub reason: String,
    pub note: Option<String>,
    pub invoice_id: Option<InvoiceId>,
    pub expires_at: Option<Timestamp>,
}

/// One write of a balance: what the store commits atomically, conditioned on the stored
/// balance still being at `previous_version` (0: it must not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceChange {
    pub previous_version: u64,
    pub balance: Balance,
    /// Grants created or moved, as they become.
    pub grants: Vec<CreditGrant>,
    /// Appended to the ledger, in order.
    pub entries: Vec<BalanceTransaction>,
}

/// Why a balance change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the balance has {available} available, less than {wanted}")]
    Insufficient { available: i64, wanted: i64 },
}

/// A balance as stored with every grant that still has something remaining: what each
/// change starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    pub balance: Balance,
    pub grants: Vec<CreditGrant>,
}

impl Ledger {
    /// The ledger of an account that never had a balance in `currency`.
    pub fn empty(
        account_id: AccountId,
        currency: Currency,
        test_clock: Option<TestClockId>,
        now: Timestamp,
    ) -> Ledger {
        Ledger {
            balance: Balance {
                account_id,
                currency,
                available: MinorUnits::ZERO,
                next_expiry: None,
                test_clock,
                open_grants: Vec::new(),
                updated_at: now,
                version: 0,
            },
            grants: Vec::new(),
        }
    }

    /// What can be spent at `now` (grants past their expiry excluded, even before the
    /// expiry is written).
    pub fn spendable(&self, now: Timestamp) -> MinorUnits {
        MinorUnits::new(
            self.grants
                .iter()
                .filter(|g| g.usable(now))
                .map(|g| g.remaining.get())
                .sum(),
        )
    }

    /// The grants an invoice at `at` would spend, in the order it would spend them
    /// (what a preview shows).
    pub fn spending_order(&self, at: Timestamp) -> Vec<&CreditGrant> {
        spending_order(self.grants.iter(), at)
    }

    /// Adds a grant (`grant` or `adjustment` upwards; `invoice_excess` comes through
    /// [`Ledger::settle_invoice`]).
    pub fn grant(
        &self,
        new: NewGrant,
        now: Timestamp,
        ids: &mut dyn FnMut() -> Ulid,
    ) -> Result<BalanceChange, BalanceError> {
        check_amount(new.amount, "amount")?;
        check_text(&new.reason, MAX_REASON_CHARS, "reason")?;
        if let Some(note) = &new.note {
            check_text(note, MAX_NOTE_CHARS, "note")?;
        }
        if new.expires_at.is_some_and(|at| at <= now) {
            return Err(ValidationError::new(
                ErrorCode::InvalidExpiry,
                "expires_at",
                "expires_at must be in the future",
            )
            .into());
        }
        let kind = match new.source {
            CreditSource::Grant => TransactionKind::Granted,
            CreditSource::Adjustment => TransactionKind::Adjusted,
            CreditSource::InvoiceExcess => TransactionKind::InvoiceExcess,
            CreditSource::CreditNote => TransactionKind::CreditNote,
        };
        let mut work = Working::start(self, now, ids);
        work.add(new, kind);
        Ok(work.finish())
    }

    /// Takes `amount` out of the balance by hand (a downward adjustment), spending grants
    /// in the usual order; refused when less is available.
    pub fn debit(
        &self,
        amount: i64,
        reason: String,
        now: Timestamp,
        ids: &mut dyn FnMut() -> Ulid,
    ) -> Result<BalanceChange, BalanceError> {
        check_amount(amount, "amount")?;
        check_text(&reason, MAX_REASON_CHARS, "reason")?;
        let available = self.spendable(now).get();
        if available < amount {
            return Err(BalanceError::Insufficient {
                available,
                wanted: amount,
            });
        }
        let mut work = Working::start(self, now, ids);
        work.take(amount, TransactionKind::Adjusted, None, Some(reason));
        Ok(work.finish())
    }

    /// Moves what expired by `now` out of the balance; `None` when nothing did.
    pub fn expire(&self, now: Timestamp, ids: &mut dyn FnMut() -> Ulid) -> Option<BalanceChange> {
        let work = Working::start(self, now, ids);
        (!work.entries.is_empty()).then(|| work.finish())
    }

    /// Settles a draft invoice (of this account and currency) against the balance: a
    /// negative total becomes a grant (`invoice_excess`, once: the invoice records it in
    /// `credited_to_balance`), and available credit pays what it owes, at most all of it,
    /// recorded in its `credits_applied`. `None` when there is nothing to settle.
    pub fn settle_invoice(
        &self,
        invoice: &Invoice,
        now: Timestamp,
        ids: &mut dyn FnMut() -> Ulid,
    ) -> Option<(Invoice, BalanceChange)> {
        if invoice.status != InvoiceStatus::Draft
            || invoice.account_id != self.balance.account_id
            || invoice.currency != self.balance.currency
        {
            return None;
        }
        let excess = invoice.total.get().checked_neg().unwrap_or(0).max(0);
        let owed_excess = excess.saturating_sub(invoice.credited_to_balance.get());
        let owed = invoice.amount_due.get().min(self.spendable(now).get());
        if owed_excess <= 0 && owed <= 0 {
            return None;
        }
        let mut next = invoice.clone();
        let mut work = Working::start(self, now, ids);
        if owed_excess > 0 {
            let id = CreditGrantId::from_ulid((work.ids)());
            work.add(
                NewGrant {
                    id,
                    source: CreditSource::InvoiceExcess,
                    amount: owed_excess,
                    reason: "invoice_excess".into(),
                    note: None,
                    invoice_id: Some(invoice.id),
                    expires_at: None,
                },
                TransactionKind::InvoiceExcess,
            );
            next.credited_to_balance = MinorUnits::new(excess);
        }
        if owed > 0 {
            let spent = work.take(owed, TransactionKind::Applied, Some(invoice.id), None);
            next.credit_total = next.credit_total.saturating_add(MinorUnits::new(owed));
            next.amount_due = next.amount_due.saturating_sub(MinorUnits::new(owed));
            next.credits_applied.extend(spent);
        }
        next.version += 1;
        Some((next, work.finish()))
    }

    /// What voiding `invoice` does to the balance: the credit it had spent goes back to
    /// the grants it came from (a grant that expired meanwhile takes it and expires it
    /// again in the same change; the ledger must hold those grants, the store loads them
    /// by id), and `to_balance` (its credit note's amount, when the customer keeps it as
    /// balance instead of a refund) becomes a grant of its own. `None` when neither.
    pub fn void_invoice(
        &self,
        invoice: &Invoice,
        to_balance: MinorUnits,
        now: Timestamp,
        ids: &mut dyn FnMut() -> Ulid,
    ) -> Option<BalanceChange> {
        let nothing = invoice.credits_applied.is_empty() && !to_balance.is_positive();
        if nothing || invoice.currency != self.balance.currency {
            return None;
        }
        let mut work = Working::start(self, now, ids);
        work.put_back(&invoice.credits_applied, invoice.id);
        work.expire_due();
        if to_balance.is_positive() {
            let id = CreditGrantId::from_ulid((work.ids)());
            work.add(
                NewGrant {
                    id,
                    source: CreditSource::CreditNote,
                    amount: to_balance.get(),
                    reason: "credit_note".into(),
                    note: None,
                    invoice_id: Some(invoice.id),
                    expires_at: None,
                },
                TransactionKind::CreditNote,
            );
        }
        Some(work.finish())
    }
}

/// The grants usable at `at`, soonest-expiring first (no expiry last), then oldest.
fn spending_order<'a>(
    grants: impl Iterator<Item = &'a CreditGrant>,
    at: Timestamp,
) -> Vec<&'a CreditGrant> {
    let mut order: Vec<&CreditGrant> = grants.filter(|g| g.usable(at)).collect();
    order.sort_by_key(|g| g.priority());
    order
}

/// A change being built: the balance, the grants as they are becoming and the entries so far.
struct Working<'a> {
    previous_version: u64,
    balance: Balance,
    grants: BTreeMap<CreditGrantId, CreditGrant>,
    moved: Vec<CreditGrantId>,
    entries: Vec<BalanceTransaction>,
    now: Timestamp,
    ids: &'a mut dyn FnMut() -> Ulid,
}

impl<'a> Working<'a> {
    /// Starts from `ledger`, having moved out what expired by `now`.
    fn start(ledger: &Ledger, now: Timestamp, ids: &'a mut dyn FnMut() -> Ulid) -> Self {
        let mut work = Working {
            previous_version: ledger.balance.version,
            balance: ledger.balance.clone(),
            grants: ledger.grants.iter().map(|g| (g.id, g.clone())).collect(),
            moved: Vec::new(),
            entries: Vec::new(),
            now,
            ids,
        };
        work.expire_due();
        work
    }

    fn touch(&mut self, id: CreditGrantId) {
        if !self.moved.contains(&id) {
            self.moved.push(id);
        }
    }

    fn entry(
        &mut self,
        kind: TransactionKind,
        amount: i64,
        grants: Vec<GrantAmount>,
        invoice_id: Option<InvoiceId>,
        reason: Option<String>,
    ) {
        self.balance.available = MinorUnits::new(self.balance.available.get() + amount);
        self.entries.push(BalanceTransaction {
            id: BalanceTransactionId::from_ulid((self.ids)()),
            account_id: self.balance.account_id,
            currency: self.balance.currency,
            kind,
            amount: MinorUnits::new(amount),
            ending_balance: self.balance.available,
            grants,
            invoice_id,
            reason,
            created_at: self.now,
        });
    }

    fn expire_due(&mut self) {
        let now = self.now;
        let due: Vec<CreditGrantId> = self
            .grants
            .values()
            .filter(|g| g.remaining.is_positive() && g.expires_at.is_some_and(|at| at <= now))
            .map(|g| g.id)
            .collect();
        for id in due {
            let Some(grant) = self.grants.get_mut(&id) else {
                continue;
            };
            let amount = grant.remaining;
            grant.remaining = MinorUnits::ZERO;
            self.touch(id);
            self.entry(
                TransactionKind::Expired,
                -amount.get(),
                vec![GrantAmount {
                    grant_id: id,
                    amount,
                }],
                None,
                None,
            );
        }
    }

    fn add(&mut self, new: NewGrant, kind: TransactionKind) {
        let grant = CreditGrant {
            id: new.id,
            account_id: self.balance.account_id,
            currency: self.balance.currency,
            source: new.source,
            amount: MinorUnits::new(new.amount),
            remaining: MinorUnits::new(new.amount),
            reason: new.reason.clone(),
            note: new.note,
            invoice_id: new.invoice_id,
            expires_at: new.expires_at,
            created_at: self.now,
        };
        self.grants.insert(grant.id, grant);
        self.touch(new.id);
        self.entry(
            kind,
            new.amount,
            vec![GrantAmount {
                grant_id: new.id,
                amount: MinorUnits::new(new.amount),
            }],
            new.invoice_id,
            Some(new.reason),
        );
    }

    /// Spends up to `amount` in priority order; returns what each grant gave.
    fn take(
        &mut self,
        amount: i64,
        kind: TransactionKind,
        invoice_id: Option<InvoiceId>,
        reason: Option<String>,
    ) -> Vec<GrantAmount> {
        let order: Vec<CreditGrantId> = spending_order(self.grants.values(), self.now)
            .into_iter()
            .map(|g| g.id)
            .collect();
        let mut left = amount;
        let mut spent = Vec::new();
        for id in order {
            if left == 0 {
                break;
            }
            let Some(grant) = self.grants.get_mut(&id) else {
                continue;
            };
            let part = grant.remaining.get().min(left);
            grant.remaining = MinorUnits::new(grant.remaining.get() - part);
            left -= part;
            spent.push(GrantAmount {
                grant_id: id,
                amount: MinorUnits::new(part),
            });
            self.touch(id);
        }
        let total: i64 = spent.iter().map(|s| s.amount.get()).sum();
        if total > 0 {
            self.entry(kind, -total, spent.clone(), invoice_id, reason);
        }
        spent
    }

    fn put_back(&mut self, parts: &[GrantAmount], invoice_id: InvoiceId) {
        let mut restored = Vec::new();
        for part in parts {
            if let Some(grant) = self.grants.get_mut(&part.grant_id) {
                grant.remaining = grant.remaining.saturating_add(part.amount);
                restored.push(*part);
            }
        }
        for part in &restored {
            self.touch(part.grant_id);
        }
        let total: i64 = restored.iter().map(|p| p.amount.get()).sum();
        if total > 0 {
            self.entry(
                TransactionKind::Restored,
                total,
                restored,
                Some(invoice_id),
                None,
            );
        }
    }

    fn finish(self) -> BalanceChange {
        let mut balance = self.balance;
        balance.next_expiry = self
            .grants
            .values()
            .filter(|g| g.remaining.is_positive())
            .filter_map(|g| g.expires_at)
            .min();
        balance.open_grants = self
            .grants
            .values()
            .filter(|g| g.remaining.is_positive())
            .map(|g| g.id)
            .collect();
        balance.updated_at = self.now;
        balance.version = self.previous_version + 1;
        let grants = self
            .moved
            .iter()
            .filter_map(|id| self.grants.get(id).cloned())
            .collect();
        BalanceChange {
            previous_version: self.previous_version,
            balance,
            grants,
            entries: self.entries,
        }
    }
}

fn check_amount(amount: i64, param: &str) -> Result<(), ValidationError> {
    if amount <= 0 || amount > MAX_CREDIT_AMOUNT {
        return Err(ValidationError::new(
            ErrorCode::InvalidAmount,
            param,
            format!("{param} must be between 1 and {MAX_CREDIT_AMOUNT} minor units"),
        ));
    }
    Ok(())
}

fn check_text(text: &str, max: usize, param: &str) -> Result<(), ValidationError> {
    if text.trim().is_empty() || text.chars().count() > max {
        return Err(ValidationError::new(
            ErrorCode::TooLong,
            param,
            format!("{param} must be 1 to {max} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::invoice::DraftFacts;
    use crate::billing::invoice_draft::InvoiceDraft;
    use crate::billing::subscription::{BillingReason, CollectionMethod};
    use jiff::SignedDuration;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn usd() -> Currency {
        Currency::from_code("usd").unwrap()
    }

    fn account() -> AccountId {
        AccountId::from_ulid(Ulid::from_parts(1, 1))
    }

    fn counter() -> impl FnMut() -> Ulid {
        let mut n = 0u128;
        move || {
            n += 1;
            Ulid::from_parts(2, n)
        }
    }

    fn commit(ledger: &Ledger, change: BalanceChange) -> Ledger {
        let mut grants: BTreeMap<CreditGrantId, CreditGrant> =
            ledger.grants.iter().map(|g| (g.id, g.clone())).collect();
        for g in change.grants {
            grants.insert(g.id, g);
        }
        Ledger {
            balance: change.balance,
            grants: grants
                .into_values()
                .filter(|g| g.remaining.is_positive())
                .collect(),
        }
    }

    fn grant(amount: i64, expires_at: Option<Timestamp>, n: u128) -> NewGrant {
        NewGrant {
            id: CreditGrantId::from_ulid(Ulid::from_parts(3, n)),
            source: CreditSource::Grant,
            amount,
            reason: "goodwill".into(),
            note: None,
            invoice_id: None,
            expires_at,
        }
    }

    pub(crate) fn draft_invoice(total: i64) -> Invoice {
        Invoice::draft(
            DraftFacts {
                id: InvoiceId::from_ulid(Ulid::from_parts(4, 1)),
                account_id: account(),
                subscription_id: None,
                test_clock: None,
                billing_reason: BillingReason::Manual,
                period: None,
                collection_method: CollectionMethod::ChargeAutomatically,
            },
            InvoiceDraft {
                currency: usd(),
                lines: Vec::new(),
                subtotal: total,
                discount_total: 0,
                total_excluding_tax: total,
                tax_total: 0,
                total,
                discounts: Vec::new(),
                taxes: Vec::new(),
                credits_applied: Vec::new(),
                credit_total: 0,
                wallet_total: 0,
                wallets_applied: Vec::new(),
                amount_due: total.max(0),
                ending_credit_balance: (-total).max(0),
            },
            at(0),
        )
    }

    #[test]
    fn soonest_expiring_is_spent_first_then_oldest() {
        let mut ids = counter();
        let empty = Ledger::empty(account(), usd(), None, at(0));
        let l = commit(
            &empty,
            empty.grant(grant(500, None, 1), at(0), &mut ids).unwrap(),
        );
        let l = commit(
            &l,
            l.grant(grant(300, Some(at(1000)), 2), at(1), &mut ids)
                .unwrap(),
        );
        let l = commit(
            &l,
            l.grant(grant(200, Some(at(500)), 3), at(2), &mut ids)
                .unwrap(),
        );
        assert_eq!(l.balance.available, 1000);
        assert_eq!(l.balance.next_expiry, Some(at(500)));
        let (invoice, change) = l
            .settle_invoice(&draft_invoice(400), at(3), &mut ids)
            .unwrap();
        assert_eq!(
            invoice
                .credits_applied
                .iter()
                .map(|c| c.amount.get())
                .collect::<Vec<_>>(),
            vec![200, 200]
        );
        assert_eq!(
            invoice.credits_applied[0].grant_id,
            CreditGrantId::from_ulid(Ulid::from_parts(3, 3))
        );
        assert_eq!(
            (invoice.amount_due, invoice.credit_total),
            (0.into(), 400.into())
        );
        assert_eq!(change.balance.available, 600);
        assert_eq!(change.balance.version, 4);
        assert_eq!(change.entries.len(), 1);
        assert_eq!(change.entries[0].kind, TransactionKind::Applied);
        assert_eq!(change.entries[0].amount, -400);
    }

    #[test]
    fn an_expired_grant_leaves_the_balance_and_is_never_spent() {
        let mut ids = counter();
        let empty = Ledger::empty(account(), usd(), None, at(0));
        let l = commit(
            &empty,
            empty
                .grant(grant(1500, Some(at(100)), 1), at(0), &mut ids)
                .unwrap(),
        );
        assert!(l.expire(at(99), &mut ids).is_none());
        assert_eq!(l.spendable(at(100)), MinorUnits::ZERO);
        // Settling after the expiry spends nothing, and nothing is written for it.
        assert!(l
            .settle_invoice(&draft_invoice(5000), at(100), &mut ids)
            .is_none());
        let change = l.expire(at(100), &mut ids).unwrap();
        assert_eq!(change.entries[0].kind, TransactionKind::Expired);
        assert_eq!(change.entries[0].amount, -1500);
        assert_eq!(change.balance.available, 0);
        assert_eq!(change.balance.next_expiry, None);
    }

    #[test]
    fn a_negative_total_becomes_balance_once() {
        let mut ids = counter();
        let empty = Ledger::empty(account(), usd(), None, at(0));
        let (invoice, change) = empty
            .settle_invoice(&draft_invoice(-1234), at(0), &mut ids)
            .unwrap();
        assert_eq!(invoice.credited_to_balance, 1234);
        assert_eq!(invoice.amount_due, 0);
        assert_eq!(change.balance.available, 1234);
        assert_eq!(change.grants[0].source, CreditSource::InvoiceExcess);
        let l = commit(&empty, change);
        assert!(l.settle_invoice(&invoice, at(1), &mut ids).is_none());
    }

    #[test]
    fn a_void_gives_back_what_the_invoice_spent() {
        let mut ids = counter();
        let empty = Ledger::empty(account(), usd(), None, at(0));
        let l = commit(
            &empty,
            empty
                .grant(grant(1000, Some(at(50)), 1), at(0), &mut ids)
                .unwrap(),
        );
        let (invoice, change) = l
            .settle_invoice(&draft_invoice(700), at(1), &mut ids)
            .unwrap();
        let mut all = change.grants.clone();
        let l = commit(&l, change);
        assert_eq!(l.balance.available, 300);
        // Voided before the expiry: all 700 come back.
        let ledger = Ledger {
            balance: l.balance.clone(),
            grants: std::mem::take(&mut all),
        };
        let back = ledger
            .void_invoice(&invoice, MinorUnits::ZERO, at(2), &mut ids)
            .unwrap();
        assert_eq!(back.balance.available, 1000);
        // Voided after it: given back and expired again, so the ledger shows both.
        let late = ledger
            .void_invoice(
                &invoice,
                MinorUnits::ZERO,
                at(50) + SignedDuration::from_secs(1),
                &mut ids,
            )
            .unwrap();
        assert_eq!(
            late.entries.iter().map(|e| e.kind).collect::<Vec<_>>(),
            vec![
                TransactionKind::Expired,
                TransactionKind::Restored,
                TransactionKind::Expired
            ]
        );
        assert_eq!(late.balance.available, 0);
        // Paid $5 besides, kept as balance: the credit comes back and the $5 becomes a
        // grant of its own, naming the invoice.
        let kept = ledger
            .void_invoice(&invoice, MinorUnits::new(500), at(2), &mut ids)
            .unwrap();
        assert_eq!(
            kept.entries
                .iter()
                .map(|e| (e.kind, e.amount.get()))
                .collect::<Vec<_>>(),
            vec![
                (TransactionKind::Restored, 700),
                (TransactionKind::CreditNote, 500)
            ]
        );
        assert_eq!(kept.balance.available, 1500);
        let note = kept
            .grants
            .iter()
            .find(|g| g.source == CreditSource::CreditNote)
            .unwrap();
        assert_eq!(
            (note.remaining.get(), note.invoice_id),
            (500, Some(invoice.id))
        );
        // Nothing spent and nothing kept: nothing to do.
        assert!(Ledger::empty(account(), usd(), None, at(0))
            .void_invoice(&draft_invoice(100), MinorUnits::ZERO, at(2), &mut ids)
            .is_none());
    }

    #[test]
    fn a_debit_needs_the_balance() {
        let mut ids = counter();
        let empty = Ledger::empty(account(), usd(), None, at(0));
        assert_eq!(
            empty.debit(1, "fix".into(), at(0), &mut ids),
            Err(BalanceError::Insufficient {
                available: 0,
                wanted: 1
            })
        );
        assert!(matches!(
            empty.grant(grant(0, None, 1), at(0), &mut ids),
            Err(BalanceError::Invalid(_))
        ));
        assert!(matches!(
            empty.grant(grant(10, Some(at(0)), 1), at(0), &mut ids),
            Err(BalanceError::Invalid(_))
        ));
    }
}
