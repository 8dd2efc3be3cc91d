//! Usage events: what one event says, when it is accepted, which period it counts in, and
//! how events aggregate (count, sum, max, unique_count, latest, weighted_sum) per
//! subscription × metric × period.
//!
//! Rules:
//! - A timestamp more than [`FUTURE_TOLERANCE`] ahead of `now` is refused.
//! - Cancelled subscriptions take no usage; nor does a moment before the subscription began.
//! - An event counts in the subscription's current period (or the period after it, when a
//!   renewal is running late). An event for the last billed period is *late usage*: it is
//!   accepted up to [`DEFAULT_GRACE`] after that period ended, and billed on a supplemental
//!   invoice for the delta; older periods are closed.
//! - While paused, events are accepted (a retry stays a duplicate) but not billed: they
//!   count in no period (seed T143). Trial usage is metered (quotas apply) and free.
//!
//! Aggregation is exact: [`Aggregate::apply`] is commutative for count, sum, max and
//! unique_count, and latest keeps the event with the greatest `(timestamp, transaction_id)`,
//! so the order events arrive in never matters; a transaction id is applied at most once
//! (the store refuses a second event item with the same id in the same transaction as the
//! rollup update), and a unique value counts once (a marker item per value).
//!
//! Levels (recurring metrics) carry over: a period's aggregate is read with the level the
//! period before closed at as its [`Aggregate::opening`], so a period without events bills
//! the carried level, and a late event in the period before moves every level after it.
//! weighted_sum is exact and order-free too: with `moment` = Σ value × (time from the
//! period's start to the event), the level held over a period of length D averages
//! `opening + sum − moment / D`.

use crate::kernel::error::ErrorCode;
use crate::kernel::time::later;
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use ulid::Ulid;

use crate::billing::periods::{BillingCycle, Period};
use crate::billing::subscription::{Subscription, SubscriptionStatus};
use crate::catalog::charges::{ChargeModel, Usage};
use crate::catalog::metric::{Aggregation, Metric};
use crate::kernel::currency::Currency;
use crate::kernel::decimal::{parse_decimal, MAX_PRICE_SCALE};
use crate::kernel::error::ValidationError;
use crate::kernel::ids::{InvoiceId, SubscriptionId};

/// How far ahead of `now` an event's timestamp may be (clock skew of the sender).
pub const FUTURE_TOLERANCE: SignedDuration = SignedDuration::from_mins(5);
/// How long after a billed period ends late usage for it is still taken.
pub const DEFAULT_GRACE: SignedDuration = SignedDuration::from_hours(7 * 24);
/// Late usage waits this long for more late usage before its supplemental invoice is made.
pub const LATE_USAGE_DEBOUNCE: SignedDuration = SignedDuration::from_mins(1);
/// Most events one batch request carries.
pub const MAX_BATCH: usize = 100;
/// Most properties one event carries.
pub const MAX_PROPERTIES: usize = 20;
/// Longest transaction id, property key, or unique value.
pub const MAX_TEXT: usize = 200;
/// Largest magnitude of one event's number (sum, max, latest): the catalog's bound on any
/// quantity, so that one event is never beyond what a price can be applied to. What a
/// period adds up to is bounded where it is recorded: by what its charge can price.
pub const MAX_VALUE: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0);

/// One usage event as sent to `POST /v1/usage` (or inside a batch).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "transaction_id": "req_8f2c1", "subscription": "sub_01JD3X7M2Q8Z5V6W9Y0A1B2C3D",
    "metric": "api_calls", "timestamp": "2026-11-22T10:00:00Z", "properties": {"endpoint": "/v1/search"}
}))]
pub struct UsageEventInput {
    /// Your id of the event: a second event with the same id (per tenant) is a duplicate.
    pub transaction_id: String,
    /// The subscription the usage belongs to…
    pub subscription: Option<String>,
    /// …or the account's `external_id`, when it has exactly one live subscription.
    pub external_account_id: Option<String>,
    /// The metric's code.
    pub metric: String,
    /// The value aggregated (sum, max, latest: a decimal string or integer; unique_count:
    /// the distinct value). Absent: the property named by the metric's `field`.
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: BTreeMap<String, Value>,
    /// When it happened; defaults to now.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub timestamp: Option<Timestamp>,
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageStatus {
    /// Counted (or, while paused, recorded without being billed: `billable: false`).
    Accepted,
    /// Its transaction id was seen before; nothing was counted again.
    Duplicate,
    /// Refused; `error` says why. Nothing was written for it.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageOutcome {
    pub transaction_id: String,
    pub status: UsageStatus,
    /// Accepted events: whether they count in a billable period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billable: Option<bool>,
    /// Accepted events: the period they count in.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub period: Option<Period>,
    /// Accepted events: whether they arrived after their period was invoiced (they go on a
    /// supplemental invoice).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Rejection>,
}

/// Why an event was refused: the same `code` and `param` a single event's problem+json has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rejection {
    pub code: String,
    pub param: String,
    pub message: String,
}

impl UsageOutcome {
    pub fn rejected(transaction_id: String, error: ValidationError) -> Self {
        UsageOutcome {
            transaction_id,
            status: UsageStatus::Rejected,
            billable: None,
            period: None,
            late: false,
            error: Some(Rejection {
                code: error.code.to_string(),
                param: error.param,
                message: error.message,
            }),
        }
    }

    pub fn duplicate(transaction_id: String) -> Self {
        UsageOutcome {
            transaction_id,
            status: UsageStatus::Duplicate,
            billable: None,
            period: None,
            late: false,
            error: None,
        }
    }

