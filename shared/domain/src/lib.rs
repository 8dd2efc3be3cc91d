//! Pure billing rules. No I/O, no async, no AWS types: every function here is a plain
//! transformation of plain data, so it can be tested (and property-tested) in isolation.
//!
//! One folder per capability, the same names as in `billing-app` and `billing-http`:
//! `kernel` holds what every capability shares (money, currencies, decimals, ids, the
//! validation error, metadata, formatting).

pub mod billing;
pub mod catalog;
pub mod collection;
pub mod coupons;
pub mod credits;
pub mod customers;
pub mod documents;
pub mod events;
pub mod hosted;
pub mod kernel;
pub mod tax;
pub mod usage;
pub mod wallets;
