//! Getting paid: payment attempts and declines, retries, credit notes, dunning, and
//! verifying the payment gateway's webhooks.

pub mod connect;
pub mod credit_note;
pub mod dunning;
pub mod payment;
pub mod retry;
pub mod stripe_signature;
