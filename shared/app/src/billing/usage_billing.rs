//! The billing side of usage: the usage lines of a period a lifecycle step closes, and
//! supplemental invoices for late usage.

use billing_domain::billing::invoice_draft::{LineInput, LineSource};
use billing_domain::billing::proration::Fraction;
use billing_domain::billing::subscription::{
    Billing, BillingReason, Subscription, Transition, UsageTerm,
};
use billing_domain::catalog::charges::Priced;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::ids::{SubscriptionId, TenantId};
use billing_domain::kernel::money::MinorUnits;
use billing_domain::usage::meter::{self};
use jiff::Timestamp;

use super::BillingService;
use crate::kernel::{change, event, system_caller, to_json, AppError, ChangeSpec, WRITE_ATTEMPTS};
use crate::ports::*;
use crate::usage::pricing::{capacity_lines, period_rollups, price, usage_lines};

impl BillingService {
    /// Adds the usage of the period a lifecycle step closes to the step's invoice, and
    /// returns the rollups to mark billed in the same write.
    pub(super) async fn bill_closed_usage(
        &self,
        tenant: TenantId,
        previous: &Subscription,
        transition: &mut Transition,
    ) -> Result<Vec<RollupWrite>, AppError> {
        let Some(period) = meter::closed_by(previous, &transition.next) else {
            return Ok(Vec::new());
        };
        let terms = &previous.terms.usage_charges;
        if terms.is_empty() && previous.terms.capacity_charges.is_empty() {
            // Nothing to price, and no usage billed that could arrive late: no read, and
            // the last period that did bill usage stays the one late usage lands on.
            return Ok(Vec::new());
        }
        let stored = period_rollups(&*self.store, tenant, previous, period).await?;
        let mut rollups = Vec::with_capacity(terms.len());
        let mut lines = Vec::with_capacity(terms.len());
        for term in terms {
            let rollup = stored
                .iter()
                .find(|r| r.metric == term.metric)
                .cloned()
                .unwrap_or_else(|| {
                    Rollup::empty(
                        previous,
                        &term.metric,
                        billing_domain::catalog::metric::Aggregation::Count,
                        period,
                    )
                });
            let fraction = previous.usage_fraction(term, &period)?;
            let usage = term.prorate(rollup.usage(&term.model), fraction);
            let priced = price(term, &usage, previous)?;
            lines.push(term.line(usage, period));
            rollups.push((rollup, priced, fraction));
        }
        // Capacity charges price the same rollups; those stay unbilled unless a usage charge
        // bills them, so late usage of a metric only a capacity charge reads is not re-priced.
        for line in capacity_lines(previous, &stored, period) {
            lines.push(line?);
        }
        transition.bill_usage(period, lines);
        let Some(billing) = &transition.billing else {
            return Ok(Vec::new());
        };
        let invoice_id = billing_domain::billing::invoice::subscription_invoice_id(
            transition.next.id,
            transition.next.invoice_count,
            billing.period.start,
        );
        Ok(rollups
            .into_iter()
            .zip(terms)
            .map(|((rollup, priced, fraction), term)| {
                billed(rollup, term, priced, fraction, invoice_id)
            })
            .collect())
    }

    /// Adds the usage so far of the period a previewed step would close to its invoice
    /// (what [`BillingService::bill_closed_usage`] will bill, without writing anything).
    pub(super) async fn preview_usage(
        &self,
        tenant: TenantId,
        previous: &Subscription,
        step: &mut Transition,
    ) -> Result<(), AppError> {
        let Some(period) = meter::closed_by(previous, &step.next) else {
            return Ok(());
        };
        let rollups = if previous.terms.usage_charges.is_empty()
            && previous.terms.capacity_charges.is_empty()
        {
            Vec::new()
        } else {
            period_rollups(&*self.store, tenant, previous, period).await?
        };
        step.bill_usage(period, usage_lines(previous, &rollups, period)?);
        Ok(())
    }

