//! Hosted invoice links and each invoice's link epoch.

use std::collections::BTreeMap;

use async_trait::async_trait;
use billing_domain::hosted::link::HostedLink;
use billing_domain::kernel::ids::{InvoiceId, TenantId};

use crate::MemoryStore;
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct HostedState {
    links: BTreeMap<String, HostedLink>,
    epochs: BTreeMap<(TenantId, InvoiceId), u32>,
}

#[async_trait]
impl HostedLinkStore for MemoryStore {
    async fn insert_hosted_link(&self, link: &HostedLink) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.hosted.links.contains_key(&link.token_hash) {
            return Err(StoreError::AlreadyExists {
                entity: "hosted link",
            });
        }
        s.hosted.links.insert(link.token_hash.clone(), link.clone());
        Ok(())
    }

    async fn get_hosted_link(&self, token_hash: &str) -> Result<Option<HostedLink>, StoreError> {
        Ok(self.state().hosted.links.get(token_hash).cloned())
    }

    async fn hosted_link_epoch(
        &self,
        tenant: TenantId,
        invoice: InvoiceId,
    ) -> Result<u32, StoreError> {
        Ok(self
            .state()
            .hosted
            .epochs
            .get(&(tenant, invoice))
            .copied()
            .unwrap_or(0))
    }

    async fn revoke_hosted_links(
        &self,
        tenant: TenantId,
        invoice: InvoiceId,
        current: u32,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let epoch = s.hosted.epochs.entry((tenant, invoice)).or_insert(0);
        if *epoch != current {
            return Err(StoreError::VersionConflict {
                entity: "hosted link epoch",
            });
        }
        *epoch += 1;
        s.record(tenant, change);
        Ok(())
    }
}
