//! Persistence of prepaid wallets: the wallet item (in the due index at its next expiry or
//! scheduled top-up) and its transactions.

use async_trait::async_trait;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{AccountId, TenantId, WalletId};
use billing_domain::wallets::wallet::{Wallet, WalletChange, WalletTransaction};

use super::{Change, Page, PageRequest, StoreError};

/// Wallet changes that commit with another write (an invoice consuming them or giving back
/// to them, a top-up invoice paid, a top-up invoice created): each on its wallet's version.
#[derive(Debug, Clone, PartialEq)]
pub struct WalletSettlement {
    pub changes: Vec<WalletChange>,
    /// Their audit record and events.
    pub record: Change,
}

#[async_trait]
pub trait WalletStore: Send + Sync {
    async fn get_wallet(
        &self,
        tenant: TenantId,
        id: WalletId,
    ) -> Result<Option<Wallet>, StoreError>;
    /// The account's wallets, newest first.
    async fn list_wallets(
        &self,
        tenant: TenantId,
        account: AccountId,
        page: &PageRequest,
    ) -> Result<Page<Wallet>, StoreError>;
    /// The account's active wallets, oldest first, as stored now (what an invoice
    /// consumes, in that order).
    async fn active_wallets(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Vec<Wallet>, StoreError>;
    /// Which of `wanted` have (or had) a wallet: one batched read for a finalizer's page
    /// of drafts, so that drafts of accounts without wallets cost nothing more.
    async fn wallet_holders(
        &self,
        tenant: TenantId,
        wanted: &[(AccountId, Currency)],
    ) -> Result<Vec<(AccountId, Currency)>, StoreError>;
    /// The wallet's transactions, newest first.
    async fn list_wallet_transactions(
        &self,
        tenant: TenantId,
        wallet: WalletId,
        page: &PageRequest,
    ) -> Result<Page<WalletTransaction>, StoreError>;
    /// Writes `change` atomically with `record`: the wallet over its stored
    /// `previous_version` (0: it must not exist), its transactions as they become.
    /// `VersionConflict` when the wallet moved meanwhile; nothing is written then.
    async fn save_wallet(
        &self,
        tenant: TenantId,
        change: &WalletChange,
        record: &Change,
    ) -> Result<(), StoreError>;
}
