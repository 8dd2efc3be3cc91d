//! The table's definition: the one source of truth for the local stack. A test checks
//! `template.yaml` against it, so local and cloud tables cannot drift.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use crate::keys::{
    DUE_INDEX, DUE_PK, DUE_SK, GSI1, GSI1_PK, GSI1_SK, PENDING_INDEX, PENDING_PK, PENDING_SK, PK,
    SK, TTL,
};

/// Key attributes (all strings) and the indexes over them.
pub const KEY_ATTRIBUTES: &[&str] = &[
    PK, SK, GSI1_PK, GSI1_SK, DUE_PK, DUE_SK, PENDING_PK, PENDING_SK,
];
pub const PRIMARY_KEY: (&str, &str) = (PK, SK);
/// Global secondary indexes: name, partition key, sort key, what they project. `gsi1`
/// serves lists, so it holds whole items; `due` and `pending` are read for their keys
/// alone (the sort key names the item), so they hold only keys: an index entry costs a
/// write unit, not one per KB of the item, and the item's every update that leaves its
/// keys alone costs the index nothing.
pub const GLOBAL_INDEXES: &[(&str, &str, &str, ProjectionType)] = &[
    (GSI1, GSI1_PK, GSI1_SK, ProjectionType::All),
    (DUE_INDEX, DUE_PK, DUE_SK, ProjectionType::KeysOnly),
    (
        PENDING_INDEX,
        PENDING_PK,
        PENDING_SK,
        ProjectionType::KeysOnly,
    ),
];
pub const TTL_ATTRIBUTE: &str = TTL;

fn key_schema(hash: &str, range: &str) -> Vec<KeySchemaElement> {
    [(hash, KeyType::Hash), (range, KeyType::Range)]
        .into_iter()
        .map(|(name, kind)| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("name and key type are set")
        })
        .collect()
}

/// Creates the table (on-demand, with its indexes and TTL) unless it already exists.
pub async fn ensure_table(client: &Client, name: &str) -> Result<(), aws_sdk_dynamodb::Error> {
    let exists = client
        .describe_table()
        .table_name(name)
        .send()
        .await
        .is_ok();
    if exists {
        return Ok(());
    }
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(PRIMARY_KEY.0, PRIMARY_KEY.1)));
    for attribute in KEY_ATTRIBUTES {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(*attribute)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set"),
        );
    }
    for (index, hash, range, projected) in GLOBAL_INDEXES {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(*index)
                .set_key_schema(Some(key_schema(hash, range)))
                .projection(
                    Projection::builder()
                        .projection_type(projected.clone())
                        .build(),
                )
                .build()
                .expect("name, keys and projection are set"),
        );
    }
    request.send().await?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .expect("name and flag are set"),
        )
        .send()
        .await?;
    Ok(())
}
