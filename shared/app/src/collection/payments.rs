//! Collecting invoices: the payment worker's attempts and retries, recorded with what
//! follows them.
//!
//! The first attempt of an invoice is written with the invoice's finalization (outbox
//! style) and handed to the payment queue right after the commit; the due index holds it
//! until an attempt has been recorded, so the sweep releases it again if that message is
//! lost. An attempt is charged with the gateway idempotency key = its id, and its result is
//! written over the version it was read at, together with the invoice, the next attempt
//! (a retry waits in the due index: SQS delays stop at 15 minutes), the subscription's
//! status, the audit record and the events. A duplicate delivery, or a worker that crashed
//! after the gateway accepted the charge, charges once: the gateway answers the same key
//! with its first outcome and only one write of the result can succeed.

use billing_domain::billing::invoice::Invoice;
use billing_domain::billing::subscription::Subscription;
use billing_domain::collection::payment::{ChargeResult, Payment, PaymentFailure, PaymentStatus};
use billing_domain::collection::retry::{FinalAction, PaymentSettings};
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{InvoiceId, PaymentId, TenantId};
use jiff::Timestamp;

use super::CollectionService;
use crate::kernel::{
    change, event, gateway_unavailable, system_caller, to_json, AppError, Caller, ChangeSpec,
    WRITE_ATTEMPTS,
};
use crate::ports::*;

/// What handling one payment attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collected {
    /// Not due, gone, or already recorded (a duplicate delivery).
    Nothing,
    Succeeded,
    /// Declined; the next attempt's time when one is scheduled.
    Failed {
        retry_at: Option<Timestamp>,
    },
    RequiresAction,
    /// The invoice was settled another way first.
    Canceled,
}

impl From<billing_domain::collection::payment::PaymentError> for AppError {
    fn from(err: billing_domain::collection::payment::PaymentError) -> Self {
        use billing_domain::collection::payment::PaymentError;
        match err {
            PaymentError::InvalidTransition { .. } => AppError::Conflict {
                code: ErrorCode::InvalidTransition,
                message: err.to_string(),
                param: None,
            },
            PaymentError::RefundTooLarge { .. } => {
                AppError::Invalid(billing_domain::kernel::error::ValidationError::new(
                    ErrorCode::RefundTooLarge,
                    "amount",
                    err.to_string(),
                ))
            }
            PaymentError::RefundNotPositive => {
                AppError::Invalid(billing_domain::kernel::error::ValidationError::new(
                    ErrorCode::InvalidAmount,
                    "amount",
                    err.to_string(),
                ))
            }
        }
    }
}

/// The gateway's answer in the terms a payment records; a refused request (an unusable
/// payment method) is a failed attempt like a decline.
pub(super) fn charge_result(
    outcome: Result<ChargeOutcome, GatewayError>,
) -> Result<ChargeResult, AppError> {
    Ok(match outcome {
        Ok(ChargeOutcome::Succeeded {
            payment_intent,
            charge,
        }) => ChargeResult::Succeeded {
            payment_intent,
            charge,
        },
        Ok(ChargeOutcome::Declined {
            payment_intent,
            code,
            decline_code,
            message,
        }) => ChargeResult::Failed {
            payment_intent,
            failure: PaymentFailure::new(code, decline_code, message),
        },
        Ok(ChargeOutcome::RequiresAction { payment_intent }) => {
            ChargeResult::RequiresAction { payment_intent }
        }
        Err(GatewayError::Rejected { code, message }) => ChargeResult::Failed {
            payment_intent: None,
            failure: PaymentFailure::new(code, None, message),
        },
        Err(unavailable) => return Err(gateway_unavailable(unavailable)),
    })
}

pub(super) fn busy() -> AppError {
    AppError::Conflict {
        code: ErrorCode::ConcurrentModification,
        message: "the invoice kept changing under this request; retry".into(),
        param: None,
    }
}

/// What recording an attempt's result writes, before it is written.
pub(super) struct Recorded {
    pub(super) write: CollectionWrite,
    outcome: Collected,
    pub(super) events: Vec<EventType>,
    pub(super) payment: Payment,
}

