use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use billing_app::ports::*;
use billing_domain::kernel::ids::TenantId;
use jiff::Timestamp;

use super::{epoch_seconds, sdk_error, DynamoStore, ENTITY_ATTRIBUTE};
use crate::keys::{self, TTL};

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        fingerprint: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut item = keys::idempotency(tenant, key).all();
        item.insert(
            "fingerprint".into(),
            AttributeValue::S(fingerprint.to_owned()),
        );
        item.insert(TTL.into(), epoch_seconds(expires_at));
        item.insert(
            ENTITY_ATTRIBUTE.into(),
            AttributeValue::S("idempotency_key".into()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // An expired record that TTL has not swept yet counts as absent.
            .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":now", epoch_seconds(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(IdempotencyClaim::Claimed),
            Err(err) => err,
        };
        let existing = match err.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(failed)) => failed.item.clone(),
            _ => return Err(sdk_error(err)),
        };
        let Some(existing) = existing else {
            return Ok(IdempotencyClaim::InProgress);
        };
        let text = |name: &str| existing.get(name).and_then(|v| v.as_s().ok()).cloned();
        if text("fingerprint").as_deref() != Some(fingerprint) {
            return Ok(IdempotencyClaim::Mismatch);
        }
        let status = existing
            .get("response_status")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok());
        Ok(match (status, text("response_body")) {
            (Some(status), Some(body)) => IdempotencyClaim::Replay(StoredResponse { status, body }),
            _ => IdempotencyClaim::InProgress,
        })
    }

    async fn complete_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(keys::idempotency(tenant, key).primary()))
            .update_expression("SET response_status = :status, response_body = :body")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":status", AttributeValue::N(response.status.to_string()))
            .expression_attribute_values(":body", AttributeValue::S(response.body.clone()))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn release_idempotency_key(&self, tenant: TenantId, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(keys::idempotency(tenant, key).primary()))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}
