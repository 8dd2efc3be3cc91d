//! A prepaid wallet of one account and currency, and the append-only list of its
//! transactions.
//!
//! Every change starts from the wallet as stored and gives one [`WalletChange`]: the wallet
//! one version further and the transactions it creates or settles. Stores write a change
//! conditioned on the wallet's version (an invoice's consumption inside the invoice's own
//! write), so two changes made from the same read never both commit.
//!
//! Rules (property-tested):
//! - `rate_amount` is what one credit is worth in the currency's major unit (Lago's
//!   meaning: `amount = credits × rate_amount`). Credits asked for are converted to minor
//!   units once, half away from zero, and a transaction records the credits that amount
//!   is worth (Lago rounds the same way: 4.399999 credits at 0.01 EUR are 0.04 EUR, 4
//!   credits).
//! - the balance is the sum of the settled transactions' amounts and is never negative;
//! - paid credits wait as a pending top-up until their invoice is paid, and arrive once;
//! - an invoice consumes at most what it still owes after discounts, tax and the
//!   account's balance credit, and never from a wallet that expired;
//! - a threshold rule fires once per crossing of the ongoing balance, which a periodic
//!   check looks at (sooner while it moves), so usage needs no wallet read as it arrives.

use jiff::{Timestamp, ToSpan};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::billing::invoice::{Invoice, InvoiceStatus};
use crate::credits::balance::MAX_CREDIT_AMOUNT;
use crate::kernel::currency::Currency;
use crate::kernel::decimal::{round_minor, significant_scale};
use crate::kernel::error::{ErrorCode, ValidationError};
use crate::kernel::ids::{AccountId, InvoiceId, TestClockId, WalletId, WalletTransactionId};
use crate::kernel::money::MinorUnits;

/// Most decimals a rate or a number of credits may carry.
pub const MAX_SCALE: u32 = 8;
/// Most recurring top-up rules a wallet holds.
pub const MAX_RULES: usize = 5;
/// The longest wallet name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// How soon after a check a wallet with threshold rules is checked again while its ongoing
/// balance moves: usage arriving makes a threshold fire within this (plus the sweep's
/// interval), without a single request more on the usage path.
pub const THRESHOLD_CHECK_MINUTES: u32 = 15;
/// The longest wait between two checks: the wait doubles from
/// [`THRESHOLD_CHECK_MINUTES`] while the ongoing balance stands still (a quiet account is
/// looked at about once a day, not 96 times).
pub const THRESHOLD_CHECK_MAX_MINUTES: u32 = 24 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WalletStatus {
    Active,
    /// Expired (or ended): it is no longer consumed nor topped up.
    Terminated,
}

/// Paid credits waiting for their invoice to be paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingTopUp {
    #[schema(value_type = String)]
    pub transaction_id: WalletTransactionId,
    #[schema(value_type = String)]
    pub invoice_id: InvoiceId,
    #[schema(value_type = i64)]
    pub amount: MinorUnits,
    #[serde(with = "crate::kernel::decimal::serde_decimal")]
    #[schema(value_type = String)]
    pub credits: Decimal,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TopUpInterval {
    Weekly,
    Monthly,
}

/// When a recurring top-up rule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum TopUpTrigger {
    /// Every `interval`, at `next_at` (the due index holds the wallet until then).
    Interval {
        interval: TopUpInterval,
        #[schema(value_type = String, format = DateTime)]
        next_at: Timestamp,
    },
    /// When the ongoing balance falls under `threshold_credits`: once per crossing. It
    /// fires and disarms; it re-arms once the ongoing balance is back at or above it.
    Threshold {
        #[serde(with = "crate::kernel::decimal::serde_decimal")]
        #[schema(value_type = String)]
        threshold_credits: Decimal,
        armed: bool,
    },
}

/// A recurring top-up: what it adds and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopUpRule {
    #[serde(flatten)]
    pub trigger: TopUpTrigger,
    /// Free credits it adds at once.
    #[serde(with = "crate::kernel::decimal::serde_decimal")]
    #[schema(value_type = String)]
    pub granted_credits: Decimal,
    /// Credits it buys: a top-up invoice; they arrive when it is paid.
    #[serde(with = "crate::kernel::decimal::serde_decimal")]
    #[schema(value_type = String)]
    pub paid_credits: Decimal,
}

/// The last periodic threshold check: the ongoing balance it saw and how long it waits
/// until the next (doubling while the ongoing balance stays where it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ThresholdWatch {
    pub seen_ongoing: i64,
    pub every_minutes: u32,
}

