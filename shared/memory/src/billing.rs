use std::collections::BTreeMap;

use async_trait::async_trait;
use billing_domain::billing::invoice::Invoice;
use billing_domain::billing::simulation::{SimulationChunk, SimulationRun};
use billing_domain::billing::subscription::{Subscription, SubscriptionStatus};
use billing_domain::billing::test_clock::TestClock;
use billing_domain::kernel::ids::{
    InvoiceId, PlanId, SimulationId, SubscriptionId, TenantId, TestClockId,
};
use jiff::Timestamp;

use crate::{paginate, MemoryStore, State};
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct BillingState {
    subscriptions: BTreeMap<(TenantId, SubscriptionId), Subscription>,
    invoices: BTreeMap<(TenantId, InvoiceId), Invoice>,
    invoice_sequence: BTreeMap<TenantId, u64>,
    invoice_prefix: BTreeMap<TenantId, String>,
    /// Invoices waiting in a stage of the finalizer (the DynamoDB store's pending index).
    pending: BTreeMap<(TenantId, InvoiceId), (PendingStage, Finalization)>,
    clocks: BTreeMap<(TenantId, TestClockId), TestClock>,
    simulations: BTreeMap<(TenantId, SimulationId), SimulationRun>,
    simulation_chunks: BTreeMap<(TenantId, SimulationId, u32), SimulationChunk>,
}

fn counted(sub: &Subscription) -> Option<(PlanId, u32)> {
    (sub.status != SubscriptionStatus::Cancelled)
        .then_some((sub.terms.plan_id, sub.terms.plan_version))
}

impl State {
    /// Subscriptions (not on a test clock) and advancing clocks due at or before `now`.
    pub(crate) fn due_billing(&self, now: Timestamp) -> Vec<DueItem> {
        let subscriptions = self
            .billing
            .subscriptions
            .iter()
            .filter(|(_, s)| s.test_clock.is_none())
            .filter_map(|((tenant, id), s)| {
                s.due_at().filter(|d| *d <= now).map(|due_at| DueItem {
                    tenant_id: *tenant,
                    due_at,
                    kind: DueKind::Billing(BillingJob::Subscription {
                        tenant: *tenant,
                        id: *id,
                    }),
                })
            });
        let clocks = self.billing.clocks.iter().filter_map(|((tenant, id), c)| {
            c.advance_requested_at
                .filter(|at| *at <= now)
                .map(|due_at| DueItem {
                    tenant_id: *tenant,
                    due_at,
                    kind: DueKind::Billing(BillingJob::TestClock {
                        tenant: *tenant,
                        id: *id,
                    }),
                })
        });
        let finalize = self
            .billing
            .pending
            .iter()
            .filter(|(_, (_, f))| f.hand_over_at <= now)
            .map(|((tenant, _), (_, f))| DueItem {
                tenant_id: *tenant,
                due_at: f.hand_over_at,
                kind: DueKind::Billing(BillingJob::Finalize { tenant: *tenant }),
            });
        subscriptions
            .chain(clocks)
            .chain(finalize)
            .chain(self.late_usage_due(now, |_, c| c.is_none()))
            .chain(self.due_expiries(now, |_, c| c.is_none()))
            .chain(self.due_wallets(now, |_, c| c.is_none()))
            .collect()
    }

    /// Everything on a test clock due at or before `up_to`, in no particular order.
    pub(crate) fn due_on_clock(
        &self,
        tenant: TenantId,
        clock: TestClockId,
        up_to: Timestamp,
    ) -> Vec<DueItem> {
        self.billing
            .subscriptions
            .iter()
            .filter(|((t, _), sub)| *t == tenant && sub.test_clock == Some(clock))
            .filter_map(|((_, id), sub)| {
                sub.due_at().filter(|d| *d <= up_to).map(|due_at| DueItem {
                    tenant_id: tenant,
                    due_at,
                    kind: DueKind::Billing(BillingJob::Subscription { tenant, id: *id }),
                })
            })
            .chain(self.clock_due_payments(tenant, clock, up_to))
            .chain(self.clock_due_dunning(tenant, clock, up_to))
            .chain(self.late_usage_due(up_to, |t, c| t == tenant && c == Some(clock)))
            .chain(self.due_expiries(up_to, |t, c| t == tenant && c == Some(clock)))
            .chain(self.due_purges(up_to, |t, c| t == tenant && c == Some(clock)))
            .chain(self.due_wallets(up_to, |t, c| t == tenant && c == Some(clock)))
            .collect()
    }

