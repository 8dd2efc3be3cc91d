//! Customers: accounts, their payment methods, API keys and rate limits.

pub mod accounts;
pub mod api_keys;
pub mod limits;
pub mod payment_methods;

crate::routes::modules!(accounts, payment_methods, api_keys, limits);
