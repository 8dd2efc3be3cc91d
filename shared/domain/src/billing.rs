//! Subscriptions and their periods, proration, building invoice drafts, the invoice
//! record and its numbering, and test clocks.

pub mod invoice;
pub mod invoice_draft;
pub mod periods;
pub mod price_notice;
pub mod proration;
pub mod simulation;
pub mod subscription;
pub mod test_clock;
