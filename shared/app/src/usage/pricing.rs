//! Usage priced by a subscription's terms: what live usage shows and billing bills.

use billing_domain::billing::invoice_draft::LineInput;
use billing_domain::billing::periods::Period;
use billing_domain::billing::subscription::{Subscription, UsageTerm};
use billing_domain::catalog::charges::Priced;

use billing_domain::kernel::error::ErrorCode;

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

/// Whether `err` is [`unpriceable`]: the step that met it is parked, not retried.
pub fn is_unpriceable(err: &AppError) -> bool {
    matches!(
        err,
        AppError::Conflict {
            code: ErrorCode::UsageUnpriceable,
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

/// One line per usage charge of `sub`, priced from the period's `rollups`.
pub fn usage_lines(sub: &Subscription, rollups: &[Rollup], period: Period) -> Vec<LineInput> {
    sub.terms
        .usage_charges
        .iter()
        .map(|term| {
            let usage = match rollups.iter().find(|r| r.metric == term.metric) {
                Some(r) => r.aggregate.usage(r.aggregation, &term.model),
                None => billing_domain::usage::meter::Aggregate::default().usage(
                    billing_domain::catalog::metric::Aggregation::Count,
                    &term.model,
                ),
            };
            term.line(usage, period)
        })
        .collect()
}
