use billing_domain::customers::access::Permission;
use billing_domain::events::record::AuditRecord;

use super::EventsService;
use crate::kernel::{AppError, Caller};
use crate::ports::{Page, PageRequest};

impl EventsService {
    pub async fn list_audit_log(
        &self,
        caller: &Caller,
        entity_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, AppError> {
        caller.require(Permission::Read)?;
        Ok(self
            .store
            .list_audit(caller.tenant_id, entity_id, page)
            .await?)
    }
}
