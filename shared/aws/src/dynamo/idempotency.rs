use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use billing_app::ports::*;
use billing_domain::kernel::ids::TenantId;
use jiff::Timestamp;

use super::{epoch_seconds, sdk_error, DynamoStore, ENTITY_ATTRIBUTE};
use crate::keys::{self, TTL};

/// Who holds a claim, and until when (epoch milliseconds: a lease is seconds long).
const OWNER: &str = "lease_owner";
const LEASE_UNTIL: &str = "lease_until";

fn epoch_millis(t: Timestamp) -> AttributeValue {
    AttributeValue::N(t.as_millisecond().to_string())
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        terms: &ClaimTerms<'_>,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut item = keys::idempotency(tenant, key).all();
        item.insert(
            "fingerprint".into(),
            AttributeValue::S(terms.fingerprint.to_owned()),
        );
        item.insert(OWNER.into(), AttributeValue::S(terms.owner.to_owned()));
        item.insert(LEASE_UNTIL.into(), epoch_millis(terms.lease_until));
        item.insert(TTL.into(), epoch_seconds(terms.expires_at));
        item.insert(
            ENTITY_ATTRIBUTE.into(),
            AttributeValue::S("idempotency_key".into()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // An expired record that TTL has not swept yet counts as absent; so does the
            // same request's unanswered claim whose lease ran out (claims written before
            // leases existed have none, and are stuck: they may be taken over too). The
            // lease is read and replaced in this one conditional write, so of two retries
            // taking over one claim, one wins.
            .condition_expression(
                "attribute_not_exists(pk) OR #ttl < :now \
                 OR (fingerprint = :fingerprint AND attribute_not_exists(response_status) \
                     AND (attribute_not_exists(#lease_until) OR #lease_until <= :now_ms))",
            )
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_names("#lease_until", LEASE_UNTIL)
            .expression_attribute_values(":now", epoch_seconds(terms.now))
            .expression_attribute_values(":now_ms", epoch_millis(terms.now))
            .expression_attribute_values(
                ":fingerprint",
                AttributeValue::S(terms.fingerprint.to_owned()),
            )
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
        if text("fingerprint").as_deref() != Some(terms.fingerprint) {
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
        owner: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(keys::idempotency(tenant, key).primary()))
            .update_expression("SET response_status = :status, response_body = :body")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":status", AttributeValue::N(response.status.to_string()))
            .expression_attribute_values(":body", AttributeValue::S(response.body.clone()))
            .send()
            .await;
        match result {
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            other => other.map(drop).map_err(sdk_error),
        }
    }

    async fn release_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(keys::idempotency(tenant, key).primary()))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .send()
            .await;
        match result {
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            other => other.map(drop).map_err(sdk_error),
        }
    }
}
