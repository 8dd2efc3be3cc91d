use async_trait::async_trait;
use billing_domain::events::record::AuditRecord;
use billing_domain::kernel::ids::TenantId;

use crate::{paginate, MemoryStore};
use billing_app::ports::*;

#[async_trait]
impl AuditStore for MemoryStore {
    async fn list_audit(
        &self,
        tenant: TenantId,
        entity_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let s = self.state();
        let items = s
            .audit
            .iter()
            .rev()
            .filter(|((t, _), r)| *t == tenant && entity_id.is_none_or(|e| r.entity_id == e))
            .map(|((_, id), r)| (id.clone(), r.clone()));
        Ok(paginate(items, page, |_| true))
    }
}