/// A prepaid wallet. Its money is `balance` (minor units); its credits are derived from it
/// through `rate_amount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Wallet {
    #[schema(value_type = String)]
    pub id: WalletId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    #[schema(value_type = String)]
    pub currency: Currency,
    pub name: Option<String>,
    /// What one credit is worth in the currency's major unit (`"1"`: one credit = $1).
    #[serde(with = "crate::kernel::decimal::serde_decimal")]
    #[schema(value_type = String)]
    pub rate_amount: Decimal,
    pub status: WalletStatus,
    /// Minor units the account's invoices in this currency can consume.
    #[schema(value_type = i64)]
    pub balance: MinorUnits,
    /// Minor units consumed by invoices so far.
    #[schema(value_type = i64)]
    pub consumed: MinorUnits,
    /// Credits bought and not paid for yet.
    #[serde(default)]
    pub pending_top_ups: Vec<PendingTopUp>,
    #[serde(default)]
    pub rules: Vec<TopUpRule>,
    /// After this moment it is no longer consumed; what remains leaves it.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub terminated_at: Option<Timestamp>,
    /// Set when an invoice consumed it and it has threshold rules: the rules are checked
    /// against the ongoing balance then (through the due index, so no path misses it);
    /// and, with threshold rules, the next periodic check of the usage not invoiced yet.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub rules_due_at: Option<Timestamp>,
    /// What the last threshold check saw, so that the next waits longer while nothing moves.
    #[serde(default)]
    pub threshold_watch: Option<ThresholdWatch>,
    /// The account's test clock: its expiry and scheduled top-ups fall due on its time.
    #[schema(value_type = Option<String>)]
    pub test_clock: Option<TestClockId>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WalletTransactionKind {
    /// Free credits added.
    Granted,
    /// Credits bought (pending until the top-up invoice is paid).
    Purchased,
    /// Credits an invoice consumed.
    Consumed,
    /// Credits a voided invoice had consumed, given back.
    Restored,
    /// What remained at the wallet's expiry.
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WalletTransactionStatus {
    Pending,
    Settled,
}

/// One movement of a wallet. Appended; a pending purchase is rewritten once, settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WalletTransaction {
    #[schema(value_type = String)]
    pub id: WalletTransactionId,
    #[schema(value_type = String)]
    pub wallet_id: WalletId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub kind: WalletTransactionKind,
    pub status: WalletTransactionStatus,
    /// Signed minor units: positive adds to the balance once settled.
    #[schema(value_type = i64)]
    pub amount: MinorUnits,
    /// The same in credits (signed).
    #[serde(with = "crate::kernel::decimal::serde_decimal")]
    #[schema(value_type = String)]
    pub credits: Decimal,
    /// The balance right after it settled.
    #[schema(value_type = Option<i64>)]
    pub ending_balance: Option<MinorUnits>,
    /// The top-up invoice of a purchase, or the invoice that consumed or gave back.
    #[schema(value_type = Option<String>)]
    pub invoice_id: Option<InvoiceId>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub settled_at: Option<Timestamp>,
}

/// What an invoice consumed of one wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WalletAmount {
    #[schema(value_type = String)]
    pub wallet_id: WalletId,
    #[schema(value_type = String)]
    pub transaction_id: WalletTransactionId,
    #[schema(value_type = i64)]
    pub amount: MinorUnits,
}

/// What a change tells the outside (its events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalletSignal {
    Created,
    /// Credits arrived (granted or paid): the transaction.
    ToppedUp(WalletTransactionId),
    /// A threshold rule fired.
    LowBalance,
    /// The balance reached zero.
    Depleted,
}

/// One write of a wallet: committed atomically, on the condition that the stored wallet is
/// still at `previous_version` (0: it must not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletChange {
    pub previous_version: u64,
    pub wallet: Wallet,
    /// Transactions created or settled, as they become.
    pub transactions: Vec<WalletTransaction>,
    pub signals: Vec<WalletSignal>,
}

impl WalletChange {
    /// The purchase this change makes, if any: its top-up invoice must be written with it.
    pub fn purchase(&self) -> Option<&WalletTransaction> {
        self.transactions.iter().find(|t| {
            t.kind == WalletTransactionKind::Purchased
                && t.status == WalletTransactionStatus::Pending
        })
    }
}

/// Credits to buy: the invoice that sells them (its id chosen beforehand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purchase {
    pub invoice_id: InvoiceId,
    pub credits: Decimal,
}

/// A recurring top-up rule as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRule {
    pub interval: Option<TopUpInterval>,
    pub threshold_credits: Option<Decimal>,
    pub granted_credits: Decimal,
    pub paid_credits: Decimal,
}

/// A wallet as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWallet {
    pub id: WalletId,
    pub account_id: AccountId,
    pub currency: Currency,
    pub name: Option<String>,
    pub rate_amount: Decimal,
    pub granted_credits: Decimal,
    pub paid: Option<Purchase>,
    pub expires_at: Option<Timestamp>,
    pub rules: Vec<NewRule>,
    pub test_clock: Option<TestClockId>,
}

/// Why a wallet change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the wallet is terminated")]
    Terminated,
}

/// Checks a `rate_amount`: positive, at most [`MAX_SCALE`] decimals, at most 10^9.
pub fn check_rate(rate: Decimal) -> Result<Decimal, ValidationError> {
    if rate <= Decimal::ZERO
        || significant_scale(rate) > MAX_SCALE
        || rate > Decimal::from(1_000_000_000)
    {
        return Err(ValidationError::new(
            ErrorCode::InvalidRateAmount,
            "rate_amount",
            format!("rate_amount must be a positive decimal of at most {MAX_SCALE} decimals, up to 1000000000"),
        ));
    }
    Ok(rate.normalize())
}

/// Minor units of `credits` at `rate` in `currency`, rounded once half away from zero, and
/// the credits that amount is worth (what a transaction records).
pub fn credits_to_amount(
    rate: Decimal,
    currency: Currency,
    credits: Decimal,
    param: &str,
) -> Result<(MinorUnits, Decimal), ValidationError> {
    let invalid = || {
        ValidationError::new(
            ErrorCode::InvalidCredits,
            param,
            format!("{param} must be a non-negative decimal of at most {MAX_SCALE} decimals, worth at most {MAX_CREDIT_AMOUNT} minor units"),
        )
    };
    if credits < Decimal::ZERO || significant_scale(credits) > MAX_SCALE {
        return Err(invalid());
    }
    let unrounded = credits
        .checked_mul(rate)
        .and_then(|major| major.checked_mul(minor_per_major(currency)))
        .ok_or_else(invalid)?;
    let minor = round_minor(unrounded).map_err(|_| invalid())?;
    if minor > MAX_CREDIT_AMOUNT {
        return Err(invalid());
    }
    let amount = MinorUnits::new(minor);
    Ok((amount, amount_to_credits(rate, currency, amount)))
}

