//! Invoice and credit note PDFs.
//!
//! [`render_invoice`] and [`render_credit_note`] turn a finalized record and the tenant's
//! [`Branding`] (with its logo's file, PNG or JPEG, drawn at the top of the first page) into
//! PDF bytes with [krilla](https://docs.rs/krilla), embedding subsets of the bundled DejaVu
//! Sans fonts (`fonts/`, with their licence). A logo that does not decode is left out and
//! the reason returned, never the document refused. The output depends on its
//! inputs only: the creation date is the record's own date and the document id is its id,
//! so rendering twice gives the same bytes and the same SHA-256.
//!
//! Lines priced from usage and prorated lines get an appendix written from the derivation
//! the engine recorded on them ([`explain`]); nothing is recomputed here.

use billing_domain::documents::branding::Branding;
use billing_domain::documents::locale::Locale;
use jiff::tz::TimeZone;
use jiff::Timestamp;

pub mod explain;
#[allow(clippy::float_arithmetic)] // page geometry in points; no money is a float
pub mod layout;
#[allow(clippy::float_arithmetic)] // page geometry in points; no money is a float
mod templates;

pub use templates::{render_credit_note, render_invoice};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the document cannot be laid out: {0}")]
    Layout(&'static str),
    #[error("the PDF writer failed: {0}")]
    Pdf(String),
    #[error("{0} is not finalized: it has no number or date to print")]
    NotFinalized(String),
}

/// A date as the branding's locale writes it (documents print UTC dates).
pub(crate) fn date(t: Timestamp, locale: Locale) -> String {
    locale.format_date(t.to_zoned(TimeZone::UTC).date())
}

/// What a document shows for the seller: the branding, with the tax ids the invoice was
/// finalized with when it has any.
pub(crate) fn seller_tax_ids<'a>(branding: &'a Branding, frozen: &'a [String]) -> &'a [String] {
    if frozen.is_empty() {
        &branding.tax_ids
    } else {
        frozen
    }
}