    pub fn accepted(transaction_id: String, placement: Placement, late: bool) -> Self {
        UsageOutcome {
            transaction_id,
            status: UsageStatus::Accepted,
            billable: Some(placement != Placement::Unbilled),
            period: placement.period(),
            late,
            error: None,
        }
    }
}

/// An event as validated: the value the metric aggregates is already extracted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    pub transaction_id: String,
    pub metric: String,
    pub timestamp: Timestamp,
    pub value: Measured,
    pub properties: BTreeMap<String, Value>,
}

/// What an event contributes to its metric's aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Measured {
    /// A count metric: the event itself.
    Occurrence,
    /// sum, max, latest: a decimal.
    Number {
        #[serde(with = "crate::kernel::decimal::serde_decimal")]
        value: Decimal,
    },
    /// unique_count: the distinct value, as text.
    Distinct { value: String },
}

fn invalid(code: ErrorCode, param: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(code, param, message)
}

/// Checks the transaction id (the idempotency key of an event within a tenant).
pub fn validate_transaction_id(id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > MAX_TEXT || id.chars().any(char::is_control) {
        return Err(invalid(
            ErrorCode::InvalidTransactionId,
            "transaction_id",
            format!(
                "a transaction_id is 1 to {MAX_TEXT} bytes in UTF-8, without control characters"
            ),
        ));
    }
    Ok(())
}

impl UsageEvent {
    /// Validates an event against its metric. The aggregated value is `value`, or the
    /// property the metric names when `value` is absent.
    pub fn validate(
        transaction_id: String,
        metric: &Metric,
        value: Option<&Value>,
        properties: BTreeMap<String, Value>,
        timestamp: Timestamp,
        now: Timestamp,
    ) -> Result<UsageEvent, ValidationError> {
        validate_transaction_id(&transaction_id)?;
        if properties.len() > MAX_PROPERTIES || properties.keys().any(|k| k.len() > MAX_TEXT) {
            return Err(invalid(
                ErrorCode::InvalidProperties,
                "properties",
                format!(
                    "at most {MAX_PROPERTIES} properties, keys of at most {MAX_TEXT} characters"
                ),
            ));
        }
        if timestamp > later(now, FUTURE_TOLERANCE) {
            return Err(invalid(
                ErrorCode::TimestampInFuture,
                "timestamp",
                format!(
                    "the timestamp {timestamp} is more than 5 minutes after now ({now}); \
                     send usage when it happens"
                ),
            ));
        }
        let (param, raw) = match (value, metric.field.as_deref()) {
            (Some(v), _) => ("value", Some(v)),
            (None, Some(field)) => ("properties", properties.get(field)),
            (None, None) => ("value", None),
        };
        let value = match metric.aggregation {
            Aggregation::Count => Measured::Occurrence,
            Aggregation::Sum
            | Aggregation::Max
            | Aggregation::Latest
            | Aggregation::WeightedSum => Measured::Number {
                value: number(raw, param, metric)?,
            },
            Aggregation::UniqueCount => Measured::Distinct {
                value: distinct(raw, param, metric)?,
            },
        };
        Ok(UsageEvent {
            transaction_id,
            metric: metric.code.clone(),
            timestamp,
            value,
            properties,
        })
    }
}

fn aggregation_name(a: Aggregation) -> &'static str {
    match a {
        Aggregation::Count => "count",
        Aggregation::Sum => "sum",
        Aggregation::Max => "max",
        Aggregation::UniqueCount => "unique_count",
        Aggregation::Latest => "latest",
        Aggregation::WeightedSum => "weighted_sum",
    }
}

fn number(raw: Option<&Value>, param: &str, metric: &Metric) -> Result<Decimal, ValidationError> {
    let field = metric.field.as_deref().unwrap_or("value");
    let refuse = || {
        invalid(
            ErrorCode::InvalidValue,
            param,
            format!(
                "the {} metric `{}` needs a numeric value (`value`, or the property `{field}`): \
                 a decimal string like \"12.5\" or an integer",
                aggregation_name(metric.aggregation),
                metric.code
            ),
        )
    };
    let value = match raw {
        Some(Value::String(s)) => parse_decimal(s, MAX_PRICE_SCALE).map_err(|_| refuse())?,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
            parse_decimal(&n.to_string(), MAX_PRICE_SCALE).map_err(|_| refuse())?
        }
        _ => return Err(refuse()),
    };
    if value.abs() > MAX_VALUE {
        return Err(invalid(
            ErrorCode::UsageValueTooLarge,
            param,
            format!("a usage value is at most {MAX_VALUE} in magnitude; send large usage as several events"),
        ));
    }
    Ok(value)
}

fn distinct(raw: Option<&Value>, param: &str, metric: &Metric) -> Result<String, ValidationError> {
    let text = match raw {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(invalid(
                ErrorCode::InvalidValue,
                param,
                format!(
                    "the unique_count metric `{}` needs the distinct value (`value`, or the property `{}`) as a string or number",
                    metric.code,
                    metric.field.as_deref().unwrap_or("value")
                ),
            ))
        }
    };
    if text.len() > MAX_TEXT {
        return Err(invalid(
            ErrorCode::InvalidValue,
            param,
            format!("a distinct value is at most {MAX_TEXT} bytes in UTF-8"),
        ));
    }
    Ok(text)
}

/// Where an accepted event counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In a period not billed yet (the current one, or the next when a renewal lags).
    Open(Period),
    /// In the last billed period, within the grace window: billed as a supplement.
    Late(Period),
    /// While paused: recorded, billed in no period.
    Unbilled,
}

