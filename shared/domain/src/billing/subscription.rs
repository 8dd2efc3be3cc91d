//! Subscriptions and their lifecycle: the state machine, when each transition falls due, and
//! what each one bills. Every function takes `now`; nothing here reads a clock.
//!
//! ```text
//!            trial ends                period ends (renew)
//!  trialing ───────────► active ◄───────────────┐
//!     │                   │  │ │────────────────┘
//!     │ cancel            │  │ └─ payment fails ──► past_due ── paid ──► active
//!     ▼                   │  └─ pause ──► paused ── resume ──► active
//!  cancelled ◄────────────┘              │ (resumes_at, or 90 days → cancelled)
//!     (now, or at period end)            ▼
//!                                     cancelled
//! ```
//!
//! Billing rule: the recurring fee is billed for a period at its start (in advance) or at its
//! end (in arrears); the first fee is billed at trial end, or at start without a trial.
//! A pause bills nothing: at resume the subscription starts a fresh period and the unused part
//! of the period paid before the pause is credited on that invoice.

use crate::events::types::EventType;
use crate::kernel::error::ErrorCode;
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::billing::invoice_draft::{Discount, LineInput, LineSource};
use crate::billing::periods::{BillingCycle, BillingTiming, Interval, Period};
use crate::billing::price_notice::{Migration, PriceNotice};
use crate::billing::proration::{
    self, ChangeDirection, ChangePolicy, Fraction, PlanPrice, ProrationConvention, ProrationItem,
};
use crate::catalog::capacity::Capacity;
use crate::catalog::charges::{ChargeModel, Commitment, PricingError, Usage};
use crate::catalog::plan::{validate_trial, NotPricedIn, Plan, PlanVersion};
use crate::coupons::discount::{bill_period, AppliedDiscount};
use crate::kernel::currency::Currency;
use crate::kernel::error::ValidationError;
use crate::kernel::ids::{AccountId, PlanId, SubscriptionId, TestClockId};
use crate::kernel::metadata::{self, Metadata};
use crate::kernel::money::Money;
use crate::kernel::time;
use crate::tax::rates::TaxBehavior;

/// `subscription.trial_will_end` fires this long before a trial ends.
pub const TRIAL_WARNING: SignedDuration = SignedDuration::from_hours(72);
/// A subscription paused longer than this is cancelled (configurable per call).
pub const DEFAULT_MAX_PAUSE: SignedDuration = SignedDuration::from_hours(90 * 24);
/// How often a subscription suspended by its account's block looks whether the account
/// was unblocked (a suspension is a pause, so `max_pause_days` still ends it).
pub const SUSPENSION_CHECK: SignedDuration = SignedDuration::from_hours(24);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Paused,
    Cancelled,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Paused => "paused",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CollectionMethod {
    ChargeAutomatically,
    SendInvoice,
}

/// A plan version's prices in the subscription's currency: a snapshot, so billing never
/// depends on the catalog changing later and needs no catalog read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionTerms {
    #[schema(value_type = String)]
    pub plan_id: PlanId,
    pub plan_version: u32,
    pub plan_name: String,
    pub interval: Interval,
    pub billing_timing: BillingTiming,
    pub proration: ProrationConvention,
    pub recurring_fee: Option<ChargeModel>,
    /// The recurring fee's `tax_behavior` (absent: the tenant's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurring_fee_tax_behavior: Option<TaxBehavior>,
    pub usage_charges: Vec<UsageTerm>,
    /// Kill Bill capacity charges, billed in arrears with the usage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_charges: Vec<CapacityTerm>,
    /// Limits per period on metrics (quotas).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<crate::usage::entitlements::Entitlement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageTerm {
    pub metric: String,
    pub model: ChargeModel,
    pub commitment: Option<Commitment>,
    /// Prorate the quantity in a partial period (Lago's prorated charges).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prorated: bool,
    /// The charge's `tax_behavior` (absent: the tenant's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_behavior: Option<TaxBehavior>,
}

impl UsageTerm {
    /// The usage to price for a period that is `fraction` of its cycle period: a prorated
    /// charge prices the quantity times the fraction (rounded to 12 decimals), and a volume
    /// price still chooses its tier by the whole quantity (`Usage::Prorated`).
    pub fn prorate(&self, usage: Usage, fraction: Option<Fraction>) -> Usage {
        match (fraction, usage) {
            (Some(f), Usage::Quantity { quantity }) if self.prorated && f.denominator > 0 => {
                let prorated = (quantity * Decimal::from(f.numerator)
                    / Decimal::from(f.denominator))
                .round_dp(12);
                match self.model {
                    ChargeModel::Volume(_) => Usage::Prorated {
                        quantity: prorated,
                        full_quantity: quantity,
                    },
                    _ => Usage::quantity(prorated),
                }
            }
            (_, usage) => usage,
        }
    }

    /// This charge's line for `period` at `usage` (usage is billed in arrears).
    pub fn line(&self, usage: Usage, period: Period) -> LineInput {
        LineInput {
            id: Some(format!("usage:{}", self.metric)),
            description: format!("Usage: {}", self.metric),
            period: Some(period),
            source: LineSource::Charge {
                model: self.model.clone(),
                usage,
                commitment: self.commitment,
            },
            tax_rates: Vec::new(),
            tax_behavior: self.tax_behavior,
            discountable: true,
        }
    }
}

/// A capacity charge in the subscription's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CapacityTerm {
    pub code: String,
    pub capacity: Capacity,
    /// The charge's `tax_behavior` (absent: the tenant's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_behavior: Option<TaxBehavior>,
}

impl CapacityTerm {
    /// The metrics whose usage chooses the tier.
    pub fn metrics(&self) -> impl Iterator<Item = &String> {
        self.capacity
            .tiers
            .first()
            .into_iter()
            .flat_map(|t| t.limits.keys())
    }

    /// This charge's line for `period` at the period's usage per metric (absent: none).
    pub fn line(
        &self,
        usage: &BTreeMap<String, Decimal>,
        period: Period,
        currency: Currency,
    ) -> Result<LineInput, PricingError> {
        let priced = self.capacity.price(usage, currency)?;
        let tier = priced
            .tier
            .map_or_else(|| "no usage".to_owned(), |t| format!("tier {}", t + 1));
        Ok(LineInput {
            id: Some(format!("capacity:{}", self.code)),
            description: format!("Capacity: {} ({tier})", self.code),
            period: Some(period),
            source: LineSource::Fixed {
                amount: priced.amount.minor,
                quantity: None,
            },
            tax_rates: Vec::new(),
            tax_behavior: self.tax_behavior,
            discountable: true,
        })
    }
}

impl SubscriptionTerms {
    pub fn of(plan: &Plan, version: &PlanVersion, currency: Currency) -> Result<Self, NotPricedIn> {
        version.require_currency(currency)?;
        Ok(SubscriptionTerms {
            plan_id: plan.id,
            plan_version: version.number,
            plan_name: plan.name.clone(),
            interval: plan.interval,
            billing_timing: plan.billing_timing,
            proration: plan.proration,
            recurring_fee: version.recurring_fee_in(currency).cloned(),
            recurring_fee_tax_behavior: version.recurring_fee.as_ref().and_then(|f| f.tax_behavior),
            usage_charges: version
                .usage_charges
                .iter()
                .filter_map(|c| {
                    Some(UsageTerm {
                        metric: c.metric.clone(),
                        model: c.prices.get(&currency)?.clone(),
                        commitment: c.commitment,
                        prorated: c.prorated,
                        tax_behavior: c.tax_behavior,
                    })
                })
                .collect(),
            capacity_charges: version
                .capacity_charges
                .iter()
                .filter_map(|c| {
                    Some(CapacityTerm {
                        code: c.code.clone(),
                        capacity: c.prices.get(&currency)?.clone(),
                        tax_behavior: c.tax_behavior,
                    })
                })
                .collect(),
            entitlements: version.entitlements.clone(),
        })
    }

    /// The `tax_behavior` of the usage charge on `metric`.
    pub fn usage_charge_tax_behavior(&self, metric: &str) -> Option<TaxBehavior> {
        self.usage_charges
            .iter()
            .find(|c| c.metric == metric)
            .and_then(|c| c.tax_behavior)
    }

    /// The full-period recurring fee at `quantity` (zero without a fee).
    pub fn fee(&self, quantity: u64, currency: Currency) -> Result<Money, SubscriptionError> {
        match &self.recurring_fee {
            None => Ok(Money::zero(currency)),
            Some(model) => Ok(model
                .price_quantity(Decimal::from(quantity), currency)
                .map_err(|e| SubscriptionError::Pricing(e.to_string()))?
                .amount),
        }
    }
}

/// A plan change waiting for the end of the period (a downgrade).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduledChange {
    pub terms: SubscriptionTerms,
    pub quantity: u64,
    #[schema(value_type = String, format = DateTime)]
    pub effective_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "sub_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "account_id": "acct_01JD3X7M2Q8Z5V6W9Y0A1B2C3E",
    "status": "active", "currency": "usd", "quantity": 3, "collection_method": "charge_automatically",
    "current_period": {"start": "2026-11-22T10:00:00Z", "end": "2026-12-22T10:00:00Z"}
}))]
pub struct Subscription {
    #[schema(value_type = String)]
    pub id: SubscriptionId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// Set when the account lives on a test clock; the subscription then runs on its time.
    #[schema(value_type = Option<String>)]
    pub test_clock: Option<TestClockId>,
    pub livemode: bool,
    pub status: SubscriptionStatus,
    #[schema(value_type = String)]
    pub currency: Currency,
    pub quantity: u64,
    pub terms: SubscriptionTerms,
    pub collection_method: CollectionMethod,
    pub days_until_due: Option<u32>,
    pub time_zone: String,
    #[schema(value_type = String, format = DateTime)]
    pub billing_anchor: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub trial_end: Option<Timestamp>,
    pub trial_warning_sent: bool,
    /// The period the subscription is in (the trial while trialing).
    #[schema(value_type = Object)]
    pub current_period: Period,
    /// The fee paid in advance for the current period (what a cancellation credits from).
    #[schema(value_type = Object)]
    pub current_period_fee: Money,
    pub cancel_at_period_end: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cancelled_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paused_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resumes_at: Option<Timestamp>,
    /// Paused longer than this many days, the subscription is cancelled.
    pub max_pause_days: u32,
    /// Paused by its account's block (the tenant's dunning policy suspends renewals), not
    /// by a caller: checked again every day and resumed once the account is unblocked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
    pub scheduled_change: Option<ScheduledChange>,
    /// In arrears, after an immediate change: the current terms' fee covers the current period
    /// from this instant (the time before was billed on the old terms). `None`: from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub fee_from: Option<Timestamp>,
    /// Proration items waiting for the next invoice.
    #[schema(value_type = Vec<Object>)]
    pub pending_items: Vec<ProrationItem>,
    /// How many invoices this subscription has produced; part of each invoice's identity.
    pub invoice_count: u32,
    /// The last period whose usage was billed: late usage within the grace window lands
    /// there (see [`crate::usage::meter::place`]).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub last_usage_period: Option<Period>,
    /// Set when billing stopped on a step that cannot be priced: the subscription is
    /// parked (nothing falls due, no worker retries it) until an operator retries billing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_failure: Option<BillingFailure>,
    /// Coupons redeemed on it and still running, applied to each period invoice in this
    /// order (see [`crate::coupons::discount::bill_period`]).
    #[serde(default)]
    pub discounts: Vec<AppliedDiscount>,
    /// The email announcing a price migration with a notice period (see
    /// [`crate::billing::price_notice`]): waiting to be sent, or sent (what it said; kept
    /// until a newer version's notice replaces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_notice: Option<PriceNotice>,
    pub metadata: Metadata,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub version: u64,
}

