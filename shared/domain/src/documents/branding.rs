//! A tenant's branding: who the seller is on its documents and how they look. One per
//! tenant, created on first write; a tenant that never set it gets [`Branding::default`].

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::customers::account::{
    optional_text, present, validate_address_in, validate_email, Address,
};
use crate::documents::locale::Locale;
use crate::documents::logo::Logo;
use crate::kernel::error::{ErrorCode, ValidationError};

/// An sRGB colour written `#rrggbb` (stored lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Color {
    pub red: u8,
    pub green: u8,
    pub blue: u8,
}

impl Color {
    pub const fn rgb(red: u8, green: u8, blue: u8) -> Self {
        Self { red, green, blue }
    }

    pub fn parse(text: &str, param: &str) -> Result<Self, ValidationError> {
        let invalid = || {
            ValidationError::new(
                ErrorCode::InvalidColor,
                param,
                format!("`{text}` is not a colour of the form `#rrggbb`"),
            )
        };
        let hex = text.strip_prefix('#').ok_or_else(invalid)?;
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| invalid());
        Ok(Self::rgb(channel(0)?, channel(2)?, channel(4)?))
    }
}

impl TryFrom<String> for Color {
    type Error = ValidationError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text, "color")
    }
}

impl From<Color> for String {
    fn from(c: Color) -> String {
        format!("#{:02x}{:02x}{:02x}", c.red, c.green, c.blue)
    }
}

pub const MAX_TAX_IDS: usize = 5;
const MAX_TAX_ID_CHARS: usize = 40;
const MAX_FOOTER_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "legal_name": "Acme Cloud GmbH", "address": {"line1": "Unter den Linden 1", "city": "Berlin",
    "postal_code": "10117", "country": "DE"}, "tax_ids": ["DE136695976"],
    "support_email": "billing@acme.test", "primary_color": "#1f2937", "accent_color": "#2563eb",
    "footer": "Acme Cloud GmbH · HRB 12345 · Amtsgericht Berlin", "locale": "de-DE", "version": 2
}))]
pub struct Branding {
    /// The seller's legal name as printed on documents.
    pub legal_name: Option<String>,
    pub address: Option<Address>,
    /// The seller's tax ids for documents of invoices finalized before the tax settings had
    /// any (an invoice prints the ids it was finalized with).
    pub tax_ids: Vec<String>,
    pub support_email: Option<String>,
    /// Headings and rules.
    #[schema(value_type = String, example = "#1f2937", pattern = "^#[0-9a-fA-F]{6}$")]
    pub primary_color: Color,
    /// The amount due and the table header.
    #[schema(value_type = String, example = "#2563eb", pattern = "^#[0-9a-fA-F]{6}$")]
    pub accent_color: Color,
    /// Printed at the bottom of every page.
    pub footer: Option<String>,
    /// How dates and amounts are written.
    pub locale: Locale,
    /// Set by `PUT /v1/settings/branding/logo`; shown on the hosted invoice page.
    #[serde(default)]
    pub logo: Option<Logo>,
    /// 0 until the first write.
    pub version: u64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<Timestamp>,
}

impl Default for Branding {
    fn default() -> Self {
        Self {
            legal_name: None,
            address: None,
            tax_ids: Vec::new(),
            support_email: None,
            primary_color: Color::rgb(0x1f, 0x29, 0x37),
            accent_color: Color::rgb(0x25, 0x63, 0xeb),
            footer: None,
            locale: Locale::EnUs,
            logo: None,
            version: 0,
            updated_at: None,
        }
    }
}

/// A partial update: absent fields stay, `null` clears a clearable field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"legal_name": "Acme Cloud GmbH", "accent_color": "#0ea5e9", "footer": null}))]
pub struct BrandingPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub legal_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Address>)]
    pub address: Option<Option<Address>>,
    pub tax_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub support_email: Option<Option<String>>,
    #[schema(value_type = Option<String>)]
    pub primary_color: Option<String>,
    #[schema(value_type = Option<String>)]
    pub accent_color: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub footer: Option<Option<String>>,
    pub locale: Option<Locale>,
}

