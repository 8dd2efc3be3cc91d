//! Hosted invoice links (one item each, under the token's hash) and each invoice's link
//! epoch (one item, absent until the first revocation).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::*;
use billing_domain::hosted::link::HostedLink;
use billing_domain::kernel::ids::{InvoiceId, TenantId};

use super::{to_item, DynamoStore};
use crate::keys;

#[derive(serde::Serialize, serde::Deserialize)]
struct Epoch {
    epoch: u32,
}

#[async_trait]
impl HostedLinkStore for DynamoStore {
    async fn insert_hosted_link(&self, link: &HostedLink) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            to_item("hosted_link", link, &keys::hosted_link(&link.token_hash))?,
            StoreError::AlreadyExists {
                entity: "hosted link",
            },
        )?;
        tx.commit().await
    }

    async fn get_hosted_link(&self, token_hash: &str) -> Result<Option<HostedLink>, StoreError> {
        self.get(&keys::hosted_link(token_hash)).await
    }

    async fn hosted_link_epoch(
        &self,
        tenant: TenantId,
        invoice: InvoiceId,
    ) -> Result<u32, StoreError> {
        Ok(self
            .get::<Epoch>(&keys::hosted_link_epoch(tenant, invoice))
            .await?
            .map_or(0, |e| e.epoch))
    }

    async fn revoke_hosted_links(
        &self,
        tenant: TenantId,
        invoice: InvoiceId,
        current: u32,
        change: &Change,
    ) -> Result<(), StoreError> {
        let next = Epoch { epoch: current + 1 };
        let item = to_item(
            "hosted_link_epoch",
            &next,
            &keys::hosted_link_epoch(tenant, invoice),
        )?;
        let condition = if current == 0 {
            "attribute_not_exists(pk)"
        } else {
            "epoch = :current"
        };
        let values = (current != 0).then(|| {
            HashMap::from([(
                ":current".to_owned(),
                AttributeValue::N(current.to_string()),
            )])
        });
        let mut tx = self.transaction();
        tx.put(
            item,
            condition,
            values,
            StoreError::VersionConflict {
                entity: "hosted link epoch",
            },
        )?
        .record(tenant, change)?;
        tx.commit().await
    }
}
