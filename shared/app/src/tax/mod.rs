//! Tax: the tenant's tax settings, its tax rates (created, changed from a date, the EU
//! standard VAT rates loaded with one call), and the tax of an invoice, which billing asks
//! for when it drafts or previews one ([`TaxService::invoice_tax`]).

use std::sync::Arc;

use async_trait::async_trait;
use billing_domain::customers::access::Permission;
use billing_domain::customers::account::CustomerDetails;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::error::ValidationError;
use billing_domain::kernel::ids::{AccountId, TaxRateId, TenantId, TestClockId};
use billing_domain::tax::rates::{
    eu_standard_vat, NewTaxRate, TaxRate, TaxRateChange, TaxSettings,
};
use billing_domain::tax::resolve::{self, Customer, InvoiceTax, TaxError};
use billing_domain::tax::vat_id::{self, VatId, VatIdStatus};
use jiff::Timestamp;

use crate::kernel::{change, new_ulid, to_json, AppError, Caller, ChangeSpec, Clocks, TtlCache};
use crate::ports::{
    AccountStore, Page, PageRequest, RegistryAnswer, RegistryUnavailable, StoreError, TaxProvider,
    TaxQuery, TaxStore, VatRegistry,
};

/// What the tax service reads and writes.
pub trait TaxPorts: TaxStore + AccountStore {}

impl<T> TaxPorts for T where T: TaxStore + AccountStore {}

/// The built-in provider: the domain's resolution rules, no network.
pub struct BuiltInTax;

#[async_trait]
impl TaxProvider for BuiltInTax {
    async fn invoice_tax(&self, query: &TaxQuery<'_>) -> Result<InvoiceTax, TaxError> {
        resolve::resolve(query.settings, query.rates, &query.customer, query.at)
    }
}

/// The tax use cases. Depends on the kernel only; billing calls
/// [`TaxService::invoice_tax`].
#[derive(Clone)]
pub struct TaxService {
    store: Arc<dyn TaxPorts>,
    clocks: Clocks,
    provider: Arc<dyn TaxProvider>,
    /// The tenant's settings as invoices are taxed by them (README, caches: 60 s).
    settings: Arc<TtlCache<TenantId, Option<TaxSettings>>>,
    /// VIES, when the deployment reaches it; without it a tenant's online check finds
    /// every id `unverified`.
    registry: Option<Arc<dyn VatRegistry>>,
    /// The registry's answers by VAT id ([`REGISTRY_TTL`]); "could not answer" is never kept.
    answers: Arc<TtlCache<String, RegistryAnswer>>,
}

/// How long a warm instance trusts what VIES said of a VAT id. A registration rarely
/// changes, and an instance would otherwise ask once per account update and invoice (VIES
/// refuses bursts: `MS_MAX_CONCURRENT_REQ`); a deregistration is seen within the hour, a
/// fraction of the month between an account's invoices.
pub const REGISTRY_TTL: jiff::SignedDuration = jiff::SignedDuration::from_secs(3600);

/// How long a warm instance taxes invoices by settings it read: a change through another
/// instance applies to invoices drafted within this of it (one through this instance, and
/// a test clock's invoices, at once).
pub const SETTINGS_TTL: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Most rates one tenant's invoices are resolved against (a page of the store).
const MAX_RATES: usize = 1000;

impl TaxService {
    pub(crate) fn new(
        store: Arc<dyn TaxPorts>,
        clocks: Clocks,
        provider: Arc<dyn TaxProvider>,
        registry: Option<Arc<dyn VatRegistry>>,
    ) -> Self {
        Self {
            store,
            clocks,
            provider,
            settings: Arc::new(TtlCache::new(SETTINGS_TTL)),
            registry,
            answers: Arc::new(TtlCache::new(REGISTRY_TTL)),
        }
    }

    /// What the registry says of `vat_id` (cached), or that it could not answer.
    async fn registered(&self, vat_id: &VatId) -> Result<RegistryAnswer, RegistryUnavailable> {
        let now = self.clocks.now();
        if let Some(answer) = self.answers.get(&vat_id.compact, now) {
            return Ok(answer);
        }
        let registry = self
            .registry
            .as_ref()
            .ok_or_else(|| RegistryUnavailable("no VAT registry is configured".into()))?;
        let answer = registry.check(vat_id).await?;
        self.answers.put(vat_id.compact.clone(), answer, now);
        Ok(answer)
    }

