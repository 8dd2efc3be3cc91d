//! Plans and their versions. A plan names what is sold (interval, trial, proration, when
//! the fee is billed); a version holds its prices, which never change once written:
//! changing prices means a new version with an `effective_from`. New subscriptions take
//! the version in effect when they start; existing ones keep theirs unless the version
//! says to move them at their next renewal.
//!
//! Prices are per currency: every charge of a version is priced in the same set of
//! currencies, so a subscription in any of them is billable in full.

use crate::kernel::error::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::billing::periods::{BillingTiming, Interval};
use crate::billing::proration::ProrationConvention;
use crate::catalog::capacity::Capacity;
use crate::catalog::charges::{ChargeModel, Commitment};
use crate::catalog::metric::{validate_code, validate_description, validate_name};
use crate::kernel::currency::Currency;
use crate::kernel::error::ValidationError;
use crate::kernel::ids::PlanId;
use crate::kernel::metadata::{self, Metadata};
use crate::tax::rates::TaxBehavior;
use crate::usage::entitlements::Entitlement;

/// Longest trial a plan may give.
pub const MAX_TRIAL_DAYS: u32 = 730;
/// Most usage charges one plan version may carry.
pub const MAX_USAGE_CHARGES: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "plan_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "code": "pro", "name": "Pro", "description": "For growing teams",
    "interval": {"unit": "month", "count": 1}, "trial_days": 14, "proration": "exact_seconds",
    "billing_timing": "in_advance", "active": true, "current_version": 1, "metadata": {},
    "created_at": "2026-11-22T10:00:00Z", "updated_at": "2026-11-22T10:00:00Z", "version": 1
}))]
pub struct Plan {
    #[schema(value_type = String)]
    pub id: PlanId,
    /// Unique per tenant.
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    pub interval: Interval,
    pub trial_days: u32,
    pub proration: ProrationConvention,
    /// When the recurring fee is billed; usage is always billed in arrears.
    pub billing_timing: BillingTiming,
    /// Inactive plans take no new subscriptions; existing ones continue.
    pub active: bool,
    /// The highest version number written.
    pub current_version: u32,
    pub metadata: Metadata,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// Optimistic concurrency version of the plan record (not the price version).
    pub version: u64,
}

/// The fee charged every period, priced by the subscription's quantity (seats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurringFee {
    /// Currency code → charge model.
    #[schema(value_type = BTreeMap<String, ChargeModel>)]
    pub prices: BTreeMap<Currency, ChargeModel>,
    /// Overrides the tenant's `prices_include_tax` for this charge's lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_behavior: Option<TaxBehavior>,
}

/// A charge on a metric's aggregate for the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageCharge {
    /// The metric's code.
    pub metric: String,
    #[schema(value_type = BTreeMap<String, ChargeModel>)]
    pub prices: BTreeMap<Currency, ChargeModel>,
    /// Minimum and maximum spend per period on this charge, in minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<Commitment>,
    /// Lago's prorated charge: in a partial period (a start off the anchor, a cancellation)
    /// the quantity is prorated by the plan's convention; a volume price still chooses its
    /// tier by the whole quantity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prorated: bool,
    /// Overrides the tenant's `prices_include_tax` for this charge's lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_behavior: Option<TaxBehavior>,
}

/// Kill Bill's capacity usage on a plan: one price per period, that of the first tier whose
/// every limit holds for the period's usage of several metrics at once (the limits' keys are
/// metric codes; [`Capacity`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacityCharge {
    /// Names the charge (its invoice line is `capacity:<code>`).
    pub code: String,
    #[schema(value_type = BTreeMap<String, Capacity>)]
    pub prices: BTreeMap<Currency, Capacity>,
    /// Overrides the tenant's `prices_include_tax` for this charge's lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_behavior: Option<TaxBehavior>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "bundle", "prices": {"usd": {"tiers": [
    {"limits": {"api_calls": "1000", "storage_gb": "100"}, "price": 1000},
    {"limits": {"api_calls": null, "storage_gb": null}, "price": 3000}]}}}))]
pub struct CapacityChargeInput {
    pub code: String,
    pub prices: BTreeMap<String, Capacity>,
    /// `inclusive` or `exclusive`: whether these prices contain tax, overriding the
    /// tenant's `prices_include_tax`; absent follows it.
    #[serde(default)]
    pub tax_behavior: Option<TaxBehavior>,
}