impl Placement {
    pub fn period(self) -> Option<Period> {
        match self {
            Placement::Open(p) | Placement::Late(p) => Some(p),
            Placement::Unbilled => None,
        }
    }
}

/// Decides which period of `sub` an event at `at` counts in, or why it is refused.
pub fn place(
    sub: &Subscription,
    at: Timestamp,
    now: Timestamp,
    grace: SignedDuration,
) -> Result<Placement, ValidationError> {
    if sub.status == SubscriptionStatus::Cancelled {
        return Err(invalid(
            ErrorCode::SubscriptionCancelled,
            "subscription",
            format!(
                "the subscription {} is cancelled and takes no usage",
                sub.id
            ),
        ));
    }
    if at < sub.started_at {
        return Err(invalid(
            ErrorCode::TimestampBeforeSubscription,
            "timestamp",
            format!(
                "the timestamp {at} is before the subscription started ({})",
                sub.started_at
            ),
        ));
    }
    let current = sub.current_period;
    if at >= current.start {
        if sub.status == SubscriptionStatus::Paused && sub.paused_at.is_some_and(|p| at >= p) {
            return Ok(Placement::Unbilled);
        }
        if at < current.end {
            return Ok(Placement::Open(current));
        }
        // The renewal has not run yet: the event belongs to the period it starts.
        let next = BillingCycle::new(sub.terms.interval, sub.billing_anchor, &sub.time_zone)
            .and_then(|c| c.period_containing(at))
            .map_err(|e| invalid(ErrorCode::InvalidTimestamp, "timestamp", e.to_string()))?;
        return Ok(Placement::Open(next));
    }
    match sub.last_usage_period {
        Some(last) if last.contains(at) => {
            let closes = later(last.end, grace);
            if now > closes {
                Err(period_closed(at, Some(closes)))
            } else {
                Ok(Placement::Late(last))
            }
        }
        _ => Err(period_closed(at, None)),
    }
}

fn period_closed(at: Timestamp, closed_at: Option<Timestamp>) -> ValidationError {
    invalid(
        ErrorCode::PeriodClosed,
        "timestamp",
        match closed_at {
            Some(c) => format!("the period of {at} took late usage until {c}; it is closed"),
            None => format!(
                "the period of {at} is closed (billed before the grace window, or not billable)"
            ),
        },
    )
}

/// The period whose usage a lifecycle step from `previous` to `next` closes, if any: the
/// paid period that ended (renewal), was cut short (cancellation), or was interrupted by
/// a pause that now ends (resume or the pause limit). Trials close nothing: trial usage
/// is free.
pub fn closed_by(previous: &Subscription, next: &Subscription) -> Option<Period> {
    let period = previous.current_period;
    match previous.status {
        SubscriptionStatus::Active | SubscriptionStatus::PastDue => {
            if next.status == SubscriptionStatus::Cancelled {
                let end = next.ended_at.unwrap_or(period.end).min(period.end);
                return Period::new(period.start, end.max(period.start))
                    .ok()
                    .or(Some(period));
            }
            (next.current_period.start != period.start).then_some(period)
        }
        SubscriptionStatus::Paused if next.status != SubscriptionStatus::Paused => {
            let end = previous.paused_at.unwrap_or(period.end).min(period.end);
            Period::new(period.start, end).ok()
        }
        _ => None,
    }
}

/// The latest value reported: the event with the greatest `(timestamp, transaction_id)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    pub at: Timestamp,
    pub transaction_id: String,
    #[serde(with = "crate::kernel::decimal::serde_decimal")]
    pub value: Decimal,
}

/// The aggregate of a set of events of one metric in one period. Every aggregation is kept
/// (they cost nothing), so a rollup can answer any of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Number of events.
    pub events: u64,
    #[serde(with = "crate::kernel::decimal::serde_decimal")]
    pub sum: Decimal,
    #[serde(with = "crate::kernel::decimal::serde_decimal::option", default)]
    pub max: Option<Decimal>,
    #[serde(default)]
    pub latest: Option<Latest>,
    /// Distinct values seen (unique_count).
    pub unique: u64,
    /// weighted_sum: Σ value × milliseconds from the period's start to the event.
    #[serde(with = "crate::kernel::decimal::serde_decimal", default)]
    pub moment: Decimal,
    /// Recurring metrics: the level the period before closed at, carried in. Set when the
    /// rollup is read with its history ([`Aggregate::carried`]), never trusted as stored.
    #[serde(
        with = "crate::kernel::decimal::serde_decimal::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub opening: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the aggregate overflowed")]
pub struct Overflow;

impl Aggregate {
    /// This aggregate with `event` added, if the period stays billable: the aggregate
    /// computable, and `charge` (the subscription's charge for the metric, if it has one)
    /// able to price it in 64-bit minor units of `currency`. Otherwise refused with
    /// `usage_value_too_large` on `param`, so that no accepted usage makes a period
    /// unpriceable.
    #[allow(clippy::too_many_arguments)]
    pub fn admit(
        &self,
        event: &UsageEvent,
        new_value: bool,
        aggregation: Aggregation,
        period: Period,
        charge: Option<&ChargeModel>,
        currency: Currency,
        param: &str,
    ) -> Result<Aggregate, ValidationError> {
        let too_large = |why: String| {
            invalid(
                ErrorCode::UsageValueTooLarge,
                param,
                format!(
                    "this event would take the period's usage beyond what can be billed ({why}); nothing was recorded"
                ),
            )
        };
        let mut next = self.clone();
        let origin = (aggregation == Aggregation::WeightedSum).then_some(period.start);
        next.apply(event, new_value, origin)
            .map_err(|e| too_large(e.to_string()))?;
        if let Some(model) = charge {
            model
                .price(&next.usage(aggregation, model, period), currency)
                .map_err(|e| too_large(e.to_string()))?;
        }
        Ok(next)
    }

