//! The event log and webhook endpoints as the API sees them: list and read events,
//! manage endpoints and their secrets, read deliveries, resend an event.

use billing_domain::customers::access::Permission;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventEnvelope;
use billing_domain::events::types::EventType;
use billing_domain::events::webhook::{
    self, EndpointStatus, NewWebhookEndpoint, WebhookDelivery, WebhookEndpoint,
    WebhookEndpointPatch, WebhookEndpointView,
};
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{DeliveryId, EventId, TenantId, WebhookEndpointId};
use billing_domain::kernel::time::later;
use jiff::SignedDuration;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use ulid::Ulid;

use super::EventsService;
use crate::kernel::{change, new_ulid, to_json, AppError, Caller, ChangeSpec};
use crate::ports::{Change, EventFilter, Page, PageRequest, DELIVERY_GRACE};

const ENTITY: &str = "webhook_endpoint";

/// An endpoint with its signing secret: the answer to create and rotate, the only
/// moments the secret is visible.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: WebhookEndpointView,
    pub secret: String,
}

fn new_secret_bytes() -> [u8; 24] {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// The id of an event's first delivery to an endpoint, derived from both so that a
/// duplicate fan-out of the same event finds the delivery already there. It sorts by
/// the event's time like any other id.
pub fn delivery_id(event: EventId, endpoint: WebhookEndpointId) -> DeliveryId {
    let digest = Sha256::new()
        .chain_update(event.to_string())
        .chain_update(b"/")
        .chain_update(endpoint.to_string())
        .finalize();
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    DeliveryId::from_ulid(Ulid::from_parts(
        event.ulid().timestamp_ms(),
        u128::from_be_bytes(random),
    ))
}

impl EventsService {
    pub async fn create_webhook_endpoint(
        &self,
        caller: &Caller,
        input: NewWebhookEndpoint,
    ) -> Result<EndpointWithSecret, AppError> {
        caller.require(Permission::ManageApiKeys)?;
        let existing = self
            .store
            .list_webhook_endpoints(
                caller.tenant_id,
                &PageRequest::first(webhook::MAX_ENDPOINTS),
            )
            .await?;
        if existing.items.len() >= webhook::MAX_ENDPOINTS {
            return Err(AppError::Conflict {
                code: ErrorCode::TooManyEndpoints,
                message: format!(
                    "a tenant has at most {} webhook endpoints; delete one first",
                    webhook::MAX_ENDPOINTS
                ),
                param: None,
            });
        }
        let now = self.clocks.now();
        let endpoint = WebhookEndpoint::create(
            WebhookEndpointId::from_ulid(new_ulid()),
            input,
            caller.livemode,
            self.deployment,
            &new_secret_bytes(),
            now,
        )?;
        let change = self.endpoint_change(
            caller,
            None,
            &endpoint,
            AuditAction::Create,
            EventType::WebhookEndpointCreated,
        )?;
        self.store
            .insert_webhook_endpoint(caller.tenant_id, &endpoint, &change)
            .await?;
        Ok(with_secret(&endpoint))
    }

    pub async fn list_webhook_endpoints(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<WebhookEndpointView>, AppError> {
        caller.require(Permission::Read)?;
        let page = self
            .store
            .list_webhook_endpoints(caller.tenant_id, page)
            .await?;
        Ok(page.map(|e| e.view()))
    }

    pub async fn get_webhook_endpoint(
        &self,
        caller: &Caller,
        id: WebhookEndpointId,
    ) -> Result<WebhookEndpointView, AppError> {
        caller.require(Permission::Read)?;
        Ok(self.load_endpoint(caller.tenant_id, id).await?.view())
    }

    pub async fn update_webhook_endpoint(
        &self,
        caller: &Caller,
        id: WebhookEndpointId,
        patch: WebhookEndpointPatch,
    ) -> Result<WebhookEndpointView, AppError> {
        caller.require(Permission::ManageApiKeys)?;
        let current = self.load_endpoint(caller.tenant_id, id).await?;
        let next = current.apply(patch, self.deployment, self.clocks.now())?;
        self.save_endpoint(caller, &current, &next).await?;
        Ok(next.view())
    }

    /// A new signing secret; the old one keeps signing for `overlap` (default 24 h).
    pub async fn rotate_webhook_secret(
        &self,
        caller: &Caller,
        id: WebhookEndpointId,
        overlap: Option<SignedDuration>,
    ) -> Result<EndpointWithSecret, AppError> {
        caller.require(Permission::ManageApiKeys)?;
        let current = self.load_endpoint(caller.tenant_id, id).await?;
        let next = current.rotate(
            &new_secret_bytes(),
            overlap.unwrap_or(webhook::DEFAULT_ROTATION_OVERLAP),
            self.clocks.now(),
        )?;
        self.save_endpoint(caller, &current, &next).await?;
        Ok(with_secret(&next))
    }

    pub async fn delete_webhook_endpoint(
        &self,
        caller: &Caller,
        id: WebhookEndpointId,
    ) -> Result<WebhookEndpointView, AppError> {
        caller.require(Permission::ManageApiKeys)?;
        let current = self.load_endpoint(caller.tenant_id, id).await?;
        let change = self.endpoint_change(
            caller,
            Some(&current),
            &current,
            AuditAction::Delete,
            EventType::WebhookEndpointDeleted,
        )?;
        self.store
            .delete_webhook_endpoint(caller.tenant_id, &current, &change)
            .await?;
        Ok(current.view())
    }

    pub async fn list_webhook_deliveries(
        &self,
        caller: &Caller,
        id: WebhookEndpointId,
        page: &PageRequest,
    ) -> Result<Page<WebhookDelivery>, AppError> {
        caller.require(Permission::Read)?;
        self.load_endpoint(caller.tenant_id, id).await?;
        Ok(self
            .store
            .list_deliveries(caller.tenant_id, id, page)
            .await?)
    }

    pub async fn list_events(
        &self,
        caller: &Caller,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<EventEnvelope>, AppError> {
        caller.require(Permission::Read)?;
        let page = self
            .store
            .list_events(caller.tenant_id, filter, page)
            .await?;
        Ok(page.map(|e| EventEnvelope::from(&e)))
    }

    pub async fn get_event(&self, caller: &Caller, id: EventId) -> Result<EventEnvelope, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_event(caller.tenant_id, id)
            .await?
            .map(|e| EventEnvelope::from(&e))
            .ok_or_else(|| AppError::not_found("event", id))
    }

    /// Delivers an event again, as a new delivery with its own attempts: to one endpoint,
    /// or to every enabled endpoint subscribed to its type.
    pub async fn resend_event(
        &self,
        caller: &Caller,
        id: EventId,
        endpoint: Option<WebhookEndpointId>,
    ) -> Result<Vec<WebhookDelivery>, AppError> {
        caller.require(Permission::ManageApiKeys)?;
        let event = self
            .store
            .get_event(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("event", id))?;
        let targets = match endpoint {
            Some(endpoint_id) => {
                let endpoint = self
                    .store
                    .get_webhook_endpoint(caller.tenant_id, endpoint_id)
                    .await?
                    .ok_or_else(|| {
                        AppError::Invalid(billing_domain::kernel::error::ValidationError::new(
                            ErrorCode::UnknownEndpoint,
                            "endpoint",
                            format!("no such webhook endpoint: `{endpoint_id}`"),
                        ))
                    })?;
                if endpoint.status != EndpointStatus::Enabled {
                    return Err(AppError::Conflict {
                        code: ErrorCode::EndpointDisabled,
                        message: "the endpoint is disabled; enable it before resending".into(),
                        param: Some("endpoint"),
                    });
                }
                vec![endpoint]
            }
            None => self
                .store
                .list_webhook_endpoints(
                    caller.tenant_id,
                    &PageRequest::first(webhook::MAX_ENDPOINTS),
                )
                .await?
                .items
                .into_iter()
                .filter(|e| e.wants(event.event_type))
                .collect(),
        };
        if targets.is_empty() {
            return Err(AppError::Conflict {
                code: ErrorCode::NoEndpoints,
                message: format!(
                    "no enabled webhook endpoint is subscribed to `{}`",
                    event.event_type
                ),
                param: None,
            });
        }
        let now = self.clocks.now();
        let deliveries: Vec<WebhookDelivery> = targets
            .iter()
            .map(|e| {
                WebhookDelivery::new(
                    DeliveryId::from_ulid(new_ulid()),
                    e.id,
                    event.id,
                    event.event_type,
                    true,
                    now,
                )
            })
            .collect();
        self.store
            .insert_due_deliveries(caller.tenant_id, &deliveries, later(now, DELIVERY_GRACE))
            .await?;
        Ok(deliveries)
    }

    async fn load_endpoint(
        &self,
        tenant: TenantId,
        id: WebhookEndpointId,
    ) -> Result<WebhookEndpoint, AppError> {
        self.store
            .get_webhook_endpoint(tenant, id)
            .await?
            .ok_or_else(|| AppError::not_found("webhook endpoint", id))
    }

    async fn save_endpoint(
        &self,
        caller: &Caller,
        current: &WebhookEndpoint,
        next: &WebhookEndpoint,
    ) -> Result<(), AppError> {
        let change = self.endpoint_change(
            caller,
            Some(current),
            next,
            AuditAction::Update,
            EventType::WebhookEndpointUpdated,
        )?;
        self.store
            .update_webhook_endpoint(caller.tenant_id, current, next, Some(&change))
            .await?;
        Ok(())
    }

    /// The audit record and event of an endpoint change; both see the view, never a secret.
    pub(super) fn endpoint_change(
        &self,
        caller: &Caller,
        before: Option<&WebhookEndpoint>,
        after: &WebhookEndpoint,
        action: AuditAction,
        event_type: EventType,
    ) -> Result<Change, AppError> {
        let before = before.map(|b| to_json(&b.view())).transpose()?;
        let after_json = to_json(&after.view())?;
        Ok(change(
            caller,
            self.clocks.now(),
            ChangeSpec {
                entity_type: ENTITY,
                entity_id: after.id.to_string(),
                action,
                event_type: Some(event_type),
                before: before.as_ref(),
                after: &after_json,
            },
        ))
    }
}

fn with_secret(endpoint: &WebhookEndpoint) -> EndpointWithSecret {
    EndpointWithSecret {
        endpoint: endpoint.view(),
        secret: endpoint
            .secrets
            .first()
            .map(|s| s.secret.clone())
            .unwrap_or_default(),
    }
}
