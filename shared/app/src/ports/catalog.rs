//! Persistence of the catalog: billable metrics, plans and their price versions.

use async_trait::async_trait;
use billing_domain::catalog::metric::Metric;
use billing_domain::catalog::plan::{Plan, PlanVersion};
use billing_domain::kernel::ids::{MetricId, PlanId, TenantId};

use super::{Change, Page, PageRequest, StoreError};

#[async_trait]
pub trait MetricStore: Send + Sync {
    /// Creates the metric and claims its code, with the change, atomically.
    async fn insert_metric(
        &self,
        tenant: TenantId,
        metric: &Metric,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Replaces `previous` if its version is still current.
    async fn update_metric(
        &self,
        tenant: TenantId,
        previous: &Metric,
        next: &Metric,
        change: &Change,
    ) -> Result<(), StoreError>;
    async fn get_metric(
        &self,
        tenant: TenantId,
        id: MetricId,
    ) -> Result<Option<Metric>, StoreError>;
    async fn get_metric_by_code(
        &self,
        tenant: TenantId,
        code: &str,
    ) -> Result<Option<Metric>, StoreError>;
    async fn list_metrics(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Metric>, StoreError>;
}

/// Which plans a list returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanFilter {
    pub active: Option<bool>,
}

#[async_trait]
pub trait PlanStore: Send + Sync {
    /// Creates the plan, claims its code and writes its first version, atomically.
    async fn insert_plan(
        &self,
        tenant: TenantId,
        plan: &Plan,
        first: &PlanVersion,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Replaces `previous` if its version is still current; with `new_version`, writes that
    /// price version in the same transaction (it must not exist yet).
    async fn update_plan(
        &self,
        tenant: TenantId,
        previous: &Plan,
        next: &Plan,
        new_version: Option<&PlanVersion>,
        change: &Change,
    ) -> Result<(), StoreError>;
    async fn get_plan(&self, tenant: TenantId, id: PlanId) -> Result<Option<Plan>, StoreError>;
    async fn list_plans(
        &self,
        tenant: TenantId,
        filter: PlanFilter,
        page: &PageRequest,
    ) -> Result<Page<Plan>, StoreError>;
    /// Every price version of a plan, oldest first.
    async fn list_plan_versions(
        &self,
        tenant: TenantId,
        plan: PlanId,
    ) -> Result<Vec<PlanVersion>, StoreError>;
    /// How many subscriptions use each version of the plan: (version number, count).
    async fn plan_subscription_counts(
        &self,
        tenant: TenantId,
        plan: PlanId,
    ) -> Result<Vec<(u32, u64)>, StoreError>;
}
