//! Stripe's event JSON (`{"id": "evt_…", "type": …, "created": …, "data": {"object": …}}`)
//! in our terms. Only the fields the payments use cases act on are read, so additions to
//! Stripe's objects (they add fields in every API version) change nothing here; an object id
//! may come as a string or, expanded, as the object itself.

use std::collections::BTreeMap;

use billing_app::ports::{GatewayEvent, GatewayEventKind, GatewayMetadata};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Stripe event we can read: {0}")]
pub struct EventError(pub String);

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    #[serde(default)]
    livemode: bool,
    /// Set on events of a connected account (Connect); absent for the platform's own.
    #[serde(default)]
    account: Option<String>,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    object: Value,
}

/// A reference to another object: its id, or the object when expanded.
#[derive(Deserialize)]
#[serde(untagged)]
enum Ref {
    Id(String),
    Object { id: String },
}

impl Ref {
    fn into_id(self) -> String {
        match self {
            Ref::Id(id) | Ref::Object { id } => id,
        }
    }
}

/// Stripe sends `null` for an empty metadata in some places; both mean none.
fn metadata<'de, D: serde::Deserializer<'de>>(d: D) -> Result<GatewayMetadata, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct PaymentIntent {
    id: String,
    amount_received: i64,
    currency: String,
    latest_charge: Option<Ref>,
    last_payment_error: Option<PaymentError>,
    #[serde(default, deserialize_with = "metadata")]
    metadata: GatewayMetadata,
}

#[derive(Deserialize)]
struct PaymentError {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct Charge {
    id: String,
    payment_intent: Option<Ref>,
    amount_refunded: i64,
    currency: String,
    #[serde(default, deserialize_with = "metadata")]
    metadata: GatewayMetadata,
}

#[derive(Deserialize)]
struct Dispute {
    id: String,
    charge: Ref,
    payment_intent: Option<Ref>,
    amount: i64,
    currency: String,
    reason: String,
}

#[derive(Deserialize)]
struct PaymentMethod {
    id: String,
}

fn object<T: DeserializeOwned>(event_type: &str, object: Value) -> Result<T, EventError> {
    serde_json::from_value(object).map_err(|e| EventError(format!("{event_type}: {e}")))
}

/// Reads a Stripe event's raw body (already verified).
pub fn parse(body: &[u8]) -> Result<GatewayEvent, EventError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| EventError(e.to_string()))?;
    let created = jiff::Timestamp::from_second(envelope.created)
        .map_err(|e| EventError(format!("created: {e}")))?;
    let event_type = envelope.event_type.as_str();
    let data = envelope.data.object;
    let kind = match event_type {
        "payment_intent.succeeded" => {
            let intent: PaymentIntent = object(event_type, data)?;
            GatewayEventKind::PaymentSucceeded {
                payment_intent: intent.id,
                charge: intent.latest_charge.map(Ref::into_id),
                amount: intent.amount_received,
                currency: intent.currency,
                metadata: intent.metadata,
            }
        }
        "payment_intent.payment_failed" => {
            let intent: PaymentIntent = object(event_type, data)?;
            let error = intent.last_payment_error;
            let (code, decline_code, message) = match error {
                Some(e) => (e.code, e.decline_code, e.message),
                None => (None, None, None),
            };
            GatewayEventKind::PaymentFailed {
                payment_intent: intent.id,
                code: code.unwrap_or_else(|| "payment_failed".into()),
                decline_code,
                message: message.unwrap_or_else(|| "the payment failed".into()),
                metadata: intent.metadata,
            }
        }
        "payment_intent.requires_action" => {
            let intent: PaymentIntent = object(event_type, data)?;
            GatewayEventKind::RequiresAction {
                payment_intent: intent.id,
                metadata: intent.metadata,
            }
        }
        "charge.refunded" => {
            let charge: Charge = object(event_type, data)?;
            GatewayEventKind::ChargeRefunded {
                charge: charge.id,
                payment_intent: charge.payment_intent.map(Ref::into_id),
                amount_refunded: charge.amount_refunded,
                currency: charge.currency,
                metadata: charge.metadata,
            }
        }
        "charge.dispute.created" => {
            let dispute: Dispute = object(event_type, data)?;
            GatewayEventKind::DisputeCreated {
                dispute: dispute.id,
                charge: dispute.charge.into_id(),
                payment_intent: dispute.payment_intent.map(Ref::into_id),
                amount: dispute.amount,
                currency: dispute.currency,
                reason: dispute.reason,
            }
        }
        "payment_method.detached" => {
            let method: PaymentMethod = object(event_type, data)?;
            GatewayEventKind::PaymentMethodDetached {
                payment_method: method.id,
            }
        }
        _ => GatewayEventKind::Other {
            event_type: envelope.event_type.clone(),
        },
    };
    Ok(GatewayEvent {
        id: envelope.id,
        created,
        livemode: envelope.livemode,
        account: envelope.account,
        kind,
    })
}
