//! Tax: the seller's settings and registrations, tax rates by jurisdiction and effective
//! dates, VAT id checks, and the resolution of which rates an invoice's lines carry (or why
//! none: exempt, reverse charge, outside the registrations).

pub mod rates;
pub mod resolve;
pub mod vat_id;
