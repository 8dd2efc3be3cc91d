//! Documents: the tenant's branding printed on invoices and credit notes, and the locale
//! their dates and amounts are written in, and the record of a rendered PDF.

pub mod branding;
pub mod locale;
pub mod stored;