    /// The status an account's `vat_id` (validated, compact) gets when it is set: `None`
    /// unless the tenant checks ids online and VIES covers the id; `verified`, or
    /// `unverified` when VIES cannot answer. An id VIES says is not registered is refused
    /// with `invalid_vat_id` naming `param`.
    pub async fn vat_id_status(
        &self,
        tenant: TenantId,
        vat_id: &str,
        param: &str,
    ) -> Result<Option<VatIdStatus>, AppError> {
        let settings = self.store.tax_settings(tenant).await?;
        if !settings.is_some_and(|s| s.verify_vat_ids_online) {
            return Ok(None);
        }
        let Some(id) = vat_id::parse(vat_id).ok().filter(VatId::in_vies) else {
            return Ok(None);
        };
        match self.registered(&id).await {
            Ok(RegistryAnswer::Registered) => Ok(Some(VatIdStatus::Verified)),
            Ok(RegistryAnswer::NotRegistered) => Err(AppError::Invalid(ValidationError::new(
                ErrorCode::InvalidVatId,
                param,
                format!(
                    "{param}: VIES says {} is not a registered VAT id; check it with the customer",
                    id.compact
                ),
            ))),
            Err(e) => {
                tracing::warn!(error = %e, "VAT id accepted unverified");
                Ok(Some(VatIdStatus::Unverified))
            }
        }
    }

    /// The VAT id a tenant that checks ids online may reverse-charge on: one verified when
    /// set, else one VIES confirms now (asked again for every invoice until it does).
    async fn confirmed_vat_id(
        &self,
        settings: &TaxSettings,
        vat_id: Option<String>,
        status: Option<VatIdStatus>,
    ) -> Option<String> {
        let vat_id = vat_id?;
        if !settings.verify_vat_ids_online || status == Some(VatIdStatus::Verified) {
            return Some(vat_id);
        }
        match vat_id::parse(&vat_id) {
            Ok(id) if id.in_vies() => match self.registered(&id).await {
                Ok(RegistryAnswer::Registered) => Some(vat_id),
                _ => None,
            },
            _ => Some(vat_id),
        }
    }

