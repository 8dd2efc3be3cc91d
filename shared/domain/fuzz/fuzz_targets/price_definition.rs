//! Price definitions and invoice inputs from arbitrary JSON: validation and pricing never panic.
#![no_main]

use billing_domain::catalog::charges::{ChargeModel, PricingError, Usage};
use billing_domain::kernel::currency::Currency;
use billing_domain::billing::invoice_draft::{build_invoice, InvoiceInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(model) = serde_json::from_str::<ChargeModel>(text) {
        let valid = model.validate().is_ok();
        for code in ["usd", "jpy", "kwd"] {
            let Ok(c) = Currency::from_code(code) else { return };
            for q in ["0", "1", "1000.5", "123456789.123456789"] {
                let Ok(q) = q.parse() else { return };
                let priced = model.price(&Usage::quantity(q), c);
                if valid && !matches!(model, ChargeModel::Percentage(_)) {
                    // A validated definition prices every quantity, or reports overflow.
                    assert!(matches!(priced, Ok(_) | Err(PricingError::Overflow)), "{model:?} {q}: {priced:?}");
                }
            }
        }
    }
    if let Ok(input) = serde_json::from_str::<InvoiceInput>(text) {
        if let Ok(inv) = build_invoice(&input) {
            assert_eq!(inv.total, inv.lines.iter().map(|l| l.total).sum::<i64>());
            assert!(inv.amount_due >= 0);
        }
    }
});
