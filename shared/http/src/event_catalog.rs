//! The event catalog in the OpenAPI document: one component schema per event type
//! (`event.account.created`: the envelope with that `type` and its `data` schema), and an
//! `x-event-types` list with each type's description and version, both generated from
//! [`EventType::ALL`], so the catalog cannot drift from what the code emits.

use billing_domain::events::record::EVENT_API_VERSION;
use billing_domain::events::types::EventType;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{OpenApi, Ref, RefOr};
use utoipa::Modify;

pub struct EventCatalog;

impl Modify for EventCatalog {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for t in EventType::ALL {
            let data: RefOr<Schema> = if components.schemas.contains_key(t.schema()) {
                Ref::from_schema_name(t.schema()).into()
            } else {
                ObjectBuilder::new()
                    .description(Some(format!(
                        "The {} as stored, secrets left out",
                        t.schema()
                    )))
                    .into()
            };
            let typed = ObjectBuilder::new()
                .property(
                    "type",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([t.as_str()])),
                )
                .property(
                    "api_version",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([EVENT_API_VERSION])),
                )
                .property("data", data.clone())
                .required("type")
                .required("data");
            components.schemas.insert(
                format!("event.{t}"),
                AllOfBuilder::new()
                    .item(Ref::from_schema_name("EventEnvelope"))
                    .item(typed)
                    .description(Some(t.description()))
                    .into(),
            );
        }
        let catalog: Vec<serde_json::Value> = EventType::ALL
            .iter()
            .map(|t| {
                serde_json::json!({
                    "type": t.as_str(),
                    "api_version": EVENT_API_VERSION,
                    "schema": format!("#/components/schemas/event.{t}"),
                    "description": t.description(),
                })
            })
            .collect();
        let extensions = openapi.extensions.get_or_insert_with(Extensions::default);
        extensions.merge(Extensions::from_iter([("x-event-types", catalog)]));
    }
}
