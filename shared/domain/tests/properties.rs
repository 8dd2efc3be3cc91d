//! Property tests of the billing engine (proptest). Case counts are kept moderate so the
//! crate's whole test suite stays fast in debug builds.

use billing_domain::billing::invoice_draft::{
    build_invoice, CreditInput, Discount, InvoiceInput, LineInput, LineSource, TaxRate,
};
use billing_domain::billing::periods::{BillingCycle, Interval, IntervalUnit, Period};
use billing_domain::billing::proration::{
    cancellation_credit, charge_for, credit_unused, fraction, plan_change, used_until, CreditCap,
    FixedMonthDays, ProrationConvention,
};
use billing_domain::catalog::capacity::{Capacity, CapacityTier, Limit};
use billing_domain::catalog::charges::{ChargeModel, Percentage, Step, Tier, Tiers, Usage};
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::decimal::{parse_decimal, round_minor};
use billing_domain::kernel::money::Money;
use jiff::Timestamp;
use proptest::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

fn currency() -> impl Strategy<Value = Currency> {
    let all: Vec<Currency> = Currency::all().collect();
    (0..all.len()).prop_map(move |i| all[i])
}

fn money() -> impl Strategy<Value = Money> {
    (any::<i64>(), currency()).prop_map(|(m, c)| Money::new(m, c))
}

fn graduated() -> impl Strategy<Value = ChargeModel> {
    // 1..8 tiers: increasing bounds (with up to 2 decimals), prices with up to 6 decimals.
    prop::collection::vec((1i64..100_000, 0i64..10_000_000, 0i64..10_000), 1..8).prop_map(|parts| {
        let mut bound = Decimal::ZERO;
        let n = parts.len();
        let tiers = parts
            .into_iter()
            .enumerate()
            .map(|(i, (step, price, flat))| {
                bound += Decimal::new(step, 2);
                Tier {
                    up_to: (i + 1 < n).then_some(bound),
                    unit_price: Decimal::new(price, 6),
                    flat_fee: flat,
                }
            })
            .collect();
        ChargeModel::Graduated(Tiers { tiers })
    })
}

/// A quantity (3 decimals) placed by `place` relative to the tiers of `model`: exactly on a
/// tier's upper bound, strictly inside a tier, beyond the last bound, or zero, so that every
/// tier and every boundary is reached (uniform quantities would mostly exceed every tier).
fn quantity_in(model: &ChargeModel, place: u8, which: prop::sample::Index, step: u64) -> Decimal {
    let ChargeModel::Graduated(Tiers { tiers }) = model else {
        unreachable!("graduated models only")
    };
    let bounds: Vec<Decimal> = tiers.iter().filter_map(|t| t.up_to).collect();
    let lower = |i: usize| if i == 0 { Decimal::ZERO } else { bounds[i - 1] };
    match place {
        0 if !bounds.is_empty() => bounds[which.index(bounds.len())],
        0 | 1 => {
            let i = which.index(tiers.len());
            // Bounds have 2 decimals, so a tier is at least 10 thousandths wide.
            let width = bounds.get(i).map_or(100_000, |u| {
                ((*u - lower(i)) * Decimal::from(1000))
                    .to_u64()
                    .expect("a positive width")
            });
            lower(i) + Decimal::new((1 + step % (width - 1)) as i64, 3)
        }
        2 => lower(tiers.len() - 1) + Decimal::new((1 + step % 10_000_000) as i64, 3),
        _ => Decimal::ZERO,
    }
}

/// The reference graduated model, from the definition alone (Stripe's `tiers_mode=graduated`,
/// Lago's graduated charge): tier `i` holds the units in `(up_to[i-1], up_to[i]]` (its upper
/// bound inclusive), a tier's flat fee is due once the quantity enters it, and the first
/// tier's flat fee at zero (Lago, OpenMeter, Stripe). Returns the units in each tier and the
/// unrounded total in major units.
fn graduated_reference(tiers: &[Tier], q: Decimal, exponent: u8) -> (Vec<Decimal>, Decimal) {
    let major = |minor: i64| Decimal::new(minor, u32::from(exponent));
    let mut units = vec![Decimal::ZERO; tiers.len()];
    let mut total = Decimal::ZERO;
    let mut lower = Decimal::ZERO;
    for (i, tier) in tiers.iter().enumerate() {
        let entered = q > lower || (i == 0 && q.is_zero());
        if entered {
            let upper = tier.up_to.map_or(q, |u| u.min(q));
            units[i] = (upper - lower).max(Decimal::ZERO);
            total += units[i] * tier.unit_price + major(tier.flat_fee);
        }
        lower = tier.up_to.unwrap_or(lower);
    }
    (units, total)
}

