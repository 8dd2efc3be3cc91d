//! Billable metrics: what usage is measured in.

use billing_domain::catalog::metric::{Metric, MetricPatch, NewMetric};
use billing_domain::customers::access::Permission;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::ids::MetricId;

use super::CatalogService;
use crate::kernel::{change, new_ulid, to_json, AppError, Caller, ChangeSpec};
use crate::ports::{Page, PageRequest};

impl CatalogService {
    pub async fn create_metric(
        &self,
        caller: &Caller,
        input: NewMetric,
    ) -> Result<Metric, AppError> {
        caller.require(Permission::WriteBilling)?;
        let now = self.clocks.now();
        let metric = Metric::create(MetricId::from_ulid(new_ulid()), input, now)?;
        let after = to_json(&metric)?;
        let change = change(
            caller,
            now,
            ChangeSpec {
                entity_type: "metric",
                entity_id: metric.id.to_string(),
                action: AuditAction::Create,
                event_type: Some(EventType::MetricCreated),
                before: None,
                after: &after,
            },
        );
        self.store
            .insert_metric(caller.tenant_id, &metric, &change)
            .await?;
        Ok(metric)
    }

    pub async fn get_metric(&self, caller: &Caller, id: MetricId) -> Result<Metric, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_metric(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("metric", id))
    }

    pub async fn list_metrics(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<Metric>, AppError> {
        caller.require(Permission::Read)?;
        Ok(self.store.list_metrics(caller.tenant_id, page).await?)
    }

    pub async fn update_metric(
        &self,
        caller: &Caller,
        id: MetricId,
        patch: MetricPatch,
    ) -> Result<Metric, AppError> {
        caller.require(Permission::WriteBilling)?;
        let current = self.get_metric(caller, id).await?;
        let next = current.apply(patch, self.clocks.now())?;
        let (before, after) = (to_json(&current)?, to_json(&next)?);
        let change = change(
            caller,
            next.updated_at,
            ChangeSpec {
                entity_type: "metric",
                entity_id: id.to_string(),
                action: AuditAction::Update,
                event_type: Some(EventType::MetricUpdated),
                before: Some(&before),
                after: &after,
            },
        );
        self.store
            .update_metric(caller.tenant_id, &current, &next, &change)
            .await?;
        self.metrics
            .forget(&(caller.tenant_id, caller.livemode, next.code.clone()));
        Ok(next)
    }
}
