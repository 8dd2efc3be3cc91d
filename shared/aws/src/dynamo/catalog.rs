use async_trait::async_trait;
use billing_app::ports::*;
use billing_domain::catalog::metric::Metric;
use billing_domain::catalog::plan::{Plan, PlanVersion};
use billing_domain::kernel::ids::{MetricId, PlanId, TenantId};

use super::{claim_item, from_item, to_item, DynamoStore};
use crate::keys;

/// The counter a subscription adds to when it starts on a plan version.
pub(super) const SUBSCRIPTION_COUNT: &str = "subscription_count";

#[async_trait]
impl MetricStore for DynamoStore {
    async fn insert_metric(
        &self,
        tenant: TenantId,
        metric: &Metric,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            to_item("metric", metric, &keys::metric(tenant, metric.id))?,
            StoreError::AlreadyExists { entity: "metric" },
        )?
        .create(
            claim_item(
                &keys::metric_code(tenant, &metric.code),
                &metric.id.to_string(),
            ),
            StoreError::Duplicate {
                entity: "metric",
                field: "code",
            },
        )?
        .record(tenant, change)?;
        tx.commit().await
    }

    async fn update_metric(
        &self,
        tenant: TenantId,
        previous: &Metric,
        next: &Metric,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.replace_version(
            to_item("metric", next, &keys::metric(tenant, next.id))?,
            previous.version,
            "metric",
        )?
        .record(tenant, change)?;
        tx.commit().await
    }

    async fn get_metric(
        &self,
        tenant: TenantId,
        id: MetricId,
    ) -> Result<Option<Metric>, StoreError> {
        self.get(&keys::metric(tenant, id)).await
    }

    async fn get_metric_by_code(
        &self,
        tenant: TenantId,
        code: &str,
    ) -> Result<Option<Metric>, StoreError> {
        let owner = self.claim_owner(&keys::metric_code(tenant, code)).await?;
        match owner.and_then(|id| MetricId::parse(&id, "owner_id").ok()) {
            Some(id) => self.get_metric(tenant, id).await,
            None => Ok(None),
        }
    }

    async fn list_metrics(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Metric>, StoreError> {
        let start = page
            .starting_after
            .as_deref()
            .and_then(|id| MetricId::parse(id, "starting_after").ok())
            .map(|id| keys::metric(tenant, id).primary());
        let query = self.query_partition(keys::tenant_partition(tenant), keys::METRIC_PREFIX);
        self.query_page(query, start, page.limit).await
    }
}

#[async_trait]
impl PlanStore for DynamoStore {
    async fn insert_plan(
        &self,
        tenant: TenantId,
        plan: &Plan,
        first: &PlanVersion,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            to_item("plan", plan, &keys::plan(tenant, plan.id))?,
            StoreError::AlreadyExists { entity: "plan" },
        )?
        .create(
            claim_item(&keys::plan_code(tenant, &plan.code), &plan.id.to_string()),
            StoreError::Duplicate {
                entity: "plan",
                field: "code",
            },
        )?
        .create(
            to_item(
                "plan_version",
                first,
                &keys::plan_version(tenant, plan.id, first.number),
            )?,
            StoreError::AlreadyExists {
                entity: "plan version",
            },
        )?
        .record(tenant, change)?;
        tx.commit().await
    }

    async fn update_plan(
        &self,
        tenant: TenantId,
        previous: &Plan,
        next: &Plan,
        new_version: Option<&PlanVersion>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.replace_version(
            to_item("plan", next, &keys::plan(tenant, next.id))?,
            previous.version,
            "plan",
        )?;
        if let Some(version) = new_version {
            tx.create(
                to_item(
                    "plan_version",
                    version,
                    &keys::plan_version(tenant, next.id, version.number),
                )?,
                StoreError::AlreadyExists {
                    entity: "plan version",
                },
            )?;
        }
        tx.record(tenant, change)?;
        tx.commit().await
    }

    async fn get_plan(&self, tenant: TenantId, id: PlanId) -> Result<Option<Plan>, StoreError> {
        self.get(&keys::plan(tenant, id)).await
    }

    async fn list_plans(
        &self,
        tenant: TenantId,
        filter: PlanFilter,
        page: &PageRequest,
    ) -> Result<Page<Plan>, StoreError> {
        let start = page
            .starting_after
            .as_deref()
            .and_then(|id| PlanId::parse(id, "starting_after").ok())
            .map(|id| keys::plan(tenant, id).primary());
        let query = self.query_partition(keys::tenant_partition(tenant), keys::PLAN_PREFIX);
        self.scan_page(
            query,
            start,
            page,
            |p: &Plan| filter.active.is_none_or(|a| p.active == a),
            |p: &Plan| p.id.to_string(),
        )
        .await
    }

    async fn list_plan_versions(
        &self,
        tenant: TenantId,
        plan: PlanId,
    ) -> Result<Vec<PlanVersion>, StoreError> {
        let query = self.query_partition(
            keys::tenant_partition(tenant),
            &keys::plan_versions_prefix(plan),
        );
        self.query_all(query)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn plan_subscription_counts(
        &self,
        tenant: TenantId,
        plan: PlanId,
    ) -> Result<Vec<(u32, u64)>, StoreError> {
        let query = self.query_partition(
            keys::tenant_partition(tenant),
            &keys::plan_versions_prefix(plan),
        );
        let items = self.query_all(query).await?;
        Ok(items
            .into_iter()
            .filter_map(|item| {
                let number = item.get("number")?.as_n().ok()?.parse().ok()?;
                let count = item
                    .get(SUBSCRIPTION_COUNT)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                Some((number, count))
            })
            .collect())
    }
}
