//! Who is billed and who may act: tenants, API keys and roles, staff sign-in, accounts, payment methods.

pub mod access;
pub mod account;
pub mod erasure;
pub mod limits;
pub mod payment_method;
pub mod staff;
pub mod tenant;