/// Why and when a subscription's billing was parked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BillingFailure {
    /// Always `failed` while parked.
    pub status: BillingFailureStatus,
    /// What could not be computed.
    pub reason: String,
    /// When the step that failed fell due (the subscription's time).
    #[schema(value_type = String, format = DateTime)]
    pub due_at: Timestamp,
    /// When billing was parked.
    #[schema(value_type = String, format = DateTime)]
    pub failed_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingFailureStatus {
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The action is not allowed in the current state.
    #[error("a {current} subscription cannot {action}")]
    InvalidTransition {
        current: &'static str,
        action: &'static str,
    },
    #[error("pricing failed: {0}")]
    Pricing(String),
    #[error("calendar: {0}")]
    Calendar(String),
}

fn calendar<E: std::fmt::Display>(e: E) -> SubscriptionError {
    SubscriptionError::Calendar(e.to_string())
}

/// Why an invoice is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingReason {
    SubscriptionCreate,
    SubscriptionCycle,
    SubscriptionUpdate,
    SubscriptionResume,
    SubscriptionEnd,
    Manual,
    /// A supplemental invoice for usage that arrived after its period was invoiced.
    LateUsage,
    /// The purchase of prepaid wallet credits: its credits arrive when it is paid.
    WalletTopUp,
}

impl BillingReason {
    /// Whether the invoice is one of the subscription's period invoices (start, renewal,
    /// resume, the last one): those take discounts.
    pub fn is_period(self) -> bool {
        match self {
            BillingReason::SubscriptionCreate
            | BillingReason::SubscriptionCycle
            | BillingReason::SubscriptionResume
            | BillingReason::SubscriptionEnd => true,
            BillingReason::SubscriptionUpdate
            | BillingReason::Manual
            | BillingReason::LateUsage
            | BillingReason::WalletTopUp => false,
        }
    }
}

/// What a transition bills: lines for one invoice of the subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Billing {
    pub reason: BillingReason,
    /// The subscription period the invoice is for.
    pub period: Period,
    pub lines: Vec<LineInput>,
    /// The subscription's discounts this invoice takes (counted down already).
    pub discounts: Vec<Discount>,
}

/// The outcome of one step of the lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub next: Subscription,
    pub billing: Option<Billing>,
    /// Event types, in order (`subscription.renewed`, …).
    pub events: Vec<EventType>,
}

