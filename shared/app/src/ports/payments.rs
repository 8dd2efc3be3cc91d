//! Persistence of payment methods, payments, credit notes, the tenant's payment settings,
//! and what inbound gateway events need: which tenant a gateway object belongs to, and
//! which gateway events were applied already.

use async_trait::async_trait;
use billing_domain::billing::invoice::Invoice;
use billing_domain::billing::subscription::Subscription;
use billing_domain::collection::credit_note::CreditNote;
use billing_domain::collection::payment::{Payment, PaymentStatus};
use billing_domain::collection::retry::PaymentSettings;
use billing_domain::customers::payment_method::PaymentProfile;
use billing_domain::kernel::ids::{AccountId, CreditNoteId, InvoiceId, PaymentId, TenantId};
use serde::{Deserialize, Serialize};

use super::{Change, Page, PageRequest, StoreError};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    pub account: Option<AccountId>,
    pub invoice: Option<InvoiceId>,
    pub status: Option<PaymentStatus>,
}

impl PaymentFilter {
    pub fn admits(&self, p: &Payment) -> bool {
        self.account.is_none_or(|a| p.account_id == a)
            && self.invoice.is_none_or(|i| p.invoice_id == i)
            && self.status.is_none_or(|s| p.status == s)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreditNoteFilter {
    pub account: Option<AccountId>,
    pub invoice: Option<InvoiceId>,
}

impl CreditNoteFilter {
    pub fn admits(&self, c: &CreditNote) -> bool {
        self.account.is_none_or(|a| c.account_id == a)
            && self.invoice.is_none_or(|i| c.invoice_id == i)
    }
}

/// What a gateway object (a payment method, a payment intent) belongs to, so an inbound
/// gateway event, which names only the gateway's ids, finds its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRef {
    pub tenant_id: TenantId,
    pub account_id: AccountId,
    pub payment_id: Option<PaymentId>,
}

/// Everything one step of collecting an invoice changes, written in one transaction with
/// its audit record and events: an attempt's result, the invoice it settles (or not), the
/// next attempt, the subscription's status, a credit note, and the bookkeeping of inbound
/// events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectionWrite {
    /// Payments to create (`None`) or to replace over the stored version given.
    pub payments: Vec<(Option<u64>, Payment)>,
    /// The invoice's new state and the version it replaces.
    pub invoice: Option<(u64, Invoice)>,
    /// The subscription's new state and the version it replaces.
    pub subscription: Option<(u64, Subscription)>,
    pub credit_note: Option<CreditNote>,
    /// Gateway ids (a payment intent) to remember, so later events about them find us.
    pub gateway_refs: Vec<(String, GatewayRef)>,
    /// The inbound gateway event this write applies: recorded so it applies once (the
    /// write fails with `AlreadyExists` if it was).
    pub gateway_event: Option<String>,
    /// The account's balance taking back what a voided invoice spent or credited, on the
    /// balance's version.
    pub balance: Option<Box<super::BalanceSettlement>>,
    /// Wallets credited by a paid top-up invoice, or given back what a voided invoice
    /// consumed, each on its wallet's version.
    pub wallets: Option<Box<super::WalletSettlement>>,
}

#[async_trait]
pub trait PaymentStore: Send + Sync {
    async fn get_payment_profile(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<PaymentProfile>, StoreError>;
    /// Writes `next` over version `next.version - 1` (version 1 creates it), with the
    /// gateway refs of cards it adds, and the change when there is one.
    async fn save_payment_profile(
        &self,
        tenant: TenantId,
        next: &PaymentProfile,
        refs: &[(String, GatewayRef)],
        change: Option<&Change>,
    ) -> Result<(), StoreError>;
    async fn get_payment(
        &self,
        tenant: TenantId,
        id: PaymentId,
    ) -> Result<Option<Payment>, StoreError>;
    /// Newest first.
    async fn list_payments(
        &self,
        tenant: TenantId,
        filter: &PaymentFilter,
        page: &PageRequest,
    ) -> Result<Page<Payment>, StoreError>;
    async fn save_collection(
        &self,
        tenant: TenantId,
        write: &CollectionWrite,
        change: &Change,
    ) -> Result<(), StoreError>;
    async fn get_credit_note(
        &self,
        tenant: TenantId,
        id: CreditNoteId,
    ) -> Result<Option<CreditNote>, StoreError>;
    /// Newest first.
    async fn list_credit_notes(
        &self,
        tenant: TenantId,
        filter: &CreditNoteFilter,
        page: &PageRequest,
    ) -> Result<Page<CreditNote>, StoreError>;
    /// The tenant's settings, or the defaults.
    async fn payment_settings(&self, tenant: TenantId) -> Result<PaymentSettings, StoreError>;
    async fn set_payment_settings(
        &self,
        tenant: TenantId,
        settings: &PaymentSettings,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Who a gateway object belongs to.
    async fn resolve_gateway_ref(&self, gateway_id: &str)
        -> Result<Option<GatewayRef>, StoreError>;
    /// Records an inbound gateway event that changed nothing, so a replay is known;
    /// `AlreadyExists` if it was recorded (or applied) before.
    async fn record_gateway_event(
        &self,
        tenant: TenantId,
        event_id: &str,
    ) -> Result<(), StoreError>;
}
