//! Packed items: subscriptions, invoices, domain events and audit records stored as their
//! keys, index entries, expiry, the fields a condition reads (a `version`) and one binary
//! attribute, [`PACKED`], holding the rest as JSON deflated over a preset dictionary. An
//! invoice is 2 to 3 KB of JSON; each is written transactionally (2 write units per KB)
//! with its `gsi1` copy (1 per KB), and a renewal writes its invoice three times, three
//! events and two audit records, so their size is most of what it costs (issue 20).
//!
//! The dictionary ([`DICTIONARY_V1`], `packed_dictionary.json`) holds the field names and
//! common values of invoices, events and audit records as they serialize, so that what
//! every record repeats costs a few bits a field: a renewal's invoice packs to about a
//! third of what it deflated to alone, and fits 1 KB with its keys. The attribute's first
//! byte names the dictionary it was deflated over, which can never change once written:
//! a new dictionary is a new version byte. Items packed before the dictionary (their
//! fields deflated alone under [`PACKED_BEFORE_DICTIONARY`]) and before packing (plain
//! attributes) read as before.
//!
//! Nothing else reads their fields in DynamoDB (no filter or projection names one), so
//! [`super::from_item`] inflates them back before deserializing, and every read and list
//! is unchanged. An attribute set on the item later (the sweep's `published`) wins
//! over the packed one. Erasing a packed item rewrites its packed attribute in the form
//! it was written in ([`payload`]).

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::StoreError;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Item, ENTITY_ATTRIBUTE};
use crate::keys::Key;

/// The attribute holding the packed fields: a version byte naming the dictionary, then
/// the fields' JSON raw-deflated over it (short: DynamoDB counts attribute names too).
const PACKED: &str = "pz";
/// The attribute items packed before the dictionary hold their fields in: their JSON
/// raw-deflated alone.
const PACKED_BEFORE_DICTIONARY: &str = "packed";

/// The dictionary new items are packed over.
const DICTIONARY_VERSION: u8 = 1;
/// Version 1's preset dictionary. Items written with it are read with it: changing a
/// byte of it makes them unreadable, so a new dictionary needs a new version (test
/// `the_dictionary_of_version_1_never_changes`).
const DICTIONARY_V1: &[u8] = include_bytes!("packed_dictionary.json");

fn dictionary(version: u8) -> Option<&'static [u8]> {
    match version {
        1 => Some(DICTIONARY_V1),
        _ => None,
    }
}

/// How an item's fields are packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// [`PACKED`], over the dictionary of its version byte.
    Dictionary(u8),
    /// [`PACKED_BEFORE_DICTIONARY`].
    Alone,
}

fn internal(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("{what}: {e}"))
}

/// `bytes` raw-deflated (no zlib header or checksum: DynamoDB keeps the item whole), over
/// `dictionary` if given.
fn deflate(bytes: &[u8], dictionary: Option<&[u8]>) -> Result<Vec<u8>, StoreError> {
    let mut compress = Compress::new(Compression::best(), false);
    if let Some(dictionary) = dictionary {
        compress
            .set_dictionary(dictionary)
            .map_err(|e| internal("deflating", e))?;
    }
    let mut out = Vec::with_capacity(bytes.len() / 2 + 64);
    loop {
        out.reserve(256);
        let read = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
        let status = compress
            .compress_vec(&bytes[read..], &mut out, FlushCompress::Finish)
            .map_err(|e| internal("deflating", e))?;
        if status == Status::StreamEnd {
            return Ok(out);
        }
    }
}

/// The inverse of [`deflate`] over the same dictionary.
fn inflate(deflated: &[u8], dictionary: Option<&[u8]>) -> Result<Vec<u8>, StoreError> {
    let unreadable = |e: &dyn std::fmt::Display| internal("unreadable packed fields", e);
    let mut decompress = Decompress::new(false);
    if let Some(dictionary) = dictionary {
        decompress
            .set_dictionary(dictionary)
            .map_err(|e| unreadable(&e))?;
    }
    let mut out = Vec::with_capacity(deflated.len() * 4);
    loop {
        out.reserve(1024);
        let (read, written) = (decompress.total_in(), decompress.total_out());
        let from = usize::try_from(read).unwrap_or(usize::MAX);
        let status = decompress
            .decompress_vec(&deflated[from..], &mut out, FlushDecompress::Finish)
            .map_err(|e| unreadable(&e))?;
        if status == Status::StreamEnd {
            return Ok(out);
        }
        // Input spent and nothing more out: the stream is cut short.
        if decompress.total_in() == read && decompress.total_out() == written {
            return Err(unreadable(&"truncated"));
        }
    }
}

