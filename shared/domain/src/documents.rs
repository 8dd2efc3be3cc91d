//! Documents: the tenant's branding printed on invoices and credit notes, the locale their
//! dates and amounts are written in, the emails customers get, and the record of a rendered PDF.

pub mod branding;
pub mod email;
pub mod locale;
pub mod logo;
pub mod stored;
