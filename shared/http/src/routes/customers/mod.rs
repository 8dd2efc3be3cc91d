//! Customers: accounts, their payment methods, and API keys.

pub mod accounts;
pub mod api_keys;
pub mod payment_methods;

crate::routes::modules!(accounts, payment_methods, api_keys);