/// Prices as written by a caller: currency codes as text, checked by [`PlanCharges::validate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "recurring_fee": {"prices": {
        "usd": {"model": "flat_fee", "amount": 4900},
        "eur": {"model": "flat_fee", "amount": 4500},
        "jpy": {"model": "flat_fee", "amount": 7500}}},
    "usage_charges": [{"metric": "api_calls", "prices": {
        "usd": {"model": "graduated", "tiers": [{"up_to": "10000", "unit_price": "0"}, {"up_to": null, "unit_price": "0.002"}]},
        "eur": {"model": "graduated", "tiers": [{"up_to": "10000", "unit_price": "0"}, {"up_to": null, "unit_price": "0.0018"}]},
        "jpy": {"model": "graduated", "tiers": [{"up_to": "10000", "unit_price": "0"}, {"up_to": null, "unit_price": "0.3"}]}}}]
}))]
pub struct PlanCharges {
    pub recurring_fee: Option<PricesInput>,
    #[serde(default)]
    pub usage_charges: Vec<UsageChargeInput>,
    /// Kill Bill capacity charges: a price per period chosen by limits on several metrics.
    #[serde(default)]
    pub capacity_charges: Vec<CapacityChargeInput>,
    /// Limits per period on metrics (quotas), hard or soft.
    #[serde(default)]
    pub entitlements: Vec<Entitlement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricesInput {
    pub prices: BTreeMap<String, ChargeModel>,
    /// `inclusive` or `exclusive`: whether these prices contain tax, overriding the
    /// tenant's `prices_include_tax`; absent follows it.
    #[serde(default)]
    pub tax_behavior: Option<TaxBehavior>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageChargeInput {
    pub metric: String,
    pub prices: BTreeMap<String, ChargeModel>,
    pub commitment: Option<Commitment>,
    /// Prorate the quantity in partial periods (per-unit, graduated and volume prices).
    #[serde(default)]
    pub prorated: bool,
    /// `inclusive` or `exclusive`: whether these prices contain tax, overriding the
    /// tenant's `prices_include_tax`; absent follows it.
    #[serde(default)]
    pub tax_behavior: Option<TaxBehavior>,
}

/// Validated prices of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanTerms {
    pub recurring_fee: Option<RecurringFee>,
    pub usage_charges: Vec<UsageCharge>,
    pub capacity_charges: Vec<CapacityCharge>,
    pub entitlements: Vec<Entitlement>,
}

impl PlanCharges {
    /// The metric codes the charges name, for the caller to look up.
    pub fn metric_codes(&self) -> BTreeSet<&str> {
        self.usage_charges
            .iter()
            .map(|c| c.metric.as_str())
            .chain(self.entitlements.iter().map(|e| e.metric.as_str()))
            .chain(self.capacity_charges.iter().flat_map(|c| {
                c.prices
                    .values()
                    .flat_map(|p| p.tiers.iter().flat_map(|t| t.limits.keys()))
                    .map(String::as_str)
            }))
            .collect()
    }

