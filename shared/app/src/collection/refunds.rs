//! Refunds of succeeded payments, recorded as credit notes, and the credit notes.

use billing_domain::collection::credit_note::{tax_reversed, CreditNote, CreditNoteReason};
use billing_domain::collection::payment::Payment;
use billing_domain::customers::access::Permission;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{CreditNoteId, PaymentId};
use billing_domain::kernel::money::MinorUnits;

use super::paying::nothing;
use super::payments::collection_change;
use super::CollectionService;
use crate::kernel::{gateway_unavailable, AppError, Caller};
use crate::ports::*;

impl CollectionService {
    /// Refunds a succeeded payment, all of what is left or `amount`, at the gateway, and
    /// records it as a credit note. The refund's id (the gateway's idempotency key) is
    /// derived from the payment's state and the amount, so retrying after a crash between
    /// the gateway and the write refunds once.
    pub async fn refund_payment(
        &self,
        caller: &Caller,
        id: PaymentId,
        amount: Option<i64>,
        memo: Option<String>,
    ) -> Result<CreditNote, AppError> {
        caller.require(Permission::WriteBilling)?;
        let payment = self.get_payment(caller, id).await?;
        let now = self
            .clocks
            .now_for(caller.tenant_id, payment.test_clock)
            .await?;
        let (next, refunded) = payment.refund(amount.map(MinorUnits::new), now)?;
        let Some(intent) = payment.payment_intent.clone() else {
            return Err(AppError::Conflict {
                code: ErrorCode::NotRefundable,
                message: "the payment was not collected through the gateway".into(),
                param: None,
            });
        };
        let note_id = refund_id(&payment, refunded);
        let refused = |err| match err {
            GatewayError::Rejected { code, message } => AppError::Conflict {
                code: ErrorCode::RefundRefused,
                message: format!("the gateway refused the refund ({code}): {message}"),
                param: None,
            },
            other => gateway_unavailable(other),
        };
        let outcome = self
            .gateways
            .of_payment(&*self.store, caller.tenant_id, &payment)
            .await?
            .map_err(refused)?
            .refund(&RefundRequest {
                idempotency_key: note_id.to_string(),
                payment_intent: intent,
                amount: Some(refunded.of(payment.currency)),
            })
            .await
            .map_err(refused)?;
        // The invoice's tax comes back in proportion to the amount.
        let tax_amount = self
            .store
            .get_invoice(caller.tenant_id, payment.invoice_id)
            .await?
            .map_or(MinorUnits::ZERO, |invoice| tax_reversed(&invoice, refunded));
        let note = CreditNote {
            id: note_id,
            invoice_id: payment.invoice_id,
            account_id: payment.account_id,
            payment_id: Some(payment.id),
            amount: refunded,
            currency: payment.currency,
            reason: CreditNoteReason::Refund,
            refund: Some(outcome.gateway_id),
            credited_to_balance: false,
            memo,
            tax_amount,
            created_at: now,
        };
        let write = CollectionWrite {
            payments: vec![(Some(payment.version), next)],
            credit_note: Some(note.clone()),
            ..Default::default()
        };
        let change = collection_change(
            caller,
            &write,
            &[EventType::PaymentRefunded, EventType::CreditNoteCreated],
            true,
            now,
        )?;
        match self
            .store
            .save_collection(caller.tenant_id, &write, &change)
            .await
        {
            Err(StoreError::VersionConflict { .. }) => Err(AppError::Conflict {
                code: ErrorCode::ConcurrentModification,
                message: "the payment changed meanwhile (another refund?); retry".into(),
                param: None,
            }),
            other => {
                other?;
                Ok(note)
            }
        }
    }

    pub async fn list_credit_notes(
        &self,
        caller: &Caller,
        filter: &CreditNoteFilter,
        page: &PageRequest,
    ) -> Result<Page<CreditNote>, AppError> {
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
            .list_credit_notes(caller.tenant_id, &filter, page)
            .await?)
    }
}

/// The id of refunding `amount` of `payment` as it stands: the same request on the same
/// state gives the same id, a later refund (after this one was recorded) another.
fn refund_id(payment: &Payment, amount: MinorUnits) -> CreditNoteId {
    use sha2::{Digest, Sha256};
    let digest =
        Sha256::digest(format!("{}:{}:{}", payment.id, payment.amount_refunded, amount).as_bytes());
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    let millis = u64::try_from(payment.updated_at.as_millisecond().max(0)).unwrap_or(0);
    CreditNoteId::from_ulid(ulid::Ulid::from_parts(millis, u128::from_be_bytes(random)))
}
