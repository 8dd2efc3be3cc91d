//! Customers: accounts, their payment methods, API keys, rate limits and the identity
//! provider staff sign in with.

pub mod accounts;
pub mod api_keys;
pub mod identity_provider;
pub mod limits;
pub mod payment_methods;

crate::routes::modules!(
    accounts,
    payment_methods,
    api_keys,
    limits,
    identity_provider
);
