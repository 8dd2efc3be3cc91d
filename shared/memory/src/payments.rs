use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use billing_domain::collection::credit_note::CreditNote;
use billing_domain::collection::payment::{Payment, PaymentStatus};
use billing_domain::collection::retry::PaymentSettings;
use billing_domain::customers::payment_method::PaymentProfile;
use billing_domain::kernel::ids::{AccountId, CreditNoteId, PaymentId, TenantId, TestClockId};
use jiff::Timestamp;

use crate::{paginate, MemoryStore, State};
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct PaymentState {
    profiles: BTreeMap<(TenantId, AccountId), PaymentProfile>,
    payments: BTreeMap<(TenantId, PaymentId), Payment>,
    credit_notes: BTreeMap<(TenantId, CreditNoteId), CreditNote>,
    settings: BTreeMap<TenantId, PaymentSettings>,
    refs: BTreeMap<String, GatewayRef>,
    gateway_events: BTreeSet<(TenantId, String)>,
}

impl PaymentState {
    pub(crate) fn forget_profile(&mut self, tenant: TenantId, account: AccountId) {
        self.profiles.remove(&(tenant, account));
    }
}

fn due_item(tenant: TenantId, p: &Payment) -> DueItem {
    DueItem {
        tenant_id: tenant,
        due_at: p.due_at,
        kind: DueKind::Payment(PaymentJob::Attempt { tenant, id: p.id }),
    }
}

impl State {
    /// Pending attempts and sent invoices going overdue (not on a test clock) due at or
    /// before `now`.
    pub(crate) fn due_payments(&self, now: Timestamp) -> Vec<DueItem> {
        self.payments
            .payments
            .iter()
            .filter(|(_, p)| p.test_clock.is_none() && p.status == PaymentStatus::Pending)
            .filter(|(_, p)| p.due_at <= now)
            .map(|((tenant, _), p)| due_item(*tenant, p))
            .chain(self.overdue_invoices(now, |_, c| c.is_none()))
            .collect()
    }

    /// Invoices whose `overdue_at` is at or before `up_to`, among those `admit` takes (by
    /// tenant and test clock).
    fn overdue_invoices(
        &self,
        up_to: Timestamp,
        admit: impl Fn(TenantId, Option<TestClockId>) -> bool,
    ) -> Vec<DueItem> {
        self.billing_invoices()
            .filter(|(tenant, i)| admit(*tenant, i.test_clock))
            .filter_map(|(tenant, i)| {
                i.overdue_at()
                    .filter(|at| *at <= up_to)
                    .map(|due_at| DueItem {
                        tenant_id: tenant,
                        due_at,
                        kind: DueKind::Payment(PaymentJob::Overdue {
                            tenant,
                            invoice: i.id,
                        }),
                    })
            })
            .collect()
    }

    /// Pending attempts on a test clock due at or before `up_to`.
    pub(crate) fn clock_due_payments(
        &self,
        tenant: TenantId,
        clock: TestClockId,
        up_to: Timestamp,
    ) -> Vec<DueItem> {
        self.payments
            .payments
            .iter()
            .filter(|((t, _), p)| *t == tenant && p.test_clock == Some(clock))
            .filter(|(_, p)| p.status == PaymentStatus::Pending && p.due_at <= up_to)
            .map(|(_, p)| due_item(tenant, p))
            .chain(self.overdue_invoices(up_to, |t, c| t == tenant && c == Some(clock)))
            .collect()
    }

    pub(crate) fn check_new_payment(
        &self,
        tenant: TenantId,
        payment: &Payment,
    ) -> Result<(), StoreError> {
        if self.payments.payments.contains_key(&(tenant, payment.id)) {
            return Err(StoreError::AlreadyExists { entity: "payment" });
        }
        Ok(())
    }

    pub(crate) fn write_payment(&mut self, tenant: TenantId, payment: &Payment) {
        self.payments
            .payments
            .insert((tenant, payment.id), payment.clone());
    }