    /// Checks every charge through the engine, that each named metric is one of
    /// `known_metrics`, and that all charges are priced in the same currencies.
    pub fn validate(self, known_metrics: &BTreeSet<String>) -> Result<PlanTerms, ValidationError> {
        let within = |e: ValidationError| e.within("charges");
        if self.recurring_fee.is_none()
            && self.usage_charges.is_empty()
            && self.capacity_charges.is_empty()
        {
            return Err(within(ValidationError::new(
                ErrorCode::NoCharges,
                "",
                "a plan needs a recurring fee, at least one usage or capacity charge, or both",
            )));
        }
        if self.usage_charges.len() + self.capacity_charges.len() > MAX_USAGE_CHARGES {
            return Err(within(ValidationError::new(
                ErrorCode::TooManyCharges,
                "usage_charges",
                format!("at most {MAX_USAGE_CHARGES} usage charges"),
            )));
        }
        let recurring_fee = self
            .recurring_fee
            .map(|fee| {
                let prices = validate_prices(fee.prices, "recurring_fee.prices")?;
                if let Some((currency, _)) = prices
                    .iter()
                    .find(|(_, m)| matches!(m, ChargeModel::Percentage(_)))
                {
                    return Err(ValidationError::new(
                        ErrorCode::InvalidCharge,
                        format!("recurring_fee.prices.{}.model", currency.api_code()),
                        "a recurring fee is priced by quantity; percentage prices transactions",
                    ));
                }
                Ok(RecurringFee {
                    prices,
                    tax_behavior: fee.tax_behavior,
                })
            })
            .transpose()
            .map_err(within)?;
        let mut seen = BTreeSet::new();
        let mut usage_charges = Vec::with_capacity(self.usage_charges.len());
        for (i, charge) in self.usage_charges.into_iter().enumerate() {
            let at = |field: &str| format!("usage_charges[{i}].{field}");
            let metric = validate_code(&charge.metric, "metric")
                .map_err(|e| within(e.within(&format!("usage_charges[{i}]"))))?;
            if !known_metrics.contains(&metric) {
                return Err(within(ValidationError::new(
                    ErrorCode::UnknownMetric,
                    at("metric"),
                    format!("no billable metric has the code `{metric}`; create it with POST /v1/metrics first"),
                )));
            }
            if !seen.insert(metric.clone()) {
                return Err(within(ValidationError::new(
                    ErrorCode::DuplicateMetric,
                    at("metric"),
                    format!("`{metric}` is charged twice; combine the two charges"),
                )));
            }
            let prices = validate_prices(charge.prices, &at("prices")).map_err(within)?;
            if let Some((currency, _)) = prices.iter().find(|(_, m)| {
                matches!(m, ChargeModel::Percentage(p) if p.free_transactions > 0
                    || p.min_per_transaction.is_some()
                    || p.max_per_transaction.is_some())
            }) {
                return Err(within(ValidationError::new(
                    ErrorCode::PerTransactionRulesUnsupported,
                    at(&format!("prices.{}", currency.api_code())),
                    "metered usage is priced from the period's total and count of events, so a \
                     percentage usage charge cannot have free_transactions or a min/max per transaction",
                )));
            }
            if let Some(commitment) = &charge.commitment {
                commitment
                    .validate()
                    .map_err(|e| within(e.within(&at("commitment"))))?;
            }
            if charge.prorated {
                if let Some((currency, _)) = prices.iter().find(|(_, m)| {
                    !matches!(
                        m,
                        ChargeModel::PerUnit(_)
                            | ChargeModel::Graduated(_)
                            | ChargeModel::Volume(_)
                    )
                }) {
                    return Err(within(ValidationError::new(
                        ErrorCode::ProrationUnsupported,
                        at("prorated"),
                        format!(
                            "only per_unit, graduated and volume prices can be prorated (as in \
                             Lago); the {} price is not",
                            currency.api_code()
                        ),
                    )));
                }
            }
            usage_charges.push(UsageCharge {
                metric,
                prices,
                commitment: charge.commitment,
                prorated: charge.prorated,
                tax_behavior: charge.tax_behavior,
            });
        }
        let capacity_charges = validate_capacity_charges(self.capacity_charges, known_metrics)?;
        let entitlements = validate_entitlements(self.entitlements, known_metrics)?;
        let terms = PlanTerms {
            recurring_fee,
            usage_charges,
            capacity_charges,
            entitlements,
        };
        terms.check_same_currencies()?;
        Ok(terms)
    }
}

fn validate_capacity_charges(
    charges: Vec<CapacityChargeInput>,
    known_metrics: &BTreeSet<String>,
) -> Result<Vec<CapacityCharge>, ValidationError> {
    let mut seen = BTreeSet::new();
    let mut validated = Vec::with_capacity(charges.len());
    for (i, charge) in charges.into_iter().enumerate() {
        let at = format!("charges.capacity_charges[{i}]");
        let code = validate_code(&charge.code, "code").map_err(|e| e.within(&at))?;
        if !seen.insert(code.clone()) {
            return Err(ValidationError::new(
                ErrorCode::InvalidCharge,
                format!("{at}.code"),
                format!("two capacity charges are named `{code}`"),
            ));
        }
        if charge.prices.is_empty() {
            return Err(ValidationError::new(
                ErrorCode::MissingPrices,
                format!("{at}.prices"),
                "give a price in at least one currency",
            ));
        }
        let mut prices = BTreeMap::new();
        for (currency_code, capacity) in charge.prices {
            let param = format!("{at}.prices.{currency_code}");
            let currency = Currency::from_code(&currency_code).map_err(|e| {
                ValidationError::new(ErrorCode::InvalidCurrency, param.clone(), e.to_string())
            })?;
            capacity.validate().map_err(|e| e.within(&param))?;
            if let Some(unit) = capacity.tiers[0]
                .limits
                .keys()
                .find(|u| !known_metrics.contains(*u))
            {
                return Err(ValidationError::new(
                    ErrorCode::UnknownMetric,
                    format!("{param}.tiers[0].limits.{unit}"),
                    format!(
                        "a capacity limit names a metric: no billable metric has the code `{unit}`"
                    ),
                ));
            }
            if prices.insert(currency, capacity).is_some() {
                return Err(ValidationError::new(
                    ErrorCode::DuplicateCurrency,
                    param,
                    "this currency is priced twice",
                ));
            }
        }
        validated.push(CapacityCharge {
            code,
            prices,
            tax_behavior: charge.tax_behavior,
        });
    }
    Ok(validated)
}

fn validate_entitlements(
    entitlements: Vec<Entitlement>,
    known_metrics: &BTreeSet<String>,
) -> Result<Vec<Entitlement>, ValidationError> {
    let mut seen = BTreeSet::new();
    for (i, e) in entitlements.iter().enumerate() {
        let at = format!("charges.entitlements[{i}]");
        e.validate().map_err(|err| err.within(&at))?;
        if !known_metrics.contains(&e.metric) {
            return Err(ValidationError::new(
                ErrorCode::UnknownMetric,
                format!("{at}.metric"),
                format!("no billable metric has the code `{}`", e.metric),
            ));
        }
        if !seen.insert(e.metric.as_str()) {
            return Err(ValidationError::new(
                ErrorCode::DuplicateMetric,
                format!("{at}.metric"),
                format!("`{}` has two limits", e.metric),
            ));
        }
    }
    Ok(entitlements)
}

fn validate_prices(
    prices: BTreeMap<String, ChargeModel>,
    param: &str,
) -> Result<BTreeMap<Currency, ChargeModel>, ValidationError> {
    if prices.is_empty() {
        return Err(ValidationError::new(
            ErrorCode::MissingPrices,
            param,
            "give a price in at least one currency",
        ));
    }
    let mut validated = BTreeMap::new();
    for (code, model) in prices {
        let at = format!("{param}.{code}");
        let currency = Currency::from_code(&code).map_err(|e| {
            ValidationError::new(ErrorCode::InvalidCurrency, at.clone(), e.to_string())
        })?;
        model.validate().map_err(|e| e.within(&at))?;
        if validated.insert(currency, model).is_some() {
            return Err(ValidationError::new(
                ErrorCode::DuplicateCurrency,
                at,
                "this currency is priced twice",
            ));
        }
    }
    Ok(validated)
}

impl PlanTerms {
    /// The currencies every charge is priced in.
    pub fn currencies(&self) -> Vec<Currency> {
        self.charges()
            .next()
            .map(|(_, p)| p.into_iter().collect())
            .unwrap_or_default()
    }

