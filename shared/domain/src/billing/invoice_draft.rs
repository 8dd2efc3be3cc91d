//! Invoice building: from priced inputs to a draft whose totals are sums of rounded lines.
//!
//! Order of computation ([`build_invoice`]):
//!
//! 1. **Lines.** Each input line becomes an amount rounded once: charge lines are priced with
//!    their [`ChargeModel`] (and a per-charge [`Commitment`] applied to the rounded amount),
//!    fixed lines carry their amount, proration lines carry the amount the proration rounded.
//! 2. **Minimum commitment.** If the invoice has one and the sum of its charge and fixed lines is
//!    below it, a true-up line for the difference is added.
//! 3. **Subtotal** = sum of line amounts.
//! 4. **Discounts**, in the order given. A charge whose commitment has a `maximum` and that a
//!    percent-off discount applies to is discounted first and capped after (OpenMeter's
//!    `DiscountPercentage` then `MaxAmountCommitment`): its line keeps the uncapped amount and
//!    the excess over the maximum is a discount `commitment_maximum` of its own. Without a
//!    percent-off discount the maximum caps the line amount in step 1. Each computes one rounded amount on the current net of
//!    the lines it applies to (percent: `net × percent`, half away from zero; amount off: at most
//!    the net), never more than those lines' positive nets, and is split over them in proportion
//!    to their positive nets (largest remainder), so per-line discounts sum exactly to it.
//! 5. **Tax, per line, rounded per line**: exclusive rates add `round(net × rate)` each;
//!    inclusive rates take `round(net × R / (1 + R))` out of the net (R = the line's inclusive
//!    rates combined), split over the rates by their percentages. A line cannot mix both kinds.
//! 6. **Total** = sum of line totals (net + exclusive tax).
//! 7. **Credits**, in order, reduce a positive total. **Amount due** = total − credits applied,
//!    never below zero. Unapplied credit, and any negative total, is the customer's balance.
//!
//! Invariants (property-tested): `subtotal = Σ line.amount`, `discount_total = Σ
//! line.discount_amount`, `tax_total = Σ line.tax_amount`, `total = Σ line.total =
//! subtotal − discount_total + exclusive tax`, `amount_due ≥ 0`.

use crate::kernel::error::ErrorCode;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::billing::periods::Period;
use crate::billing::proration::ProrationItem;
use crate::catalog::charges::{ChargeModel, Commitment, Derivation, PricingError, Usage};
use crate::kernel::currency::Currency;
use crate::kernel::decimal::{self, serde_decimal};
use crate::kernel::error::ValidationError;
use crate::kernel::money::{allocate_minor, Money, MoneyError};

/// Everything needed to draft one invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceInput {
    pub currency: Currency,
    pub lines: Vec<LineInput>,
    #[serde(default)]
    pub discounts: Vec<Discount>,
    /// Credit available to the customer, applied in order.
    #[serde(default)]
    pub credits: Vec<CreditInput>,
    #[serde(default)]
    pub minimum_commitment: Option<MinimumCommitment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    /// Caller's key for the line (e.g. the charge id), used by `applies_to` of discounts.
    #[serde(default)]
    pub id: Option<String>,
    pub description: String,
    #[serde(default)]
    pub period: Option<Period>,
    pub source: LineSource,
    #[serde(default)]
    pub tax_rates: Vec<TaxRate>,
    /// Whether the amount contains the tax the resolved rates add, overriding the tenant's
    /// default (the line's price's `tax_behavior`); rates given in `tax_rates` keep theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_behavior: Option<crate::tax::rates::TaxBehavior>,
    #[serde(default = "yes")]
    pub discountable: bool,
}

fn yes() -> bool {
    true
}

/// Where a line's amount comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LineSource {
    /// A charge priced now (recurring fee in advance, usage in arrears).
    Charge {
        model: ChargeModel,
        usage: Usage,
        #[serde(default)]
        commitment: Option<Commitment>,
    },
    /// An already-known amount in minor units (one-off fee, adjustment).
    Fixed {
        amount: i64,
        #[serde(with = "serde_decimal::option", default)]
        quantity: Option<Decimal>,
    },
    /// A pending proration item (credit or charge).
    Proration { item: ProrationItem },
}