/// The credits `amount` is worth at `rate` (rounded to [`MAX_SCALE`] decimals).
pub fn amount_to_credits(rate: Decimal, currency: Currency, amount: MinorUnits) -> Decimal {
    let per_credit = rate * minor_per_major(currency);
    (Decimal::from(amount.get()) / per_credit)
        .round_dp(MAX_SCALE)
        .normalize()
}

fn minor_per_major(currency: Currency) -> Decimal {
    Decimal::from(10i64.pow(u32::from(currency.exponent())))
}

impl Wallet {
    /// A new wallet: granted credits in at once, paid credits pending on their invoice.
    pub fn open(
        new: NewWallet,
        now: Timestamp,
        ids: &mut dyn FnMut() -> Ulid,
    ) -> Result<WalletChange, ValidationError> {
        let rate_amount = check_rate(new.rate_amount)?;
        if let Some(name) = &new.name {
            if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
                return Err(ValidationError::new(
                    ErrorCode::TooLong,
                    "name",
                    format!("name must be 1 to {MAX_NAME_CHARS} characters"),
                ));
            }
        }
        if new.expires_at.is_some_and(|at| at <= now) {
            return Err(ValidationError::new(
                ErrorCode::InvalidExpiry,
                "expires_at",
                "expires_at must be in the future",
            ));
        }
        if new.rules.len() > MAX_RULES {
            return Err(rule_error(format!("at most {MAX_RULES} rules")));
        }
        let mut rules = Vec::with_capacity(new.rules.len());
        for rule in new.rules {
            rules.push(rule_of(rule, rate_amount, new.currency, now)?);
        }
        let wallet = Wallet {
            id: new.id,
            account_id: new.account_id,
            currency: new.currency,
            name: new.name,
            rate_amount,
            status: WalletStatus::Active,
            balance: MinorUnits::ZERO,
            consumed: MinorUnits::ZERO,
            pending_top_ups: Vec::new(),
            rules,
            expires_at: new.expires_at,
            terminated_at: None,
            rules_due_at: None,
            threshold_watch: None,
            test_clock: new.test_clock,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        let mut work = Working::start(&wallet, now, ids);
        if work.wallet.has_threshold_rules() {
            work.wallet.rules_due_at = Some(now + minutes(THRESHOLD_CHECK_MINUTES));
        }
        work.signals.push(WalletSignal::Created);
        work.top_up(new.granted_credits, new.paid)?;
        Ok(work.finish())
    }

    /// Adds credits: `granted` at once, `paid` once its invoice is paid. At least one of
    /// them must be more than zero.
    pub fn top_up(
        &self,
        granted: Decimal,
        paid: Option<Purchase>,
        now: Timestamp,
        ids: &mut dyn FnMut() -> Ulid,
    ) -> Result<WalletChange, WalletError> {
        if !self.usable(now) {
            return Err(WalletError::Terminated);
        }
        let nothing = granted.is_zero() && paid.is_none_or(|p| p.credits.is_zero());
        if nothing {
            return Err(ValidationError::new(
                ErrorCode::InvalidCredits,
                "granted_credits",
                "a top-up needs granted_credits or paid_credits above zero",
            )
            .into());
        }
        let mut work = Working::start(self, now, ids);
        work.top_up(granted, paid)?;
        Ok(work.finish())
    }

    /// The purchase sold by `invoice` arrives: its pending transaction settles and its
    /// amount joins the balance. `None` when the wallet has no such pending purchase (it
    /// arrived already: a second delivery of the payment changes nothing). A wallet that
    /// expired meanwhile takes it and expires it again in the same change.
    pub fn settle_purchase(
        &self,
        invoice: InvoiceId,
        now: Timestamp,
        ids: &mut dyn FnMut() -> Ulid,
    ) -> Option<WalletChange> {
        let pending = self
            .pending_top_ups
            .iter()
            .find(|p| p.invoice_id == invoice)?
            .clone();
        let mut work = Working::start(self, now, ids);
        work.wallet
            .pending_top_ups
            .retain(|p| p.invoice_id != invoice);
        work.settle(WalletTransaction {
            id: pending.transaction_id,
            wallet_id: self.id,
            account_id: self.account_id,
            kind: WalletTransactionKind::Purchased,
            status: WalletTransactionStatus::Settled,
            amount: pending.amount,
            credits: pending.credits,
            ending_balance: None,
            invoice_id: Some(invoice),
            created_at: pending.created_at,
            settled_at: Some(now),
        });
        if self.status == WalletStatus::Terminated {
            work.expire_rest();
        }
        Some(work.finish())
    }

    /// Consumes the wallet for a draft of its account and currency: at most what the
    /// invoice still owes (after discounts, tax and balance credit), recorded in its
    /// `wallet_total` and `wallets_applied`. `None` when there is nothing to consume.
    pub fn consume(
        &self,
        invoice: &Invoice,
        now: Timestamp,
        ids: &mut dyn FnMut() -> Ulid,
    ) -> Option<(Invoice, WalletChange)> {
        let applies = invoice.status == InvoiceStatus::Draft
            && invoice.account_id == self.account_id
            && invoice.currency == self.currency
            && self.usable(now)
            && !invoice
                .wallets_applied
                .iter()
                .any(|w| w.wallet_id == self.id);
        let take = invoice.amount_due.get().min(self.balance.get());
        if !applies || take <= 0 {
            return None;
        }
        let mut work = Working::start(self, now, ids);
        let id = work.entry(
            WalletTransactionKind::Consumed,
            MinorUnits::new(-take),
            Some(invoice.id),
        );
        work.wallet.consumed = work.wallet.consumed.saturating_add(MinorUnits::new(take));
        if self.has_threshold_rules() {
            work.wallet.rules_due_at = Some(now);
        }
        let mut next = invoice.clone();
        next.wallet_total = next.wallet_total.saturating_add(MinorUnits::new(take));
        next.amount_due = next.amount_due.saturating_sub(MinorUnits::new(take));
        next.wallets_applied.push(WalletAmount {
            wallet_id: self.id,
            transaction_id: id,
            amount: MinorUnits::new(take),
        });
        next.version += 1;
        Some((next, work.finish()))
    }