impl CollectionService {
    /// Hands payment work to the queue (the sweep's path); without a queue it stays due.
    pub async fn release_payments(&self, jobs: &[PaymentJob]) -> Result<(), AppError> {
        match &self.payment_queue {
            Some(queue) => Ok(queue.enqueue(jobs).await?),
            None => Err(AppError::Unavailable(
                "no payment queue is configured in this process".into(),
            )),
        }
    }

    /// Right after a commit that created attempts due now: the fast path. A failure is
    /// only logged, the due index brings the attempts back to the sweep.
    pub(crate) async fn release_due_payments(
        &self,
        tenant: TenantId,
        payments: &[&Payment],
        now: Timestamp,
    ) {
        let jobs: Vec<PaymentJob> = payments
            .iter()
            .filter(|p| p.due_at <= now)
            .map(|p| PaymentJob::Attempt { tenant, id: p.id })
            .collect();
        if jobs.is_empty() {
            return;
        }
        if let Some(queue) = &self.payment_queue {
            if let Err(err) = queue.enqueue(&jobs).await {
                tracing::warn!(%err, "queueing payment attempts failed; the sweep will queue them");
            }
        }
    }

    /// Hands an invoice's first attempt to the queue right after the write that made it.
    pub async fn release_invoice_payment(
        &self,
        tenant: TenantId,
        invoice: Option<&InvoiceWrite>,
        now: Timestamp,
    ) {
        if let Some(payment) = invoice.and_then(|i| i.payment.as_ref()) {
            self.release_due_payments(tenant, &[payment], now).await;
        }
    }

    /// Runs one piece of payment work at `now`: what the payment worker does with a
    /// message, and what a test clock's advance does with an item on the clock.
    pub async fn run_payment_job(&self, job: &PaymentJob, now: Timestamp) -> Result<(), AppError> {
        match job {
            PaymentJob::Attempt { tenant, id } => {
                self.collect_payment(*tenant, *id, now).await.map(|_| ())
            }
            PaymentJob::Overdue { tenant, invoice } => {
                self.invoice_overdue(*tenant, *invoice, Some(now)).await
            }
            PaymentJob::Dunning { tenant, account } => self
                .run_due_dunning(*tenant, *account, now)
                .await
                .map(|_| ()),
            PaymentJob::DunningNotice {
                tenant,
                account,
                key,
            } => self.send_due_notice(*tenant, *account, key).await,
        }
    }

    /// Runs one message of the payment queue at the time of the account it concerns (the
    /// real time, or its test clock's): what `payment-worker` does.
    pub async fn handle_payment_job(&self, job: &PaymentJob) -> Result<(), AppError> {
        match job {
            PaymentJob::Attempt { tenant, id } => {
                let Some(payment) = self.store.get_payment(*tenant, *id).await? else {
                    return Ok(());
                };
                let now = self.clocks.now_for(*tenant, payment.test_clock).await?;
                self.collect_known(*tenant, *id, now, Some(payment))
                    .await
                    .map(|_| ())
            }
            PaymentJob::Overdue { tenant, invoice } => {
                self.invoice_overdue(*tenant, *invoice, None).await
            }
            // Dunning runs on the account's own time (its test clock's, if it has one).
            PaymentJob::Dunning { tenant, account } => self
                .run_due_dunning(*tenant, *account, self.clocks.now())
                .await
                .map(|_| ()),
            PaymentJob::DunningNotice {
                tenant,
                account,
                key,
            } => self.send_due_notice(*tenant, *account, key).await,
        }
    }

