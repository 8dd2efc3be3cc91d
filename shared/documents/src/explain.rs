//! Explainable lines: the derivation the engine recorded on a line, written out as
//! sentences. Nothing is recomputed here; every number is read from
//! [`LineDerivation`] (catalog pricing steps, proration items, minimum top-ups).

use billing_domain::billing::invoice_draft::{InvoiceLine, LineDerivation};
use billing_domain::billing::periods::Period;
use billing_domain::billing::proration::{ProrationConvention, ProrationItem, ProrationKind};
use billing_domain::catalog::charges::{Derivation, ModelKind, Step};
use billing_domain::documents::locale::Locale;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::money::Money;
use rust_decimal::Decimal;

/// The derivation of one line, as printed in the appendix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub title: String,
    pub steps: Vec<String>,
}

/// Whether a line gets an appendix entry: usage-priced and prorated lines (a flat fee
/// explains itself).
pub fn explains(line: &InvoiceLine) -> bool {
    match &line.derivation {
        Some(LineDerivation::Charge(d)) => d.model != ModelKind::FlatFee || d.commitment.is_some(),
        Some(LineDerivation::Proration(_)) | Some(LineDerivation::MinimumCommitment { .. }) => true,
        None => false,
    }
}

pub fn explain(line: &InvoiceLine, currency: Currency, locale: Locale) -> Option<Explanation> {
    if !explains(line) {
        return None;
    }
    let money = |minor: i64| locale.format_money(Money::new(minor, currency));
    let exact = |major: Decimal| exact_amount(major, currency);
    let steps = match line.derivation.as_ref()? {
        LineDerivation::Charge(d) => charge(d, &exact, &money),
        LineDerivation::Proration(p) => proration(p, locale, &exact, &money),
        LineDerivation::MinimumCommitment {
            minimum,
            charges_subtotal,
        } => vec![format!(
            "Minimum commitment {} against charges of {}: {} added",
            money(*minimum),
            money(*charges_subtotal),
            money(line.amount)
        )],
    };
    Some(Explanation {
        title: line.description.clone(),
        steps,
    })
}

/// Decimals shown of an unrounded amount; a longer one (a proration's repeating fraction)
/// is cut and marked with `…`.
const SHOWN_DECIMALS: u32 = 6;

/// An exact major-unit amount with the currency's code: `26.728 EUR`, `67.178571… EUR`.
fn exact_amount(major: Decimal, currency: Currency) -> String {
    let shown = major.trunc_with_scale(SHOWN_DECIMALS);
    let cut = if shown == major { "" } else { "…" };
    format!("{}{cut} {}", shown.normalize(), currency.code())
}

fn model_name(model: ModelKind) -> &'static str {
    match model {
        ModelKind::FlatFee => "flat fee",
        ModelKind::PerUnit => "per unit",
        ModelKind::Graduated => "graduated tiers",
        ModelKind::Volume => "volume tiers",
        ModelKind::Package => "packages",
        ModelKind::Percentage => "percentage",
        ModelKind::TieredBlocks => "tiered blocks",
    }
}

