//! Plans and their price versions, and the terms a subscription gets from them.

use std::collections::BTreeSet;

use billing_domain::catalog::plan::{
    self, Migrating, NewPlan, NewPlanVersion, Plan, PlanChangeError, PlanCharges, PlanPatch,
    PlanTerms, PlanVersion,
};
use billing_domain::customers::access::Permission;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{PlanId, TenantId};
use std::sync::Arc;

use billing_domain::billing::price_notice::Migration;
use billing_domain::billing::subscription::{Subscription, SubscriptionTerms};
use jiff::Timestamp;

use super::{invalid, CatalogService};
use crate::kernel::{change, event, new_ulid, to_json, AppError, Caller, ChangeSpec};
use crate::ports::{Page, PageRequest, PlanFilter};

/// A plan with the prices a subscription starting now would get.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanWithPrices {
    pub plan: Plan,
    pub prices: Option<PlanVersion>,
}

/// A price version as it would be published: the plan before and after, the version, and
/// the versions there are.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftVersion {
    pub current: Plan,
    pub next: Plan,
    pub version: PlanVersion,
    pub versions: Vec<PlanVersion>,
}

/// How many subscriptions use a plan, per price version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionCounts {
    pub total: u64,
    pub by_version: Vec<(u32, u64)>,
}

impl From<PlanChangeError> for AppError {
    fn from(err: PlanChangeError) -> Self {
        match err {
            PlanChangeError::Invalid(e) => AppError::Invalid(e),
            PlanChangeError::Inactive => AppError::Conflict {
                code: ErrorCode::PlanInactive,
                message: "the plan is inactive".into(),
                param: None,
            },
        }
    }
}

impl CatalogService {
    /// Validates charges through the engine against the tenant's metrics (also what a
    /// preview of an unsaved plan asks).
    pub async fn validate_charges(
        &self,
        caller: &Caller,
        charges: PlanCharges,
    ) -> Result<PlanTerms, AppError> {
        let mut known = BTreeSet::new();
        for code in charges.metric_codes() {
            if self
                .store
                .get_metric_by_code(caller.tenant_id, code)
                .await?
                .is_some()
            {
                known.insert(code.to_owned());
            }
        }
        Ok(charges.validate(&known)?)
    }

    /// The terms a subscription in `currency` gets on `plan_id` at `at`, and the plan's
    /// trial (read with them, so a new subscription reads the plan once). Billing's way
    /// into the catalog.
    pub async fn subscription_terms(
        &self,
        caller: &Caller,
        currency: billing_domain::kernel::currency::Currency,
        plan_id: PlanId,
        at: Timestamp,
    ) -> Result<(SubscriptionTerms, u32), AppError> {
        let plan = self
            .store
            .get_plan(caller.tenant_id, plan_id)
            .await?
            .ok_or_else(|| {
                invalid(
                    ErrorCode::UnknownPlan,
                    "plan",
                    format!("no such plan: {plan_id}"),
                )
            })?;
        if !plan.active {
            return Err(AppError::Conflict {
                code: ErrorCode::PlanInactive,
                message: "the plan takes no new subscriptions".into(),
                param: Some("plan"),
            });
        }
        let versions = self
            .store
            .list_plan_versions(caller.tenant_id, plan_id)
            .await?;
        let version = plan::version_in_effect(&versions, at).ok_or_else(|| {
            invalid(
                ErrorCode::PlanNotInEffect,
                "plan",
                "the plan has no prices in effect yet",
            )
        })?;
        let terms = SubscriptionTerms::of(&plan, version, currency).map_err(|e| {
            invalid(
                ErrorCode::CurrencyNotOffered,
                "plan",
                format!("{e}; the account's currency decides"),
            )
        })?;
        Ok((terms, plan.trial_days))
    }

    /// The version `sub` moves to if it renews at `at`: the latest of its plan published
    /// with `migrate_existing` and in effect by then, newer than its own, in its currency,
    /// with its notice period (whether the renewal may take it yet is the subscription's
    /// rule, [`Migration::allowed`]). For the step at `at` that sends a price notice, the
    /// version it announces. `None` without one (grandfathered), also for a version not
    /// priced in its currency (it keeps its terms). Billing's way into the catalog at a
    /// renewal.
    ///
    /// The plan and its versions are read once a minute per plan and process: a version
    /// takes effect no earlier than it is published, so what was read at a moment is the
    /// whole truth for a renewal due by then, and an entry answers only those (a renewal
    /// due later, or on a test clock, reads again).
    pub async fn migration_terms(
        &self,
        tenant: TenantId,
        sub: &Subscription,
        at: Timestamp,
    ) -> Result<Option<Migration>, AppError> {
        let Some(catalog) = self.plan_for_renewal(tenant, sub, at).await? else {
            return Ok(None);
        };
        let (plan, versions) = catalog.as_ref();
        self.terms_after(tenant, sub, plan, versions, at)
    }

