//! What a purge erases outside the account's own item, one item at a time: the work is
//! idempotent (deleting twice, erasing erased values), so a purge that failed half-way
//! simply runs again; the account's tombstone, written last, makes it happen once.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::*;
use billing_domain::customers::erasure::{erase_object, erase_values};
use billing_domain::events::record::{AuditRecord, DomainEvent};
use billing_domain::kernel::ids::{AccountId, TenantId};
use serde_json::{Map, Value};

use super::packed::payload;
use super::{from_item, sdk_error, DynamoStore, Item};
use crate::keys::{self, Key};

fn item_key(item: &Item) -> Result<Key, StoreError> {
    keys::item_key(item).ok_or_else(|| StoreError::Internal("an item without its key".into()))
}

fn erased(value: &Value) -> Value {
    let mut value = value.clone();
    erase_object(&mut value);
    value
}

impl DynamoStore {
    async fn delete_item(&self, key: &Key) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key.primary()))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Sets `attributes` of the item at `key`, if it still exists.
    async fn set_attributes(
        &self,
        key: &Key,
        attributes: &[(String, AttributeValue)],
    ) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.primary()))
            .condition_expression("attribute_exists(pk)");
        let mut sets = Vec::new();
        for (i, (name, value)) in attributes.iter().enumerate() {
            sets.push(format!("#a{i} = :v{i}"));
            update = update
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":v{i}"), value.clone());
        }
        match update
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Gone meanwhile (expired): nothing left to erase.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(sdk_error(err)),
        }
    }
}

#[async_trait]
impl ErasureStore for DynamoStore {
    async fn erase_account_records(
        &self,
        tenant: TenantId,
        account: AccountId,
        entities: &[String],
    ) -> Result<(), StoreError> {
        self.delete_item(&keys::payment_profile(tenant, account))
            .await?;
        let notices = self
            .query_all(self.query_partition(
                keys::account_partition(tenant, account),
                &keys::dunning_notices_of(account),
            ))
            .await?;
        for notice in notices {
            let key = item_key(&notice)?;
            self.delete_item(&key).await?;
        }
        for entity in entities {
            let audit = self
                .query_all(self.query_gsi1(keys::audit_entity_index(tenant, entity)))
                .await?;
            for item in audit {
                let key = item_key(&item)?;
                let stored = item.clone();
                let mut record: AuditRecord = from_item(item)?;
                erase_values(&mut record.changes);
                let fields =
                    Map::from_iter([("changes".to_owned(), Value::Object(record.changes))]);
                self.set_attributes(&key, &payload(&stored, fields)?)
                    .await?;
            }
            let events = self
                .query_all(self.query_gsi1(keys::event_resource_index(tenant, entity)))
                .await?;
            for item in events {
                let key = item_key(&item)?;
                let stored = item.clone();
                let event: DomainEvent = from_item(item)?;
                let previous = event.previous_attributes.as_ref().map(erased);
                let fields = Map::from_iter([
                    ("data".to_owned(), erased(&event.data)),
                    (
                        "previous_attributes".to_owned(),
                        previous.unwrap_or(Value::Null),
                    ),
                ]);
                self.set_attributes(&key, &payload(&stored, fields)?)
                    .await?;
            }
        }
        Ok(())
    }
}
