//! Decimal numbers at the edge of the engine: strict parsing, the JSON forms, and **the one
//! rounding rule**.
//!
//! # The rounding rule
//!
//! Every priced line is computed exactly in [`Decimal`] (unit prices and rates may carry more
//! precision than the currency's minor unit, e.g. `0.0015` USD per API call) and then rounded
//! **once**, **half away from zero**, to the currency's minor unit
//! ([`RoundingStrategy::MidpointAwayFromZero`]): `0.125 USD → 0.13`, `-0.125 USD → -0.13`,
//! `0.124999 USD → 0.12`, `2.5 JPY → 3`. [`round_minor`] is the only function in the crate that
//! turns an unrounded amount into minor units; every other module calls it (directly or through
//! [`round_major_to_minor`]). Invoice totals are sums of the rounded lines and are never rounded
//! again.
//!
//! # Parsing
//!
//! [`parse_decimal`] accepts exactly `-?DIGITS(.DIGITS)?`: no exponent, no `+`, no spaces, no
//! `NaN`, no `.5`/`5.`, no thousands separators. It refuses values beyond what [`Decimal`] holds
//! and (through `max_scale`) more decimals than the caller allows. Trailing zeros past the limit
//! are accepted because they do not change the value (`"19.990"` is `19.99`).

use rust_decimal::{Decimal, RoundingStrategy};

use crate::kernel::currency::Currency;

/// Most decimals a unit price, rate or quantity may carry (Stripe's `unit_amount_decimal`
/// allows 12 decimals of the minor unit; we allow 12 of the major unit).
pub const MAX_PRICE_SCALE: u32 = 12;

