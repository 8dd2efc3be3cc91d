//! Charge models: how a quantity (or a list of transaction amounts) becomes money.
//!
//! A [`ChargeModel`] is what the catalog API accepts as JSON, internally tagged by `model`:
//!
//! ```json
//! {"model": "graduated", "tiers": [
//!     {"up_to": "1000", "unit_price": "0.01", "flat_fee": 0},
//!     {"up_to": null,   "unit_price": "0.005"}]}
//! ```
//!
//! Units of the fields, everywhere:
//! - **Fixed amounts** (`amount`, `flat_fee`, `fixed_fee`, `free_amount`, `min_per_transaction`,
//!   `max_per_transaction`, commitments) are **integers in minor units** (`1999` = $19.99).
//! - **Prices per something** (`unit_price`, `package_price`, `block_price`) and **rates**
//!   (`rate`, a percentage) are **decimal strings in major units** (`"0.0015"` = 0.15 cents).
//! - **Quantities** (`up_to`, `package_size`, `block_size`, `free_units`) are decimal strings (or
//!   JSON integers): quantities may be fractional (GB-hours).
//!
//! [`ChargeModel::validate`] reports the offending field as a path relative to the model
//! (`tiers[1].up_to`) with a human message, for a 400 with `param`. [`ChargeModel::price`]
//! returns the amount rounded once with the crate's one rule plus a [`Derivation`] that
//! explains it.

use crate::kernel::error::ErrorCode;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::kernel::currency::Currency;
use crate::kernel::decimal::{self, serde_decimal, RoundingApplied, MAX_PRICE_SCALE};
pub use crate::kernel::error::ValidationError;
use crate::kernel::money::Money;

/// Most tiers a tiered model may have.
pub const MAX_TIERS: usize = 100;

/// Upper bound for any quantity or price, to keep every product far from `Decimal`'s limit.
fn max_magnitude() -> Decimal {
    Decimal::from(1_000_000_000_000_000i64) // 10^15
}

/// A charge definition the catalog stores and prices with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum ChargeModel {
    /// A fixed amount per period, whatever the quantity.
    FlatFee(FlatFee),
    /// `quantity × unit_price`.
    PerUnit(PerUnit),
    /// Each slice of the quantity at its own tier's price (plus each reached tier's flat fee).
    Graduated(Tiers),
    /// Every unit at the price of the tier the whole quantity reaches (plus that tier's flat fee).
    Volume(Tiers),
    /// A price per started package of `package_size` units after `free_units`.
    Package(Package),
    /// A percentage of transaction amounts, with fixed fee, free allowances and per-transaction
    /// minimum and maximum.
    Percentage(Percentage),
    /// Graduated tiers whose unit is a block of N units (Kill Bill's tiered blocks).
    TieredBlocks(TieredBlocks),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlatFee {
    /// Minor units per period.
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PerUnit {
    /// Major units per unit, decimal string.
    #[serde(with = "serde_decimal")]
    pub unit_price: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    pub tiers: Vec<Tier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Inclusive upper bound of the tier; `null` on (and only on) the last tier.
    #[serde(with = "serde_decimal::option", default)]
    pub up_to: Option<Decimal>,
    /// Major units per unit in this tier.
    #[serde(with = "serde_decimal", default)]
    pub unit_price: Decimal,
    /// Minor units charged once when the quantity reaches this tier.
    #[serde(default)]
    pub flat_fee: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Units per package (> 0, may be fractional).
    #[serde(with = "serde_decimal")]
    pub package_size: Decimal,
    /// Major units per started package.
    #[serde(with = "serde_decimal")]
    pub package_price: Decimal,
    /// Units given free before packages are counted.
    #[serde(with = "serde_decimal", default)]
    pub free_units: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Percentage {
    /// Percent of the rated amount (`"2.9"` = 2.9 %).
    #[serde(with = "serde_decimal")]
    pub rate: Decimal,
    /// Minor units added per charged transaction.
    #[serde(default)]
    pub fixed_fee: i64,
    /// The first N transactions of the period are free (no rate, no fixed fee).
    #[serde(default)]
    pub free_transactions: u64,
    /// Minor units of transaction amount free of the rate per period, consumed in order.
    #[serde(default)]
    pub free_amount: i64,
    /// Minor units: the least a charged transaction pays.
    #[serde(default)]
    pub min_per_transaction: Option<i64>,
    /// Minor units: the most a charged transaction pays.
    #[serde(default)]
    pub max_per_transaction: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TieredBlocks {
    pub tiers: Vec<BlockTier>,
    /// How the tiers price a quantity (Kill Bill's `TierBlockPolicy`); `all_tiers` by default.
    #[serde(default, skip_serializing_if = "TierBlockPolicy::is_default")]
    pub tier_block_policy: TierBlockPolicy,
}

/// Kill Bill's tier-block policies.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TierBlockPolicy {
    /// Each tier's slice of the quantity in that tier's blocks (graduated).
    #[default]
    AllTiers,
    /// The tier the whole quantity reaches prices every unit, in that tier's blocks: 101,001
    /// units past a tier ending at 101,000 are ⌈101001 / 1000⌉ = 102 blocks of the next tier.
    TopTier,
}

impl TierBlockPolicy {
    fn is_default(&self) -> bool {
        *self == TierBlockPolicy::AllTiers
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockTier {
    /// Inclusive upper bound in units; `null` on the last tier. A bounded tier spans a whole
    /// number of blocks.
    #[serde(with = "serde_decimal::option", default)]
    pub up_to: Option<Decimal>,
    /// Units per block in this tier (> 0).
    #[serde(with = "serde_decimal")]
    pub block_size: Decimal,
    /// Major units per started block.
    #[serde(with = "serde_decimal")]
    pub block_price: Decimal,
}

/// Minimum and maximum spend per period for a charge (commitments), in minor units. Applied to
/// the rounded amount: below `minimum` it is raised to `minimum`, above `maximum` capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Commitment {
    #[serde(default)]
    pub minimum: Option<i64>,
    #[serde(default)]
    pub maximum: Option<i64>,
}

/// Why pricing failed for a valid definition (or for an invalid one passed unvalidated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("invalid charge definition: {0}")]
    Invalid(#[from] ValidationError),
    #[error("quantity must not be negative (got {0})")]
    NegativeQuantity(Decimal),
    #[error("transaction amounts must not be negative (transaction {index}: {amount})")]
    NegativeTransaction { index: usize, amount: Decimal },
    #[error("this charge needs {expected}, but was given {given}")]
    WrongUsage {
        expected: &'static str,
        given: &'static str,
    },
    #[error("amount overflow while pricing")]
    Overflow,
}

/// What is being priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Usage {
    /// A quantity of units (seats, GB-hours, API calls).
    Quantity {
        #[serde(with = "serde_decimal")]
        quantity: Decimal,
    },
    /// Individual transaction amounts in major units, for percentage charges.
    Transactions {
        #[serde(with = "crate::catalog::charges::dec_vec")]
        amounts: Vec<Decimal>,
    },
    /// A total and a count of transactions, for percentage charges without per-transaction
    /// rules (no free transactions, no min/max per transaction).
    Aggregate {
        #[serde(with = "serde_decimal")]
        total_amount: Decimal,
        count: u64,
    },
    /// A prorated quantity and the full-period quantity it was prorated from (Lago's prorated
    /// charges): a volume price chooses its tier by `full_quantity` and prices `quantity`.
    Prorated {
        #[serde(with = "serde_decimal")]
        quantity: Decimal,
        #[serde(with = "serde_decimal")]
        full_quantity: Decimal,
    },
}

impl Usage {
    pub fn quantity(q: Decimal) -> Self {
        Usage::Quantity { quantity: q }
    }

    fn name(&self) -> &'static str {
        match self {
            Usage::Quantity { .. } => "a quantity",
            Usage::Transactions { .. } => "transaction amounts",
            Usage::Aggregate { .. } => "an aggregate of transactions",
            Usage::Prorated { .. } => "a prorated quantity",
        }
    }
}

pub(crate) mod dec_vec {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct D(#[serde(with = "crate::kernel::decimal::serde_decimal")] Decimal);

    pub fn serialize<S: Serializer>(v: &[Decimal], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| D(*d)))
    }

    pub fn deserialize<'de, De: Deserializer<'de>>(d: De) -> Result<Vec<Decimal>, De::Error> {
        Ok(Vec::<D>::deserialize(d)?
            .into_iter()
            .map(|D(x)| x)
            .collect())
    }
}