fn charge(
    d: &Derivation,
    exact: &dyn Fn(Decimal) -> String,
    money: &dyn Fn(i64) -> String,
) -> Vec<String> {
    let mut out = vec![format!(
        "Priced as {}: quantity {}",
        model_name(d.model),
        d.quantity.normalize()
    )];
    let flat = |fee: Decimal| {
        if fee.is_zero() {
            String::new()
        } else {
            format!(" + flat {}", exact(fee))
        }
    };
    for step in &d.steps {
        out.push(match step {
            Step::Flat { amount } => format!("Flat amount {}", exact(*amount)),
            Step::Units {
                units,
                unit_price,
                amount,
            } => format!(
                "{} × {} = {}",
                units.normalize(),
                exact(*unit_price),
                exact(*amount)
            ),
            Step::TierSlice {
                tier,
                from,
                to,
                units,
                unit_price,
                flat_fee,
                amount,
            } => format!(
                "Tier {} ({} to {}): {} × {}{} = {}",
                tier + 1,
                from.normalize(),
                to.map_or_else(|| "∞".to_owned(), |t| t.normalize().to_string()),
                units.normalize(),
                exact(*unit_price),
                flat(*flat_fee),
                exact(*amount)
            ),
            Step::VolumeTier {
                tier,
                units,
                full_units,
                unit_price,
                flat_fee,
                amount,
            } => format!(
                "Tier {}{}: {} × {}{} = {}",
                tier + 1,
                full_units.map_or_else(String::new, |f| format!(
                    " (chosen by the full-period quantity {})",
                    f.normalize()
                )),
                units.normalize(),
                exact(*unit_price),
                flat(*flat_fee),
                exact(*amount)
            ),
            Step::FreeUnits { units } => format!("{} free units taken off", units.normalize()),
            Step::Blocks {
                tier,
                units,
                block_size,
                blocks,
                block_price,
                amount,
            } => format!(
                "{}{} units in {blocks} started blocks of {} × {} = {}",
                tier.map_or_else(String::new, |t| format!("Tier {}: ", t + 1)),
                units.normalize(),
                block_size.normalize(),
                exact(*block_price),
                exact(*amount)
            ),
            Step::Percentage {
                transactions,
                charged_transactions,
                total_amount,
                rated_amount,
                rate_percent,
                rate_amount,
                fixed_fees,
                minimum_top_up,
                maximum_reduction,
                amount,
                ..
            } => format!(
                "{transactions} transactions of {}, {} rated at {} % = {}; fixed fees on \
                 {charged_transactions} transactions {}; minimum top-up {}; maximum \
                 reduction {}; total {}",
                exact(*total_amount),
                exact(*rated_amount),
                rate_percent.normalize(),
                exact(*rate_amount),
                exact(*fixed_fees),
                exact(*minimum_top_up),
                exact(*maximum_reduction),
                exact(*amount)
            ),
        });
    }
    out.push(format!(
        "Exact total {}, rounded once half away from zero to {}",
        exact(d.rounding.unrounded),
        money(d.rounding.rounded_minor)
    ));
    if let Some(c) = &d.commitment {
        out.push(format!(
            "Commitment (minimum {}, maximum {}): {} became {}",
            c.minimum.map_or_else(|| "none".to_owned(), money),
            c.maximum.map_or_else(|| "none".to_owned(), money),
            money(c.before),
            money(c.after)
        ));
    }
    out
}

fn convention_name(c: ProrationConvention) -> String {
    match c {
        ProrationConvention::ExactSeconds => "seconds used over seconds in the period".into(),
        ProrationConvention::CalendarDaysInclusive => {
            "calendar days, first and last included".into()
        }
        ProrationConvention::DaySpanExclusive => "days, end date excluded".into(),
        ProrationConvention::ThirtyDayMonths => "30-day months".into(),
        ProrationConvention::FixedDayMonths { days } => format!("{}-day months", days.get()),
    }
}

