//! Pure billing rules. No I/O, no async, no AWS types: every function here is a plain
//! transformation of plain data, so it can be tested (and property-tested) in isolation.

pub mod access;
pub mod account;
pub mod charges;
pub mod credit_note;
pub mod currency;
pub mod decimal;
pub mod dunning;
pub mod entitlements;
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
pub mod payment_method;
pub mod payments;
pub mod periods;
pub mod plan;
pub mod proration;
pub mod retry;
pub mod stripe_signature;
pub mod subscription;
pub mod tenant;
pub mod test_clock;
pub mod usage;
pub mod webhook;