/// `minor × num / den` rounded half away from zero (the crate's one documented rule), in
/// exact integer arithmetic.
fn prorate_reference(minor: i64, num: i64, den: i64) -> i64 {
    let n = i128::from(minor) * i128::from(num);
    let d = i128::from(den);
    let rounded = (2 * n.abs() + d) / (2 * d);
    i64::try_from(if n < 0 { -rounded } else { rounded }).expect("fits")
}

/// The fraction of `period` left from `at` (`[at, end)`), counted from each convention's
/// definition in the proration module docs and not through its helpers: seconds (Stripe),
/// local days touched with both ends included (Lago), local dates with the end excluded
/// (Kill Bill), and Kill Bill's fixed-day months walked day by day.
fn remaining_reference(
    conv: ProrationConvention,
    period: &Period,
    at: Timestamp,
    tz: &jiff::tz::TimeZone,
) -> (i64, i64) {
    let date = |t: Timestamp| t.to_zoned(tz.clone()).date();
    let days = |a: jiff::civil::Date, b: jiff::civil::Date| i64::from((b - a).get_days());
    let last_day = || date(period.end - jiff::SignedDuration::from_nanos(1));
    let span = || {
        (
            days(date(at), date(period.end)),
            days(date(period.start), date(period.end)),
        )
    };
    let (num, den) = match conv {
        ProrationConvention::ExactSeconds => (
            period.end.as_second() - at.as_second(),
            period.end.as_second() - period.start.as_second(),
        ),
        ProrationConvention::CalendarDaysInclusive => (
            days(date(at), last_day()) + 1,
            days(date(period.start), last_day()) + 1,
        ),
        ProrationConvention::DaySpanExclusive => span(),
        ProrationConvention::ThirtyDayMonths | ProrationConvention::FixedDayMonths { .. } => {
            let f = match conv {
                ProrationConvention::FixedDayMonths { days } => i64::from(days.get()),
                _ => 30,
            };
            let (start, end) = (date(period.start), date(period.end));
            let months = (1..=48)
                .take_while(|&m| {
                    start
                        .checked_add(jiff::Span::new().months(m))
                        .is_ok_and(|d| d <= end)
                })
                .count() as i64;
            if months == 0 {
                span()
            } else if at == period.start {
                (f * months, f * months)
            } else {
                // Every month counts F: a day counts 1 up to the month's F-th, and a month
                // shorter than F makes up the difference on its last day.
                let mut used = 0;
                let mut d = start;
                while d < date(at) {
                    let next = d.tomorrow().expect("date");
                    used += if next.day() == 1 {
                        (f + 1 - i64::from(d.day())).max(0)
                    } else {
                        i64::from(i64::from(d.day()) <= f)
                    };
                    d = next;
                }
                (f * months - used.clamp(0, f * months), f * months)
            }
        }
    };
    if den <= 0 {
        return (i64::from(at == period.start), 1);
    }
    (num.clamp(0, den), den)
}

fn fixed(days: u8) -> ProrationConvention {
    ProrationConvention::FixedDayMonths {
        days: FixedMonthDays::new(days).expect("28 to 31"),
    }
}

const CONVENTIONS: [ProrationConvention; 4] = [
    ProrationConvention::ExactSeconds,
    ProrationConvention::CalendarDaysInclusive,
    ProrationConvention::DaySpanExclusive,
    ProrationConvention::ThirtyDayMonths,
];

fn all_conventions() -> Vec<ProrationConvention> {
    let mut v = CONVENTIONS.to_vec();
    v.extend([fixed(28), fixed(29), fixed(31)]);
    v
}
const ZONES: [&str; 5] = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
];

fn cycle() -> impl Strategy<Value = (BillingCycle, i64)> {
    (
        0usize..4,
        1u32..4,
        1_600_000_000i64..1_800_000_000,
        0usize..ZONES.len(),
        -3i64..30,
    )
        .prop_map(|(u, count, anchor, z, k)| {
            let unit = [
                IntervalUnit::Day,
                IntervalUnit::Week,
                IntervalUnit::Month,
                IntervalUnit::Year,
            ][u];
            let c = BillingCycle::new(
                Interval { unit, count },
                Timestamp::from_second(anchor).expect("ts"),
                ZONES[z],
            )
            .expect("cycle");
            (c, k)
        })
}

