//! Use cases: what the platform does, written against ports. Each public method on
//! [`App`] is one use case; handlers parse input, call one, and map its result.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod catalog;
pub mod dunning;
pub mod error;
pub mod gateway_events;
pub mod idempotency;
pub mod invoices;
pub mod payment_methods;
pub mod payments;
pub mod ports;
pub mod relay;

pub mod subscriptions;
pub mod tenants;
pub mod test_clocks;
pub mod usage;
pub mod webhooks;

use std::sync::Arc;

use billing_domain::customers::access::{Permission, Role};
use billing_domain::events::record::{
    self, Actor, AuditAction, AuditRecord, DomainEvent, EVENT_API_VERSION,
};
use billing_domain::kernel::ids::{ApiKeyId, AuditId, EventId, TenantId};
use jiff::Timestamp;
use serde_json::Value;
use ulid::Ulid;

pub use error::AppError;
use ports::{Change, Clock, Notifier, PaymentGateway, PaymentQueue, Store};

/// The use cases, with the ports they run against. Built once per process.
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Tells customers about dunning steps. Without one, notices wait in the due index
    /// for a process that has one (the payment worker).
    pub notifier: Option<Arc<dyn Notifier>>,
    /// Where cards are kept and charged.
    pub gateway: Arc<dyn PaymentGateway>,
    /// Where payment work due now is handed right after its commit; without one it waits
    /// for the due-index sweep.
    pub payment_queue: Option<Arc<dyn PaymentQueue>>,
}

/// The authenticated caller of a use case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub livemode: bool,
    pub key_id: Option<ApiKeyId>,
    pub role: Role,
    pub request_id: Option<String>,
}

impl Caller {
    /// Who presents `key`.
    pub fn of_key(
        key: &billing_domain::customers::access::ApiKey,
        request_id: Option<String>,
    ) -> Self {
        Self {
            tenant_id: key.tenant_id,
            livemode: key.livemode,
            key_id: Some(key.id),
            role: key.role,
            request_id,
        }
    }

    pub fn require(&self, permission: Permission) -> Result<(), AppError> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "the {} role may not do this",
                self.role.as_str()
            )))
        }
    }

    fn actor(&self) -> Actor {
        Actor {
            key_id: self.key_id,
            role: Some(self.role),
            via: if self.key_id.is_some() {
                "api"
            } else {
                "billing-admin"
            }
            .to_owned(),
        }
    }
}

/// What changed, for the audit log and the outbox.
struct ChangeSpec<'a> {
    entity_type: &'static str,
    entity_id: String,
    action: AuditAction,
    event_type: &'static str,
    before: Option<&'a Value>,
    after: &'a Value,
}

impl App {
    /// The gateway is chosen at wiring time: the sandbox for sandbox tenants and tests,
    /// Stripe when a secret is configured.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        gateway: Arc<dyn PaymentGateway>,
    ) -> Self {
        Self {
            store,
            clock,
            notifier: None,
            gateway,
            payment_queue: None,
        }
    }

    /// Hands payment work due now to `queue` right after its commit.
    pub fn with_payment_queue(mut self, queue: Arc<dyn PaymentQueue>) -> Self {
        self.payment_queue = Some(queue);
        self
    }

    /// Sends customer notices through `notifier` right after the commits that leave them.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Builds the audit record and domain event that commit with a change.
    fn change(&self, caller: &Caller, now: Timestamp, spec: ChangeSpec<'_>) -> Change {
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
            events: vec![self.event(
                caller,
                now,
                spec.event_type,
                spec.entity_id,
                spec.after.clone(),
                previous_attributes,
            )],
        }
    }

    /// A domain event about `resource_id`; `data` is the resource as the API returns it.
    fn event(
        &self,
        caller: &Caller,
        now: Timestamp,
        event_type: &str,
        resource_id: String,
        data: Value,
        previous_attributes: Option<Value>,
    ) -> DomainEvent {
        DomainEvent {
            id: EventId::from_ulid(new_ulid()),
            event_type: event_type.to_owned(),
            api_version: EVENT_API_VERSION.to_owned(),
            created: now,
            livemode: caller.livemode,
            resource_id,
            data,
            previous_attributes,
            published: false,
        }
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

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, AppError> {
    serde_json::to_value(value).map_err(|e| AppError::Internal(e.to_string()))
}
