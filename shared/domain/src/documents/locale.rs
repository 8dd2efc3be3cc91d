//! The locale of a document: how its dates and amounts are written. Labels stay English;
//! the locale decides the date order and the number punctuation a reader expects.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kernel::format::{format_styled, number_style, NumberStyle};
use crate::kernel::money::Money;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Locale {
    /// `Jan 5, 2026`, amounts in the currency's own style (`$1,234.56`, `€1,234.56`).
    #[default]
    #[serde(rename = "en-US")]
    EnUs,
    /// `5 Jan 2026`, amounts in the currency's own style.
    #[serde(rename = "en-GB")]
    EnGb,
    /// `05.01.2026`, `1.234,56 €`.
    #[serde(rename = "de-DE")]
    DeDe,
    /// `05/01/2026`, `1 234,56 €`.
    #[serde(rename = "fr-FR")]
    FrFr,
    /// `05/01/2026`, `1.234,56 €`.
    #[serde(rename = "es-ES")]
    EsEs,
    /// `05/01/2026`, `1.234,56 €`.
    #[serde(rename = "it-IT")]
    ItIt,
    /// `05-01-2026`, `1.234,56 €`.
    #[serde(rename = "nl-NL")]
    NlNl,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Locale {
    pub fn format_date(self, date: Date) -> String {
        let (y, m, d) = (date.year(), date.month(), date.day());
        let month = MONTHS[usize::try_from(m - 1).unwrap_or(0)];
        match self {
            Self::EnUs => format!("{month} {d}, {y}"),
            Self::EnGb => format!("{d} {month} {y}"),
            Self::DeDe => format!("{d:02}.{m:02}.{y}"),
            Self::FrFr | Self::EsEs | Self::ItIt => format!("{d:02}/{m:02}/{y}"),
            Self::NlNl => format!("{d:02}-{m:02}-{y}"),
        }
    }

    /// English locales keep the currency's customary style; the others use their own
    /// punctuation and put the symbol after the amount.
    pub fn format_money(self, m: Money) -> String {
        let own = |decimal_separator, group_separator| NumberStyle {
            decimal_separator,
            group_separator: Some(group_separator),
            indian_grouping: false,
        };
        match self {
            Self::EnUs | Self::EnGb => {
                format_styled(m, number_style(m.currency), m.currency.info().symbol_first)
            }
            Self::DeDe | Self::EsEs | Self::ItIt | Self::NlNl => {
                format_styled(m, own(',', '.'), false)
            }
            Self::FrFr => format_styled(m, own(',', '\u{a0}'), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::currency::Currency;

    fn money(minor: i64, code: &str) -> Money {
        Money::new(minor, Currency::from_code(code).unwrap())
    }

    #[test]
    fn dates_follow_the_locale() {
        let date = jiff::civil::date(2026, 1, 5);
        let written: Vec<String> = [
            Locale::EnUs,
            Locale::EnGb,
            Locale::DeDe,
            Locale::FrFr,
            Locale::NlNl,
        ]
        .iter()
        .map(|l| l.format_date(date))
        .collect();
        assert_eq!(
            written,
            [
                "Jan 5, 2026",
                "5 Jan 2026",
                "05.01.2026",
                "05/01/2026",
                "05-01-2026"
            ]
        );
    }

    #[test]
    fn amounts_follow_the_locale() {
        assert_eq!(Locale::EnUs.format_money(money(123456, "usd")), "$1,234.56");
        assert_eq!(Locale::EnGb.format_money(money(123456, "eur")), "€1,234.56");
        assert_eq!(
            Locale::DeDe.format_money(money(123456, "eur")),
            "1.234,56\u{a0}€"
        );
        assert_eq!(
            Locale::FrFr.format_money(money(-123456, "eur")),
            "-1\u{a0}234,56\u{a0}€"
        );
        assert_eq!(
            Locale::DeDe.format_money(money(1235, "jpy")),
            "1.235\u{a0}¥"
        );
    }
}
