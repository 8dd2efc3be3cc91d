//! Persistence of the tenant's tax settings and tax rates, and the tax provider that decides
//! an invoice's tax.

use async_trait::async_trait;
use billing_domain::kernel::ids::{TaxRateId, TenantId};
use billing_domain::tax::rates::{TaxRate, TaxSettings};
use billing_domain::tax::resolve::{Customer, InvoiceTax, TaxError};
use billing_domain::tax::vat_id::VatId;
use jiff::Timestamp;

use super::{Change, Page, PageRequest, StoreError};

#[async_trait]
pub trait TaxStore: Send + Sync {
    /// `None` until the tenant sets them: it charges no tax.
    async fn tax_settings(&self, tenant: TenantId) -> Result<Option<TaxSettings>, StoreError>;
    async fn set_tax_settings(
        &self,
        tenant: TenantId,
        settings: &TaxSettings,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Creates every rate or none (`AlreadyExists` when one is there), with the change.
    async fn insert_tax_rates(
        &self,
        tenant: TenantId,
        rates: &[TaxRate],
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Ends `ended` (stored at version `ended.version - 1`, else `VersionConflict`) and
    /// creates its successor `next`, atomically.
    async fn replace_tax_rate(
        &self,
        tenant: TenantId,
        ended: &TaxRate,
        next: &TaxRate,
        change: &Change,
    ) -> Result<(), StoreError>;
    async fn get_tax_rate(
        &self,
        tenant: TenantId,
        id: TaxRateId,
    ) -> Result<Option<TaxRate>, StoreError>;
    /// Oldest first (ids are ULIDs).
    async fn list_tax_rates(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<TaxRate>, StoreError>;
}

/// What a provider is asked: the seller, its rates, the customer and the invoice date.
#[derive(Debug, Clone, Copy)]
pub struct TaxQuery<'a> {
    pub settings: Option<&'a TaxSettings>,
    pub rates: &'a [TaxRate],
    pub customer: Customer<'a>,
    pub at: Timestamp,
}

/// Decides an invoice's tax. The built-in resolver is the default; a tax service (Stripe
/// Tax, Avalara) would be another adapter.
#[async_trait]
pub trait TaxProvider: Send + Sync {
    async fn invoice_tax(&self, query: &TaxQuery<'_>) -> Result<InvoiceTax, TaxError>;
}

/// What the VAT registry (VIES) answers of a VAT id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryAnswer {
    Registered,
    NotRegistered,
}

/// The registry could not answer now (network, timeout, a member state's service down or
/// busy): worth asking again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the VAT registry could not answer: {0}")]
pub struct RegistryUnavailable(pub String);

/// The online VAT registry: VIES in a deployment, a local fake in tests.
#[async_trait]
pub trait VatRegistry: Send + Sync {
    /// Asks whether `vat_id` (one [`VatId::in_vies`]) is registered.
    async fn check(&self, vat_id: &VatId) -> Result<RegistryAnswer, RegistryUnavailable>;
}
