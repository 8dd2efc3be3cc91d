//! What every capability shares: money and currencies, decimals and the one rounding rule,
//! typed ids, the validation error, metadata and money formatting, the supported time range.

pub mod currency;
pub mod decimal;
pub mod deployment;
pub mod error;
pub mod format;
pub mod html;
pub mod ids;
pub mod metadata;
pub mod money;
pub mod time;
pub mod time_zones;