/// `fields` packed in `form`, as the attribute that holds them.
fn packed(fields: &Map<String, Value>, form: Form) -> Result<(String, AttributeValue), StoreError> {
    let json = serde_json::to_vec(fields).map_err(|e| internal("unpackable fields", e))?;
    let (name, bytes) = match form {
        Form::Dictionary(version) => {
            let dictionary = dictionary(version)
                .ok_or_else(|| internal("packing", format!("no dictionary {version}")))?;
            let mut bytes = vec![version];
            bytes.extend(deflate(&json, Some(dictionary))?);
            (PACKED, bytes)
        }
        Form::Alone => (PACKED_BEFORE_DICTIONARY, deflate(&json, None)?),
    };
    Ok((name.to_owned(), AttributeValue::B(Blob::new(bytes))))
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
    let (name, value) = packed(&fields, Form::Dictionary(DICTIONARY_VERSION))?;
    item.insert(name, value);
    item.insert(
        ENTITY_ATTRIBUTE.to_owned(),
        AttributeValue::S(entity.to_owned()),
    );
    Ok(item)
}

/// An item's packed fields, and how they were packed.
type Packed = (Form, Map<String, Value>);

/// The packed fields of `item` and their form, if it has any.
fn packed_fields(item: &Item) -> Result<Option<Packed>, StoreError> {
    let (form, json) = if let Some(AttributeValue::B(blob)) = item.get(PACKED) {
        let Some((&version, deflated)) = blob.as_ref().split_first() else {
            return Err(internal("unreadable packed fields", "empty"));
        };
        let dictionary = dictionary(version).ok_or_else(|| {
            internal(
                "unreadable packed fields",
                format!("no dictionary {version}"),
            )
        })?;
        (
            Form::Dictionary(version),
            inflate(deflated, Some(dictionary))?,
        )
    } else if let Some(AttributeValue::B(blob)) = item.get(PACKED_BEFORE_DICTIONARY) {
        (Form::Alone, inflate(blob.as_ref(), None)?)
    } else {
        return Ok(None);
    };
    serde_json::from_slice(&json)
        .map(|fields| Some((form, fields)))
        .map_err(|e| internal("unreadable packed fields", e))
}

/// Puts the packed fields of `item`, if it has any, back as plain attributes (what every
/// read does; public for tests that scan the table's items).
pub fn unpack(item: &mut Item) -> Result<(), StoreError> {
    let Some((_, fields)) = packed_fields(item)? else {
        return Ok(());
    };
    item.remove(PACKED);
    item.remove(PACKED_BEFORE_DICTIONARY);
    for (name, value) in fields {
        let value =
            serde_dynamo::to_attribute_value(value).map_err(|e| internal("unreadable item", e))?;
        item.entry(name).or_insert(value);
    }
    Ok(())
}

