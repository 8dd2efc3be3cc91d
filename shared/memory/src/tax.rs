//! Tax settings and tax rates.

use std::collections::BTreeMap;

use async_trait::async_trait;
use billing_domain::kernel::ids::{TaxRateId, TenantId};
use billing_domain::tax::rates::{TaxRate, TaxSettings};

use crate::{paginate, MemoryStore};
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct TaxState {
    settings: BTreeMap<TenantId, TaxSettings>,
    rates: BTreeMap<(TenantId, TaxRateId), TaxRate>,
}

#[async_trait]
impl TaxStore for MemoryStore {
    async fn tax_settings(&self, tenant: TenantId) -> Result<Option<TaxSettings>, StoreError> {
        Ok(self.state().tax.settings.get(&tenant).cloned())
    }

    async fn set_tax_settings(
        &self,
        tenant: TenantId,
        settings: &TaxSettings,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.tax.settings.insert(tenant, settings.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn insert_tax_rates(
        &self,
        tenant: TenantId,
        rates: &[TaxRate],
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        if rates
            .iter()
            .any(|r| s.tax.rates.contains_key(&(tenant, r.id)))
        {
            return Err(StoreError::AlreadyExists { entity: "tax rate" });
        }
        for rate in rates {
            s.tax.rates.insert((tenant, rate.id), rate.clone());
        }
        s.record(tenant, change);
        Ok(())
    }

    async fn replace_tax_rate(
        &self,
        tenant: TenantId,
        ended: &TaxRate,
        next: &TaxRate,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        match s.tax.rates.get(&(tenant, ended.id)) {
            Some(stored) if stored.version + 1 == ended.version => {}
            _ => return Err(StoreError::VersionConflict { entity: "tax rate" }),
        }
        if s.tax.rates.contains_key(&(tenant, next.id)) {
            return Err(StoreError::AlreadyExists { entity: "tax rate" });
        }
        s.tax.rates.insert((tenant, ended.id), ended.clone());
        s.tax.rates.insert((tenant, next.id), next.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn get_tax_rate(
        &self,
        tenant: TenantId,
        id: TaxRateId,
    ) -> Result<Option<TaxRate>, StoreError> {
        Ok(self.state().tax.rates.get(&(tenant, id)).cloned())
    }

    async fn list_tax_rates(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<TaxRate>, StoreError> {
        let s = self.state();
        let items = s
            .tax
            .rates
            .range((tenant, TaxRateId::from_ulid(ulid::Ulid::nil()))..)
            .take_while(|((t, _), _)| *t == tenant)
            .map(|((_, id), r)| (id.to_string(), r.clone()));
        Ok(paginate(items, page, |_| true))
    }
}