    /// A lifecycle step: checks every condition, then writes (or writes nothing).
    pub(crate) fn insert_subscription(
        &mut self,
        tenant: TenantId,
        subscription: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<(), StoreError> {
        if self
            .billing
            .subscriptions
            .contains_key(&(tenant, subscription.id))
        {
            return Err(StoreError::AlreadyExists {
                entity: "subscription",
            });
        }
        self.write_subscription(tenant, None, subscription, invoice, change)
    }

    pub(crate) fn save_subscription(
        &mut self,
        tenant: TenantId,
        previous: &Subscription,
        next: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<(), StoreError> {
        if self
            .billing
            .subscriptions
            .get(&(tenant, next.id))
            .map(|x| x.version)
            != Some(previous.version)
        {
            return Err(StoreError::VersionConflict {
                entity: "subscription",
            });
        }
        self.write_subscription(tenant, Some(previous), next, invoice, change)
    }

    /// Writes `next` (over `previous`, checked by the caller) with the invoice it made, its
    /// plan counts and its change; the invoice is checked before anything is written.
    fn write_subscription(
        &mut self,
        tenant: TenantId,
        previous: Option<&Subscription>,
        next: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<(), StoreError> {
        if let Some(invoice) = invoice {
            self.check_invoice(tenant, invoice, true, 0)?;
            self.write_invoice(tenant, invoice);
        }
        self.move_plan_counts(tenant, previous, next);
        self.billing
            .subscriptions
            .insert((tenant, next.id), next.clone());
        self.record(tenant, change);
        Ok(())
    }

    /// Checks an invoice write's conditions without changing anything.
    pub(crate) fn check_invoice(
        &self,
        tenant: TenantId,
        write: &InvoiceWrite,
        create: bool,
        previous_version: u64,
    ) -> Result<(), StoreError> {
        let stored = self.billing.invoices.get(&(tenant, write.invoice.id));
        match (create, stored) {
            (true, Some(_)) => return Err(StoreError::AlreadyExists { entity: "invoice" }),
            (false, Some(_)) => {
                self.check_invoice_version(tenant, write.invoice.id, previous_version)?
            }
            (false, None) => return Err(StoreError::VersionConflict { entity: "invoice" }),
            _ => {}
        }
        if let Some(payment) = &write.payment {
            self.check_new_payment(tenant, payment)?;
        }
        if let Some(settlement) = &write.balance {
            self.check_balance(tenant, &settlement.change)?;
        }
        self.check_wallets(tenant, write.wallets.as_deref())?;
        if let Some(discounts) = &write.account_discounts {
            self.check_account_discounts(tenant, discounts)?;
        }
        if let Some(number) = write.number {
            let last = self
                .billing
                .invoice_sequence
                .get(&tenant)
                .copied()
                .unwrap_or(0);
            if last + 1 != number {
                return Err(StoreError::VersionConflict {
                    entity: "invoice sequence",
                });
            }
        }
        Ok(())
    }

    pub(crate) fn write_invoice(&mut self, tenant: TenantId, write: &InvoiceWrite) {
        if let Some(number) = write.number {
            self.billing.invoice_sequence.insert(tenant, number);
        }
        if let Some(payment) = &write.payment {
            self.write_payment(tenant, payment);
        }
        if let Some(settlement) = &write.balance {
            self.write_balance(tenant, &settlement.change);
            self.record(tenant, &settlement.record);
        }
        self.write_wallets(tenant, write.wallets.as_deref());
        if let Some(discounts) = &write.account_discounts {
            self.write_account_discounts(tenant, discounts);
        }
        self.put_invoice(tenant, &write.invoice);
        if let Some(finalization) = write.pending {
            self.billing.pending.insert(
                (tenant, write.invoice.id),
                (PendingStage::Number, finalization),
            );
        }
    }

    /// Every stored invoice with its tenant.
    pub(crate) fn billing_invoices(&self) -> impl Iterator<Item = (TenantId, &Invoice)> {
        self.billing.invoices.iter().map(|((t, _), i)| (*t, i))
    }

    /// Stores the invoice as it is now; like a DynamoDB Put of the whole item, this takes
    /// it off the finalizer's list.
    pub(crate) fn put_invoice(&mut self, tenant: TenantId, invoice: &Invoice) {
        self.billing.pending.remove(&(tenant, invoice.id));
        self.billing
            .invoices
            .insert((tenant, invoice.id), invoice.clone());
    }

    fn check_pending(
        &self,
        tenant: TenantId,
        id: InvoiceId,
        stage: PendingStage,
    ) -> Result<(), StoreError> {
        match self.billing.pending.get(&(tenant, id)) {
            Some((at, _)) if *at == stage => Ok(()),
            _ => Err(StoreError::VersionConflict { entity: "invoice" }),
        }
    }

    pub(crate) fn check_invoice_version(
        &self,
        tenant: TenantId,
        id: InvoiceId,
        version: u64,
    ) -> Result<(), StoreError> {
        // Like the DynamoDB store: an invoice owing its follow-ups is not replaced whole.
        let owing = matches!(
            self.billing.pending.get(&(tenant, id)),
            Some((PendingStage::FollowUps, _))
        );
        match self.billing.invoices.get(&(tenant, id)) {
            Some(i) if i.version == version && !owing => Ok(()),
            _ => Err(StoreError::VersionConflict { entity: "invoice" }),
        }
    }

    /// A status change that moves no plan count (past_due and back).
    pub(crate) fn put_subscription(&mut self, tenant: TenantId, sub: &Subscription) {
        self.billing
            .subscriptions
            .insert((tenant, sub.id), sub.clone());
    }

    pub(crate) fn check_subscription_version(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        version: u64,
    ) -> Result<(), StoreError> {
        match self.billing.subscriptions.get(&(tenant, id)) {
            Some(s) if s.version == version => Ok(()),
            _ => Err(StoreError::VersionConflict {
                entity: "subscription",
            }),
        }
    }

    fn move_plan_counts(
        &mut self,
        tenant: TenantId,
        before: Option<&Subscription>,
        after: &Subscription,
    ) {
        let (old, new) = (before.and_then(counted), counted(after));
        if old == new {
            return;
        }
        let counts = &mut self.catalog.version_subscriptions;
        if let Some((plan, n)) = old {
            let count = counts.entry((tenant, plan, n)).or_insert(0);
            *count = count.saturating_sub(1);
        }
        if let Some((plan, n)) = new {
            *counts.entry((tenant, plan, n)).or_insert(0) += 1;
        }
    }
}

#[async_trait]
impl SubscriptionStore for MemoryStore {
    async fn insert_subscription(
        &self,
        tenant: TenantId,
        subscription: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.state()
            .insert_subscription(tenant, subscription, invoice, change)
    }

    async fn save_subscription(
        &self,
        tenant: TenantId,
        previous: &Subscription,
        next: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<(), StoreError> {
        self.state()
            .save_subscription(tenant, previous, next, invoice, change)
    }

    async fn save_subscription_steps(
        &self,
        tenant: TenantId,
        steps: &[SubscriptionStep],
    ) -> Result<(), StepsFailed> {
        let mut s = self.state();
        for (written, step) in steps.iter().enumerate() {
            let failed = |error| StepsFailed { written, error };
            s.check_rollups(tenant, &step.rollups).map_err(failed)?;
            s.save_subscription(
                tenant,
                &step.previous,
                &step.next,
                step.invoice.as_ref(),
                &step.change,
            )
            .map_err(failed)?;
            s.write_rollups(tenant, &step.rollups);
        }
        Ok(())
    }

    async fn get_subscription(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        Ok(self
            .state()
            .billing
            .subscriptions
            .get(&(tenant, id))
            .cloned())
    }

    async fn get_subscriptions(
        &self,
        tenant: TenantId,
        ids: &[SubscriptionId],
    ) -> Result<Vec<Subscription>, StoreError> {
        let s = self.state();
        Ok(ids
            .iter()
            .filter_map(|id| s.billing.subscriptions.get(&(tenant, *id)).cloned())
            .collect())
    }

    async fn list_subscriptions(
        &self,
        tenant: TenantId,
        filter: &SubscriptionFilter,
        page: &PageRequest,
    ) -> Result<Page<Subscription>, StoreError> {
        let s = self.state();
        let items = s
            .billing
            .subscriptions
            .iter()
            // The account filter is served by an index; the rest is examined.
            .filter(|((t, _), sub)| {
                *t == tenant && filter.account.is_none_or(|a| sub.account_id == a)
            })
            .map(|((_, id), sub)| (id.to_string(), sub.clone()));
        Ok(paginate(items, page, |sub| filter.admits(sub)))
    }

    async fn clock_due_items(
        &self,
        tenant: TenantId,
        clock: TestClockId,
        up_to: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueItem>, StoreError> {
        let mut due = self.state().due_on_clock(tenant, clock, up_to);
        due.sort_by_key(|d| d.due_at);
        due.truncate(limit);
        Ok(due)
    }
}

#[async_trait]
impl InvoiceStore for MemoryStore {
    async fn next_invoice_number(&self, tenant: TenantId) -> Result<NextInvoiceNumber, StoreError> {
        let s = self.state();
        Ok(NextInvoiceNumber {
            number: s
                .billing
                .invoice_sequence
                .get(&tenant)
                .copied()
                .unwrap_or(0)
                + 1,
            prefix: s
                .billing
                .invoice_prefix
                .get(&tenant)
                .cloned()
                .unwrap_or_else(|| DEFAULT_INVOICE_PREFIX.to_owned()),
        })
    }

    async fn set_invoice_prefix(
        &self,
        tenant: TenantId,
        prefix: &str,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.billing.invoice_prefix.insert(tenant, prefix.to_owned());
        s.record(tenant, change);
        Ok(())
    }

    async fn insert_invoice(
        &self,
        tenant: TenantId,
        invoice: &InvoiceWrite,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.check_invoice(tenant, invoice, true, 0)?;
        s.write_invoice(tenant, invoice);
        s.record(tenant, change);
        Ok(())
    }

    async fn save_invoice(
        &self,
        tenant: TenantId,
        previous: &Invoice,
        next: &InvoiceWrite,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.check_invoice(tenant, next, false, previous.version)?;
        s.write_invoice(tenant, next);
        s.record(tenant, change);
        Ok(())
    }

    async fn get_invoice(
        &self,
        tenant: TenantId,
        id: InvoiceId,
    ) -> Result<Option<Invoice>, StoreError> {
        Ok(self.state().billing.invoices.get(&(tenant, id)).cloned())
    }

    async fn pending_invoices(
        &self,
        tenant: TenantId,
        limit: usize,
    ) -> Result<Vec<PendingInvoice>, StoreError> {
        let s = self.state();
        let mut pending: Vec<PendingInvoice> = s
            .billing
            .pending
            .iter()
            .filter(|((t, _), _)| *t == tenant)
            .filter_map(|((_, id), (stage, finalization))| {
                Some(PendingInvoice {
                    stage: *stage,
                    invoice: s.billing.invoices.get(&(tenant, *id))?.clone(),
                    finalization: *finalization,
                })
            })
            .collect();
        pending.sort_by_key(|p| {
            (
                p.stage != PendingStage::FollowUps,
                p.invoice.created_at,
                p.invoice.id,
            )
        });
        pending.truncate(limit);
        Ok(pending)
    }

    async fn number_invoices(
        &self,
        tenant: TenantId,
        prefix: &str,
        numbered: &[NumberedInvoice],
    ) -> Result<(), StoreError> {
        let Some(first) = numbered.first() else {
            return Ok(());
        };
        if numbered.len() > MAX_NUMBERED_PER_WRITE
            || numbered
                .iter()
                .zip(first.number..)
                .any(|(n, expected)| n.number != expected)
        {
            return Err(StoreError::Internal(
                "invoice numbers of one write must be consecutive, at most 99".into(),
            ));
        }
        let mut s = self.state();
        if s.billing
            .invoice_sequence
            .get(&tenant)
            .copied()
            .unwrap_or(0)
            + 1
            != first.number
            || s.billing
                .invoice_prefix
                .get(&tenant)
                .map_or(DEFAULT_INVOICE_PREFIX, String::as_str)
                != prefix
        {
            return Err(StoreError::VersionConflict {
                entity: "invoice sequence",
            });
        }
        for n in numbered {
            s.check_invoice_version(tenant, n.invoice.id, n.previous_version)?;
            s.check_pending(tenant, n.invoice.id, PendingStage::Number)?;
        }
        for n in numbered {
            s.put_invoice(tenant, &n.invoice);
            s.billing.pending.insert(
                (tenant, n.invoice.id),
                (PendingStage::FollowUps, n.finalization),
            );
            s.billing.invoice_sequence.insert(tenant, n.number);
        }
        Ok(())
    }

    async fn finish_invoice(
        &self,
        tenant: TenantId,
        invoice: &Invoice,
        payment: Option<&billing_domain::collection::payment::Payment>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.check_pending(tenant, invoice.id, PendingStage::FollowUps)?;
        if let Some(payment) = payment {
            s.check_new_payment(tenant, payment)?;
            s.write_payment(tenant, payment);
        }
        s.billing.pending.remove(&(tenant, invoice.id));
        s.record(tenant, change);
        Ok(())
    }

    async fn list_invoices(
        &self,
        tenant: TenantId,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> Result<Page<Invoice>, StoreError> {
        let s = self.state();
        let items = s
            .billing
            .invoices
            .iter()
            .rev()
            .filter(|((t, _), i)| *t == tenant && filter.account.is_none_or(|a| i.account_id == a))
            .map(|((_, id), i)| (id.to_string(), i.clone()));
        Ok(paginate(items, page, |i| filter.admits(i)))
    }
}

#[async_trait]
impl TestClockStore for MemoryStore {
    async fn insert_test_clock(
        &self,
        tenant: TenantId,
        clock: &TestClock,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.billing.clocks.contains_key(&(tenant, clock.id)) {
            return Err(StoreError::AlreadyExists {
                entity: "test clock",
            });
        }
        s.billing.clocks.insert((tenant, clock.id), clock.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn save_test_clock(
        &self,
        tenant: TenantId,
        previous: &TestClock,
        next: &TestClock,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.billing.clocks.get(&(tenant, next.id)).map(|c| c.version) != Some(previous.version) {
            return Err(StoreError::VersionConflict {
                entity: "test clock",
            });
        }
        s.billing.clocks.insert((tenant, next.id), next.clone());
        Ok(())
    }

    async fn get_test_clock(
        &self,
        tenant: TenantId,
        id: TestClockId,
    ) -> Result<Option<TestClock>, StoreError> {
        Ok(self.state().billing.clocks.get(&(tenant, id)).cloned())
    }
}

#[async_trait]
impl SimulationStore for MemoryStore {
    async fn insert_simulation(
        &self,
        tenant: TenantId,
        run: &SimulationRun,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.billing.simulations.contains_key(&(tenant, run.id)) {
            return Err(StoreError::AlreadyExists {
                entity: "simulation",
            });
        }
        s.billing.simulations.insert((tenant, run.id), run.clone());
        Ok(())
    }

    async fn save_simulation(
        &self,
        tenant: TenantId,
        previous: &SimulationRun,
        next: &SimulationRun,
        chunk: Option<&SimulationChunk>,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let conflict = StoreError::VersionConflict {
            entity: "simulation",
        };
        if s.billing
            .simulations
            .get(&(tenant, next.id))
            .map(|r| r.version)
            != Some(previous.version)
        {
            return Err(conflict);
        }
        if let Some(chunk) = chunk {
            let key = (tenant, next.id, chunk.number);
            if s.billing.simulation_chunks.contains_key(&key) {
                return Err(conflict);
            }
            s.billing.simulation_chunks.insert(key, chunk.clone());
        }
        s.billing
            .simulations
            .insert((tenant, next.id), next.clone());
        Ok(())
    }

    async fn get_simulation(
        &self,
        tenant: TenantId,
        id: SimulationId,
    ) -> Result<Option<SimulationRun>, StoreError> {
        Ok(self.state().billing.simulations.get(&(tenant, id)).cloned())
    }

    async fn simulation_chunks(
        &self,
        tenant: TenantId,
        id: SimulationId,
    ) -> Result<Vec<SimulationChunk>, StoreError> {
        Ok(self
            .state()
            .billing
            .simulation_chunks
            .range((tenant, id, 0)..=(tenant, id, u32::MAX))
            .map(|(_, chunk)| chunk.clone())
            .collect())
    }
}
