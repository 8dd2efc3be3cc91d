//! Customer accounts (user story 1): who is billed, in which currency and time zone.

use crate::kernel::error::ErrorCode;
use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::kernel::currency::Currency;
use crate::kernel::error::{check_key_text, ValidationError, MAX_KEY_TEXT_BYTES};
use crate::kernel::ids::{AccountId, TestClockId};
use crate::kernel::metadata::{self, Metadata};
use crate::tax::rates::{invalid_vat_id, TaxExempt};
use crate::tax::vat_id::{self, VatIdStatus};

/// `warning` and `blocked` are set by dunning, never by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Warning,
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"line1": "Unter den Linden 1", "city": "Berlin", "postal_code": "10117", "country": "DE"}))]
pub struct Address {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "acct_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "email": "billing@acme.test", "name": "Acme GmbH",
    "currency": "eur", "timezone": "Europe/Berlin", "external_id": "user-4711",
    "billing_address": {"line1": "Unter den Linden 1", "city": "Berlin", "postal_code": "10117", "country": "DE"},
    "tax_exempt": "none", "vat_id": "DE136695976", "metadata": {"plan_hint": "pro"}, "status": "active",
    "created_at": "2026-11-22T10:00:00Z", "updated_at": "2026-11-22T10:00:00Z", "deleted_at": null,
    "purge_at": null, "purged_at": null, "version": 1
}))]
pub struct Account {
    #[schema(value_type = String)]
    pub id: AccountId,
    pub email: String,
    pub name: Option<String>,
    #[schema(value_type = String, example = "eur")]
    pub currency: Currency,
    /// IANA zone; decides where the account's billing periods start and end.
    pub timezone: String,
    /// The tenant's own id for this customer; unique per tenant.
    pub external_id: Option<String>,
    pub billing_address: Option<Address>,
    /// `none`, `exempt` (pays no tax) or `reverse` (accounts for the tax itself); accounts
    /// stored with the old boolean read `true` as `exempt`.
    pub tax_exempt: TaxExempt,
    /// A VAT id that passed its country's format and check digits, in compact form.
    pub vat_id: Option<String>,
    /// What VIES said of `vat_id` when it was set, if the tenant checks VAT ids online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_id_status: Option<VatIdStatus>,
    pub metadata: Metadata,
    pub status: AccountStatus,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deleted_at: Option<Timestamp>,
    /// A sandbox test clock the account lives on: its subscriptions run on the clock's time.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub test_clock: Option<TestClockId>,
    /// When a deleted account's personal data is due to be erased (see
    /// [`super::erasure`]); `null` once purged.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub purge_at: Option<Timestamp>,
    /// When its personal data was erased: the account is a tombstone since.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub purged_at: Option<Timestamp>,
    /// Incremented by every change; optimistic concurrency control.
    pub version: u64,
}

/// What a caller may give when creating an account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "email": "billing@acme.test", "name": "Acme GmbH", "currency": "eur", "timezone": "Europe/Berlin",
    "external_id": "user-4711", "vat_id": "DE136695976", "metadata": {"plan_hint": "pro"}
}))]
pub struct NewAccount {
    pub email: String,
    pub name: Option<String>,
    /// ISO 4217 code, e.g. `usd`.
    pub currency: String,
    /// IANA time zone; defaults to `UTC`.
    pub timezone: Option<String>,
    pub external_id: Option<String>,
    pub billing_address: Option<Address>,
    /// `none` (default), `exempt` or `reverse`; `true`/`false` are read as `exempt`/`none`.
    #[serde(default)]
    pub tax_exempt: TaxExempt,
    /// Checked for its country's format and check digits (`invalid_vat_id`).
    pub vat_id: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
    /// Sandbox only: the test clock the account lives on (`clock_…`).
    #[schema(value_type = Option<String>)]
    pub test_clock: Option<TestClockId>,
}

