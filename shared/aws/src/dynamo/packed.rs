//! Packed items: invoices, domain events and audit records stored as their keys, index
//! entries, expiry, the fields a condition reads (an invoice's `version`) and one deflated
//! binary attribute, [`PACKED`], holding the rest as JSON. An invoice is 2 to 3 KB of
//! JSON, which deflates to a third or less, and events hold resources as the API returns
//! them; each is written transactionally (2 write units per KB) with its `gsi1` copy
//! (1 per KB), and a renewal writes its invoice three times, three events and two audit
//! records, so their size is most of what it costs (issue 20).
//!
//! Nothing else reads their fields in DynamoDB (no filter or projection names one), so
//! [`super::from_item`] inflates them back before deserializing, and every read and list
//! is unchanged. An attribute set on the item later (the sweep's `published`) wins
//! over the packed one. Items written before carry plain attributes and read as before;
//! erasing a packed item rewrites its packed attribute ([`payload`]).

use std::io::{Read, Write};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::StoreError;
use flate2::Compression;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Item, ENTITY_ATTRIBUTE};
use crate::keys::Key;

/// The attribute holding the packed fields: a deflated JSON object.
pub(super) const PACKED: &str = "packed";

fn internal(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("{what}: {e}"))
}

/// `fields` as the packed attribute.
fn packed(fields: &Map<String, Value>) -> Result<AttributeValue, StoreError> {
    let json = serde_json::to_vec(fields).map_err(|e| internal("unpackable fields", e))?;
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), Compression::best());
    encoder
        .write_all(&json)
        .map_err(|e| internal("deflating", e))?;
    let deflated = encoder.finish().map_err(|e| internal("deflating", e))?;
    Ok(AttributeValue::B(Blob::new(deflated)))
}

/// An entity as a table item with its fields packed but those named in `plain` (which
/// conditions read), its keys and what it is.
pub(super) fn to_packed_item<T: Serialize>(
    entity: &str,
    value: &T,
    key: &Key,
    plain: &[&str],
) -> Result<Item, StoreError> {
    let Value::Object(mut fields) =
        serde_json::to_value(value).map_err(|e| internal("unstorable item", e))?
    else {
        return Err(StoreError::Internal(format!("{entity} is not an object")));
    };
    let kept: Map<String, Value> = plain
        .iter()
        .filter_map(|name| fields.remove_entry(*name))
        .collect();
    let mut item: Item = serde_dynamo::to_item(kept).map_err(|e| internal("unstorable item", e))?;
    item.extend(key.all());
    item.insert(PACKED.to_owned(), packed(&fields)?);
    item.insert(
        ENTITY_ATTRIBUTE.to_owned(),
        AttributeValue::S(entity.to_owned()),
    );
    Ok(item)
}

/// The packed fields of `item`, if it has any.
fn packed_fields(item: &Item) -> Result<Option<Map<String, Value>>, StoreError> {
    let Some(AttributeValue::B(blob)) = item.get(PACKED) else {
        return Ok(None);
    };
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(blob.as_ref())
        .read_to_end(&mut json)
        .map_err(|e| internal("unreadable packed fields", e))?;
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(|e| internal("unreadable packed fields", e))
}

/// Puts the packed fields of `item`, if it has any, back as plain attributes (what every
/// read does; public for tests that scan the table's items).
pub fn unpack(item: &mut Item) -> Result<(), StoreError> {
    let Some(fields) = packed_fields(item)? else {
        return Ok(());
    };
    item.remove(PACKED);
    for (name, value) in fields {
        let value =
            serde_dynamo::to_attribute_value(value).map_err(|e| internal("unreadable item", e))?;
        item.entry(name).or_insert(value);
    }
    Ok(())
}

/// The attributes that store `fields` of an item, replacing what it holds under those
/// names: its packed attribute repacked when the item is packed, else plain attributes
/// (an item written before packing).
pub(super) fn payload(
    item: &Item,
    fields: Map<String, Value>,
) -> Result<Vec<(String, AttributeValue)>, StoreError> {
    if let Some(mut all) = packed_fields(item)? {
        all.extend(fields);
        return Ok(vec![(PACKED.to_owned(), packed(&all)?)]);
    }
    fields
        .into_iter()
        .map(|(name, value)| {
            serde_dynamo::to_attribute_value(value)
                .map(|value| (name, value))
                .map_err(|e| internal("unstorable value", e))
        })
        .collect()
}