impl Transition {
    /// Bills the usage of `period`, which this step closed, in arrears: its lines join
    /// the step's invoice, or make one of their own when the step bills nothing else.
    pub fn bill_usage(&mut self, period: Period, lines: Vec<LineInput>) {
        self.next.last_usage_period = Some(period);
        match &mut self.billing {
            Some(billing) => billing.lines.extend(lines),
            None => {
                let reason = if self.next.status == SubscriptionStatus::Cancelled {
                    BillingReason::SubscriptionEnd
                } else {
                    BillingReason::SubscriptionCycle
                };
                self.billing = self.next.billing(reason, period, lines);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub id: SubscriptionId,
    pub account_id: AccountId,
    pub test_clock: Option<TestClockId>,
    pub livemode: bool,
    pub currency: Currency,
    pub time_zone: String,
    pub terms: SubscriptionTerms,
    pub quantity: u64,
    /// Plan's trial unless overridden.
    pub trial_days: u32,
    pub start: Timestamp,
    pub billing_anchor: Option<Timestamp>,
    pub collection_method: CollectionMethod,
    pub days_until_due: Option<u32>,
    pub max_pause_days: Option<u32>,
    pub metadata: Metadata,
    /// Discounts it starts with (a coupon redeemed at creation).
    pub discounts: Vec<AppliedDiscount>,
}

/// What the first paid period of a subscription that does not exist would be billed: its
/// recurring fee as the lifecycle bills it (in advance at the start or trial end, prorated
/// to a billing anchor; in arrears at the period's end) and `usage` priced on the plan's
/// usage charges for that period. Lets anyone check the engine's arithmetic.
pub fn first_paid_period(
    input: NewSubscription,
    usage: &BTreeMap<String, Usage>,
) -> Result<Billing, SubscriptionError> {
    let terms = input.terms.clone();
    let charged = |m: &String| {
        terms.usage_charges.iter().any(|c| &c.metric == m)
            || terms
                .capacity_charges
                .iter()
                .any(|c| c.metrics().any(|u| u == m))
    };
    if let Some(metric) = usage.keys().find(|m| !charged(m)) {
        return Err(ValidationError::new(
            ErrorCode::UnknownUsageCharge,
            format!("usage.{metric}"),
            format!("the plan has no usage charge on `{metric}`"),
        )
        .into());
    }
    let start = input.start;
    let mut step = Subscription::start(input, start)?;
    // Start, trial warning, trial end, one period in arrears: a paid period is billed by then.
    for _ in 0..4 {
        let paid = step.next.status == SubscriptionStatus::Active;
        let billing = match step.billing.take() {
            Some(billing) if paid => Some(billing),
            None if paid && terms.recurring_fee.is_none() => Some(Billing {
                reason: BillingReason::SubscriptionCreate,
                period: step.next.current_period,
                lines: Vec::new(),
                discounts: Vec::new(),
            }),
            _ => None,
        };
        if let Some(mut billing) = billing {
            for charge in &terms.usage_charges {
                if let Some(quantity) = usage.get(&charge.metric) {
                    let fraction = step.next.usage_fraction(charge, &billing.period)?;
                    billing.lines.push(
                        charge.line(charge.prorate(quantity.clone(), fraction), billing.period),
                    );
                }
            }
            for charge in &terms.capacity_charges {
                let mut units = BTreeMap::new();
                for metric in charge.metrics() {
                    match usage.get(metric) {
                        Some(Usage::Quantity { quantity }) => {
                            units.insert(metric.clone(), *quantity);
                        }
                        Some(_) => {
                            return Err(ValidationError::new(
                                ErrorCode::InvalidUsage,
                                format!("usage.{metric}"),
                                "a capacity charge takes a quantity per metric",
                            )
                            .into())
                        }
                        None => {}
                    }
                }
                let line = charge
                    .line(&units, billing.period, step.next.currency)
                    .map_err(|e| SubscriptionError::Pricing(e.to_string()))?;
                billing.lines.push(line);
            }
            return Ok(billing);
        }
        let Some(due) = step.next.due_at() else { break };
        match step.next.advance(due)? {
            Some(next) => step = next,
            None => break,
        }
    }
    Err(SubscriptionError::Pricing(
        "the subscription reaches no paid period".into(),
    ))
}

impl Subscription {
    fn cycle(&self) -> Result<BillingCycle, SubscriptionError> {
        BillingCycle::new(self.terms.interval, self.billing_anchor, &self.time_zone)
            .map_err(calendar)
    }

    fn invalid(&self, action: &'static str) -> SubscriptionError {
        SubscriptionError::InvalidTransition {
            current: self.status.as_str(),
            action,
        }
    }

    /// Starts a subscription: trialing with a trial, else active with its first period billed.
    pub fn start(input: NewSubscription, now: Timestamp) -> Result<Transition, SubscriptionError> {
        metadata::validate(&input.metadata)?;
        // Bounded first, so that the calendar arithmetic below cannot overflow.
        time::supported(input.start, "start_date")?;
        if let Some(anchor) = input.billing_anchor {
            time::supported(anchor, "billing_anchor")?;
        }
        validate_trial(input.trial_days)?;
        if let Some(days) = input.days_until_due {
            time::days(days, "days_until_due")?;
        }
        if let Some(days) = input.max_pause_days {
            time::days(days, "max_pause_days")?;
        }
        if input.quantity == 0 || input.quantity > 1_000_000 {
            return Err(ValidationError::new(
                ErrorCode::InvalidQuantity,
                "quantity",
                "quantity must be 1 to 1,000,000",
            )
            .into());
        }
        if input.collection_method == CollectionMethod::SendInvoice
            && input.days_until_due.is_none()
        {
            return Err(ValidationError::new(
                ErrorCode::MissingDaysUntilDue,
                "days_until_due",
                "send_invoice subscriptions need days_until_due",
            )
            .into());
        }
        let trial_end = (input.trial_days > 0)
            .then(|| {
                input
                    .start
                    .checked_add(SignedDuration::from_hours(24 * i64::from(input.trial_days)))
            })
            .transpose()
            .map_err(calendar)?;
        let paid_from = trial_end.unwrap_or(input.start);
        let anchor = input.billing_anchor.unwrap_or(paid_from);
        if anchor < paid_from {
            return Err(ValidationError::new(
                ErrorCode::InvalidBillingAnchor,
                "billing_anchor",
                "the billing anchor cannot be before the first paid moment (start or trial end)",
            )
            .into());
        }
        let initial_period = match trial_end {
            Some(end) => Period::new(input.start, end).map_err(calendar)?,
            None => {
                BillingCycle::new(input.terms.interval, anchor, &input.time_zone)
                    .and_then(|c| c.first_period(paid_from))
                    .map_err(calendar)?
                    .period
            }
        };
        let mut sub = Subscription {
            id: input.id,
            account_id: input.account_id,
            test_clock: input.test_clock,
            livemode: input.livemode,
            status: SubscriptionStatus::Trialing,
            currency: input.currency,
            quantity: input.quantity,
            terms: input.terms,
            collection_method: input.collection_method,
            days_until_due: input.days_until_due,
            time_zone: input.time_zone,
            billing_anchor: anchor,
            started_at: input.start,
            trial_end,
            trial_warning_sent: false,
            current_period: initial_period,
            current_period_fee: Money::zero(input.currency),
            cancel_at_period_end: false,
            cancelled_at: None,
            ended_at: None,
            paused_at: None,
            resumes_at: None,
            max_pause_days: input.max_pause_days.unwrap_or(90),
            scheduled_change: None,
            fee_from: None,
            pending_items: Vec::new(),
            invoice_count: 0,
            last_usage_period: None,
            billing_failure: None,
            suspended: false,
            discounts: input.discounts,
            price_notice: None,
            metadata: input.metadata,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let mut events = vec![EventType::SubscriptionCreated];
        if trial_end.is_some() {
            return Ok(Transition {
                next: sub,
                billing: None,
                events,
            });
        }
        let (next, billing) =
            sub.begin_paid_period(paid_from, BillingReason::SubscriptionCreate)?;
        sub = next;
        events.push(EventType::SubscriptionActivated);
        Ok(Transition {
            next: sub,
            billing,
            events,
        })
    }

    /// Enters the period that starts at `from` (which may be partial when the anchor lies
    /// later) and bills what is due then.
    fn begin_paid_period(
        &self,
        from: Timestamp,
        reason: BillingReason,
    ) -> Result<(Subscription, Option<Billing>), SubscriptionError> {
        let cycle = self.cycle()?;
        let first = cycle.first_period(from).map_err(calendar)?;
        let mut next = self.clone();
        next.status = SubscriptionStatus::Active;
        next.current_period = first.period;
        next.fee_from = None;
        let full_fee = self.terms.fee(self.quantity, self.currency)?;
        let mut lines = std::mem::take(&mut next.pending_items)
            .into_iter()
            .map(proration_line)
            .collect::<Vec<_>>();
        let fee = if first.partial {
            proration::charge_for(
                full_fee,
                &first.period,
                &first.full,
                self.terms.proration,
                cycle.time_zone(),
            )
            .map_err(calendar)?
            .amount
        } else {
            full_fee
        };
        if self.terms.billing_timing == BillingTiming::InAdvance {
            next.current_period_fee = fee;
            if let Some(line) =
                self.fee_line(&first.period, first.partial.then_some((&first.full, fee)))
            {
                lines.insert(0, line);
            }
        } else {
            next.current_period_fee = Money::zero(self.currency);
        }
        let billing = next.billing(reason, first.period, lines);
        Ok((next, billing))
    }

    fn billing(
        &mut self,
        reason: BillingReason,
        period: Period,
        lines: Vec<LineInput>,
    ) -> Option<Billing> {
        if lines.is_empty() {
            return None;
        }
        self.invoice_count += 1;
        // Period invoices take the discounts and count them down; a mid-period change's
        // prorations do not (Stripe's repeating discounts run in billing periods too).
        let discounts = if reason.is_period() {
            bill_period(&mut self.discounts, self.terms.plan_id)
        } else {
            Vec::new()
        };
        Some(Billing {
            reason,
            period,
            lines,
            discounts,
        })
    }

    /// The recurring-fee line for `period`; a partial period is billed at `prorated`.
    fn fee_line(&self, period: &Period, prorated: Option<(&Period, Money)>) -> Option<LineInput> {
        let model = self.terms.recurring_fee.clone()?;
        let description = format!("{} × {}", self.quantity, self.terms.plan_name);
        let source = match prorated {
            None => LineSource::Charge {
                model,
                usage: Usage::quantity(Decimal::from(self.quantity)),
                commitment: None,
            },
            Some((_, amount)) => LineSource::Fixed {
                amount: amount.minor,
                quantity: Some(Decimal::from(self.quantity)),
            },
        };
        Some(LineInput {
            id: Some("recurring_fee".into()),
            description: match prorated {
                None => description,
                Some(_) => format!("{description} (partial period)"),
            },
            period: Some(*period),
            source,
            tax_rates: Vec::new(),
            tax_behavior: self.terms.recurring_fee_tax_behavior,
            discountable: true,
        })
    }

    /// The cycle period (full length) that `slice` lies in, the whole a prorated fee is part of.
    fn full_period_of(&self, slice: &Period) -> Result<Period, SubscriptionError> {
        let cycle = self.cycle()?;
        cycle
            .index_at(slice.start)
            .and_then(|k| cycle.period(k))
            .map_err(calendar)
    }

    /// The fraction of its cycle period that `period` (a usage period a step closes) is, when
    /// `term` is prorated and the period is partial; `None` otherwise.
    pub fn usage_fraction(
        &self,
        term: &UsageTerm,
        period: &Period,
    ) -> Result<Option<Fraction>, SubscriptionError> {
        if !term.prorated {
            return Ok(None);
        }
        let full = self.full_period_of(period)?;
        if full == *period || !full.covers(period) {
            return Ok(None);
        }
        let tz = self.cycle()?.time_zone().clone();
        proration::fraction(self.terms.proration, period, &full, &tz)
            .map(Some)
            .map_err(calendar)
    }

    /// The in-arrears recurring fee for the current terms over `period` (from `fee_from` after
    /// an immediate change): the full fee for a full cycle period, else prorated by the plan's
    /// convention over the cycle period (a start off the anchor, a trial ending mid-period, a
    /// change).
    fn arrears_fee_line(&self, period: &Period) -> Result<Option<LineInput>, SubscriptionError> {
        if self.terms.recurring_fee.is_none() {
            return Ok(None);
        }
        let billable = match self.fee_from {
            Some(from) => period.from(from),
            None => Some(*period),
        };
        let Some(billable) = billable else {
            return Ok(None);
        };
        let full = self.full_period_of(period)?;
        if billable == full {
            return Ok(self.fee_line(&billable, None));
        }
        let tz = self.cycle()?.time_zone().clone();
        let fee = self.terms.fee(self.quantity, self.currency)?;
        let item = proration::charge_for(fee, &billable, &full, self.terms.proration, &tz)
            .map_err(calendar)?;
        Ok(self.fee_line(&billable, Some((&full, item.amount))))
    }

    /// In arrears: the fee of the current terms for the time used of the current period up to
    /// `at` (a cancellation, a pause), prorated; `None` for an empty stub.
    fn used_fee_item(&self, at: Timestamp) -> Result<Option<ProrationItem>, SubscriptionError> {
        if self.terms.billing_timing != BillingTiming::InArrears
            || self.terms.recurring_fee.is_none()
            || self.status == SubscriptionStatus::Trialing
        {
            return Ok(None);
        }
        let tz = self.cycle()?.time_zone().clone();
        let from = self
            .fee_from
            .unwrap_or(self.current_period.start)
            .max(self.current_period.start);
        let Some(billable) = self.current_period.from(from) else {
            return Ok(None);
        };
        let used = proration::used_until(&billable, at, self.terms.proration, &tz);
        let full = self.full_period_of(&self.current_period)?;
        let fee = self.terms.fee(self.quantity, self.currency)?;
        let item = proration::charge_used(fee, used, &full, self.terms.proration, &tz)
            .map_err(calendar)?;
        Ok(item.map(|i| i.priced(self.terms.recurring_fee_tax_behavior)))
    }

    /// When the next transition falls due, if any.
    pub fn due_at(&self) -> Option<Timestamp> {
        if self.billing_failure.is_some() {
            return None;
        }
        match self.status {
            SubscriptionStatus::Cancelled => None,
            SubscriptionStatus::Paused => {
                let paused_at = self.paused_at?;
                let limit = paused_at
                    .checked_add(SignedDuration::from_hours(
                        24 * i64::from(self.max_pause_days),
                    ))
                    .ok()?;
                Some(self.resumes_at.map_or(limit, |r| r.min(limit)))
            }
            SubscriptionStatus::Trialing => {
                let end = self.trial_end?;
                let warning = end.checked_sub(TRIAL_WARNING).ok()?;
                Some(if self.trial_warning_sent || warning <= self.started_at {
                    end
                } else {
                    warning
                })
            }
            SubscriptionStatus::Active | SubscriptionStatus::PastDue => Some(
                self.price_notice
                    .as_ref()
                    .and_then(PriceNotice::pending_at)
                    .map_or(self.current_period.end, |send_at| {
                        send_at.min(self.current_period.end)
                    }),
            ),
        }
    }

    /// Performs the transition due at or before `now`, or `None` when nothing is due (a
    /// duplicate or early delivery: safe to ignore).
    pub fn advance(&self, now: Timestamp) -> Result<Option<Transition>, SubscriptionError> {
        self.advance_migrating(now, None)
    }

    /// [`Subscription::advance`], moving to `migration` (a later version of its plan that
    /// moves existing subscriptions, priced in its currency) if the step renews it into a
    /// new period and the version's notice allows (see [`Migration::allowed`]): the new
    /// period is billed at the new prices, and `subscription.price_migrated` comes before
    /// `subscription.renewed`. A renewal the notice does not allow yet keeps the old
    /// prices and arms the notice if none was. A scheduled change taking effect at the same
    /// renewal wins (its terms are the newer choice). For the step that sends a price
    /// notice, `migration` is the version it announces.
    pub fn advance_migrating(
        &self,
        now: Timestamp,
        migration: Option<Migration>,
    ) -> Result<Option<Transition>, SubscriptionError> {
        let Some(due) = self.due_at().filter(|d| *d <= now) else {
            return Ok(None);
        };
        let mut next = self.clone();
        next.updated_at = now;
        next.version += 1;
        let transition = match self.status {
            SubscriptionStatus::Cancelled => return Ok(None),
            SubscriptionStatus::Trialing if self.trial_end.is_some_and(|e| due < e) => {
                next.trial_warning_sent = true;
                Transition {
                    next,
                    billing: None,
                    events: vec![EventType::SubscriptionTrialWillEnd],
                }
            }
            SubscriptionStatus::Trialing => {
                let (next, billing) =
                    next.begin_paid_period(due, BillingReason::SubscriptionCycle)?;
                Transition {
                    next,
                    billing,
                    events: vec![
                        EventType::SubscriptionTrialEnded,
                        EventType::SubscriptionActivated,
                    ],
                }
            }
            SubscriptionStatus::Paused => {
                if self.resumes_at.is_some_and(|r| r <= due) {
                    let (next, billing) = next.resume_at(due)?;
                    Transition {
                        next,
                        billing,
                        events: vec![EventType::SubscriptionResumed],
                    }
                } else {
                    next.end(due);
                    Transition {
                        next,
                        billing: None,
                        events: vec![EventType::SubscriptionCancelled],
                    }
                }
            }
            SubscriptionStatus::Active | SubscriptionStatus::PastDue
                if due < self.current_period.end =>
            {
                next.send_price_notice(due, migration)?
            }
            SubscriptionStatus::Active | SubscriptionStatus::PastDue => {
                next.renew(due, migration)?
            }
        };
        Ok(Some(transition))
    }

    /// The step at `at`, before the period ends, that sends the price notice: what it says
    /// is recorded on the notice (the event carries it). A notice whose version no longer
    /// applies (`migration` is another, or none: the plan changed), or to a subscription
    /// ending at this period's end, is dropped unsent.
    fn send_price_notice(
        mut self,
        at: Timestamp,
        migration: Option<Migration>,
    ) -> Result<Transition, SubscriptionError> {
        let dropped = |next| Transition {
            next,
            billing: None,
            events: vec![EventType::SubscriptionUpdated],
        };
        let announced = self.price_notice.take();
        let (Some(mut notice), Some(migration)) = (announced, migration) else {
            return Ok(dropped(self));
        };
        if migration.terms.plan_id != self.terms.plan_id
            || migration.terms.plan_version != notice.plan_version
            || self.cancel_at_period_end
        {
            return Ok(dropped(self));
        }
        notice.sent_at = Some(at);
        let earliest = migration
            .earliest_with(Some(&notice))
            .unwrap_or(self.current_period.end);
        notice.effective_at = Some(self.first_renewal_from(earliest)?);
        notice.old_amount = Some(self.terms.fee(self.quantity, self.currency)?);
        notice.new_amount = Some(migration.terms.fee(self.quantity, self.currency)?);
        self.price_notice = Some(notice);
        Ok(Transition {
            next: self,
            billing: None,
            events: vec![EventType::SubscriptionPriceChangeNotice],
        })
    }

    /// The first renewal (a period boundary after the current period's start) at or
    /// after `t`.
    fn first_renewal_from(&self, t: Timestamp) -> Result<Timestamp, SubscriptionError> {
        if t <= self.current_period.end {
            return Ok(self.current_period.end);
        }
        let cycle = self.cycle()?;
        let period = cycle
            .period(cycle.index_at(t).map_err(calendar)?)
            .map_err(calendar)?;
        Ok(if period.start == t { t } else { period.end })
    }

    /// The subscription with `migration`'s notice armed at `now`, if it needs one: the
    /// version has a notice period, the subscription is in a paid period (a trial or a
    /// pause arms it at its first renewal) and has no notice of it or a newer version. It
    /// is sent `notice_days` before the first renewal the version can take, or at once.
    pub fn arm_price_notice(
        &self,
        migration: &Migration,
        now: Timestamp,
    ) -> Result<Option<Subscription>, SubscriptionError> {
        let armed = self
            .price_notice
            .as_ref()
            .is_some_and(|n| n.plan_version >= migration.terms.plan_version);
        if migration.notice_days == 0
            || armed
            || self.billing_failure.is_some()
            || self.cancel_at_period_end
            || migration.terms.plan_id != self.terms.plan_id
            || migration.terms.plan_version <= self.terms.plan_version
            || !matches!(
                self.status,
                SubscriptionStatus::Active | SubscriptionStatus::PastDue
            )
        {
            return Ok(None);
        }
        let renewal = self.first_renewal_from(migration.effective_from)?;
        let mut next = self.changed(now);
        next.price_notice = Some(PriceNotice::armed(
            migration,
            migration.send_at(renewal, now),
        ));
        Ok(Some(next))
    }

    fn end(&mut self, at: Timestamp) {
        self.status = SubscriptionStatus::Cancelled;
        self.cancelled_at.get_or_insert(at);
        self.ended_at = Some(at);
        self.scheduled_change = None;
    }

    /// The current period ended at `at`: bill in arrears what was used, then either end the
    /// subscription or start the next period (applying a scheduled change first).
    fn renew(
        mut self,
        at: Timestamp,
        migration: Option<Migration>,
    ) -> Result<Transition, SubscriptionError> {
        let ended = self.current_period;
        let mut arrears = Vec::new();
        if self.terms.billing_timing == BillingTiming::InArrears {
            arrears.extend(self.arrears_fee_line(&ended)?);
        }
        self.fee_from = None;
        if self.cancel_at_period_end {
            self.end(at);
            let mut lines = std::mem::take(&mut self.pending_items)
                .into_iter()
                .map(proration_line)
                .collect::<Vec<_>>();
            lines.extend(arrears);
            let billing = self.billing(BillingReason::SubscriptionEnd, ended, lines);
            return Ok(Transition {
                next: self,
                billing,
                events: vec![EventType::SubscriptionCancelled],
            });
        }
        let mut events = Vec::new();
        let mut waiting = None;
        if let Some(change) = self.scheduled_change.take() {
            // Another interval starts a cycle of its own here.
            if change.terms.interval != self.terms.interval {
                self.billing_anchor = at;
            }
            self.terms = change.terms;
            self.quantity = change.quantity;
            events.push(EventType::SubscriptionPlanChanged);
        } else if let Some(migration) = migration.filter(|m| {
            m.terms.plan_id == self.terms.plan_id && m.terms.plan_version > self.terms.plan_version
        }) {
            if migration.allowed(self.price_notice.as_ref(), at) {
                self.terms = migration.terms;
                events.push(EventType::SubscriptionPriceMigrated);
            } else {
                waiting = Some(migration);
            }
        }
        let cycle = self.cycle()?;
        let k = cycle.index_at(at).map_err(calendar)?;
        let period = cycle.period(k).map_err(calendar)?;
        self.current_period = period;
        let mut lines = arrears;
        lines.extend(
            std::mem::take(&mut self.pending_items)
                .into_iter()
                .map(proration_line),
        );
        if self.terms.billing_timing == BillingTiming::InAdvance {
            self.current_period_fee = self.terms.fee(self.quantity, self.currency)?;
            lines.extend(self.fee_line(&period, None));
        }
        let billing = self.billing(BillingReason::SubscriptionCycle, period, lines);
        events.push(EventType::SubscriptionRenewed);
        // Too soon for the version's notice: armed now, if it was not at publishing.
        if let Some(armed) = waiting
            .map(|m| self.arm_price_notice(&m, at))
            .transpose()?
            .flatten()
        {
            self.price_notice = armed.price_notice;
        }
        Ok(Transition {
            next: self,
            billing,
            events,
        })
    }

    fn resume_at(
        mut self,
        at: Timestamp,
    ) -> Result<(Subscription, Option<Billing>), SubscriptionError> {
        if let Some(paused_at) = self.paused_at {
            let used = self.used_fee_item(paused_at)?;
            self.pending_items.extend(used);
            let tz = self.cycle()?.time_zone().clone();
            let credit = proration::credit_unused(
                self.current_period_fee,
                &self.current_period,
                paused_at,
                self.terms.proration,
                &tz,
            )
            .map_err(calendar)?
            .map(|c| c.priced(self.terms.recurring_fee_tax_behavior));
            self.pending_items.extend(credit);
        }
        self.paused_at = None;
        self.resumes_at = None;
        self.suspended = false;
        self.billing_anchor = at;
        self.begin_paid_period(at, BillingReason::SubscriptionResume)
    }

    fn changed(&self, now: Timestamp) -> Subscription {
        let mut next = self.clone();
        next.updated_at = now;
        next.version += 1;
        next
    }

    /// Cancels now (optionally crediting unused time on a final invoice) or at period end.
    pub fn cancel(
        &self,
        at_period_end: bool,
        prorate: bool,
        now: Timestamp,
    ) -> Result<Transition, SubscriptionError> {
        if self.status == SubscriptionStatus::Cancelled {
            return Err(self.invalid("be cancelled"));
        }
        let mut next = self.changed(now);
        if at_period_end
            && matches!(
                self.status,
                SubscriptionStatus::Active | SubscriptionStatus::PastDue
            )
        {
            next.cancel_at_period_end = true;
            next.cancelled_at = Some(now);
            return Ok(Transition {
                next,
                billing: None,
                events: vec![EventType::SubscriptionCancelScheduled],
            });
        }
        let mut lines = Vec::new();
        let billing_active = matches!(
            self.status,
            SubscriptionStatus::Active | SubscriptionStatus::PastDue | SubscriptionStatus::Paused
        );
        // A paused subscription stopped using the period when it was paused.
        let stop = match self.status {
            SubscriptionStatus::Paused => self.paused_at.unwrap_or(now).min(now),
            _ => now,
        };
        if prorate && billing_active && self.terms.billing_timing == BillingTiming::InAdvance {
            let tz = self.cycle()?.time_zone().clone();
            let credit = proration::cancellation_credit(
                self.current_period_fee,
                &self.current_period,
                stop,
                self.terms.proration,
                &tz,
            )
            .map_err(calendar)?
            .map(|c| c.priced(self.terms.recurring_fee_tax_behavior));
            lines.extend(credit.into_iter().map(proration_line));
        }
        if billing_active && self.terms.billing_timing == BillingTiming::InArrears {
            // In arrears the time used is owed: prorated with `prorate`, else the period's
            // full fee (as in advance without `prorate` the customer keeps the paid period).
            // An empty stub (cancelled exactly at the period start) bills nothing.
            let used = self.used_fee_item(stop)?;
            if prorate {
                lines.extend(used.into_iter().map(proration_line));
            } else if used.is_some() {
                lines.extend(self.arrears_fee_line(&self.current_period)?);
            }
        }
        if billing_active {
            // Items a previous change left for the next invoice go on this last one.
            lines.extend(
                std::mem::take(&mut next.pending_items)
                    .into_iter()
                    .map(proration_line),
            );
        }
        // The invoice covers the stub used; at the very start of a period (an empty stub),
        // the period itself.
        let period = self
            .current_period
            .until(now)
            .unwrap_or(self.current_period);
        next.end(now);
        let billing = next.billing(BillingReason::SubscriptionEnd, period, lines);
        Ok(Transition {
            next,
            billing,
            events: vec![EventType::SubscriptionCancelled],
        })
    }

    /// Undoes a cancellation scheduled for the period end.
    pub fn reactivate(&self, now: Timestamp) -> Result<Subscription, SubscriptionError> {
        if !self.cancel_at_period_end || self.status == SubscriptionStatus::Cancelled {
            return Err(self.invalid("be reactivated (no cancellation is scheduled)"));
        }
        let mut next = self.changed(now);
        next.cancel_at_period_end = false;
        next.cancelled_at = None;
        Ok(next)
    }

    pub fn pause(
        &self,
        resumes_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Subscription, SubscriptionError> {
        if !matches!(
            self.status,
            SubscriptionStatus::Active | SubscriptionStatus::PastDue
        ) {
            return Err(self.invalid("be paused"));
        }
        if let Some(at) = resumes_at {
            time::supported(at, "resumes_at")?;
        }
        if resumes_at.is_some_and(|r| r <= now) {
            return Err(ValidationError::new(
                ErrorCode::InvalidResumesAt,
                "resumes_at",
                "resumes_at must be in the future",
            )
            .into());
        }
        let mut next = self.changed(now);
        next.status = SubscriptionStatus::Paused;
        next.paused_at = Some(now);
        next.resumes_at = resumes_at;
        Ok(next)
    }

    pub fn resume(&self, now: Timestamp) -> Result<Transition, SubscriptionError> {
        if self.status != SubscriptionStatus::Paused {
            return Err(self.invalid("be resumed"));
        }
        let (next, billing) = self.changed(now).resume_at(now)?;
        Ok(Transition {
            next,
            billing,
            events: vec![EventType::SubscriptionResumed],
        })
    }

    /// Is this step, due at `due`, one a blocked account's suspension holds: a renewal
    /// (the period ends and the subscription goes on), or the daily check of a suspension?
    pub fn suspension_due(&self, due: Timestamp) -> bool {
        self.renews_at(due) || (self.suspended && self.resumes_at == Some(due))
    }

    /// The plan version whose price notice the step due at `due` sends, if it is that step.
    pub fn notice_due(&self, due: Timestamp) -> Option<u32> {
        let notice = self.price_notice.as_ref()?;
        (matches!(
            self.status,
            SubscriptionStatus::Active | SubscriptionStatus::PastDue
        ) && due < self.current_period.end
            && notice.pending_at().is_some_and(|at| at <= due))
        .then_some(notice.plan_version)
    }

    /// Is the step due at `due` a renewal into a next period (not an end)?
    pub fn renews_at(&self, due: Timestamp) -> bool {
        matches!(
            self.status,
            SubscriptionStatus::Active | SubscriptionStatus::PastDue
        ) && due == self.current_period.end
            && !self.cancel_at_period_end
    }

    /// The step due at `due` while the account is blocked and renewals are suspended: a
    /// renewal pauses the subscription at the period's end instead (no invoice: the period
    /// that ended is billed when it resumes, the time paused never); a suspension already
    /// in place is checked again a day later. Call only when [`Subscription::suspension_due`].
    pub fn hold_for_block(&self, due: Timestamp) -> Transition {
        let mut next = self.changed(due);
        next.resumes_at = Some(time::later(due, SUSPENSION_CHECK));
        let events = if self.status == SubscriptionStatus::Paused {
            Vec::new()
        } else {
            next.status = SubscriptionStatus::Paused;
            next.paused_at = Some(due);
            next.suspended = true;
            vec![EventType::SubscriptionPaused]
        };
        Transition {
            next,
            billing: None,
            events,
        }
    }

    /// Parks billing on the step due at `due_at`, which cannot be priced: nothing falls
    /// due until [`Subscription::retry_billing`].
    pub fn park_billing(&self, reason: String, due_at: Timestamp, now: Timestamp) -> Subscription {
        let mut next = self.changed(now);
        next.billing_failure = Some(BillingFailure {
            status: BillingFailureStatus::Failed,
            reason,
            due_at,
            failed_at: now,
        });
        next
    }

    /// Clears a parked billing, so its step falls due again.
    pub fn retry_billing(&self, now: Timestamp) -> Result<Subscription, SubscriptionError> {
        if self.billing_failure.is_none() {
            return Err(self.invalid("retry billing (its billing has not failed)"));
        }
        let mut next = self.changed(now);
        next.billing_failure = None;
        Ok(next)
    }

    /// Moves to other terms (plan and/or quantity). The policy decides: an upgrade applies
    /// now with prorations (invoiced now when `invoice_now`, else on the next invoice); a
    /// downgrade waits for the period end.
    pub fn change(
        &self,
        terms: SubscriptionTerms,
        quantity: u64,
        policy: &ChangePolicy,
        invoice_now: bool,
        now: Timestamp,
    ) -> Result<Transition, SubscriptionError> {
        self.change_capped(terms, quantity, policy, invoice_now, None, now)
    }

    /// [`Subscription::change`] with the credit for unused time capped by what was actually
    /// paid for the current period minus what was already credited for it
    /// ([`proration::CreditCap`], Flexprice). `None`: no cap beyond the prorated fee.
    pub fn change_capped(
        &self,
        terms: SubscriptionTerms,
        quantity: u64,
        policy: &ChangePolicy,
        invoice_now: bool,
        cap: Option<&proration::CreditCap>,
        now: Timestamp,
    ) -> Result<Transition, SubscriptionError> {
        if !matches!(
            self.status,
            SubscriptionStatus::Active | SubscriptionStatus::PastDue | SubscriptionStatus::Trialing
        ) {
            return Err(self.invalid("change plan"));
        }
        if quantity == 0 || quantity > 1_000_000 {
            return Err(ValidationError::new(
                ErrorCode::InvalidQuantity,
                "quantity",
                "quantity must be 1 to 1,000,000",
            )
            .into());
        }
        let old_fee = self.terms.fee(self.quantity, self.currency)?;
        let new_fee = terms.fee(quantity, self.currency)?;
        let mut next = self.changed(now);
        if self.status == SubscriptionStatus::Trialing {
            next.terms = terms;
            next.quantity = quantity;
            return Ok(Transition {
                next,
                billing: None,
                events: vec![EventType::SubscriptionPlanChanged],
            });
        }
        let price = |amount: Money, t: &SubscriptionTerms| PlanPrice {
            amount,
            interval: t.interval,
        };
        let decision = policy
            .decide(&price(old_fee, &self.terms), &price(new_fee, &terms))
            .map_err(|e| SubscriptionError::Pricing(e.to_string()))?;
        if decision.timing == proration::ChangeTiming::EndOfPeriod {
            next.scheduled_change = Some(ScheduledChange {
                terms,
                quantity,
                effective_at: self.current_period.end,
            });
            return Ok(Transition {
                next,
                billing: None,
                events: vec![EventType::SubscriptionChangeScheduled],
            });
        }
        let events = vec![match decision.direction {
            ChangeDirection::Upgrade => EventType::SubscriptionUpgraded,
            ChangeDirection::Downgrade => EventType::SubscriptionDowngraded,
            ChangeDirection::Lateral => EventType::SubscriptionPlanChanged,
        }];
        if terms.interval != self.terms.interval {
            return self.change_interval_now(next, terms, quantity, new_fee, cap, events, now);
        }
        let tz = self.cycle()?.time_zone().clone();
        let old_in_advance = self.terms.billing_timing == BillingTiming::InAdvance;
        let new_in_advance = terms.billing_timing == BillingTiming::InAdvance;
        // In advance, the old fee was paid: its unused part is credited (capped by what was
        // paid, when the caller says). In arrears nothing was paid: the old terms are billed
        // for the time they were in force (from the period's start, its trial end or the
        // previous change).
        let credit = if old_in_advance {
            let credit = proration::credit_unused(
                self.current_period_fee,
                &self.current_period,
                now,
                terms.proration,
                &tz,
            )
            .map_err(calendar)?
            .map(|c| c.priced(self.terms.recurring_fee_tax_behavior));
            match (credit, cap) {
                (Some(c), Some(cap)) => cap.apply(c).map_err(calendar)?,
                (c, _) => c,
            }
        } else {
            None
        };
        let used = if old_in_advance {
            None
        } else {
            let from = self
                .fee_from
                .unwrap_or(self.current_period.start)
                .max(self.current_period.start);
            match self.current_period.from(from) {
                Some(billable) => {
                    let slice = billable.until(now);
                    let full = self.full_period_of(&self.current_period)?;
                    proration::charge_used(old_fee, slice, &full, self.terms.proration, &tz)
                        .map_err(calendar)?
                        .map(|u| u.priced(self.terms.recurring_fee_tax_behavior))
                }
                None => None,
            }
        };
        // New terms in advance: the rest of the period is charged now; in arrears their fee
        // covers the period from now (`fee_from`) when it ends.
        let charge = if new_in_advance {
            match self.current_period.from(now) {
                Some(slice) => Some(
                    proration::charge_for(
                        new_fee,
                        &slice,
                        &self.current_period,
                        terms.proration,
                        &tz,
                    )
                    .map_err(calendar)?
                    .priced(terms.recurring_fee_tax_behavior),
                ),
                None => None,
            }
        } else {
            None
        };
        next.terms = terms;
        next.quantity = quantity;
        next.scheduled_change = None;
        next.fee_from = (!new_in_advance).then_some(now.max(self.current_period.start));
        let paid_before = if old_in_advance {
            self.current_period_fee
        } else {
            Money::zero(self.currency)
        };
        next.current_period_fee = if new_in_advance {
            credit
                .iter()
                .chain(charge.iter())
                .try_fold(paid_before, |acc, i| acc.checked_add(i.amount))
                .map_err(|e| SubscriptionError::Pricing(e.to_string()))?
        } else {
            Money::zero(self.currency)
        };
        let items: Vec<ProrationItem> = used.into_iter().chain(credit).chain(charge).collect();
        if invoice_now {
            // The rest of the period; at its very end (a boundary), the period itself.
            let period = self.current_period.from(now).unwrap_or(self.current_period);
            let lines = items.into_iter().map(proration_line).collect();
            let billing = next.billing(BillingReason::SubscriptionUpdate, period, lines);
            return Ok(Transition {
                next,
                billing,
                events,
            });
        }
        next.pending_items.extend(items);
        Ok(Transition {
            next,
            billing: None,
            events,
        })
    }

    /// A change of billing interval now (monthly ↔ annual), Stripe's way: the cycle is
    /// anchored at the change and its first period begins, billed at once in advance (in
    /// arrears: billed at its end); what was paid in advance for the rest of the old period
    /// is credited ([`proration::interval_change`], capped like any change's credit), and in
    /// arrears the old fee for the time used is billed. One invoice now; a negative total
    /// (a credit larger than the new period's fee) goes to the account's balance when it is
    /// finalized. The closed period's usage is billed on it by the caller, like a renewal's.
    #[allow(clippy::too_many_arguments)]
    fn change_interval_now(
        &self,
        mut next: Subscription,
        terms: SubscriptionTerms,
        quantity: u64,
        new_fee: Money,
        cap: Option<&proration::CreditCap>,
        events: Vec<EventType>,
        now: Timestamp,
    ) -> Result<Transition, SubscriptionError> {
        let paid = if self.terms.billing_timing == BillingTiming::InAdvance {
            self.current_period_fee
        } else {
            Money::zero(self.currency)
        };
        let change = proration::interval_change(
            paid,
            &self.current_period,
            now,
            terms.interval,
            new_fee,
            &self.time_zone,
            terms.proration,
        )
        .map_err(calendar)?;
        let credit = change
            .credit
            .map(|c| c.priced(self.terms.recurring_fee_tax_behavior));
        let credit = match (credit, cap) {
            (Some(c), Some(cap)) => cap.apply(c).map_err(calendar)?,
            (c, _) => c,
        };
        let used = self.used_fee_item(now)?;
        next.terms = terms;
        next.quantity = quantity;
        next.scheduled_change = None;
        next.fee_from = None;
        next.billing_anchor = now;
        next.current_period = change.first_period;
        let mut lines: Vec<LineInput> = std::mem::take(&mut next.pending_items)
            .into_iter()
            .chain(used)
            .chain(credit)
            .map(proration_line)
            .collect();
        if next.terms.billing_timing == BillingTiming::InAdvance {
            next.current_period_fee = change.charge;
            lines.extend(next.fee_line(&change.first_period, None));
        } else {
            next.current_period_fee = Money::zero(self.currency);
        }
        let billing = next.billing(
            BillingReason::SubscriptionUpdate,
            change.first_period,
            lines,
        );
        Ok(Transition {
            next,
            billing,
            events,
        })
    }

    pub fn cancel_scheduled_change(
        &self,
        now: Timestamp,
    ) -> Result<Subscription, SubscriptionError> {
        if self.scheduled_change.is_none() {
            return Err(self.invalid("drop a scheduled change (none is scheduled)"));
        }
        let mut next = self.changed(now);
        next.scheduled_change = None;
        Ok(next)
    }

    /// Metadata and cancel-at-period-end edits that move no money.
    pub fn set_metadata(
        &self,
        changes: &Metadata,
        now: Timestamp,
    ) -> Result<Subscription, SubscriptionError> {
        let mut next = self.changed(now);
        next.metadata = metadata::merge(&self.metadata, changes)?;
        Ok(next)
    }

    /// The last payment attempt on one of its invoices failed: an active subscription
    /// goes `past_due` (it keeps renewing). `None` when there is nothing to change.
    pub fn payment_failed(&self, now: Timestamp) -> Option<Subscription> {
        (self.status == SubscriptionStatus::Active).then(|| {
            let mut next = self.changed(now);
            next.status = SubscriptionStatus::PastDue;
            next
        })
    }

    /// One of its invoices was paid: a `past_due` subscription is active again.
    pub fn payment_recovered(&self, now: Timestamp) -> Option<Subscription> {
        (self.status == SubscriptionStatus::PastDue).then(|| {
            let mut next = self.changed(now);
            next.status = SubscriptionStatus::Active;
            next
        })
    }
}

fn proration_line(item: ProrationItem) -> LineInput {
    let description = match item.kind {
        proration::ProrationKind::Charge => "Remaining time (prorated)",
        proration::ProrationKind::Credit => "Unused time (prorated credit)",
        proration::ProrationKind::Used => "Time used (prorated)",
    };
    LineInput {
        id: None,
        description: description.into(),
        period: Some(item.period),
        tax_behavior: item.tax_behavior,
        source: LineSource::Proration { item },
        tax_rates: Vec::new(),
        discountable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::invoice_draft::{build_invoice, InvoiceInput};
    use crate::billing::periods::IntervalUnit;
    use crate::kernel::ids::{AccountId, PlanId, SubscriptionId};
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn eur() -> Currency {
        Currency::from_code("eur").unwrap()
    }

    fn terms(
        fee_minor: i64,
        interval: Interval,
        timing: BillingTiming,
        proration: ProrationConvention,
    ) -> SubscriptionTerms {
        SubscriptionTerms {
            plan_id: PlanId::from_ulid(ulid::Ulid::from(7u128)),
            plan_version: 1,
            plan_name: "Plan".into(),
            interval,
            billing_timing: timing,
            proration,
            recurring_fee: Some(
                serde_json::from_value(
                    serde_json::json!({"model": "per_unit", "unit_price": Decimal::new(fee_minor, 2).to_string()}),
                )
                .unwrap(),
            ),
            recurring_fee_tax_behavior: None,
            usage_charges: Vec::new(),
            capacity_charges: Vec::new(),
            entitlements: Vec::new(),
        }
    }

    fn new_sub(
        terms: SubscriptionTerms,
        start: &str,
        anchor: Option<&str>,
        trial_days: u32,
    ) -> NewSubscription {
        NewSubscription {
            id: SubscriptionId::from_ulid(ulid::Ulid::from(1u128)),
            account_id: AccountId::from_ulid(ulid::Ulid::from(2u128)),
            test_clock: None,
            livemode: false,
            currency: eur(),
            time_zone: "UTC".into(),
            terms,
            quantity: 1,
            trial_days,
            start: ts(start),
            billing_anchor: anchor.map(ts),
            collection_method: CollectionMethod::ChargeAutomatically,
            days_until_due: None,
            max_pause_days: None,
            metadata: Metadata::new(),
            discounts: Vec::new(),
        }
    }

    /// The invoice total of a billing (no tax, no discount).
    fn total(b: &Billing) -> i64 {
        build_invoice(&InvoiceInput {
            currency: eur(),
            lines: b.lines.clone(),
            discounts: Vec::new(),
            credits: Vec::new(),
            minimum_commitment: None,
        })
        .unwrap()
        .total
    }

    /// Runs the lifecycle until the first invoice that bills the recurring fee.
    fn first_fee_invoice(input: NewSubscription) -> Billing {
        let start = input.start;
        let mut t = Subscription::start(input, start).unwrap();
        for _ in 0..6 {
            if let Some(b) = t.billing.take() {
                return b;
            }
            let due = t.next.due_at().unwrap();
            t = t.next.advance(due).unwrap().unwrap();
        }
        panic!("no invoice");
    }

    fn weekly() -> Interval {
        Interval::new(IntervalUnit::Week, 1).unwrap()
    }

    /// getlago/lago-api `spec/services/fees/subscription_service_spec.rb`, "when plan is
    /// weekly": a €1.00 weekly plan paid in arrears (Lago's default), calendar weeks (Monday):
    /// started on Wednesday 2022-06-22 → 5/7 = 71.43 → 71 cents ("when subscription start is on
    /// any other day"); with a 3-day trial → 2/7 → 29 ("when trial end during the period");
    /// started Monday 00:01 with a 3-day trial → 4/7 → 57 ("when subscription start is on
    /// Monday" / "when trial end during period"). The same plan in advance bills the same.
    #[test]
    fn in_arrears_weekly_fee_is_prorated_like_lago() {
        for timing in [BillingTiming::InArrears, BillingTiming::InAdvance] {
            let t = || {
                terms(
                    100,
                    weekly(),
                    timing,
                    ProrationConvention::CalendarDaysInclusive,
                )
            };
            let cases = [
                ("2022-06-22T00:00:00Z", 0, 71),
                ("2022-06-22T00:00:00Z", 3, 29),
                ("2022-06-20T00:01:00Z", 3, 57),
            ];
            for (start, trial, cents) in cases {
                let b = first_fee_invoice(new_sub(t(), start, Some("2022-06-27T00:00:00Z"), trial));
                assert_eq!(total(&b), cents, "{timing:?} {start} trial {trial}");
                let line_period = b.lines[0].period.unwrap();
                assert_eq!(line_period.end, ts("2022-06-27T00:00:00Z"));
            }
        }
        // Started on the anchor (Monday 00:00) without a trial: the full week.
        let b = first_fee_invoice(new_sub(
            terms(
                100,
                weekly(),
                BillingTiming::InArrears,
                ProrationConvention::CalendarDaysInclusive,
            ),
            "2022-06-20T00:00:00Z",
            None,
            0,
        ));
        assert_eq!(total(&b), 100);
    }

    /// getlago/lago-api `spec/services/fees/subscription_service_spec.rb`, "when plan has a
    /// trial period" / "when trial end in period": €1.00 monthly in arrears, March 2022, a
    /// 3-day trial from Mar 1 → 28/31 = 90.32 → 90 cents.
    #[test]
    fn in_arrears_trial_ending_mid_period_like_lago() {
        for conv in [
            ProrationConvention::CalendarDaysInclusive,
            ProrationConvention::DaySpanExclusive,
            ProrationConvention::ExactSeconds,
        ] {
            let b = first_fee_invoice(new_sub(
                terms(100, Interval::monthly(), BillingTiming::InArrears, conv),
                "2022-03-01T00:00:00Z",
                Some("2022-04-01T00:00:00Z"),
                3,
            ));
            assert_eq!(total(&b), 90, "{conv:?}");
        }
    }

    fn active(
        fee: i64,
        timing: BillingTiming,
        conv: ProrationConvention,
        start: &str,
    ) -> Subscription {
        let input = new_sub(
            terms(fee, Interval::monthly(), timing, conv),
            start,
            None,
            0,
        );
        Subscription::start(input, ts(start)).unwrap().next
    }

    /// getlago/lago-api `spec/services/credit_notes/create_from_termination_spec.rb` ("creates
    /// a credit note": €31 plan, calendar, terminated 2022-10-15 10:00 → "Unused subscription
    /// (16 days) €16.00"): the day of termination is used. In arrears the same termination
    /// bills the 15 days used, €15.00 (Lago's `remaining_duration` complement).
    #[test]
    fn cancel_now_credits_in_advance_and_bills_in_arrears_like_lago() {
        let conv = ProrationConvention::CalendarDaysInclusive;
        let at = ts("2022-10-15T10:00:00Z");
        let adv = active(3100, BillingTiming::InAdvance, conv, "2022-10-01T00:00:00Z");
        let b = adv.cancel(false, true, at).unwrap().billing.unwrap();
        assert_eq!(total(&b), -1600);
        let arr = active(3100, BillingTiming::InArrears, conv, "2022-10-01T00:00:00Z");
        let b = arr.cancel(false, true, at).unwrap().billing.unwrap();
        assert_eq!(total(&b), 1500);
        assert_eq!(b.reason, BillingReason::SubscriptionEnd);
        // Without prorate, in arrears: the period's full fee.
        let b = arr.cancel(false, false, at).unwrap().billing.unwrap();
        assert_eq!(total(&b), 3100);
        // Exclusive days: Oct 1 → Oct 15 is 14 of 31 days → €14.00.
        let arr = active(
            3100,
            BillingTiming::InArrears,
            ProrationConvention::DaySpanExclusive,
            "2022-10-01T00:00:00Z",
        );
        let b = arr.cancel(false, true, at).unwrap().billing.unwrap();
        assert_eq!(total(&b), 1400);
    }

    /// Each proration line is taxed as the price it prorates (issue 16's per-price
    /// `tax_behavior`): the unused time of an inclusive old price is credited inclusive, the
    /// rest of the period at an exclusive new price is charged exclusive, and a cancellation
    /// or an interval change credits at the old price's behaviour.
    #[test]
    fn proration_lines_carry_the_tax_behavior_of_the_price_they_prorate() {
        use crate::billing::proration::ProrationKind;
        use crate::tax::rates::TaxBehavior::{Exclusive, Inclusive};
        let conv = ProrationConvention::DaySpanExclusive;
        let mut sub = active(
            3_000,
            BillingTiming::InAdvance,
            conv,
            "2024-01-01T00:00:00Z",
        );
        sub.terms.recurring_fee_tax_behavior = Some(Inclusive);
        let at = ts("2024-01-16T00:00:00Z");
        let behaviors = |lines: &[LineInput]| -> Vec<(ProrationKind, Option<TaxBehavior>)> {
            lines
                .iter()
                .map(|l| match &l.source {
                    LineSource::Proration { item } => (item.kind, l.tax_behavior),
                    other => panic!("not a proration line: {other:?}"),
                })
                .collect()
        };

        let mut upgrade = terms(6_000, Interval::monthly(), BillingTiming::InAdvance, conv);
        upgrade.recurring_fee_tax_behavior = Some(Exclusive);
        let t = sub
            .change(upgrade, 1, &ChangePolicy::default(), false, at)
            .unwrap();
        let lines = match &t.billing {
            Some(b) => b.lines.clone(),
            None => t
                .next
                .pending_items
                .iter()
                .cloned()
                .map(proration_line)
                .collect(),
        };
        assert_eq!(
            behaviors(&lines),
            [
                (ProrationKind::Credit, Some(Inclusive)),
                (ProrationKind::Charge, Some(Exclusive))
            ]
        );

        let cancelled = sub.cancel(false, true, at).unwrap().billing.unwrap();
        assert_eq!(
            behaviors(&cancelled.lines),
            [(ProrationKind::Credit, Some(Inclusive))]
        );

        let mut yearly = terms(50_000, Interval::yearly(), BillingTiming::InAdvance, conv);
        yearly.recurring_fee_tax_behavior = Some(Exclusive);
        let t = sub
            .change(yearly, 1, &ChangePolicy::default(), false, at)
            .unwrap();
        let billing = t.billing.unwrap();
        let credit = billing
            .lines
            .iter()
            .find(|l| matches!(&l.source, LineSource::Proration { item } if item.kind == ProrationKind::Credit))
            .expect("the unused month is credited");
        assert_eq!(credit.tax_behavior, Some(Inclusive));
        let fee = billing
            .lines
            .iter()
            .find(|l| l.id.as_deref() == Some("recurring_fee"))
            .expect("the new year is charged");
        assert_eq!(fee.tax_behavior, Some(Exclusive));
    }

    fn yearly_sub(fee: i64, start: &str) -> Subscription {
        let conv = ProrationConvention::DaySpanExclusive;
        let input = new_sub(
            terms(fee, Interval::yearly(), BillingTiming::InAdvance, conv),
            start,
            None,
            0,
        );
        Subscription::start(input, ts(start)).unwrap().next
    }

    /// Annual → monthly now, Stripe's way (a change of interval resets the billing cycle
    /// anchor to the change and invoices at once, crediting the unused time: docs.stripe.com
    /// /billing/subscriptions/billing-cycle, "Changing the billing cycle"): $1,200 paid for
    /// 2024 (366 days), $120/month from Jul 1 (184 days left, `proration::interval_change`'s
    /// own example): −$603.28 + $120.00 = −$483.28 on one invoice now (the balance takes
    /// it), a monthly cycle from Jul 1, and $120.00 on Aug 1.
    #[test]
    fn an_interval_change_now_credits_the_unused_time_and_starts_a_cycle() {
        let conv = ProrationConvention::DaySpanExclusive;
        let sub = yearly_sub(120_000, "2024-01-01T00:00:00Z");
        let monthly = terms(12_000, Interval::monthly(), BillingTiming::InAdvance, conv);
        let at = ts("2024-07-01T00:00:00Z");
        let t = sub
            .change(monthly, 1, &ChangePolicy::default(), false, at)
            .unwrap();
        let billing = t.billing.as_ref().unwrap();
        assert_eq!(billing.reason, BillingReason::SubscriptionUpdate);
        let draft = build_invoice(&InvoiceInput {
            currency: eur(),
            lines: billing.lines.clone(),
            discounts: Vec::new(),
            credits: Vec::new(),
            minimum_commitment: None,
        })
        .unwrap();
        let amounts: Vec<i64> = draft.lines.iter().map(|l| l.amount).collect();
        assert_eq!(amounts, [-60_328, 12_000]);
        assert_eq!(total(billing), -48_328);
        assert_eq!(t.next.billing_anchor, at);
        assert_eq!(t.next.current_period.start, at);
        assert_eq!(t.next.current_period.end, ts("2024-08-01T00:00:00Z"));
        assert_eq!(t.next.terms.interval, Interval::monthly());
        let renewal = t.next.advance(ts("2024-08-01T00:00:00Z")).unwrap().unwrap();
        assert_eq!(total(renewal.billing.as_ref().unwrap()), 12_000);
        assert_eq!(renewal.next.current_period.end, ts("2024-09-01T00:00:00Z"));
    }

    /// Monthly → annual at the period's end (a downgrade by annualised amount: $120/month is
    /// $1,440 a year, more than $1,000): nothing now; at the renewal a yearly cycle starts
    /// there and bills $1,000.00 for the year.
    #[test]
    fn an_interval_change_at_period_end_starts_the_new_cycle_there() {
        let conv = ProrationConvention::DaySpanExclusive;
        let sub = active(
            12_000,
            BillingTiming::InAdvance,
            conv,
            "2024-01-15T00:00:00Z",
        );
        let yearly = terms(100_000, Interval::yearly(), BillingTiming::InAdvance, conv);
        let t = sub
            .change(
                yearly,
                1,
                &ChangePolicy::default(),
                false,
                ts("2024-01-20T00:00:00Z"),
            )
            .unwrap();
        assert!(t.billing.is_none());
        assert_eq!(t.events, [EventType::SubscriptionChangeScheduled]);
        let renewal = t.next.advance(ts("2024-02-15T00:00:00Z")).unwrap().unwrap();
        assert_eq!(total(renewal.billing.as_ref().unwrap()), 100_000);
        assert_eq!(
            renewal.next.current_period,
            Period::new(ts("2024-02-15T00:00:00Z"), ts("2025-02-15T00:00:00Z")).unwrap()
        );
    }

    /// A migrating version at the renewal: the new period bills the new terms, and
    /// `subscription.price_migrated` comes before `subscription.renewed`; an older version
    /// (or another plan's) is no migration, and a scheduled change wins.
    #[test]
    fn a_migration_applies_at_the_renewal_only() {
        let conv = ProrationConvention::DaySpanExclusive;
        let sub = active(
            4_900,
            BillingTiming::InAdvance,
            conv,
            "2024-01-01T00:00:00Z",
        );
        let mut v2 = terms(5_900, Interval::monthly(), BillingTiming::InAdvance, conv);
        v2.plan_version = 2;
        let renewal = ts("2024-02-01T00:00:00Z");
        assert!(sub.renews_at(renewal));
        assert!(!sub.renews_at(ts("2024-01-15T00:00:00Z")));
        let t = sub
            .advance_migrating(renewal, Some(Migration::unannounced(v2.clone())))
            .unwrap()
            .unwrap();
        assert_eq!(total(t.billing.as_ref().unwrap()), 5_900);
        assert_eq!(
            t.events,
            [
                EventType::SubscriptionPriceMigrated,
                EventType::SubscriptionRenewed
            ]
        );
        assert_eq!(t.next.terms.plan_version, 2);
        let same = sub
            .advance_migrating(renewal, Some(Migration::unannounced(sub.terms.clone())))
            .unwrap()
            .unwrap();
        assert_eq!(total(same.billing.as_ref().unwrap()), 4_900);
        assert_eq!(same.events, [EventType::SubscriptionRenewed]);
    }

    /// The brief's $50 → $60 version with 7 days' notice, published mid-period: the
    /// subscription wakes 7 days before its renewal, sends the notice once (what it says
    /// is on it), and the renewal bills $60.
    #[test]
    fn a_notice_goes_out_n_days_before_the_renewal_that_migrates() {
        let conv = ProrationConvention::DaySpanExclusive;
        let sub = active(
            5_000,
            BillingTiming::InAdvance,
            conv,
            "2024-01-01T00:00:00Z",
        );
        let m = notice_migration(7, ts("2024-01-10T00:00:00Z"));
        let armed = sub
            .arm_price_notice(&m, ts("2024-01-10T00:00:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(armed.due_at(), Some(ts("2024-01-25T00:00:00Z")));
        assert_eq!(
            armed.arm_price_notice(&m, ts("2024-01-11T00:00:00Z")),
            Ok(None),
            "armed once per version"
        );
        let sent = armed
            .advance_migrating(ts("2024-01-25T00:00:00Z"), Some(m.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(sent.events, [EventType::SubscriptionPriceChangeNotice]);
        assert!(sent.billing.is_none());
        let notice = sent.next.price_notice.clone().unwrap();
        assert_eq!(
            (
                notice.old_amount.map(|a| a.minor),
                notice.new_amount.map(|a| a.minor),
                notice.effective_at
            ),
            (Some(5_000), Some(6_000), Some(ts("2024-02-01T00:00:00Z")))
        );
        assert_eq!(sent.next.due_at(), Some(ts("2024-02-01T00:00:00Z")));
        assert_eq!(
            sent.next
                .advance_migrating(ts("2024-01-26T00:00:00Z"), Some(m.clone()))
                .unwrap(),
            None,
            "sent once"
        );
        let renewed = sent
            .next
            .advance_migrating(ts("2024-02-01T00:00:00Z"), Some(m))
            .unwrap()
            .unwrap();
        assert_eq!(total(renewed.billing.as_ref().unwrap()), 6_000);
        assert_eq!(renewed.next.terms.plan_version, 2);
        assert_eq!(
            renewed.next.price_notice.and_then(|n| n.sent_at),
            Some(ts("2024-01-25T00:00:00Z")),
            "kept: what the email said"
        );
    }

    /// Published 3 days before the renewal with 7 days' notice: the notice goes out at
    /// once, that renewal bills $50 and the next $60 (the customer gets the full 7 days).
    #[test]
    fn a_notice_too_late_for_the_renewal_delays_the_migration_one_period() {
        let conv = ProrationConvention::DaySpanExclusive;
        let sub = active(
            5_000,
            BillingTiming::InAdvance,
            conv,
            "2024-01-01T00:00:00Z",
        );
        let published = ts("2024-01-29T00:00:00Z");
        let m = notice_migration(7, published);
        let armed = sub.arm_price_notice(&m, published).unwrap().unwrap();
        assert_eq!(armed.due_at(), Some(published));
        let sent = armed
            .advance_migrating(published, Some(m.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(
            sent.next.price_notice.as_ref().and_then(|n| n.effective_at),
            Some(ts("2024-03-01T00:00:00Z"))
        );
        let first = sent
            .next
            .advance_migrating(ts("2024-02-01T00:00:00Z"), Some(m.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(total(first.billing.as_ref().unwrap()), 5_000);
        assert_eq!(first.events, [EventType::SubscriptionRenewed]);
        let second = first
            .next
            .advance_migrating(ts("2024-03-01T00:00:00Z"), Some(m))
            .unwrap()
            .unwrap();
        assert_eq!(total(second.billing.as_ref().unwrap()), 6_000);
    }

    /// A renewal that finds a version with a notice period and no notice (a subscription
    /// created before it took effect, not armed at publishing) keeps its prices and arms
    /// the notice for the next renewal.
    #[test]
    fn a_renewal_without_the_notice_arms_it() {
        let conv = ProrationConvention::DaySpanExclusive;
        let sub = active(
            5_000,
            BillingTiming::InAdvance,
            conv,
            "2024-01-01T00:00:00Z",
        );
        let m = notice_migration(7, ts("2024-01-10T00:00:00Z"));
        let renewed = sub
            .advance_migrating(ts("2024-02-01T00:00:00Z"), Some(m))
            .unwrap()
            .unwrap();
        assert_eq!(total(renewed.billing.as_ref().unwrap()), 5_000);
        assert_eq!(renewed.next.due_at(), Some(ts("2024-02-23T00:00:00Z")));
        // Cancelled at the period's end meanwhile: nothing to announce.
        let ending = renewed
            .next
            .cancel(true, false, ts("2024-02-10T00:00:00Z"))
            .unwrap()
            .next;
        let step = ending
            .advance_migrating(
                ts("2024-02-23T00:00:00Z"),
                Some(notice_migration(7, ts("2024-01-10T00:00:00Z"))),
            )
            .unwrap()
            .unwrap();
        assert_eq!(step.events, [EventType::SubscriptionUpdated]);
        assert_eq!(step.next.price_notice, None);
        assert_eq!(step.next.due_at(), Some(ts("2024-03-01T00:00:00Z")));
    }

    /// Version 2 of the test plan at $60 with `notice_days`, in effect from `from`.
    fn notice_migration(notice_days: u32, from: Timestamp) -> Migration {
        let mut v2 = terms(
            6_000,
            Interval::monthly(),
            BillingTiming::InAdvance,
            ProrationConvention::DaySpanExclusive,
        );
        v2.plan_version = 2;
        Migration {
            terms: v2,
            notice_days,
            effective_from: from,
        }
    }

    proptest! {
        /// Whenever a version with N days' notice is published and takes effect, the
        /// notice is sent exactly once, the subscription never migrates at a renewal fewer
        /// than N days after it (or before the version takes effect), and always at the
        /// first renewal that qualifies, which is the date the notice announced.
        #[test]
        fn a_migration_waits_for_its_notice_and_no_longer(
            notice_days in 1u32..=90,
            published_h in 0i64..(24 * 120),
            delay_h in 0i64..(24 * 120),
        ) {
            let conv = ProrationConvention::DaySpanExclusive;
            let mut sub = active(5_000, BillingTiming::InAdvance, conv, "2024-01-01T00:00:00Z");
            let published = time::later(ts("2024-01-01T00:00:00Z"), SignedDuration::from_hours(published_h));
            let m = notice_migration(notice_days, time::later(published, SignedDuration::from_hours(delay_h)));
            // Before publishing, renewals find nothing to migrate to.
            while let Some(due) = sub.due_at().filter(|d| *d <= published) {
                sub = sub.advance(due).unwrap().unwrap().next;
            }
            if let Some(armed) = sub.arm_price_notice(&m, published).unwrap() {
                sub = armed;
            }
            let (mut notices, mut sent_at, mut promised) = (0, None, None);
            let mut migrated_at = None;
            for _ in 0..20 {
                let due = sub.due_at().unwrap();
                let renews = sub.renews_at(due);
                // As billing asks: a renewal gets the version once it is in effect; the
                // step sending a notice gets the version it announces.
                let migration = (!renews || m.effective_from <= due).then(|| m.clone());
                let step = sub.advance_migrating(due, migration).unwrap().unwrap();
                if step.events.contains(&EventType::SubscriptionPriceChangeNotice) {
                    notices += 1;
                    sent_at = Some(due);
                    promised = step.next.price_notice.as_ref().and_then(|n| n.effective_at);
                }
                if renews {
                    let earliest = sent_at.map(|s| {
                        time::later(s, SignedDuration::from_hours(24 * i64::from(notice_days)))
                            .max(m.effective_from)
                    });
                    let qualifies = earliest.is_some_and(|e| e <= due);
                    let migrated = step.events.contains(&EventType::SubscriptionPriceMigrated);
                    prop_assert_eq!(migrated, qualifies, "renewal at {}", due);
                    prop_assert_eq!(
                        total(step.billing.as_ref().unwrap()),
                        if migrated { 6_000 } else { 5_000 }
                    );
                    if migrated {
                        migrated_at = Some(due);
                        break;
                    }
                }
                sub = step.next;
            }
            prop_assert_eq!(notices, 1);
            prop_assert!(migrated_at.is_some());
            prop_assert_eq!(migrated_at, promised);
        }
    }

    /// A blocked account's renewal is held: paused at the period's end without an invoice,
    /// checked daily, and resumed (when the account is no longer blocked) with a new period
    /// from then; the days held are never billed.
    #[test]
    fn a_held_renewal_pauses_then_resumes_without_billing_the_gap() {
        let conv = ProrationConvention::DaySpanExclusive;
        let sub = active(
            3_100,
            BillingTiming::InAdvance,
            conv,
            "2024-01-01T00:00:00Z",
        );
        let end = ts("2024-02-01T00:00:00Z");
        assert!(sub.suspension_due(end));
        let held = sub.hold_for_block(end);
        assert!(held.billing.is_none());
        assert_eq!(held.events, [EventType::SubscriptionPaused]);
        let held = held.next;
        assert_eq!(held.status, SubscriptionStatus::Paused);
        assert!(held.suspended);
        assert_eq!(held.due_at(), Some(ts("2024-02-02T00:00:00Z")));
        // Still blocked at the daily check: another day, nothing else.
        assert!(held.suspension_due(ts("2024-02-02T00:00:00Z")));
        let again = held.hold_for_block(ts("2024-02-02T00:00:00Z"));
        assert!(again.events.is_empty() && again.billing.is_none());
        assert_eq!(again.next.paused_at, Some(end));
        assert_eq!(again.next.due_at(), Some(ts("2024-02-03T00:00:00Z")));
        // Unblocked: the next check resumes it with a new period from then.
        let resumed = again
            .next
            .advance(ts("2024-02-03T00:00:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(resumed.events, [EventType::SubscriptionResumed]);
        assert!(!resumed.next.suspended);
        assert_eq!(
            resumed.next.current_period.start,
            ts("2024-02-03T00:00:00Z")
        );
        let billing = resumed.billing.unwrap();
        assert_eq!(billing.reason, BillingReason::SubscriptionResume);
        // $31.00 a month from Feb 3: the full fee, nothing for Feb 1–3.
        assert_eq!(total(&billing), 3_100);
    }

    /// A $31 → $62 upgrade on Jan 22 (the README's plan-change example, exclusive days): in
    /// advance −$10.00 + $20.00 on top of the $31 paid; in arrears the old plan's 21 days
    /// ($21.00) and the new plan's 10 days ($20.00) are each billed for their own time, the
    /// same $41.00 for January.
    #[test]
    fn in_arrears_plan_change_bills_both_legs() {
        let conv = ProrationConvention::DaySpanExclusive;
        let at = ts("2024-01-22T00:00:00Z");
        let sub = active(3100, BillingTiming::InArrears, conv, "2024-01-01T00:00:00Z");
        let up = terms(6200, Interval::monthly(), BillingTiming::InArrears, conv);
        let policy = ChangePolicy::default();
        // At once: the old leg is invoiced now.
        let t = sub.change(up.clone(), 1, &policy, true, at).unwrap();
        assert_eq!(total(t.billing.as_ref().unwrap()), 2100);
        let renewal = t.next.advance(ts("2024-02-01T00:00:00Z")).unwrap().unwrap();
        assert_eq!(total(renewal.billing.as_ref().unwrap()), 2000);
        // The next period is the full new fee.
        let next = renewal
            .next
            .advance(ts("2024-03-01T00:00:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(total(next.billing.as_ref().unwrap()), 6200);
        // At period end: both legs on the renewal invoice.
        let t = sub.change(up.clone(), 1, &policy, false, at).unwrap();
        assert!(t.billing.is_none());
        let renewal = t.next.advance(ts("2024-02-01T00:00:00Z")).unwrap().unwrap();
        assert_eq!(total(renewal.billing.as_ref().unwrap()), 4100);
        // Two changes in one period: each leg its own days (21 + 5 + 5 = 31 days).
        let t = sub.change(up, 1, &policy, false, at).unwrap();
        let back = terms(3100, Interval::monthly(), BillingTiming::InArrears, conv);
        let immediate_down = ChangePolicy {
            downgrade: proration::ChangeTiming::Immediate,
            ..policy
        };
        let t = t
            .next
            .change(back, 1, &immediate_down, false, ts("2024-01-27T00:00:00Z"))
            .unwrap();
        let renewal = t.next.advance(ts("2024-02-01T00:00:00Z")).unwrap().unwrap();
        // 2100 + 6200 × 5/31 (1000) + 3100 × 5/31 (500)
        assert_eq!(total(renewal.billing.as_ref().unwrap()), 3600);
    }

    /// Changing between in-advance and in-arrears terms bills each leg once: $31 in advance →
    /// $62 in arrears on Jan 22 credits 10 days (−$10.00) now and bills the new terms' 10 days
    /// ($20.00) at the period end, not the whole month; $31 in arrears → $62 in advance bills
    /// the old 21 days ($21.00) and charges the new 10 days ($20.00) now.
    #[test]
    fn changes_between_timings_bill_each_leg_once() {
        let conv = ProrationConvention::DaySpanExclusive;
        let at = ts("2024-01-22T00:00:00Z");
        let policy = ChangePolicy::default();
        let adv = active(3100, BillingTiming::InAdvance, conv, "2024-01-01T00:00:00Z");
        let to_arrears = terms(6200, Interval::monthly(), BillingTiming::InArrears, conv);
        let t = adv.change(to_arrears, 1, &policy, true, at).unwrap();
        assert_eq!(total(t.billing.as_ref().unwrap()), -1000);
        let renewal = t.next.advance(ts("2024-02-01T00:00:00Z")).unwrap().unwrap();
        assert_eq!(total(renewal.billing.as_ref().unwrap()), 2000);
        let arr = active(3100, BillingTiming::InArrears, conv, "2024-01-01T00:00:00Z");
        let to_advance = terms(6200, Interval::monthly(), BillingTiming::InAdvance, conv);
        let t = arr.change(to_advance, 1, &policy, true, at).unwrap();
        assert_eq!(total(t.billing.as_ref().unwrap()), 4100);
        assert_eq!(t.next.current_period_fee.minor, 2000);
        let renewal = t.next.advance(ts("2024-02-01T00:00:00Z")).unwrap().unwrap();
        assert_eq!(total(renewal.billing.as_ref().unwrap()), 6200);
    }

    /// A change during a trial inherits the trial: the new plan's first in-arrears fee covers
    /// the time after the trial only (Jan 11 → Feb 1 of January: 21/31 × $62 = $42.00).
    #[test]
    fn in_arrears_change_during_trial_respects_the_inherited_trial() {
        let conv = ProrationConvention::DaySpanExclusive;
        let input = new_sub(
            terms(3100, Interval::monthly(), BillingTiming::InArrears, conv),
            "2024-01-01T00:00:00Z",
            Some("2024-02-01T00:00:00Z"),
            10,
        );
        let sub = Subscription::start(input, ts("2024-01-01T00:00:00Z"))
            .unwrap()
            .next;
        let up = terms(6200, Interval::monthly(), BillingTiming::InArrears, conv);
        let t = sub
            .change(
                up,
                1,
                &ChangePolicy::default(),
                true,
                ts("2024-01-05T00:00:00Z"),
            )
            .unwrap();
        assert!(t.billing.is_none());
        let mut s = t.next;
        let mut billed = Vec::new();
        while let Some(due) = s.due_at().filter(|d| *d <= ts("2024-02-01T00:00:00Z")) {
            let t = s.advance(due).unwrap().unwrap();
            billed.extend(t.billing.as_ref().map(total));
            s = t.next;
        }
        assert_eq!(billed, vec![4200]);
    }

    /// Immediate downgrades are a change-policy option (JSON `"downgrade": "immediate"`):
    /// in advance they credit the unused old fee and charge the new one now.
    #[test]
    fn immediate_downgrade_is_a_policy_option() {
        let conv = ProrationConvention::DaySpanExclusive;
        let sub = active(6200, BillingTiming::InAdvance, conv, "2024-01-01T00:00:00Z");
        let down = terms(3100, Interval::monthly(), BillingTiming::InAdvance, conv);
        let at = ts("2024-01-22T00:00:00Z");
        let default = sub
            .change(down.clone(), 1, &ChangePolicy::default(), true, at)
            .unwrap();
        assert_eq!(default.events, vec!["subscription.change_scheduled"]);
        let policy: ChangePolicy = serde_json::from_str(r#"{"downgrade":"immediate"}"#).unwrap();
        let t = sub.change(down, 1, &policy, true, at).unwrap();
        assert_eq!(t.events, vec!["subscription.downgraded"]);
        // −$20.00 + $10.00
        assert_eq!(total(t.billing.as_ref().unwrap()), -1000);
    }

    /// flexprice/flexprice `internal/domain/proration/calculator_test.go`
    /// (`TestCalculator_CapCreditAmount`, "previous_credits_limit"): a credit of 100 against
    /// 200 paid with 180 already credited is capped at 20.
    #[test]
    fn plan_change_credit_is_capped_by_what_was_paid() {
        let conv = ProrationConvention::DaySpanExclusive;
        let sub = active(3100, BillingTiming::InAdvance, conv, "2024-01-01T00:00:00Z");
        let up = terms(6200, Interval::monthly(), BillingTiming::InAdvance, conv);
        let cap = proration::CreditCap {
            paid: Money::new(3100, eur()),
            already_credited: Money::new(2900, eur()),
        };
        let t = sub
            .change_capped(
                up,
                1,
                &ChangePolicy::default(),
                true,
                Some(&cap),
                ts("2024-01-22T00:00:00Z"),
            )
            .unwrap();
        // Credit −$10.00 capped to −$2.00; charge $20.00.
        assert_eq!(total(t.billing.as_ref().unwrap()), 1800);
    }

    /// The 500 of issue 14: cancelling exactly at a period boundary (right after the renewal)
    /// bills and credits nothing for the empty stub, with or without prorate.
    #[test]
    fn cancel_at_a_boundary_is_not_an_error() {
        for timing in [BillingTiming::InAdvance, BillingTiming::InArrears] {
            let sub = active(
                3100,
                timing,
                ProrationConvention::ExactSeconds,
                "2024-01-01T00:00:00Z",
            );
            let boundary = ts("2024-02-01T00:00:00Z");
            let renewed = sub.advance(boundary).unwrap().unwrap().next;
            for prorate in [true, false] {
                let t = renewed.cancel(false, prorate, boundary).unwrap();
                assert_eq!(t.next.status, SubscriptionStatus::Cancelled);
                match (timing, prorate) {
                    // In advance with prorate: the whole new period is unused.
                    (BillingTiming::InAdvance, true) => {
                        assert_eq!(total(t.billing.as_ref().unwrap()), -3100)
                    }
                    _ => assert!(t.billing.is_none(), "{timing:?} {prorate}"),
                }
                // And before the renewal ran (the clock is on the boundary, the job not yet).
                let t = sub.cancel(false, prorate, boundary).unwrap();
                if timing == BillingTiming::InArrears {
                    assert_eq!(total(t.billing.as_ref().unwrap()), 3100);
                }
            }
        }
    }

    fn conventions() -> impl Strategy<Value = ProrationConvention> {
        prop_oneof![
            Just(ProrationConvention::ExactSeconds),
            Just(ProrationConvention::CalendarDaysInclusive),
            Just(ProrationConvention::DaySpanExclusive),
            Just(ProrationConvention::ThirtyDayMonths),
            Just(ProrationConvention::FixedDayMonths {
                days: proration::FixedMonthDays::new(28).unwrap()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Every lifecycle action applied exactly at a period boundary (after the renewal ran,
        /// and on the boundary before it ran) returns Ok: no error, no panic.
        #[test]
        fn every_action_at_a_period_boundary_is_ok(
            unit in 0usize..4,
            count in 1u32..3,
            start in 1_600_000_000i64..1_800_000_000,
            anchor_offset in 0i64..3_000_000,
            trial_days in prop_oneof![Just(0u32), 1u32..20],
            in_arrears in any::<bool>(),
            conv in conventions(),
            zone in prop_oneof![Just("UTC"), Just("Europe/Paris"), Just("America/New_York"), Just("Australia/Lord_Howe")],
            renewals in 0usize..3,
            fee in 1i64..100_000,
        ) {
            let unit = [IntervalUnit::Day, IntervalUnit::Week, IntervalUnit::Month, IntervalUnit::Year][unit];
            let interval = Interval::new(unit, count).unwrap();
            let timing = if in_arrears { BillingTiming::InArrears } else { BillingTiming::InAdvance };
            let start = Timestamp::from_second(start).unwrap();
            let paid_from = start.checked_add(SignedDuration::from_hours(24 * i64::from(trial_days))).unwrap();
            let anchor = Timestamp::from_second(paid_from.as_second() + anchor_offset).unwrap();
            let mut input = new_sub(terms(fee, interval, timing, conv), "2024-01-01T00:00:00Z", None, trial_days);
            input.start = start;
            input.billing_anchor = Some(anchor);
            input.time_zone = zone.into();
            let mut sub = Subscription::start(input, start).unwrap().next;
            // Move onto a boundary: through the trial, then `renewals` renewals.
            let mut steps = 0;
            while sub.status == SubscriptionStatus::Trialing || steps < renewals {
                let due = sub.due_at().unwrap();
                if sub.status != SubscriptionStatus::Trialing { steps += 1; }
                sub = sub.advance(due).unwrap().unwrap().next;
            }
            let up = terms(fee * 2, interval, timing, conv);
            let down = terms(fee / 2 + 1, interval, timing, conv);
            let immediate = ChangePolicy { downgrade: proration::ChangeTiming::Immediate, ..ChangePolicy::default() };
            // On the boundary after the renewal (the period's start) and at its end before the
            // renewal ran.
            for (s, at) in [(sub.clone(), sub.current_period.start), (sub.clone(), sub.current_period.end)] {
                for prorate in [true, false] {
                    let r = s.cancel(false, prorate, at);
                    prop_assert!(r.is_ok(), "{:?}", r);
                }
                prop_assert!(s.cancel(true, true, at).is_ok());
                let paused = s.pause(None, at);
                prop_assert!(paused.is_ok());
                let paused = paused.unwrap();
                prop_assert!(paused.resume(at).is_ok());
                prop_assert!(paused.cancel(false, true, at).is_ok());
                for policy in [ChangePolicy::default(), immediate] {
                    for invoice_now in [true, false] {
                        for (t, q) in [(&up, 1), (&down, 1), (&s.terms, 3)] {
                            let r = s.change(t.clone(), q, &policy, invoice_now, at);
                            prop_assert!(r.is_ok(), "{:?}", r);
                            // And the renewal after it.
                            let next = r.unwrap().next;
                            if let Some(due) = next.due_at() {
                                prop_assert!(next.advance(due.max(at)).is_ok());
                            }
                        }
                    }
                }
                prop_assert!(s.advance(at).is_ok());
            }
        }
    }
}