    /// Adds one event. `new_value` says whether a distinct value was not seen before in
    /// this aggregate (the store knows, from its marker items). `weighted_from`: the start
    /// of the period of a weighted_sum metric, from which the event's moment is measured.
    pub fn apply(
        &mut self,
        event: &UsageEvent,
        new_value: bool,
        weighted_from: Option<Timestamp>,
    ) -> Result<(), Overflow> {
        self.events = self.events.checked_add(1).ok_or(Overflow)?;
        match &event.value {
            Measured::Occurrence => {}
            Measured::Number { value } => {
                self.sum = self.sum.checked_add(*value).ok_or(Overflow)?;
                if let Some(start) = weighted_from {
                    let held = event.timestamp.duration_since(start).as_millis().max(0);
                    let moment = value
                        .checked_mul(Decimal::from_i128_with_scale(held, 0))
                        .ok_or(Overflow)?;
                    self.moment = self.moment.checked_add(moment).ok_or(Overflow)?;
                }
                self.max = Some(self.max.map_or(*value, |m| m.max(*value)));
                let newer = self.latest.as_ref().is_none_or(|l| {
                    (event.timestamp, event.transaction_id.as_str())
                        > (l.at, l.transaction_id.as_str())
                });
                if newer {
                    self.latest = Some(Latest {
                        at: event.timestamp,
                        transaction_id: event.transaction_id.clone(),
                        value: *value,
                    });
                }
            }
            Measured::Distinct { .. } => {
                if new_value {
                    self.unique = self.unique.checked_add(1).ok_or(Overflow)?;
                }
            }
        }
        Ok(())
    }

