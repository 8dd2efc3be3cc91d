//! The event catalog: every event type the platform emits, what its `data` holds, and the
//! envelope every event travels in (the same JSON in `GET /v1/events`, in webhook bodies
//! and, with `tenant_id` added, as EventBridge `detail`).
//!
//! Versioning: the envelope's `api_version` names the shape of `data`
//! ([`crate::events::record::EVENT_API_VERSION`]). Adding a field is not a new version; renaming or
//! removing one, or changing a type, is, and the old shape keeps being sent to endpoints
//! pinned to the old version.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::record::DomainEvent;
use crate::kernel::ids::EventId;

/// One entry of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventType {
    /// `account.created`.
    pub name: &'static str,
    /// The OpenAPI schema of `data` (the resource as the API returns it); a name the
    /// document does not define is shown as a plain object.
    pub schema: &'static str,
    pub description: &'static str,
}

const fn entry(name: &'static str, schema: &'static str, description: &'static str) -> EventType {
    EventType {
        name,
        schema,
        description,
    }
}

/// Every event type emitted today. A new event type is added here in the same change that
/// first emits it; `enabled_events` of webhook endpoints is validated against this list.
pub const EVENT_TYPES: &[EventType] = &[
    entry(
        "account.created",
        "Account",
        "A customer account was created.",
    ),
    entry(
        "account.updated",
        "Account",
        "A customer account changed; `previous_attributes` holds the old values.",
    ),
    entry(
        "account.deleted",
        "Account",
        "A customer account was soft-deleted.",
    ),
    entry(
        "api_key.created",
        "ApiKey",
        "An API key was created (without its secret or hash).",
    ),
    entry("api_key.revoked", "ApiKey", "An API key was revoked."),
    entry(
        "webhook_endpoint.created",
        "WebhookEndpointView",
        "A webhook endpoint was added.",
    ),
    entry(
        "webhook_endpoint.updated",
        "WebhookEndpointView",
        "A webhook endpoint changed (URL, events, status or its signing secret was rotated).",
    ),
    entry(
        "webhook_endpoint.deleted",
        "WebhookEndpointView",
        "A webhook endpoint was deleted.",
    ),
    entry(
        "dunning.reminder",
        "DunningCase",
        "A payment reminder step of an account's dunning was taken (resource: the account).",
    ),
    entry(
        "dunning.warning",
        "DunningCase",
        "A warning step of an account's dunning was taken; the account's status is `warning`.",
    ),
    entry(
        "dunning.blocked",
        "DunningCase",
        "An account was blocked by dunning: no new subscriptions or plan changes until it pays.",
    ),
    entry(
        "dunning.unblocked",
        "DunningCase",
        "Every overdue invoice of an account in dunning was paid or voided; the account is active again.",
    ),
    entry(
        "dunning_settings.updated",
        "DunningPolicy",
        "The tenant's dunning policy changed.",
    ),
    entry(
        "payment.created",
        "Payment",
        "A payment attempt was made by hand (pay now, a manual retry); it is charged at once.",
    ),
    entry(
        "payment.succeeded",
        "Payment",
        "A payment attempt was charged; its invoice is paid.",
    ),
    entry(
        "payment.failed",
        "Payment",
        "A payment attempt was declined (`failure.kind`: `hard`, no retry, or `soft`, retried on the schedule).",
    ),
    entry(
        "payment.requires_action",
        "Payment",
        "The customer must authenticate the payment (3-D Secure); the invoice stays open.",
    ),
    entry(
        "payment.canceled",
        "Payment",
        "A scheduled attempt was not made: its invoice was paid, voided or written off first.",
    ),
    entry(
        "payment.refunded",
        "Payment",
        "Part or all of a payment was refunded; `amount_refunded` is the total so far.",
    ),
    entry(
        "payment.disputed",
        "Payment",
        "The customer disputed the charge at their bank.",
    ),
    entry(
        "invoice.paid",
        "Invoice",
        "An invoice was paid (by a payment, or marked paid out of band).",
    ),
    entry(
        "invoice.payment_failed",
        "Invoice",
        "A payment attempt on the invoice failed; `next_payment_attempt` says when the next is due.",
    ),
    entry(
        "invoice.payment_action_required",
        "Invoice",
        "The invoice's payment waits for the customer to authenticate (3-D Secure).",
    ),
    entry(
        "invoice.overdue",
        "Invoice",
        "An invoice the customer pays by themselves (`send_invoice`) passed its due date unpaid.",
    ),
    entry(
        "invoice.marked_uncollectible",
        "Invoice",
        "The last payment attempt failed and the tenant writes such invoices off.",
    ),
    entry(
        "subscription.past_due",
        "Subscription",
        "The last payment attempt on one of the subscription's invoices failed.",
    ),
    entry(
        "credit_note.created",
        "CreditNote",
        "Money was given back on an invoice: a refund, or the void of a paid or credited invoice.",
    ),
    entry(
        "payment_method.attached",
        "PaymentMethodView",
        "A card was attached to an account.",
    ),
    entry(
        "payment_method.updated",
        "PaymentMethodView",
        "A card became the account's default.",
    ),
    entry(
        "payment_method.detached",
        "PaymentMethodView",
        "A card was detached (through the API or at the gateway).",
    ),
    entry(
        "payment_settings.updated",
        "PaymentSettings",
        "The tenant's retry schedule or final action changed.",
    ),
    entry(
        "webhook_endpoint.disabled",
        "WebhookEndpointView",
        "A webhook endpoint was disabled automatically after failing continuously for days.",
    ),
    entry(
        "usage.threshold_reached",
        "UsageThreshold",
        "A subscription's usage of a metric reached 80 % or 100 % of its plan's limit for the \
         period (`threshold`); each threshold fires once per period.",
    ),
];