/// Which model produced a derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    FlatFee,
    PerUnit,
    Graduated,
    Volume,
    Package,
    Percentage,
    TieredBlocks,
}

/// One step of a price computation. Amounts are exact (unrounded) major units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// A fixed amount.
    Flat {
        #[serde(with = "serde_decimal")]
        amount: Decimal,
    },
    /// `units × unit_price`.
    Units {
        #[serde(with = "serde_decimal")]
        units: Decimal,
        #[serde(with = "serde_decimal")]
        unit_price: Decimal,
        #[serde(with = "serde_decimal")]
        amount: Decimal,
    },
    /// The part of the quantity in `(from, to]` priced in tier `tier` (0-based).
    TierSlice {
        tier: usize,
        #[serde(with = "serde_decimal")]
        from: Decimal,
        #[serde(with = "serde_decimal::option")]
        to: Option<Decimal>,
        #[serde(with = "serde_decimal")]
        units: Decimal,
        #[serde(with = "serde_decimal")]
        unit_price: Decimal,
        #[serde(with = "serde_decimal")]
        flat_fee: Decimal,
        #[serde(with = "serde_decimal")]
        amount: Decimal,
    },
    /// The whole quantity priced at tier `tier` (volume).
    VolumeTier {
        tier: usize,
        #[serde(with = "serde_decimal")]
        units: Decimal,
        /// For a prorated volume charge: the full-period quantity that chose the tier.
        #[serde(
            with = "serde_decimal::option",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        full_units: Option<Decimal>,
        #[serde(with = "serde_decimal")]
        unit_price: Decimal,
        #[serde(with = "serde_decimal")]
        flat_fee: Decimal,
        #[serde(with = "serde_decimal")]
        amount: Decimal,
    },
    /// Free units taken off before pricing.
    FreeUnits {
        #[serde(with = "serde_decimal")]
        units: Decimal,
    },
    /// `ceil(units / size)` started blocks (packages) at `block_price` each.
    Blocks {
        /// The tier, for tiered blocks; `None` for packages.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        tier: Option<usize>,
        #[serde(with = "serde_decimal")]
        units: Decimal,
        #[serde(with = "serde_decimal")]
        block_size: Decimal,
        blocks: u64,
        #[serde(with = "serde_decimal")]
        block_price: Decimal,
        #[serde(with = "serde_decimal")]
        amount: Decimal,
    },
    /// A percentage charge over transactions.
    Percentage {
        transactions: u64,
        free_transactions: u64,
        charged_transactions: u64,
        #[serde(with = "serde_decimal")]
        total_amount: Decimal,
        #[serde(with = "serde_decimal")]
        free_amount_used: Decimal,
        #[serde(with = "serde_decimal")]
        rated_amount: Decimal,
        #[serde(with = "serde_decimal")]
        rate_percent: Decimal,
        #[serde(with = "serde_decimal")]
        rate_amount: Decimal,
        #[serde(with = "serde_decimal")]
        fixed_fees: Decimal,
        /// Added to transactions below the per-transaction minimum.
        #[serde(with = "serde_decimal")]
        minimum_top_up: Decimal,
        /// Removed from transactions above the per-transaction maximum.
        #[serde(with = "serde_decimal")]
        maximum_reduction: Decimal,
        #[serde(with = "serde_decimal")]
        amount: Decimal,
    },
}

/// How an amount was derived: steps, the unrounded total and the single rounding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Derivation {
    pub model: ModelKind,
    /// The quantity priced (for percentage: the number of transactions).
    #[serde(with = "serde_decimal")]
    pub quantity: Decimal,
    pub steps: Vec<Step>,
    pub rounding: RoundingApplied,
    /// Commitment applied after rounding, if it changed the amount.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub commitment: Option<CommitmentApplied>,
}

/// A commitment that changed a rounded amount (minor units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentApplied {
    pub before: i64,
    pub after: i64,
    pub minimum: Option<i64>,
    pub maximum: Option<i64>,
}

/// A priced charge: the rounded amount and its derivation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Priced {
    pub amount: Money,
    /// A representative unit price for display, where the model has one (per-unit, volume,
    /// package per unit is not shown). Major units.
    #[serde(with = "serde_decimal::option")]
    pub unit_price: Option<Decimal>,
    pub derivation: Derivation,
}

fn overflow<T>(v: Option<T>) -> Result<T, PricingError> {
    v.ok_or(PricingError::Overflow)
}

