//! Pure billing rules. No I/O, no async, no AWS types: every function here is a plain
//! transformation of plain data, so it can be tested (and property-tested) in isolation.

pub mod access;
pub mod account;
pub mod charges;
pub mod currency;
pub mod decimal;
pub mod error;
pub mod event;
pub mod event_types;
pub mod format;
pub mod ids;
pub mod invoice;
pub mod invoicing;
pub mod metadata;
pub mod metric;
pub mod money;
pub mod periods;
pub mod plan;
pub mod proration;
pub mod stripe_signature;
pub mod subscription;
pub mod tenant;
pub mod test_clock;
pub mod webhook;