    fn check_collection(
        &self,
        tenant: TenantId,
        write: &CollectionWrite,
    ) -> Result<(), StoreError> {
        for (expected, payment) in &write.payments {
            match expected {
                None => self.check_new_payment(tenant, payment)?,
                Some(version) => {
                    if self
                        .payments
                        .payments
                        .get(&(tenant, payment.id))
                        .map(|p| p.version)
                        != Some(*version)
                    {
                        return Err(StoreError::VersionConflict { entity: "payment" });
                    }
                }
            }
        }
        if let Some((version, invoice)) = &write.invoice {
            self.check_invoice_version(tenant, invoice.id, *version)?;
        }
        if let Some((version, sub)) = &write.subscription {
            self.check_subscription_version(tenant, sub.id, *version)?;
        }
        if let Some(settlement) = &write.balance {
            self.check_balance(tenant, &settlement.change)?;
        }
        self.check_wallets(tenant, write.wallets.as_deref())?;
        if let Some(note) = &write.credit_note {
            if self.payments.credit_notes.contains_key(&(tenant, note.id)) {
                return Err(StoreError::AlreadyExists {
                    entity: "credit note",
                });
            }
        }
        if let Some(event) = &write.gateway_event {
            if self
                .payments
                .gateway_events
                .contains(&(tenant, event.clone()))
            {
                return Err(StoreError::AlreadyExists {
                    entity: "gateway event",
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl PaymentStore for MemoryStore {
    async fn get_payment_profile(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<PaymentProfile>, StoreError> {
        Ok(self
            .state()
            .payments
            .profiles
            .get(&(tenant, account))
            .cloned())
    }

    async fn save_payment_profile(
        &self,
        tenant: TenantId,
        next: &PaymentProfile,
        refs: &[(String, GatewayRef)],
        change: Option<&Change>,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let stored = s
            .payments
            .profiles
            .get(&(tenant, next.account_id))
            .map(|p| p.version)
            .unwrap_or(0);
        if stored + 1 != next.version {
            return Err(StoreError::VersionConflict {
                entity: "payment profile",
            });
        }
        s.payments
            .profiles
            .insert((tenant, next.account_id), next.clone());
        for (id, reference) in refs {
            s.payments.refs.insert(id.clone(), reference.clone());
        }
        if let Some(change) = change {
            s.record(tenant, change);
        }
        Ok(())
    }

    async fn get_payment(
        &self,
        tenant: TenantId,
        id: PaymentId,
    ) -> Result<Option<Payment>, StoreError> {
        Ok(self.state().payments.payments.get(&(tenant, id)).cloned())
    }

    async fn list_payments(
        &self,
        tenant: TenantId,
        filter: &PaymentFilter,
        page: &PageRequest,
    ) -> Result<Page<Payment>, StoreError> {
        let s = self.state();
        let items = s
            .payments
            .payments
            .iter()
            .rev()
            // The account filter is served by an index; the rest is examined.
            .filter(|((t, _), p)| *t == tenant && filter.account.is_none_or(|a| p.account_id == a))
            .map(|((_, id), p)| (id.to_string(), p.clone()));
        Ok(paginate(items, page, |p| filter.admits(p)))
    }

    async fn save_collection(
        &self,
        tenant: TenantId,
        write: &CollectionWrite,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.check_collection(tenant, write)?;
        for (_, payment) in &write.payments {
            s.write_payment(tenant, payment);
        }
        if let Some((_, invoice)) = &write.invoice {
            s.put_invoice(tenant, invoice);
        }
        if let Some((_, sub)) = &write.subscription {
            s.put_subscription(tenant, sub);
        }
        if let Some(note) = &write.credit_note {
            s.payments
                .credit_notes
                .insert((tenant, note.id), note.clone());
        }
        for (id, reference) in &write.gateway_refs {
            s.payments.refs.insert(id.clone(), reference.clone());
        }
        if let Some(event) = &write.gateway_event {
            s.payments.gateway_events.insert((tenant, event.clone()));
        }
        if let Some(settlement) = &write.balance {
            s.write_balance(tenant, &settlement.change);
            s.record(tenant, &settlement.record);
        }
        s.write_wallets(tenant, write.wallets.as_deref());
        s.record(tenant, change);
        Ok(())
    }

    async fn get_credit_note(
        &self,
        tenant: TenantId,
        id: CreditNoteId,
    ) -> Result<Option<CreditNote>, StoreError> {
        Ok(self
            .state()
            .payments
            .credit_notes
            .get(&(tenant, id))
            .cloned())
    }

    async fn list_credit_notes(
        &self,
        tenant: TenantId,
        filter: &CreditNoteFilter,
        page: &PageRequest,
    ) -> Result<Page<CreditNote>, StoreError> {
        let s = self.state();
        let items = s
            .payments
            .credit_notes
            .iter()
            .rev()
            .filter(|((t, _), c)| *t == tenant && filter.account.is_none_or(|a| c.account_id == a))
            .map(|((_, id), c)| (id.to_string(), c.clone()));
        Ok(paginate(items, page, |c| filter.admits(c)))
    }

    async fn payment_settings(&self, tenant: TenantId) -> Result<PaymentSettings, StoreError> {
        Ok(self
            .state()
            .payments
            .settings
            .get(&tenant)
            .cloned()
            .unwrap_or_default())
    }

    async fn set_payment_settings(
        &self,
        tenant: TenantId,
        settings: &PaymentSettings,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.payments.settings.insert(tenant, settings.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn resolve_gateway_ref(
        &self,
        gateway_id: &str,
    ) -> Result<Option<GatewayRef>, StoreError> {
        Ok(self.state().payments.refs.get(gateway_id).cloned())
    }

    async fn record_gateway_event(
        &self,
        tenant: TenantId,
        event_id: &str,
    ) -> Result<(), StoreError> {
        if self
            .state()
            .payments
            .gateway_events
            .insert((tenant, event_id.to_owned()))
        {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists {
                entity: "gateway event",
            })
        }
    }
}
