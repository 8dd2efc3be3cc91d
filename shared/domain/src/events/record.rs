//! Domain events and audit records: written in the same transaction as the change they
//! describe (the outbox), so no change is ever without its event or its audit trail.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::customers::access::Role;
use crate::events::types::EventType;
use crate::kernel::ids::{ApiKeyId, AuditId, EventId};

/// Envelope version of the event payloads, bumped on breaking changes.
pub const EVENT_API_VERSION: &str = "2026-11-01";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub api_version: String,
    pub created: Timestamp,
    pub livemode: bool,
    /// The id of the resource the event is about.
    pub resource_id: String,
    /// The resource as the API returns it, after the change.
    pub data: Value,
    /// On updates, the previous values of the fields that changed.
    pub previous_attributes: Option<Value>,
    /// Set once the outbox publisher has handed the event on.
    #[serde(default)]
    pub published: bool,
}

/// Who made a change: the API key and its role, a signed-in staff user (subject and
/// email from their token) and their role, or an operator tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    #[schema(value_type = Option<String>)]
    pub key_id: Option<ApiKeyId>,
    pub role: Option<Role>,
    /// A staff user's `sub` at their identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A staff user's email, when their token has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `api`, `billing-admin`, `system`.
    pub via: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Create,
    Update,
    Delete,
    Revoke,
    /// A deleted account's personal data erased (retention).
    Purge,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    #[schema(value_type = String)]
    pub id: AuditId,
    pub entity_type: String,
    pub entity_id: String,
    pub action: AuditAction,
    pub actor: Actor,
    pub request_id: Option<String>,
    /// Field → `{ "before": …, "after": … }` for every top-level field that changed.
    #[schema(value_type = Object)]
    pub changes: Map<String, Value>,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// Top-level fields whose values differ between two JSON objects, with both sides.
/// Bookkeeping fields (`version`, `updated_at`) are left out: they change every time.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Map<String, Value> {
    let empty = Map::new();
    let as_object = |v: Option<&Value>| v.and_then(Value::as_object).unwrap_or(&empty).clone();
    let (before, after) = (as_object(before), as_object(after));
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !matches!(k.as_str(), "version" | "updated_at"))
        .filter_map(|k| {
            let (b, a) = (
                before.get(k).unwrap_or(&Value::Null),
                after.get(k).unwrap_or(&Value::Null),
            );
            (b != a).then(|| (k.clone(), serde_json::json!({ "before": b, "after": a })))
        })
        .collect()
}

/// The `previous_attributes` of an update event: the old values of the changed fields.
pub fn previous_attributes(changes: &Map<String, Value>) -> Option<Value> {
    (!changes.is_empty()).then(|| {
        Value::Object(
            changes
                .iter()
                .map(|(k, v)| (k.clone(), v.get("before").cloned().unwrap_or(Value::Null)))
                .collect(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_lists_only_changed_fields_with_both_sides() {
        let before = json!({"email": "a@x.io", "name": "A", "version": 1});
        let after = json!({"email": "b@x.io", "name": "A", "version": 2, "vat_id": "DE1"});
        let changes = diff(Some(&before), Some(&after));
        assert_eq!(changes.len(), 2);
        assert_eq!(
            changes["email"],
            json!({"before": "a@x.io", "after": "b@x.io"})
        );
        assert_eq!(changes["vat_id"], json!({"before": null, "after": "DE1"}));
        assert_eq!(
            previous_attributes(&changes).unwrap(),
            json!({"email": "a@x.io", "vat_id": null})
        );
    }

    #[test]
    fn creation_diff_has_every_field_and_no_previous_attributes_when_unchanged() {
        let after = json!({"email": "a@x.io"});
        assert_eq!(diff(None, Some(&after)).len(), 1);
        assert!(previous_attributes(&diff(Some(&after), Some(&after))).is_none());
    }
}