impl Branding {
    /// The branding after `patch`, validated, one version on.
    pub fn patched(&self, patch: BrandingPatch, now: Timestamp) -> Result<Self, ValidationError> {
        let mut next = self.clone();
        if let Some(name) = patch.legal_name {
            next.legal_name = optional_text(name, "legal_name", 200)?;
        }
        if let Some(address) = patch.address {
            next.address = address
                .map(|a| validate_address_in(a, "address"))
                .transpose()?;
        }
        if let Some(ids) = patch.tax_ids {
            next.tax_ids = validate_tax_ids(ids)?;
        }
        if let Some(email) = patch.support_email {
            next.support_email = match email.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(e) => Some(validate_email(e).map_err(|mut err| {
                    err.param = "support_email".into();
                    err
                })?),
            };
        }
        if let Some(c) = patch.primary_color {
            next.primary_color = Color::parse(c.trim(), "primary_color")?;
        }
        if let Some(c) = patch.accent_color {
            next.accent_color = Color::parse(c.trim(), "accent_color")?;
        }
        if let Some(footer) = patch.footer {
            next.footer = optional_text(footer, "footer", MAX_FOOTER_CHARS)?;
        }
        if let Some(locale) = patch.locale {
            next.locale = locale;
        }
        Ok(next.versioned(now))
    }

    /// The branding with `logo` (or none), one version on.
    pub fn with_logo(&self, logo: Option<Logo>, now: Timestamp) -> Self {
        Self {
            logo,
            ..self.clone()
        }
        .versioned(now)
    }

    fn versioned(mut self, now: Timestamp) -> Self {
        self.version += 1;
        self.updated_at = Some(now);
        self
    }
}

fn validate_tax_ids(ids: Vec<String>) -> Result<Vec<String>, ValidationError> {
    if ids.len() > MAX_TAX_IDS {
        return Err(ValidationError::new(
            ErrorCode::TooLong,
            "tax_ids",
            format!("at most {MAX_TAX_IDS} tax ids"),
        ));
    }
    let mut out = Vec::with_capacity(ids.len());
    for (i, id) in ids.into_iter().enumerate() {
        let param = format!("tax_ids[{i}]");
        let id = id.trim().to_owned();
        if id.is_empty()
            || id.chars().count() > MAX_TAX_ID_CHARS
            || id.chars().any(char::is_control)
        {
            return Err(ValidationError::new(
                ErrorCode::InvalidValue,
                param,
                format!("a tax id is 1 to {MAX_TAX_ID_CHARS} printable characters"),
            ));
        }
        out.push(id);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn patch(json: serde_json::Value) -> BrandingPatch {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_patch_sets_clears_and_versions() {
        let now = Timestamp::UNIX_EPOCH;
        let b = Branding::default()
            .patched(
                patch(serde_json::json!({
                    "legal_name": " Acme GmbH ", "primary_color": "#AABBCC",
                    "support_email": "help@acme.test", "footer": "Thanks", "locale": "de-DE",
                    "address": {"city": "Berlin", "country": "de"}, "tax_ids": ["DE136695976"]
                })),
                now,
            )
            .unwrap();
        assert_eq!(b.legal_name.as_deref(), Some("Acme GmbH"));
        assert_eq!(b.primary_color, Color::rgb(0xaa, 0xbb, 0xcc));
        assert_eq!(String::from(b.primary_color), "#aabbcc");
        assert_eq!(b.address.as_ref().unwrap().country.as_deref(), Some("DE"));
        assert_eq!((b.locale, b.version), (Locale::DeDe, 1));
        let cleared = b
            .patched(
                patch(serde_json::json!({"footer": null, "legal_name": null})),
                now,
            )
            .unwrap();
        assert_eq!(
            (cleared.footer, cleared.legal_name, cleared.version),
            (None, None, 2)
        );
        assert_eq!(cleared.support_email.as_deref(), Some("help@acme.test"));
    }

    #[test]
    fn bad_values_name_their_field() {
        let now = Timestamp::UNIX_EPOCH;
        let cases = [
            (
                serde_json::json!({"accent_color": "blue"}),
                ErrorCode::InvalidColor,
                "accent_color",
            ),
            (
                serde_json::json!({"primary_color": "#12345"}),
                ErrorCode::InvalidColor,
                "primary_color",
            ),
            (
                serde_json::json!({"support_email": "nope"}),
                ErrorCode::InvalidEmail,
                "support_email",
            ),
            (
                serde_json::json!({"address": {"country": "Germany"}}),
                ErrorCode::InvalidCountry,
                "address.country",
            ),
            (
                serde_json::json!({"tax_ids": ["ok", ""]}),
                ErrorCode::InvalidValue,
                "tax_ids[1]",
            ),
            (
                serde_json::json!({"footer": "x".repeat(501)}),
                ErrorCode::TooLong,
                "footer",
            ),
        ];
        for (json, code, param) in cases {
            let err = Branding::default().patched(patch(json), now).unwrap_err();
            assert_eq!((err.code, err.param.as_str()), (code, param));
        }
    }

    proptest! {
        #[test]
        fn colours_round_trip(red: u8, green: u8, blue: u8) {
            let c = Color::rgb(red, green, blue);
            prop_assert_eq!(Color::parse(&String::from(c), "c").unwrap(), c);
        }
    }
}
