//! Live usage: a subscription's periods with what they cost so far, and entitlement
//! checks.

use std::collections::{BTreeMap, BTreeSet};

use billing_domain::billing::invoice_draft::{build_invoice, InvoiceDraft, InvoiceInput};
use billing_domain::billing::periods::Period;
use billing_domain::billing::subscription::Subscription;
use billing_domain::catalog::charges::{Derivation, Priced};
use billing_domain::customers::access::Permission;
use billing_domain::customers::account::AccountStatus;
use billing_domain::kernel::error::{check_key_text, ErrorCode};
use billing_domain::kernel::ids::{AccountId, SubscriptionId, TenantId};
use billing_domain::kernel::money::{MinorUnits, Money};
use billing_domain::usage::entitlements::Check;
use billing_domain::usage::meter;
use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use super::pricing::{period_rollups, price, usage_lines, with_levels};
use super::{invalid, UsageService};
use crate::kernel::{AppError, Caller};
use crate::ports::*;
use crate::tax::TaxCustomer;
use billing_domain::tax::resolve::InvoiceTax;

/// One metric of a period: the aggregate, and what it costs so far.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MetricUsage {
    pub metric: String,
    /// The metric's aggregate (count, sum, max, unique_count or latest) in the period.
    #[serde(with = "billing_domain::kernel::decimal::serde_decimal")]
    #[schema(value_type = String)]
    pub quantity: Decimal,
    pub events: u64,
    /// Priced by the subscription's usage charge; `null` for a metric it does not charge.
    #[schema(value_type = Option<Object>)]
    pub amount: Option<Money>,
    /// How the amount was computed (the engine's derivation: tiers, rounding, commitment).
    #[schema(value_type = Option<Object>)]
    pub derivation: Option<Derivation>,
    /// What invoices billed for it so far (once the period is invoiced), minor units.
    #[schema(value_type = Option<i64>)]
    pub billed_amount: Option<MinorUnits>,
    /// The plan's limit on it, and what is left.
    pub entitlement: Option<Check>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PeriodUsage {
    #[schema(value_type = Object)]
    pub period: Period,
    pub current: bool,
    pub metrics: Vec<MetricUsage>,
    /// For the current period: the invoice its end would produce with the usage so far.
    #[schema(value_type = Option<Object>)]
    pub projected_invoice: Option<InvoiceDraft>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SubscriptionUsage {
    #[schema(value_type = String)]
    pub subscription_id: SubscriptionId,
    pub currency: String,
    pub periods: Vec<PeriodUsage>,
}

/// The answer to an entitlement check.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EntitlementCheck {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub metric: String,
    #[schema(value_type = Option<String>)]
    pub subscription_id: Option<SubscriptionId>,
    #[schema(value_type = Option<Object>)]
    pub period: Option<Period>,
    #[serde(flatten)]
    pub check: Check,
}

impl UsageService {
    /// The usage of a subscription: the current period (with its projected invoice), or
    /// the periods starting in `[from, to)`.
    pub async fn subscription_usage(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        range: Option<(Timestamp, Timestamp)>,
    ) -> Result<SubscriptionUsage, AppError> {
        caller.require(Permission::Read)?;
        let sub = self
            .store
            .get_subscription(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("subscription", id))?;
        let current = sub.current_period;
        let (from, to) = range.unwrap_or((
            current.start,
            current.start + SignedDuration::from_millis(1),
        ));
        if from >= to {
            return Err(invalid(ErrorCode::InvalidRange, "to", "`to` must be after `from`").into());
        }
        // Levels carry from the first period on, so the history is read from there.
        let history = self
            .store
            .list_rollups(caller.tenant_id, sub.id, sub.started_at.min(from), to)
            .await?;
        let mut by_period: BTreeMap<Timestamp, Period> = history
            .iter()
            .filter(|r| r.period.start >= from)
            .map(|r| (r.period.start, r.period))
            .collect();
        if (from..to).contains(&current.start) {
            by_period.entry(current.start).or_insert(current);
        }
        let mut periods = Vec::with_capacity(by_period.len());
        for (start, period) in by_period {
            let rollups = with_levels(&sub, &history, period);
            let is_current = start == current.start;
            let metrics = period_metrics(&sub, &rollups, is_current)?;
            let projected_invoice = if is_current {
                // Taxed as the period's end will tax it.
                let tax = self
                    .tax
                    .invoice_tax(
                        caller.tenant_id,
                        TaxCustomer::Account(sub.account_id),
                        current.end,
                        sub.test_clock,
                    )
                    .await?;
                projected_invoice(&sub, &rollups, &tax)?
            } else {
                None
            };
            periods.push(PeriodUsage {
                period,
                current: is_current,
                metrics,
                projected_invoice,
            });
        }
        Ok(SubscriptionUsage {
            subscription_id: sub.id,
            currency: sub.currency.api_code().to_owned(),
            periods,
        })
    }

