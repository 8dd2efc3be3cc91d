//! Human formatting of money for invoices and PDFs: currency symbol, the currency's decimals,
//! and the grouping customary for it (`$1,234.56`, `1.234,56 kr.`, `CHF 1'234.56`,
//! `₹12,34,567.00`, `¥1,235`).
//!
//! This form is for people only. Machines exchange minor-unit integers, or the machine text
//! form of [`Money::to_machine_string`] which [`Money::parse`] reads back exactly.

use crate::kernel::currency::Currency;
use crate::kernel::money::Money;

/// How a currency's amounts are grouped and punctuated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberStyle {
    pub decimal_separator: char,
    /// `None` means no grouping.
    pub group_separator: Option<char>,
    /// Indian grouping: last three digits, then groups of two (`12,34,567`).
    pub indian_grouping: bool,
}

/// The customary style for a currency (a per-currency convention, not a full locale).
pub fn number_style(currency: Currency) -> NumberStyle {
    let (dec, group, indian) = match currency.code() {
        "INR" => ('.', Some(','), true),
        "CHF" => ('.', Some('\''), false),
        "DKK" | "ISK" | "RON" | "VND" | "IDR" | "TRY" | "BRL" | "ARS" | "COP" => {
            (',', Some('.'), false)
        }
        "CZK" | "HUF" | "NOK" | "PLN" | "SEK" | "BGN" | "UAH" => (',', Some('\u{a0}'), false),
        _ => ('.', Some(','), false),
    };
    NumberStyle {
        decimal_separator: dec,
        group_separator: group,
        indian_grouping: indian,
    }
}

fn group_digits(digits: &str, style: NumberStyle, out: &mut String) {
    let Some(sep) = style.group_separator else {
        out.push_str(digits);
        return;
    };
    let n = digits.len();
    // Positions (from the left) after which a separator goes.
    let mut breaks = Vec::new();
    if style.indian_grouping {
        if n > 3 {
            let mut i = n - 3;
            while i > 0 {
                breaks.push(i);
                i = i.saturating_sub(2);
            }
        }
    } else {
        let mut i = n;
        while i > 3 {
            i -= 3;
            breaks.push(i);
        }
    }
    for (i, ch) in digits.char_indices() {
        if i > 0 && breaks.contains(&i) {
            out.push(sep);
        }
        out.push(ch);
    }
}

/// Formats for people: `-$1,234.56`, `1 234,56 kr`, `¥1,235`, `KD 1.235`.
pub fn format_human(m: Money) -> String {
    format_styled(m, number_style(m.currency), m.currency.info().symbol_first)
}

/// [`format_human`] with the grouping and symbol placement of a locale instead of the
/// currency's own.
pub fn format_styled(m: Money, style: NumberStyle, symbol_first: bool) -> String {
    let info = m.currency.info();
    let exp = u32::from(info.exponent);
    let abs = m.minor.unsigned_abs();
    let (int_part, frac_part) = if exp == 0 {
        (abs, 0)
    } else {
        (abs / 10u64.pow(exp), abs % 10u64.pow(exp))
    };
    let mut number = String::with_capacity(32);
    group_digits(&int_part.to_string(), style, &mut number);
    if exp > 0 {
        number.push(style.decimal_separator);
        number.push_str(&format!("{:0width$}", frac_part, width = exp as usize));
    }
    let sign = if m.minor < 0 { "-" } else { "" };
    if symbol_first {
        format!("{sign}{}{number}", info.symbol)
    } else {
        let symbol = info.symbol.trim_start();
        format!("{sign}{number}\u{a0}{symbol}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(minor: i64, code: &str) -> String {
        format_human(Money::new(minor, Currency::from_code(code).unwrap()))
    }

    #[test]
    fn formats_per_currency() {
        assert_eq!(f(123456, "usd"), "$1,234.56");
        assert_eq!(f(-123456, "usd"), "-$1,234.56");
        assert_eq!(f(5, "usd"), "$0.05");
        assert_eq!(f(100, "usd"), "$1.00");
        assert_eq!(f(1235, "jpy"), "¥1,235");
        assert_eq!(f(1235, "kwd"), "KD 1.235");
        assert_eq!(f(123456789, "eur"), "€1,234,567.89");
        assert_eq!(f(123456789, "inr"), "₹12,34,567.89");
        assert_eq!(f(123456, "chf"), "CHF 1'234.56");
        assert_eq!(f(123456, "dkk"), "1.234,56\u{a0}kr.");
        assert_eq!(f(123456, "sek"), "1\u{a0}234,56\u{a0}kr");
        assert_eq!(f(1234567, "vnd"), "1.234.567\u{a0}₫");
        assert_eq!(f(i64::MIN, "usd"), "-$92,233,720,368,547,758.08");
        assert_eq!(f(999, "jpy"), "¥999");
        assert_eq!(f(100000, "inr"), "₹1,000.00");
        assert_eq!(f(10000000, "inr"), "₹1,00,000.00");
    }
}
