//! Saves the local table to a JSON-lines file on shutdown and loads it on start, because
//! the stand-in keeps everything in memory. Items are written in DynamoDB's typed JSON
//! (`{"S": …}`, `{"B": base64}`, …), the format of DynamoDB's own exports, so that binary
//! attributes (packed items) survive; plain-JSON lines of older snapshots still load.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use base64::Engine;
use serde_json::{json, Map, Value};

pub type SnapshotError = Box<dyn std::error::Error + Send + Sync>;

/// Writes every item of `table` to `path`, one JSON object per line. Returns the count.
pub async fn save(client: &Client, table: &str, path: &Path) -> Result<usize, SnapshotError> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut start = None;
    let mut count = 0;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        for item in page.items() {
            writeln!(out, "{}", typed_item(item))?;
            count += 1;
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    out.flush()?;
    Ok(count)
}

/// Loads a snapshot written by [`save`] into `table`. Returns the count.
pub async fn load(client: &Client, table: &str, path: &Path) -> Result<usize, SnapshotError> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut batch = Vec::new();
    let mut count = 0;
    for line in file.lines() {
        let json: Value = serde_json::from_str(&line?)?;
        let item = match json {
            Value::Object(fields) if is_typed(&fields) => fields
                .into_iter()
                .map(|(name, value)| Ok((name, attribute(value)?)))
                .collect::<Result<_, SnapshotError>>()?,
            plain => serde_dynamo::to_item(plain)?,
        };
        batch.push(
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                .build(),
        );
        if batch.len() == 25 {
            count += write(client, table, std::mem::take(&mut batch)).await?;
        }
    }
    count += write(client, table, batch).await?;
    Ok(count)
}

async fn write(
    client: &Client,
    table: &str,
    mut batch: Vec<WriteRequest>,
) -> Result<usize, SnapshotError> {
    let count = batch.len();
    while !batch.is_empty() {
        let output = client
            .batch_write_item()
            .request_items(table, std::mem::take(&mut batch))
            .send()
            .await?;
        batch = output
            .unprocessed_items
            .and_then(|mut m| m.remove(table))
            .unwrap_or_default();
    }
    Ok(count)
}

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn typed_item(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(name, value)| (name.clone(), typed(value)))
            .collect(),
    )
}

fn typed(value: &AttributeValue) -> Value {
    let blob = |b: &Blob| Value::String(BASE64.encode(b.as_ref()));
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": blob(b) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Ss(ss) => json!({ "SS": ss }),
        AttributeValue::Ns(ns) => json!({ "NS": ns }),
        AttributeValue::Bs(bs) => json!({ "BS": bs.iter().map(blob).collect::<Vec<_>>() }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(typed).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": typed_item(m) }),
        _ => json!({ "NULL": true }),
    }
}

/// A line of typed JSON: every attribute is an object of one type tag.
fn is_typed(fields: &Map<String, Value>) -> bool {
    const TAGS: [&str; 10] = ["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M"];
    fields.values().all(|value| {
        value
            .as_object()
            .is_some_and(|o| o.len() == 1 && o.keys().all(|k| TAGS.contains(&k.as_str())))
    })
}

fn attribute(value: Value) -> Result<AttributeValue, SnapshotError> {
    let Value::Object(tagged) = value else {
        return Err(format!("not a typed attribute: {value}").into());
    };
    let Some((tag, value)) = tagged.into_iter().next() else {
        return Err("an attribute without a type".into());
    };
    let text = |value: Value| match value {
        Value::String(s) => Ok(s),
        other => Err(SnapshotError::from(format!("{tag}: not a string: {other}"))),
    };
    let list = |value: Value| match value {
        Value::Array(items) => Ok(items),
        other => Err(SnapshotError::from(format!("{tag}: not a list: {other}"))),
    };
    let blob = |value: Value| -> Result<Blob, SnapshotError> {
        Ok(Blob::new(BASE64.decode(text(value)?)?))
    };
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(text(value)?),
        "N" => AttributeValue::N(text(value)?),
        "B" => AttributeValue::B(blob(value)?),
        "BOOL" => AttributeValue::Bool(value.as_bool().unwrap_or_default()),
        "NULL" => AttributeValue::Null(true),
        "SS" => AttributeValue::Ss(
            list(value)?
                .into_iter()
                .map(text)
                .collect::<Result<_, _>>()?,
        ),
        "NS" => AttributeValue::Ns(
            list(value)?
                .into_iter()
                .map(text)
                .collect::<Result<_, _>>()?,
        ),
        "BS" => AttributeValue::Bs(
            list(value)?
                .into_iter()
                .map(blob)
                .collect::<Result<_, _>>()?,
        ),
        "L" => AttributeValue::L(
            list(value)?
                .into_iter()
                .map(attribute)
                .collect::<Result<_, _>>()?,
        ),
        _ => match value {
            Value::Object(fields) => AttributeValue::M(
                fields
                    .into_iter()
                    .map(|(name, value)| Ok((name, attribute(value)?)))
                    .collect::<Result<_, SnapshotError>>()?,
            ),
            other => return Err(format!("M: not a map: {other}").into()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attribute_type_survives_a_line_and_plain_lines_still_load() {
        let item: HashMap<String, AttributeValue> = [
            ("pk", AttributeValue::S("T#1".into())),
            ("n", AttributeValue::N("12.5".into())),
            ("packed", AttributeValue::B(Blob::new(vec![0u8, 159, 255]))),
            ("flag", AttributeValue::Bool(true)),
            ("none", AttributeValue::Null(true)),
            ("tags", AttributeValue::Ss(vec!["a".into(), "b".into()])),
            ("nums", AttributeValue::Ns(vec!["1".into()])),
            ("blobs", AttributeValue::Bs(vec![Blob::new(vec![1u8])])),
            (
                "list",
                AttributeValue::L(vec![AttributeValue::S("x".into())]),
            ),
            (
                "map",
                AttributeValue::M([("k".to_owned(), AttributeValue::N("1".into()))].into()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let line = typed_item(&item).to_string();
        let Value::Object(fields) = serde_json::from_str::<Value>(&line).unwrap() else {
            panic!("not an object: {line}");
        };
        assert!(is_typed(&fields));
        let back: HashMap<String, AttributeValue> = fields
            .into_iter()
            .map(|(k, v)| (k, attribute(v).unwrap()))
            .collect();
        assert_eq!(back, item);
        // An older snapshot's plain line is not mistaken for a typed one.
        let Value::Object(plain) = json!({"pk": "T#1", "amount": 5, "m": {"S": "x"}}) else {
            unreachable!()
        };
        assert!(!is_typed(&plain));
    }
}
