use async_trait::async_trait;
use billing_domain::customers::erasure::{erase_object, erase_values};
use billing_domain::kernel::ids::{AccountId, TenantId, TestClockId};
use jiff::Timestamp;

use crate::{MemoryStore, State};
use billing_app::ports::*;

impl State {
    /// Deleted accounts whose purge is due by `up_to`, among those `on` selects by tenant
    /// and test clock.
    pub(crate) fn due_purges(
        &self,
        up_to: Timestamp,
        on: impl Fn(TenantId, Option<TestClockId>) -> bool,
    ) -> Vec<DueItem> {
        self.accounts
            .iter()
            .filter(|((tenant, _), a)| on(*tenant, a.test_clock))
            .filter_map(|((tenant, id), a)| {
                a.purge_due()
                    .filter(|at| *at <= up_to)
                    .map(|due_at| DueItem {
                        tenant_id: *tenant,
                        due_at,
                        kind: DueKind::Billing(BillingJob::AccountPurge {
                            tenant: *tenant,
                            account: *id,
                        }),
                    })
            })
            .collect()
    }
}

#[async_trait]
impl ErasureStore for MemoryStore {
    async fn erase_account_records(
        &self,
        tenant: TenantId,
        account: AccountId,
        entities: &[String],
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.payments.forget_profile(tenant, account);
        s.dunning.forget_notices(tenant, account);
        for ((t, _), record) in s.audit.iter_mut() {
            if *t == tenant && entities.contains(&record.entity_id) {
                erase_values(&mut record.changes);
            }
        }
        for ((t, _), event) in s.events.iter_mut() {
            if *t == tenant && entities.contains(&event.resource_id) {
                erase_object(&mut event.data);
                if let Some(previous) = &mut event.previous_attributes {
                    erase_object(previous);
                }
            }
        }
        Ok(())
    }
}
