//! Money and decimal parsing never panics, and whatever parses round-trips exactly.
#![no_main]

use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::decimal::parse_decimal;
use billing_domain::kernel::money::Money;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for currency in Currency::all() {
        if let Ok(m) = Money::parse(text, currency) {
            assert_eq!(Money::parse(&m.to_machine_string(), currency), Ok(m));
            let _ = m.to_string();
        }
    }
    if let Ok(d) = parse_decimal(text, 28) {
        assert_eq!(parse_decimal(&d.to_string(), 28), Ok(d));
    }
    let _ = serde_json::from_str::<Money>(text);
});