    /// Combines the aggregates of two disjoint sets of events. `shared_values` is how many
    /// distinct values both sets saw (0 when their values are disjoint): unique counts
    /// combine by union, everything else exactly.
    pub fn combine(&self, other: &Aggregate, shared_values: u64) -> Result<Aggregate, Overflow> {
        let latest = match (&self.latest, &other.latest) {
            (Some(a), Some(b)) => Some(if (a.at, &a.transaction_id) >= (b.at, &b.transaction_id) {
                a.clone()
            } else {
                b.clone()
            }),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        Ok(Aggregate {
            events: self.events.checked_add(other.events).ok_or(Overflow)?,
            sum: self.sum.checked_add(other.sum).ok_or(Overflow)?,
            max: match (self.max, other.max) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            latest,
            unique: (self.unique + other.unique)
                .checked_sub(shared_values)
                .ok_or(Overflow)?,
            moment: self.moment.checked_add(other.moment).ok_or(Overflow)?,
            opening: self.opening.or(other.opening),
        })
    }

    /// This aggregate with `opening` carried in.
    pub fn carried(mut self, opening: Decimal) -> Aggregate {
        self.opening = Some(opening);
        self
    }

    /// The level at the period's end, which a recurring metric carries into the next:
    /// the opening level moved by the changes (sum, weighted_sum), or the last level
    /// reported (max, latest), else the opening one.
    pub fn closing(&self, aggregation: Aggregation, period: Period) -> Decimal {
        let opening = self.opening.unwrap_or_default();
        match aggregation {
            Aggregation::Sum | Aggregation::WeightedSum => {
                beyond_bounds(opening.checked_add(self.sum))
            }
            Aggregation::Max | Aggregation::Latest => {
                self.latest.as_ref().map_or(opening, |l| l.value)
            }
            Aggregation::Count | Aggregation::UniqueCount => self.quantity(aggregation, period),
        }
    }

    /// The quantity a metric with `aggregation` bills for `period` (the aggregate's), from
    /// the level carried in when there is one: the level at the end (sum, latest), the
    /// highest level held (max), or the level weighted by the time it was held over the
    /// period's length (weighted_sum).
    pub fn quantity(&self, aggregation: Aggregation, period: Period) -> Decimal {
        let opening = self.opening.unwrap_or_default();
        match aggregation {
            Aggregation::Count => Decimal::from(self.events),
            Aggregation::Sum => beyond_bounds(opening.checked_add(self.sum)),
            Aggregation::Max => match (self.opening, self.max) {
                (Some(a), Some(b)) => a.max(b),
                (a, b) => a.or(b).unwrap_or_default(),
            },
            Aggregation::UniqueCount => Decimal::from(self.unique),
            Aggregation::Latest => self.latest.as_ref().map_or(opening, |l| l.value),
            Aggregation::WeightedSum => {
                let length = period.end.duration_since(period.start).as_millis();
                let average_moment = self
                    .moment
                    .checked_div(Decimal::from_i128_with_scale(length.max(1), 0));
                beyond_bounds(
                    opening
                        .checked_add(self.sum)
                        .zip(average_moment)
                        .and_then(|(level, m)| level.checked_sub(m)),
                )
            }
        }
    }

    /// What the engine prices for `model`: percentage charges take the period's total and
    /// count of transactions (the sum of the values and the number of events); every other
    /// model takes the quantity.
    pub fn usage(&self, aggregation: Aggregation, model: &ChargeModel, period: Period) -> Usage {
        match model {
            ChargeModel::Percentage(_) => Usage::Aggregate {
                total_amount: self.sum,
                count: self.events,
            },
            _ => Usage::quantity(self.quantity(aggregation, period)),
        }
    }
}

/// A level beyond what a decimal holds: the largest decimal, which no price can bill, so
/// the period is parked as unpriceable rather than billed wrong.
fn beyond_bounds(level: Option<Decimal>) -> Decimal {
    level.unwrap_or(Decimal::MAX)
}

/// The id of the supplemental invoice for late usage of a subscription's period, made from
/// the rollup versions it bills: the same late usage always gives the same id, so it can be
/// written once.
pub fn supplemental_invoice_id(
    subscription: SubscriptionId,
    period_start: Timestamp,
    billed: &[(String, u64)],
) -> InvoiceId {
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "{subscription}:late:{}",
        period_start.as_millisecond()
    ));
    for (metric, version) in billed {
        hasher.update(format!(":{metric}@{version}"));
    }
    let digest = hasher.finalize();
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    let millis = u64::try_from(period_start.as_millisecond().max(0)).unwrap_or(0);
    InvoiceId::from_ulid(Ulid::from_parts(millis, u128::from_be_bytes(random)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ids::MetricId;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn metric(aggregation: Aggregation, field: Option<&str>) -> Metric {
        Metric {
            id: MetricId::from_ulid(Ulid::from_parts(1, 1)),
            code: "m".into(),
            name: "M".into(),
            description: None,
            aggregation,
            field: field.map(Into::into),
            recurring: false,
            created_at: Timestamp::UNIX_EPOCH,
            updated_at: Timestamp::UNIX_EPOCH,
            version: 1,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    /// A period holding every event of these tests.
    fn wide() -> Period {
        Period::new(at(-100_000), at(100_000)).unwrap()
    }

    fn event(
        m: &Metric,
        id: &str,
        value: Option<Value>,
        t: Timestamp,
    ) -> Result<UsageEvent, ValidationError> {
        UsageEvent::validate(id.into(), m, value.as_ref(), BTreeMap::new(), t, at(0))
    }

    #[test]
    fn sum_values_must_be_numbers_without_floats() {
        let m = metric(Aggregation::Sum, Some("bytes"));
        for bad in [
            serde_json::json!("abc"),
            serde_json::json!(1.5),
            serde_json::json!(true),
        ] {
            let err = event(&m, "t1", Some(bad), at(0)).unwrap_err();
            assert_eq!(
                (err.code.as_str(), err.param.as_str()),
                ("invalid_value", "value")
            );
        }
        let ok = event(&m, "t1", Some(serde_json::json!("12.5")), at(0)).unwrap();
        assert_eq!(
            ok.value,
            Measured::Number {
                value: Decimal::new(125, 1)
            }
        );
        // The metric's field is read from the properties when `value` is absent.
        let from_property = UsageEvent::validate(
            "t2".into(),
            &m,
            None,
            BTreeMap::from([("bytes".into(), serde_json::json!(7))]),
            at(0),
            at(0),
        )
        .unwrap();
        assert_eq!(
            from_property.value,
            Measured::Number {
                value: Decimal::from(7)
            }
        );
        let missing = event(&m, "t3", None, at(0)).unwrap_err();
        assert_eq!(missing.param, "properties");
    }

    #[test]
    fn values_beyond_ten_to_the_fifteen_are_refused_in_both_directions() {
        assert_eq!(MAX_VALUE, Decimal::from(1_000_000_000_000_000i64));
        let m = metric(Aggregation::Sum, None);
        for fits in [
            "1000000000000000",
            "-1000000000000000",
            "999999999999999.999999999999",
        ] {
            assert!(
                event(&m, "t", Some(serde_json::json!(fits)), at(0)).is_ok(),
                "{fits}"
            );
        }
        for beyond in [
            serde_json::json!(10_000_000_000_000_000_000u64),
            serde_json::json!("1000000000000000.000000000001"),
            serde_json::json!("-1000000000000001"),
            serde_json::json!("79228162514264337593543950335"),
        ] {
            let err = event(&m, "t", Some(beyond.clone()), at(0)).unwrap_err();
            assert_eq!(
                (err.code.as_str(), err.param.as_str()),
                ("usage_value_too_large", "value"),
                "{beyond}"
            );
        }
    }

    #[test]
    fn timestamps_more_than_five_minutes_ahead_are_refused() {
        let m = metric(Aggregation::Count, None);
        assert!(event(&m, "t", None, at(300)).is_ok());
        let err = event(&m, "t", None, at(301)).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.param.as_str()),
            ("timestamp_in_future", "timestamp")
        );
        assert_eq!(
            event(&m, "", None, at(0)).unwrap_err().code,
            "invalid_transaction_id"
        );
    }

    #[test]
    fn latest_keeps_the_newest_event_whatever_the_arrival_order() {
        let m = metric(Aggregation::Latest, Some("seats"));
        let old = event(&m, "a", Some(serde_json::json!(9)), at(-10)).unwrap();
        let new = event(&m, "b", Some(serde_json::json!(4)), at(-5)).unwrap();
        let mut one = Aggregate::default();
        one.apply(&new, false, None).unwrap();
        one.apply(&old, false, None).unwrap();
        assert_eq!(one.quantity(Aggregation::Latest, wide()), Decimal::from(4));
        assert_eq!(one.quantity(Aggregation::Max, wide()), Decimal::from(9));
        assert_eq!(one.quantity(Aggregation::Sum, wide()), Decimal::from(13));
        assert_eq!(one.quantity(Aggregation::Count, wide()), Decimal::from(2));
    }

    fn utc(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// The weighted_sum aggregate of `(timestamp, change)` events in `period`, from `opening`.
    fn weighted(period: Period, opening: Option<i64>, events: &[(&str, i64)]) -> Aggregate {
        let m = metric(Aggregation::WeightedSum, Some("value"));
        let mut aggregate = Aggregate::default();
        for (i, (t, v)) in events.iter().enumerate() {
            let e = UsageEvent::validate(
                format!("t{i}"),
                &m,
                Some(&serde_json::json!(v)),
                BTreeMap::new(),
                utc(t),
                period.end,
            )
            .unwrap();
            aggregate.apply(&e, false, Some(period.start)).unwrap();
        }
        match opening {
            Some(level) => aggregate.carried(Decimal::from(level)),
            None => aggregate,
        }
    }

    fn august_2023() -> Period {
        Period::new(utc("2023-08-01T00:00:00Z"), utc("2023-09-01T00:00:00Z")).unwrap()
    }

    /// Lago's weighted_sum spec (lago-api, spec/services/billable_metrics/aggregations/
    /// weighted_sum_service_spec.rb): the same events in August 2023 give their numbers,
    /// rounded to 5 places as the spec rounds them. Their period ends at 23:59:59.999;
    /// ours is the half-open month, which is the same length to the millisecond they count.
    #[test]
    fn weighted_sum_reproduces_lagos_cases() {
        let round = |a: &Aggregate| {
            a.quantity(Aggregation::WeightedSum, august_2023())
                .round_dp(5)
                .normalize()
                .to_string()
        };
        let seven = [
            ("2023-08-01T00:00:00Z", 2),
            ("2023-08-01T01:00:00Z", 3),
            ("2023-08-01T01:30:00Z", 1),
            ("2023-08-01T02:00:00Z", -4),
            ("2023-08-01T04:00:00Z", -2),
            ("2023-08-01T05:00:00Z", 10),
            ("2023-08-01T05:30:00Z", -10),
        ];
        // "aggregates the events": 0.02218, from 7 events.
        let a = weighted(august_2023(), None, &seven);
        assert_eq!((round(&a), a.events), ("0.02218".into(), 7));
        // "when billable metric is recurring … with events": 1000 carried in, 1000.02218,
        // and the level carried on is still 1000.
        let recurring = weighted(august_2023(), Some(1000), &seven);
        assert_eq!(round(&recurring), "1000.02218");
        assert_eq!(
            recurring.closing(Aggregation::WeightedSum, august_2023()),
            Decimal::from(1000)
        );
        // "uses the persisted recurring value as initial value": no events, 1000.
        assert_eq!(round(&weighted(august_2023(), Some(1000), &[])), "1000");
        // "with presentation_by": eu 2 then -1 at 02:00 is 1.00269; us 3 at 01:00 is 2.99597.
        let eu = weighted(
            august_2023(),
            None,
            &[("2023-08-01T00:00:00Z", 2), ("2023-08-01T02:00:00Z", -1)],
        );
        let us = weighted(august_2023(), None, &[("2023-08-01T01:00:00Z", 3)]);
        assert_eq!(
            (round(&eu), round(&us)),
            ("1.00269".into(), "2.99597".into())
        );
        // "with a single event": 1000; "with events with the same timestamp": 6; none: 0.
        let single = weighted(august_2023(), None, &[("2023-08-01T00:00:00Z", 1000)]);
        assert_eq!(round(&single), "1000");
        let same = weighted(
            august_2023(),
            None,
            &[("2023-08-01T00:00:00Z", 3), ("2023-08-01T00:00:00Z", 3)],
        );
        assert_eq!(round(&same), "6");
        assert_eq!(round(&weighted(august_2023(), None, &[])), "0");
    }

    #[test]
    fn a_level_carries_by_its_aggregation() {
        let period = wide();
        let level = |aggregation: Aggregation, values: &[(i64, i64)], opening: i64| {
            let m = metric(aggregation, Some("v"));
            let mut a = Aggregate::default();
            for (i, (t, v)) in values.iter().enumerate() {
                let e = event(&m, &format!("t{i}"), Some(serde_json::json!(v)), at(*t)).unwrap();
                let origin = (aggregation == Aggregation::WeightedSum).then_some(period.start);
                a.apply(&e, false, origin).unwrap();
            }
            let a = a.carried(Decimal::from(opening));
            (
                a.quantity(aggregation, period),
                a.closing(aggregation, period),
            )
        };
        let d = Decimal::from;
        // Levels reported (5 carried in, then 8, then 3): latest bills 3, max 8; both carry 3.
        assert_eq!(
            level(Aggregation::Latest, &[(-50, 8), (-10, 3)], 5),
            (d(3), d(3))
        );
        assert_eq!(
            level(Aggregation::Max, &[(-50, 8), (-10, 3)], 5),
            (d(8), d(3))
        );
        // A max below the carried level: the carried level was held, so it is the max.
        assert_eq!(level(Aggregation::Max, &[(-10, 3)], 5), (d(5), d(3)));
        // Changes (+3, -1 from 5): sum bills and carries 7.
        assert_eq!(
            level(Aggregation::Sum, &[(-50, 3), (-10, -1)], 5),
            (d(7), d(7))
        );
        // Nothing reported: every aggregation bills and carries the carried level.
        for aggregation in [
            Aggregation::Sum,
            Aggregation::Max,
            Aggregation::Latest,
            Aggregation::WeightedSum,
        ] {
            assert_eq!(level(aggregation, &[], 5), (d(5), d(5)), "{aggregation:?}");
        }
    }

    /// A time-ordered step function of levels, integrated per millisecond: the reference
    /// weighted_sum is checked against.
    fn integrate(
        period: Period,
        opening: i64,
        mut changes: Vec<(i64, i64)>,
    ) -> (Decimal, i64, i64) {
        changes.sort();
        let (mut level, mut lowest, mut highest) = (opening, opening, opening);
        let mut at_ms = period.start.as_millisecond();
        let mut area = Decimal::ZERO;
        for (t, v) in changes {
            area += Decimal::from(level) * Decimal::from(t - at_ms);
            at_ms = t;
            level += v;
            lowest = lowest.min(level);
            highest = highest.max(level);
        }
        area += Decimal::from(level) * Decimal::from(period.end.as_millisecond() - at_ms);
        (area, lowest, highest)
    }

    /// A table of 30 events (timestamp offset, number, distinct value) and a delivery
    /// sequence of their indices: the same transaction id always carries the same event.
    fn deliveries() -> impl Strategy<Value = (Vec<(i64, i64, u8)>, Vec<usize>)> {
        (
            prop::collection::vec((-3000i64..0, -1000i64..100_000, 0u8..8), 30),
            prop::collection::vec(0usize..30, 0..60),
        )
    }

    /// Each event measured twice: as a number (sum, max, latest) and as a distinct value.
    fn to_events(table: &[(i64, i64, u8)], order: &[usize]) -> Vec<(UsageEvent, UsageEvent)> {
        let numbers = metric(Aggregation::Sum, Some("v"));
        let distinct = metric(Aggregation::UniqueCount, Some("v"));
        order
            .iter()
            .map(|&i| {
                let (t, v, d) = table[i];
                let id = format!("tx{i}");
                let n = event(&numbers, &id, Some(serde_json::json!(v)), at(t)).unwrap();
                let u = event(
                    &distinct,
                    &id,
                    Some(serde_json::json!(format!("d{d}"))),
                    at(t),
                )
                .unwrap();
                (n, u)
            })
            .collect()
    }

    /// What a store does: skips transaction ids it has, counts a distinct value once.
    fn ingest(
        aggs: &mut (Aggregate, Aggregate),
        seen_ids: &mut BTreeSet<String>,
        seen_values: &mut BTreeSet<String>,
        events: &[(UsageEvent, UsageEvent)],
    ) {
        for (n, u) in events {
            if seen_ids.insert(n.transaction_id.clone()) {
                aggs.0.apply(n, false, Some(at(-3000))).unwrap();
                let Measured::Distinct { value } = &u.value else {
                    unreachable!()
                };
                aggs.1
                    .apply(u, seen_values.insert(value.clone()), None)
                    .unwrap();
            }
        }
    }

    proptest! {
        /// Whatever the price and the events, everything admitted can be priced, and an
        /// event is refused exactly when the period with it could not be (the aggregate then
        /// stays as it was).
        #[test]
        fn admitted_usage_can_always_be_priced_and_refusals_are_exact(
            price in (1i64..1_000_000_000_000_000_000, 0u32..=12),
            values in prop::collection::vec((-1_000_000i64..=1_000_000_000_000_000, 0u32..=12), 1..40),
            aggregation in prop::sample::select(vec![Aggregation::Sum, Aggregation::Max, Aggregation::Latest]),
        ) {
            let unit_price = Decimal::new(price.0, price.1);
            let model = ChargeModel::PerUnit(crate::catalog::charges::PerUnit { unit_price });
            let m = metric(aggregation, None);
            let usd = Currency::from_code("usd").unwrap();
            let mut aggregate = Aggregate::default();
            for (i, (units, scale)) in values.into_iter().enumerate() {
                let value = Decimal::new(units, scale).round_dp(12);
                let e = event(&m, &format!("t{i}"), Some(serde_json::json!(value.to_string())), at(i as i64)).unwrap();
                let mut with = aggregate.clone();
                let computable = with.apply(&e, false, None).is_ok();
                let priceable = computable
                    && model.price(&with.usage(aggregation, &model, wide()), usd).is_ok();
                match aggregate.admit(&e, false, aggregation, wide(), Some(&model), usd, "value") {
                    Ok(next) => {
                        prop_assert!(priceable);
                        prop_assert_eq!(&next, &with);
                        prop_assert!(model.price(&next.usage(aggregation, &model, wide()), usd).is_ok());
                        aggregate = next;
                    }
                    Err(refused) => {
                        prop_assert!(!priceable);
                        prop_assert_eq!(refused.code, ErrorCode::UsageValueTooLarge);
                    }
                }
            }
        }

        /// weighted_sum is the level integrated over the period divided by its length (to
        /// the decimal's precision), so it lies between the lowest and highest level held;
        /// a constant level gives exactly that level.
        #[test]
        fn weighted_sum_is_the_time_average_of_the_level(
            opening in -1_000i64..1_000,
            length_ms in 1i64..40 * 86_400_000,
            changes in prop::collection::vec((0u32..1_000_000, -500i64..500), 0..25),
        ) {
            let start = at(0);
            let period = Period::new(start, start + SignedDuration::from_millis(length_ms)).unwrap();
            let changes: Vec<(i64, i64)> = changes
                .into_iter()
                .map(|(f, v)| (start.as_millisecond() + length_ms * i64::from(f) / 1_000_000, v))
                .collect();
            let m = metric(Aggregation::WeightedSum, Some("v"));
            let mut a = Aggregate::default();
            for (i, (t, v)) in changes.iter().enumerate() {
                let e = UsageEvent::validate(
                    format!("t{i}"), &m, Some(&serde_json::json!(v)), BTreeMap::new(),
                    Timestamp::from_millisecond(*t).unwrap(), period.end,
                ).unwrap();
                a.apply(&e, false, Some(period.start)).unwrap();
            }
            let a = a.carried(Decimal::from(opening));
            let got = a.quantity(Aggregation::WeightedSum, period);
            let (area, lowest, highest) = integrate(period, opening, changes.clone());
            let expected = area / Decimal::from(length_ms);
            prop_assert!((got - expected).abs() < Decimal::new(1, 18), "{} vs {}", got, expected);
            prop_assert!(got >= Decimal::from(lowest) && got <= Decimal::from(highest));
            let net: i64 = changes.iter().map(|c| c.1).sum();
            prop_assert_eq!(a.closing(Aggregation::WeightedSum, period), Decimal::from(opening + net));
            if changes.is_empty() {
                prop_assert_eq!(got, Decimal::from(opening));
            }
        }

        /// Carrying a level through periods (each period's closing level is the next one's
        /// opening, as billing reads them): whatever the periods the events fall in, and
        /// periods without events between, a change-level (sum, weighted_sum) ends at the
        /// sum of every change, and a reported level (max, latest) at the last report.
        #[test]
        fn a_level_carried_through_periods_ends_where_its_events_put_it(
            events in prop::collection::vec((0usize..6, -100i64..100), 0..30),
            aggregation in prop::sample::select(vec![
                Aggregation::Sum, Aggregation::WeightedSum, Aggregation::Max, Aggregation::Latest,
            ]),
        ) {
            let m = metric(aggregation, Some("v"));
            let period = |k: usize| {
                let start = at(k as i64 * 1_000 - 10_000);
                Period::new(start, start + SignedDuration::from_secs(1_000)).unwrap()
            };
            let mut aggregates = vec![Aggregate::default(); 6];
            for (i, (k, v)) in events.iter().enumerate() {
                // Event i sits i seconds into its period, so later events are later in time.
                let e = UsageEvent::validate(
                    format!("t{i}"), &m, Some(&serde_json::json!(v)), BTreeMap::new(),
                    period(*k).start + SignedDuration::from_secs(i as i64), at(0),
                ).unwrap();
                let origin = (aggregation == Aggregation::WeightedSum).then_some(period(*k).start);
                aggregates[*k].apply(&e, false, origin).unwrap();
            }
            let mut level = Decimal::ZERO;
            for (k, a) in aggregates.iter().enumerate() {
                let carried = a.clone().carried(level);
                if a.events == 0 {
                    // A period without events bills the level it carries in.
                    prop_assert_eq!(carried.quantity(aggregation, period(k)), level);
                }
                level = carried.closing(aggregation, period(k));
            }
            let expected = match aggregation {
                Aggregation::Sum | Aggregation::WeightedSum => {
                    Decimal::from(events.iter().map(|e| e.1).sum::<i64>())
                }
                // The last report in time: the greatest period, then the latest in it.
                _ => events
                    .iter()
                    .enumerate()
                    .max_by_key(|(i, (k, _))| (*k, *i))
                    .map_or(Decimal::ZERO, |(_, (_, v))| Decimal::from(*v)),
            };
            prop_assert_eq!(level, expected);
        }

        #[test]
        fn aggregation_is_order_independent_and_duplicate_free(
            (table, order) in deliveries(),
            seed in any::<u64>(),
        ) {
            let events = to_events(&table, &order);
            let mut expected = Default::default();
            ingest(&mut expected, &mut BTreeSet::new(), &mut BTreeSet::new(), &events);
            // Shuffle and deliver everything twice.
            let mut shuffled = events.clone();
            shuffled.extend(events.iter().cloned());
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let mut got = Default::default();
            ingest(&mut got, &mut BTreeSet::new(), &mut BTreeSet::new(), &shuffled);
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn combining_partial_rollups_equals_aggregating_all(
            (table, order) in deliveries(),
            split in 0usize..60,
        ) {
            let mut events = to_events(&table, &order);
            // Partial rollups are over disjoint events (the store deduplicates first).
            let mut ids = BTreeSet::new();
            events.retain(|(e, _)| ids.insert(e.transaction_id.clone()));
            let split = split.min(events.len());
            let (left, right) = events.split_at(split);
            let mut all: (Aggregate, Aggregate) = Default::default();
            ingest(&mut all, &mut BTreeSet::new(), &mut BTreeSet::new(), &events);
            let (mut a, mut b): ((Aggregate, Aggregate), (Aggregate, Aggregate)) = Default::default();
            let (mut va, mut vb) = (BTreeSet::new(), BTreeSet::new());
            ingest(&mut a, &mut BTreeSet::new(), &mut va, left);
            ingest(&mut b, &mut BTreeSet::new(), &mut vb, right);
            let shared = va.intersection(&vb).count() as u64;
            prop_assert_eq!(a.0.combine(&b.0, 0).unwrap(), all.0.clone());
            prop_assert_eq!(b.0.combine(&a.0, 0).unwrap(), all.0.clone());
            prop_assert_eq!(a.1.combine(&b.1, shared).unwrap(), all.1.clone());
            prop_assert_eq!(b.1.combine(&a.1, shared).unwrap(), all.1);
        }
    }
}
