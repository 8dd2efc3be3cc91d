//! Money: an integer number of minor units of one currency.
//!
//! `Money { minor: 1999, currency: USD }` is $19.99. Every operation is checked: overflow and
//! currency mixing are errors, never panics or silent wraps. [`Money::allocate`] and
//! [`Money::split`] divide an amount without losing or inventing a minor unit (largest
//! remainder method).
//!
//! JSON form (what the API speaks, like Stripe): `{"amount": 1999, "currency": "usd"}`.
//! Machine text form ([`Money::to_machine_string`] / [`Money::parse`]): `"19.99"` with exactly
//! the currency's decimals; `Money::parse(&m.to_machine_string(), m.currency) == Ok(m)` for
//! every `m`.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::kernel::currency::Currency;
use crate::kernel::decimal::{self, ParseDecimalError};

/// An amount of money in minor units (cents, yen, fils). Any `i64` is a valid amount.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

/// Why a money operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount overflow in {op}: the result does not fit in 64-bit minor units")]
    Overflow { op: &'static str },
    #[error("currency mismatch: cannot combine {left} with {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("cannot allocate: {0}")]
    Allocation(&'static str),
    #[error("invalid amount: {0}")]
    Parse(#[from] ParseDecimalError),
    #[error("amount {amount} has more decimals than {currency} allows ({exponent})")]
    NotRepresentable {
        amount: String,
        currency: Currency,
        exponent: u8,
    },
}

impl Money {
    pub const fn new(minor: i64, currency: Currency) -> Self {
        Money { minor, currency }
    }

    pub const fn zero(currency: Currency) -> Self {
        Money { minor: 0, currency }
    }

    pub fn is_zero(self) -> bool {
        self.minor == 0
    }

    pub fn is_negative(self) -> bool {
        self.minor < 0
    }

    pub fn is_positive(self) -> bool {
        self.minor > 0
    }

    /// The exact amount in major units (`1999 USD → 19.99`).
    pub fn to_decimal(self) -> Decimal {
        decimal::minor_to_major(self.minor, self.currency)
    }

    /// Rounds a major-unit decimal to money with the one rounding rule (half away from zero).
    pub fn from_decimal_rounded(major: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        decimal::round_major_to_minor(major, currency)
            .map(|minor| Money { minor, currency })
            .map_err(|_| MoneyError::Overflow { op: "rounding" })
    }

    /// Converts a major-unit decimal that must already be a whole number of minor units.
    pub fn from_decimal_exact(major: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if decimal::significant_scale(major) > u32::from(currency.exponent()) {
            return Err(MoneyError::NotRepresentable {
                amount: decimal::to_canonical_string(major),
                currency,
                exponent: currency.exponent(),
            });
        }
        Self::from_decimal_rounded(major, currency)
    }

    /// Parses the machine form (`"19.99"`, `"-5"`, `"1234.500"`): at most the currency's
    /// decimals, no symbols or separators. `"19.999"` in USD is an error, not a rounding.
    pub fn parse(input: &str, currency: Currency) -> Result<Self, MoneyError> {
        let d = decimal::parse_decimal(input, u32::from(currency.exponent()))?;
        Self::from_decimal_exact(d, currency)
    }

    /// The machine form: exactly the currency's decimals, `.` as separator, no grouping.
    pub fn to_machine_string(self) -> String {
        let exp = u32::from(self.currency.exponent());
        let abs = self.minor.unsigned_abs();
        let sign = if self.minor < 0 { "-" } else { "" };
        if exp == 0 {
            return format!("{sign}{abs}");
        }
        let div = 10u64.pow(exp);
        format!(
            "{sign}{}.{:0width$}",
            abs / div,
            abs % div,
            width = exp as usize
        )
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.minor
            .checked_add(other.minor)
            .map(|minor| Money {
                minor,
                currency: self.currency,
            })
            .ok_or(MoneyError::Overflow { op: "add" })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.minor
            .checked_sub(other.minor)
            .map(|minor| Money {
                minor,
                currency: self.currency,
            })
            .ok_or(MoneyError::Overflow { op: "subtract" })
    }

    pub fn checked_neg(self) -> Result<Money, MoneyError> {
        self.minor
            .checked_neg()
            .map(|minor| Money {
                minor,
                currency: self.currency,
            })
            .ok_or(MoneyError::Overflow { op: "negate" })
    }

    pub fn checked_abs(self) -> Result<Money, MoneyError> {
        self.minor
            .checked_abs()
            .map(|minor| Money {
                minor,
                currency: self.currency,
            })
            .ok_or(MoneyError::Overflow { op: "abs" })
    }

    pub fn checked_mul(self, factor: i64) -> Result<Money, MoneyError> {
        self.minor
            .checked_mul(factor)
            .map(|minor| Money {
                minor,
                currency: self.currency,
            })
            .ok_or(MoneyError::Overflow { op: "multiply" })
    }

    /// Multiplies by a decimal (a quantity or rate) and rounds once with the one rule.
    pub fn mul_decimal_rounded(self, factor: Decimal) -> Result<Money, MoneyError> {
        let exact = self
            .to_decimal()
            .checked_mul(factor)
            .ok_or(MoneyError::Overflow { op: "multiply" })?;
        Money::from_decimal_rounded(exact, self.currency)
    }

    /// Sums amounts of one currency; an empty iterator sums to zero in `currency`.
    pub fn sum<I: IntoIterator<Item = Money>>(
        currency: Currency,
        items: I,
    ) -> Result<Money, MoneyError> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
    }

    pub fn min(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Ok(if other.minor < self.minor {
            other
        } else {
            self
        })
    }

    pub fn max(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Ok(if other.minor > self.minor {
            other
        } else {
            self
        })
    }

    /// Splits the amount in proportion to `ratios` (largest remainder method): the parts always
    /// sum to exactly `self`; leftover minor units go to the parts with the largest remainders,
    /// earlier parts first on ties. Negative amounts are split like their absolute value and
    /// negated. Errors when `ratios` is empty or all zero.
    pub fn allocate(self, ratios: &[u64]) -> Result<Vec<Money>, MoneyError> {
        let shares = allocate_minor(self.minor, ratios)?;
        Ok(shares
            .into_iter()
            .map(|minor| Money {
                minor,
                currency: self.currency,
            })
            .collect())
    }

    /// Splits into `n` parts that differ by at most one minor unit (`$10.00 / 3 = 3.34, 3.33, 3.33`).
    pub fn split(self, n: usize) -> Result<Vec<Money>, MoneyError> {
        if n == 0 {
            return Err(MoneyError::Allocation("cannot split into zero parts"));
        }
        let ratios = vec![1u64; n];
        self.allocate(&ratios)
    }
}

/// Largest-remainder allocation of `total` minor units by `ratios`.
pub(crate) fn allocate_minor(total: i64, ratios: &[u64]) -> Result<Vec<i64>, MoneyError> {
    if ratios.is_empty() {
        return Err(MoneyError::Allocation("no ratios given"));
    }
    let sum: u128 = ratios.iter().map(|&r| u128::from(r)).sum();
    if sum == 0 {
        return Err(MoneyError::Allocation("all ratios are zero"));
    }
    let abs = u128::from(total.unsigned_abs());
    let mut shares: Vec<u128> = Vec::with_capacity(ratios.len());
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(ratios.len());
    let mut allocated: u128 = 0;
    for (i, &r) in ratios.iter().enumerate() {
        // abs < 2^64 and r < 2^64, so the product fits in u128.
        let p = abs * u128::from(r);
        let share = p / sum;
        allocated += share;
        shares.push(share);
        remainders.push((p % sum, i));
    }
    let mut leftover = abs - allocated; // < ratios.len()
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in &remainders {
        if leftover == 0 {
            break;
        }
        shares[i] += 1;
        leftover -= 1;
    }
    let negative = total < 0;
    shares
        .into_iter()
        .map(|s| {
            // Every share is at most |total| ≤ 2^63, so it fits in i128; negating is safe.
            let v = if negative { -(s as i128) } else { s as i128 };
            i64::try_from(v).map_err(|_| MoneyError::Overflow { op: "allocate" })
        })
        .collect()
}

/// An amount on a document (invoice, credit note, payment) in the minor units of the
/// currency the document names once. It serialises as the bare integer the API speaks, and
/// has no `+` or `-`: every sum or difference is checked or saturating by name. Document
/// schemas show it as `#[schema(value_type = i64)]`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MinorUnits(i64);

impl MinorUnits {
    pub const ZERO: Self = Self(0);

    pub const fn new(minor: i64) -> Self {
        Self(minor)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self)
    }

    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    pub fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn of(self, currency: Currency) -> Money {
        Money::new(self.0, currency)
    }
}

