//! Tax settings (one item) and tax rates (one item each, ended by a version-checked put in
//! the transaction that creates the rate replacing it).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::*;
use billing_domain::kernel::ids::{TaxRateId, TenantId};
use billing_domain::tax::rates::{TaxRate, TaxSettings};

use super::{to_item, DynamoStore};
use crate::keys;

/// The settings are kept under one attribute: they refuse unknown fields (the API's rule),
/// and an item has its keys besides.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSettings {
    settings: TaxSettings,
}

fn rate_item(tenant: TenantId, rate: &TaxRate) -> Result<super::Item, StoreError> {
    to_item("tax_rate", rate, &keys::tax_rate(tenant, rate.id))
}

#[async_trait]
impl TaxStore for DynamoStore {
    async fn tax_settings(&self, tenant: TenantId) -> Result<Option<TaxSettings>, StoreError> {
        Ok(self
            .get::<StoredSettings>(&keys::tax_settings(tenant))
            .await?
            .map(|s| s.settings))
    }

    async fn set_tax_settings(
        &self,
        tenant: TenantId,
        settings: &TaxSettings,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        let stored = StoredSettings {
            settings: settings.clone(),
        };
        tx.upsert(to_item(
            "tax_settings",
            &stored,
            &keys::tax_settings(tenant),
        )?)?
        .record(tenant, change)?;
        tx.commit().await
    }

    async fn insert_tax_rates(
        &self,
        tenant: TenantId,
        rates: &[TaxRate],
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        for rate in rates {
            tx.create(
                rate_item(tenant, rate)?,
                StoreError::AlreadyExists { entity: "tax rate" },
            )?;
        }
        tx.record(tenant, change)?;
        tx.commit().await
    }

    async fn replace_tax_rate(
        &self,
        tenant: TenantId,
        ended: &TaxRate,
        next: &TaxRate,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.put(
            rate_item(tenant, ended)?,
            "version = :expected",
            Some(HashMap::from([(
                ":expected".to_owned(),
                AttributeValue::N((ended.version - 1).to_string()),
            )])),
            StoreError::VersionConflict { entity: "tax rate" },
        )?
        .create(
            rate_item(tenant, next)?,
            StoreError::AlreadyExists { entity: "tax rate" },
        )?
        .record(tenant, change)?;
        tx.commit().await
    }

    async fn get_tax_rate(
        &self,
        tenant: TenantId,
        id: TaxRateId,
    ) -> Result<Option<TaxRate>, StoreError> {
        self.get(&keys::tax_rate(tenant, id)).await
    }

    async fn list_tax_rates(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<TaxRate>, StoreError> {
        let start = page
            .starting_after
            .as_deref()
            .and_then(|id| TaxRateId::parse(id, "starting_after").ok())
            .map(|id| keys::tax_rate(tenant, id).primary());
        let query = self.query_partition(keys::tenant_partition(tenant), keys::TAX_RATE_PREFIX);
        self.query_page(query, start, page.limit).await
    }
}