/// Who a hypothetical invoice (a preview without an account) is for, as far as its tax
/// depends on it: the same fields, checked the same way, as an account's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"billing_address": {"country": "FR"}, "vat_id": "FR23334175221"}))]
pub struct CustomerDetails {
    pub billing_address: Option<Address>,
    #[serde(default)]
    pub tax_exempt: TaxExempt,
    pub vat_id: Option<String>,
}

impl CustomerDetails {
    /// Checked like an account's fields; errors name them under `param`.
    pub fn validate(self, param: &str) -> Result<CustomerDetails, ValidationError> {
        let checked = || {
            Ok(CustomerDetails {
                billing_address: self.billing_address.map(validate_address).transpose()?,
                tax_exempt: self.tax_exempt,
                vat_id: validate_vat_id(self.vat_id)?,
            })
        };
        checked().map_err(|e: ValidationError| e.within(param))
    }
}

/// A partial update. For clearable fields, `Some(None)` (JSON `null`) clears and an absent
/// field leaves the value alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Acme AG", "vat_id": null, "metadata": {"plan_hint": ""}}))]
pub struct AccountPatch {
    pub email: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    pub currency: Option<String>,
    pub timezone: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub external_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Address>)]
    pub billing_address: Option<Option<Address>>,
    pub tax_exempt: Option<TaxExempt>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub vat_id: Option<Option<String>>,
    /// Merged like Stripe: an empty value removes the key.
    pub metadata: Option<Metadata>,
}

