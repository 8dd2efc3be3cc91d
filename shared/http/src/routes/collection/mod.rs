//! Collection: payments and retries, refunds and credit notes, dunning.

pub mod credit_notes;
pub mod dunning;
pub mod payments;

crate::routes::modules!(payments, credit_notes, dunning);