impl PartialEq<i64> for MinorUnits {
    fn eq(&self, other: &i64) -> bool {
        self.0 == *other
    }
}

impl From<i64> for MinorUnits {
    fn from(minor: i64) -> Self {
        Self(minor)
    }
}

impl fmt::Display for MinorUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_machine_string(), self.currency.code())
    }
}

/// Display is the human form (`$1,234.56`); see [`crate::kernel::format`].
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::kernel::format::format_human(*self))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyRepr {
    amount: i64,
    currency: Currency,
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MoneyRepr {
            amount: self.minor,
            currency: self.currency,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = MoneyRepr::deserialize(d)?;
        Ok(Money {
            minor: r.amount,
            currency: r.currency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn c(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    #[test]
    fn checked_arithmetic() {
        let a = Money::new(1999, c("usd"));
        assert_eq!(a.checked_add(Money::new(1, c("usd"))).unwrap().minor, 2000);
        assert_eq!(a.checked_sub(Money::new(2000, c("usd"))).unwrap().minor, -1);
        assert!(matches!(
            a.checked_add(Money::new(1, c("eur"))),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        assert!(Money::new(i64::MAX, c("usd"))
            .checked_add(Money::new(1, c("usd")))
            .is_err());
        assert!(Money::new(i64::MIN, c("usd")).checked_neg().is_err());
        assert!(Money::new(i64::MAX, c("usd")).checked_mul(2).is_err());
        assert_eq!(a.checked_mul(3).unwrap().minor, 5997);
        assert_eq!(a.mul_decimal_rounded(dec!(0.5)).unwrap().minor, 1000); // 999.5 → 1000
        assert_eq!(Money::sum(c("usd"), [a, a]).unwrap().minor, 3998);
    }

    #[test]
    fn split_and_allocate_lose_nothing() {
        let ten = Money::new(1000, c("usd"));
        let parts: Vec<i64> = ten.split(3).unwrap().iter().map(|m| m.minor).collect();
        assert_eq!(parts, vec![334, 333, 333]);
        let parts: Vec<i64> = Money::new(-1000, c("usd"))
            .split(3)
            .unwrap()
            .iter()
            .map(|m| m.minor)
            .collect();
        assert_eq!(parts, vec![-334, -333, -333]);
        // 70/20/10 of $0.05: exact shares 3.5, 1.0, 0.5 → 4, 1, 0 (largest remainder, then order).
        let parts: Vec<i64> = Money::new(5, c("usd"))
            .allocate(&[70, 20, 10])
            .unwrap()
            .iter()
            .map(|m| m.minor)
            .collect();
        assert_eq!(parts, vec![4, 1, 0]);
        assert!(ten.allocate(&[]).is_err());
        assert!(ten.allocate(&[0, 0]).is_err());
        assert!(ten.split(0).is_err());
        let parts = Money::new(i64::MIN, c("usd"))
            .allocate(&[u64::MAX, 1])
            .unwrap();
        assert_eq!(
            parts.iter().map(|m| i128::from(m.minor)).sum::<i128>(),
            i128::from(i64::MIN)
        );
    }

    #[test]
    fn machine_form_round_trips() {
        for (minor, code, text) in [
            (1999, "usd", "19.99"),
            (-5, "usd", "-0.05"),
            (1234, "jpy", "1234"),
            (1234, "kwd", "1.234"),
            (i64::MIN, "usd", "-92233720368547758.08"),
        ] {
            let m = Money::new(minor, c(code));
            assert_eq!(m.to_machine_string(), text);
            assert_eq!(Money::parse(text, c(code)).unwrap(), m);
        }
        assert!(Money::parse("19.999", c("usd")).is_err());
        assert!(Money::parse("1.5", c("jpy")).is_err());
        assert!(Money::parse("$19.99", c("usd")).is_err());
        assert!(Money::parse("92233720368547758.08", c("usd")).is_err());
        assert_eq!(Money::parse("19.990", c("usd")).unwrap().minor, 1999);
    }

    #[test]
    fn serde_is_amount_and_currency() {
        let m = Money::new(1999, c("usd"));
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"amount":1999,"currency":"usd"}"#
        );
        let back: Money = serde_json::from_str(r#"{"amount":1999,"currency":"USD"}"#).unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<Money>(r#"{"amount":19.99,"currency":"usd"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":1,"currency":"usd","x":1}"#).is_err());
    }
}