/// Why a decimal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDecimalError {
    #[error("`{input}` is not a decimal number: {reason}")]
    Invalid { input: String, reason: &'static str },
    #[error("`{input}` has {scale} decimal places; at most {max} are allowed here")]
    TooPrecise { input: String, scale: u32, max: u32 },
    #[error("`{input}` is out of range: {reason}")]
    OutOfRange { input: String, reason: &'static str },
}

/// A rounded amount does not fit in an `i64` of minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("amount is out of range: it does not fit in 64-bit minor units")]
pub struct RoundingOverflow;

fn truncate_input(s: &str) -> String {
    // Error messages echo the input; never echo megabytes of it.
    if s.len() <= 64 {
        s.to_owned()
    } else {
        let mut end = 64;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// Parses `-?DIGITS(.DIGITS)?` exactly, allowing at most `max_scale` significant decimals.
pub fn parse_decimal(input: &str, max_scale: u32) -> Result<Decimal, ParseDecimalError> {
    let invalid = |reason| ParseDecimalError::Invalid {
        input: truncate_input(input),
        reason,
    };
    let bytes = input.as_bytes();
    if bytes.is_empty() {
        return Err(invalid("it is empty"));
    }
    let (negative, body) = match bytes[0] {
        b'-' => (true, &bytes[1..]),
        b'+' => return Err(invalid("a leading `+` is not allowed")),
        _ => (false, bytes),
    };
    if body.is_empty() {
        return Err(invalid("there are no digits"));
    }
    // Syntax first.
    let mut seen_dot = false;
    let mut int_digits = 0usize;
    let mut frac_digits = 0usize;
    for &b in body {
        match b {
            b'0'..=b'9' if seen_dot => frac_digits += 1,
            b'0'..=b'9' => int_digits += 1,
            b'.' if !seen_dot => seen_dot = true,
            b'.' => return Err(invalid("it has more than one decimal point")),
            b'e' | b'E' => return Err(invalid("exponents are not allowed; write the digits out")),
            b',' | b'_' | b' ' => {
                return Err(invalid(
                    "separators and spaces are not allowed; use digits and one `.`",
                ))
            }
            _ => {
                return Err(invalid(
                    "only digits, an optional leading `-` and one `.` are allowed",
                ))
            }
        }
    }
    if int_digits == 0 {
        return Err(invalid("a digit is required before the decimal point"));
    }
    if seen_dot && frac_digits == 0 {
        return Err(invalid("a digit is required after the decimal point"));
    }
    // Trailing fractional zeros do not change the value: drop them, then read the digits.
    let mut digits = body;
    if seen_dot {
        while let [rest @ .., b'0'] = digits {
            digits = rest;
        }
        if let [rest @ .., b'.'] = digits {
            digits = rest;
        }
    }
    let mut mantissa: u128 = 0;
    let mut scale: u32 = 0;
    let mut after_dot = false;
    for &b in digits {
        if b == b'.' {
            after_dot = true;
            continue;
        }
        if after_dot {
            scale += 1;
        }
        mantissa = match mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(b - b'0')))
        {
            Some(m) if m < (1u128 << 96) => m,
            _ => {
                return Err(ParseDecimalError::OutOfRange {
                    input: truncate_input(input),
                    reason: "it has more significant digits than a 96-bit decimal holds (about 28)",
                })
            }
        };
    }
    if scale > max_scale {
        return Err(ParseDecimalError::TooPrecise {
            input: truncate_input(input),
            scale,
            max: max_scale,
        });
    }
    if scale > 28 {
        return Err(ParseDecimalError::OutOfRange {
            input: truncate_input(input),
            reason: "more than 28 decimal places",
        });
    }
    let signed = if negative {
        -(mantissa as i128)
    } else {
        mantissa as i128
    };
    Decimal::try_from_i128_with_scale(signed, scale).map_err(|_| ParseDecimalError::OutOfRange {
        input: truncate_input(input),
        reason: "it does not fit in a 96-bit decimal",
    })
}

/// Number of significant decimals (ignoring trailing zeros).
pub fn significant_scale(d: Decimal) -> u32 {
    d.normalize().scale()
}

/// Canonical text of a decimal: no trailing zeros, no exponent (`"0.0015"`, `"1000"`).
pub fn to_canonical_string(d: Decimal) -> String {
    d.normalize().to_string()
}

/// **The rounding rule.** Rounds an unrounded amount expressed in minor units to a whole number
/// of minor units, half away from zero. This is the only place in the crate that rounds money.
pub fn round_minor(unrounded_minor: Decimal) -> Result<i64, RoundingOverflow> {
    let r = unrounded_minor.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    // After rounding to 0 dp the scale is 0, but be robust to any scale the library leaves.
    let mut m = r.mantissa();
    let mut s = r.scale();
    while s > 0 {
        m /= 10;
        s -= 1;
    }
    i64::try_from(m).map_err(|_| RoundingOverflow)
}

/// Shifts a major-unit amount to minor units exactly (`19.995 USD → 1999.5`), no rounding.
pub fn major_to_minor_exact(
    major: Decimal,
    currency: Currency,
) -> Result<Decimal, RoundingOverflow> {
    let exp = u32::from(currency.exponent());
    if exp == 0 {
        return Ok(major);
    }
    // Multiplying by 10^exp only shifts the scale when it can; fall back to checked_mul.
    let mut shifted = major;
    if major.scale() >= exp {
        shifted
            .set_scale(major.scale() - exp)
            .map_err(|_| RoundingOverflow)?;
        Ok(shifted)
    } else {
        major
            .checked_mul(Decimal::from(10i64.pow(exp)))
            .ok_or(RoundingOverflow)
    }
}

/// Converts minor units to the exact major-unit decimal (`1999 USD → 19.99`).
pub fn minor_to_major(minor: i64, currency: Currency) -> Decimal {
    Decimal::new(minor, u32::from(currency.exponent()))
}

/// Rounds a major-unit amount to minor units with [`round_minor`] (the one rule).
pub fn round_major_to_minor(major: Decimal, currency: Currency) -> Result<i64, RoundingOverflow> {
    round_minor(major_to_minor_exact(major, currency)?)
}

/// What rounding did to one line: kept in every derivation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoundingApplied {
    /// Always `half_away_from_zero`.
    pub rule: RoundingRule,
    /// Decimals of the currency's minor unit the amount was rounded to.
    pub decimals: u8,
    /// The exact amount before rounding, in major units.
    #[serde(with = "serde_decimal")]
    pub unrounded: Decimal,
    /// The result, in minor units.
    pub rounded_minor: i64,
    /// `rounded - unrounded`, in major units (positive when rounding added money).
    #[serde(with = "serde_decimal")]
    pub adjustment: Decimal,
}

/// The rounding rule, named in derivations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundingRule {
    HalfAwayFromZero,
}

/// Rounds a major-unit amount once and records what happened.
pub fn round_line(
    unrounded_major: Decimal,
    currency: Currency,
) -> Result<RoundingApplied, RoundingOverflow> {
    let rounded_minor = round_major_to_minor(unrounded_major, currency)?;
    let rounded_major = minor_to_major(rounded_minor, currency);
    let adjustment = rounded_major
        .checked_sub(unrounded_major)
        .ok_or(RoundingOverflow)?;
    Ok(RoundingApplied {
        rule: RoundingRule::HalfAwayFromZero,
        decimals: currency.exponent(),
        unrounded: unrounded_major.normalize(),
        rounded_minor,
        adjustment: adjustment.normalize(),
    })
}

/// Serde for `Decimal` as a JSON string (`"0.0015"`). Deserialisation also accepts JSON
/// integers (`1000`), which are exact, and refuses JSON floats (`0.1`), which are not: prices
/// never pass through binary floating point.
pub mod serde_decimal {
    use std::fmt;

