use async_trait::async_trait;
use billing_app::ports::*;
use billing_domain::events::record::AuditRecord;
use billing_domain::kernel::ids::TenantId;

use super::{DynamoStore, ShardRange};
use crate::keys;

#[async_trait]
impl AuditStore for DynamoStore {
    async fn list_audit(
        &self,
        tenant: TenantId,
        entity_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError> {
        match entity_id {
            Some(entity_id) => {
                let start = page
                    .starting_after
                    .as_deref()
                    .map(|id| keys::audit(tenant, id, entity_id).all());
                let query = self
                    .query_gsi1(keys::audit_entity_index(tenant, entity_id))
                    .scan_index_forward(false);
                self.query_page(query, start, page.limit).await
            }
            None => {
                let after = page
                    .starting_after
                    .as_deref()
                    .map(|id| keys::audit(tenant, id, "").sk);
                self.query_shards_page(
                    ShardRange::newest_first(tenant, keys::AUDIT_PREFIX, after.as_deref()),
                    page.limit,
                )
                .await
            }
        }
    }
}
