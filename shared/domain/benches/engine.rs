//! Engine throughput: `cargo bench -p billing-domain`.
//! Targets: ≥ 1,000,000 priced 10-tier graduated lines/s and ≥ 200,000 five-line invoices
//! (with tax and credits) per second on one core.

use std::hint::black_box;

use billing_domain::billing::invoice_draft::{
    build_invoice, CreditInput, Discount, InvoiceInput, LineInput, LineSource, TaxRate,
};
use billing_domain::catalog::charges::{ChargeModel, Tier, Tiers, Usage};
use billing_domain::kernel::currency::Currency;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rust_decimal::Decimal;

fn ten_tiers() -> ChargeModel {
    let mut tiers = Vec::new();
    for i in 1..=9i64 {
        tiers.push(Tier {
            up_to: Some(Decimal::from(i * 1000)),
            unit_price: Decimal::new(100 - i * 7, 4), // 0.0093, 0.0086, ...
            flat_fee: if i % 3 == 0 { 100 } else { 0 },
        });
    }
    tiers.push(Tier {
        up_to: None,
        unit_price: Decimal::new(15, 4),
        flat_fee: 0,
    });
    ChargeModel::Graduated(Tiers { tiers })
}

fn five_line_invoice() -> InvoiceInput {
    let usd = Currency::from_code("usd").expect("usd");
    let vat = vec![TaxRate {
        id: "vat".into(),
        percentage: Decimal::new(20, 0),
        inclusive: false,
        display_name: None,
        jurisdiction: None,
    }];
    let line = |id: &str, source: LineSource| LineInput {
        id: Some(id.into()),
        description: format!("{id} charge"),
        period: None,
        source,
        tax_rates: vat.clone(),
        tax_behavior: None,
        discountable: true,
    };
    InvoiceInput {
        currency: usd,
        lines: vec![
            line(
                "plan",
                LineSource::Charge {
                    model: serde_json::from_str(r#"{"model":"flat_fee","amount":4900}"#).expect("flat"),
                    usage: Usage::quantity(Decimal::ONE),
                    commitment: None,
                },
            ),
            line(
                "seats",
                LineSource::Charge {
                    model: serde_json::from_str(r#"{"model":"per_unit","unit_price":"12.50"}"#).expect("per unit"),
                    usage: Usage::quantity(Decimal::from(7)),
                    commitment: None,
                },
            ),
            line("api", LineSource::Charge { model: ten_tiers(), usage: Usage::quantity(Decimal::new(1_234_567, 1)), commitment: None }),
            line(
                "storage",
                LineSource::Charge {
                    model: serde_json::from_str(r#"{"model":"package","package_size":"100","package_price":"2.5","free_units":"10"}"#)
                        .expect("package"),
                    usage: Usage::quantity(Decimal::new(4321, 1)),
                    commitment: None,
                },
            ),
            line("setup", LineSource::Fixed { amount: 2500, quantity: None }),
        ],
        discounts: vec![Discount::PercentOff { id: "launch".into(), percent: Decimal::TEN, applies_to: None }],
        credits: vec![CreditInput { id: "promo".into(), amount: 5000 }],
        minimum_commitment: None,
    }
}

fn bench(c: &mut Criterion) {
    let usd = Currency::from_code("usd").expect("usd");
    let model = ten_tiers();
    model.validate().expect("valid");
    let usage = Usage::quantity(Decimal::new(12_345_678, 3)); // 12,345.678 units: all 10 tiers
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    g.bench_function("price_graduated_10_tiers", |b| {
        b.iter(|| {
            black_box(&model)
                .price(black_box(&usage), usd)
                .expect("priced")
        })
    });
    let input = five_line_invoice();
    build_invoice(&input).expect("invoice");
    g.bench_function("build_invoice_5_lines_tax_credits", |b| {
        b.iter(|| build_invoice(black_box(&input)).expect("invoice"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