/// The attributes that store `fields` of an item, replacing what it holds under those
/// names: its packed attribute repacked in the form it was written in when the item is
/// packed, else plain attributes (an item written before packing).
pub(super) fn payload(
    item: &Item,
    fields: Map<String, Value>,
) -> Result<Vec<(String, AttributeValue)>, StoreError> {
    if let Some((form, mut all)) = packed_fields(item)? {
        all.extend(fields);
        return Ok(vec![packed(&all, form)?]);
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

    /// `item` as it would have been written before the dictionary: its fields deflated
    /// alone under the old attribute.
    fn packed_before_dictionary(item: &Item) -> Item {
        let (_, fields) = packed_fields(item).unwrap().unwrap();
        let mut old = item.clone();
        old.remove(PACKED);
        let (name, value) = packed(&fields, Form::Alone).unwrap();
        old.insert(name, value);
        old
    }

    #[test]
    fn a_packed_event_reads_as_written_and_so_do_ones_written_before_the_dictionary_or_packing() {
        let tenant = TenantId::from_ulid(ulid::Ulid::new());
        let event = event();
        let packed = events::event_item(tenant, &event).unwrap();
        assert!(packed.contains_key(PACKED) && !packed.contains_key("data"));
        assert!(!packed.contains_key(PACKED_BEFORE_DICTIONARY));
        assert_eq!(from_item::<DomainEvent>(packed.clone()).unwrap(), event);
        // Marked published by the sweep (a plain attribute set later): that wins.
        let mut marked = packed.clone();
        marked.insert("published".into(), AttributeValue::Bool(true));
        assert!(from_item::<DomainEvent>(marked).unwrap().published);
        let before_dictionary = packed_before_dictionary(&packed);
        assert!(!before_dictionary.contains_key(PACKED));
        assert_eq!(
            from_item::<DomainEvent>(before_dictionary.clone()).unwrap(),
            event
        );
        let key = keys::event_of_resource(tenant, &event.id.to_string(), &event.resource_id);
        let plain = to_item("event", &event, &key).unwrap();
        assert_eq!(from_item::<DomainEvent>(plain.clone()).unwrap(), event);
        // What it saves: under half its plain size, and smaller over the dictionary (this
        // event's lines are not shaped as the dictionary's invoice lines).
        let sizes = [&packed, &before_dictionary, &plain].map(item_bytes);
        let [packed, alone, plain] = sizes;
        assert!(
            2 * alone < plain,
            "{alone} bytes packed alone, {plain} plain"
        );
        assert!(
            packed + 100 < alone,
            "{packed} bytes over the dictionary, {alone} alone"
        );
    }

    #[test]
    fn erasing_rewrites_the_packed_fields_in_the_form_they_were_written_and_plain_ones_of_an_old_item(
    ) {
        let tenant = TenantId::from_ulid(ulid::Ulid::new());
        let event = event();
        let erased = Map::from_iter([("data".to_owned(), json!({"id": "in_01JEXAMPLE"}))]);
        let packed = events::event_item(tenant, &event).unwrap();
        for (item, attribute) in [
            (packed.clone(), PACKED),
            (packed_before_dictionary(&packed), PACKED_BEFORE_DICTIONARY),
        ] {
            let set = payload(&item, erased.clone()).unwrap();
            assert_eq!(set.len(), 1);
            assert_eq!(set[0].0, attribute);
            let mut rewritten = item;
            rewritten.extend(set);
            let read: DomainEvent = from_item(rewritten).unwrap();
            assert_eq!(read.data, json!({"id": "in_01JEXAMPLE"}));
            assert_eq!(
                (read.id, &read.previous_attributes),
                (event.id, &event.previous_attributes)
            );
            assert!(!format!("{read:?}").contains("ada@example.com"));
        }

        let key = keys::event_of_resource(tenant, &event.id.to_string(), &event.resource_id);
        let plain = to_item("event", &event, &key).unwrap();
        let set = payload(&plain, erased).unwrap();
        assert_eq!(set[0].0, "data");
    }

    /// Items packed over version 1 are read with these very bytes: a dictionary that
    /// differs by one byte inflates them wrongly or not at all. Never change
    /// `packed_dictionary.json`: add a dictionary under a new version byte.
    #[test]
    fn the_dictionary_of_version_1_never_changes() {
        use sha2::{Digest, Sha256};
        let digest: String = Sha256::digest(DICTIONARY_V1)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(
            (DICTIONARY_V1.len(), digest.as_str()),
            (
                7481,
                "45441bf0a05d56cd8fd9d2235ef02822600f650d9ffe1995e77b201a3cd4e738"
            )
        );
        assert_eq!(DICTIONARY_VERSION, 1);
    }

    #[test]
    fn a_packed_attribute_cut_short_or_of_an_unknown_dictionary_is_an_error_not_a_hang() {
        let fields = Map::from_iter([("note".to_owned(), json!("x".repeat(2000)))]);
        let (name, AttributeValue::B(whole)) =
            packed(&fields, Form::Dictionary(DICTIONARY_VERSION)).unwrap()
        else {
            panic!("a binary attribute");
        };
        let whole = whole.into_inner();
        let cut = Item::from([(name.clone(), AttributeValue::B(Blob::new(&whole[..6])))]);
        assert!(packed_fields(&cut).is_err());
        let mut unknown = whole.clone();
        unknown[0] = 2;
        let unknown = Item::from([(name, AttributeValue::B(Blob::new(unknown)))]);
        assert!(packed_fields(&unknown).is_err());
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            "\\PC{0,40}".prop_map(Value::from),
            // What the dictionary holds, so that long matches are tried too.
            prop::sample::select(vec!["subscription_cycle", "2026-12-01T00:00:00Z", "usd"])
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
                prop::collection::btree_map("[a-z_]{1,20}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_json_object_reads_back_as_packed_in_either_form(
            fields in proptest::collection::btree_map("[a-z_]{1,20}", json_value(), 0..12)
        ) {
            let fields: Map<String, Value> = fields.into_iter().collect();
            for form in [Form::Dictionary(DICTIONARY_VERSION), Form::Alone] {
                let (name, value) = packed(&fields, form).unwrap();
                let item = Item::from([(name, value)]);
                let (read_form, read) = packed_fields(&item).unwrap().unwrap();
                proptest::prop_assert_eq!(read_form, form);
                proptest::prop_assert_eq!(&read, &fields);
            }
        }
    }
}