/// A tax rate: `percentage` of the net, exclusive (added) or inclusive (contained).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxRate {
    pub id: String,
    #[serde(with = "serde_decimal")]
    pub percentage: Decimal,
    #[serde(default)]
    pub inclusive: bool,
    /// How documents name the rate (`USt 19 %`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Where it applies (`DE`, `US-CA`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Discount {
    PercentOff {
        id: String,
        #[serde(with = "serde_decimal")]
        percent: Decimal,
        /// Line ids it applies to; `None` for every discountable line.
        #[serde(default)]
        applies_to: Option<Vec<String>>,
    },
    AmountOff {
        id: String,
        /// Minor units.
        amount: i64,
        #[serde(default)]
        applies_to: Option<Vec<String>>,
    },
}

impl Discount {
    fn id(&self) -> &str {
        match self {
            Discount::PercentOff { id, .. } | Discount::AmountOff { id, .. } => id,
        }
    }
    fn applies_to(&self) -> Option<&[String]> {
        match self {
            Discount::PercentOff { applies_to, .. } | Discount::AmountOff { applies_to, .. } => {
                applies_to.as_deref()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditInput {
    pub id: String,
    /// Minor units available.
    pub amount: i64,
}

/// A minimum spend for the invoice's charges (Lago's plan minimum commitment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinimumCommitment {
    /// Minor units.
    pub amount: i64,
    #[serde(default)]
    pub tax_rates: Vec<TaxRate>,
    #[serde(default)]
    pub period: Option<Period>,
}

// ---------------------------------------------------------------------------------------------

/// The draft invoice. All amounts are minor units of `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceDraft {
    pub currency: Currency,
    pub lines: Vec<InvoiceLine>,
    pub subtotal: i64,
    pub discount_total: i64,
    pub total_excluding_tax: i64,
    pub tax_total: i64,
    pub total: i64,
    pub discounts: Vec<DiscountSummary>,
    pub taxes: Vec<TaxSummary>,
    pub credits_applied: Vec<AppliedCredit>,
    pub credit_total: i64,
    /// What prepaid wallets pay, after the credits (a preview's: see
    /// [`InvoiceDraft::with_wallets`]; a stored invoice's wallets are consumed when it is
    /// finalized).
    #[serde(default)]
    pub wallet_total: i64,
    #[serde(default)]
    pub wallets_applied: Vec<AppliedWallet>,
    pub amount_due: i64,
    /// Credit left to the customer after this invoice: unapplied credits plus any negative total.
    pub ending_credit_balance: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Charge,
    Fixed,
    Proration,
    MinimumCommitment,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub id: Option<String>,
    pub kind: LineKind,
    pub description: String,
    pub period: Option<Period>,
    #[serde(with = "serde_decimal::option")]
    pub quantity: Option<Decimal>,
    /// Major units per unit, when the model has a single unit price.
    #[serde(with = "serde_decimal::option")]
    pub unit_price: Option<Decimal>,
    /// Rounded line amount before discounts and tax.
    pub amount: i64,
    pub discounts: Vec<LineDiscount>,
    pub discount_amount: i64,
    pub taxes: Vec<LineTax>,
    pub tax_amount: i64,
    /// Why the line carries the taxes it does (set when tax was resolved for the invoice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_reason: Option<crate::tax::resolve::TaxReason>,
    /// `amount − discount − inclusive tax`.
    pub total_excluding_tax: i64,
    /// `amount − discount + exclusive tax`.
    pub total: i64,
    pub derivation: Option<LineDerivation>,
}

/// Why a line has its amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum LineDerivation {
    Charge(Derivation),
    Proration(ProrationItem),
    MinimumCommitment { minimum: i64, charges_subtotal: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDiscount {
    pub discount_id: String,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineTax {
    pub tax_rate_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    #[serde(with = "serde_decimal")]
    pub percentage: Decimal,
    pub inclusive: bool,
    /// The amount the tax is computed on (net of inclusive tax for inclusive rates).
    pub taxable_amount: i64,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscountSummary {
    pub discount_id: String,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxSummary {
    pub tax_rate_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    #[serde(with = "serde_decimal")]
    pub percentage: Decimal,
    pub inclusive: bool,
    pub taxable_amount: i64,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedCredit {
    pub credit_id: String,
    pub amount: i64,
}

/// What one prepaid wallet pays of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedWallet {
    pub wallet_id: String,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    #[error("invalid invoice input: {0}")]
    Invalid(ValidationError),
    #[error("lines[{line}]: {source}")]
    Pricing { line: usize, source: PricingError },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

impl InvoiceError {
    fn invalid(param: String, message: impl Into<String>) -> Self {
        InvoiceError::Invalid(ValidationError::new(
            ErrorCode::InvalidInvoice,
            param,
            message,
        ))
    }
}

fn overflow() -> InvoiceError {
    InvoiceError::Money(MoneyError::Overflow { op: "invoice" })
}

fn add(a: i64, b: i64) -> Result<i64, InvoiceError> {
    a.checked_add(b).ok_or_else(overflow)
}

fn sub(a: i64, b: i64) -> Result<i64, InvoiceError> {
    a.checked_sub(b).ok_or_else(overflow)
}

/// `minor × percent / 100`, rounded with the crate's one rule.
fn percent_of(minor: i64, percent: Decimal) -> Result<i64, InvoiceError> {
    let exact = Decimal::from(minor)
        .checked_mul(percent)
        .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED))
        .ok_or_else(overflow)?;
    decimal::round_minor(exact).map_err(|_| overflow())
}

fn check_percentage(param: impl FnOnce() -> String, p: Decimal) -> Result<(), InvoiceError> {
    if p.is_sign_negative() && !p.is_zero() || p > Decimal::ONE_HUNDRED {
        return Err(InvoiceError::invalid(param(), "must be between 0 and 100"));
    }
    if decimal::significant_scale(p) > 4 {
        return Err(InvoiceError::invalid(
            param(),
            "must have at most 4 decimal places",
        ));
    }
    Ok(())
}

fn check_taxes(prefix: impl Fn() -> String, rates: &[TaxRate]) -> Result<(), InvoiceError> {
    let mut inclusive = None;
    for (j, r) in rates.iter().enumerate() {
        check_percentage(
            || format!("{}.tax_rates[{j}].percentage", prefix()),
            r.percentage,
        )?;
        match inclusive {
            None => inclusive = Some(r.inclusive),
            Some(k) if k != r.inclusive => {
                return Err(InvoiceError::invalid(
                    format!("{}.tax_rates[{j}].inclusive", prefix()),
                    "a line cannot mix inclusive and exclusive tax rates",
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The discount id under which a charge's maximum commitment shows when it caps a line after
/// its percentage discounts (OpenMeter's "maximum spend discount").
pub const MAXIMUM_COMMITMENT_DISCOUNT: &str = "commitment_maximum";

/// Builds the draft. Pure and deterministic; see the module docs for the order of operations.
pub fn build_invoice(input: &InvoiceInput) -> Result<InvoiceDraft, InvoiceError> {
    let currency = input.currency;
    let mut lines: Vec<InvoiceLine> = Vec::with_capacity(input.lines.len() + 1);
    let mut charges_subtotal: i64 = 0;
    // Maximum commitments applied after the percentage discounts (OpenMeter's order), by line.
    let mut deferred_maximum: Vec<Option<i64>> = vec![None; input.lines.len()];
    let percent_off_applies = |l: &LineInput| {
        l.discountable
            && input.discounts.iter().any(|d| match d {
                Discount::PercentOff {
                    applies_to,
                    percent,
                    ..
                } => {
                    *percent > Decimal::ZERO
                        && match applies_to {
                            None => true,
                            Some(ids) => {
                                l.id.as_deref()
                                    .is_some_and(|id| ids.iter().any(|x| x == id))
                            }
                        }
                }
                Discount::AmountOff { .. } => false,
            })
    };

    // 1. Lines.
    for (i, l) in input.lines.iter().enumerate() {
        check_taxes(|| format!("lines[{i}]"), &l.tax_rates)?;
        let (kind, amount, quantity, unit_price, derivation) = match &l.source {
            LineSource::Charge {
                model,
                usage,
                commitment,
            } => {
                let mut priced = model
                    .price(usage, currency)
                    .map_err(|source| InvoiceError::Pricing { line: i, source })?;
                if let Some(c) = commitment {
                    c.validate().map_err(|e| {
                        InvoiceError::Invalid(e.within(&format!("lines[{i}].source.commitment")))
                    })?;
                    if c.maximum.is_some() && percent_off_applies(l) {
                        // A percentage discount comes before the maximum caps the line
                        // (OpenMeter): the line keeps its uncapped amount (the minimum
                        // applied), and the cap follows the discounts.
                        deferred_maximum[i] = c.maximum;
                        priced = priced.with_commitment(&Commitment {
                            minimum: c.minimum,
                            maximum: None,
                        });
                    } else {
                        priced = priced.with_commitment(c);
                    }
                }
                let quantity = match usage {
                    Usage::Quantity { quantity } => Some(*quantity),
                    _ => Some(priced.derivation.quantity),
                };
                charges_subtotal = add(charges_subtotal, priced.amount.minor)?;
                (
                    LineKind::Charge,
                    priced.amount.minor,
                    quantity,
                    priced.unit_price,
                    Some(LineDerivation::Charge(priced.derivation)),
                )
            }
            LineSource::Fixed { amount, quantity } => {
                charges_subtotal = add(charges_subtotal, *amount)?;
                (LineKind::Fixed, *amount, *quantity, None, None)
            }
            LineSource::Proration { item } => {
                if item.amount.currency != currency {
                    return Err(MoneyError::CurrencyMismatch {
                        left: currency,
                        right: item.amount.currency,
                    }
                    .into());
                }
                (
                    LineKind::Proration,
                    item.amount.minor,
                    None,
                    None,
                    Some(LineDerivation::Proration(item.clone())),
                )
            }
        };
        lines.push(InvoiceLine {
            id: l.id.clone(),
            kind,
            description: l.description.clone(),
            period: l.period,
            quantity,
            unit_price,
            amount,
            discounts: Vec::new(),
            discount_amount: 0,
            taxes: Vec::new(),
            tax_amount: 0,
            tax_reason: None,
            total_excluding_tax: amount,
            total: amount,
            derivation,
        });
    }
    let mut line_taxes: Vec<&[TaxRate]> =
        input.lines.iter().map(|l| l.tax_rates.as_slice()).collect();
    let mut discountable: Vec<bool> = input.lines.iter().map(|l| l.discountable).collect();

    // 2. Minimum commitment true-up.
    if let Some(mc) = &input.minimum_commitment {
        if mc.amount < 0 {
            return Err(InvoiceError::invalid(
                "minimum_commitment.amount".into(),
                "must not be negative",
            ));
        }
        check_taxes(|| "minimum_commitment".to_owned(), &mc.tax_rates)?;
        if charges_subtotal < mc.amount {
            let amount = sub(mc.amount, charges_subtotal)?;
            lines.push(InvoiceLine {
                id: None,
                kind: LineKind::MinimumCommitment,
                description: "Minimum commitment true-up".to_owned(),
                period: mc.period,
                quantity: None,
                unit_price: None,
                amount,
                discounts: Vec::new(),
                discount_amount: 0,
                taxes: Vec::new(),
                tax_amount: 0,
                tax_reason: None,
                total_excluding_tax: amount,
                total: amount,
                derivation: Some(LineDerivation::MinimumCommitment {
                    minimum: mc.amount,
                    charges_subtotal,
                }),
            });
            line_taxes.push(&mc.tax_rates);
            discountable.push(false);
        }
    }

    // 3. Subtotal.
    let subtotal = lines.iter().try_fold(0i64, |acc, l| add(acc, l.amount))?;

    // 4. Discounts.
    let mut net: Vec<i64> = lines.iter().map(|l| l.amount).collect();
    let mut discount_summaries = Vec::with_capacity(input.discounts.len());
    for (d_i, d) in input.discounts.iter().enumerate() {
        let applies = |idx: usize| {
            discountable[idx]
                && match d.applies_to() {
                    None => true,
                    Some(ids) => lines[idx]
                        .id
                        .as_deref()
                        .is_some_and(|id| ids.iter().any(|x| x == id)),
                }
        };
        let mut base: i64 = 0;
        let mut positive: i64 = 0;
        for (idx, &n) in net.iter().enumerate() {
            if applies(idx) {
                base = add(base, n)?;
                if n > 0 {
                    positive = add(positive, n)?;
                }
            }
        }
        let wanted = match d {
            Discount::PercentOff { percent, .. } => {
                check_percentage(|| format!("discounts[{d_i}].percent"), *percent)?;
                percent_of(base.max(0), *percent)?
            }
            Discount::AmountOff { amount, .. } => {
                if *amount < 0 {
                    return Err(InvoiceError::invalid(
                        format!("discounts[{d_i}].amount"),
                        "must not be negative",
                    ));
                }
                (*amount).min(base.max(0))
            }
        };
        let total_discount = wanted.clamp(0, positive);
        if total_discount > 0 {
            let idxs: Vec<usize> = (0..net.len())
                .filter(|&idx| applies(idx) && net[idx] > 0)
                .collect();
            let weights: Vec<u64> = idxs.iter().map(|&idx| net[idx].unsigned_abs()).collect();
            let shares = allocate_minor(total_discount, &weights)?;
            for (&idx, share) in idxs.iter().zip(shares) {
                if share == 0 {
                    continue;
                }
                net[idx] = sub(net[idx], share)?;
                let line = &mut lines[idx];
                line.discount_amount = add(line.discount_amount, share)?;
                line.discounts.push(LineDiscount {
                    discount_id: d.id().to_owned(),
                    amount: share,
                });
            }
        }
        discount_summaries.push(DiscountSummary {
            discount_id: d.id().to_owned(),
            amount: total_discount,
        });
    }

    // 4b. Maximum commitments deferred past the percentage discounts: what the discounted net
    // still exceeds the maximum by is taken off as a discount of its own.
    let mut capped_total: i64 = 0;
    for (idx, max) in deferred_maximum.iter().enumerate() {
        let Some(max) = *max else { continue };
        let over = sub(net[idx], max)?;
        if over > 0 {
            net[idx] = max;
            let line = &mut lines[idx];
            line.discount_amount = add(line.discount_amount, over)?;
            line.discounts.push(LineDiscount {
                discount_id: MAXIMUM_COMMITMENT_DISCOUNT.to_owned(),
                amount: over,
            });
            capped_total = add(capped_total, over)?;
        }
    }
    if capped_total > 0 {
        discount_summaries.push(DiscountSummary {
            discount_id: MAXIMUM_COMMITMENT_DISCOUNT.to_owned(),
            amount: capped_total,
        });
    }

    // 5. Tax per line, rounded per line.
    let mut tax_summaries: Vec<TaxSummary> = Vec::new();
    for (idx, line) in lines.iter_mut().enumerate() {
        let rates = line_taxes[idx];
        let n = net[idx];
        let mut exclusive_tax: i64 = 0;
        let mut inclusive_tax: i64 = 0;
        if rates.first().is_some_and(|r| r.inclusive) {
            let combined: Decimal = rates.iter().map(|r| r.percentage).sum(); // ≤ 100 × rates: no overflow
            if !combined.is_zero() {
                let exact = Decimal::from(n)
                    .checked_mul(combined)
                    .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED + combined))
                    .ok_or_else(overflow)?;
                inclusive_tax = decimal::round_minor(exact).map_err(|_| overflow())?;
                let weights: Vec<u64> = rates
                    .iter()
                    .map(|r| {
                        u64::try_from((r.percentage * Decimal::from(10_000)).trunc()).unwrap_or(0)
                    })
                    .collect();
                let shares = if weights.iter().any(|&w| w > 0) {
                    allocate_minor(inclusive_tax, &weights)?
                } else {
                    vec![0; rates.len()]
                };
                let taxable = sub(n, inclusive_tax)?;
                for (r, share) in rates.iter().zip(shares) {
                    line.taxes.push(LineTax {
                        tax_rate_id: r.id.clone(),
                        display_name: r.display_name.clone(),
                        jurisdiction: r.jurisdiction.clone(),
                        percentage: r.percentage,
                        inclusive: true,
                        taxable_amount: taxable,
                        amount: share,
                    });
                }
            }
        } else {
            for r in rates {
                let t = percent_of(n, r.percentage)?;
                exclusive_tax = add(exclusive_tax, t)?;
                line.taxes.push(LineTax {
                    tax_rate_id: r.id.clone(),
                    display_name: r.display_name.clone(),
                    jurisdiction: r.jurisdiction.clone(),
                    percentage: r.percentage,
                    inclusive: false,
                    taxable_amount: n,
                    amount: t,
                });
            }
        }
        for t in &line.taxes {
            match tax_summaries
                .iter_mut()
                .find(|s| s.tax_rate_id == t.tax_rate_id && s.percentage == t.percentage)
            {
                Some(s) => {
                    s.taxable_amount = add(s.taxable_amount, t.taxable_amount)?;
                    s.amount = add(s.amount, t.amount)?;
                }
                None => tax_summaries.push(TaxSummary {
                    tax_rate_id: t.tax_rate_id.clone(),
                    display_name: t.display_name.clone(),
                    jurisdiction: t.jurisdiction.clone(),
                    percentage: t.percentage,
                    inclusive: t.inclusive,
                    taxable_amount: t.taxable_amount,
                    amount: t.amount,
                }),
            }
        }
        line.tax_amount = add(exclusive_tax, inclusive_tax)?;
        line.total_excluding_tax = sub(n, inclusive_tax)?;
        line.total = add(n, exclusive_tax)?;
    }

    // 6. Totals: sums of lines, never recomputed otherwise.
    let mut discount_total = 0i64;
    let mut tax_total = 0i64;
    let mut total = 0i64;
    let mut total_excluding_tax = 0i64;
    for l in &lines {
        discount_total = add(discount_total, l.discount_amount)?;
        tax_total = add(tax_total, l.tax_amount)?;
        total = add(total, l.total)?;
        total_excluding_tax = add(total_excluding_tax, l.total_excluding_tax)?;
    }

    // 7. Credits.
    let mut remaining = total.max(0);
    let mut credits_applied = Vec::new();
    let mut credit_total = 0i64;
    let mut unapplied = 0i64;
    for (c_i, c) in input.credits.iter().enumerate() {
        if c.amount < 0 {
            return Err(InvoiceError::invalid(
                format!("credits[{c_i}].amount"),
                "must not be negative",
            ));
        }
        let used = c.amount.min(remaining);
        remaining -= used;
        if used > 0 {
            credit_total = add(credit_total, used)?;
            credits_applied.push(AppliedCredit {
                credit_id: c.id.clone(),
                amount: used,
            });
        }
        unapplied = add(unapplied, c.amount - used)?;
    }
    let amount_due = sub(total.max(0), credit_total)?;
    let ending_credit_balance = add(unapplied, total.min(0).checked_neg().ok_or_else(overflow)?)?;

    Ok(InvoiceDraft {
        currency,
        lines,
        subtotal,
        discount_total,
        total_excluding_tax,
        tax_total,
        total,
        discounts: discount_summaries,
        taxes: tax_summaries,
        credits_applied,
        credit_total,
        wallet_total: 0,
        wallets_applied: Vec::new(),
        amount_due,
        ending_credit_balance,
    })
}

impl InvoiceDraft {
    /// The draft with prepaid wallets (`id`, balance in minor units, in the order they
    /// are consumed) paying what is still due after discounts, tax and credits: each at
    /// most its balance, all together at most the amount due, so the amount due never
    /// goes below zero.
    pub fn with_wallets(mut self, wallets: &[CreditInput]) -> InvoiceDraft {
        for wallet in wallets {
            let take = wallet.amount.min(self.amount_due);
            if take <= 0 {
                continue;
            }
            self.amount_due -= take;
            self.wallet_total += take;
            self.wallets_applied.push(AppliedWallet {
                wallet_id: wallet.id.clone(),
                amount: take,
            });
        }
        self
    }

    pub fn total_money(&self) -> Money {
        Money::new(self.total, self.currency)
    }
    pub fn amount_due_money(&self) -> Money {
        Money::new(self.amount_due, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn vat(p: Decimal, inclusive: bool) -> Vec<TaxRate> {
        vec![TaxRate {
            id: "vat".into(),
            percentage: p,
            inclusive,
            display_name: None,
            jurisdiction: None,
        }]
    }

    fn line(id: &str, source: LineSource, taxes: Vec<TaxRate>) -> LineInput {
        LineInput {
            id: Some(id.into()),
            description: id.into(),
            period: None,
            source,
            tax_rates: taxes,
            tax_behavior: None,
            discountable: true,
        }
    }

    fn fixed(amount: i64) -> LineSource {
        LineSource::Fixed {
            amount,
            quantity: None,
        }
    }

    /// openmeterio/openmeter `openmeter/billing/rating/service/rate/unit_test.go`, "usage
    /// present, 50% discount +max spend set and hit" (and `pricer.go`: `DiscountPercentage`
    /// before `MaxAmountCommitment`): 20 units × $10 = $200, 50 % off → $100, then the $100
    /// maximum (not hit within one period). Capping first would give $50. With a $80 maximum
    /// the discounted $100 is capped to $80: $100 + $20 of discounts.
    #[test]
    fn percentage_discount_comes_before_the_maximum_commitment_like_openmeter() {
        let usd = Currency::from_code("usd").unwrap();
        let invoice = |maximum: i64, percent: i64| {
            build_invoice(&InvoiceInput {
                currency: usd,
                lines: vec![line(
                    "usage",
                    LineSource::Charge {
                        model: serde_json::from_str(r#"{"model":"per_unit","unit_price":"10"}"#)
                            .unwrap(),
                        usage: Usage::quantity(dec!(20)),
                        commitment: Some(Commitment {
                            minimum: None,
                            maximum: Some(maximum),
                        }),
                    },
                    vec![],
                )],
                discounts: vec![Discount::PercentOff {
                    id: "discount-50pct".into(),
                    percent: Decimal::from(percent),
                    applies_to: None,
                }],
                credits: vec![],
                minimum_commitment: None,
            })
            .unwrap()
        };
        let inv = invoice(10_000, 50);
        assert_eq!(
            (inv.subtotal, inv.discount_total, inv.total),
            (20_000, 10_000, 10_000)
        );
        let inv = invoice(8000, 50);
        assert_eq!(
            (inv.subtotal, inv.discount_total, inv.total),
            (20_000, 12_000, 8000)
        );
        assert_eq!(
            inv.lines[0].discounts,
            vec![
                LineDiscount {
                    discount_id: "discount-50pct".into(),
                    amount: 10_000
                },
                LineDiscount {
                    discount_id: MAXIMUM_COMMITMENT_DISCOUNT.into(),
                    amount: 2000
                },
            ]
        );
        // Without a percentage discount the maximum caps the line itself, as before.
        let inv = invoice(8000, 0);
        assert_eq!((inv.subtotal, inv.total), (8000, 8000));
    }

    #[test]
    fn worked_invoice() {
        let graduated: ChargeModel = serde_json::from_str(
            r#"{"model":"graduated","tiers":[{"up_to":"1000","unit_price":"0.01"},
               {"up_to":"5000","unit_price":"0.008","flat_fee":100},{"up_to":null,"unit_price":"0.005"}]}"#,
        )
        .unwrap();
        let input = InvoiceInput {
            currency: Currency::from_code("usd").unwrap(),
            lines: vec![
                line(
                    "plan",
                    LineSource::Charge {
                        model: serde_json::from_str(r#"{"model":"flat_fee","amount":4900}"#)
                            .unwrap(),
                        usage: Usage::quantity(dec!(1)),
                        commitment: None,
                    },
                    vat(dec!(20), false),
                ),
                line(
                    "api",
                    LineSource::Charge {
                        model: graduated,
                        usage: Usage::quantity(dec!(6000.5)),
                        commitment: None,
                    },
                    vat(dec!(20), false),
                ),
                line("credit", fixed(-1000), vat(dec!(20), false)),
            ],
            discounts: vec![
                Discount::PercentOff {
                    id: "launch".into(),
                    percent: dec!(10),
                    applies_to: Some(vec!["plan".into()]),
                },
                Discount::AmountOff {
                    id: "sorry".into(),
                    amount: 500,
                    applies_to: None,
                },
            ],
            credits: vec![CreditInput {
                id: "gift".into(),
                amount: 3000,
            }],
            minimum_commitment: None,
        };
        let inv = build_invoice(&input).unwrap();
        // Lines: 4900, 4800 (6000.5 units graduated = $48.0025 → $48.00), −1000.
        assert_eq!(inv.subtotal, 8700);
        // 10 % of the plan = 490; then $5 split over the positive nets 4410 and 4800 in
        // proportion: 239.41 → 239 and 260.59 → 261 (largest remainder takes the leftover cent).
        let d: Vec<i64> = inv.lines.iter().map(|l| l.discount_amount).collect();
        assert_eq!(d, vec![490 + 239, 261, 0]);
        // Tax 20 % per line on nets 4171, 4539, −1000: 834.2 → 834, 907.8 → 908, −200.
        let t: Vec<i64> = inv.lines.iter().map(|l| l.tax_amount).collect();
        assert_eq!(t, vec![834, 908, -200]);
        assert_eq!(
            (inv.discount_total, inv.tax_total, inv.total),
            (990, 1542, 9252)
        );
        assert_eq!(inv.total, inv.subtotal - inv.discount_total + inv.tax_total);
        assert_eq!(
            (inv.credit_total, inv.amount_due, inv.ending_credit_balance),
            (3000, 6252, 0)
        );
        assert_eq!(inv.taxes[0].amount, 1542);
        assert!(matches!(
            inv.lines[1].derivation,
            Some(LineDerivation::Charge(_))
        ));
        let json = serde_json::to_value(&inv).unwrap();
        assert_eq!(json["lines"][1]["derivation"]["source"], "charge");
    }

    #[test]
    fn inclusive_tax_negative_totals_and_minimum_commitment() {
        let usd = Currency::from_code("usd").unwrap();
        // $119.00 including 19 % VAT: tax = 119 × 19/119 = $19.00, net of tax $100.00.
        let inv = build_invoice(&InvoiceInput {
            currency: usd,
            lines: vec![line("a", fixed(11900), vat(dec!(19), true))],
            discounts: vec![],
            credits: vec![],
            minimum_commitment: None,
        })
        .unwrap();
        assert_eq!(
            (inv.tax_total, inv.total, inv.total_excluding_tax),
            (1900, 11900, 10000)
        );
        // A downgrade credit larger than the charges: nothing due, the rest becomes balance.
        let inv = build_invoice(&InvoiceInput {
            currency: usd,
            lines: vec![
                line("a", fixed(1000), vec![]),
                line("b", fixed(-5000), vec![]),
            ],
            discounts: vec![],
            credits: vec![CreditInput {
                id: "c".into(),
                amount: 700,
            }],
            minimum_commitment: None,
        })
        .unwrap();
        assert_eq!(
            (
                inv.total,
                inv.amount_due,
                inv.credit_total,
                inv.ending_credit_balance
            ),
            (-4000, 0, 0, 4700)
        );
        // Minimum commitment of $50 over $10 of charges adds a $40 true-up line.
        let inv = build_invoice(&InvoiceInput {
            currency: usd,
            lines: vec![line("a", fixed(1000), vec![])],
            discounts: vec![],
            credits: vec![CreditInput {
                id: "c".into(),
                amount: 700,
            }],
            minimum_commitment: Some(MinimumCommitment {
                amount: 5000,
                tax_rates: vec![],
                period: None,
            }),
        })
        .unwrap();
        assert_eq!(inv.lines[1].kind, LineKind::MinimumCommitment);
        assert_eq!(
            (inv.lines[1].amount, inv.total, inv.amount_due),
            (4000, 5000, 4300)
        );
    }

    #[test]
    fn invalid_inputs_name_their_param() {
        let usd = Currency::from_code("usd").unwrap();
        let mut input = InvoiceInput {
            currency: usd,
            lines: vec![line(
                "a",
                fixed(1000),
                vec![
                    TaxRate {
                        id: "x".into(),
                        percentage: dec!(5),
                        inclusive: true,
                        display_name: None,
                        jurisdiction: None,
                    },
                    TaxRate {
                        id: "y".into(),
                        percentage: dec!(5),
                        inclusive: false,
                        display_name: None,
                        jurisdiction: None,
                    },
                ],
            )],
            discounts: vec![],
            credits: vec![],
            minimum_commitment: None,
        };
        match build_invoice(&input) {
            Err(InvoiceError::Invalid(e)) => assert_eq!(e.param, "lines[0].tax_rates[1].inclusive"),
            other => panic!("{other:?}"),
        }
        input.lines[0].tax_rates = vat(dec!(101), false);
        match build_invoice(&input) {
            Err(InvoiceError::Invalid(e)) => {
                assert_eq!(e.param, "lines[0].tax_rates[0].percentage")
            }
            other => panic!("{other:?}"),
        }
        input.lines[0].tax_rates = vec![];
        input.lines[0].source = LineSource::Charge {
            model: serde_json::from_str(r#"{"model":"per_unit","unit_price":"1"}"#).unwrap(),
            usage: Usage::quantity(dec!(-1)),
            commitment: None,
        };
        assert!(matches!(
            build_invoice(&input),
            Err(InvoiceError::Pricing { line: 0, .. })
        ));
        let json = r#"{"currency":"usd","lines":[{"description":"x","source":{"type":"fixed","amount":5}}],"bogus":1}"#;
        assert!(serde_json::from_str::<InvoiceInput>(json).is_err());
        let json = r#"{"currency":"usd","lines":[{"description":"x","source":{"type":"fixed","amount":5}}]}"#;
        assert_eq!(
            build_invoice(&serde_json::from_str(json).unwrap())
                .unwrap()
                .total,
            5
        );
    }
}