    /// Bills late usage of the subscription that is due by `until` on a supplemental
    /// invoice (the difference to what was billed), exactly once. Returns whether it
    /// wrote anything.
    pub async fn bill_late_usage(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
        until: Timestamp,
    ) -> Result<bool, AppError> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(sub) = self.store.get_subscription(tenant, id).await? else {
                return Ok(false);
            };
            let Some(period) = sub.last_usage_period else {
                return Ok(false);
            };
            let rollups = period_rollups(&*self.store, tenant, &sub, period).await?;
            let due: Vec<Rollup> = rollups
                .into_iter()
                .filter(|r| r.late_due_at.is_some_and(|d| d <= until))
                .collect();
            let Some(at) = due.iter().filter_map(|r| r.late_due_at).max() else {
                return Ok(false);
            };
            let invoice_id = meter::supplemental_invoice_id(
                id,
                period.start,
                &due.iter()
                    .map(|r| (r.metric.clone(), r.version))
                    .collect::<Vec<_>>(),
            );
            let mut lines = Vec::new();
            let mut writes = Vec::with_capacity(due.len());
            for mut rollup in due {
                let read = rollup.version;
                rollup.late_due_at = None;
                rollup.version += 1;
                if let Some(was) = rollup.billed.clone() {
                    let term = UsageTerm {
                        metric: rollup.metric.clone(),
                        model: was.model.clone(),
                        commitment: was.commitment,
                        prorated: was.prorated.is_some(),
                        tax_behavior: sub.terms.usage_charge_tax_behavior(&rollup.metric),
                    };
                    let usage = term.prorate(rollup.usage(&term.model), was.prorated);
                    let priced = price(&term, &usage, &sub)?;
                    let delta = MinorUnits::new(priced.amount.minor)
                        .checked_sub(was.amount)
                        .ok_or_else(|| {
                            AppError::Internal("late usage: the difference overflows".into())
                        })?
                        .get();
                    if delta != 0 {
                        lines.push(LineInput {
                            id: Some(format!("late_usage:{}", rollup.metric)),
                            description: format!("Late usage: {}", rollup.metric),
                            period: Some(rollup.period),
                            source: LineSource::Fixed {
                                amount: delta,
                                quantity: Some(rollup.quantity() - was.quantity),
                            },
                            tax_rates: Vec::new(),
                            tax_behavior: term.tax_behavior,
                            discountable: true,
                        });
                    }
                    rollup = billed(rollup, &term, priced, was.prorated, invoice_id).next;
                    rollup.version = read + 1;
                }
                writes.push(RollupWrite {
                    expected_version: read,
                    next: rollup,
                });
            }
            let caller = &system_caller(tenant, sub.livemode);
            let (invoice, change) = if lines.is_empty() {
                (None, None)
            } else {
                let billing = Billing {
                    reason: BillingReason::LateUsage,
                    period,
                    lines,
                    discounts: Vec::new(),
                };
                let invoice = self
                    .finalized_invoice(caller, &sub, &billing, invoice_id, at)
                    .await?;
                let data = to_json(&invoice.invoice)?;
                let mut change = change(
                    caller,
                    at,
                    ChangeSpec {
                        entity_type: "invoice",
                        entity_id: invoice_id.to_string(),
                        action: AuditAction::Create,
                        event_type: Some(EventType::InvoiceCreated),
                        before: None,
                        after: &data,
                    },
                );
                change.events.push(event(
                    caller,
                    at,
                    EventType::InvoiceFinalized,
                    invoice_id.to_string(),
                    data,
                    None,
                ));
                (Some(invoice), Some(change))
            };
            match self
                .store
                .bill_late_usage(tenant, invoice.as_ref(), &writes, change.as_ref())
                .await
            {
                Ok(()) => {
                    self.collection
                        .release_invoice_payment(tenant, invoice.as_ref(), at)
                        .await;
                    return Ok(true);
                }
                // More late usage landed, the sequence moved, or another worker billed it.
                Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => {}
                Err(other) => return Err(other.into()),
            }
        }
        Err(AppError::Unavailable(
            "late usage kept changing while billing it; the job will be retried".into(),
        ))
    }
}

impl BillingService {
    /// Stores a lifecycle step, with the rollups it bills when it closed a usage period.
    pub(super) async fn save_step(
        &self,
        tenant: TenantId,
        step: &SubscriptionStep,
    ) -> Result<(), StoreError> {
        if step.rollups.is_empty() {
            self.store
                .save_subscription(
                    tenant,
                    &step.previous,
                    &step.next,
                    step.invoice.as_ref(),
                    &step.change,
                )
                .await
        } else {
            self.store
                .save_subscription_steps(tenant, std::slice::from_ref(step))
                .await
                .map_err(|failed| failed.error)
        }
    }
}

/// The rollup marked billed at `priced` by invoice `invoice_id`, written from its version.
fn billed(
    mut rollup: Rollup,
    term: &UsageTerm,
    priced: Priced,
    prorated: Option<Fraction>,
    invoice_id: billing_domain::kernel::ids::InvoiceId,
) -> RollupWrite {
    let read = rollup.version;
    rollup.billed = Some(BilledUsage {
        quantity: rollup.quantity(),
        amount: priced.amount.minor.into(),
        model: term.model.clone(),
        commitment: term.commitment,
        prorated,
        invoice_id,
    });
    rollup.late_due_at = None;
    rollup.version = read + 1;
    RollupWrite {
        expected_version: read,
        next: rollup,
    }
}