    /// [`CatalogService::migration_terms`] over the given plan and versions (a catalog as
    /// it is, or as it would be with a version not yet published).
    pub fn terms_after(
        &self,
        tenant: TenantId,
        sub: &Subscription,
        plan: &Plan,
        versions: &[PlanVersion],
        at: Timestamp,
    ) -> Result<Option<Migration>, AppError> {
        let version = match sub.notice_due(at) {
            Some(announced) => versions.iter().find(|v| v.number == announced),
            None => plan::migration_target(versions, sub.terms.plan_version, at),
        };
        let Some(version) = version else {
            return Ok(None);
        };
        match Migration::to(plan, version, sub.currency) {
            Ok(migration) => Ok(Some(migration)),
            Err(not_priced) => {
                tracing::warn!(%tenant, subscription = %sub.id, %not_priced, "kept its terms: the migrating version has no prices in its currency");
                Ok(None)
            }
        }
    }

    /// The plan of `sub` with its versions, cached as [`CatalogService::migration_terms`] says.
    async fn plan_for_renewal(
        &self,
        tenant: TenantId,
        sub: &Subscription,
        at: Timestamp,
    ) -> Result<Option<super::PlanCatalog>, AppError> {
        let key = (tenant, sub.terms.plan_id);
        let now = self.clocks.now();
        if sub.test_clock.is_none() {
            if let Some((catalog, read_at)) = self.plans.get(&key, now) {
                if at <= read_at {
                    return Ok(Some(catalog));
                }
            }
        }
        let Some(catalog) = self.plan_with_versions(tenant, key.1).await? else {
            return Ok(None);
        };
        self.plans.put(key, (catalog.clone(), now), now);
        Ok(Some(catalog))
    }

    /// A plan and its versions as stored now (no cache).
    pub async fn plan_with_versions(
        &self,
        tenant: TenantId,
        id: PlanId,
    ) -> Result<Option<super::PlanCatalog>, AppError> {
        let Some(plan) = self.store.get_plan(tenant, id).await? else {
            return Ok(None);
        };
        let versions = self.store.list_plan_versions(tenant, id).await?;
        Ok(Some(Arc::new((plan, versions))))
    }

    pub async fn create_plan(
        &self,
        caller: &Caller,
        mut input: NewPlan,
    ) -> Result<PlanWithPrices, AppError> {
        caller.require(Permission::WriteBilling)?;
        let terms = self
            .validate_charges(caller, std::mem::take(&mut input.charges))
            .await?;
        let now = self.clocks.now();
        let (plan, first) = Plan::create(PlanId::from_ulid(new_ulid()), input, terms, now)?;
        let after = to_json(&plan)?;
        let mut change = change(
            caller,
            now,
            ChangeSpec {
                entity_type: "plan",
                entity_id: plan.id.to_string(),
                action: AuditAction::Create,
                event_type: Some(EventType::PlanCreated),
                before: None,
                after: &after,
            },
        );
        change.events.push(event(
            caller,
            now,
            EventType::PlanVersionCreated,
            plan.id.to_string(),
            to_json(&first)?,
            None,
        ));
        self.store
            .insert_plan(caller.tenant_id, &plan, &first, &change)
            .await?;
        Ok(PlanWithPrices {
            plan,
            prices: Some(first),
        })
    }

    async fn load_plan(&self, caller: &Caller, id: PlanId) -> Result<Plan, AppError> {
        self.store
            .get_plan(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("plan", id))
    }

    pub async fn get_plan(&self, caller: &Caller, id: PlanId) -> Result<PlanWithPrices, AppError> {
        caller.require(Permission::Read)?;
        let plan = self.load_plan(caller, id).await?;
        let versions = self.store.list_plan_versions(caller.tenant_id, id).await?;
        let prices = plan::version_in_effect(&versions, self.clocks.now()).cloned();
        Ok(PlanWithPrices { plan, prices })
    }