fn minor_dec(minor: i64, currency: Currency) -> Decimal {
    decimal::minor_to_major(minor, currency)
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn check_price(param: &str, d: Decimal) -> Result<(), ValidationError> {
    if d.is_sign_negative() && !d.is_zero() {
        return Err(ValidationError::new(
            ErrorCode::InvalidCharge,
            param,
            "must not be negative",
        ));
    }
    if decimal::significant_scale(d) > MAX_PRICE_SCALE {
        return Err(ValidationError::new(
            ErrorCode::InvalidCharge,
            param,
            format!("must have at most {MAX_PRICE_SCALE} decimal places"),
        ));
    }
    if d > max_magnitude() {
        return Err(ValidationError::new(
            ErrorCode::InvalidCharge,
            param,
            "is too large (at most 10^15)",
        ));
    }
    Ok(())
}

fn check_quantity(param: &str, d: Decimal, positive: bool) -> Result<(), ValidationError> {
    check_price(param, d)?;
    if positive && d.is_zero() {
        return Err(ValidationError::new(
            ErrorCode::InvalidCharge,
            param,
            "must be greater than zero",
        ));
    }
    Ok(())
}

fn check_amount(param: &str, minor: i64) -> Result<(), ValidationError> {
    if minor < 0 {
        return Err(ValidationError::new(
            ErrorCode::InvalidCharge,
            param,
            "must not be negative (minor units)",
        ));
    }
    if minor > 1_000_000_000_000_000 {
        return Err(ValidationError::new(
            ErrorCode::InvalidCharge,
            param,
            "is too large (at most 10^18 minor units)",
        ));
    }
    Ok(())
}

/// Common checks of tier bounds: non-empty, increasing, inclusive, last unbounded.
fn check_bounds<'a>(
    bounds: impl ExactSizeIterator<Item = &'a Option<Decimal>>,
) -> Result<(), ValidationError> {
    let n = bounds.len();
    if n == 0 {
        return Err(ValidationError::new(
            ErrorCode::InvalidCharge,
            "tiers",
            "at least one tier is required",
        ));
    }
    if n > MAX_TIERS {
        return Err(ValidationError::new(
            ErrorCode::InvalidCharge,
            "tiers",
            format!("at most {MAX_TIERS} tiers are allowed"),
        ));
    }
    let mut prev: Option<Decimal> = None;
    for (i, b) in bounds.enumerate() {
        let param = format!("tiers[{i}].up_to");
        let last = i + 1 == n;
        match (b, last) {
            (None, false) => {
                return Err(ValidationError::new(
                    ErrorCode::InvalidCharge,
                    param,
                    "only the last tier may be unbounded (up_to: null)",
                ))
            }
            (Some(_), true) => {
                return Err(ValidationError::new(
                    ErrorCode::InvalidCharge,
                    param,
                    "the last tier must be unbounded (up_to: null) so every quantity has a price",
                ))
            }
            (Some(u), false) => {
                check_quantity(&param, *u, true)?;
                if let Some(p) = prev {
                    if *u == p {
                        return Err(ValidationError::new(
                            ErrorCode::InvalidCharge,
                            param,
                            format!(
                                "overlaps the previous tier: both end at {} (up_to is inclusive)",
                                p.normalize()
                            ),
                        ));
                    }
                    if *u < p {
                        return Err(ValidationError::new(
                            ErrorCode::InvalidCharge,
                            param,
                            format!(
                                "tiers must be in increasing order of up_to: {} comes after {}",
                                u.normalize(),
                                p.normalize()
                            ),
                        ));
                    }
                }
                prev = Some(*u);
            }
            (None, true) => {}
        }
    }
    Ok(())
}

impl ChargeModel {
    pub fn kind(&self) -> ModelKind {
        match self {
            ChargeModel::FlatFee(_) => ModelKind::FlatFee,
            ChargeModel::PerUnit(_) => ModelKind::PerUnit,
            ChargeModel::Graduated(_) => ModelKind::Graduated,
            ChargeModel::Volume(_) => ModelKind::Volume,
            ChargeModel::Package(_) => ModelKind::Package,
            ChargeModel::Percentage(_) => ModelKind::Percentage,
            ChargeModel::TieredBlocks(_) => ModelKind::TieredBlocks,
        }
    }

    /// Checks the definition; the error names the offending field (`tiers[1].up_to`).
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            ChargeModel::FlatFee(f) => check_amount("amount", f.amount),
            ChargeModel::PerUnit(p) => check_price("unit_price", p.unit_price),
            ChargeModel::Graduated(t) | ChargeModel::Volume(t) => {
                check_bounds(t.tiers.iter().map(|t| &t.up_to))?;
                for (i, tier) in t.tiers.iter().enumerate() {
                    check_price(&format!("tiers[{i}].unit_price"), tier.unit_price)?;
                    check_amount(&format!("tiers[{i}].flat_fee"), tier.flat_fee)?;
                }
                Ok(())
            }
            ChargeModel::Package(p) => {
                check_quantity("package_size", p.package_size, true)?;
                check_price("package_price", p.package_price)?;
                check_quantity("free_units", p.free_units, false)
            }
            ChargeModel::Percentage(p) => {
                check_price("rate", p.rate)?;
                if p.rate > Decimal::ONE_HUNDRED {
                    return Err(ValidationError::new(
                        ErrorCode::InvalidCharge,
                        "rate",
                        "is a percentage and must be at most 100",
                    ));
                }
                check_amount("fixed_fee", p.fixed_fee)?;
                check_amount("free_amount", p.free_amount)?;
                if let Some(m) = p.min_per_transaction {
                    check_amount("min_per_transaction", m)?;
                }
                if let Some(m) = p.max_per_transaction {
                    check_amount("max_per_transaction", m)?;
                }
                if let (Some(lo), Some(hi)) = (p.min_per_transaction, p.max_per_transaction) {
                    if lo > hi {
                        return Err(ValidationError::new(
                            ErrorCode::InvalidCharge,
                            "max_per_transaction",
                            format!("must be at least min_per_transaction ({lo})"),
                        ));
                    }
                }
                Ok(())
            }
            ChargeModel::TieredBlocks(t) => {
                check_bounds(t.tiers.iter().map(|t| &t.up_to))?;
                let mut prev = Decimal::ZERO;
                for (i, tier) in t.tiers.iter().enumerate() {
                    check_quantity(&format!("tiers[{i}].block_size"), tier.block_size, true)?;
                    check_price(&format!("tiers[{i}].block_price"), tier.block_price)?;
                    if let Some(u) = tier.up_to {
                        let span = u - prev; // both ≤ 10^15: cannot overflow
                        if !(span % tier.block_size).is_zero() {
                            return Err(ValidationError::new(ErrorCode::InvalidCharge,
                                format!("tiers[{i}].up_to"),
                                format!(
                                    "the tier spans {} units, which is not a whole number of {}-unit blocks",
                                    span.normalize(),
                                    tier.block_size.normalize()
                                ),
                            ));
                        }
                        prev = u;
                    }
                }
                Ok(())
            }
        }
    }

    /// Prices a quantity (shorthand for [`ChargeModel::price`] with [`Usage::Quantity`]).
    pub fn price_quantity(
        &self,
        quantity: Decimal,
        currency: Currency,
    ) -> Result<Priced, PricingError> {
        self.price(&Usage::Quantity { quantity }, currency)
    }

    /// Prices usage in `currency`: exact arithmetic, then one rounding (half away from zero).
    ///
    /// The definition is assumed validated (the catalog validates on write); pricing re-checks
    /// only what it must to stay panic-free and exact.
    pub fn price(&self, usage: &Usage, currency: Currency) -> Result<Priced, PricingError> {
        let quantity_of = |usage: &Usage| match usage {
            Usage::Quantity { quantity } => {
                if quantity.is_sign_negative() && !quantity.is_zero() {
                    Err(PricingError::NegativeQuantity(*quantity))
                } else {
                    Ok(*quantity)
                }
            }
            other => Err(PricingError::WrongUsage {
                expected: "a quantity",
                given: other.name(),
            }),
        };
        let mut steps = Vec::new();
        let (quantity, total, unit_price) = match self {
            ChargeModel::FlatFee(f) => {
                let q = match usage {
                    Usage::Quantity { quantity } => *quantity,
                    _ => Decimal::ONE,
                };
                let amount = minor_dec(f.amount, currency);
                steps.push(Step::Flat { amount });
                (q, amount, None)
            }
            ChargeModel::PerUnit(p) => {
                let q = quantity_of(usage)?;
                let amount = overflow(q.checked_mul(p.unit_price))?;
                steps.push(Step::Units {
                    units: q,
                    unit_price: p.unit_price,
                    amount,
                });
                (q, amount, Some(p.unit_price))
            }
            ChargeModel::Graduated(t) => {
                let q = quantity_of(usage)?;
                steps.reserve(t.tiers.len());
                let total = graduated(&t.tiers, q, currency, &mut steps)?;
                (q, total, None)
            }
            ChargeModel::Volume(t) => {
                let (q, full) = match usage {
                    Usage::Prorated {
                        quantity,
                        full_quantity,
                    } => {
                        let q = quantity_of(&Usage::quantity(*quantity))?;
                        let full = quantity_of(&Usage::quantity(*full_quantity))?;
                        (q, Some(full))
                    }
                    other => (quantity_of(other)?, None),
                };
                let (total, price) = volume(&t.tiers, q, full, currency, &mut steps)?;
                (q, total, price)
            }
            ChargeModel::Package(p) => {
                let q = quantity_of(usage)?;
                (q, package(p, q, &mut steps)?, None)
            }
            ChargeModel::TieredBlocks(t) => {
                let q = quantity_of(usage)?;
                let total = match t.tier_block_policy {
                    TierBlockPolicy::AllTiers => tiered_blocks(&t.tiers, q, &mut steps)?,
                    TierBlockPolicy::TopTier => top_tier_blocks(&t.tiers, q, &mut steps)?,
                };
                (q, total, None)
            }
            ChargeModel::Percentage(p) => {
                let (count, total) = percentage(p, usage, currency, &mut steps)?;
                (Decimal::from(count), total, None)
            }
        };
        let rounding = decimal::round_line(total, currency).map_err(|_| PricingError::Overflow)?;
        Ok(Priced {
            amount: Money::new(rounding.rounded_minor, currency),
            unit_price,
            derivation: Derivation {
                model: self.kind(),
                quantity,
                steps,
                rounding,
                commitment: None,
            },
        })
    }
}