/// The plan-change reference reproduces the proration docs' worked table ($31.00 for January
/// 2024, a change at Jan 15 12:00): Stripe's seconds, Lago's inclusive days, Kill Bill's day
/// span and fixed-day months; so the property below rests on those anchors, not on the code.
#[test]
fn the_remaining_reference_matches_the_documented_worked_table() {
    let ts = |s: &str| s.parse::<Timestamp>().expect("ts");
    let period = Period::new(ts("2024-01-01T00:00:00Z"), ts("2024-02-01T00:00:00Z")).expect("jan");
    let at = ts("2024-01-15T12:00:00Z");
    let table = [
        (
            ProrationConvention::ExactSeconds,
            (1_425_600, 2_678_400),
            1650,
        ),
        (ProrationConvention::CalendarDaysInclusive, (17, 31), 1700),
        (ProrationConvention::DaySpanExclusive, (17, 31), 1700),
        (ProrationConvention::ThirtyDayMonths, (16, 30), 1653),
        (fixed(28), (14, 28), 1550),
    ];
    for (conv, fraction, cents) in table {
        let (num, den) = remaining_reference(conv, &period, at, &jiff::tz::TimeZone::UTC);
        assert_eq!(
            ((num, den), prorate_reference(3100, num, den)),
            (fraction, cents),
            "{conv:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn money_arithmetic_never_panics(
        a in money(),
        b_minor in prop_oneof![any::<i64>(), -1_000_000i64..1_000_000],
        other in prop::option::weighted(0.1, currency()),
        k in any::<i64>(),
        ratios in prop_oneof![
            prop::collection::vec(any::<u64>(), 0..6),
            prop::collection::vec(0u64..10, 1..8),
        ],
        n in 0usize..20,
    ) {
        // b is in a's currency nine times in ten, so the same-currency branch runs.
        let b = Money::new(b_minor, other.unwrap_or(a.currency));
        let same = a.currency == b.currency;
        let exact_sum = i128::from(a.minor) + i128::from(b.minor);
        let exact_diff = i128::from(a.minor) - i128::from(b.minor);
        match a.checked_add(b) {
            Ok(s) => prop_assert!(same && i128::from(s.minor) == exact_sum && s.currency == a.currency),
            Err(_) => prop_assert!(!same || i64::try_from(exact_sum).is_err()),
        }
        match a.checked_sub(b) {
            Ok(d) => prop_assert!(same && i128::from(d.minor) == exact_diff),
            Err(_) => prop_assert!(!same || i64::try_from(exact_diff).is_err()),
        }
        match a.min(b) {
            Ok(m) => prop_assert!(same && m.minor == a.minor.min(b.minor)),
            Err(_) => prop_assert!(!same),
        }
        let _ = a.checked_neg();
        let _ = a.checked_abs();
        let _ = a.checked_mul(k);
        let _ = a.to_string();
        let ratio_sum: u128 = ratios.iter().map(|&r| u128::from(r)).sum();
        match a.allocate(&ratios) {
            Ok(parts) => {
                prop_assert_eq!(parts.len(), ratios.len());
                prop_assert_eq!(parts.iter().map(|m| i128::from(m.minor)).sum::<i128>(), i128::from(a.minor));
                // Each share is its exact proportion `|a| × r / Σr` rounded down or up (within
                // one minor unit); the negative amount is split as its absolute value.
                let abs = u128::from(a.minor.unsigned_abs());
                let sign = if a.minor < 0 { -1 } else { 1 };
                let mut extra = Vec::new();
                for (i, (part, &r)) in parts.iter().zip(&ratios).enumerate() {
                    prop_assert_eq!(part.currency, a.currency);
                    let exact = abs * u128::from(r);
                    let floor = i128::try_from(exact / ratio_sum).expect("fits");
                    let share = sign * i128::from(part.minor);
                    prop_assert!(share == floor || share == floor + 1, "share {} of {}: {} vs floor {}", i, a.minor, share, floor);
                    extra.push((share > floor, exact % ratio_sum, i));
                }
                // Leftover units go to the largest remainders, earlier parts first on ties.
                for &(up, rem, i) in &extra {
                    for &(other_up, other_rem, j) in &extra {
                        if up && !other_up {
                            prop_assert!(rem > other_rem || (rem == other_rem && i < j), "part {} got a unit before part {}", i, j);
                        }
                    }
                }
            }
            Err(_) => prop_assert!(ratio_sum == 0),
        }
        if let Ok(parts) = a.split(n) {
            prop_assert_eq!(parts.len(), n);
            prop_assert_eq!(parts.iter().map(|m| i128::from(m.minor)).sum::<i128>(), i128::from(a.minor));
            let max = parts.iter().map(|m| m.minor).max().unwrap_or(0);
            let min = parts.iter().map(|m| m.minor).min().unwrap_or(0);
            prop_assert!(i128::from(max) - i128::from(min) <= 1);
        }
        if let (Ok(s), true) = (a.checked_add(b), a.currency == b.currency) {
            prop_assert_eq!(i128::from(s.minor), i128::from(a.minor) + i128::from(b.minor));
        }
    }

    #[test]
    fn parse_of_machine_format_is_identity(m in money()) {
        let text = m.to_machine_string();
        prop_assert_eq!(Money::parse(&text, m.currency).expect("parses"), m);
        let json = serde_json::to_string(&m).expect("json");
        prop_assert_eq!(serde_json::from_str::<Money>(&json).expect("back"), m);
    }

    #[test]
    fn parsing_garbage_never_panics(s in ".{0,40}", d in "-?[0-9]{0,32}(\\.[0-9]{0,32})?") {
        let _ = parse_decimal(&s, 12);
        let _ = parse_decimal(&d, 28);
        let usd = Currency::from_code("usd").expect("usd");
        let _ = Money::parse(&s, usd);
        let _ = Money::parse(&d, usd);
        let _ = serde_json::from_str::<ChargeModel>(&s);
        if let Ok(v) = parse_decimal(&d, 28) {
            prop_assert_eq!(parse_decimal(&v.to_string(), 28).expect("round trip"), v);
        }
    }

    #[test]
    fn graduated_total_is_the_sum_of_its_slices(
        model in graduated(),
        place in 0u8..4,
        which in any::<prop::sample::Index>(),
        step in any::<u64>(),
        c in currency(),
    ) {
        prop_assume!(model.validate().is_ok());
        let ChargeModel::Graduated(Tiers { tiers }) = &model else { unreachable!() };
        let quantity = quantity_in(&model, place, which, step);
        let (expected_units, expected_total) = graduated_reference(tiers, quantity, c.exponent());
        prop_assert_eq!(expected_units.iter().sum::<Decimal>(), quantity, "the reference puts every unit in one tier");
        let priced = model.price(&Usage::quantity(quantity), c).expect("priced");
        let mut sum = Decimal::ZERO;
        let mut units = vec![Decimal::ZERO; tiers.len()];
        for s in &priced.derivation.steps {
            match s {
                Step::TierSlice { tier, amount, units: u, unit_price, flat_fee, .. } => {
                    prop_assert_eq!(*amount, *u * *unit_price + *flat_fee);
                    prop_assert_eq!(*unit_price, tiers[*tier].unit_price);
                    sum += *amount;
                    units[*tier] += *u;
                }
                other => prop_assert!(false, "unexpected step {:?}", other),
            }
        }
        // Which tier each unit falls in: per tier, the implementation's units are the
        // reference's (a boundary quantity stays in the lower tier), and they add up.
        prop_assert_eq!(&units, &expected_units, "units per tier at {}", quantity);
        prop_assert_eq!(units.iter().sum::<Decimal>(), quantity);
        prop_assert_eq!(sum, expected_total, "no flat fee of a tier not entered");
        prop_assert_eq!(priced.derivation.rounding.unrounded, expected_total.normalize());
        let scaled = expected_total * Decimal::from(10i64.pow(u32::from(c.exponent())));
        let rounded = scaled.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        prop_assert_eq!(Decimal::from(priced.amount.minor), rounded, "rounded once, half away from zero");
        // More units never cost less.
        let more = model.price(&Usage::quantity(quantity + Decimal::ONE), c).expect("priced");
        prop_assert!(more.amount.minor >= priced.amount.minor);
    }

    #[test]
    fn full_period_proration_is_the_full_price((cyc, k) in cycle(), minor in -10_000_000_000i64..10_000_000_000) {
        let period = cyc.period(k).expect("period");
        let full = Money::new(minor, Currency::from_code("eur").expect("eur"));
        for conv in CONVENTIONS {
            let item = charge_for(full, &period, &period, conv, cyc.time_zone()).expect("prorated");
            prop_assert_eq!(item.amount, full, "{:?}", conv);
        }
        for conv in all_conventions() {
            let item = charge_for(full, &period, &period, conv, cyc.time_zone()).expect("prorated");
            prop_assert_eq!(item.amount, full, "{:?}", conv);
        }
    }

    #[test]
    fn proration_over_a_partition_sums_to_the_full_price(
        (cyc, k) in cycle(),
        minor in 0i64..10_000_000_000,
        cuts in prop::collection::vec(0u32..=1_000_000, 0..6),
    ) {
        let period = cyc.period(k).expect("period");
        let tz = cyc.time_zone();
        let full = Money::new(minor, Currency::from_code("usd").expect("usd"));
        let len = period.end.as_second() - period.start.as_second();
        let mut points: Vec<i64> = cuts.iter().map(|&c| period.start.as_second() + len * i64::from(c) / 1_000_000).collect();
        points.push(period.start.as_second());
        points.push(period.end.as_second());
        points.sort();
        points.dedup();
        for conv in all_conventions() {
            // Day-based inclusive counting sums to the whole only when cuts fall at local midnight.
            let pts: Vec<Timestamp> = if conv == ProrationConvention::CalendarDaysInclusive {
                let mut v: Vec<Timestamp> = points.iter().map(|&s| {
                    let t = Timestamp::from_second(s).expect("ts");
                    if t == period.start || t == period.end { return t; }
                    let midnight = tz.to_datetime(t).date().to_zoned(tz.clone()).expect("zoned").timestamp();
                    midnight.max(period.start)
                }).collect();
                v.sort();
                v.dedup();
                v
            } else {
                points.iter().map(|&s| Timestamp::from_second(s).expect("ts")).collect()
            };
            let mut sum = 0i64;
            let mut num = 0i64;
            let slices = pts.len() - 1;
            for w in pts.windows(2) {
                let slice = Period::new(w[0], w[1]).expect("slice");
                let item = charge_for(full, &slice, &period, conv, tz).expect("prorated");
                sum += item.amount.minor;
                num += item.fraction.numerator;
                prop_assert!(item.fraction.numerator <= item.fraction.denominator);
            }
            let f = fraction(conv, &period, &period, tz).expect("full");
            prop_assert_eq!(num, f.denominator, "{:?} numerators must add up", conv);
            prop_assert!((sum - minor).abs() <= slices as i64, "{:?}: {} vs {} over {} slices", conv, sum, minor, slices);
        }
    }

    #[test]
    fn plan_change_credit_plus_charge_is_the_difference_of_remaining_values(
        (cyc, k) in cycle(),
        old in 0i64..10_000_000,
        new in 0i64..10_000_000,
        at in 0u32..=1000,
        conv_i in 0usize..7,
    ) {
        let period = cyc.period(k).expect("period");
        let tz = cyc.time_zone();
        let conv = all_conventions()[conv_i];
        let usd = Currency::from_code("usd").expect("usd");
        let len = period.end.as_second() - period.start.as_second();
        let at = Timestamp::from_second(period.start.as_second() + len * i64::from(at) / 1000).expect("ts");
        let change = plan_change(Money::new(old, usd), Money::new(new, usd), &period, at, conv, tz).expect("change");
        if at >= period.end {
            prop_assert_eq!(change, billing_domain::billing::proration::PlanChange { credit: None, charge: None });
            return Ok(());
        }
        // The reference: the remaining fraction counted from the convention's definition,
        // each amount rounded once, half away from zero.
        let (num, den) = remaining_reference(conv, &period, at, tz);
        let credit = change.credit.as_ref().expect("a credit");
        let charge = change.charge.as_ref().expect("a charge");
        for item in [credit, charge] {
            prop_assert_eq!((item.fraction.numerator, item.fraction.denominator), (num, den), "{:?} at {}", conv, at);
        }
        prop_assert_eq!(credit.amount.minor, -prorate_reference(old, num, den));
        prop_assert_eq!(charge.amount.minor, prorate_reference(new, num, den));
        let net = change.net(usd).expect("net").minor;
        prop_assert_eq!(net, prorate_reference(new, num, den) - prorate_reference(old, num, den));
        // And within one minor unit of prorating the difference directly.
        prop_assert!((net - prorate_reference(new - old, num, den)).abs() <= 1);
    }

    #[test]
    fn invoice_totals_are_sums_of_lines(
        amounts in prop::collection::vec((-1_000_000i64..10_000_000, 0u32..3, any::<bool>()), 1..8),
        percent in 0i64..=10_000,
        amount_off in 0i64..5_000_000,
        credits in prop::collection::vec(0i64..5_000_000, 0..3),
        wallets in prop::collection::vec(0i64..5_000_000, 0..3),
    ) {
        let rates = |kind: u32| match kind {
            0 => vec![],
            1 => vec![TaxRate { id: "vat".into(), percentage: Decimal::new(2000, 2), inclusive: false, display_name: None, jurisdiction: None },
                      TaxRate { id: "city".into(), percentage: Decimal::new(875, 3), inclusive: false, display_name: None, jurisdiction: None }],
            _ => vec![TaxRate { id: "gst".into(), percentage: Decimal::new(15, 0), inclusive: true, display_name: None, jurisdiction: None }],
        };
        let input = InvoiceInput {
            currency: Currency::from_code("usd").expect("usd"),
            lines: amounts.iter().enumerate().map(|(i, &(a, t, disc))| LineInput {
                id: Some(format!("l{i}")),
                description: format!("line {i}"),
                period: None,
                source: if i % 2 == 0 {
                    LineSource::Fixed { amount: a, quantity: None }
                } else {
                    LineSource::Charge {
                        model: ChargeModel::PerUnit(billing_domain::catalog::charges::PerUnit { unit_price: Decimal::new(1234, 4) }),
                        usage: Usage::quantity(Decimal::new(a.abs(), 1)),
                        commitment: None,
                    }
                },
                tax_rates: rates(t),
                tax_behavior: None,
                discountable: disc,
            }).collect(),
            discounts: vec![
                Discount::PercentOff { id: "p".into(), percent: Decimal::new(percent, 2), applies_to: None },
                Discount::AmountOff { id: "a".into(), amount: amount_off, applies_to: Some(vec!["l0".into(), "l3".into()]) },
            ],
            credits: credits.iter().enumerate().map(|(i, &c)| CreditInput { id: format!("c{i}"), amount: c }).collect(),
            minimum_commitment: None,
        };
        let inv = build_invoice(&input).expect("invoice");
        let sum = |f: fn(&billing_domain::billing::invoice_draft::InvoiceLine) -> i64| inv.lines.iter().map(f).sum::<i64>();
        prop_assert_eq!(inv.subtotal, sum(|l| l.amount));
        prop_assert_eq!(inv.discount_total, sum(|l| l.discount_amount));
        prop_assert_eq!(inv.tax_total, sum(|l| l.tax_amount));
        prop_assert_eq!(inv.total, sum(|l| l.total));
        prop_assert_eq!(inv.total_excluding_tax, sum(|l| l.total_excluding_tax));
        let exclusive_tax: i64 = inv.lines.iter().flat_map(|l| &l.taxes).filter(|t| !t.inclusive).map(|t| t.amount).sum();
        prop_assert_eq!(inv.total, inv.subtotal - inv.discount_total + exclusive_tax);
        prop_assert_eq!(inv.discount_total, inv.discounts.iter().map(|d| d.amount).sum::<i64>());
        prop_assert_eq!(inv.tax_total, inv.taxes.iter().map(|t| t.amount).sum::<i64>());
        for l in &inv.lines {
            prop_assert!(l.discount_amount >= 0);
            prop_assert!(l.amount <= 0 || l.discount_amount <= l.amount);
            prop_assert_eq!(l.discount_amount, l.discounts.iter().map(|d| d.amount).sum::<i64>());
        }
        prop_assert!(inv.amount_due >= 0);
        prop_assert_eq!(inv.amount_due, inv.total.max(0) - inv.credit_total);
        let credit_in: i64 = credits.iter().sum();
        prop_assert_eq!(inv.ending_credit_balance, credit_in - inv.credit_total + (-inv.total).max(0));
        // Prepaid wallets then pay what is still due, each at most its balance: discount +
        // credit + wallet + amount due is what the lines came to (with tax), never below zero.
        let balances: Vec<CreditInput> = wallets.iter().enumerate().map(|(i, &w)| CreditInput { id: format!("w{i}"), amount: w }).collect();
        let paid = inv.clone().with_wallets(&balances);
        prop_assert!(paid.amount_due >= 0);
        prop_assert!(paid.wallet_total <= inv.amount_due);
        prop_assert_eq!(paid.wallet_total, paid.wallets_applied.iter().map(|w| w.amount).sum::<i64>());
        for w in &paid.wallets_applied {
            let balance = balances.iter().find(|b| b.id == w.wallet_id).map(|b| b.amount);
            prop_assert!(w.amount > 0 && Some(w.amount) <= balance);
        }
        prop_assert_eq!(paid.wallet_total, inv.amount_due.min(wallets.iter().sum()));
        prop_assert_eq!(
            paid.discount_total + paid.credit_total + paid.wallet_total + paid.amount_due,
            paid.subtotal + exclusive_tax + (-paid.total).max(0)
        );
    }

    /// A termination splits the period into what was used and what is credited: the two
    /// fractions make the whole under every convention (Lago's termination day is on the used
    /// side), and a credit is never more than was paid.
    #[test]
    fn termination_used_plus_unused_is_the_whole(
        (cyc, k) in cycle(),
        at in 0u32..=1000,
        paid in 0i64..10_000_000,
    ) {
        let period = cyc.period(k).expect("period");
        let tz = cyc.time_zone();
        let len = period.end.as_second() - period.start.as_second();
        let at = Timestamp::from_second(period.start.as_second() + len * i64::from(at) / 1000).expect("ts");
        let usd = Currency::from_code("usd").expect("usd");
        for conv in all_conventions() {
            let whole = fraction(conv, &period, &period, tz).expect("whole").denominator;
            let used = used_until(&period, at, conv, tz).map_or(0, |s| fraction(conv, &s, &period, tz).expect("used").numerator);
            let credit = cancellation_credit(Money::new(paid, usd), &period, at, conv, tz).expect("credit");
            let unused = credit.as_ref().map_or(0, |c| c.fraction.numerator);
            if at > period.start {
                prop_assert_eq!(used + unused, whole, "{:?} at {}", conv, at);
            } else {
                // An empty used stub: the whole period is unused (the termination day is
                // still kept under calendar_days_inclusive only once it has begun).
                prop_assert_eq!(used, 0);
            }
            if let Some(c) = credit {
                prop_assert!(-c.amount.minor <= paid && c.amount.minor <= 0);
            }
        }
    }

    /// Flexprice's cap: a capped credit never exceeds what was paid minus what was already
    /// credited, never exceeds the uncapped credit and is never a charge.
    #[test]
    fn capped_credit_never_exceeds_what_is_left(
        fee in 0i64..10_000_000,
        paid in 0i64..10_000_000,
        credited in 0i64..10_000_000,
        at in 0u32..=1000,
    ) {
        let usd = Currency::from_code("usd").expect("usd");
        let period = Period::new(Timestamp::from_second(1_704_067_200).expect("ts"), Timestamp::from_second(1_706_745_600).expect("ts")).expect("jan");
        let at = Timestamp::from_second(period.start.as_second() + 2_678_400 * i64::from(at) / 1000).expect("ts");
        let tz = jiff::tz::TimeZone::UTC;
        if let Some(item) = credit_unused(Money::new(fee, usd), &period, at, ProrationConvention::ExactSeconds, &tz).expect("credit") {
            let uncapped = -item.amount.minor;
            let cap = CreditCap { paid: Money::new(paid, usd), already_credited: Money::new(credited, usd) };
            let granted = cap.apply(item).expect("cap").map_or(0, |c| -c.amount.minor);
            prop_assert!(granted >= 0);
            prop_assert!(granted <= uncapped);
            prop_assert!(granted <= (paid - credited).max(0));
            prop_assert_eq!(granted, uncapped.min((paid - credited).max(0)));
        }
    }

    /// Lago's free allowance: what it covers never exceeds the free amount, free transactions
    /// are never more than allowed, and one more transaction never lowers the charge.
    #[test]
    fn percentage_free_allowance_is_bounded_and_monotone(
        amounts in prop::collection::vec(0i64..100_000, 0..12),
        extra in 0i64..100_000,
        free_transactions in 0u64..5,
        free_amount in 0i64..200_000,
        fixed_fee in 0i64..100,
    ) {
        let usd = Currency::from_code("usd").expect("usd");
        let model = ChargeModel::Percentage(Percentage {
            rate: Decimal::new(29, 1),
            fixed_fee,
            free_transactions,
            free_amount,
            min_per_transaction: None,
            max_per_transaction: None,
        });
        let dec = |v: &[i64]| Usage::Transactions { amounts: v.iter().map(|&a| Decimal::new(a, 2)).collect() };
        let priced = model.price(&dec(&amounts), usd).expect("priced");
        match &priced.derivation.steps[0] {
            Step::Percentage { free_transactions: f, free_amount_used, transactions, charged_transactions, .. } => {
                prop_assert!(*free_amount_used <= Decimal::new(free_amount, 2));
                if free_transactions > 0 {
                    prop_assert!(*f <= free_transactions);
                }
                prop_assert_eq!(*f + *charged_transactions, *transactions);
            }
            other => prop_assert!(false, "{:?}", other),
        }
        let mut more = amounts.clone();
        more.push(extra);
        prop_assert!(model.price(&dec(&more), usd).expect("priced").amount.minor >= priced.amount.minor);
    }

    /// Kill Bill's capacity: more usage of any unit never chooses an earlier (cheaper-listed)
    /// tier, and the tier chosen holds every limit.
    #[test]
    fn capacity_tier_is_monotone_in_usage(
        limits in prop::collection::vec((1i64..1000, 1i64..1000), 1..5),
        a in 0i64..5000,
        b in 0i64..5000,
        more in 0i64..5000,
    ) {
        let usd = Currency::from_code("usd").expect("usd");
        let mut ua = 0i64;
        let mut ub = 0i64;
        let mut tiers: Vec<CapacityTier> = limits.iter().enumerate().map(|(i, &(da, db))| {
            ua += da;
            ub += db;
            CapacityTier {
                limits: [("a".to_owned(), Limit(Some(Decimal::from(ua)))), ("b".to_owned(), Limit(Some(Decimal::from(ub))))].into_iter().collect(),
                price: 100 * (i as i64 + 1),
            }
        }).collect();
        tiers.push(CapacityTier {
            limits: [("a".to_owned(), Limit(None)), ("b".to_owned(), Limit(None))].into_iter().collect(),
            price: 100_000,
        });
        let c = Capacity { tiers };
        prop_assert!(c.validate().is_ok());
        let usage = |x: i64, y: i64| [("a".to_owned(), Decimal::from(x)), ("b".to_owned(), Decimal::from(y))].into_iter().collect();
        let p = c.price(&usage(a, b), usd).expect("priced");
        let q = c.price(&usage(a + more, b), usd).expect("priced");
        if let (Some(i), Some(j)) = (p.tier, q.tier) {
            prop_assert!(j >= i);
            for (unit, v) in [("a", a), ("b", b)] {
                if let Some(max) = c.tiers[i].limits[unit].0 {
                    prop_assert!(Decimal::from(v) <= max);
                }
            }
        }
    }

    /// OpenMeter's order: a percentage discount comes before a charge's maximum commitment:
    /// the line's net is `min(maximum, amount − round(amount × percent))`, never above the
    /// maximum, and the invoice invariants still hold.
    #[test]
    fn percentage_discount_then_maximum_commitment(
        units in 0i64..1_000_000,
        maximum in 0i64..10_000_000,
        percent in 0i64..=10_000,
    ) {
        let usd = Currency::from_code("usd").expect("usd");
        let input = InvoiceInput {
            currency: usd,
            lines: vec![LineInput {
                id: Some("u".into()),
                description: "usage".into(),
                period: None,
                source: LineSource::Charge {
                    model: ChargeModel::PerUnit(billing_domain::catalog::charges::PerUnit { unit_price: Decimal::new(25, 2) }),
                    usage: Usage::quantity(Decimal::from(units)),
                    commitment: Some(billing_domain::catalog::charges::Commitment { minimum: None, maximum: Some(maximum) }),
                },
                tax_rates: vec![],
                tax_behavior: None,
                discountable: true,
            }],
            discounts: vec![Discount::PercentOff { id: "p".into(), percent: Decimal::new(percent, 2), applies_to: None }],
            credits: vec![],
            minimum_commitment: None,
        };
        let inv = build_invoice(&input).expect("invoice");
        let amount = units * 25;
        let discount = round_minor(Decimal::from(amount) * Decimal::new(percent, 4)).expect("fits");
        prop_assert_eq!(inv.total, (amount - discount).min(maximum));
        prop_assert!(inv.total <= maximum);
        prop_assert_eq!(inv.total, inv.subtotal - inv.discount_total);
        prop_assert_eq!(inv.discount_total, inv.discounts.iter().map(|d| d.amount).sum::<i64>());
    }
}
