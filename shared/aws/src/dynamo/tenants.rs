use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use billing_app::ports::*;
use billing_domain::customers::access::ApiKey;
use billing_domain::customers::limits::{self, LimitSettings};
use billing_domain::customers::staff::{IdentityProvider, IssuerTrust};
use billing_domain::customers::tenant::Tenant;
use billing_domain::kernel::ids::{ApiKeyId, TenantId};
use billing_domain::kernel::time::later;
use jiff::Timestamp;

use super::{epoch_seconds, sdk_error, to_item, DynamoStore, ENTITY_ATTRIBUTE};
use crate::keys::{self, TTL};

#[async_trait]
impl TenantStore for DynamoStore {
    async fn create_tenant(&self, tenant: &Tenant, first_key: &ApiKey) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            to_item("tenant", tenant, &keys::tenant(tenant.id))?,
            StoreError::AlreadyExists { entity: "tenant" },
        )?
        .create(
            key_item(first_key)?,
            StoreError::AlreadyExists { entity: "api_key" },
        )?;
        tx.commit().await
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        self.get(&keys::tenant(id)).await
    }
}

fn key_item(key: &ApiKey) -> Result<HashMap<String, AttributeValue>, StoreError> {
    to_item("api_key", key, &keys::api_key(key.tenant_id, key.id))
}

/// The condition that a stored key exists and is not revoked (`:null` is [`null_value`]).
const NOT_REVOKED: &str = "attribute_exists(pk) AND (attribute_not_exists(revoked_at) OR attribute_type(revoked_at, :null))";

fn null_value() -> HashMap<String, AttributeValue> {
    HashMap::from([(":null".to_owned(), AttributeValue::S("NULL".into()))])
}

#[async_trait]
impl ApiKeyStore for DynamoStore {
    async fn get_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
    ) -> Result<Option<ApiKey>, StoreError> {
        self.get(&keys::api_key(tenant, id)).await
    }

    async fn insert_api_key(&self, key: &ApiKey, change: &Change) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            key_item(key)?,
            StoreError::AlreadyExists { entity: "api_key" },
        )?
        .record(key.tenant_id, change)?;
        tx.commit().await
    }

    async fn revoke_api_key(&self, key: &ApiKey, change: &Change) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.put(
            key_item(key)?,
            NOT_REVOKED,
            Some(null_value()),
            StoreError::VersionConflict { entity: "api_key" },
        )?
        .record(key.tenant_id, change)?;
        tx.commit().await
    }

    async fn roll_api_key(
        &self,
        retired: &ApiKey,
        successor: &ApiKey,
        retirement: &Change,
        creation: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.put(
            key_item(retired)?,
            NOT_REVOKED,
            Some(null_value()),
            StoreError::VersionConflict { entity: "api_key" },
        )?
        .create(
            key_item(successor)?,
            StoreError::AlreadyExists { entity: "api_key" },
        )?
        .record(retired.tenant_id, retirement)?
        .record(successor.tenant_id, creation)?;
        tx.commit().await
    }

    async fn record_key_use(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        at: Timestamp,
        stale_since: Timestamp,
    ) -> Result<(), StoreError> {
        // Both times are whole seconds in RFC 3339, so they compare as strings.
        let text = |t: Timestamp| AttributeValue::S(t.to_string());
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(keys::api_key(tenant, id).primary()))
            .update_expression("SET last_used_at = :at")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(last_used_at) \
                 OR attribute_type(last_used_at, :null) OR last_used_at <= :stale)",
            )
            .expression_attribute_values(":at", text(at))
            .expression_attribute_values(":stale", text(stale_since))
            .expression_attribute_values(":null", AttributeValue::S("NULL".into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(sdk_error(err)),
        }
    }

    async fn list_api_keys(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>, StoreError> {
        let start = page
            .starting_after
            .as_deref()
            .and_then(|id| ApiKeyId::parse(id, "starting_after").ok())
            .map(|id| keys::api_key(tenant, id).primary());
        let query = self.query_partition(keys::tenant_partition(tenant), keys::API_KEY_PREFIX);
        self.query_page(query, start, page.limit).await
    }
}

/// How long a window's count is kept after the window ends (by TTL): long enough for a
/// late claim of an instance whose clock lags, and for an operator to look.
const RATE_COUNT_KEPT: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

