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

use crate::billing::invoice_draft::{LineInput, LineSource};
use crate::billing::periods::{BillingCycle, BillingTiming, Interval, Period};
use crate::billing::proration::{
    self, ChangeDirection, ChangePolicy, PlanPrice, ProrationConvention, ProrationItem,
};
use crate::catalog::charges::{ChargeModel, Commitment, Usage};
use crate::catalog::plan::{NotPricedIn, Plan, PlanVersion};
use crate::kernel::currency::Currency;
use crate::kernel::error::ValidationError;
use crate::kernel::ids::{AccountId, PlanId, SubscriptionId, TestClockId};
use crate::kernel::metadata::{self, Metadata};
use crate::kernel::money::Money;

/// `subscription.trial_will_end` fires this long before a trial ends.
pub const TRIAL_WARNING: SignedDuration = SignedDuration::from_hours(72);
/// A subscription paused longer than this is cancelled (configurable per call).
pub const DEFAULT_MAX_PAUSE: SignedDuration = SignedDuration::from_hours(90 * 24);

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
    pub usage_charges: Vec<UsageTerm>,
    /// Limits per period on metrics (quotas).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<crate::usage::entitlements::Entitlement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageTerm {
    pub metric: String,
    pub model: ChargeModel,
    pub commitment: Option<Commitment>,
}

impl UsageTerm {
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
            discountable: true,
        }
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
            usage_charges: version
                .usage_charges
                .iter()
                .filter_map(|c| {
                    Some(UsageTerm {
                        metric: c.metric.clone(),
                        model: c.prices.get(&currency)?.clone(),
                        commitment: c.commitment,
                    })
                })
                .collect(),
            entitlements: version.entitlements.clone(),
        })
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
    pub scheduled_change: Option<ScheduledChange>,
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
    pub metadata: Metadata,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub version: u64,
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
}

/// What a transition bills: lines for one invoice of the subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Billing {
    pub reason: BillingReason,
    /// The subscription period the invoice is for.
    pub period: Period,
    pub lines: Vec<LineInput>,
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
    if let Some(metric) = usage
        .keys()
        .find(|m| !terms.usage_charges.iter().any(|c| &c.metric == *m))
    {
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
            }),
            _ => None,
        };
        if let Some(mut billing) = billing {
            for charge in &terms.usage_charges {
                if let Some(quantity) = usage.get(&charge.metric) {
                    billing
                        .lines
                        .push(charge.line(quantity.clone(), billing.period));
                }
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
            pending_items: Vec::new(),
            invoice_count: 0,
            last_usage_period: None,
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
        Some(Billing {
            reason,
            period,
            lines,
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
            discountable: true,
        })
    }

    /// When the next transition falls due, if any.
    pub fn due_at(&self) -> Option<Timestamp> {
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
            SubscriptionStatus::Active | SubscriptionStatus::PastDue => {
                Some(self.current_period.end)
            }
        }
    }

    /// Performs the transition due at or before `now`, or `None` when nothing is due (a
    /// duplicate or early delivery: safe to ignore).
    pub fn advance(&self, now: Timestamp) -> Result<Option<Transition>, SubscriptionError> {
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
            SubscriptionStatus::Active | SubscriptionStatus::PastDue => next.renew(due)?,
        };
        Ok(Some(transition))
    }

    fn end(&mut self, at: Timestamp) {
        self.status = SubscriptionStatus::Cancelled;
        self.cancelled_at.get_or_insert(at);
        self.ended_at = Some(at);
        self.scheduled_change = None;
    }

    /// The current period ended at `at`: bill in arrears what was used, then either end the
    /// subscription or start the next period (applying a scheduled change first).
    fn renew(mut self, at: Timestamp) -> Result<Transition, SubscriptionError> {
        let ended = self.current_period;
        let mut arrears = Vec::new();
        if self.terms.billing_timing == BillingTiming::InArrears {
            arrears.extend(self.fee_line(&ended, None));
        }
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
        if let Some(change) = self.scheduled_change.take() {
            self.terms = change.terms;
            self.quantity = change.quantity;
            events.push(EventType::SubscriptionPlanChanged);
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
            let tz = self.cycle()?.time_zone().clone();
            let credit = proration::credit_unused(
                self.current_period_fee,
                &self.current_period,
                paused_at,
                self.terms.proration,
                &tz,
            )
            .map_err(calendar)?;
            self.pending_items.extend(credit);
        }
        self.paused_at = None;
        self.resumes_at = None;
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
        if prorate && self.status != SubscriptionStatus::Trialing {
            let tz = self.cycle()?.time_zone().clone();
            let credit = proration::cancellation_credit(
                self.current_period_fee,
                &self.current_period,
                now,
                self.terms.proration,
                &tz,
            )
            .map_err(calendar)?;
            lines.extend(credit.into_iter().map(proration_line));
        }
        let period = Period::new(
            self.current_period.start,
            now.max(self.current_period.start),
        )
        .map_err(calendar)?;
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
        if terms.interval != self.terms.interval {
            return Err(ValidationError::new(
                ErrorCode::IntervalChangeUnsupported,
                "plan",
                "moving between billing intervals is done by cancelling at period end and subscribing anew",
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
        let tz = self.cycle()?.time_zone().clone();
        let change = if self.terms.billing_timing == BillingTiming::InAdvance {
            proration::plan_change(
                self.current_period_fee,
                new_fee,
                &self.current_period,
                now,
                terms.proration,
                &tz,
            )
            .map_err(calendar)?
        } else {
            proration::PlanChange {
                credit: None,
                charge: None,
            }
        };
        next.terms = terms;
        next.quantity = quantity;
        next.scheduled_change = None;
        let items: Vec<ProrationItem> = change.credit.into_iter().chain(change.charge).collect();
        if self.terms.billing_timing == BillingTiming::InAdvance {
            next.current_period_fee = items
                .iter()
                .try_fold(self.current_period_fee, |acc, i| acc.checked_add(i.amount))
                .map_err(|e| SubscriptionError::Pricing(e.to_string()))?;
        }
        let events = vec![match decision.direction {
            ChangeDirection::Upgrade => EventType::SubscriptionUpgraded,
            ChangeDirection::Downgrade => EventType::SubscriptionDowngraded,
            ChangeDirection::Lateral => EventType::SubscriptionPlanChanged,
        }];
        if invoice_now {
            let period = Period::new(now, self.current_period.end.max(now)).map_err(calendar)?;
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
    };
    LineInput {
        id: None,
        description: description.into(),
        period: Some(item.period),
        source: LineSource::Proration { item },
        tax_rates: Vec::new(),
        discountable: false,
    }
}