/// An item's size as DynamoDB counts it for capacity: each attribute's name and value
/// (strings and binaries by length, numbers about one byte per two digits, maps and
/// lists their elements plus a few bytes each), per the developer guide's "Item sizes and
/// formats". For the simulation, which prices what a write consumes.
pub fn item_bytes(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_bytes(value))
        .sum()
}

fn value_bytes(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_bytes(v))
                .sum::<usize>()
        }
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_bytes(v)).sum::<usize>(),
        AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
        AttributeValue::Ns(n) => n.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(b) => b.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use billing_domain::events::record::DomainEvent;
    use billing_domain::kernel::ids::{EventId, TenantId};
    use serde_json::json;

    use super::*;
    use crate::dynamo::{events, from_item, to_item};
    use crate::keys;

    fn event() -> DomainEvent {
        // An invoice-sized resource: lines repeat their shape, as an invoice's do.
        let lines: Vec<_> = (0..6)
            .map(|i| {
                json!({"id": format!("il_{i:026}"), "description": "Pro plan (monthly)",
                "amount": 4900, "currency": "usd", "quantity": 1, "period": {
                "start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}})
            })
            .collect();
        serde_json::from_value(json!({
            "id": EventId::from_ulid(ulid::Ulid::new()).to_string(), "type": "invoice.finalized",
            "api_version": "2026-01-01", "created": "2026-12-01T00:00:01Z", "livemode": false,
            "resource_id": "in_01JEXAMPLE", "data": {"id": "in_01JEXAMPLE", "lines": lines,
            "status": "open", "total": 29400, "customer_email": "ada@example.com"},
            "previous_attributes": {"status": "draft"}
        }))
        .unwrap()
    }

    #[test]
    fn a_packed_event_reads_as_written_and_so_does_one_written_before_packing() {
        let tenant = TenantId::from_ulid(ulid::Ulid::new());
        let event = event();
        let packed = events::event_item(tenant, &event).unwrap();
        assert!(packed.contains_key(PACKED) && !packed.contains_key("data"));
        assert_eq!(from_item::<DomainEvent>(packed.clone()).unwrap(), event);
        // Marked published by the sweep (a plain attribute set later): that wins.
        let mut marked = packed.clone();
        marked.insert("published".into(), AttributeValue::Bool(true));
        assert!(from_item::<DomainEvent>(marked).unwrap().published);
        let key = keys::event_of_resource(tenant, &event.id.to_string(), &event.resource_id);
        let plain = to_item("event", &event, &key).unwrap();
        assert_eq!(from_item::<DomainEvent>(plain.clone()).unwrap(), event);
        // What it saves: the item is under half its plain size.
        let (packed, plain) = (item_bytes(&packed), item_bytes(&plain));
        assert!(2 * packed < plain, "{packed} bytes packed, {plain} plain");
    }

    #[test]
    fn erasing_rewrites_the_packed_fields_of_a_packed_item_and_the_plain_ones_of_an_old_one() {
        let tenant = TenantId::from_ulid(ulid::Ulid::new());
        let event = event();
        let erased = Map::from_iter([("data".to_owned(), json!({"id": "in_01JEXAMPLE"}))]);
        let packed = events::event_item(tenant, &event).unwrap();
        let set = payload(&packed, erased.clone()).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set[0].0, PACKED);
        let mut rewritten = packed;
        rewritten.extend(set);
        let read: DomainEvent = from_item(rewritten).unwrap();
        assert_eq!(read.data, json!({"id": "in_01JEXAMPLE"}));
        assert_eq!(
            (read.id, &read.previous_attributes),
            (event.id, &event.previous_attributes)
        );
        assert!(!format!("{read:?}").contains("ada@example.com"));

        let key = keys::event_of_resource(tenant, &event.id.to_string(), &event.resource_id);
        let plain = to_item("event", &event, &key).unwrap();
        let set = payload(&plain, erased).unwrap();
        assert_eq!(set[0].0, "data");
    }
}
