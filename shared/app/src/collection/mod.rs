//! Collection: getting invoices paid. Payment attempts and their retries, paying now,
//! refunds and credit notes, the settings that decide retries, inbound gateway events,
//! dunning for accounts whose invoices could not be collected, and the customer emails
//! (dunning's notices and those events leave, through one notice machinery).

mod dunning;
mod emails;
mod gateway_events;
mod paying;
mod payments;
mod refunds;

use std::sync::Arc;

use billing_domain::billing::invoice::Invoice;
use billing_domain::customers::access::Permission;
use billing_domain::kernel::ids::{InvoiceId, TenantId};
use jiff::Timestamp;

pub use dunning::NOTICE_CLAIM;
pub use gateway_events::AppliedEvent;
pub use payments::{collection_change, first_attempt, Collected};

use crate::customers::CustomersService;
use crate::kernel::{AppError, Caller, Clocks};
use crate::ports::{
    AccountStore, BrandingStore, CollectionWrite, DunningStore, EmailSettingsStore, Gateways,
    HostedLinkStore, InvoiceStore, Notifier, PaymentQueue, PaymentStore, SubscriptionStore,
    TenantStore, TestClockStore, WalletStore,
};

/// The card form a hosted page shows for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardForm {
    /// The sandbox gateway's own form: a test card number, no JavaScript needed.
    Sandbox,
    /// Stripe.js's card element, loaded with the mode's publishable key.
    Stripe { publishable_key: String },
    /// No way to take a card here (Stripe without a publishable key, or a mode without a
    /// gateway).
    Unavailable,
}

/// What the collection service reads and writes.
pub trait CollectionPorts:
    PaymentStore
    + DunningStore
    + InvoiceStore
    + SubscriptionStore
    + AccountStore
    + TenantStore
    + TestClockStore
    + WalletStore
    + BrandingStore
    + EmailSettingsStore
    + HostedLinkStore
{
}

impl<T> CollectionPorts for T where
    T: WalletStore
        + BrandingStore
        + EmailSettingsStore
        + HostedLinkStore
        + PaymentStore
        + DunningStore
        + InvoiceStore
        + SubscriptionStore
        + AccountStore
        + TenantStore
        + TestClockStore
{
}

/// The collection use cases. Depends on customers (a card the gateway reports detached).
#[derive(Clone)]
pub struct CollectionService {
    store: Arc<dyn CollectionPorts>,
    clocks: Clocks,
    /// Where cards are charged and refunded, by tenant mode.
    gateways: Gateways,
    /// Tells customers about dunning steps and sends the emails events leave. Without
    /// one, notices wait in the due index for a process that has one (the payment worker).
    notifier: Option<Arc<dyn Notifier>>,
    /// The origin the links in emails point at (hosted invoice pages).
    public_url: Option<String>,
    /// Where payment work due now is handed right after its commit; without one it waits
    /// for the due-index sweep.
    payment_queue: Option<Arc<dyn PaymentQueue>>,
    customers: CustomersService,
}

impl CollectionService {
    pub(crate) fn new(
        store: Arc<dyn CollectionPorts>,
        clocks: Clocks,
        gateways: Gateways,
        notifier: Option<Arc<dyn Notifier>>,
        public_url: Option<String>,
        payment_queue: Option<Arc<dyn PaymentQueue>>,
        customers: CustomersService,
    ) -> Self {
        Self {
            store,
            clocks,
            gateways,
            notifier,
            public_url,
            payment_queue,
            customers,
        }
    }

    /// When `write` marks a top-up invoice paid, its wallet's purchase arrives in the same
    /// write (so once: a second delivery of the payment finds the invoice paid already).
    pub(super) async fn with_purchase(
        &self,
        tenant: TenantId,
        write: &mut CollectionWrite,
        livemode: bool,
        now: Timestamp,
    ) -> Result<(), AppError> {
        let Some((_, invoice)) = &write.invoice else {
            return Ok(());
        };
        if invoice.status != billing_domain::billing::invoice::InvoiceStatus::Paid {
            return Ok(());
        }
        let store: &dyn WalletStore = &*self.store;
        write.wallets = crate::wallets::purchase_paid(store, tenant, invoice, livemode, now)
            .await?
            .map(Box::new);
        Ok(())
    }

    /// An invoice of the caller's tenant.
    async fn invoice(&self, caller: &Caller, id: InvoiceId) -> Result<Invoice, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_invoice(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("invoice", id))
    }
}