fn graduated(
    tiers: &[Tier],
    q: Decimal,
    currency: Currency,
    steps: &mut Vec<Step>,
) -> Result<Decimal, PricingError> {
    let mut total = Decimal::ZERO;
    let mut from = Decimal::ZERO;
    if q.is_zero() {
        // The first tier's flat fee is due at zero usage (Lago, OpenMeter, Stripe).
        if let Some(tier) = tiers.first() {
            let flat_fee = minor_dec(tier.flat_fee, currency);
            steps.push(Step::TierSlice {
                tier: 0,
                from,
                to: tier.up_to,
                units: Decimal::ZERO,
                unit_price: tier.unit_price,
                flat_fee,
                amount: flat_fee,
            });
            return Ok(flat_fee);
        }
    }
    for (i, tier) in tiers.iter().enumerate() {
        if q <= from {
            break;
        }
        let to = match tier.up_to {
            Some(u) if u < q => u,
            _ => q,
        };
        if to <= from {
            // Unordered tiers (unvalidated input): never produce negative slices.
            return Err(PricingError::Invalid(ValidationError::new(
                ErrorCode::InvalidCharge,
                format!("tiers[{i}].up_to"),
                "tiers must be in increasing order of up_to",
            )));
        }
        let units = to - from;
        let flat_fee = minor_dec(tier.flat_fee, currency);
        let amount = overflow(
            units
                .checked_mul(tier.unit_price)
                .and_then(|a| a.checked_add(flat_fee)),
        )?;
        total = overflow(total.checked_add(amount))?;
        steps.push(Step::TierSlice {
            tier: i,
            from,
            to: tier.up_to,
            units,
            unit_price: tier.unit_price,
            flat_fee,
            amount,
        });
        match tier.up_to {
            Some(u) => from = u,
            None => break,
        }
    }
    Ok(total)
}

/// Volume: the tier reached by `full` (the full-period quantity of a prorated charge) or by
/// `q` prices the `q` units, plus that tier's flat fee (not prorated: Lago's VolumeService).
/// Zero usage is in the first tier and pays its flat fee (Lago, OpenMeter, Stripe).
fn volume(
    tiers: &[Tier],
    q: Decimal,
    full: Option<Decimal>,
    currency: Currency,
    steps: &mut Vec<Step>,
) -> Result<(Decimal, Option<Decimal>), PricingError> {
    let chooser = full.unwrap_or(q);
    let Some((i, tier)) = tiers
        .iter()
        .enumerate()
        .find(|(_, t)| t.up_to.is_none_or(|u| chooser <= u))
    else {
        return Err(PricingError::Invalid(ValidationError::new(
            ErrorCode::InvalidCharge,
            "tiers",
            "the last tier must be unbounded",
        )));
    };
    let flat_fee = minor_dec(tier.flat_fee, currency);
    let amount = overflow(
        q.checked_mul(tier.unit_price)
            .and_then(|a| a.checked_add(flat_fee)),
    )?;
    steps.push(Step::VolumeTier {
        tier: i,
        units: q,
        full_units: full,
        unit_price: tier.unit_price,
        flat_fee,
        amount,
    });
    Ok((amount, Some(tier.unit_price)))
}

/// Started blocks: `ceil(units / size)`, exact for any decimals.
fn blocks_for(units: Decimal, size: Decimal) -> Result<u64, PricingError> {
    if size <= Decimal::ZERO {
        return Err(PricingError::Invalid(ValidationError::new(
            ErrorCode::InvalidCharge,
            "block_size",
            "must be greater than zero",
        )));
    }
    let mut whole = overflow(units.checked_div(size))?.floor();
    // Guard against the quotient having been rounded up to a whole number.
    while overflow(whole.checked_mul(size))? > units {
        whole -= Decimal::ONE;
    }
    if overflow(whole.checked_mul(size))? < units {
        whole += Decimal::ONE;
    }
    u64::try_from(whole).map_err(|_| PricingError::Overflow)
}

fn package(p: &Package, q: Decimal, steps: &mut Vec<Step>) -> Result<Decimal, PricingError> {
    let free = p.free_units.min(q).max(Decimal::ZERO);
    if !free.is_zero() {
        steps.push(Step::FreeUnits { units: free });
    }
    let units = q - free;
    let blocks = blocks_for(units, p.package_size)?;
    let amount = overflow(Decimal::from(blocks).checked_mul(p.package_price))?;
    steps.push(Step::Blocks {
        tier: None,
        units,
        block_size: p.package_size,
        blocks,
        block_price: p.package_price,
        amount,
    });
    Ok(amount)
}

fn tiered_blocks(
    tiers: &[BlockTier],
    q: Decimal,
    steps: &mut Vec<Step>,
) -> Result<Decimal, PricingError> {
    let mut total = Decimal::ZERO;
    let mut from = Decimal::ZERO;
    for (i, tier) in tiers.iter().enumerate() {
        if q <= from {
            break;
        }
        let to = match tier.up_to {
            Some(u) if u < q => u,
            _ => q,
        };
        if to <= from {
            return Err(PricingError::Invalid(ValidationError::new(
                ErrorCode::InvalidCharge,
                format!("tiers[{i}].up_to"),
                "tiers must be in increasing order of up_to",
            )));
        }
        let units = to - from;
        let blocks = blocks_for(units, tier.block_size)?;
        let amount = overflow(Decimal::from(blocks).checked_mul(tier.block_price))?;
        total = overflow(total.checked_add(amount))?;
        steps.push(Step::Blocks {
            tier: Some(i),
            units,
            block_size: tier.block_size,
            blocks,
            block_price: tier.block_price,
            amount,
        });
        match tier.up_to {
            Some(u) => from = u,
            None => break,
        }
    }
    Ok(total)
}

