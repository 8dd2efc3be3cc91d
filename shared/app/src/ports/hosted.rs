//! Persistence of hosted invoice links: found by the hash of their token (the page knows
//! nothing else), revoked per invoice by bumping its link epoch.

use async_trait::async_trait;
use billing_domain::hosted::link::HostedLink;
use billing_domain::kernel::ids::{InvoiceId, TenantId};

use super::{Change, StoreError};

#[async_trait]
pub trait HostedLinkStore: Send + Sync {
    /// Stores a minted link under its hash (`AlreadyExists` if that hash is taken).
    async fn insert_hosted_link(&self, link: &HostedLink) -> Result<(), StoreError>;
    async fn get_hosted_link(&self, token_hash: &str) -> Result<Option<HostedLink>, StoreError>;
    /// The invoice's link epoch: 0 until its links are first revoked.
    async fn hosted_link_epoch(
        &self,
        tenant: TenantId,
        invoice: InvoiceId,
    ) -> Result<u32, StoreError>;
    /// Moves the epoch from `current` to `current + 1` (`VersionConflict` when it is no
    /// longer `current`), with the change, atomically: every link minted before is dead.
    async fn revoke_hosted_links(
        &self,
        tenant: TenantId,
        invoice: InvoiceId,
        current: u32,
        change: &Change,
    ) -> Result<(), StoreError>;
}
