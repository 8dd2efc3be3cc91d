//! Documents: the tenant's branding printed on invoices and credit notes, the locale
//! their dates and amounts are written in, and the emails customers get.

pub mod branding;
pub mod email;
pub mod locale;
