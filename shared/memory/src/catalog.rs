use std::collections::BTreeMap;

use async_trait::async_trait;
use billing_domain::catalog::metric::Metric;
use billing_domain::catalog::plan::{Plan, PlanVersion};
use billing_domain::kernel::ids::{MetricId, PlanId, TenantId};

use crate::{paginate, MemoryStore};
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct CatalogState {
    metrics: BTreeMap<(TenantId, MetricId), Metric>,
    metric_codes: BTreeMap<(TenantId, String), MetricId>,
    plans: BTreeMap<(TenantId, PlanId), Plan>,
    plan_codes: BTreeMap<(TenantId, String), PlanId>,
    versions: BTreeMap<(TenantId, PlanId, u32), PlanVersion>,
    pub(crate) version_subscriptions: BTreeMap<(TenantId, PlanId, u32), u64>,
}

#[async_trait]
impl MetricStore for MemoryStore {
    async fn insert_metric(
        &self,
        tenant: TenantId,
        metric: &Metric,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let c = &mut s.catalog;
        if c.metrics.contains_key(&(tenant, metric.id)) {
            return Err(StoreError::AlreadyExists { entity: "metric" });
        }
        if c.metric_codes.contains_key(&(tenant, metric.code.clone())) {
            return Err(StoreError::Duplicate {
                entity: "metric",
                field: "code",
            });
        }
        c.metric_codes
            .insert((tenant, metric.code.clone()), metric.id);
        c.metrics.insert((tenant, metric.id), metric.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn update_metric(
        &self,
        tenant: TenantId,
        previous: &Metric,
        next: &Metric,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.catalog.metrics.get(&(tenant, next.id)).map(|m| m.version) != Some(previous.version) {
            return Err(StoreError::VersionConflict { entity: "metric" });
        }
        s.catalog.metrics.insert((tenant, next.id), next.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn get_metric(
        &self,
        tenant: TenantId,
        id: MetricId,
    ) -> Result<Option<Metric>, StoreError> {
        Ok(self.state().catalog.metrics.get(&(tenant, id)).cloned())
    }

    async fn get_metric_by_code(
        &self,
        tenant: TenantId,
        code: &str,
    ) -> Result<Option<Metric>, StoreError> {
        let s = self.state();
        Ok(s.catalog
            .metric_codes
            .get(&(tenant, code.to_owned()))
            .and_then(|id| s.catalog.metrics.get(&(tenant, *id)))
            .cloned())
    }

    async fn list_metrics(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Metric>, StoreError> {
        let s = self.state();
        let items = s
            .catalog
            .metrics
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|((_, id), m)| (id.to_string(), m.clone()));
        Ok(paginate(items, page, |_| true))
    }
}

#[async_trait]
impl PlanStore for MemoryStore {
    async fn insert_plan(
        &self,
        tenant: TenantId,
        plan: &Plan,
        first: &PlanVersion,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let c = &mut s.catalog;
        if c.plans.contains_key(&(tenant, plan.id)) {
            return Err(StoreError::AlreadyExists { entity: "plan" });
        }
        if c.plan_codes.contains_key(&(tenant, plan.code.clone())) {
            return Err(StoreError::Duplicate {
                entity: "plan",
                field: "code",
            });
        }
        c.plan_codes.insert((tenant, plan.code.clone()), plan.id);
        c.plans.insert((tenant, plan.id), plan.clone());
        c.versions
            .insert((tenant, plan.id, first.number), first.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn update_plan(
        &self,
        tenant: TenantId,
        previous: &Plan,
        next: &Plan,
        new_version: Option<&PlanVersion>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let c = &mut s.catalog;
        if c.plans.get(&(tenant, next.id)).map(|p| p.version) != Some(previous.version) {
            return Err(StoreError::VersionConflict { entity: "plan" });
        }
        if let Some(v) = new_version {
            if c.versions.contains_key(&(tenant, next.id, v.number)) {
                return Err(StoreError::AlreadyExists {
                    entity: "plan version",
                });
            }
            c.versions.insert((tenant, next.id, v.number), v.clone());
        }
        c.plans.insert((tenant, next.id), next.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn get_plan(&self, tenant: TenantId, id: PlanId) -> Result<Option<Plan>, StoreError> {
        Ok(self.state().catalog.plans.get(&(tenant, id)).cloned())
    }

    async fn list_plans(
        &self,
        tenant: TenantId,
        filter: PlanFilter,
        page: &PageRequest,
    ) -> Result<Page<Plan>, StoreError> {
        let s = self.state();
        let items = s
            .catalog
            .plans
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .map(|((_, id), p)| (id.to_string(), p.clone()));
        Ok(paginate(items, page, |p| {
            filter.active.is_none_or(|a| p.active == a)
        }))
    }

    async fn list_plan_versions(
        &self,
        tenant: TenantId,
        plan: PlanId,
    ) -> Result<Vec<PlanVersion>, StoreError> {
        let s = self.state();
        Ok(s.catalog
            .versions
            .iter()
            .filter(|((t, p, _), _)| *t == tenant && *p == plan)
            .map(|(_, v)| v.clone())
            .collect())
    }

    async fn plan_subscription_counts(
        &self,
        tenant: TenantId,
        plan: PlanId,
    ) -> Result<Vec<(u32, u64)>, StoreError> {
        let s = self.state();
        Ok(s.catalog
            .versions
            .keys()
            .filter(|(t, p, _)| *t == tenant && *p == plan)
            .map(|key| {
                (
                    key.2,
                    s.catalog
                        .version_subscriptions
                        .get(key)
                        .copied()
                        .unwrap_or(0),
                )
            })
            .collect())
    }
}
