//! What happened: domain events and audit records (the outbox), the event-type catalog,
//! and outgoing webhooks.

pub mod record;
pub mod types;
pub mod webhook;
