use std::collections::BTreeMap;

use async_trait::async_trait;
use billing_domain::collection::dunning::{DunningCase, DunningPolicy};
use billing_domain::kernel::ids::{AccountId, TenantId, TestClockId};
use jiff::Timestamp;

use crate::{MemoryStore, State};
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct DunningState {
    policies: BTreeMap<TenantId, DunningPolicy>,
    cases: BTreeMap<(TenantId, AccountId), DunningCase>,
    notices: BTreeMap<(TenantId, AccountId, String), PendingNotice>,
}

impl DunningState {
    pub(crate) fn add_notice(&mut self, tenant: TenantId, notice: PendingNotice) {
        self.notices
            .insert((tenant, notice.account_id, notice.key.clone()), notice);
    }

    pub(crate) fn forget_notices(&mut self, tenant: TenantId, account: AccountId) {
        self.notices
            .retain(|(t, a, _), _| (*t, *a) != (tenant, account));
    }
}

impl State {
    /// Real-time cases whose next step is due, and notices whose claim ran out, at `now`.
    pub(crate) fn due_dunning(&self, now: Timestamp) -> Vec<DueItem> {
        let steps = self
            .dunning
            .cases
            .iter()
            .filter_map(|((tenant, account), case)| {
                let due_at = case.next_step_at.filter(|at| *at <= now)?;
                case.test_clock.is_none().then_some(DueItem {
                    tenant_id: *tenant,
                    due_at,
                    kind: DueKind::Payment(PaymentJob::Dunning {
                        tenant: *tenant,
                        account: *account,
                    }),
                })
            });
        let notices = self
            .dunning
            .notices
            .iter()
            .filter(|(_, n)| n.retry_at <= now)
            .map(|((tenant, account, key), n)| DueItem {
                tenant_id: *tenant,
                due_at: n.retry_at,
                kind: DueKind::Payment(PaymentJob::DunningNotice {
                    tenant: *tenant,
                    account: *account,
                    key: key.clone(),
                }),
            });
        steps.chain(notices).collect()
    }

    /// Cases on a test clock whose next step is due at or before `up_to`.
    pub(crate) fn clock_due_dunning(
        &self,
        tenant: TenantId,
        clock: TestClockId,
        up_to: Timestamp,
    ) -> impl Iterator<Item = DueItem> + '_ {
        self.dunning
            .cases
            .iter()
            .filter(move |((t, _), case)| *t == tenant && case.test_clock == Some(clock))
            .filter_map(move |((_, account), case)| {
                let due_at = case.next_step_at.filter(|at| *at <= up_to)?;
                Some(DueItem {
                    tenant_id: tenant,
                    due_at,
                    kind: DueKind::Payment(PaymentJob::Dunning {
                        tenant,
                        account: *account,
                    }),
                })
            })
    }
}

#[async_trait]
impl DunningStore for MemoryStore {
    async fn get_dunning_policy(
        &self,
        tenant: TenantId,
    ) -> Result<Option<DunningPolicy>, StoreError> {
        Ok(self.state().dunning.policies.get(&tenant).cloned())
    }

    async fn set_dunning_policy(
        &self,
        tenant: TenantId,
        policy: &DunningPolicy,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.dunning.policies.insert(tenant, policy.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn get_dunning_case(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<DunningCase>, StoreError> {
        Ok(self.state().dunning.cases.get(&(tenant, account)).cloned())
    }

    async fn save_dunning_case(
        &self,
        tenant: TenantId,
        previous: Option<&DunningCase>,
        next: &DunningCase,
        account: Option<AccountStatusWrite<'_>>,
        notice: Option<&PendingNotice>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let stored = s
            .dunning
            .cases
            .get(&(tenant, next.account_id))
            .map(|c| c.version);
        match (previous, stored) {
            (None, Some(_)) => {
                return Err(StoreError::AlreadyExists {
                    entity: "dunning case",
                })
            }
            (Some(p), stored) if stored != Some(p.version) => {
                return Err(StoreError::VersionConflict {
                    entity: "dunning case",
                })
            }
            _ => {}
        }
        if let Some(write) = &account {
            let stored = s.accounts.get(&(tenant, write.next.id)).map(|a| a.version);
            if stored != Some(write.previous.version) {
                return Err(StoreError::VersionConflict { entity: "account" });
            }
        }
        if let Some(notice) = notice {
            let key = (tenant, notice.account_id, notice.key.clone());
            if s.dunning.notices.contains_key(&key) {
                return Err(StoreError::AlreadyExists {
                    entity: "dunning notice",
                });
            }
            s.dunning.notices.insert(key, notice.clone());
        }
        if let Some(write) = account {
            s.accounts
                .insert((tenant, write.next.id), write.next.clone());
        }
        s.dunning
            .cases
            .insert((tenant, next.account_id), next.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn get_dunning_notice(
        &self,
        tenant: TenantId,
        account: AccountId,
        key: &str,
    ) -> Result<Option<PendingNotice>, StoreError> {
        Ok(self
            .state()
            .dunning
            .notices
            .get(&(tenant, account, key.to_owned()))
            .cloned())
    }

    async fn claim_dunning_notice(
        &self,
        tenant: TenantId,
        previous: &PendingNotice,
        next: &PendingNotice,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let key = (tenant, next.account_id, next.key.clone());
        match s.dunning.notices.get_mut(&key) {
            Some(stored) if stored.version == previous.version => {
                *stored = next.clone();
                Ok(())
            }
            _ => Err(StoreError::VersionConflict {
                entity: "dunning notice",
            }),
        }
    }

    async fn delete_dunning_notice(
        &self,
        tenant: TenantId,
        account: AccountId,
        key: &str,
    ) -> Result<(), StoreError> {
        self.state()
            .dunning
            .notices
            .remove(&(tenant, account, key.to_owned()));
        Ok(())
    }
}
