//! Inbound gateway events (Stripe webhooks), verified by the adapter and given here in our
//! terms. Each is applied at most once: its id is written with the change it makes, in the
//! same transaction, and an event that changes nothing is recorded on its own, so a replay
//! is recognised either way. Events may come in any order; none moves an invoice backwards
//! (a paid invoice stays paid, a failure reported after a success is ignored).

use billing_domain::collection::credit_note::{tax_reversed, CreditNote, CreditNoteReason};
use billing_domain::collection::payment::{ChargeResult, Payment, PaymentFailure, PaymentStatus};
use billing_domain::events::types::EventType;
use billing_domain::kernel::ids::{CreditNoteId, PaymentId, TenantId};
use billing_domain::kernel::money::MinorUnits;
use jiff::Timestamp;

use super::payments::{collection_change, recovered};
use super::CollectionService;
use crate::kernel::{new_ulid, system_caller, AppError};
use crate::ports::*;

/// What applying an inbound gateway event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppliedEvent {
    Applied,
    /// Applied (or recorded) before: a replay.
    Duplicate,
    /// Nothing to do (an unknown type, an object that is not ours, an event that would move
    /// something backwards); acknowledged.
    Ignored(&'static str),
}

impl CollectionService {
    /// Applies one verified gateway event. An error means "the gateway should deliver it
    /// again" (the store or the gateway was unavailable).
    pub async fn apply_gateway_event(
        &self,
        event: &GatewayEvent,
    ) -> Result<AppliedEvent, AppError> {
        let (intent, metadata) = match &event.kind {
            GatewayEventKind::PaymentSucceeded {
                payment_intent,
                metadata,
                ..
            }
            | GatewayEventKind::PaymentFailed {
                payment_intent,
                metadata,
                ..
            }
            | GatewayEventKind::RequiresAction {
                payment_intent,
                metadata,
            } => (Some(payment_intent.as_str()), Some(metadata)),
            GatewayEventKind::ChargeRefunded {
                payment_intent,
                metadata,
                ..
            } => (payment_intent.as_deref(), Some(metadata)),
            GatewayEventKind::DisputeCreated { payment_intent, .. } => {
                (payment_intent.as_deref(), None)
            }
            GatewayEventKind::PaymentMethodDetached { payment_method } => {
                return self.method_detached(event, payment_method).await;
            }
            GatewayEventKind::Other { .. } => return Ok(AppliedEvent::Ignored("unhandled type")),
        };
        let Some((tenant, payment_id)) = self.payment_of(intent, metadata).await? else {
            return Ok(AppliedEvent::Ignored("not a payment of ours"));
        };
        let Some(payment) = self.store.get_payment(tenant, payment_id).await? else {
            return Ok(AppliedEvent::Ignored("not a payment of ours"));
        };
        if let Some(why) = self.not_of_tenant(event, tenant).await? {
            return Ok(AppliedEvent::Ignored(why));
        }
        let now = self.clocks.now_for(tenant, payment.test_clock).await?;
        let write = match &event.kind {
            GatewayEventKind::PaymentSucceeded {
                payment_intent,
                charge,
                ..
            } => {
                let result = ChargeResult::Succeeded {
                    payment_intent: payment_intent.clone(),
                    charge: charge.clone(),
                };
                self.late_result(tenant, &payment, result, now).await?
            }
            GatewayEventKind::PaymentFailed {
                payment_intent,
                code,
                decline_code,
                message,
                ..
            } => {
                let result = ChargeResult::Failed {
                    payment_intent: Some(payment_intent.clone()),
                    failure: PaymentFailure::new(
                        code.clone(),
                        decline_code.clone(),
                        message.clone(),
                    ),
                };
                self.late_result(tenant, &payment, result, now).await?
            }
            GatewayEventKind::RequiresAction { payment_intent, .. } => {
                let result = ChargeResult::RequiresAction {
                    payment_intent: payment_intent.clone(),
                };
                self.late_result(tenant, &payment, result, now).await?
            }
            GatewayEventKind::ChargeRefunded {
                amount_refunded, ..
            } => {
                let invoice = self.store.get_invoice(tenant, payment.invoice_id).await?;
                payment
                    .refunded_total((*amount_refunded).into(), now)
                    .map(|next| {
                        let amount = next.amount_refunded.saturating_sub(payment.amount_refunded);
                        let note = CreditNote {
                            id: CreditNoteId::from_ulid(new_ulid()),
                            invoice_id: payment.invoice_id,
                            account_id: payment.account_id,
                            payment_id: Some(payment.id),
                            amount,
                            currency: payment.currency,
                            reason: CreditNoteReason::Refund,
                            refund: None,
                            credited_to_balance: false,
                            memo: Some("refunded at the gateway".into()),
                            tax_amount: invoice
                                .as_ref()
                                .map_or(MinorUnits::ZERO, |i| tax_reversed(i, amount)),
                            created_at: now,
                        };
                        (
                            CollectionWrite {
                                payments: vec![(Some(payment.version), next)],
                                credit_note: Some(note),
                                ..Default::default()
                            },
                            vec![EventType::PaymentRefunded, EventType::CreditNoteCreated],
                        )
                    })
            }
            GatewayEventKind::DisputeCreated { dispute, .. } => {
                payment.disputed(dispute.clone(), now).map(|next| {
                    (
                        CollectionWrite {
                            payments: vec![(Some(payment.version), next)],
                            ..Default::default()
                        },
                        vec![EventType::PaymentDisputed],
                    )
                })
            }
            GatewayEventKind::PaymentMethodDetached { .. } | GatewayEventKind::Other { .. } => None,
        };
        let caller = &system_caller(tenant, payment.livemode);
        let Some((mut write, events)) = write else {
            return self.record_unchanged(tenant, &event.id).await;
        };
        write.gateway_event = Some(event.id.clone());
        let change = collection_change(caller, &write, &events, true, now)?;
        match self.store.save_collection(tenant, &write, &change).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists {
                entity: "gateway event",
            }) => return Ok(AppliedEvent::Duplicate),
            // The payment or invoice moved meanwhile: the gateway delivers again and the
            // event is judged against what is stored then.
            Err(StoreError::VersionConflict { .. }) => {
                return Err(AppError::Unavailable(
                    "the payment changed while the event was applied; deliver again".into(),
                ))
            }
            Err(other) => return Err(other.into()),
        }
        if let Some((_, recorded)) = write.payments.first() {
            self.after_recorded(caller, recorded, now).await?;
        }
        Ok(AppliedEvent::Applied)
    }

    /// The tenant and payment an event is about: from the metadata we put on the charge,
    /// or from the ref recorded with the payment intent.
    async fn payment_of(
        &self,
        intent: Option<&str>,
        metadata: Option<&GatewayMetadata>,
    ) -> Result<Option<(TenantId, PaymentId)>, AppError> {
        let from_metadata = metadata.and_then(|m| {
            let tenant = TenantId::parse(m.get("tenant_id")?, "tenant_id").ok()?;
            let payment = PaymentId::parse(m.get("attempt_id")?, "attempt_id").ok()?;
            Some((tenant, payment))
        });
        if from_metadata.is_some() {
            return Ok(from_metadata);
        }
        let Some(intent) = intent else {
            return Ok(None);
        };
        Ok(self
            .store
            .resolve_gateway_ref(intent)
            .await?
            .and_then(|r| Some((r.tenant_id, r.payment_id?))))
    }

    /// A result the gateway reports for an attempt: recorded as the worker would if the
    /// attempt is still pending or waited for authentication; a success after a failure
    /// settles the invoice; anything else would move backwards and changes nothing.
    async fn late_result(
        &self,
        tenant: TenantId,
        payment: &Payment,
        result: ChargeResult,
        now: Timestamp,
    ) -> Result<Option<(CollectionWrite, Vec<EventType>)>, AppError> {
        let invoice = self
            .store
            .get_invoice(tenant, payment.invoice_id)
            .await?
            .ok_or_else(|| AppError::not_found("invoice", payment.invoice_id))?;
        let caller = &system_caller(tenant, payment.livemode);
        // Still pending, or waiting for the customer's authentication: the result is the
        // attempt's, recorded (with its retry) as the worker would.
        if payment.awaits(&result) {
            if !invoice.is_payable() {
                return Ok(None);
            }
            let recorded = self
                .record_result(
                    caller,
                    payment,
                    &invoice,
                    self.gateways.name(payment.livemode),
                    payment.payment_method.clone(),
                    result,
                    now,
                )
                .await?;
            return Ok(Some((recorded.write, recorded.events)));
        }
        let ChargeResult::Succeeded {
            payment_intent,
            charge,
        } = result
        else {
            return Ok(None);
        };
        let Some(next) = payment.settle_late(payment_intent, charge, now) else {
            return Ok(None);
        };
        let mut write = CollectionWrite {
            payments: vec![(Some(payment.version), next)],
            ..Default::default()
        };
        let mut events = vec![EventType::PaymentSucceeded];
        if invoice.is_payable() {
            let paid = invoice
                .attempted(PaymentStatus::Succeeded, None)?
                .pay(None, now)?;
            write.invoice = Some((invoice.version, paid));
            events.push(EventType::InvoicePaid);
            let subscription = match invoice.subscription_id {
                Some(id) => self.store.get_subscription(tenant, id).await?,
                None => None,
            };
            write.subscription = recovered(subscription.as_ref(), now);
            if write.subscription.is_some() {
                events.push(EventType::SubscriptionUpdated);
            }
            self.with_purchase(tenant, &mut write, payment.livemode, now)
                .await?;
        }
        Ok(Some((write, events)))
    }

    async fn method_detached(
        &self,
        event: &GatewayEvent,
        payment_method: &str,
    ) -> Result<AppliedEvent, AppError> {
        let Some(owner) = self.store.resolve_gateway_ref(payment_method).await? else {
            return Ok(AppliedEvent::Ignored("not a payment method of ours"));
        };
        if let Some(why) = self.not_of_tenant(event, owner.tenant_id).await? {
            return Ok(AppliedEvent::Ignored(why));
        }
        let caller = &system_caller(owner.tenant_id, event.livemode);
        let known = self
            .store
            .get_payment_profile(owner.tenant_id, owner.account_id)
            .await?
            .is_some_and(|p| p.get(payment_method).is_some());
        if known {
            self.customers
                .forget_payment_method(caller, owner.account_id, payment_method)
                .await?;
        }
        match self.record_unchanged(owner.tenant_id, &event.id).await? {
            AppliedEvent::Duplicate if !known => Ok(AppliedEvent::Duplicate),
            _ if known => Ok(AppliedEvent::Applied),
            other => Ok(other),
        }
    }

    /// Why an event cannot be applied to `tenant`, which its metadata or ids name: it comes
    /// from the other mode, or from a Stripe account other than the tenant's (its connected
    /// account, or the platform's when it has none). Judged against the settings of now, so
    /// after a tenant moves to another account the old one's events are not applied.
    async fn not_of_tenant(
        &self,
        event: &GatewayEvent,
        tenant: TenantId,
    ) -> Result<Option<&'static str>, AppError> {
        let Some(record) = self.store.get_tenant(tenant).await? else {
            return Ok(Some("no such tenant"));
        };
        if event.livemode != record.mode.is_live() {
            tracing::warn!(event = %event.id, %tenant, livemode = event.livemode,
                "a gateway event of the other mode names this tenant; ignored");
            return Ok(Some("the event's mode is not the tenant's"));
        }
        let settings = self.store.payment_settings(tenant).await?;
        let expected = settings.stripe_account.as_ref().map(|a| a.as_str());
        if event.account.as_deref() != expected {
            tracing::warn!(event = %event.id, %tenant, account = ?event.account, ?expected,
                "a gateway event from another Stripe account names this tenant; ignored");
            return Ok(Some("the event's Stripe account is not the tenant's"));
        }
        Ok(None)
    }

    async fn record_unchanged(
        &self,
        tenant: TenantId,
        event_id: &str,
    ) -> Result<AppliedEvent, AppError> {
        match self.store.record_gateway_event(tenant, event_id).await {
            Ok(()) => Ok(AppliedEvent::Ignored("nothing to change")),
            Err(StoreError::AlreadyExists { .. }) => Ok(AppliedEvent::Duplicate),
            Err(other) => Err(other.into()),
        }
    }
}
