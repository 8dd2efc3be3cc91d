//! Billable metrics: what usage is measured, which event property is aggregated, and how
//! (count, sum, max, unique_count, latest, weighted_sum). Usage charges of plans price a
//! metric's aggregate for the period.
//!
//! A `recurring` metric is a level (seats, storage) rather than a count: its level carries
//! into the next period until an event changes it. How a level that changes mid-period is
//! billed is its aggregation: `latest` (the level at the period's end), `max` (the highest
//! level held) or `weighted_sum` (the level weighted by how long it was held). For `sum`
//! and `weighted_sum` an event is a change of the level (+3, -1); for `max` and `latest`
//! it is the level itself.

use crate::kernel::error::ErrorCode;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kernel::error::ValidationError;
use crate::kernel::ids::MetricId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Number of events.
    Count,
    /// Sum of the property's values.
    Sum,
    /// Largest value of the property.
    Max,
    /// Number of distinct values of the property.
    UniqueCount,
    /// The last value reported in the period.
    Latest,
    /// The level (the running sum of the events' values) weighted by the time it was held,
    /// over the period's length (Lago's `weighted_sum`).
    WeightedSum,
}

impl Aggregation {
    /// Every aggregation but `count` reads a property of the event.
    pub fn needs_field(self) -> bool {
        self != Aggregation::Count
    }

    /// Whether a metric of this aggregation can be a level that carries over.
    pub fn can_recur(self) -> bool {
        !matches!(self, Aggregation::Count | Aggregation::UniqueCount)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "bm_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "code": "api_calls", "name": "API calls",
    "description": "Requests to the public API", "aggregation": "count", "field": null,
    "recurring": false, "created_at": "2026-11-22T10:00:00Z", "updated_at": "2026-11-22T10:00:00Z", "version": 1
}))]
pub struct Metric {
    #[schema(value_type = String)]
    pub id: MetricId,
    /// Unique per tenant; usage events name the metric by it.
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    pub aggregation: Aggregation,
    /// The event property aggregated (`null` for `count`).
    pub field: Option<String>,
    /// `false`: the aggregate starts from zero every period. `true`: a level (seats,
    /// storage held) that carries into the next period until an event changes it; for
    /// sum, max, latest and weighted_sum.
    pub recurring: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "storage_gb", "name": "Storage", "aggregation": "max", "field": "gb", "recurring": true}))]
pub struct NewMetric {
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    pub aggregation: Aggregation,
    pub field: Option<String>,
    #[serde(default)]
    pub recurring: bool,
}

/// What may change after creation. Code, aggregation and field are fixed: plans already
/// price the aggregate they define.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Public API calls"}))]
pub struct MetricPatch {
    pub name: Option<String>,
    pub description: Option<String>,
}

impl Metric {
    pub fn create(id: MetricId, input: NewMetric, now: Timestamp) -> Result<Self, ValidationError> {
        let field = match (input.aggregation.needs_field(), input.field) {
            (true, None) => {
                return Err(ValidationError::new(
                    ErrorCode::MissingField,
                    "field",
                    format!(
                        "a {:?} metric must name the event property it aggregates",
                        input.aggregation
                    )
                    .to_lowercase(),
                ))
            }
            (false, Some(_)) => {
                return Err(ValidationError::new(
                    ErrorCode::InvalidField,
                    "field",
                    "a count metric counts events and takes no field",
                ))
            }
            (_, field) => field.map(|f| validate_code(&f, "field")).transpose()?,
        };
        if input.recurring && !input.aggregation.can_recur() {
            return Err(ValidationError::new(
                ErrorCode::RecurringUnsupported,
                "recurring",
                "a count or unique_count metric counts what happened in a period; only sum, \
                 max, latest and weighted_sum metrics are levels that carry over",
            ));
        }
        Ok(Metric {
            id,
            code: validate_code(&input.code, "code")?,
            name: validate_name(&input.name)?,
            description: validate_description(input.description)?,
            aggregation: input.aggregation,
            field,
            recurring: input.recurring,
            created_at: now,
            updated_at: now,
            version: 1,
        })
    }