    use rust_decimal::Decimal;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&d.normalize())
    }

    pub(crate) struct DecimalVisitor;

    impl Visitor<'_> for DecimalVisitor {
        type Value = Decimal;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a decimal number as a string, e.g. \"0.0015\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            super::parse_decimal(v, 28).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_f64<E: de::Error>(self, _v: f64) -> Result<Decimal, E> {
            Err(E::custom(
                "decimal values must be JSON strings (e.g. \"0.0015\"), not floating-point numbers",
            ))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(DecimalVisitor)
    }

    /// The same for `Option<Decimal>` (`null` is `None`).
    pub mod option {
        use std::fmt;

        use rust_decimal::Decimal;
        use serde::de::{self, Visitor};
        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.collect_str(&d.normalize()),
                None => s.serialize_none(),
            }
        }

        struct OptVisitor;
        impl<'de> Visitor<'de> for OptVisitor {
            type Value = Option<Decimal>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal number as a string, or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(super::DecimalVisitor).map(Some)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                super::DecimalVisitor.visit_str(v).map(Some)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(Decimal::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(Decimal::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                super::DecimalVisitor.visit_f64(v).map(Some)
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            d.deserialize_option(OptVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn usd() -> Currency {
        Currency::from_code("usd").unwrap()
    }

    #[test]
    fn parses_plain_decimals() {
        assert_eq!(parse_decimal("0", 12).unwrap(), dec!(0));
        assert_eq!(parse_decimal("19.99", 2).unwrap(), dec!(19.99));
        assert_eq!(parse_decimal("-0.0015", 12).unwrap(), dec!(-0.0015));
        assert_eq!(parse_decimal("19.990", 2).unwrap(), dec!(19.99));
        assert_eq!(parse_decimal("007", 0).unwrap(), dec!(7));
        assert_eq!(
            parse_decimal("79228162514264337593543950335", 0).unwrap(),
            Decimal::MAX
        );
    }

    #[test]
    fn rejects_garbage_precision_and_range() {
        for bad in [
            "", "-", "+1", "1e3", "1.2.3", ".5", "5.", "1,000", "1 000", "NaN", "inf", "0x10", "١",
        ] {
            assert!(
                matches!(
                    parse_decimal(bad, 12),
                    Err(ParseDecimalError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_decimal("19.999", 2),
            Err(ParseDecimalError::TooPrecise {
                scale: 3,
                max: 2,
                ..
            })
        ));
        assert!(matches!(
            parse_decimal("79228162514264337593543950336", 28),
            Err(ParseDecimalError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_decimal("0.00000000000000000000000000001", 40),
            Err(ParseDecimalError::OutOfRange { .. })
        ));
        assert!(parse_decimal("1.000000000000000000000000000000000000", 2).is_ok());
    }

    #[test]
    fn rounds_half_away_from_zero_once() {
        assert_eq!(round_major_to_minor(dec!(0.125), usd()).unwrap(), 13);
        assert_eq!(round_major_to_minor(dec!(-0.125), usd()).unwrap(), -13);
        assert_eq!(round_major_to_minor(dec!(0.124999), usd()).unwrap(), 12);
        let jpy = Currency::from_code("jpy").unwrap();
        assert_eq!(round_major_to_minor(dec!(2.5), jpy).unwrap(), 3);
        let kwd = Currency::from_code("kwd").unwrap();
        assert_eq!(round_major_to_minor(dec!(1.2345), kwd).unwrap(), 1235);
        assert!(round_major_to_minor(dec!(100000000000000000000), usd()).is_err());
        let r = round_line(dec!(12.3456), usd()).unwrap();
        assert_eq!(r.rounded_minor, 1235);
        assert_eq!(r.adjustment, dec!(0.0044));
    }

    #[test]
    fn serde_refuses_floats_and_accepts_strings_and_integers() {
        #[derive(serde::Deserialize)]
        struct P {
            #[serde(with = "serde_decimal")]
            v: Decimal,
            #[serde(with = "serde_decimal::option", default)]
            o: Option<Decimal>,
        }
        let p: P = serde_json::from_str(r#"{"v":"0.0015","o":null}"#).unwrap();
        assert_eq!((p.v, p.o), (dec!(0.0015), None));
        let p: P = serde_json::from_str(r#"{"v":1000,"o":"2"}"#).unwrap();
        assert_eq!((p.v, p.o), (dec!(1000), Some(dec!(2))));
        let p: P = serde_json::from_str(r#"{"v":1}"#).unwrap();
        assert_eq!(p.o, None);
        let err = serde_json::from_str::<P>(r#"{"v":0.1}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not floating-point"), "{err}");
        assert!(serde_json::from_str::<P>(r#"{"v":"1e5"}"#).is_err());
    }
}