pub fn find(name: &str) -> Option<&'static EventType> {
    EVENT_TYPES.iter().find(|t| t.name == name)
}

/// Whether an endpoint subscribed to `enabled` wants `event_type`: `*` is everything,
/// `account.*` is every account event, anything else is an exact name.
pub fn subscribed(enabled: &[String], event_type: &str) -> bool {
    enabled.iter().any(|pattern| {
        pattern == "*"
            || pattern == event_type
            || pattern
                .strip_suffix(".*")
                .is_some_and(|prefix| event_type.split('.').next() == Some(prefix))
    })
}

/// Whether `pattern` may appear in `enabled_events`: `*`, a known type, or `family.*` for a
/// family that has at least one known type.
pub fn is_valid_pattern(pattern: &str) -> bool {
    pattern == "*"
        || find(pattern).is_some()
        || pattern.strip_suffix(".*").is_some_and(|family| {
            EVENT_TYPES
                .iter()
                .any(|t| t.name.split('.').next() == Some(family))
        })
}

/// The event as consumers see it. `published` and other bookkeeping stay inside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventEnvelope {
    #[schema(value_type = String, example = "evt_01JD3KQ4ZC6W5X2V9T8R7P6N5M")]
    pub id: EventId,
    /// Always `event`.
    #[schema(example = "event")]
    pub object: String,
    /// One of the catalog's event types, e.g. `account.created`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The version of the `data` shape.
    #[schema(example = "2026-11-01")]
    pub api_version: String,
    #[schema(value_type = String, format = DateTime)]
    pub created: Timestamp,
    pub livemode: bool,
    /// The id of the resource the event is about; `GET /v1/events?resource=` filters on it.
    pub resource_id: String,
    /// The resource as the API returns it, after the change.
    #[schema(value_type = Object)]
    pub data: Value,
    /// On updates, the previous values of the fields that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub previous_attributes: Option<Value>,
}

impl From<&DomainEvent> for EventEnvelope {
    fn from(e: &DomainEvent) -> Self {
        Self {
            id: e.id,
            object: "event".into(),
            event_type: e.event_type.clone(),
            api_version: e.api_version.clone(),
            created: e.created,
            livemode: e.livemode,
            resource_id: e.resource_id.clone(),
            data: e.data.clone(),
            previous_attributes: e.previous_attributes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_match_all_families_and_exact_names() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(subscribed(&s(&["*"]), "account.created"));
        assert!(subscribed(&s(&["account.*"]), "account.updated"));
        assert!(!subscribed(&s(&["account.*"]), "api_key.created"));
        assert!(subscribed(&s(&["api_key.revoked"]), "api_key.revoked"));
        assert!(!subscribed(&s(&["api_key.revoked"]), "api_key.created"));
        assert!(!subscribed(&[], "account.created"));
    }

    #[test]
    fn patterns_must_name_something_in_the_catalog() {
        assert!(is_valid_pattern("*"));
        assert!(is_valid_pattern("account.*"));
        assert!(is_valid_pattern("webhook_endpoint.disabled"));
        assert!(!is_valid_pattern("acount.created"));
        assert!(!is_valid_pattern("nothing.*"));
        let mut names: Vec<_> = EVENT_TYPES.iter().map(|t| t.name).collect();
        names.dedup();
        assert_eq!(names.len(), EVENT_TYPES.len(), "no duplicates");
    }
}