/// Kill Bill's TOP_TIER: the first tier whose bound the whole quantity does not pass (the last
/// one past every bound) prices all units in its own blocks.
fn top_tier_blocks(
    tiers: &[BlockTier],
    q: Decimal,
    steps: &mut Vec<Step>,
) -> Result<Decimal, PricingError> {
    let Some((i, tier)) = tiers
        .iter()
        .enumerate()
        .find(|(_, t)| t.up_to.is_none_or(|u| q <= u))
        .or_else(|| tiers.iter().enumerate().next_back())
    else {
        return Err(PricingError::Invalid(ValidationError::new(
            ErrorCode::InvalidCharge,
            "tiers",
            "at least one tier is required",
        )));
    };
    let blocks = blocks_for(q, tier.block_size)?;
    let amount = overflow(Decimal::from(blocks).checked_mul(tier.block_price))?;
    steps.push(Step::Blocks {
        tier: Some(i),
        units: q,
        block_size: tier.block_size,
        blocks,
        block_price: tier.block_price,
        amount,
    });
    Ok(amount)
}

fn percentage(
    p: &Percentage,
    usage: &Usage,
    currency: Currency,
    steps: &mut Vec<Step>,
) -> Result<(u64, Decimal), PricingError> {
    let rate = p.rate / Decimal::ONE_HUNDRED; // rate ≤ 100 with ≤ 12 decimals: exact
    let fixed = minor_dec(p.fixed_fee, currency);
    let min = p.min_per_transaction.map(|m| minor_dec(m, currency));
    let max = p.max_per_transaction.map(|m| minor_dec(m, currency));
    let mut free_left = minor_dec(p.free_amount.max(0), currency);
    let mut s = PctSums::default();
    match usage {
        Usage::Quantity { .. } | Usage::Prorated { .. } => {
            return Err(PricingError::WrongUsage {
                expected: "transaction amounts (or an aggregate)",
                given: usage.name(),
            })
        }
        Usage::Aggregate {
            total_amount,
            count,
        } => {
            if p.free_transactions > 0 || min.is_some() || max.is_some() {
                return Err(PricingError::WrongUsage {
                    expected:
                        "individual transaction amounts (the charge has per-transaction rules)",
                    given: usage.name(),
                });
            }
            if total_amount.is_sign_negative() && !total_amount.is_zero() {
                return Err(PricingError::NegativeTransaction {
                    index: 0,
                    amount: *total_amount,
                });
            }
            let used = free_left.min(*total_amount);
            s.transactions = *count;
            s.charged = *count;
            s.total_amount = *total_amount;
            s.free_used = used;
            s.rated = *total_amount - used;
            s.rate_amount = overflow(s.rated.checked_mul(rate))?;
            s.fixed_fees = overflow(Decimal::from(*count).checked_mul(fixed))?;
            s.amount = overflow(s.rate_amount.checked_add(s.fixed_fees))?;
        }
        Usage::Transactions { amounts } => {
            // The free allowance (Lago's free_units_per_events and
            // free_units_per_total_aggregation) covers transactions in order and stops when
            // either limit is reached: after `free_transactions` transactions, or once the
            // running total reaches `free_amount`. A transaction is free (no fee at all) while
            // the running total stays below the free amount; the one that reaches it pays the
            // rate on its uncovered part and the fixed fee.
            let events_limit = (p.free_transactions > 0).then_some(p.free_transactions);
            let amount_limit = (p.free_amount > 0).then_some(free_left);
            let mut running = Decimal::ZERO;
            for (i, &a) in amounts.iter().enumerate() {
                if a.is_sign_negative() && !a.is_zero() {
                    return Err(PricingError::NegativeTransaction {
                        index: i,
                        amount: a,
                    });
                }
                s.transactions += 1;
                s.total_amount = overflow(s.total_amount.checked_add(a))?;
                let before = running;
                running = overflow(running.checked_add(a))?;
                let in_allowance = events_limit.is_none_or(|n| (i as u64) < n)
                    && amount_limit.is_none_or(|limit| before < limit)
                    && (events_limit.is_some() || amount_limit.is_some());
                let mut rated = a;
                if in_allowance {
                    match amount_limit {
                        None => {
                            s.free_transactions += 1;
                            continue;
                        }
                        Some(limit) => {
                            let covered = (limit - before).min(a);
                            free_left -= covered;
                            s.free_used = overflow(s.free_used.checked_add(covered))?;
                            if running < limit {
                                s.free_transactions += 1;
                                continue;
                            }
                            rated = a - covered;
                        }
                    }
                }
                s.charged += 1;
                s.rated = overflow(s.rated.checked_add(rated))?;
                let rate_part = overflow(rated.checked_mul(rate))?;
                s.rate_amount = overflow(s.rate_amount.checked_add(rate_part))?;
                s.fixed_fees = overflow(s.fixed_fees.checked_add(fixed))?;
                let mut fee = overflow(rate_part.checked_add(fixed))?;
                if let Some(m) = min {
                    if fee < m {
                        s.min_top_up =
                            overflow(s.min_top_up.checked_add(overflow(m.checked_sub(fee))?))?;
                        fee = m;
                    }
                }
                if let Some(m) = max {
                    if fee > m {
                        s.max_reduction =
                            overflow(s.max_reduction.checked_add(overflow(fee.checked_sub(m))?))?;
                        fee = m;
                    }
                }
                s.amount = overflow(s.amount.checked_add(fee))?;
            }
        }
    }
    steps.push(Step::Percentage {
        transactions: s.transactions,
        free_transactions: s.free_transactions,
        charged_transactions: s.charged,
        total_amount: s.total_amount,
        free_amount_used: s.free_used,
        rated_amount: s.rated,
        rate_percent: p.rate,
        rate_amount: s.rate_amount,
        fixed_fees: s.fixed_fees,
        minimum_top_up: s.min_top_up,
        maximum_reduction: s.max_reduction,
        amount: s.amount,
    });
    Ok((s.transactions, s.amount))
}

#[derive(Default)]
struct PctSums {
    transactions: u64,
    free_transactions: u64,
    charged: u64,
    total_amount: Decimal,
    free_used: Decimal,
    rated: Decimal,
    rate_amount: Decimal,
    fixed_fees: Decimal,
    min_top_up: Decimal,
    max_reduction: Decimal,
    amount: Decimal,
}

impl Commitment {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(m) = self.minimum {
            check_amount("minimum", m)?;
        }
        if let Some(m) = self.maximum {
            check_amount("maximum", m)?;
        }
        if let (Some(lo), Some(hi)) = (self.minimum, self.maximum) {
            if lo > hi {
                return Err(ValidationError::new(
                    ErrorCode::InvalidCharge,
                    "maximum",
                    format!("must be at least minimum ({lo})"),
                ));
            }
        }
        Ok(())
    }

    /// Applies the commitment to a rounded amount (minor units); no rounding involved.
    pub fn apply(&self, minor: i64) -> (i64, Option<CommitmentApplied>) {
        let mut after = minor;
        if let Some(lo) = self.minimum {
            after = after.max(lo);
        }
        if let Some(hi) = self.maximum {
            after = after.min(hi);
        }
        let applied = (after != minor).then_some(CommitmentApplied {
            before: minor,
            after,
            minimum: self.minimum,
            maximum: self.maximum,
        });
        (after, applied)
    }
}

