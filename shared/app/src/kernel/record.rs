use billing_domain::events::record::{
    self, AuditAction, AuditRecord, DomainEvent, EVENT_API_VERSION,
};
use billing_domain::events::types::EventType;
use billing_domain::kernel::ids::{AuditId, EventId};
use jiff::Timestamp;
use serde_json::Value;
use ulid::Ulid;

use super::{AppError, Caller};
use crate::ports::Change;

/// What changed, for the audit log and the outbox.
pub struct ChangeSpec<'a> {
    pub entity_type: &'static str,
    pub entity_id: String,
    pub action: AuditAction,
    /// `None`: an audit record whose events the caller builds itself.
    pub event_type: Option<EventType>,
    pub before: Option<&'a Value>,
    pub after: &'a Value,
}

/// Builds the audit record and domain event that commit with a change.
pub fn change(caller: &Caller, now: Timestamp, spec: ChangeSpec<'_>) -> Change {
    let changes = record::diff(spec.before, Some(spec.after));
    let previous_attributes = match spec.action {
        AuditAction::Create => None,
        _ => record::previous_attributes(&changes),
    };
    Change {
        audit: AuditRecord {
            id: AuditId::from_ulid(new_ulid()),
            entity_type: spec.entity_type.to_owned(),
            entity_id: spec.entity_id.clone(),
            action: spec.action,
            actor: caller.actor(),
            request_id: caller.request_id.clone(),
            changes,
            at: now,
        },
        events: spec
            .event_type
            .map(|event_type| {
                event(
                    caller,
                    now,
                    event_type,
                    spec.entity_id,
                    spec.after.clone(),
                    previous_attributes,
                )
            })
            .into_iter()
            .collect(),
    }
}

/// A domain event about `resource_id`; `data` is the resource as the API returns it.
pub fn event(
    caller: &Caller,
    now: Timestamp,
    event_type: EventType,
    resource_id: String,
    data: Value,
    previous_attributes: Option<Value>,
) -> DomainEvent {
    DomainEvent {
        id: EventId::from_ulid(new_ulid()),
        event_type,
        api_version: EVENT_API_VERSION.to_owned(),
        created: now,
        livemode: caller.livemode,
        resource_id,
        data,
        previous_attributes,
        published: false,
    }
}

/// A new ULID, strictly increasing within this process even inside one millisecond, so
/// that records made by one request (and one test) list in the order they were made.
pub fn new_ulid() -> Ulid {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    generator.generate().unwrap_or_else(|_| Ulid::new())
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, AppError> {
    serde_json::to_value(value).map_err(|e| AppError::Internal(e.to_string()))
}