fn proration(
    p: &ProrationItem,
    locale: Locale,
    exact: &dyn Fn(Decimal) -> String,
    money: &dyn Fn(i64) -> String,
) -> Vec<String> {
    let span = |period: &Period| {
        format!(
            "{} – {}",
            crate::date(period.start, locale),
            crate::date(period.end, locale)
        )
    };
    let what = match p.kind {
        ProrationKind::Charge => "Charge for",
        ProrationKind::Credit => "Credit for unused",
        ProrationKind::Used => "Charge for used",
    };
    let mut out = vec![
        format!(
            "{what} {} of the period {} priced {}",
            span(&p.period),
            span(&p.full_period),
            money(p.full_amount.minor)
        ),
        format!(
            "Fraction {}/{} ({})",
            p.fraction.numerator,
            p.fraction.denominator,
            convention_name(p.convention)
        ),
        format!(
            "{} × {}/{} = {}, rounded once half away from zero to {}",
            money(p.full_amount.minor),
            p.fraction.numerator,
            p.fraction.denominator,
            exact(p.unrounded),
            money(p.amount.minor)
        ),
    ];
    if let Some(before) = p.capped_from {
        out.push(format!(
            "Capped from {} to what was paid for the period",
            money(before)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use billing_domain::billing::invoice_draft::LineKind;
    use billing_domain::billing::proration::charge_for;
    use billing_domain::catalog::charges::ChargeModel;
    use jiff::tz::TimeZone;
    use jiff::Timestamp;

    fn line(kind: LineKind, amount: i64, derivation: LineDerivation) -> InvoiceLine {
        InvoiceLine {
            id: None,
            kind,
            description: "API calls".into(),
            period: None,
            quantity: None,
            unit_price: None,
            amount,
            discounts: vec![],
            discount_amount: 0,
            taxes: vec![],
            tax_amount: 0,
            tax_reason: None,
            total_excluding_tax: amount,
            total: amount,
            derivation: Some(derivation),
        }
    }

    #[test]
    fn graduated_tiers_are_written_as_the_engine_priced_them() {
        let usd = Currency::from_code("usd").unwrap();
        let model: ChargeModel = serde_json::from_value(serde_json::json!({
            "model": "graduated", "tiers": [
                {"up_to": "100", "unit_price": "0.10"},
                {"up_to": null, "unit_price": "0.05", "flat_fee": 200}
            ]
        }))
        .unwrap();
        let priced = model.price_quantity(Decimal::from(250), usd).unwrap();
        let l = line(
            LineKind::Charge,
            priced.amount.minor,
            LineDerivation::Charge(priced.derivation),
        );
        let e = explain(&l, usd, Locale::EnUs).unwrap();
        assert_eq!(
            e.steps,
            [
                "Priced as graduated tiers: quantity 250",
                "Tier 1 (0 to 100): 100 × 0.1 USD = 10 USD",
                "Tier 2 (100 to ∞): 150 × 0.05 USD + flat 2 USD = 9.5 USD",
                "Exact total 19.5 USD, rounded once half away from zero to $19.50",
            ]
        );
    }

    #[test]
    fn a_proration_shows_its_dates_fraction_and_convention() {
        let usd = Currency::from_code("usd").unwrap();
        let ts = |s: &str| s.parse::<Timestamp>().unwrap();
        let full = Period::new(ts("2026-01-01T00:00:00Z"), ts("2026-02-01T00:00:00Z")).unwrap();
        let slice = Period::new(ts("2026-01-11T00:00:00Z"), ts("2026-02-01T00:00:00Z")).unwrap();
        let item = charge_for(
            Money::new(3100, usd),
            &slice,
            &full,
            ProrationConvention::CalendarDaysInclusive,
            &TimeZone::UTC,
        )
        .unwrap();
        let amount = item.amount.minor;
        let l = line(LineKind::Proration, amount, LineDerivation::Proration(item));
        let e = explain(&l, usd, Locale::EnGb).unwrap();
        assert_eq!(e.title, "API calls");
        assert_eq!(
            e.steps[0],
            "Charge for 11 Jan 2026 – 1 Feb 2026 of the period 1 Jan 2026 – 1 Feb 2026 priced $31.00"
        );
        assert_eq!(
            e.steps[1],
            "Fraction 21/31 (calendar days, first and last included)"
        );
        assert_eq!(
            e.steps[2],
            "$31.00 × 21/31 = 21 USD, rounded once half away from zero to $21.00"
        );
        assert_eq!(
            exact_amount(Decimal::new(6717857142857, 11), usd),
            "67.178571… USD"
        );
    }

    #[test]
    fn a_flat_fee_needs_no_explanation() {
        let usd = Currency::from_code("usd").unwrap();
        let model: ChargeModel =
            serde_json::from_value(serde_json::json!({"model": "flat_fee", "amount": 1000}))
                .unwrap();
        let priced = model.price_quantity(Decimal::ONE, usd).unwrap();
        let l = line(
            LineKind::Fixed,
            1000,
            LineDerivation::Charge(priced.derivation),
        );
        assert_eq!(explain(&l, usd, Locale::EnUs), None);
    }
}
