//! An account's payment methods: its gateway customer, the cards attached to it and which
//! one is charged. Only what identifies a card to a person is kept (brand, last four
//! digits, expiry, country); the number stays with the gateway.
//!
//! Rules: the first card becomes the default; removing the default makes the newest
//! remaining card the default, so an account with cards always has one to charge; an
//! account keeps at most [`MAX_PAYMENT_METHODS`].

use crate::kernel::error::ErrorCode;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kernel::error::ValidationError;
use crate::kernel::ids::AccountId;

pub const MAX_PAYMENT_METHODS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "pm_1Q0PsIJvEtkwdCNYMSaVuRz6", "object": "payment_method", "brand": "visa", "last4": "4242",
    "exp_month": 12, "exp_year": 2034, "country": "US", "default": true
}))]
pub struct PaymentMethod {
    /// The gateway's id (`pm_…`).
    pub id: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: u8,
    pub exp_year: u16,
    pub country: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// What the gateway knows of an account: its customer and its cards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentProfile {
    pub account_id: AccountId,
    /// `stripe` or `sandbox`: the gateway the customer and cards live in.
    pub gateway: String,
    pub customer: Option<String>,
    /// Oldest first.
    pub methods: Vec<PaymentMethod>,
    pub default_method: Option<String>,
    /// 0 until first stored.
    pub version: u64,
}

impl PaymentProfile {
    pub fn new(account_id: AccountId, gateway: &str) -> Self {
        Self {
            account_id,
            gateway: gateway.to_owned(),
            customer: None,
            methods: Vec::new(),
            default_method: None,
            version: 0,
        }
    }

    /// A change; the version is the store's business (it writes `version + 1` over
    /// `version`), so several changes can be combined into one write.
    fn changed(&self) -> Self {
        self.clone()
    }

    /// This profile as the next version of `stored` (the version 0 of a new one).
    pub fn after(mut self, stored_version: u64) -> Self {
        self.version = stored_version + 1;
        self
    }

    pub fn with_customer(&self, customer: String) -> Self {
        let mut next = self.changed();
        next.customer = Some(customer);
        next
    }

    /// Adds a card (again: an attached card is not listed twice); the first one, or any
    /// with `make_default`, becomes the default.
    pub fn add(&self, method: PaymentMethod, make_default: bool) -> Result<Self, ValidationError> {
        let known = self.methods.iter().any(|m| m.id == method.id);
        if !known && self.methods.len() >= MAX_PAYMENT_METHODS {
            return Err(ValidationError::new(
                ErrorCode::TooManyPaymentMethods,
                "payment_method",
                format!("an account keeps at most {MAX_PAYMENT_METHODS} payment methods; remove one first"),
            ));
        }
        let mut next = self.changed();
        if !known {
            next.methods.push(method.clone());
        }
        if make_default || next.default_method.is_none() {
            next.default_method = Some(method.id);
        }
        Ok(next)
    }

    pub fn get(&self, id: &str) -> Option<&PaymentMethod> {
        self.methods.iter().find(|m| m.id == id)
    }

    pub fn set_default(&self, id: &str) -> Option<Self> {
        self.get(id)?;
        let mut next = self.changed();
        next.default_method = Some(id.to_owned());
        Some(next)
    }

    /// Removes a card; `None` when it is not there.
    pub fn remove(&self, id: &str) -> Option<Self> {
        self.get(id)?;
        let mut next = self.changed();
        next.methods.retain(|m| m.id != id);
        if next.default_method.as_deref() == Some(id) {
            next.default_method = next.methods.last().map(|m| m.id.clone());
        }
        Some(next)
    }

    /// The card to charge.
    pub fn default(&self) -> Option<&PaymentMethod> {
        self.get(self.default_method.as_deref()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: &str) -> PaymentMethod {
        PaymentMethod {
            id: id.into(),
            brand: "visa".into(),
            last4: "4242".into(),
            exp_month: 12,
            exp_year: 2034,
            country: Some("US".into()),
            created_at: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_first_card_is_the_default_and_removing_it_falls_back_to_the_newest() {
        let account = AccountId::from_ulid(ulid::Ulid::from_parts(1, 1));
        let profile = PaymentProfile::new(account, "sandbox")
            .add(card("pm_a"), false)
            .unwrap()
            .add(card("pm_b"), false)
            .unwrap()
            .add(card("pm_c"), false)
            .unwrap();
        assert_eq!(profile.default().unwrap().id, "pm_a");
        let profile = profile.add(card("pm_b"), true).unwrap();
        assert_eq!(profile.methods.len(), 3, "re-adding does not duplicate");
        assert_eq!(profile.default().unwrap().id, "pm_b");
        let profile = profile.remove("pm_b").unwrap();
        assert_eq!(profile.default().unwrap().id, "pm_c");
        assert!(profile.remove("pm_zz").is_none());
        assert!(profile.set_default("pm_zz").is_none());
        let empty = profile.remove("pm_a").unwrap().remove("pm_c").unwrap();
        assert!(empty.default().is_none());
    }

    #[test]
    fn an_account_keeps_a_bounded_number_of_cards() {
        let account = AccountId::from_ulid(ulid::Ulid::from_parts(1, 1));
        let mut profile = PaymentProfile::new(account, "sandbox");
        for i in 0..MAX_PAYMENT_METHODS {
            profile = profile.add(card(&format!("pm_{i}")), false).unwrap();
        }
        let err = profile.add(card("pm_more"), false).unwrap_err();
        assert_eq!(err.code, "too_many_payment_methods");
        assert!(profile.add(card("pm_0"), true).is_ok());
    }
}
