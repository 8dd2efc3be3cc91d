//! Persistence of account balances: the balance item per account and currency, its grants
//! and its append-only ledger.

use async_trait::async_trait;
use billing_domain::credits::balance::{Balance, BalanceChange, BalanceTransaction, CreditGrant};
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{AccountId, CreditGrantId, TenantId};

use super::{Change, Page, PageRequest, StoreError};

/// A balance change that commits with an invoice write (see [`super::InvoiceWrite`]):
/// the invoice's credit applied or its negative total moved into the balance.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceSettlement {
    pub change: BalanceChange,
    /// Its audit record and events.
    pub record: Change,
}

#[async_trait]
pub trait CreditStore: Send + Sync {
    /// The account's balance in `currency`, `None` while it never had one.
    async fn get_balance(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Currency,
    ) -> Result<Option<Balance>, StoreError>;
    /// The balances that exist among `wanted` (in one read where the store can).
    async fn get_balances(
        &self,
        tenant: TenantId,
        wanted: &[(AccountId, Currency)],
    ) -> Result<Vec<Balance>, StoreError>;
    /// Every balance of the account, by currency.
    async fn list_balances(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Vec<Balance>, StoreError>;
    /// The account's grants with these ids (those that exist).
    async fn get_grants(
        &self,
        tenant: TenantId,
        account: AccountId,
        ids: &[CreditGrantId],
    ) -> Result<Vec<CreditGrant>, StoreError>;
    /// The account's grants of every currency, newest first.
    async fn list_grants(
        &self,
        tenant: TenantId,
        account: AccountId,
        page: &PageRequest,
    ) -> Result<Page<CreditGrant>, StoreError>;
    /// The account's ledger, newest first; only `currency`'s entries when given.
    async fn list_balance_transactions(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Option<Currency>,
        page: &PageRequest,
    ) -> Result<Page<BalanceTransaction>, StoreError>;
    /// Writes `change` atomically: the balance over its stored `previous_version` (0: it
    /// must not exist yet), the grants as they become, each ledger entry as a new item,
    /// and the record. `VersionConflict` when the balance moved meanwhile; nothing is
    /// written then. (An invoice's settlement goes with the invoice's write instead.)
    async fn save_balance(
        &self,
        tenant: TenantId,
        change: &BalanceChange,
        record: &Change,
    ) -> Result<(), StoreError>;
}
