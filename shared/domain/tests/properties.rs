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

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn money_arithmetic_never_panics(a in money(), b in money(), k in any::<i64>(), ratios in prop::collection::vec(any::<u64>(), 0..6), n in 0usize..20) {
        let _ = a.checked_add(b);
        let _ = a.checked_sub(b);
        let _ = a.checked_neg();
        let _ = a.checked_abs();
        let _ = a.checked_mul(k);
        let _ = a.min(b);
        let _ = a.to_string();
        if let Ok(parts) = a.allocate(&ratios) {
            prop_assert_eq!(parts.iter().map(|m| i128::from(m.minor)).sum::<i128>(), i128::from(a.minor));
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
    fn graduated_total_is_the_sum_of_its_slices(model in graduated(), q in 0i64..100_000_000, c in currency()) {
        prop_assume!(model.validate().is_ok());
        let quantity = Decimal::new(q, 3);
        let priced = model.price(&Usage::quantity(quantity), c).expect("priced");
        let mut sum = Decimal::ZERO;
        let mut units = Decimal::ZERO;
        for s in &priced.derivation.steps {
            match s {
                Step::TierSlice { amount, units: u, unit_price, flat_fee, .. } => {
                    prop_assert_eq!(*amount, *u * *unit_price + *flat_fee);
                    sum += *amount;
                    units += *u;
                }
                other => prop_assert!(false, "unexpected step {:?}", other),
            }
        }
        prop_assert_eq!(units, quantity);
        prop_assert_eq!(priced.derivation.rounding.unrounded, sum.normalize());
        let exp = u32::from(c.exponent());
        prop_assert_eq!(priced.amount.minor, round_minor(sum * Decimal::from(10i64.pow(exp))).expect("fits"));
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
        conv_i in 0usize..4,
    ) {
        let period = cyc.period(k).expect("period");
        let tz = cyc.time_zone();
        let conv = CONVENTIONS[conv_i];
        let usd = Currency::from_code("usd").expect("usd");
        let len = period.end.as_second() - period.start.as_second();
        let at = Timestamp::from_second(period.start.as_second() + len * i64::from(at) / 1000).expect("ts");
        let change = plan_change(Money::new(old, usd), Money::new(new, usd), &period, at, conv, tz).expect("change");
        let remaining = |m: i64| period.from(at).map_or(0, |s| charge_for(Money::new(m, usd), &s, &period, conv, tz).expect("r").amount.minor);
        let net = change.net(usd).expect("net").minor;
        prop_assert_eq!(net, remaining(new) - remaining(old));
        // And within one minor unit of prorating the difference directly.
        prop_assert!((net - remaining(new - old)).abs() <= 1);
    }

    #[test]
    fn invoice_totals_are_sums_of_lines(
        amounts in prop::collection::vec((-1_000_000i64..10_000_000, 0u32..3, any::<bool>()), 1..8),
        percent in 0i64..=10_000,
        amount_off in 0i64..5_000_000,
        credits in prop::collection::vec(0i64..5_000_000, 0..3),
    ) {
        let rates = |kind: u32| match kind {
            0 => vec![],
            1 => vec![TaxRate { id: "vat".into(), percentage: Decimal::new(2000, 2), inclusive: false },
                      TaxRate { id: "city".into(), percentage: Decimal::new(875, 3), inclusive: false }],
            _ => vec![TaxRate { id: "gst".into(), percentage: Decimal::new(15, 0), inclusive: true }],
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
