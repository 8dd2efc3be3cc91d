//! Stripe Connect: a deployment holds the platform's Stripe keys (one per mode) and each
//! tenant may name the connected account (`acct_…`) its payments are made on. Requests for
//! that tenant carry `Stripe-Account: acct_…` ("direct charges": the customer, the card, the
//! charge and the refund live in the tenant's own Stripe account); a tenant without one
//! collects into the platform account itself.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kernel::error::{ErrorCode, ValidationError};

const PREFIX: &str = "acct_";
/// Stripe's account ids are `acct_` and 16 alphanumerics today; this leaves room to grow
/// while keeping the id well inside any key or header it is put in.
pub const MAX_STRIPE_ACCOUNT_BYTES: usize = 64;

/// A Stripe connected account id, checked: `acct_` then ASCII letters and digits, at most
/// [`MAX_STRIPE_ACCOUNT_BYTES`] bytes in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "acct_1Nv0FGQ9RKHgCVdK")]
pub struct StripeAccount(String);

impl StripeAccount {
    /// `param` names the field in the error.
    pub fn parse(raw: &str, param: &str) -> Result<Self, ValidationError> {
        let rest = raw.strip_prefix(PREFIX).unwrap_or_default();
        if raw.len() > MAX_STRIPE_ACCOUNT_BYTES
            || rest.is_empty()
            || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(ValidationError::new(
                ErrorCode::InvalidStripeAccount,
                param,
                format!(
                    "a Stripe connected account id is `acct_` followed by letters and digits, \
                     at most {MAX_STRIPE_ACCOUNT_BYTES} bytes (e.g. acct_1Nv0FGQ9RKHgCVdK)"
                ),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StripeAccount {
    type Error = ValidationError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw, "stripe_account")
    }
}

impl From<StripeAccount> for String {
    fn from(account: StripeAccount) -> Self {
        account.0
    }
}

impl fmt::Display for StripeAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_stripe_ids_and_refuses_the_rest() {
        assert!(StripeAccount::parse("acct_1Nv0FGQ9RKHgCVdK", "p").is_ok());
        let longest = format!("acct_{}", "a".repeat(MAX_STRIPE_ACCOUNT_BYTES - 5));
        assert!(StripeAccount::parse(&longest, "p").is_ok());
        for bad in [
            "",
            "acct_",
            "acct",
            "cus_123",
            "ACCT_123",
            "acct_12 3",
            "acct_12\n",
            "acct_1é",
            "acct_12-3",
            &format!("{longest}a"),
        ] {
            let err = StripeAccount::parse(bad, "stripe_account").unwrap_err();
            assert_eq!(err.code, "invalid_stripe_account", "{bad:?}");
            assert_eq!(err.param, "stripe_account");
        }
    }

    proptest! {
        /// Whatever is accepted is a valid header value within the byte bound.
        #[test]
        fn accepted_ids_are_bounded_ascii(raw in "\\PC{0,80}") {
            if let Ok(account) = StripeAccount::parse(&raw, "p") {
                prop_assert!(account.as_str().len() <= MAX_STRIPE_ACCOUNT_BYTES);
                prop_assert!(account.as_str().starts_with(PREFIX));
                prop_assert!(account.as_str().bytes().all(|b| b.is_ascii_graphic()));
            }
        }
    }
}