/// Distinguishes `"field": null` (`Some(None)`) from an absent field (`None`).
pub(crate) fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl Account {
    /// Validates a creation request and builds version 1 of the account.
    pub fn create(
        id: AccountId,
        input: NewAccount,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        let account = Account {
            id,
            email: validate_email(&input.email)?,
            name: optional_text(input.name, "name", 256)?,
            currency: validate_currency(&input.currency)?,
            timezone: validate_timezone(input.timezone.as_deref().unwrap_or("UTC"))?,
            external_id: validate_external_id(input.external_id)?,
            billing_address: input.billing_address.map(validate_address).transpose()?,
            tax_exempt: input.tax_exempt,
            vat_id: validate_vat_id(input.vat_id)?,
            vat_id_status: None,
            metadata: {
                metadata::validate(&input.metadata)?;
                input.metadata
            },
            status: AccountStatus::Active,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            test_clock: input.test_clock,
            purge_at: None,
            purged_at: None,
            version: 1,
        };
        Ok(account)
    }

    /// Applies a patch, returning the next version. The caller stores it only if the
    /// stored version still equals `self.version`.
    pub fn apply(&self, patch: AccountPatch, now: Timestamp) -> Result<Self, AccountChangeError> {
        if self.deleted_at.is_some() {
            return Err(AccountChangeError::Deleted);
        }
        let mut next = self.clone();
        if let Some(email) = patch.email {
            next.email = validate_email(&email)?;
        }
        if let Some(name) = patch.name {
            next.name = optional_text(name, "name", 256)?;
        }
        if let Some(currency) = patch.currency {
            next.currency = validate_currency(&currency)?;
        }
        if let Some(tz) = patch.timezone {
            next.timezone = validate_timezone(&tz)?;
        }
        if let Some(external_id) = patch.external_id {
            next.external_id = validate_external_id(external_id)?;
        }
        if let Some(address) = patch.billing_address {
            next.billing_address = address.map(validate_address).transpose()?;
        }
        if let Some(tax_exempt) = patch.tax_exempt {
            next.tax_exempt = tax_exempt;
        }
        if let Some(vat_id) = patch.vat_id {
            next.vat_id = validate_vat_id(vat_id)?;
            if next.vat_id != self.vat_id {
                next.vat_id_status = None;
            }
        }
        if let Some(changes) = patch.metadata {
            next.metadata = metadata::merge(&self.metadata, &changes)?;
        }
        next.updated_at = now;
        next.version = self.version + 1;
        Ok(next)
    }

    /// Soft delete: the account stays readable (for invoices that name it) but is closed
    /// to changes; its personal data is purged [`super::erasure::PURGE_AFTER`] later.
    pub fn delete(&self, now: Timestamp) -> Result<Self, AccountChangeError> {
        if self.deleted_at.is_some() {
            return Err(AccountChangeError::Deleted);
        }
        let mut next = self.clone();
        next.deleted_at = Some(now);
        next.purge_at = Some(crate::kernel::time::later(now, super::erasure::PURGE_AFTER));
        next.updated_at = now;
        next.version = self.version + 1;
        Ok(next)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountChangeError {
    #[error("the account is deleted and can no longer change")]
    Deleted,
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

pub fn validate_email(email: &str) -> Result<String, ValidationError> {
    let email = email.trim();
    let invalid = || {
        ValidationError::new(
            ErrorCode::InvalidEmail,
            "email",
            format!("`{email}` is not a valid email address"),
        )
    };
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    if local.is_empty()
        || local.len() > 64
        || local.contains('@')
        || !domain.contains('.')
        || !labels_ok
    {
        return Err(invalid());
    }
    Ok(email.to_owned())
}

pub fn validate_currency(code: &str) -> Result<Currency, ValidationError> {
    Currency::from_code(code)
        .map_err(|e| ValidationError::new(ErrorCode::InvalidCurrency, "currency", e.to_string()))
}

pub fn validate_timezone(name: &str) -> Result<String, ValidationError> {
    crate::kernel::time_zones::get(name)
        .map(|_| name.to_owned())
        .ok_or_else(|| {
            ValidationError::new(
                ErrorCode::InvalidTimezone,
                "timezone",
                format!("`{name}` is not an IANA time zone such as `Europe/Berlin` or `UTC`"),
            )
        })
}

fn validate_external_id(external_id: Option<String>) -> Result<Option<String>, ValidationError> {
    // Bounded in bytes: it is part of the key that keeps it unique.
    let value = optional_text(external_id, "external_id", MAX_KEY_TEXT_BYTES)?;
    if let Some(v) = &value {
        check_key_text(v, "external_id")?;
    }
    if value
        .as_deref()
        .is_some_and(|v| v.chars().any(char::is_control))
    {
        return Err(ValidationError::new(
            ErrorCode::InvalidExternalId,
            "external_id",
            "external_id may not contain control characters",
        ));
    }
    Ok(value)
}

fn validate_vat_id(vat_id: Option<String>) -> Result<Option<String>, ValidationError> {
    optional_text(vat_id, "vat_id", 32)?
        .map(|v| {
            vat_id::parse(&v)
                .map(|id| id.compact)
                .map_err(|e| invalid_vat_id("vat_id", e))
        })
        .transpose()
}

fn validate_address(address: Address) -> Result<Address, ValidationError> {
    validate_address_in(address, "billing_address")
}

/// Trims and bounds each field, upper-cases the country; errors name `parent.field`.
pub(crate) fn validate_address_in(
    address: Address,
    parent: &str,
) -> Result<Address, ValidationError> {
    let field = |value: Option<String>, name: &'static str| {
        optional_text(value, name, 200).map_err(|e| e.within(parent))
    };
    let country = match address.country {
        None => None,
        Some(c) => {
            let c = c.trim().to_ascii_uppercase();
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(ValidationError::new(
                    ErrorCode::InvalidCountry,
                    format!("{parent}.country"),
                    "country must be a two-letter ISO 3166-1 code such as `DE`",
                ));
            }
            Some(c)
        }
    };
    Ok(Address {
        line1: field(address.line1, "line1")?,
        line2: field(address.line2, "line2")?,
        city: field(address.city, "city")?,
        state: field(address.state, "state")?,
        postal_code: field(address.postal_code, "postal_code")?,
        country,
    })
}

/// Trims; empty means absent; longer than `max` characters is an error naming `param`.
pub(crate) fn optional_text(
    value: Option<String>,
    param: &'static str,
    max: usize,
) -> Result<Option<String>, ValidationError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() <= max => Ok(Some(v.to_owned())),
        Some(_) => Err(ValidationError::new(
            ErrorCode::TooLong,
            param,
            format!("{param} must be at most {max} characters"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    fn id() -> AccountId {
        AccountId::from_ulid(Ulid::from_parts(1, 1))
    }

    fn new(email: &str) -> NewAccount {
        NewAccount {
            email: email.into(),
            currency: "eur".into(),
            ..Default::default()
        }
    }

    #[test]
    fn create_validates_and_defaults() {
        let a = Account::create(id(), new("ada@example.com"), Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(a.timezone, "UTC");
        assert_eq!(a.currency.code(), "EUR");
        assert_eq!(a.version, 1);
        assert_eq!(a.status, AccountStatus::Active);
    }

    #[test]
    fn bad_fields_name_their_param() {
        let cases: Vec<(NewAccount, &str)> = vec![
            (new("not-an-email"), "email"),
            (new("a@b"), "email"),
            (new("a b@example.com"), "email"),
            (
                NewAccount {
                    currency: "xyz".into(),
                    ..new("a@example.com")
                },
                "currency",
            ),
            (
                NewAccount {
                    timezone: Some("Mars/Olympus".into()),
                    ..new("a@example.com")
                },
                "timezone",
            ),
            (
                NewAccount {
                    billing_address: Some(Address {
                        line1: None,
                        line2: None,
                        city: None,
                        state: None,
                        postal_code: None,
                        country: Some("Germany".into()),
                    }),
                    ..new("a@example.com")
                },
                "billing_address.country",
            ),
            (
                NewAccount {
                    vat_id: Some("DE<script>".into()),
                    ..new("a@example.com")
                },
                "vat_id",
            ),
        ];
        for (input, param) in cases {
            let err = Account::create(id(), input, Timestamp::UNIX_EPOCH).unwrap_err();
            assert_eq!(err.param, param);
        }
    }

    #[test]
    fn vat_ids_are_checked_and_kept_compact() {
        let with = |vat: &str| NewAccount {
            vat_id: Some(vat.into()),
            ..new("a@example.com")
        };
        let a = Account::create(id(), with("fr 23 334 175 221"), Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(a.vat_id.as_deref(), Some("FR23334175221"));
        let err = Account::create(id(), with("FR24334175221"), Timestamp::UNIX_EPOCH).unwrap_err();
        assert_eq!(
            (err.code, err.param.as_str()),
            (ErrorCode::InvalidVatId, "vat_id")
        );
        let patch: AccountPatch = serde_json::from_str(r#"{"vat_id": "DE136695978"}"#).unwrap();
        let err = a.apply(patch, Timestamp::UNIX_EPOCH).unwrap_err();
        assert!(matches!(err, AccountChangeError::Invalid(e) if e.code == ErrorCode::InvalidVatId));
    }

    #[test]
    fn patch_distinguishes_null_from_absent_and_bumps_the_version() {
        let mut input = new("ada@example.com");
        input.name = Some("Ada".into());
        input.external_id = Some("u-1".into());
        let a = Account::create(id(), input, Timestamp::UNIX_EPOCH).unwrap();
        let patch: AccountPatch =
            serde_json::from_str(r#"{"name": null, "timezone": "Asia/Tokyo"}"#).unwrap();
        let b = a.apply(patch, Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(b.name, None);
        assert_eq!(b.external_id.as_deref(), Some("u-1"));
        assert_eq!(b.timezone, "Asia/Tokyo");
        assert_eq!(b.version, 2);
    }

    #[test]
    fn deleted_accounts_refuse_changes() {
        let a = Account::create(id(), new("ada@example.com"), Timestamp::UNIX_EPOCH).unwrap();
        let gone = a.delete(Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(
            gone.delete(Timestamp::UNIX_EPOCH),
            Err(AccountChangeError::Deleted)
        );
        assert_eq!(
            gone.apply(AccountPatch::default(), Timestamp::UNIX_EPOCH),
            Err(AccountChangeError::Deleted)
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<NewAccount>(
            r#"{"email":"a@example.com","currency":"usd","colour":"red"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"));
    }
}