    pub async fn tax_settings(&self, caller: &Caller) -> Result<TaxSettings, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .tax_settings(caller.tenant_id)
            .await?
            .ok_or_else(|| AppError::not_found("tax settings", caller.tenant_id))
    }

    /// Replaces the tenant's tax settings; invoices drafted from now on use them.
    pub async fn set_tax_settings(
        &self,
        caller: &Caller,
        input: TaxSettings,
    ) -> Result<TaxSettings, AppError> {
        caller.require(Permission::WriteBilling)?;
        let settings = input.validate()?;
        let before = self
            .store
            .tax_settings(caller.tenant_id)
            .await?
            .map(|s| to_json(&s))
            .transpose()?;
        let after = to_json(&settings)?;
        let change = change(
            caller,
            self.clocks.now(),
            ChangeSpec {
                entity_type: "tax_settings",
                entity_id: caller.tenant_id.to_string(),
                action: if before.is_some() {
                    AuditAction::Update
                } else {
                    AuditAction::Create
                },
                event_type: Some(EventType::TaxSettingsUpdated),
                before: before.as_ref(),
                after: &after,
            },
        );
        self.store
            .set_tax_settings(caller.tenant_id, &settings, &change)
            .await?;
        self.settings.forget(&caller.tenant_id);
        Ok(settings)
    }

    pub async fn create_tax_rate(
        &self,
        caller: &Caller,
        input: NewTaxRate,
    ) -> Result<TaxRate, AppError> {
        caller.require(Permission::WriteBilling)?;
        let now = self.clocks.now();
        let rate = TaxRate::create(TaxRateId::from_ulid(new_ulid()), input, None, now)?;
        self.insert(caller, std::slice::from_ref(&rate), now)
            .await?;
        Ok(rate)
    }

    /// A rate's change from a date: a new rate, and the old one ended there. The old rate
    /// itself never changes otherwise, so invoices that used it keep meaning what they said.
    pub async fn change_tax_rate(
        &self,
        caller: &Caller,
        id: TaxRateId,
        input: TaxRateChange,
    ) -> Result<TaxRate, AppError> {
        caller.require(Permission::WriteBilling)?;
        let current = self.get_tax_rate(caller, id).await?;
        let now = self.clocks.now();
        let (next, ended) = current.change(TaxRateId::from_ulid(new_ulid()), input, now)?;
        let after = to_json(&next)?;
        let change = change(
            caller,
            now,
            ChangeSpec {
                entity_type: "tax_rate",
                entity_id: next.id.to_string(),
                action: AuditAction::Create,
                event_type: Some(EventType::TaxRateCreated),
                before: None,
                after: &after,
            },
        );
        match self
            .store
            .replace_tax_rate(caller.tenant_id, &ended, &next, &change)
            .await
        {
            Err(StoreError::VersionConflict { .. }) => Err(AppError::Conflict {
                code: ErrorCode::TaxRateEnded,
                message: format!("{id} was replaced meanwhile; change the rate that replaced it"),
                param: Some("id"),
            }),
            other => Ok(other?),
        }?;
        Ok(next)
    }

    pub async fn get_tax_rate(&self, caller: &Caller, id: TaxRateId) -> Result<TaxRate, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_tax_rate(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("tax rate", id))
    }

    pub async fn list_tax_rates(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<TaxRate>, AppError> {
        caller.require(Permission::Read)?;
        Ok(self.store.list_tax_rates(caller.tenant_id, page).await?)
    }

    /// Loads the EU member states' standard VAT rates; rates loaded before are kept as they
    /// are (their ids are fixed), so loading twice, or twice at once, loads them once.
    pub async fn load_eu_standard_vat(&self, caller: &Caller) -> Result<Vec<TaxRate>, AppError> {
        caller.require(Permission::WriteBilling)?;
        for _ in 0..crate::kernel::WRITE_ATTEMPTS {
            let now = self.clocks.now();
            let existing = self.all_rates(caller.tenant_id).await?;
            let seed = eu_standard_vat(now);
            let missing: Vec<TaxRate> = seed
                .iter()
                .filter(|r| !existing.iter().any(|e| e.id == r.id))
                .cloned()
                .collect();
            if !missing.is_empty() {
                match self.insert(caller, &missing, now).await {
                    Err(AppError::Conflict {
                        code: ErrorCode::ConcurrentModification,
                        ..
                    }) => continue,
                    other => other?,
                }
            }
            let loaded = self.all_rates(caller.tenant_id).await?;
            return Ok(loaded
                .into_iter()
                .filter(|r| seed.iter().any(|s| s.id == r.id))
                .collect());
        }
        Err(AppError::Unavailable(
            "the tax rates are busy; retry".into(),
        ))
    }

    async fn insert(
        &self,
        caller: &Caller,
        rates: &[TaxRate],
        now: Timestamp,
    ) -> Result<(), AppError> {
        let after = to_json(&rates)?;
        let mut change = change(
            caller,
            now,
            ChangeSpec {
                entity_type: "tax_rate",
                entity_id: rates.first().map(|r| r.id.to_string()).unwrap_or_default(),
                action: AuditAction::Create,
                event_type: None,
                before: None,
                after: &after,
            },
        );
        for rate in rates {
            change.events.push(crate::kernel::event(
                caller,
                now,
                EventType::TaxRateCreated,
                rate.id.to_string(),
                to_json(rate)?,
                None,
            ));
        }
        match self
            .store
            .insert_tax_rates(caller.tenant_id, rates, &change)
            .await
        {
            Err(StoreError::AlreadyExists { .. }) => Err(AppError::Conflict {
                code: ErrorCode::ConcurrentModification,
                message: "a tax rate was created meanwhile; retry".into(),
                param: None,
            }),
            other => Ok(other?),
        }
    }

    async fn all_rates(&self, tenant: TenantId) -> Result<Vec<TaxRate>, AppError> {
        let mut page = PageRequest::first(MAX_RATES);
        let mut rates = Vec::new();
        loop {
            let found = self.store.list_tax_rates(tenant, &page).await?;
            let last = found
                .scanned_to
                .clone()
                .or_else(|| found.items.last().map(|r| r.id.to_string()));
            let more = found.has_more;
            rates.extend(found.items);
            match last {
                Some(last) if more => page.starting_after = Some(last),
                _ => return Ok(rates),
            }
        }
    }

    /// The tenant's settings as invoices are taxed by them: cached for [`SETTINGS_TTL`]
    /// (README, caches), read fresh for a test clock's invoices.
    async fn settings_for_invoices(
        &self,
        tenant: TenantId,
        test_clock: Option<TestClockId>,
    ) -> Result<Option<TaxSettings>, AppError> {
        let now = self.clocks.now();
        if test_clock.is_none() {
            if let Some(cached) = self.settings.get(&tenant, now) {
                return Ok(cached);
            }
        }
        let settings = self.store.tax_settings(tenant).await?;
        self.settings.put(tenant, settings.clone(), now);
        Ok(settings)
    }

    /// The tax of an invoice for `customer` dated `at`: the settings (cached), and the
    /// rates and the account only when the tenant has settings. A taxable sale without a
    /// rate is refused (`tax_rate_missing`), never drafted untaxed.
    pub async fn invoice_tax(
        &self,
        tenant: TenantId,
        customer: TaxCustomer<'_>,
        at: Timestamp,
        test_clock: Option<TestClockId>,
    ) -> Result<InvoiceTax, AppError> {
        let settings = self.settings_for_invoices(tenant, test_clock).await?;
        let Some(settings) = settings else {
            return self
                .resolve(None, &[], &CustomerDetails::default(), at)
                .await;
        };
        let rates = self.all_rates(tenant).await?;
        match customer {
            TaxCustomer::Details(details) => {
                let details = CustomerDetails {
                    vat_id: self
                        .confirmed_vat_id(&settings, details.vat_id.clone(), None)
                        .await,
                    ..details.clone()
                };
                self.resolve(Some(&settings), &rates, &details, at).await
            }
            TaxCustomer::Account(id) => {
                let account = self
                    .store
                    .get_account(tenant, id)
                    .await?
                    .ok_or_else(|| AppError::not_found("account", id))?;
                let details = CustomerDetails {
                    billing_address: account.billing_address,
                    tax_exempt: account.tax_exempt,
                    vat_id: self
                        .confirmed_vat_id(&settings, account.vat_id, account.vat_id_status)
                        .await,
                };
                self.resolve(Some(&settings), &rates, &details, at).await
            }
        }
    }

    async fn resolve(
        &self,
        settings: Option<&TaxSettings>,
        rates: &[TaxRate],
        customer: &CustomerDetails,
        at: Timestamp,
    ) -> Result<InvoiceTax, AppError> {
        let address = customer.billing_address.as_ref();
        // Regions and postal codes are matched in upper case, as rates store them.
        let upper = |v: Option<&String>| v.map(|v| v.to_ascii_uppercase());
        let region = upper(address.and_then(|a| a.state.as_ref()));
        let postal_code = upper(address.and_then(|a| a.postal_code.as_ref()));
        let query = TaxQuery {
            settings,
            rates,
            customer: Customer {
                country: address.and_then(|a| a.country.as_deref()),
                region: region.as_deref(),
                postal_code: postal_code.as_deref(),
                exempt: customer.tax_exempt,
                vat_id: customer.vat_id.as_deref(),
            },
            at,
        };
        self.provider
            .invoice_tax(&query)
            .await
            .map_err(|e| AppError::Conflict {
                code: ErrorCode::TaxRateMissing,
                message: e.to_string(),
                param: None,
            })
    }
}

/// Whom an invoice's tax is decided for.
#[derive(Debug, Clone, Copy)]
pub enum TaxCustomer<'a> {
    Account(AccountId),
    /// A customer without an account (a hypothetical preview): nothing known is the
    /// seller's own jurisdiction (`address_missing`), as for an account without an address.
    Details(&'a CustomerDetails),
}
