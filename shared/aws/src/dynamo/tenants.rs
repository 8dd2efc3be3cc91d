use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::*;
use billing_domain::customers::access::ApiKey;
use billing_domain::customers::tenant::Tenant;
use billing_domain::kernel::ids::{ApiKeyId, TenantId};

use super::{to_item, DynamoStore};
use crate::keys;

#[async_trait]
impl TenantStore for DynamoStore {
    async fn create_tenant(&self, tenant: &Tenant, first_key: &ApiKey) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            to_item("tenant", tenant, &keys::tenant(tenant.id))?,
            StoreError::AlreadyExists { entity: "tenant" },
        )?
        .create(
            to_item(
                "api_key",
                first_key,
                &keys::api_key(tenant.id, first_key.id),
            )?,
            StoreError::AlreadyExists { entity: "api_key" },
        )?;
        tx.commit().await
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        self.get(&keys::tenant(id)).await
    }
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
            to_item("api_key", key, &keys::api_key(key.tenant_id, key.id))?,
            StoreError::AlreadyExists { entity: "api_key" },
        )?
        .record(key.tenant_id, change)?;
        tx.commit().await
    }

    async fn revoke_api_key(&self, key: &ApiKey, change: &Change) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.put(
            to_item("api_key", key, &keys::api_key(key.tenant_id, key.id))?,
            "attribute_exists(pk) AND (attribute_not_exists(revoked_at) OR attribute_type(revoked_at, :null))",
            Some(HashMap::from([(":null".to_owned(), AttributeValue::S("NULL".into()))])),
            StoreError::VersionConflict { entity: "api_key" },
        )?
        .record(key.tenant_id, change)?;
        tx.commit().await
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