impl Priced {
    /// Applies a spend commitment to this priced charge, recording it in the derivation.
    pub fn with_commitment(mut self, c: &Commitment) -> Self {
        let (after, applied) = c.apply(self.amount.minor);
        self.amount.minor = after;
        self.derivation.commitment = applied;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn usd() -> Currency {
        Currency::from_code("usd").unwrap()
    }

    fn model(json: &str) -> ChargeModel {
        let m: ChargeModel = serde_json::from_str(json).unwrap();
        m.validate().unwrap();
        m
    }

    fn tiers_json(kind: &str) -> String {
        format!(
            r#"{{"model":"{kind}","tiers":[
                {{"up_to":"1000","unit_price":"0.01","flat_fee":0}},
                {{"up_to":5000,"unit_price":"0.008","flat_fee":100}},
                {{"up_to":null,"unit_price":"0.005"}}]}}"#
        )
    }

    #[test]
    fn flat_fee() {
        let m = model(r#"{"model":"flat_fee","amount":4900}"#);
        assert_eq!(m.price_quantity(dec!(3), usd()).unwrap().amount.minor, 4900);
    }

    #[test]
    fn per_unit_rounds_once() {
        // 12,345 calls × $0.0015 = $18.5175 → 1851.75 cents → 1852 cents.
        let m = model(r#"{"model":"per_unit","unit_price":"0.0015"}"#);
        let p = m.price_quantity(dec!(12345), usd()).unwrap();
        assert_eq!(p.amount.minor, 1852);
        assert_eq!(p.derivation.rounding.unrounded, dec!(18.5175));
        assert_eq!(p.derivation.rounding.adjustment, dec!(0.0025));
        assert_eq!(p.unit_price, Some(dec!(0.0015)));
    }

    #[test]
    fn graduated_worked_example() {
        // 6000.5 units: 1000 × 0.01 = 10; 4000 × 0.008 + $1 = 33; 1000.5 × 0.005 = 5.0025.
        // Total 48.0025 → $48.00.
        let m = model(&tiers_json("graduated"));
        let p = m.price_quantity(dec!(6000.5), usd()).unwrap();
        assert_eq!(p.amount.minor, 4800);
        let amounts: Vec<Decimal> = p
            .derivation
            .steps
            .iter()
            .map(|s| match s {
                Step::TierSlice { amount, .. } => *amount,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(amounts, vec![dec!(10), dec!(33), dec!(5.0025)]);
        assert_eq!(m.price_quantity(dec!(0), usd()).unwrap().amount.minor, 0);
        // Exactly on a bound stays in the tier (inclusive up_to): no flat fee of tier 2.
        assert_eq!(
            m.price_quantity(dec!(1000), usd()).unwrap().amount.minor,
            1000
        );
        // 1000.5: 10 + 0.5 × 0.008 + 1 = 11.004 → $11.00
        assert_eq!(
            m.price_quantity(dec!(1000.5), usd()).unwrap().amount.minor,
            1100
        );
    }

    #[test]
    fn volume_worked_example() {
        let m = model(&tiers_json("volume"));
        // 6000.5 × 0.005 = 30.0025 → $30.00
        assert_eq!(
            m.price_quantity(dec!(6000.5), usd()).unwrap().amount.minor,
            3000
        );
        // 1000 × 0.01 = $10.00 (inclusive bound)
        assert_eq!(
            m.price_quantity(dec!(1000), usd()).unwrap().amount.minor,
            1000
        );
        // 1000.5 × 0.008 + $1 = 9.004 → $9.00
        let p = m.price_quantity(dec!(1000.5), usd()).unwrap();
        assert_eq!(p.amount.minor, 900);
        assert_eq!(p.unit_price, Some(dec!(0.008)));
        assert_eq!(m.price_quantity(dec!(0), usd()).unwrap().amount.minor, 0);
    }

    #[test]
    fn package_rounds_partial_packages_up() {
        // 2350.5 GB, 100 free → 2250.5 → 3 started packages of 1000 × $5 = $15.00
        let m = model(
            r#"{"model":"package","package_size":"1000","package_price":"5","free_units":"100"}"#,
        );
        assert_eq!(
            m.price_quantity(dec!(2350.5), usd()).unwrap().amount.minor,
            1500
        );
        assert_eq!(m.price_quantity(dec!(100), usd()).unwrap().amount.minor, 0);
        assert_eq!(
            m.price_quantity(dec!(1100), usd()).unwrap().amount.minor,
            500
        );
        assert_eq!(
            m.price_quantity(dec!(1100.000001), usd())
                .unwrap()
                .amount
                .minor,
            1000
        );
        let frac = model(r#"{"model":"package","package_size":"0.5","package_price":"0.10"}"#);
        // 1.2 GB-hours in 0.5 blocks → 3 blocks → $0.30
        assert_eq!(
            frac.price_quantity(dec!(1.2), usd()).unwrap().amount.minor,
            30
        );
    }

    #[test]
    fn percentage_worked_example() {
        let m = model(
            r#"{"model":"percentage","rate":"2.9","fixed_fee":30,"free_transactions":1,
                "free_amount":1000,"min_per_transaction":50,"max_per_transaction":500}"#,
        );
        let usage = Usage::Transactions {
            amounts: vec![dec!(100), dec!(5), dec!(20), dec!(1000), dec!(1)],
        };
        // The free allowance stops at whichever limit comes first (Lago): t0 $100 uses the
        // whole $10 free amount: (100 − 10) × 2.9 % + 0.30 = 2.91; the allowance is spent, so
        // t1 $5: 0.445 raised to 0.50; t2 $20: 0.88; t3 1000 × 2.9 % + 0.30 = 29.30 capped at
        // 5.00; t4 $1: 0.329 raised to 0.50. Total 9.79 → $9.79.
        let p = m.price(&usage, usd()).unwrap();
        assert_eq!(p.amount.minor, 979);
        match &p.derivation.steps[0] {
            Step::Percentage {
                free_transactions,
                charged_transactions,
                free_amount_used,
                minimum_top_up,
                maximum_reduction,
                ..
            } => {
                assert_eq!((*free_transactions, *charged_transactions), (0, 5));
                assert_eq!(*free_amount_used, dec!(10));
                assert_eq!(*minimum_top_up, dec!(0.226));
                assert_eq!(*maximum_reduction, dec!(24.30));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            m.price_quantity(dec!(1), usd()),
            Err(PricingError::WrongUsage { .. })
        ));
        let simple = model(r#"{"model":"percentage","rate":"1.5","fixed_fee":10}"#);
        // 1234.56 × 1.5 % = 18.5184 + 4 × 0.10 = 18.9184 → $18.92
        let agg = Usage::Aggregate {
            total_amount: dec!(1234.56),
            count: 4,
        };
        assert_eq!(simple.price(&agg, usd()).unwrap().amount.minor, 1892);
        assert!(m.price(&agg, usd()).is_err());
    }

    /// getlago/lago-api `spec/services/charge_models/percentage_service_spec.rb` ("when fixed
    /// amount value is 0" context, whose numbers are the default let-block): rate 1.3 %, fixed
    /// €2.00, 3 free events and €250 free; events 50, 100, 250, 400 (running total 50, 150,
    /// 400). The allowance stops when either limit is reached: 2 events free, 250 of the third
    /// free; (800 − 250) × 1.3 % + (4 − 2) × 2.00 = 7.15 + 4 = €11.15.
    #[test]
    fn percentage_free_allowance_stops_at_the_first_limit_like_lago() {
        let m = model(
            r#"{"model":"percentage","rate":"1.3","fixed_fee":200,"free_transactions":3,
                "free_amount":25000}"#,
        );
        let usage = Usage::Transactions {
            amounts: vec![dec!(50), dec!(100), dec!(250), dec!(400)],
        };
        let p = m.price(&usage, usd()).unwrap();
        assert_eq!(p.amount.minor, 1115);
        match &p.derivation.steps[0] {
            Step::Percentage {
                free_transactions,
                rated_amount,
                free_amount_used,
                ..
            } => {
                assert_eq!(*free_transactions, 2);
                assert_eq!(*rated_amount, dec!(550));
                assert_eq!(*free_amount_used, dec!(250));
            }
            other => panic!("{other:?}"),
        }
        // The free-events limit first: 1 free event, then everything is rated
        // (100 × 1.3 % + 2 = 3.30).
        let m = model(
            r#"{"model":"percentage","rate":"1.3","fixed_fee":200,"free_transactions":1,
                "free_amount":25000}"#,
        );
        let usage = Usage::Transactions {
            amounts: vec![dec!(50), dec!(100)],
        };
        assert_eq!(m.price(&usage, usd()).unwrap().amount.minor, 330);
        // Free events alone: the first N are free whatever their amounts.
        let m = model(r#"{"model":"percentage","rate":"1","fixed_fee":100,"free_transactions":2}"#);
        let usage = Usage::Transactions {
            amounts: vec![dec!(1000), dec!(1000), dec!(100)],
        };
        assert_eq!(m.price(&usage, usd()).unwrap().amount.minor, 200);
    }

    /// getlago/lago-api `spec/services/charge_models/graduated_service_spec.rb` and
    /// `volume_service_spec.rb`, "when aggregation is 0" / "applies the flat amount from the
    /// first tier": graduated [0–10: 10/unit + 2 flat, …] → 2; volume [0–100: 2/unit + 10 flat,
    /// …] → 10. A first tier without a flat fee still costs 0 ("when first tier flat amount
    /// is zero").
    #[test]
    fn first_tier_flat_fee_is_charged_at_zero_usage_like_lago() {
        let graduated = model(
            r#"{"model":"graduated","tiers":[
                {"up_to":"10","unit_price":"10","flat_fee":200},
                {"up_to":"20","unit_price":"5","flat_fee":300},
                {"up_to":null,"unit_price":"5","flat_fee":300}]}"#,
        );
        assert_eq!(
            graduated
                .price_quantity(dec!(0), usd())
                .unwrap()
                .amount
                .minor,
            200
        );
        assert_eq!(
            graduated
                .price_quantity(dec!(1), usd())
                .unwrap()
                .amount
                .minor,
            1200
        );
        let volume = model(
            r#"{"model":"volume","tiers":[
                {"up_to":"100","unit_price":"2","flat_fee":1000},
                {"up_to":"200","unit_price":"1","flat_fee":0},
                {"up_to":null,"unit_price":"0.5","flat_fee":5000}]}"#,
        );
        assert_eq!(
            volume.price_quantity(dec!(0), usd()).unwrap().amount.minor,
            1000
        );
        assert_eq!(
            volume.price_quantity(dec!(1), usd()).unwrap().amount.minor,
            1200
        );
        assert_eq!(
            volume
                .price_quantity(dec!(100.5), usd())
                .unwrap()
                .amount
                .minor,
            10050
        );
        assert_eq!(
            volume
                .price_quantity(dec!(300), usd())
                .unwrap()
                .amount
                .minor,
            20000
        );
        let free_first = model(
            r#"{"model":"volume","tiers":[
                {"up_to":"1","unit_price":"0","flat_fee":0},
                {"up_to":null,"unit_price":"2","flat_fee":1000}]}"#,
        );
        assert_eq!(
            free_first
                .price_quantity(dec!(0), usd())
                .unwrap()
                .amount
                .minor,
            0
        );
    }

    /// getlago/lago-api `spec/services/charge_models/volume_service_spec.rb`, "when charge is
    /// prorated": 198.6 prorated units of a full-period 300 → the third tier (0.5/unit + 50
    /// flat): 198.6 × 0.5 + 50 = 149.30.
    #[test]
    fn prorated_volume_chooses_the_tier_by_the_full_quantity_like_lago() {
        let volume = model(
            r#"{"model":"volume","tiers":[
                {"up_to":"100","unit_price":"2","flat_fee":1000},
                {"up_to":"200","unit_price":"1","flat_fee":0},
                {"up_to":null,"unit_price":"0.5","flat_fee":5000}]}"#,
        );
        let usage = Usage::Prorated {
            quantity: dec!(198.6),
            full_quantity: dec!(300),
        };
        let p = volume.price(&usage, usd()).unwrap();
        assert_eq!(p.amount.minor, 14930);
        assert!(matches!(
            p.derivation.steps[0],
            Step::VolumeTier {
                tier: 2,
                full_units: Some(_),
                ..
            }
        ));
        // Unprorated, 198.6 units would be the second tier: $198.60.
        assert_eq!(
            volume
                .price_quantity(dec!(198.6), usd())
                .unwrap()
                .amount
                .minor,
            19860
        );
        let graduated = model(&tiers_json("graduated"));
        assert!(matches!(
            graduated.price(&usage, usd()),
            Err(PricingError::WrongUsage { .. })
        ));
    }

    /// killbill/killbill `invoice/src/test/java/org/killbill/billing/invoice/usage/
    /// TestContiguousIntervalConsumableInArrear.java`: `testComputeBilledUsageWith_TOP_TIER`
    /// (blocks of 100 × 10 at $1, 1000 × 100 at $1, 1000 at $0.5: 1000 → $10, 101000 → $101,
    /// 101001 → $51, 300000 → $150), `testComputeBilledUsageWithUnlimitedMaxWith_TOP_TIER`
    /// (2000 → $20) and `testComputeBilledUsageSizeOneWith_TOP_TIER` (111 → $55.50). The last
    /// Kill Bill tier's maximum is unbounded here (our last tier always is; Kill Bill prices past
    /// its last maximum at the last tier anyway).
    #[test]
    fn top_tier_block_policy_like_kill_bill() {
        let m = model(
            r#"{"model":"tiered_blocks","tier_block_policy":"top_tier","tiers":[
                {"up_to":"1000","block_size":"100","block_price":"1"},
                {"up_to":"101000","block_size":"1000","block_price":"1"},
                {"up_to":null,"block_size":"1000","block_price":"0.5"}]}"#,
        );
        for (q, minor) in [
            (1000, 1000),
            (101_000, 10_100),
            (101_001, 5100),
            (300_000, 15_000),
        ] {
            assert_eq!(
                m.price_quantity(Decimal::from(q), usd())
                    .unwrap()
                    .amount
                    .minor,
                minor,
                "{q}"
            );
        }
        let unlimited = model(
            r#"{"model":"tiered_blocks","tier_block_policy":"top_tier","tiers":[
                {"up_to":"1000","block_size":"100","block_price":"10"},
                {"up_to":null,"block_size":"100","block_price":"1"}]}"#,
        );
        assert_eq!(
            unlimited
                .price_quantity(dec!(2000), usd())
                .unwrap()
                .amount
                .minor,
            2000
        );
        let size_one = model(
            r#"{"model":"tiered_blocks","tier_block_policy":"top_tier","tiers":[
                {"up_to":"10","block_size":"1","block_price":"1.5"},
                {"up_to":"110","block_size":"1","block_price":"1.0"},
                {"up_to":null,"block_size":"1","block_price":"0.5"}]}"#,
        );
        assert_eq!(
            size_one
                .price_quantity(dec!(111), usd())
                .unwrap()
                .amount
                .minor,
            5550
        );
        // ALL_TIERS stays the default and is not written out.
        let all: ChargeModel = serde_json::from_str(
            r#"{"model":"tiered_blocks","tiers":[{"up_to":null,"block_size":"1","block_price":"1"}]}"#,
        )
        .unwrap();
        assert!(!serde_json::to_string(&all)
            .unwrap()
            .contains("tier_block_policy"));
        assert!(serde_json::to_string(&m)
            .unwrap()
            .contains(r#""tier_block_policy":"top_tier""#));
    }

    #[test]
    fn tiered_blocks_worked_example() {
        // 2600 units: first tier 2000 units = 2 blocks of 1000 × $1 = $2;
        // then 600 units in blocks of 500 → 2 blocks × $0.40 = $0.80. Total $2.80.
        let m = model(
            r#"{"model":"tiered_blocks","tiers":[
                {"up_to":"2000","block_size":"1000","block_price":"1"},
                {"up_to":null,"block_size":"500","block_price":"0.40"}]}"#,
        );
        assert_eq!(
            m.price_quantity(dec!(2600), usd()).unwrap().amount.minor,
            280
        );
        assert_eq!(m.price_quantity(dec!(1), usd()).unwrap().amount.minor, 100);
        let bad: ChargeModel = serde_json::from_str(
            r#"{"model":"tiered_blocks","tiers":[
                {"up_to":"1500","block_size":"1000","block_price":"1"},
                {"up_to":null,"block_size":"500","block_price":"0.40"}]}"#,
        )
        .unwrap();
        assert_eq!(bad.validate().unwrap_err().param, "tiers[0].up_to");
    }

    #[test]
    fn commitment_raises_and_caps() {
        let m = model(r#"{"model":"per_unit","unit_price":"0.0015"}"#);
        let c = Commitment {
            minimum: Some(2000),
            maximum: Some(5000),
        };
        let p = m
            .price_quantity(dec!(12345), usd())
            .unwrap()
            .with_commitment(&c);
        assert_eq!(p.amount.minor, 2000);
        assert_eq!(p.derivation.commitment.unwrap().before, 1852);
        let p = m
            .price_quantity(dec!(10000000), usd())
            .unwrap()
            .with_commitment(&c);
        assert_eq!(p.amount.minor, 5000);
        assert!(Commitment {
            minimum: Some(2),
            maximum: Some(1)
        }
        .validate()
        .is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (
                r#"{"model":"graduated","tiers":[]}"#,
                "tiers",
                "at least one",
            ),
            (
                r#"{"model":"graduated","tiers":[{"up_to":"10","unit_price":"1"},{"up_to":"5","unit_price":"1"},{"up_to":null}]}"#,
                "tiers[1].up_to",
                "increasing order",
            ),
            (
                r#"{"model":"volume","tiers":[{"up_to":"10","unit_price":"1"},{"up_to":"10","unit_price":"1"},{"up_to":null}]}"#,
                "tiers[1].up_to",
                "overlaps",
            ),
            (
                r#"{"model":"graduated","tiers":[{"up_to":"10","unit_price":"1"}]}"#,
                "tiers[0].up_to",
                "last tier",
            ),
            (
                r#"{"model":"graduated","tiers":[{"up_to":null,"unit_price":"1"},{"up_to":null}]}"#,
                "tiers[0].up_to",
                "only the last",
            ),
            (
                r#"{"model":"graduated","tiers":[{"up_to":"0"},{"up_to":null}]}"#,
                "tiers[0].up_to",
                "greater than zero",
            ),
            (
                r#"{"model":"graduated","tiers":[{"up_to":null,"unit_price":"-1"}]}"#,
                "tiers[0].unit_price",
                "negative",
            ),
            (
                r#"{"model":"graduated","tiers":[{"up_to":null,"unit_price":"0.0000000000001"}]}"#,
                "tiers[0].unit_price",
                "decimal places",
            ),
            (
                r#"{"model":"package","package_size":"0","package_price":"1"}"#,
                "package_size",
                "greater than zero",
            ),
            (
                r#"{"model":"percentage","rate":"101"}"#,
                "rate",
                "at most 100",
            ),
            (
                r#"{"model":"percentage","rate":"1","min_per_transaction":10,"max_per_transaction":5}"#,
                "max_per_transaction",
                "at least",
            ),
            (r#"{"model":"flat_fee","amount":-1}"#, "amount", "negative"),
        ];
        for (json, param, msg) in cases {
            let m: ChargeModel = serde_json::from_str(json).unwrap();
            let e = m.validate().unwrap_err();
            assert_eq!(e.param, param, "{json}");
            assert!(e.message.contains(msg), "{json}: {}", e.message);
        }
        assert_eq!(
            ValidationError::new(ErrorCode::InvalidCharge, "tiers[0].up_to", "x")
                .within("price")
                .param,
            "price.tiers[0].up_to"
        );
    }

    #[test]
    fn json_is_strict_and_round_trips() {
        for bad in [
            r#"{"model":"per_unit","unit_price":"0.01","extra":1}"#,
            r#"{"model":"per_unit","unit_price":0.01}"#,
            r#"{"model":"per_unit","unit_price":"abc"}"#,
            r#"{"model":"nope"}"#,
            r#"{"model":"graduated","tiers":[{"up_to":null,"unit_price":"1","flat":1}]}"#,
        ] {
            assert!(serde_json::from_str::<ChargeModel>(bad).is_err(), "{bad}");
        }
        let m = model(&tiers_json("graduated"));
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<ChargeModel>(&text).unwrap(), m);
        assert!(text.contains(r#""up_to":"1000""#), "{text}");
        let p = m.price_quantity(dec!(6000.5), usd()).unwrap();
        let derivation = serde_json::to_value(&p).unwrap();
        assert_eq!(derivation["derivation"]["steps"][1]["step"], "tier_slice");
        assert_eq!(derivation["derivation"]["rounding"]["unrounded"], "48.0025");
    }

    #[test]
    fn negative_and_huge_inputs_are_errors_not_panics() {
        let m = model(&tiers_json("graduated"));
        assert!(matches!(
            m.price_quantity(dec!(-1), usd()),
            Err(PricingError::NegativeQuantity(_))
        ));
        let huge = model(r#"{"model":"per_unit","unit_price":"1000000000000000"}"#);
        assert!(matches!(
            huge.price_quantity(Decimal::MAX, usd()),
            Err(PricingError::Overflow)
        ));
        assert!(matches!(
            huge.price_quantity(dec!(100000000), usd()),
            Err(PricingError::Overflow)
        ));
    }
}
