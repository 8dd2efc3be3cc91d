//! ISO 4217 currencies and their minor-unit exponents.
//!
//! The table is the single place that says how many decimals a currency has: USD has 2
//! (cents), JPY 0, KWD 3 (fils). Money is always held in minor units of its currency.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Static facts about one ISO 4217 currency.
#[derive(Debug, PartialEq, Eq)]
pub struct CurrencyInfo {
    /// Upper-case alphabetic ISO code, e.g. `USD`.
    pub code: &'static str,
    /// Number of decimals in the minor unit (ISO 4217 "E" column).
    pub exponent: u8,
    /// Symbol for human-readable formatting.
    pub symbol: &'static str,
    /// Whether the symbol goes before the amount (`$1.00`) or after it (`1,00 kr`).
    pub symbol_first: bool,
    pub name: &'static str,
}

macro_rules! table {
    ($( $code:literal, $exp:literal, $sym:literal, $first:literal, $name:literal; )*) => {
        const CURRENCIES: &[CurrencyInfo] = &[
            $( CurrencyInfo { code: $code, exponent: $exp, symbol: $sym, symbol_first: $first, name: $name }, )*
        ];
    };
}

table! {
    "AED", 2, "AED ", true, "UAE Dirham";
    "ARS", 2, "$", true, "Argentine Peso";
    "AUD", 2, "A$", true, "Australian Dollar";
    "BGN", 2, " лв", false, "Bulgarian Lev";
    "BHD", 3, "BD ", true, "Bahraini Dinar";
    "BRL", 2, "R$", true, "Brazilian Real";
    "CAD", 2, "CA$", true, "Canadian Dollar";
    "CHF", 2, "CHF ", true, "Swiss Franc";
    "CLP", 0, "CLP$", true, "Chilean Peso";
    "CNY", 2, "CN¥", true, "Yuan Renminbi";
    "COP", 2, "COL$", true, "Colombian Peso";
    "CZK", 2, " Kč", false, "Czech Koruna";
    "DKK", 2, " kr.", false, "Danish Krone";
    "EGP", 2, "E£", true, "Egyptian Pound";
    "EUR", 2, "€", true, "Euro";
    "GBP", 2, "£", true, "Pound Sterling";
    "HKD", 2, "HK$", true, "Hong Kong Dollar";
    "HUF", 2, " Ft", false, "Forint";
    "IDR", 2, "Rp", true, "Rupiah";
    "ILS", 2, "₪", true, "New Israeli Sheqel";
    "INR", 2, "₹", true, "Indian Rupee";
    "IQD", 3, "IQD ", true, "Iraqi Dinar";
    "ISK", 0, " kr", false, "Iceland Krona";
    "JOD", 3, "JD ", true, "Jordanian Dinar";
    "JPY", 0, "¥", true, "Yen";
    "KES", 2, "KSh", true, "Kenyan Shilling";
    "KRW", 0, "₩", true, "Won";
    "KWD", 3, "KD ", true, "Kuwaiti Dinar";
    "LYD", 3, "LD ", true, "Libyan Dinar";
    "MXN", 2, "MX$", true, "Mexican Peso";
    "MYR", 2, "RM", true, "Malaysian Ringgit";
    "NGN", 2, "₦", true, "Naira";
    "NOK", 2, " kr", false, "Norwegian Krone";
    "NZD", 2, "NZ$", true, "New Zealand Dollar";
    "OMR", 3, "OMR ", true, "Rial Omani";
    "PEN", 2, "S/", true, "Sol";
    "PHP", 2, "₱", true, "Philippine Peso";
    "PLN", 2, " zł", false, "Zloty";
    "PYG", 0, "₲", true, "Guarani";
    "RON", 2, " lei", false, "Romanian Leu";
    "RWF", 0, "RF ", true, "Rwanda Franc";
    "SAR", 2, "SAR ", true, "Saudi Riyal";
    "SEK", 2, " kr", false, "Swedish Krona";
    "SGD", 2, "S$", true, "Singapore Dollar";
    "THB", 2, "฿", true, "Baht";
    "TND", 3, "DT ", true, "Tunisian Dinar";
    "TRY", 2, "₺", true, "Turkish Lira";
    "TWD", 2, "NT$", true, "New Taiwan Dollar";
    "UAH", 2, "₴", true, "Hryvnia";
    "UGX", 0, "USh", true, "Uganda Shilling";
    "USD", 2, "$", true, "US Dollar";
    "VND", 0, "₫", false, "Dong";
    "XAF", 0, "FCFA ", true, "CFA Franc BEAC";
    "XOF", 0, "CFA ", true, "CFA Franc BCEAO";
    "ZAR", 2, "R", true, "Rand";
}

/// An ISO 4217 currency known to this platform. Cheap to copy; compares by code.
#[derive(Clone, Copy)]
pub struct Currency(&'static CurrencyInfo);

/// The code is not an ISO 4217 currency this platform supports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown currency `{0}`: expected an ISO 4217 code such as usd, eur or jpy")]
pub struct UnknownCurrency(pub String);

impl Currency {
    /// Looks a code up case-insensitively (`usd`, `USD`).
    pub fn from_code(code: &str) -> Result<Self, UnknownCurrency> {
        let upper = code.trim().to_ascii_uppercase();
        CURRENCIES
            .binary_search_by(|c| c.code.cmp(upper.as_str()))
            .map(|i| Currency(&CURRENCIES[i]))
            .map_err(|_| UnknownCurrency(code.to_owned()))
    }

    pub fn code(self) -> &'static str {
        self.0.code
    }

    /// Lower-case code, the form the API speaks (`"currency": "usd"`).
    pub fn api_code(self) -> String {
        self.0.code.to_ascii_lowercase()
    }

    pub fn exponent(self) -> u8 {
        self.0.exponent
    }

    pub fn info(self) -> &'static CurrencyInfo {
        self.0
    }

    /// Every supported currency, sorted by code.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().map(Currency)
    }
}

impl PartialEq for Currency {
    fn eq(&self, other: &Self) -> bool {
        self.0.code == other.0.code
    }
}
impl Eq for Currency {}

impl std::hash::Hash for Currency {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.code.hash(state)
    }
}

impl PartialOrd for Currency {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Currency {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.code.cmp(other.0.code)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.code)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.code)
    }
}

impl std::str::FromStr for Currency {
    type Err = UnknownCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::from_code(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.api_code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::from_code(&code).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_large_enough() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].code < w[1].code));
        assert!(CURRENCIES.len() >= 30);
    }

    #[test]
    fn exponents_follow_iso_4217() {
        for (code, exp) in [
            ("usd", 2),
            ("EUR", 2),
            ("JPY", 0),
            ("KRW", 0),
            ("VND", 0),
            ("CLP", 0),
            ("KWD", 3),
            ("BHD", 3),
            ("JOD", 3),
            ("OMR", 3),
            ("TND", 3),
        ] {
            assert_eq!(Currency::from_code(code).unwrap().exponent(), exp, "{code}");
        }
    }

    #[test]
    fn unknown_codes_are_rejected() {
        for code in ["", "US", "USDX", "XXX", "dollars"] {
            assert!(Currency::from_code(code).is_err(), "{code}");
        }
    }

    #[test]
    fn serde_speaks_lower_case_codes() {
        let c: Currency = serde_json::from_str("\"Jpy\"").unwrap();
        assert_eq!(c.code(), "JPY");
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"jpy\"");
        assert!(serde_json::from_str::<Currency>("\"zzz\"").is_err());
    }
}