    pub async fn list_plans(
        &self,
        caller: &Caller,
        filter: PlanFilter,
        page: &PageRequest,
    ) -> Result<Page<Plan>, AppError> {
        caller.require(Permission::Read)?;
        Ok(self
            .store
            .list_plans(caller.tenant_id, filter, page)
            .await?)
    }

    pub async fn update_plan(
        &self,
        caller: &Caller,
        id: PlanId,
        patch: PlanPatch,
    ) -> Result<Plan, AppError> {
        caller.require(Permission::WriteBilling)?;
        let current = self.load_plan(caller, id).await?;
        let next = current.apply(patch, self.clocks.now())?;
        self.save_plan(
            caller,
            &current,
            &next,
            None,
            AuditAction::Update,
            EventType::PlanUpdated,
        )
        .await?;
        Ok(next)
    }

    /// Deactivates a plan: no new subscriptions; existing ones continue.
    pub async fn deactivate_plan(&self, caller: &Caller, id: PlanId) -> Result<Plan, AppError> {
        caller.require(Permission::WriteBilling)?;
        let current = self.load_plan(caller, id).await?;
        let next = current.deactivate(self.clocks.now())?;
        self.save_plan(
            caller,
            &current,
            &next,
            None,
            AuditAction::Delete,
            EventType::PlanDeactivated,
        )
        .await?;
        Ok(next)
    }

    pub async fn create_plan_version(
        &self,
        caller: &Caller,
        id: PlanId,
        input: NewPlanVersion,
    ) -> Result<PlanVersion, AppError> {
        caller.require(Permission::WriteBilling)?;
        let draft = self.draft_plan_version(caller, id, input).await?;
        self.save_plan(
            caller,
            &draft.current,
            &draft.next,
            Some(&draft.version),
            AuditAction::Update,
            EventType::PlanVersionCreated,
        )
        .await?;
        Ok(draft.version)
    }

    /// The version `input` would add to the plan, validated exactly as publishing it would
    /// be, with the plan and its versions as they are; writes nothing (what a catalog
    /// change simulation prices).
    pub async fn draft_plan_version(
        &self,
        caller: &Caller,
        id: PlanId,
        input: NewPlanVersion,
    ) -> Result<DraftVersion, AppError> {
        let current = self.load_plan(caller, id).await?;
        let versions = self.store.list_plan_versions(caller.tenant_id, id).await?;
        let latest = versions
            .iter()
            .max_by_key(|v| v.number)
            .ok_or_else(|| AppError::Internal(format!("plan {id} has no versions")))?;
        let terms = self.validate_charges(caller, input.charges).await?;
        let (next, version) = current.add_version(
            latest,
            input.effective_from,
            Migrating::validated(input.migrate_existing, input.migration_notice_days)?,
            terms,
            self.clocks.now(),
        )?;
        Ok(DraftVersion {
            current,
            next,
            version,
            versions,
        })
    }

    async fn save_plan(
        &self,
        caller: &Caller,
        current: &Plan,
        next: &Plan,
        new_version: Option<&PlanVersion>,
        action: AuditAction,
        event_type: EventType,
    ) -> Result<(), AppError> {
        let (before, after) = (to_json(current)?, to_json(next)?);
        let mut change = change(
            caller,
            next.updated_at,
            ChangeSpec {
                entity_type: "plan",
                entity_id: next.id.to_string(),
                action,
                event_type: Some(event_type),
                before: Some(&before),
                after: &after,
            },
        );
        if let Some(version) = new_version {
            // The version event carries the prices, not the plan record.
            change.events[0].data = to_json(version)?;
        }
        self.store
            .update_plan(caller.tenant_id, current, next, new_version, &change)
            .await?;
        self.plans.forget(&(caller.tenant_id, next.id));
        Ok(())
    }

    pub async fn list_plan_versions(
        &self,
        caller: &Caller,
        id: PlanId,
    ) -> Result<Vec<PlanVersion>, AppError> {
        caller.require(Permission::Read)?;
        self.load_plan(caller, id).await?;
        Ok(self.store.list_plan_versions(caller.tenant_id, id).await?)
    }

    pub async fn plan_subscription_counts(
        &self,
        caller: &Caller,
        id: PlanId,
    ) -> Result<SubscriptionCounts, AppError> {
        caller.require(Permission::Read)?;
        self.load_plan(caller, id).await?;
        let by_version = self
            .store
            .plan_subscription_counts(caller.tenant_id, id)
            .await?;
        Ok(SubscriptionCounts {
            total: by_version.iter().map(|(_, n)| n).sum(),
            by_version,
        })
    }
}
