//! Usage priced by a subscription's terms: what live usage shows and billing bills.

use billing_domain::billing::invoice_draft::LineInput;
use billing_domain::billing::periods::Period;
use billing_domain::billing::subscription::{Subscription, UsageTerm};
use billing_domain::catalog::charges::Priced;
use billing_domain::catalog::metric::Aggregation;
use jiff::SignedDuration;
use std::collections::BTreeMap;

use billing_domain::kernel::error::ErrorCode;
use rust_decimal::Decimal;

use crate::kernel::AppError;
use crate::ports::*;

/// What `sub`'s usage came to cannot be computed (an amount beyond 64-bit minor units):
/// no retry changes that, so billing parks the subscription and a request answers 409.
pub fn unpriceable(sub: &Subscription, cause: impl std::fmt::Display) -> AppError {
    AppError::Conflict {
        code: ErrorCode::UsageUnpriceable,
        message: format!("the usage of {} cannot be priced: {cause}", sub.id),
        param: None,
    }
}

/// Whether `err` is [`unpriceable`], or its invoice's tax cannot be decided (no rate for
/// a taxable sale): the step that met it is parked with the reason, not retried, until an
/// operator fixes the cause and retries it.
pub fn is_unpriceable(err: &AppError) -> bool {
    matches!(
        err,
        AppError::Conflict {
            code: ErrorCode::UsageUnpriceable | ErrorCode::TaxRateMissing,
            ..
        }
    )
}

/// A usage charge priced at `usage`, with its commitment.
pub fn price(
    term: &UsageTerm,
    usage: &billing_domain::catalog::charges::Usage,
    sub: &Subscription,
) -> Result<Priced, AppError> {
    let priced = term
        .model
        .price(usage, sub.currency)
        .map_err(|e| unpriceable(sub, format_args!("{}: {e}", term.metric)))?;
    Ok(match &term.commitment {
        Some(c) => priced.with_commitment(c),
        None => priced,
    })
}

/// One line per usage charge of `sub`, priced from the period's `rollups` (prorated
/// charges prorated to the period).
pub fn usage_lines(
    sub: &Subscription,
    rollups: &[Rollup],
    period: Period,
) -> Result<Vec<LineInput>, AppError> {
    sub.terms
        .usage_charges
        .iter()
        .map(|term| {
            let usage = match rollups.iter().find(|r| r.metric == term.metric) {
                Some(r) => r.usage(&term.model),
                None => {
                    Rollup::empty(sub, &term.metric, Aggregation::Count, period).usage(&term.model)
                }
            };
            let usage = term.prorate(usage, sub.usage_fraction(term, &period)?);
            Ok(term.line(usage, period))
        })
        .chain(capacity_lines(sub, rollups, period))
        .collect()
}

/// One line per capacity charge of `sub`: the price of the first tier whose every limit
/// holds for the period's usage of its metrics (each aggregated as its metric says).
pub fn capacity_lines<'a>(
    sub: &'a Subscription,
    rollups: &'a [Rollup],
    period: Period,
) -> impl Iterator<Item = Result<LineInput, AppError>> + 'a {
    sub.terms.capacity_charges.iter().map(move |term| {
        let usage = term
            .metrics()
            .filter_map(|m| {
                rollups
                    .iter()
                    .find(|r| &r.metric == m)
                    .map(|r| (m.clone(), r.quantity()))
            })
            .collect();
        term.line(&usage, period, sub.currency).map_err(|e| {
            AppError::Internal(format!("pricing capacity {} of {}: {e}", term.code, sub.id))
        })
    })
}

/// The rollups of `period` read with the subscription's earlier ones (`history`: its
/// rollups of the periods up to and including `period`, in any order): the aggregate of
/// each recurring metric carries in the level its previous period closed at, and a
/// recurring metric without events in `period` gets a rollup of the carried level alone.
/// Late usage in an earlier period therefore moves every level after it.
pub fn with_levels(sub: &Subscription, history: &[Rollup], period: Period) -> Vec<Rollup> {
    let mut ordered: Vec<&Rollup> = history
        .iter()
        .filter(|r| r.period.start <= period.start)
        .collect();
    ordered.sort_by_key(|r| r.period.start);
    // Each recurring metric's closing level so far, with its aggregation.
    let mut levels: BTreeMap<String, (Decimal, Aggregation)> = BTreeMap::new();
    let mut rollups = Vec::new();
    for r in ordered {
        let mut r = r.clone();
        if r.recurring {
            let opening = levels.get(r.metric.as_str()).map_or(Decimal::ZERO, |l| l.0);
            r.aggregate = r.aggregate.carried(opening);
        }
        if r.period.start == period.start {
            levels.remove(r.metric.as_str());
            rollups.push(r);
        } else if r.recurring {
            let closing = r.aggregate.closing(r.aggregation, r.period);
            levels.insert(r.metric.clone(), (closing, r.aggregation));
        }
    }
    for (metric, (level, aggregation)) in levels {
        let mut carried = Rollup::empty(sub, &metric, aggregation, period);
        carried.recurring = true;
        carried.aggregate = carried.aggregate.carried(level);
        rollups.push(carried);
    }
    rollups
}

/// The rollups of `sub`'s period starting at `period`'s start, with levels carried in:
/// one Query over the subscription's rollups up to that period.
pub async fn period_rollups(
    store: &(impl UsageStore + ?Sized),
    tenant: billing_domain::kernel::ids::TenantId,
    sub: &Subscription,
    period: Period,
) -> Result<Vec<Rollup>, AppError> {
    let history = store
        .list_rollups(
            tenant,
            sub.id,
            sub.started_at.min(period.start),
            period.start + SignedDuration::from_millis(1),
        )
        .await?;
    Ok(with_levels(sub, &history, period))
}