    /// What voiding `invoice` gives back to this wallet: what it consumed of it (expired
    /// again at once when the wallet has expired meanwhile). `None` when it consumed none.
    pub fn restore(
        &self,
        invoice: &Invoice,
        now: Timestamp,
        ids: &mut dyn FnMut() -> Ulid,
    ) -> Option<WalletChange> {
        let consumed: i64 = invoice
            .wallets_applied
            .iter()
            .filter(|w| w.wallet_id == self.id)
            .map(|w| w.amount.get())
            .sum();
        if consumed <= 0 {
            return None;
        }
        let mut work = Working::start(self, now, ids);
        work.entry(
            WalletTransactionKind::Restored,
            MinorUnits::new(consumed),
            Some(invoice.id),
        );
        work.wallet.consumed = work
            .wallet
            .consumed
            .saturating_sub(MinorUnits::new(consumed));
        if !self.usable(now) {
            work.expire_rest();
        }
        Some(work.finish())
    }

    /// Ends the wallet at its expiry: what remains leaves it. `None` before then, or when
    /// it ended already.
    pub fn expire(&self, now: Timestamp, ids: &mut dyn FnMut() -> Ulid) -> Option<WalletChange> {
        if self.status == WalletStatus::Terminated || self.expires_at.is_none_or(|at| at > now) {
            return None;
        }
        let mut work = Working::start(self, now, ids);
        work.expire_rest();
        Some(work.finish())
    }

    /// Runs the first recurring rule due with the wallet's `ongoing` balance at `now`: an
    /// interval rule whose time came (it moves to its next time), or an armed threshold
    /// rule the ongoing balance fell under (it disarms: once per crossing). Threshold rules
    /// the ongoing balance is back above re-arm. When the threshold check was due, the
    /// next one is scheduled ([`THRESHOLD_CHECK_MINUTES`], doubling while the ongoing
    /// balance stands still). `buy` names the invoice of paid credits. `None` when nothing
    /// changes (so a job run twice at one moment writes once).
    pub fn run_rules(
        &self,
        ongoing: i64,
        now: Timestamp,
        buy: &mut dyn FnMut() -> InvoiceId,
        ids: &mut dyn FnMut() -> Ulid,
    ) -> Option<WalletChange> {
        if !self.usable(now) {
            return None;
        }
        let mut work = Working::start(self, now, ids);
        let due = self.rules_due_at.is_some_and(|at| at <= now);
        let mut changed = due;
        if due {
            work.wallet.rules_due_at = None;
        }
        let mut fire = None;
        for (i, rule) in work.wallet.rules.iter_mut().enumerate() {
            match &mut rule.trigger {
                TopUpTrigger::Interval { interval, next_at } if *next_at <= now => {
                    if fire.is_none() {
                        *next_at = next_time(*next_at, *interval, now);
                        fire = Some(i);
                        changed = true;
                    }
                }
                TopUpTrigger::Threshold {
                    threshold_credits,
                    armed,
                } => {
                    let level = credits_to_amount(
                        self.rate_amount,
                        self.currency,
                        *threshold_credits,
                        "threshold_credits",
                    )
                    .map_or(0, |(a, _)| a.get());
                    if *armed && ongoing < level && fire.is_none() {
                        *armed = false;
                        fire = Some(i);
                        changed = true;
                        work.signals.push(WalletSignal::LowBalance);
                    } else if !*armed && ongoing >= level {
                        *armed = true;
                        changed = true;
                    }
                }
                TopUpTrigger::Interval { .. } => {}
            }
        }
        if due && self.has_threshold_rules() {
            // Usage is not seen as it arrives (that would cost the usage path a request per
            // event): the ongoing balance is looked at again soon while it moves, later
            // while it stands still.
            let every = match self.threshold_watch {
                Some(w) if w.seen_ongoing == ongoing => w
                    .every_minutes
                    .saturating_mul(2)
                    .min(THRESHOLD_CHECK_MAX_MINUTES),
                _ => THRESHOLD_CHECK_MINUTES,
            };
            work.wallet.rules_due_at = Some(now + minutes(every));
            work.wallet.threshold_watch = Some(ThresholdWatch {
                seen_ongoing: ongoing,
                every_minutes: every,
            });
        }
        if let Some(i) = fire {
            let rule = work.wallet.rules[i].clone();
            let paid = (!rule.paid_credits.is_zero()).then(|| Purchase {
                invoice_id: buy(),
                credits: rule.paid_credits,
            });
            // Checked when the rule was made: the conversion cannot fail now.
            work.top_up(rule.granted_credits, paid).ok()?;
        }
        changed.then(|| work.finish())
    }

    /// The ongoing balance: the balance less `unbilled` usage (may be negative).
    pub fn ongoing_balance(&self, unbilled: MinorUnits) -> i64 {
        self.balance.get().saturating_sub(unbilled.get())
    }