    /// Marks a `send_invoice` invoice overdue once its due date has passed (at `now`, or
    /// its account's time) and tells dunning, which opens the account's case. Safe to run
    /// twice: a marked invoice is only reported again (dunning's side is idempotent).
    pub async fn invoice_overdue(
        &self,
        tenant: TenantId,
        id: InvoiceId,
        now: Option<Timestamp>,
    ) -> Result<(), AppError> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(invoice) = self.store.get_invoice(tenant, id).await? else {
                return Ok(());
            };
            let now = match now {
                Some(now) => now,
                None => self.clocks.now_for(tenant, invoice.test_clock).await?,
            };
            let livemode = self
                .store
                .get_tenant(tenant)
                .await?
                .is_some_and(|t| t.mode.is_live());
            let caller = &system_caller(tenant, livemode);
            let Some(next) = invoice.mark_overdue(now) else {
                if invoice.overdue && invoice.is_payable() {
                    self.invoice_past_due(caller, invoice.account_id, invoice.id, now)
                        .await?;
                }
                return Ok(());
            };
            let write = CollectionWrite {
                invoice: Some((invoice.version, next)),
                ..Default::default()
            };
            let change =
                collection_change(caller, &write, &[EventType::InvoiceOverdue], true, now)?;
            match self.store.save_collection(tenant, &write, &change).await {
                Err(StoreError::VersionConflict { .. }) => continue,
                other => other?,
            }
            return self
                .invoice_past_due(caller, invoice.account_id, invoice.id, now)
                .await;
        }
        Err(busy())
    }

    /// Makes a due payment attempt: charges the account's default payment method (or the
    /// one the attempt names) and records the result. Safe to run twice and concurrently.
    pub async fn collect_payment(
        &self,
        tenant: TenantId,
        id: PaymentId,
        now: Timestamp,
    ) -> Result<Collected, AppError> {
        self.collect_known(tenant, id, now, None).await
    }

    /// [`CollectionService::collect_payment`] starting from the payment as just read (`known`), so the
    /// worker reads it once.
    async fn collect_known(
        &self,
        tenant: TenantId,
        id: PaymentId,
        now: Timestamp,
        mut known: Option<Payment>,
    ) -> Result<Collected, AppError> {
        let mut result: Option<(String, Option<String>, ChargeResult)> = None;
        for _ in 0..WRITE_ATTEMPTS {
            let payment = match known.take() {
                Some(payment) => payment,
                None => match self.store.get_payment(tenant, id).await? {
                    Some(payment) => payment,
                    None => return Ok(Collected::Nothing),
                },
            };
            let caller = &system_caller(tenant, payment.livemode);
            if payment.status != PaymentStatus::Pending {
                // Recorded already (a duplicate delivery): make sure what follows a result
                // happened, since the first run may have stopped right after its commit.
                self.after_recorded(caller, &payment, now).await?;
                return Ok(Collected::Nothing);
            }
            if !payment.is_due(now) {
                return Ok(Collected::Nothing);
            }
            let invoice = self
                .store
                .get_invoice(tenant, payment.invoice_id)
                .await?
                .ok_or_else(|| AppError::not_found("invoice", payment.invoice_id))?;
            if !invoice.is_payable() {
                return self.cancel_attempt(caller, &payment, now).await;
            }
            let (payment, (gateway, method, charged)) = match result.take() {
                Some(done) => (payment, done),
                None => {
                    let Some(bound) = self.bind_to_account(caller, &payment, now).await? else {
                        continue;
                    };
                    let charged = self.charge(tenant, &bound, &invoice).await?;
                    (bound, charged)
                }
            };
            let recorded = self
                .record_result(
                    caller,
                    &payment,
                    &invoice,
                    &gateway,
                    method.clone(),
                    charged.clone(),
                    now,
                )
                .await?;
            match self.commit_recorded(caller, &recorded, now).await {
                Ok(()) => {
                    self.after_recorded(caller, &recorded.payment, now).await?;
                    return Ok(recorded.outcome);
                }
                // Someone moved the invoice or the subscription (or recorded this attempt):
                // read again; the charge is not repeated.
                Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => {
                    result = Some((gateway, method, charged));
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(busy())
    }

    /// The pending attempt as bound to the Stripe account it is sent to: the tenant's
    /// connected account now, written before the first gateway call; as stored when bound
    /// already. `None` when another run bound it first (read it again).
    async fn bind_to_account(
        &self,
        caller: &Caller,
        payment: &Payment,
        now: Timestamp,
    ) -> Result<Option<Payment>, AppError> {
        if payment.sent_to.is_some() {
            return Ok(Some(payment.clone()));
        }
        let tenant = caller.tenant_id;
        let settings = self.store.payment_settings(tenant).await?;
        let Some(bound) = payment.send_to(settings.stripe_account, now) else {
            return Ok(Some(payment.clone()));
        };
        let write = CollectionWrite {
            payments: vec![(Some(payment.version), bound.clone())],
            ..Default::default()
        };
        let change = collection_change(caller, &write, &[], true, now)?;
        match self.store.save_collection(tenant, &write, &change).await {
            Ok(()) => Ok(Some(bound)),
            Err(StoreError::VersionConflict { .. }) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }

    /// Charges an attempt at the gateway under its id as the idempotency key, on the
    /// account it is bound to.
    async fn charge(
        &self,
        tenant: TenantId,
        payment: &Payment,
        invoice: &Invoice,
    ) -> Result<(String, Option<String>, ChargeResult), AppError> {
        let gateway = self.gateways.name(payment.livemode).to_owned();
        // A mode without its gateway (a live tenant with only a test key) fails the attempt
        // with the reason recorded, as the gateway refusing it would: nothing is sent.
        let sent_to = payment
            .sent_to
            .as_ref()
            .and_then(|s| s.stripe_account.as_ref());
        let gateway_of_mode = match self.gateways.for_tenant(payment.livemode, sent_to) {
            Ok(g) => g,
            Err(refused) => {
                let method = payment.payment_method.clone();
                return Ok((gateway, method, charge_result(Err(refused))?));
            }
        };
        let profile = self
            .store
            .get_payment_profile(tenant, payment.account_id)
            .await?;
        let method = payment.payment_method.clone().or_else(|| {
            profile
                .as_ref()
                .and_then(|p| p.default().map(|m| m.id.clone()))
        });
        let (Some(customer), Some(method)) = (profile.and_then(|p| p.customer), method) else {
            return Ok((
                gateway,
                None,
                ChargeResult::Failed {
                    payment_intent: None,
                    failure: PaymentFailure::no_payment_method(),
                },
            ));
        };
        let outcome = gateway_of_mode
            .charge(&ChargeRequest {
                idempotency_key: payment.id.to_string(),
                customer,
                payment_method: method.clone(),
                amount: payment.amount.of(payment.currency),
                description: format!("Invoice {}", invoice.number.as_deref().unwrap_or("(draft)")),
                metadata: vec![
                    ("tenant_id".into(), tenant.to_string()),
                    ("invoice_id".into(), invoice.id.to_string()),
                    ("attempt_id".into(), payment.id.to_string()),
                    ("account_id".into(), payment.account_id.to_string()),
                ],
            })
            .await;
        Ok((gateway, Some(method), charge_result(outcome)?))
    }

    async fn cancel_attempt(
        &self,
        caller: &Caller,
        payment: &Payment,
        now: Timestamp,
    ) -> Result<Collected, AppError> {
        let next = payment.cancel(now)?;
        let change = payment_change(caller, payment, &next, &[EventType::PaymentCanceled], now)?;
        let write = CollectionWrite {
            payments: vec![(Some(payment.version), next)],
            ..Default::default()
        };
        match self
            .store
            .save_collection(caller.tenant_id, &write, &change)
            .await
        {
            Ok(()) => Ok(Collected::Canceled),
            Err(StoreError::VersionConflict { .. }) => Ok(Collected::Nothing),
            Err(other) => Err(other.into()),
        }
    }

    /// Everything recording `result` for `payment` on `invoice` changes.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record_result(
        &self,
        caller: &Caller,
        payment: &Payment,
        invoice: &Invoice,
        gateway: &str,
        method: Option<String>,
        result: ChargeResult,
        now: Timestamp,
    ) -> Result<Recorded, AppError> {
        let tenant = caller.tenant_id;
        let next = payment.record(gateway, method, result, now)?;
        let subscription = match invoice.subscription_id {
            Some(id) => self.store.get_subscription(tenant, id).await?,
            None => None,
        };
        let mut write = CollectionWrite::default();
        let mut events = Vec::new();
        let outcome = match next.status {
            PaymentStatus::Succeeded => {
                let paid = invoice
                    .attempted(PaymentStatus::Succeeded, None)?
                    .pay(None, now)?;
                write.invoice = Some((invoice.version, paid));
                write.subscription = recovered(subscription.as_ref(), now);
                events.extend([EventType::PaymentSucceeded, EventType::InvoicePaid]);
                Collected::Succeeded
            }
            PaymentStatus::RequiresAction => {
                let waiting = invoice.attempted(PaymentStatus::RequiresAction, None)?;
                write.invoice = Some((invoice.version, waiting));
                events.extend([
                    EventType::PaymentRequiresAction,
                    EventType::InvoicePaymentActionRequired,
                ]);
                Collected::RequiresAction
            }
            _ if next.manual => {
                // The automatic attempts keep their schedule; nothing else changes.
                let failed =
                    invoice.attempted(PaymentStatus::Failed, invoice.next_payment_attempt)?;
                events.extend([EventType::PaymentFailed, EventType::InvoicePaymentFailed]);
                write.invoice = Some((invoice.version, failed));
                Collected::Failed {
                    retry_at: invoice.next_payment_attempt,
                }
            }
            _ => {
                let settings = self.store.payment_settings(tenant).await?;
                let retry_at = retry_at(&settings, &next);
                let mut failed = invoice.attempted(PaymentStatus::Failed, retry_at)?;
                events.extend([EventType::PaymentFailed, EventType::InvoicePaymentFailed]);
                match retry_at {
                    Some(at) => {
                        write
                            .payments
                            .push((None, next.next_attempt(invoice, at, now)));
                    }
                    None => {
                        if settings.final_action == FinalAction::MarkUncollectible
                            && failed.status
                                == billing_domain::billing::invoice::InvoiceStatus::Open
                        {
                            failed = failed.mark_uncollectible()?;
                            events.push(EventType::InvoiceMarkedUncollectible);
                        }
                        write.subscription = subscription
                            .as_ref()
                            .and_then(|s| s.payment_failed(now).map(|n| (s.version, n)));
                        if write.subscription.is_some() {
                            events.push(EventType::SubscriptionPastDue);
                        }
                    }
                }
                write.invoice = Some((invoice.version, failed));
                Collected::Failed { retry_at }
            }
        };
        if write.subscription.is_some() && !events.contains(&EventType::SubscriptionPastDue) {
            events.push(EventType::SubscriptionUpdated);
        }
        if let Some(intent) = &next.payment_intent {
            write.gateway_refs.push((
                intent.clone(),
                GatewayRef {
                    tenant_id: tenant,
                    account_id: next.account_id,
                    payment_id: Some(next.id),
                },
            ));
        }
        write
            .payments
            .insert(0, (Some(payment.version), next.clone()));
        self.with_purchase(tenant, &mut write, payment.livemode, now)
            .await?;
        Ok(Recorded {
            write,
            outcome,
            events,
            payment: next,
        })
    }

    pub(super) async fn commit_recorded(
        &self,
        caller: &Caller,
        recorded: &Recorded,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let change = collection_change(caller, &recorded.write, &recorded.events, true, now)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.store
            .save_collection(caller.tenant_id, &recorded.write, &change)
            .await?;
        let created: Vec<&Payment> = recorded
            .write
            .payments
            .iter()
            .filter(|(v, _)| v.is_none())
            .map(|(_, p)| p)
            .collect();
        self.release_due_payments(caller.tenant_id, &created, now)
            .await;
        Ok(())
    }

    /// What follows a recorded result, each idempotent so a redelivery can repeat it:
    /// dunning hears of paid and failed invoices.
    pub(super) async fn after_recorded(
        &self,
        caller: &Caller,
        payment: &Payment,
        now: Timestamp,
    ) -> Result<(), AppError> {
        match payment.status {
            PaymentStatus::Succeeded => {
                self.invoice_settled(caller, payment.account_id, payment.invoice_id, now)
                    .await
            }
            // A manual attempt's failure is the caller's to handle; dunning follows the
            // automatic attempts.
            PaymentStatus::Failed if !payment.manual => {
                self.invoice_past_due(caller, payment.account_id, payment.invoice_id, now)
                    .await
            }
            _ => Ok(()),
        }
    }
}

/// The first payment attempt of a just-finalized invoice, when it is to be charged
/// automatically and has something to pay.
pub fn first_attempt(invoice: &Invoice, livemode: bool, now: Timestamp) -> Option<Payment> {
    (invoice.collection_method
        == billing_domain::billing::subscription::CollectionMethod::ChargeAutomatically
        && invoice.status == billing_domain::billing::invoice::InvoiceStatus::Open
        && invoice.amount_remaining().is_positive())
    .then(|| Payment::first(invoice, livemode, now))
}

/// When to try again after `failed`, unless the decline was hard or the schedule is spent.
fn retry_at(settings: &PaymentSettings, failed: &Payment) -> Option<Timestamp> {
    let failure = failed.failure.as_ref()?;
    if failure.kind == billing_domain::collection::payment::DeclineKind::Hard {
        return None;
    }
    settings.next_attempt_at(failed.first_failed_at?, failed.attempt)
}

/// A past_due subscription made active by a payment, with the version it replaces.
pub(super) fn recovered(sub: Option<&Subscription>, now: Timestamp) -> Option<(u64, Subscription)> {
    let sub = sub?;
    sub.payment_recovered(now).map(|next| (sub.version, next))
}

/// The audit record (of the payment, or of the invoice when no payment changed) and
/// the events of a collection write, each event carrying its resource as it now is.
pub fn collection_change(
    caller: &Caller,
    write: &CollectionWrite,
    event_types: &[EventType],
    update: bool,
    now: Timestamp,
) -> Result<Change, AppError> {
    let (entity_type, entity_id, after) = match (write.payments.first(), &write.invoice) {
        (Some((_, p)), _) => ("payment", p.id.to_string(), to_json(p)?),
        (None, Some((_, i))) => ("invoice", i.id.to_string(), to_json(i)?),
        (None, None) => match &write.credit_note {
            Some(c) => ("credit_note", c.id.to_string(), to_json(c)?),
            None => return Err(AppError::Internal("an empty collection write".into())),
        },
    };
    let mut change = change(
        caller,
        now,
        ChangeSpec {
            entity_type,
            entity_id,
            action: if update {
                AuditAction::Update
            } else {
                AuditAction::Create
            },
            event_type: None,
            before: None,
            after: &after,
        },
    );
    for &event_type in event_types {
        let (resource, data) = match event_type.family() {
            "invoice" => match &write.invoice {
                Some((_, i)) => (i.id.to_string(), to_json(i)?),
                None => continue,
            },
            "subscription" => match &write.subscription {
                Some((_, s)) => (s.id.to_string(), to_json(s)?),
                None => continue,
            },
            "credit_note" => match &write.credit_note {
                Some(c) => (c.id.to_string(), to_json(c)?),
                None => continue,
            },
            _ => match write.payments.first() {
                Some((_, p)) => (p.id.to_string(), to_json(p)?),
                None => continue,
            },
        };
        change
            .events
            .push(event(caller, now, event_type, resource, data, None));
    }
    Ok(change)
}

fn payment_change(
    caller: &Caller,
    before: &Payment,
    after: &Payment,
    event_types: &[EventType],
    now: Timestamp,
) -> Result<Change, AppError> {
    let (before_json, after_json) = (to_json(before)?, to_json(after)?);
    let mut change = change(
        caller,
        now,
        ChangeSpec {
            entity_type: "payment",
            entity_id: after.id.to_string(),
            action: AuditAction::Update,
            event_type: Some(event_types[0]),
            before: Some(&before_json),
            after: &after_json,
        },
    );
    for &event_type in &event_types[1..] {
        change.events.push(event(
            caller,
            now,
            event_type,
            after.id.to_string(),
            after_json.clone(),
            None,
        ));
    }
    Ok(change)
}