    /// May the account use `quantity` more of `metric` now? One read of its quota
    /// snapshot in the common case.
    pub async fn check_entitlement(
        &self,
        caller: &Caller,
        account: &str,
        metric: &str,
        quantity: Decimal,
    ) -> Result<EntitlementCheck, AppError> {
        caller.require(Permission::Read)?;
        if quantity.is_sign_negative() {
            return Err(invalid(
                ErrorCode::InvalidQuantity,
                "quantity",
                format!("quantity must not be negative, got {quantity}"),
            )
            .into());
        }
        // Both are looked up by key.
        check_key_text(account, "account")?;
        check_key_text(metric, "metric")?;
        let tenant = caller.tenant_id;
        let account_id = match AccountId::parse(account, "account") {
            Ok(id) => id,
            Err(_) => self
                .account_by_external_id(tenant, account)
                .await?
                .ok_or_else(|| {
                    invalid(
                        ErrorCode::UnknownAccount,
                        "account",
                        format!("no account has the id or external_id `{account}`"),
                    )
                })?,
        };
        // The quota snapshot and the account (is it blocked?) are read together.
        let (quota, blocked) = tokio::try_join!(
            async { Ok::<_, AppError>(self.store.get_quota(tenant, account_id, metric).await?) },
            self.denied_by_block(tenant, account_id),
        )?;
        let answer = |check: Check| if blocked { check.blocked() } else { check };
        if let Some(quota) = quota {
            let now = self
                .clocks
                .now_for(caller.tenant_id, quota.test_clock)
                .await?;
            let used = if quota.period.contains(now) || now < quota.period.start {
                quota.used
            } else if quota.recurring {
                // A new period began and nothing was reported in it yet: the level carries.
                self.carried_level(tenant, &quota).await?
            } else {
                Decimal::ZERO
            };
            return Ok(EntitlementCheck {
                account_id,
                metric: metric.to_owned(),
                subscription_id: Some(quota.subscription_id),
                period: Some(quota.period),
                check: answer(quota.entitlement.check(used, quantity)),
            });
        }
        // Nothing reported yet with a limit: the plan decides, with nothing used.
        if self
            .store
            .get_metric_by_code(tenant, metric)
            .await?
            .is_none()
        {
            return Err(invalid(
                ErrorCode::UnknownMetric,
                "metric",
                format!("no billable metric has the code `{metric}`"),
            )
            .into());
        }
        let live = self.live_subscriptions(tenant, account_id).await?;
        let limited = live.iter().find_map(|s| {
            s.terms
                .entitlements
                .iter()
                .find(|e| e.metric == metric)
                .map(|e| (s, e))
        });
        Ok(match limited {
            Some((sub, e)) => EntitlementCheck {
                account_id,
                metric: metric.to_owned(),
                subscription_id: Some(sub.id),
                period: Some(sub.current_period),
                check: answer(e.check(Decimal::ZERO, quantity)),
            },
            None => EntitlementCheck {
                account_id,
                metric: metric.to_owned(),
                subscription_id: live.first().map(|s| s.id),
                period: live.first().map(|s| s.current_period),
                check: answer(Check::unlimited(Decimal::ZERO)),
            },
        })
    }
}

impl UsageService {
    /// A level's quantity in its subscription's current period, read with its history
    /// (late usage in the period before may have moved it since the snapshot).
    async fn carried_level(
        &self,
        tenant: TenantId,
        quota: &QuotaSnapshot,
    ) -> Result<Decimal, AppError> {
        let Some(sub) = self
            .store
            .get_subscription(tenant, quota.subscription_id)
            .await?
        else {
            return Ok(Decimal::ZERO);
        };
        Ok(
            period_rollups(&*self.store, tenant, &sub, sub.current_period)
                .await?
                .iter()
                .find(|r| r.metric == quota.metric)
                .map_or(Decimal::ZERO, Rollup::quantity),
        )
    }