    /// Whether it has threshold rules (which need the ongoing balance).
    pub fn has_threshold_rules(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.trigger, TopUpTrigger::Threshold { .. }))
    }

    /// When it next falls due: its expiry or its next scheduled top-up.
    pub fn next_due(&self) -> Option<Timestamp> {
        if self.status == WalletStatus::Terminated {
            return None;
        }
        self.rules
            .iter()
            .filter_map(|r| match r.trigger {
                TopUpTrigger::Interval { next_at, .. } => Some(next_at),
                TopUpTrigger::Threshold { .. } => None,
            })
            .chain(self.expires_at)
            .chain(self.rules_due_at)
            .min()
    }

    /// Whether it can be consumed or topped up at `now`.
    pub fn usable(&self, now: Timestamp) -> bool {
        self.status == WalletStatus::Active && self.expires_at.is_none_or(|at| at > now)
    }

    /// Credits `amount` is worth in this wallet.
    pub fn credits(&self, amount: MinorUnits) -> Decimal {
        amount_to_credits(self.rate_amount, self.currency, amount)
    }
}

fn minutes(n: u32) -> jiff::SignedDuration {
    jiff::SignedDuration::from_mins(i64::from(n))
}

fn rule_error(hint: String) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidTopUpRule, "recurring_rules", hint)
}

fn rule_of(
    rule: NewRule,
    rate: Decimal,
    currency: Currency,
    now: Timestamp,
) -> Result<TopUpRule, ValidationError> {
    credits_to_amount(rate, currency, rule.granted_credits, "granted_credits")
        .map_err(|e| e.within("recurring_rules"))?;
    credits_to_amount(rate, currency, rule.paid_credits, "paid_credits")
        .map_err(|e| e.within("recurring_rules"))?;
    if rule.granted_credits.is_zero() && rule.paid_credits.is_zero() {
        return Err(rule_error(
            "a rule adds granted_credits or paid_credits above zero".into(),
        ));
    }
    let trigger = match (rule.interval, rule.threshold_credits) {
        (Some(interval), None) => TopUpTrigger::Interval {
            interval,
            next_at: next_time(now, interval, now),
        },
        (None, Some(threshold)) => {
            credits_to_amount(rate, currency, threshold, "threshold_credits")
                .map_err(|e| e.within("recurring_rules"))?;
            TopUpTrigger::Threshold {
                threshold_credits: threshold.normalize(),
                armed: true,
            }
        }
        _ => {
            return Err(rule_error(
                "a rule has either interval or threshold_credits".into(),
            ))
        }
    };
    Ok(TopUpRule {
        trigger,
        granted_credits: rule.granted_credits.normalize(),
        paid_credits: rule.paid_credits.normalize(),
    })
}

/// The first time after `now` on the rule's schedule from `from` (months in UTC).
fn next_time(from: Timestamp, interval: TopUpInterval, now: Timestamp) -> Timestamp {
    let zoned = from.to_zoned(jiff::tz::TimeZone::UTC);
    let mut n: i64 = 1;
    loop {
        let step = match interval {
            TopUpInterval::Weekly => (n * 7).days(),
            TopUpInterval::Monthly => n.months(),
        };
        match zoned.checked_add(step) {
            Ok(next) if next.timestamp() > now => return next.timestamp(),
            Ok(_) => n += 1,
            Err(_) => return Timestamp::MAX,
        }
    }
}

/// A change being made.
struct Working<'a> {
    previous_version: u64,
    wallet: Wallet,
    transactions: Vec<WalletTransaction>,
    signals: Vec<WalletSignal>,
    now: Timestamp,
    ids: &'a mut dyn FnMut() -> Ulid,
}

impl<'a> Working<'a> {
    fn start(wallet: &Wallet, now: Timestamp, ids: &'a mut dyn FnMut() -> Ulid) -> Self {
        Working {
            previous_version: wallet.version,
            wallet: wallet.clone(),
            transactions: Vec::new(),
            signals: Vec::new(),
            now,
            ids,
        }
    }

    fn new_id(&mut self) -> WalletTransactionId {
        WalletTransactionId::from_ulid((self.ids)())
    }

    /// A settled entry moving the balance by `amount`; returns its id.
    fn entry(
        &mut self,
        kind: WalletTransactionKind,
        amount: MinorUnits,
        invoice_id: Option<InvoiceId>,
    ) -> WalletTransactionId {
        let id = self.new_id();
        self.settle(WalletTransaction {
            id,
            wallet_id: self.wallet.id,
            account_id: self.wallet.account_id,
            kind,
            status: WalletTransactionStatus::Settled,
            amount,
            credits: self.wallet.credits(amount),
            ending_balance: None,
            invoice_id,
            created_at: self.now,
            settled_at: Some(self.now),
        });
        id
    }

    fn settle(&mut self, mut tx: WalletTransaction) {
        let before = self.wallet.balance;
        self.wallet.balance = MinorUnits::new(before.get() + tx.amount.get());
        tx.ending_balance = Some(self.wallet.balance);
        if tx.amount.is_positive()
            && matches!(
                tx.kind,
                WalletTransactionKind::Granted | WalletTransactionKind::Purchased
            )
        {
            self.signals.push(WalletSignal::ToppedUp(tx.id));
        }
        if before.is_positive() && self.wallet.balance == MinorUnits::ZERO {
            self.signals.push(WalletSignal::Depleted);
        }
        self.transactions.push(tx);
    }

    fn top_up(&mut self, granted: Decimal, paid: Option<Purchase>) -> Result<(), ValidationError> {
        let (rate, currency) = (self.wallet.rate_amount, self.wallet.currency);
        let (granted_amount, _) = credits_to_amount(rate, currency, granted, "granted_credits")?;
        let purchase = paid
            .map(|p| credits_to_amount(rate, currency, p.credits, "paid_credits").map(|c| (p, c)))
            .transpose()?;
        if granted_amount.is_positive() {
            self.entry(WalletTransactionKind::Granted, granted_amount, None);
        }
        if let Some((purchase, (amount, credits))) = purchase {
            if amount.is_positive() {
                let id = self.new_id();
                self.transactions.push(WalletTransaction {
                    id,
                    wallet_id: self.wallet.id,
                    account_id: self.wallet.account_id,
                    kind: WalletTransactionKind::Purchased,
                    status: WalletTransactionStatus::Pending,
                    amount,
                    credits,
                    ending_balance: None,
                    invoice_id: Some(purchase.invoice_id),
                    created_at: self.now,
                    settled_at: None,
                });
                self.wallet.pending_top_ups.push(PendingTopUp {
                    transaction_id: id,
                    invoice_id: purchase.invoice_id,
                    amount,
                    credits,
                    created_at: self.now,
                });
            }
        }
        Ok(())
    }

