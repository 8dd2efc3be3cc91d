//! Events: the event log, webhook endpoints and the audit log.

pub mod audit;
pub mod log;
pub mod webhooks;

crate::routes::modules!(log, webhooks, audit);
