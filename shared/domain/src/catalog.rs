//! What is sold: billable metrics, plans with their versions, and charge models.

pub mod capacity;
pub mod charges;
pub mod metric;
pub mod plan;