#[async_trait]
impl RateLimitStore for DynamoStore {
    async fn claim_rate(
        &self,
        tenant: TenantId,
        subject: &str,
        window: (Timestamp, Timestamp),
        want: u32,
        limit: u32,
    ) -> Result<RateClaim, StoreError> {
        let key = keys::rate_count(tenant, subject, window.0.as_second());
        if want == 0 {
            // Only a look at the count: a read, nothing written.
            let found = self
                .client()
                .get_item()
                .table_name(self.table())
                .set_key(Some(key.primary()))
                .consistent_read(true)
                .send()
                .await
                .map_err(sdk_error)?;
            let used = found.item.as_ref().and_then(used_of).unwrap_or(0);
            return Ok(RateClaim { granted: 0, used });
        }
        let expires = later(window.1, RATE_COUNT_KEPT);
        // First a whole share while one is left; when not, the old item tells what is
        // left, and the remainder is claimed if nobody moved the count meanwhile.
        let mut want = want;
        let mut condition = "attribute_not_exists(used) OR used <= :room".to_owned();
        let mut seen = limit.saturating_sub(want);
        loop {
            let result = self
                .client()
                .update_item()
                .table_name(self.table())
                .set_key(Some(key.primary()))
                .update_expression("ADD used :want SET #ttl = :ttl, #entity = :entity")
                .condition_expression(&condition)
                .expression_attribute_names("#ttl", TTL)
                .expression_attribute_names("#entity", ENTITY_ATTRIBUTE)
                .expression_attribute_values(":want", AttributeValue::N(want.to_string()))
                .expression_attribute_values(":room", AttributeValue::N(seen.to_string()))
                .expression_attribute_values(":ttl", epoch_seconds(expires))
                .expression_attribute_values(":entity", AttributeValue::S("rate_count".into()))
                .return_values(ReturnValue::UpdatedNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let err = match result {
                Ok(output) => {
                    let used = output.attributes.as_ref().and_then(used_of);
                    return Ok(RateClaim {
                        granted: want,
                        used: used.unwrap_or(limit),
                    });
                }
                Err(err) => err,
            };
            let old = match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    failed.item.as_ref().and_then(used_of)
                }
                _ => return Err(sdk_error(err)),
            };
            let used = old.unwrap_or(0);
            let remainder = limits::grant(used, want, limit);
            if remainder == 0 {
                return Ok(RateClaim { granted: 0, used });
            }
            want = remainder;
            seen = used;
            condition = "used = :room".to_owned();
        }
    }

    async fn limit_settings(&self, tenant: TenantId) -> Result<LimitSettings, StoreError> {
        Ok(self
            .get(&keys::limit_settings(tenant))
            .await?
            .unwrap_or_default())
    }

    async fn set_limit_settings(
        &self,
        tenant: TenantId,
        settings: &LimitSettings,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.upsert(to_item(
            "limit_settings",
            settings,
            &keys::limit_settings(tenant),
        )?)?
        .record(tenant, change)?;
        tx.commit().await
    }
}

#[async_trait]
impl IdentityProviderStore for DynamoStore {
    async fn identity_provider(
        &self,
        tenant: TenantId,
    ) -> Result<Option<IdentityProvider>, StoreError> {
        self.get(&keys::identity_provider(tenant)).await
    }

    async fn set_identity_provider(
        &self,
        trust: &IssuerTrust,
        previous: Option<&IdentityProvider>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let tenant = trust.tenant_id;
        let conflict = StoreError::VersionConflict {
            entity: "identity_provider",
        };
        let settings = to_item(
            "identity_provider",
            &trust.provider,
            &keys::identity_provider(tenant),
        )?;
        let trust_item = to_item(
            "issuer_trust",
            trust,
            &keys::issuer_trust(&trust.provider.issuer, tenant),
        )?;
        let mut tx = self.transaction();
        match previous {
            None => tx.put(settings, "attribute_not_exists(pk)", None, conflict)?,
            Some(previous) => {
                let issuer = HashMap::from([(
                    ":issuer".to_owned(),
                    AttributeValue::S(previous.issuer.clone()),
                )]);
                if previous.issuer != trust.provider.issuer {
                    tx.delete(
                        &keys::issuer_trust(&previous.issuer, tenant),
                        "entity = :trust",
                        HashMap::from([(
                            ":trust".to_owned(),
                            AttributeValue::S("issuer_trust".into()),
                        )]),
                        conflict.clone(),
                    )?;
                }
                tx.put(settings, "issuer = :issuer", Some(issuer), conflict)?
            }
        }
        .upsert(trust_item)?
        .record(tenant, change)?;
        tx.commit().await
    }

    async fn issuer_trusts(&self, issuer: &str) -> Result<Vec<IssuerTrust>, StoreError> {
        let query = self.query_partition(keys::issuer_trusts(issuer), "T#");
        let mut trusts = Vec::new();
        let mut start = None;
        loop {
            let page: Page<IssuerTrust> = self.query_page(query.clone(), start, 100).await?;
            let last = page
                .items
                .last()
                .map(|t| keys::issuer_trust(issuer, t.tenant_id).all());
            let more = page.has_more;
            trusts.extend(page.items);
            match last {
                Some(last) if more => start = Some(last),
                _ => return Ok(trusts),
            }
        }
    }
}

fn used_of(item: &HashMap<String, AttributeValue>) -> Option<u32> {
    item.get("used")?.as_n().ok()?.parse().ok()
}
