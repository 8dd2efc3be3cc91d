//! Hosted invoice pages: the unguessable links a customer opens an invoice with, and the
//! form token that ties a payment form to the link it was served under.

pub mod link;