    /// Is the account blocked by dunning, with a policy that denies its entitlements? The
    /// policy is read only for a blocked account.
    async fn denied_by_block(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<bool, AppError> {
        let blocked = self
            .store
            .get_account(tenant, account)
            .await?
            .is_some_and(|a| a.status == AccountStatus::Blocked);
        if !blocked {
            return Ok(false);
        }
        let policy = self.store.get_dunning_policy(tenant).await?;
        Ok(policy.unwrap_or_default().on_block.deny_entitlements)
    }
}

/// Each charged metric (and each other metric with usage) of a period, priced.
fn period_metrics(
    sub: &Subscription,
    rollups: &[Rollup],
    current: bool,
) -> Result<Vec<MetricUsage>, AppError> {
    let mut metrics = Vec::new();
    let mut named: BTreeSet<&str> = BTreeSet::new();
    for term in &sub.terms.usage_charges {
        named.insert(&term.metric);
        let rollup = rollups.iter().find(|r| r.metric == term.metric);
        let usage = match rollup {
            Some(r) => r.usage(&term.model),
            None => billing_domain::usage::meter::Aggregate::default().usage(
                billing_domain::catalog::metric::Aggregation::Count,
                &term.model,
                sub.current_period,
            ),
        };
        let priced = price(term, &usage, sub)?;
        metrics.push(metric_usage(
            sub,
            &term.metric,
            rollup,
            Some(priced),
            current,
        ));
    }
    for rollup in rollups
        .iter()
        .filter(|r| !named.contains(r.metric.as_str()))
    {
        metrics.push(metric_usage(
            sub,
            &rollup.metric,
            Some(rollup),
            None,
            current,
        ));
    }
    Ok(metrics)
}

fn metric_usage(
    sub: &Subscription,
    metric: &str,
    rollup: Option<&Rollup>,
    priced: Option<Priced>,
    current: bool,
) -> MetricUsage {
    let quantity = rollup.map(Rollup::quantity).unwrap_or_default();
    MetricUsage {
        metric: metric.to_owned(),
        quantity,
        events: rollup.map_or(0, |r| r.aggregate.events),
        amount: priced.as_ref().map(|p| p.amount),
        derivation: priced.map(|p| p.derivation),
        billed_amount: rollup.and_then(|r| r.billed.as_ref()).map(|b| b.amount),
        entitlement: current
            .then(|| sub.terms.entitlements.iter().find(|e| e.metric == metric))
            .flatten()
            .map(|e| e.check(quantity, Decimal::ONE)),
    }
}

/// The invoice the end of the current period would produce, with the usage so far.
fn projected_invoice(
    sub: &Subscription,
    rollups: &[Rollup],
    tax: &InvoiceTax,
) -> Result<Option<InvoiceDraft>, AppError> {
    let Some(mut transition) = sub.advance(sub.current_period.end)? else {
        return Ok(None);
    };
    if let Some(period) = meter::closed_by(sub, &transition.next) {
        transition.bill_usage(period, usage_lines(sub, rollups, period)?);
    }
    let Some(mut billing) = transition.billing else {
        return Ok(None);
    };
    tax.apply(&mut billing.lines);
    let mut draft = build_invoice(&InvoiceInput {
        currency: sub.currency,
        lines: billing.lines,
        discounts: Vec::new(),
        credits: Vec::new(),
        minimum_commitment: None,
    })
    .map_err(|e| super::pricing::unpriceable(sub, e))?;
    tax.mark(&mut draft.lines);
    Ok(Some(draft))
}

impl UsageService {
    /// What the usage of the account's live subscriptions in `currency` costs so far in
    /// their current periods, not invoiced yet (untaxed, before discounts): what a wallet's
    /// ongoing balance takes off its balance.
    pub async fn unbilled_usage(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: billing_domain::kernel::currency::Currency,
    ) -> Result<MinorUnits, AppError> {
        let mut total = 0i64;
        for sub in self.live_subscriptions(tenant, account).await? {
            if sub.currency != currency || sub.terms.usage_charges.is_empty() {
                continue;
            }
            let period = sub.current_period;
            let rollups = self
                .store
                .list_rollups(
                    tenant,
                    sub.id,
                    period.start,
                    period.start + SignedDuration::from_millis(1),
                )
                .await?;
            let draft = build_invoice(&InvoiceInput {
                currency,
                lines: usage_lines(&sub, &rollups, period)?,
                discounts: Vec::new(),
                credits: Vec::new(),
                minimum_commitment: None,
            })
            .map_err(|e| super::pricing::unpriceable(&sub, e))?;
            total = total.saturating_add(draft.subtotal);
        }
        Ok(MinorUnits::new(total))
    }
}
