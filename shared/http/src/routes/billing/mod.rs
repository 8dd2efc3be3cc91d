//! Billing: subscriptions, invoices and test clocks.

pub mod invoices;
pub mod subscriptions;
pub mod test_clocks;

crate::routes::modules!(subscriptions, invoices, test_clocks);