    pub fn apply(&self, patch: MetricPatch, now: Timestamp) -> Result<Self, ValidationError> {
        let mut next = self.clone();
        if let Some(name) = patch.name {
            next.name = validate_name(&name)?;
        }
        if let Some(description) = patch.description {
            next.description = validate_description(Some(description))?;
        }
        next.updated_at = now;
        next.version += 1;
        Ok(next)
    }
}

/// Codes are what integrations type: lower-case letters, digits, `_`, `-` and `.`, 1–64.
pub fn validate_code(code: &str, param: &'static str) -> Result<String, ValidationError> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        });
    if ok {
        Ok(code.to_owned())
    } else {
        Err(ValidationError::new(
            ErrorCode::InvalidCode,
            param,
            format!("`{code}` must be 1 to 64 lower-case letters, digits, `_`, `-` or `.`"),
        ))
    }
}

pub fn validate_name(name: &str) -> Result<String, ValidationError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ValidationError::new(
            ErrorCode::InvalidName,
            "name",
            "a name must be 1 to 200 characters",
        ));
    }
    Ok(name.to_owned())
}

pub fn validate_description(
    description: Option<String>,
) -> Result<Option<String>, ValidationError> {
    match description.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(d) if d.chars().count() <= 1000 => Ok(Some(d.to_owned())),
        Some(_) => Err(ValidationError::new(
            ErrorCode::TooLong,
            "description",
            "a description must be at most 1000 characters",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    fn new(aggregation: Aggregation, field: Option<&str>) -> NewMetric {
        NewMetric {
            code: "api_calls".into(),
            name: "API calls".into(),
            description: None,
            aggregation,
            field: field.map(Into::into),
            recurring: false,
        }
    }

    fn id() -> MetricId {
        MetricId::from_ulid(Ulid::from_parts(1, 1))
    }

    #[test]
    fn count_takes_no_field_and_the_others_need_one() {
        assert!(Metric::create(id(), new(Aggregation::Count, None), Timestamp::UNIX_EPOCH).is_ok());
        let err = Metric::create(
            id(),
            new(Aggregation::Count, Some("x")),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap_err();
        assert_eq!(err.param, "field");
        for aggregation in [
            Aggregation::Sum,
            Aggregation::Max,
            Aggregation::UniqueCount,
            Aggregation::Latest,
            Aggregation::WeightedSum,
        ] {
            let err =
                Metric::create(id(), new(aggregation, None), Timestamp::UNIX_EPOCH).unwrap_err();
            assert_eq!(err.code, "missing_field");
            assert!(
                Metric::create(id(), new(aggregation, Some("bytes")), Timestamp::UNIX_EPOCH)
                    .is_ok()
            );
        }
    }

    #[test]
    fn only_levels_recur() {
        for aggregation in [
            Aggregation::Sum,
            Aggregation::Max,
            Aggregation::Latest,
            Aggregation::WeightedSum,
        ] {
            let input = NewMetric {
                recurring: true,
                ..new(aggregation, Some("seats"))
            };
            assert!(Metric::create(id(), input, Timestamp::UNIX_EPOCH).is_ok());
        }
        for (aggregation, field) in [
            (Aggregation::Count, None),
            (Aggregation::UniqueCount, Some("user")),
        ] {
            let input = NewMetric {
                recurring: true,
                ..new(aggregation, field)
            };
            let err = Metric::create(id(), input, Timestamp::UNIX_EPOCH).unwrap_err();
            assert_eq!(
                (err.code.as_str(), err.param.as_str()),
                ("recurring_unsupported", "recurring")
            );
        }
    }

    #[test]
    fn codes_are_restricted() {
        for bad in ["", "API", "a b", &"x".repeat(65)] {
            assert!(validate_code(bad, "code").is_err(), "{bad}");
        }
        assert!(validate_code("storage.gb-hours_v2", "code").is_ok());
    }

    #[test]
    fn patch_keeps_the_aggregate_definition() {
        let m = Metric::create(
            id(),
            new(Aggregation::Sum, Some("bytes")),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        let p = m
            .apply(
                MetricPatch {
                    name: Some("Bytes".into()),
                    description: None,
                },
                Timestamp::UNIX_EPOCH,
            )
            .unwrap();
        assert_eq!(
            (p.name.as_str(), p.aggregation, p.version),
            ("Bytes", Aggregation::Sum, 2)
        );
    }
}
