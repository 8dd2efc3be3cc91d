//! Documents: the tenant's branding printed on invoices and credit notes, the locale their
//! dates and amounts are written in, and where a rendered document is kept.

pub mod branding;
pub mod locale;
pub mod stored;