    fn expire_rest(&mut self) {
        let rest = self.wallet.balance;
        if rest.is_positive() {
            self.entry(
                WalletTransactionKind::Expired,
                MinorUnits::new(-rest.get()),
                None,
            );
        }
        if self.wallet.status != WalletStatus::Terminated {
            self.wallet.status = WalletStatus::Terminated;
            self.wallet.terminated_at = Some(self.now);
        }
    }

    fn finish(mut self) -> WalletChange {
        self.wallet.updated_at = self.now;
        self.wallet.version = self.previous_version + 1;
        WalletChange {
            previous_version: self.previous_version,
            wallet: self.wallet,
            transactions: self.transactions,
            signals: self.signals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::invoice::DraftFacts;
    use crate::billing::invoice_draft::InvoiceDraft;
    use crate::billing::subscription::{BillingReason, CollectionMethod};
    use proptest::prelude::*;
    use std::str::FromStr;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn cur(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
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

    fn new_wallet(rate: &str, granted: &str, paid: Option<Purchase>) -> NewWallet {
        NewWallet {
            id: WalletId::from_ulid(Ulid::from_parts(5, 1)),
            account_id: account(),
            currency: cur("usd"),
            name: None,
            rate_amount: dec(rate),
            granted_credits: dec(granted),
            paid,
            expires_at: None,
            rules: Vec::new(),
            test_clock: None,
        }
    }

    fn invoice(n: u128, total: i64, credit: i64) -> Invoice {
        Invoice::draft(
            DraftFacts {
                id: InvoiceId::from_ulid(Ulid::from_parts(4, n)),
                account_id: account(),
                subscription_id: None,
                test_clock: None,
                billing_reason: BillingReason::Manual,
                period: None,
                collection_method: CollectionMethod::ChargeAutomatically,
            },
            InvoiceDraft {
                currency: cur("usd"),
                lines: Vec::new(),
                subtotal: total,
                discount_total: 0,
                total_excluding_tax: total,
                tax_total: 0,
                total,
                discounts: Vec::new(),
                taxes: Vec::new(),
                credits_applied: Vec::new(),
                credit_total: credit,
                wallet_total: 0,
                wallets_applied: Vec::new(),
                amount_due: (total - credit).max(0),
                ending_credit_balance: 0,
            },
            at(0),
        )
    }

    /// Lago's `WalletTransactions::CreateFromParamsService` spec ("with decimal value …"
    /// contexts, spec/services/wallet_transactions/create_from_params_service_spec.rb):
    /// paid credits converted at the wallet's rate and rounded to the currency.
    #[test]
    fn credits_convert_at_the_rate_like_lagos_examples() {
        let eur = cur("eur");
        // 4.399999 credits at 1 EUR: 4.40 EUR, 4.40 credits.
        assert_eq!(
            credits_to_amount(dec("1"), eur, dec("4.399999"), "c").unwrap(),
            (MinorUnits::new(440), dec("4.4"))
        );
        // At 0.01 EUR a credit: 0.04 EUR, 4 credits.
        assert_eq!(
            credits_to_amount(dec("0.01"), eur, dec("4.399999"), "c").unwrap(),
            (MinorUnits::new(4), dec("4"))
        );
        // 4.3789 credits at 100 EUR: 437.89 EUR, 4.3789 credits.
        assert_eq!(
            credits_to_amount(dec("100"), eur, dec("4.3789"), "c").unwrap(),
            (MinorUnits::new(43789), dec("4.3789"))
        );
        // 4.39999 credits at 1 JPY (no minor unit): 4 JPY, 4 credits.
        assert_eq!(
            credits_to_amount(dec("1"), cur("jpy"), dec("4.39999"), "c").unwrap(),
            (MinorUnits::new(4), dec("4"))
        );
        assert!(credits_to_amount(dec("1"), eur, dec("-1"), "c").is_err());
        assert!(check_rate(dec("0")).is_err());
    }

    #[test]
    fn granted_credits_arrive_at_once_paid_ones_when_paid_once() {
        let mut ids = counter();
        let top_up_invoice = InvoiceId::from_ulid(Ulid::from_parts(7, 1));
        let change = Wallet::open(
            new_wallet(
                "1",
                "100",
                Some(Purchase {
                    invoice_id: top_up_invoice,
                    credits: dec("50"),
                }),
            ),
            at(0),
            &mut ids,
        )
        .unwrap();
        let w = change.wallet.clone();
        assert_eq!((w.balance.get(), w.version), (10_000, 1));
        assert_eq!(change.purchase().unwrap().amount.get(), 5_000);
        assert_eq!(w.pending_top_ups.len(), 1);
        let paid = w.settle_purchase(top_up_invoice, at(5), &mut ids).unwrap();
        assert_eq!(paid.wallet.balance.get(), 15_000);
        assert_eq!(
            paid.transactions[0].status,
            WalletTransactionStatus::Settled
        );
        assert_eq!(paid.transactions[0].id, change.purchase().unwrap().id);
        // Delivered twice: the second finds nothing pending.
        assert!(paid
            .wallet
            .settle_purchase(top_up_invoice, at(6), &mut ids)
            .is_none());
    }

    #[test]
    fn an_invoice_consumes_what_it_still_owes_and_gives_it_back_on_void() {
        let mut ids = counter();
        let w = Wallet::open(new_wallet("1", "100", None), at(0), &mut ids)
            .unwrap()
            .wallet;
        // $30 owed after $5 of balance credit: the wallet pays $25.
        let (inv, change) = w.consume(&invoice(1, 3_000, 500), at(1), &mut ids).unwrap();
        assert_eq!((inv.amount_due.get(), inv.wallet_total.get()), (0, 2_500));
        assert_eq!(change.wallet.balance.get(), 7_500);
        // Not twice for one invoice.
        assert!(change.wallet.consume(&inv, at(2), &mut ids).is_none());
        let back = change.wallet.restore(&inv, at(3), &mut ids).unwrap();
        assert_eq!(back.wallet.balance.get(), 10_000);
        // A $150 invoice takes all of it and depletes it.
        let (inv, change) = w.consume(&invoice(2, 15_000, 0), at(1), &mut ids).unwrap();
        assert_eq!(
            (inv.amount_due.get(), change.wallet.balance.get()),
            (5_000, 0)
        );
        assert!(change.signals.contains(&WalletSignal::Depleted));
    }

    #[test]
    fn an_expired_wallet_is_not_consumed_and_leaves_its_rest() {
        let mut ids = counter();
        let mut new = new_wallet("0.5", "10", None);
        new.expires_at = Some(at(100));
        let w = Wallet::open(new, at(0), &mut ids).unwrap().wallet;
        assert_eq!(w.balance.get(), 500);
        assert_eq!(w.next_due(), Some(at(100)));
        assert!(w.consume(&invoice(1, 300, 0), at(100), &mut ids).is_none());
        assert!(w.expire(at(99), &mut ids).is_none());
        let change = w.expire(at(100), &mut ids).unwrap();
        assert_eq!(change.wallet.balance.get(), 0);
        assert_eq!(change.wallet.status, WalletStatus::Terminated);
        assert_eq!(change.transactions[0].kind, WalletTransactionKind::Expired);
        assert_eq!(change.wallet.next_due(), None);
    }

    #[test]
    fn a_threshold_rule_fires_once_per_crossing() {
        let mut ids = counter();
        let mut new = new_wallet("1", "100", None);
        new.rules = vec![NewRule {
            interval: None,
            threshold_credits: Some(dec("20")),
            granted_credits: dec("0"),
            paid_credits: dec("50"),
        }];
        let w = Wallet::open(new, at(0), &mut ids).unwrap().wallet;
        let mut n = 0u128;
        let mut buy = || {
            n += 1;
            InvoiceId::from_ulid(Ulid::from_parts(8, n))
        };
        assert!(w.run_rules(2_000, at(1), &mut buy, &mut ids).is_none());
        let fired = w.run_rules(1_999, at(1), &mut buy, &mut ids).unwrap();
        assert!(fired.signals.contains(&WalletSignal::LowBalance));
        assert_eq!(fired.purchase().unwrap().amount.get(), 5_000);
        // Still under: nothing more.
        assert!(fired
            .wallet
            .run_rules(500, at(2), &mut buy, &mut ids)
            .is_none());
        // Back above re-arms, without firing.
        let rearmed = fired
            .wallet
            .run_rules(6_000, at(3), &mut buy, &mut ids)
            .unwrap();
        assert!(rearmed.signals.is_empty() && rearmed.purchase().is_none());
        assert!(rearmed
            .wallet
            .run_rules(100, at(4), &mut buy, &mut ids)
            .is_some_and(|c| c.signals.contains(&WalletSignal::LowBalance)));
    }

    /// Usage that is not invoiced yet is seen by the periodic check: a quarter of an hour
    /// after the last while the ongoing balance moves, twice as long each time it stood
    /// still (up to a day); it fires once per crossing.
    #[test]
    fn the_threshold_check_comes_back_sooner_while_usage_moves() {
        let mut ids = counter();
        let mut new = new_wallet("1", "100", None);
        new.rules = vec![NewRule {
            interval: None,
            threshold_credits: Some(dec("50")),
            granted_credits: dec("20"),
            paid_credits: dec("0"),
        }];
        let mut w = Wallet::open(new, at(0), &mut ids).unwrap().wallet;
        let mut buy = || InvoiceId::from_ulid(Ulid::from_parts(8, 1));
        assert_eq!(w.next_due(), Some(at(15 * 60)));
        // Not due yet: nothing, whatever the ongoing balance.
        assert!(w.run_rules(10_000, at(60), &mut buy, &mut ids).is_none());
        let mut t = 15 * 60;
        let mut waits = Vec::new();
        for _ in 0..9 {
            let change = w.run_rules(10_000, at(t), &mut buy, &mut ids).unwrap();
            assert!(change.signals.is_empty() && change.transactions.is_empty());
            w = change.wallet;
            // Run again at the same moment: nothing more to write.
            assert!(w.run_rules(10_000, at(t), &mut buy, &mut ids).is_none());
            let next = w.next_due().unwrap();
            waits.push(next.duration_since(at(t)).as_mins());
            t = next.as_second() - 1_800_000_000;
        }
        assert_eq!(waits, vec![15, 30, 60, 120, 240, 480, 960, 1440, 1440]);
        // Usage arrived: 60 credits not invoiced yet, the ongoing balance is 40 credits.
        let fired = w.run_rules(4_000, at(t), &mut buy, &mut ids).unwrap();
        assert_eq!(fired.signals[0], WalletSignal::LowBalance);
        assert_eq!(fired.wallet.balance.get(), 12_000);
        assert_eq!(fired.wallet.next_due(), Some(at(t + 15 * 60)));
        // Still under at the next check (more usage came): it does not fire again.
        let w = fired.wallet;
        let t = t + 15 * 60;
        let later = w.run_rules(4_500, at(t), &mut buy, &mut ids).unwrap();
        assert!(later.signals.is_empty() && later.transactions.is_empty());
        assert_eq!(later.wallet.balance.get(), 12_000);
    }

    #[test]
    fn an_interval_rule_tops_up_on_its_schedule() {
        let mut ids = counter();
        let mut new = new_wallet("1", "0", None);
        new.granted_credits = dec("1");
        new.rules = vec![NewRule {
            interval: Some(TopUpInterval::Weekly),
            threshold_credits: None,
            granted_credits: dec("10"),
            paid_credits: dec("0"),
        }];
        let w = Wallet::open(new, at(0), &mut ids).unwrap().wallet;
        let week = at(7 * 86_400);
        assert_eq!(w.next_due(), Some(week));
        let mut buy = || InvoiceId::from_ulid(Ulid::from_parts(8, 1));
        assert!(w.run_rules(0, at(10), &mut buy, &mut ids).is_none());
        let change = w.run_rules(0, week, &mut buy, &mut ids).unwrap();
        assert_eq!(change.wallet.balance.get(), 1_100);
        assert_eq!(change.wallet.next_due(), Some(at(14 * 86_400)));
        // Run again at the same moment: not due any more.
        assert!(change
            .wallet
            .run_rules(0, week, &mut buy, &mut ids)
            .is_none());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Grant(u32),
        Buy(u32),
        PayOldest,
        Invoice { total: i64, credit: i64 },
        VoidLast,
        Expire,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u32..5_000).prop_map(Op::Grant),
            (1u32..5_000).prop_map(Op::Buy),
            Just(Op::PayOldest),
            (0i64..8_000, 0i64..3_000).prop_map(|(total, credit)| Op::Invoice { total, credit }),
            Just(Op::VoidLast),
            Just(Op::Expire),
        ]
    }

    proptest! {
        /// Whatever happens to a wallet: its balance is the sum of its settled
        /// transactions, never negative; an invoice's discount, balance credit, wallet
        /// credit and amount due add up to what it charged; each invoice consumes a wallet
        /// at most once and never more than it owed.
        #[test]
        fn the_balance_is_the_sum_of_its_settled_transactions(
            rate in prop_oneof![Just("1"), Just("0.01"), Just("2.5"), Just("0.3333")],
            ops in prop::collection::vec(op(), 1..40),
        ) {
            let mut ids = counter();
            let mut w = Wallet::open(new_wallet(rate, "0", None), at(0), &mut ids)
                .map(|c| c.wallet)
                .or_else(|_| {
                    let mut n = new_wallet(rate, "1", None);
                    n.granted_credits = dec("1");
                    Wallet::open(n, at(0), &mut ids).map(|c| c.wallet)
                })
                .unwrap();
            let mut txs: std::collections::BTreeMap<WalletTransactionId, WalletTransaction> =
                Default::default();
            let mut consumed_invoices: Vec<Invoice> = Vec::new();
            let mut n = 10u128;
            for (step, op) in ops.into_iter().enumerate() {
                let now = at(step as i64 + 1);
                n += 1;
                let change = match op {
                    Op::Grant(c) => w.top_up(Decimal::from(c), None, now, &mut ids).ok(),
                    Op::Buy(c) => w.top_up(Decimal::ZERO, Some(Purchase {
                        invoice_id: InvoiceId::from_ulid(Ulid::from_parts(6, n)),
                        credits: Decimal::from(c),
                    }), now, &mut ids).ok(),
                    Op::PayOldest => w.pending_top_ups.first().map(|p| p.invoice_id)
                        .and_then(|i| w.settle_purchase(i, now, &mut ids)),
                    Op::Invoice { total, credit } => {
                        let draft = invoice(n, total, credit.min(total));
                        match w.consume(&draft, now, &mut ids) {
                            Some((inv, change)) => {
                                prop_assert_eq!(
                                    inv.subtotal.get() + inv.tax_total.get() - inv.discount_total.get(),
                                    inv.total.get()
                                );
                                prop_assert_eq!(
                                    inv.credit_total.get() + inv.wallet_total.get() + inv.amount_due.get(),
                                    inv.total.get()
                                );
                                prop_assert!(inv.wallet_total.get() <= draft.amount_due.get());
                                prop_assert!(change.wallet.consume(&inv, now, &mut ids).is_none());
                                consumed_invoices.push(inv);
                                Some(change)
                            }
                            None => None,
                        }
                    }
                    Op::VoidLast => consumed_invoices.pop()
                        .and_then(|inv| w.restore(&inv, now, &mut ids)),
                    Op::Expire => {
                        w.expires_at = Some(now);
                        let c = w.expire(now, &mut ids);
                        if c.is_none() { w.expires_at = None; }
                        c
                    }
                };
                if let Some(change) = change {
                    prop_assert_eq!(change.previous_version, w.version);
                    for tx in change.transactions {
                        txs.insert(tx.id, tx);
                    }
                    w = change.wallet;
                }
                let settled: i64 = txs.values()
                    .filter(|t| t.status == WalletTransactionStatus::Settled)
                    .map(|t| t.amount.get())
                    .sum();
                prop_assert_eq!(settled, w.balance.get());
                prop_assert!(w.balance.get() >= 0);
                let pending: i64 = txs.values()
                    .filter(|t| t.status == WalletTransactionStatus::Pending)
                    .map(|t| t.amount.get())
                    .sum();
                let waiting: i64 = w.pending_top_ups.iter().map(|p| p.amount.get()).sum();
                prop_assert_eq!(pending, waiting);
            }
        }
    }
}