    /// Each charge's parameter and the currencies it is priced in.
    fn charges(&self) -> impl Iterator<Item = (String, BTreeSet<Currency>)> + '_ {
        let keys = |p: &BTreeMap<Currency, ChargeModel>| p.keys().copied().collect();
        self.recurring_fee
            .iter()
            .map(move |f| ("recurring_fee.prices".to_owned(), keys(&f.prices)))
            .chain(
                self.usage_charges
                    .iter()
                    .enumerate()
                    .map(move |(i, c)| (format!("usage_charges[{i}].prices"), keys(&c.prices))),
            )
            .chain(self.capacity_charges.iter().enumerate().map(|(i, c)| {
                (
                    format!("capacity_charges[{i}].prices"),
                    c.prices.keys().copied().collect(),
                )
            }))
    }

    fn check_same_currencies(&self) -> Result<(), ValidationError> {
        let expected: BTreeSet<Currency> = self.currencies().into_iter().collect();
        for (param, got) in self.charges() {
            if got != expected {
                let codes = |s: &BTreeSet<Currency>| {
                    s.iter()
                        .map(|c| c.api_code())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(ValidationError::new(
                    ErrorCode::CurrencyMismatch,
                    format!("charges.{param}"),
                    format!(
                        "every charge must be priced in the same currencies: expected {}, got {}",
                        codes(&expected),
                        codes(&got)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// One immutable set of prices of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanVersion {
    #[schema(value_type = String)]
    pub plan_id: PlanId,
    pub number: u32,
    /// New subscriptions starting at or after this instant get this version.
    #[schema(value_type = String, format = DateTime)]
    pub effective_from: Timestamp,
    /// Existing subscriptions move to this version at their next renewal.
    pub migrate_existing: bool,
    /// Days between the price change email and the first renewal at this version's
    /// prices (0: no email; a migration waits for the first renewal this long after it).
    #[serde(default)]
    pub migration_notice_days: u32,
    #[schema(value_type = Vec<String>)]
    pub currencies: Vec<Currency>,
    pub recurring_fee: Option<RecurringFee>,
    pub usage_charges: Vec<UsageCharge>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_charges: Vec<CapacityCharge>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<Entitlement>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A subscription asked for a currency the plan is not priced in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plan version {version} has no prices in {currency}; it is priced in {offered}")]
pub struct NotPricedIn {
    pub version: u32,
    pub currency: Currency,
    pub offered: String,
}

impl PlanVersion {
    fn new(
        plan_id: PlanId,
        number: u32,
        effective_from: Timestamp,
        migration: Migrating,
        terms: PlanTerms,
        now: Timestamp,
    ) -> Self {
        PlanVersion {
            plan_id,
            number,
            effective_from,
            migrate_existing: migration.existing,
            migration_notice_days: migration.notice_days,
            currencies: terms.currencies(),
            recurring_fee: terms.recurring_fee,
            usage_charges: terms.usage_charges,
            capacity_charges: terms.capacity_charges,
            entitlements: terms.entitlements,
            created_at: now,
        }
    }

    /// Fails clearly when the version has no prices in `currency`.
    pub fn require_currency(&self, currency: Currency) -> Result<(), NotPricedIn> {
        if self.currencies.contains(&currency) {
            return Ok(());
        }
        Err(NotPricedIn {
            version: self.number,
            currency,
            offered: self
                .currencies
                .iter()
                .map(|c| c.api_code())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The recurring fee's model in `currency`.
    pub fn recurring_fee_in(&self, currency: Currency) -> Option<&ChargeModel> {
        self.recurring_fee
            .as_ref()
            .and_then(|f| f.prices.get(&currency))
    }

    /// A usage charge by metric code.
    pub fn usage_charge(&self, metric: &str) -> Option<&UsageCharge> {
        self.usage_charges.iter().find(|c| c.metric == metric)
    }

    /// A capacity charge by code.
    pub fn capacity_charge(&self, code: &str) -> Option<&CapacityCharge> {
        self.capacity_charges.iter().find(|c| c.code == code)
    }
}

/// The version a subscription starting at `at` gets: the highest-numbered version already
/// in effect. `versions` may be in any order.
pub fn version_in_effect(versions: &[PlanVersion], at: Timestamp) -> Option<&PlanVersion> {
    versions
        .iter()
        .filter(|v| v.effective_from <= at)
        .max_by_key(|v| v.number)
}

/// The version a subscription on version `own` moves to when it renews at `at`: the
/// latest one published with `migrate_existing`, newer than `own` and in effect by `at`.
/// Versions without it leave their subscriptions where they are (grandfathered).
pub fn migration_target(versions: &[PlanVersion], own: u32, at: Timestamp) -> Option<&PlanVersion> {
    versions
        .iter()
        .filter(|v| v.migrate_existing && v.number > own && v.effective_from <= at)
        .max_by_key(|v| v.number)
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "code": "pro", "name": "Pro", "interval": {"unit": "month", "count": 1}, "trial_days": 14,
    "proration": "exact_seconds", "billing_timing": "in_advance",
    "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 4900}}}}
}))]
pub struct NewPlan {
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    pub interval: Interval,
    #[serde(default)]
    pub trial_days: u32,
    #[serde(default)]
    pub proration: ProrationConvention,
    #[serde(default = "in_advance")]
    pub billing_timing: BillingTiming,
    #[serde(default)]
    pub metadata: Metadata,
    pub charges: PlanCharges,
}

fn in_advance() -> BillingTiming {
    BillingTiming::InAdvance
}

/// What may change on a plan without a new version. Interval and billing timing are fixed:
/// existing subscriptions' periods are built on them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Pro (2026)", "trial_days": 30}))]
pub struct PlanPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub trial_days: Option<u32>,
    pub proration: Option<ProrationConvention>,
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "effective_from": "2027-01-01T00:00:00Z", "migrate_existing": true,
    "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 5900}}}}
}))]
pub struct NewPlanVersion {
    /// Defaults to now; may be in the future, never in the past.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub effective_from: Option<Timestamp>,
    /// Move existing subscriptions to this version at their next renewal.
    #[serde(default)]
    pub migrate_existing: bool,
    /// With `migrate_existing`: email each subscriber this many days (at most 90) before
    /// the first renewal at the new prices; a subscription migrates only at a renewal at
    /// least this long after its email was sent.
    #[serde(default)]
    pub migration_notice_days: u32,
    pub charges: PlanCharges,
}

/// The longest notice before a price migration.
pub const MAX_MIGRATION_NOTICE_DAYS: u32 = 90;

/// Whether and how a new version moves existing subscriptions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Migrating {
    pub existing: bool,
    pub notice_days: u32,
}

impl Migrating {
    /// A version's migration as asked for: a notice only for a version that migrates.
    pub fn validated(existing: bool, notice_days: u32) -> Result<Self, ValidationError> {
        let invalid = |hint: String| {
            ValidationError::new(
                ErrorCode::InvalidMigrationNotice,
                "migration_notice_days",
                hint,
            )
        };
        if notice_days > MAX_MIGRATION_NOTICE_DAYS {
            return Err(invalid(format!(
                "a notice is 0 to {MAX_MIGRATION_NOTICE_DAYS} days"
            )));
        }
        if notice_days > 0 && !existing {
            return Err(invalid(
                "a notice is only for a version that migrates existing subscriptions: \
                 set migrate_existing to true"
                    .into(),
            ));
        }
        Ok(Self {
            existing,
            notice_days,
        })
    }
}

/// Why a plan change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanChangeError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the plan is inactive")]
    Inactive,
}

pub(crate) fn validate_trial(days: u32) -> Result<u32, ValidationError> {
    if days > MAX_TRIAL_DAYS {
        return Err(ValidationError::new(
            ErrorCode::InvalidTrial,
            "trial_days",
            format!("a trial may last at most {MAX_TRIAL_DAYS} days"),
        ));
    }
    Ok(days)
}

impl Plan {
    /// Builds version 1 of a plan and its first price version from validated terms.
    pub fn create(
        id: PlanId,
        input: NewPlan,
        terms: PlanTerms,
        now: Timestamp,
    ) -> Result<(Plan, PlanVersion), ValidationError> {
        input.interval.validate().map_err(|e| {
            ValidationError::new(ErrorCode::InvalidInterval, "interval.count", e.to_string())
        })?;
        metadata::validate(&input.metadata)?;
        let plan = Plan {
            id,
            code: validate_code(&input.code, "code")?,
            name: validate_name(&input.name)?,
            description: validate_description(input.description)?,
            interval: input.interval,
            trial_days: validate_trial(input.trial_days)?,
            proration: input.proration,
            billing_timing: input.billing_timing,
            active: true,
            current_version: 1,
            metadata: input.metadata,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let first = PlanVersion::new(id, 1, now, Migrating::default(), terms, now);
        Ok((plan, first))
    }

    pub fn apply(&self, patch: PlanPatch, now: Timestamp) -> Result<Plan, ValidationError> {
        let mut next = self.clone();
        if let Some(name) = patch.name {
            next.name = validate_name(&name)?;
        }
        if let Some(description) = patch.description {
            next.description = validate_description(Some(description))?;
        }
        if let Some(days) = patch.trial_days {
            next.trial_days = validate_trial(days)?;
        }
        if let Some(proration) = patch.proration {
            next.proration = proration;
        }
        if let Some(changes) = patch.metadata {
            next.metadata = metadata::merge(&self.metadata, &changes)?;
        }
        next.updated_at = now;
        next.version += 1;
        Ok(next)
    }

    /// Deactivation: no new subscriptions; existing ones continue. Idempotent in effect,
    /// but a plan already inactive reports it.
    pub fn deactivate(&self, now: Timestamp) -> Result<Plan, PlanChangeError> {
        if !self.active {
            return Err(PlanChangeError::Inactive);
        }
        Ok(Plan {
            active: false,
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// Writes the next price version after `latest`. It may not take effect before now or
    /// before the latest version does, so versions take effect in number order.
    pub fn add_version(
        &self,
        latest: &PlanVersion,
        effective_from: Option<Timestamp>,
        migration: Migrating,
        terms: PlanTerms,
        now: Timestamp,
    ) -> Result<(Plan, PlanVersion), PlanChangeError> {
        if !self.active {
            return Err(PlanChangeError::Inactive);
        }
        let effective_from =
            crate::kernel::time::supported(effective_from.unwrap_or(now), "effective_from")?;
        if effective_from < now {
            return Err(ValidationError::new(
                ErrorCode::EffectiveFromInPast,
                "effective_from",
                "prices cannot change retroactively; give a time from now on",
            )
            .into());
        }
        if effective_from < latest.effective_from {
            return Err(ValidationError::new(
                ErrorCode::EffectiveFromOutOfOrder,
                "effective_from",
                format!(
                    "version {} takes effect at {}; a later version cannot take effect before it",
                    latest.number, latest.effective_from
                ),
            )
            .into());
        }
        let number = self.current_version + 1;
        let version = PlanVersion::new(self.id, number, effective_from, migration, terms, now);
        let plan = Plan {
            current_version: number,
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        };
        Ok((plan, version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The version a renewal moves to: the newest that migrates, is in effect and is newer
    /// than the subscription's; a newer version that does not migrate changes nothing.
    #[test]
    fn the_migration_target_is_the_newest_migrating_version_in_effect() {
        let id = PlanId::from_ulid(ulid::Ulid::from_parts(1, 1));
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let version = |number, from: &str, migrate| PlanVersion {
            plan_id: id,
            number,
            effective_from: at(from),
            migrate_existing: migrate,
            migration_notice_days: 0,
            currencies: Vec::new(),
            recurring_fee: None,
            usage_charges: Vec::new(),
            capacity_charges: Vec::new(),
            entitlements: Vec::new(),
            created_at: at("2027-01-01T00:00:00Z"),
        };
        let versions = [
            version(1, "2027-01-01T00:00:00Z", false),
            version(2, "2027-02-01T00:00:00Z", true),
            version(3, "2027-03-01T00:00:00Z", false),
            version(4, "2027-04-01T00:00:00Z", true),
        ];
        let target = |own, when| migration_target(&versions, own, at(when)).map(|v| v.number);
        assert_eq!(target(1, "2027-01-31T00:00:00Z"), None, "not in effect yet");
        assert_eq!(target(1, "2027-02-01T00:00:00Z"), Some(2));
        assert_eq!(
            target(1, "2027-03-15T00:00:00Z"),
            Some(2),
            "3 does not migrate"
        );
        assert_eq!(
            target(2, "2027-03-15T00:00:00Z"),
            None,
            "grandfathered on 2"
        );
        assert_eq!(target(1, "2027-04-01T00:00:00Z"), Some(4));
        assert_eq!(target(4, "2027-05-01T00:00:00Z"), None);
    }
    use serde_json::json;
    use ulid::Ulid;

    fn charges(value: serde_json::Value) -> PlanCharges {
        serde_json::from_value(value).unwrap()
    }

    fn metrics() -> BTreeSet<String> {
        ["api_calls".to_owned(), "storage".to_owned()].into()
    }

    fn terms() -> PlanTerms {
        charges(json!({
            "recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 4900}, "eur": {"model": "flat_fee", "amount": 4500}}},
            "usage_charges": [{"metric": "api_calls", "prices": {
                "usd": {"model": "per_unit", "unit_price": "0.002"},
                "eur": {"model": "per_unit", "unit_price": "0.0018"}}}]
        }))
        .validate(&metrics())
        .unwrap()
    }

    fn new_plan() -> NewPlan {
        serde_json::from_value(json!({
            "code": "pro", "name": "Pro", "interval": {"unit": "month"},
            "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 4900}}}}
        }))
        .unwrap()
    }

    fn pro() -> (Plan, PlanVersion) {
        Plan::create(
            PlanId::from_ulid(Ulid::from_parts(1, 1)),
            new_plan(),
            terms(),
            t(0),
        )
        .unwrap()
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn valid_terms_offer_their_currencies() {
        let terms = terms();
        let currencies: Vec<&str> = terms.currencies().iter().map(|c| c.code()).collect();
        assert_eq!(currencies, ["EUR", "USD"]);
    }

    #[test]
    fn bad_charges_name_the_field_at_fault() {
        let cases = [
            (json!({}), "charges", "no_charges"),
            (
                json!({"recurring_fee": {"prices": {"xyz": {"model": "flat_fee", "amount": 1}}}}),
                "charges.recurring_fee.prices.xyz",
                "invalid_currency",
            ),
            (
                json!({"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": -1}}}}),
                "charges.recurring_fee.prices.usd.amount",
                "invalid_charge",
            ),
            (
                json!({"usage_charges": [{"metric": "nope", "prices": {"usd": {"model": "per_unit", "unit_price": "1"}}}]}),
                "charges.usage_charges[0].metric",
                "unknown_metric",
            ),
            (
                json!({"usage_charges": [
                    {"metric": "api_calls", "prices": {"usd": {"model": "per_unit", "unit_price": "1"}}},
                    {"metric": "api_calls", "prices": {"usd": {"model": "per_unit", "unit_price": "2"}}}]}),
                "charges.usage_charges[1].metric",
                "duplicate_metric",
            ),
            (
                json!({"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 1}, "eur": {"model": "flat_fee", "amount": 1}}},
                       "usage_charges": [{"metric": "api_calls", "prices": {"usd": {"model": "per_unit", "unit_price": "1"}}}]}),
                "charges.usage_charges[0].prices",
                "currency_mismatch",
            ),
            (
                json!({"usage_charges": [{"metric": "api_calls", "prices": {"usd": {"model": "graduated", "tiers": [
                    {"up_to": "100", "unit_price": "1"}, {"up_to": "50", "unit_price": "1"}, {"up_to": null, "unit_price": "1"}]}}}]}),
                "charges.usage_charges[0].prices.usd.tiers[1].up_to",
                "invalid_charge",
            ),
            (
                json!({"recurring_fee": {"prices": {"usd": {"model": "percentage", "rate": "2.9"}}}}),
                "charges.recurring_fee.prices.usd.model",
                "invalid_charge",
            ),
        ];
        for (value, param, code) in cases {
            let err = charges(value.clone()).validate(&metrics()).unwrap_err();
            assert_eq!(
                (err.param.as_str(), err.code.as_str()),
                (param, code),
                "{value}"
            );
        }
    }

    /// A notice is 0..=90 days, and only on a version that migrates.
    #[test]
    fn a_migration_notice_is_bounded_and_only_for_migrating_versions() {
        assert_eq!(
            Migrating::validated(true, 90).map(|m| m.notice_days),
            Ok(90)
        );
        assert_eq!(Migrating::validated(false, 0), Ok(Migrating::default()));
        for (existing, days) in [(true, 91), (false, 7)] {
            let err = Migrating::validated(existing, days).unwrap_err();
            assert_eq!(
                (err.code.as_str(), err.param.as_str()),
                ("invalid_migration_notice", "migration_notice_days")
            );
        }
    }

    #[test]
    fn versions_take_effect_in_order_and_never_in_the_past() {
        let (plan, v1) = pro();
        assert_eq!(
            (plan.current_version, v1.number, v1.effective_from),
            (1, 1, t(0))
        );
        let past = plan.add_version(&v1, Some(t(-10)), Migrating::default(), terms(), t(100));
        assert!(
            matches!(past, Err(PlanChangeError::Invalid(e)) if e.code == "effective_from_in_past")
        );
        let (plan2, v2) = plan
            .add_version(
                &v1,
                Some(t(1000)),
                Migrating::validated(true, 0).unwrap(),
                terms(),
                t(100),
            )
            .unwrap();
        assert_eq!((plan2.current_version, v2.number, plan2.version), (2, 2, 2));
        let early = plan2.add_version(&v2, Some(t(500)), Migrating::default(), terms(), t(200));
        assert!(
            matches!(early, Err(PlanChangeError::Invalid(e)) if e.code == "effective_from_out_of_order")
        );

        let versions = [v1.clone(), v2.clone()];
        assert_eq!(
            version_in_effect(&versions, t(999)).map(|v| v.number),
            Some(1)
        );
        assert_eq!(
            version_in_effect(&versions, t(1000)).map(|v| v.number),
            Some(2)
        );
        assert_eq!(version_in_effect(&versions, t(-1)), None);
    }

    #[test]
    fn a_subscription_currency_must_be_priced() {
        let (_, v1) = pro();
        assert!(v1
            .require_currency(Currency::from_code("eur").unwrap())
            .is_ok());
        let err = v1
            .require_currency(Currency::from_code("jpy").unwrap())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "plan version 1 has no prices in JPY; it is priced in eur, usd"
        );
    }

    #[test]
    fn inactive_plans_refuse_new_versions_and_a_second_deactivation() {
        let (plan, v1) = pro();
        let off = plan.deactivate(t(1)).unwrap();
        assert!(!off.active);
        assert_eq!(off.deactivate(t(2)), Err(PlanChangeError::Inactive));
        assert_eq!(
            off.add_version(&v1, None, Migrating::default(), terms(), t(2)),
            Err(PlanChangeError::Inactive)
        );
    }
}
