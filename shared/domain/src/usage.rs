//! Metering: usage events and their aggregation, entitlements and thresholds.

pub mod entitlements;
pub mod meter;
