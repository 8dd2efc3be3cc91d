//! Usage priced by a subscription's terms: what live usage shows and billing bills.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use billing_domain::billing::invoice_draft::{
    build_invoice, InvoiceDraft, InvoiceInput, LineInput, LineSource,
};
use billing_domain::billing::periods::Period;
use billing_domain::billing::subscription::{
    Billing, BillingReason, Subscription, SubscriptionStatus, Transition, UsageTerm,
};
use billing_domain::catalog::charges::{Derivation, Priced};
use billing_domain::catalog::metric::Metric;
use billing_domain::customers::access::Permission;
use billing_domain::events::record::AuditAction;
use billing_domain::kernel::error::ValidationError;
use billing_domain::kernel::ids::{AccountId, SubscriptionId, TenantId, TestClockId};
use billing_domain::kernel::money::Money;
use billing_domain::usage::entitlements::{Check, Entitlement, UsageThreshold};
use billing_domain::usage::meter::{
    self, Placement, UsageEvent, UsageEventInput, UsageOutcome, DEFAULT_GRACE, LATE_USAGE_DEBOUNCE,
    MAX_BATCH,
};
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ports::*;
use super::UsageService;
use crate::kernel::{change, event, to_json, system_caller, WRITE_ATTEMPTS, AppError, Caller, ChangeSpec};

/// A usage charge priced at `usage`, with its commitment.
pub fn price(
    term: &UsageTerm,
    usage: &billing_domain::catalog::charges::Usage,
    sub: &Subscription,
) -> Result<Priced, AppError> {
    let priced = term
        .model
        .price(usage, sub.currency)
        .map_err(|e| AppError::Internal(format!("pricing {} of {}: {e}", term.metric, sub.id)))?;
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
