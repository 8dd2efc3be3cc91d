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

use super::payments::{busy, collection_change, recovered};
use super::CollectionService;
use crate::kernel::{change, new_ulid, to_json, until_committed, AppError, Caller, ChangeSpec};
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
        let mut payment = Payment::manual(
            PaymentId::from_ulid(new_ulid()),
            &invoice,
            caller.livemode,
            invoice.attempt_count + 1,
            now,
        );
        payment.payment_method = payment_method;
        let write = CollectionWrite {
            payments: vec![(None, payment.clone())],
            ..Default::default()
        };
        let change = collection_change(caller, &write, &[EventType::PaymentCreated], false, now)?;
        self.store
            .save_collection(caller.tenant_id, &write, &change)
            .await?;
        self.collect_payment(caller.tenant_id, payment.id, now)
            .await?;
        self.get_payment(caller, payment.id).await
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
