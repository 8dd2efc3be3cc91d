//! What a caller asks of collection: its payments, paying an invoice now (and retrying a
//! failed one), marking one paid out of band, and the settings that decide retries.

use billing_domain::billing::invoice::Invoice;
use billing_domain::collection::connect::StripeAccount;
use billing_domain::collection::payment::{Payment, PaymentStatus};
use billing_domain::collection::retry::{FinalAction, PaymentSettings};
use billing_domain::customers::access::Permission;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{AccountId, InvoiceId, PaymentId, TenantId};

use super::payments::{busy, charge_result, collection_change, recovered};
use super::{CardForm, CollectionService};
use crate::kernel::{
    change, gateway_unavailable, new_ulid, to_json, until_committed, AppError, Caller, ChangeSpec,
    WRITE_ATTEMPTS,
};
use crate::ports::*;

impl CollectionService {
    pub async fn get_payment(&self, caller: &Caller, id: PaymentId) -> Result<Payment, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_payment(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("payment", id))
    }

    pub async fn list_payments(
        &self,
        caller: &Caller,
        filter: &PaymentFilter,
        page: &PageRequest,
    ) -> Result<Page<Payment>, AppError> {
        caller.require(Permission::Read)?;
        let mut filter = filter.clone();
        if !self
            .scope_to_invoice_account(caller.tenant_id, &mut filter.account, filter.invoice)
            .await?
        {
            return Ok(nothing());
        }
        Ok(self
            .store
            .list_payments(caller.tenant_id, &filter, page)
            .await?)
    }

    /// Pays an open invoice now (`POST /v1/invoices/{id}/pay`, and a manual retry of a
    /// failed one): a new attempt, charged in the request, with the given payment method
    /// or the account's default. The scheduled retry, if any, finds the invoice paid and
    /// cancels itself.
    pub async fn pay_invoice(
        &self,
        caller: &Caller,
        id: InvoiceId,
        payment_method: Option<String>,
    ) -> Result<Payment, AppError> {
        caller.require(Permission::WriteBilling)?;
        let invoice = self.invoice(caller, id).await?;
        self.charge_now(
            caller,
            &invoice,
            PaymentId::from_ulid(new_ulid()),
            payment_method,
        )
        .await
    }

    /// Makes attempt `id` on `invoice` now, charged in the request: what
    /// [`CollectionService::pay_invoice`] does with a new id, and the hosted page with one
    /// derived from the invoice as the page showed it, so that the same form sent twice
    /// (or twice at once) is one attempt, one charge: the second finds the attempt made
    /// and collecting it again changes nothing.
    pub async fn charge_now(
        &self,
        caller: &Caller,
        invoice: &Invoice,
        id: PaymentId,
        payment_method: Option<String>,
    ) -> Result<Payment, AppError> {
        caller.require(Permission::WriteBilling)?;
        if !invoice.is_payable() {
            return Err(AppError::Conflict {
                code: ErrorCode::InvoiceNotPayable,
                message: format!("a {} invoice has nothing to pay", invoice.status.as_str()),
                param: None,
            });
        }
        if let Some(method) = &payment_method {
            let known = self
                .store
                .get_payment_profile(caller.tenant_id, invoice.account_id)
                .await?
                .is_some_and(|p| p.get(method).is_some());
            if !known {
                return Err(AppError::Invalid(
                    billing_domain::kernel::error::ValidationError::new(
                        ErrorCode::UnknownPaymentMethod,
                        "payment_method",
                        "the payment method is not one of the account's",
                    ),
                ));
            }
        }
        let now = self
            .clocks
            .now_for(caller.tenant_id, invoice.test_clock)
            .await?;
        let mut payment =
            Payment::manual(id, invoice, caller.livemode, invoice.attempt_count + 1, now);
        payment.payment_method = payment_method;
        let write = CollectionWrite {
            payments: vec![(None, payment.clone())],
            ..Default::default()
        };
        let change = collection_change(caller, &write, &[EventType::PaymentCreated], false, now)?;
        match self
            .store
            .save_collection(caller.tenant_id, &write, &change)
            .await
        {
            // The same attempt was made by an earlier (or a concurrent) request.
            Err(StoreError::AlreadyExists { entity: "payment" }) => {}
            other => other?,
        }
        self.collect_payment(caller.tenant_id, payment.id, now)
            .await?;
        self.get_payment(caller, payment.id).await
    }

    /// The card form a page of the caller's tenant shows: the sandbox's own, Stripe.js's
    /// with the mode's publishable key, or none (Stripe without a publishable key, or a
    /// live tenant without a live gateway).
    pub async fn card_form(&self, caller: &Caller) -> Result<CardForm, AppError> {
        let Ok(gateway) = self
            .gateways
            .of_tenant(&*self.store, caller.tenant_id, caller.livemode)
            .await?
        else {
            return Ok(CardForm::Unavailable);
        };
        Ok(match (gateway.name(), gateway.publishable_key()) {
            ("sandbox", _) => CardForm::Sandbox,
            (_, Some(key)) => CardForm::Stripe {
                publishable_key: key.to_owned(),
            },
            _ => CardForm::Unavailable,
        })
    }

    /// Why the invoice's latest attempt failed, in the gateway's words.
    pub async fn last_failure(
        &self,
        caller: &Caller,
        invoice: &Invoice,
    ) -> Result<Option<String>, AppError> {
        if invoice.payment_status != Some(PaymentStatus::Failed) {
            return Ok(None);
        }
        let filter = PaymentFilter {
            account: Some(invoice.account_id),
            invoice: Some(invoice.id),
            status: Some(PaymentStatus::Failed),
        };
        let page = self
            .store
            .list_payments(caller.tenant_id, &filter, &PageRequest::first(100))
            .await?;
        Ok(page
            .items
            .into_iter()
            .max_by_key(|p| p.updated_at)
            .and_then(|p| p.failure)
            .map(|f| f.message))
    }

    /// The invoice's attempt that waits for the customer to authenticate (3-D Secure), with
    /// what their browser needs for it (Stripe.js's client secret; `None` with the sandbox,
    /// whose challenge is our own page).
    pub async fn awaiting_action(
        &self,
        caller: &Caller,
        invoice: &Invoice,
    ) -> Result<Option<(Payment, Option<String>)>, AppError> {
        if invoice.payment_status != Some(PaymentStatus::RequiresAction) {
            return Ok(None);
        }
        let Some(payment) = self.waiting_payment(caller, invoice).await? else {
            return Ok(None);
        };
        let secret = match &payment.payment_intent {
            Some(intent) => self
                .gateway_of(caller.tenant_id, &payment)
                .await?
                .action_secret(intent)
                .await
                .map_err(gateway_unavailable)?,
            None => None,
        };
        Ok(Some((payment, secret)))
    }

    /// Records what became of the invoice's attempt that waited for the customer to
    /// authenticate, once their page says they did: the gateway is asked (Stripe reads the
    /// PaymentIntent; the sandbox's challenge passes) and the answer is recorded as the
    /// worker records a charge, over the attempt's version, so a second request (or
    /// Stripe's webhook with the same news) records nothing more.
    pub async fn complete_action(
        &self,
        caller: &Caller,
        invoice: &Invoice,
    ) -> Result<Payment, AppError> {
        caller.require(Permission::WriteBilling)?;
        let Some(waiting) = self.waiting_payment(caller, invoice).await? else {
            return Err(AppError::Conflict {
                code: ErrorCode::NoActionRequired,
                message: "no payment of this invoice waits for authentication".into(),
                param: None,
            });
        };
        let intent = waiting.payment_intent.clone().ok_or_else(|| {
            AppError::Internal("a payment awaits action without an intent".into())
        })?;
        let gateway = self.gateway_of(caller.tenant_id, &waiting).await?;
        let result = charge_result(gateway.action_outcome(&intent).await)?;
        for _ in 0..WRITE_ATTEMPTS {
            let payment = self
                .store
                .get_payment(caller.tenant_id, waiting.id)
                .await?
                .ok_or_else(|| AppError::not_found("payment", waiting.id))?;
            if !payment.awaits(&result) {
                return Ok(payment);
            }
            let invoice = self.invoice(caller, payment.invoice_id).await?;
            if !invoice.is_payable() {
                // Settled meanwhile (this payment recorded by a concurrent request, whose
                // commit fell between the two reads): nothing left to record.
                return Ok(payment);
            }
            let now = self
                .clocks
                .now_for(caller.tenant_id, invoice.test_clock)
                .await?;
            let recorded = self
                .record_result(
                    caller,
                    &payment,
                    &invoice,
                    gateway.name(),
                    payment.payment_method.clone(),
                    result.clone(),
                    now,
                )
                .await?;
            match self.commit_recorded(caller, &recorded, now).await {
                Ok(()) => {
                    self.after_recorded(caller, &recorded.payment, now).await?;
                    return Ok(recorded.payment);
                }
                Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => {}
                Err(other) => return Err(other.into()),
            }
        }
        Err(busy())
    }

    /// The invoice's newest attempt waiting for authentication.
    async fn waiting_payment(
        &self,
        caller: &Caller,
        invoice: &Invoice,
    ) -> Result<Option<Payment>, AppError> {
        let filter = PaymentFilter {
            account: Some(invoice.account_id),
            invoice: Some(invoice.id),
            status: Some(PaymentStatus::RequiresAction),
        };
        let page = self
            .store
            .list_payments(caller.tenant_id, &filter, &PageRequest::first(100))
            .await?;
        Ok(page.items.into_iter().max_by_key(|p| p.id))
    }

    /// The gateway calls about `payment` go through, or the refusal of a mode without one.
    async fn gateway_of(
        &self,
        tenant: TenantId,
        payment: &Payment,
    ) -> Result<std::sync::Arc<dyn PaymentGateway>, AppError> {
        self.gateways
            .of_payment(&*self.store, tenant, payment)
            .await?
            .map_err(gateway_unavailable)
    }

    /// Retries the failed payment of an invoice now (`POST /v1/payments/retry`).
    pub async fn retry_payment(
        &self,
        caller: &Caller,
        invoice: InvoiceId,
    ) -> Result<Payment, AppError> {
        caller.require(Permission::WriteBilling)?;
        let current = self.invoice(caller, invoice).await?;
        if current.payment_status != Some(PaymentStatus::Failed)
            && current.payment_status != Some(PaymentStatus::RequiresAction)
        {
            return Err(AppError::Conflict {
                code: ErrorCode::NoFailedPayment,
                message: "the invoice has no failed payment to retry".into(),
                param: Some("invoice"),
            });
        }
        self.pay_invoice(caller, invoice, None).await
    }

    /// Marks an invoice paid outside the platform (a bank transfer), with a reference.
    pub async fn mark_invoice_paid(
        &self,
        caller: &Caller,
        id: InvoiceId,
        reference: String,
    ) -> Result<Invoice, AppError> {
        caller.require(Permission::WriteBilling)?;
        if reference.trim().is_empty() || reference.len() > 200 {
            return Err(AppError::Invalid(
                billing_domain::kernel::error::ValidationError::new(
                    ErrorCode::InvalidReference,
                    "reference",
                    "a reference of 1 to 200 characters says how it was paid",
                ),
            ));
        }
        let reference = &reference;
        until_committed(
            move || async move {
                let invoice = self.invoice(caller, id).await?;
                let now = self
                    .clocks
                    .now_for(caller.tenant_id, invoice.test_clock)
                    .await?;
                let paid = invoice.pay(Some(reference.clone()), now)?;
                let subscription = match invoice.subscription_id {
                    Some(s) => self.store.get_subscription(caller.tenant_id, s).await?,
                    None => None,
                };
                let mut write = CollectionWrite {
                    invoice: Some((invoice.version, paid.clone())),
                    subscription: recovered(subscription.as_ref(), now),
                    ..Default::default()
                };
                self.with_purchase(caller.tenant_id, &mut write, caller.livemode, now)
                    .await?;
                let mut events = vec![EventType::InvoicePaid];
                if write.subscription.is_some() {
                    events.push(EventType::SubscriptionUpdated);
                }
                let change = collection_change(caller, &write, &events, true, now)?;
                match self
                    .store
                    .save_collection(caller.tenant_id, &write, &change)
                    .await
                {
                    Err(StoreError::VersionConflict { .. }) => return Ok(None),
                    other => other?,
                }
                self.invoice_settled(caller, paid.account_id, paid.id, now)
                    .await?;
                Ok(Some(paid))
            },
            busy,
        )
        .await
    }

    /// Payments and credit notes are indexed by account: a filter by invoice alone takes
    /// the invoice's account. False when there is no such invoice (nothing to list).
    pub(super) async fn scope_to_invoice_account(
        &self,
        tenant: TenantId,
        account: &mut Option<AccountId>,
        invoice: Option<InvoiceId>,
    ) -> Result<bool, AppError> {
        if let (None, Some(invoice)) = (*account, invoice) {
            match self.store.get_invoice(tenant, invoice).await? {
                Some(i) => *account = Some(i.account_id),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    pub async fn payment_settings(&self, caller: &Caller) -> Result<PaymentSettings, AppError> {
        caller.require(Permission::Read)?;
        Ok(self.store.payment_settings(caller.tenant_id).await?)
    }

    pub async fn set_payment_settings(
        &self,
        caller: &Caller,
        retry_days: Option<Vec<u32>>,
        final_action: Option<FinalAction>,
        stripe_account: Option<Option<StripeAccount>>,
    ) -> Result<PaymentSettings, AppError> {
        caller.require(Permission::WriteBilling)?;
        let current = self.store.payment_settings(caller.tenant_id).await?;
        let next = PaymentSettings {
            retry_days: retry_days.unwrap_or_else(|| current.retry_days.clone()),
            final_action: final_action.unwrap_or(current.final_action),
            stripe_account: stripe_account.unwrap_or_else(|| current.stripe_account.clone()),
        };
        next.validate()?;
        let (before, after) = (to_json(&current)?, to_json(&next)?);
        let change = change(
            caller,
            self.clocks.now(),
            ChangeSpec {
                entity_type: "payment_settings",
                entity_id: caller.tenant_id.to_string(),
                action: AuditAction::Update,
                event_type: Some(EventType::PaymentSettingsUpdated),
                before: Some(&before),
                after: &after,
            },
        );
        self.store
            .set_payment_settings(caller.tenant_id, &next, &change)
            .await?;
        Ok(next)
    }
}

pub(super) fn nothing<T>() -> Page<T> {
    Page::new(Vec::new(), false)
}
