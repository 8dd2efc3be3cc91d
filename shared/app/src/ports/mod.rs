//! The capabilities use cases need from the outside world, one small trait each.
//! Production implements them with DynamoDB; the `billing-memory` crate implements them in memory
//! for fast tests, and the same contract suite runs against both.

mod billing;
mod catalog;
mod coupons;
mod credits;
mod documents;
mod dunning;
mod events;
mod gateway;
mod hosted;
mod payments;
mod tax;
mod usage;
mod wallets;

pub use billing::*;
pub use catalog::*;
pub use coupons::*;
pub use credits::*;
pub use documents::*;
pub use dunning::*;
pub use events::*;
pub use gateway::*;
pub use hosted::*;
pub use payments::*;
pub use tax::*;
pub use usage::*;
pub use wallets::*;

use async_trait::async_trait;
use billing_domain::customers::access::ApiKey;
use billing_domain::customers::account::{Account, AccountStatus};
use billing_domain::customers::limits::LimitSettings;
use billing_domain::customers::staff::{IdentityProvider, IssuerTrust, KeySet};
use billing_domain::customers::tenant::Tenant;
use billing_domain::events::record::{AuditRecord, DomainEvent};
use billing_domain::kernel::ids::{AccountId, ApiKeyId, TenantId};
use jiff::Timestamp;

/// Where `now` comes from. Every use case asks the clock; none reads the system time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Why a store operation failed, mapped once by each adapter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A conditional create found the item already there.
    #[error("the {entity} already exists")]
    AlreadyExists { entity: &'static str },
    /// A unique field's value is taken by another item.
    #[error("another {entity} already has this {field}")]
    Duplicate {
        entity: &'static str,
        field: &'static str,
    },
    /// The stored version is not the one the change was based on.
    #[error("the {entity} was changed concurrently")]
    VersionConflict { entity: &'static str },
    /// Throttling or a transient fault: the same call may succeed later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Internal(String),
}

/// The audit record and domain events that must commit together with a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub audit: AuditRecord,
    pub events: Vec<DomainEvent>,
}

/// How many items one list request may examine (read and test against its filter) before
/// it answers with what it found and a cursor to resume from. A filter no key or index
/// serves is a scan of the tenant's items; this bounds each request's share of it.
pub const SCAN_BUDGET: usize = 1000;

/// Cursor pagination: `limit` items after the item whose id is `starting_after`, examining
/// at most `scan_budget` items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub starting_after: Option<String>,
    pub scan_budget: usize,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: usize) -> Self {
        Self {
            limit,
            starting_after: None,
            scan_budget: SCAN_BUDGET,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
    /// Set when the scan spent its budget before the page filled: the id of the last item
    /// examined, where the next page resumes (past the last item returned, if any).
    pub scanned_to: Option<String>,
}

impl<T> Page<T> {
    /// A page that ends at its last item.
    pub fn new(items: Vec<T>, has_more: bool) -> Self {
        Self {
            items,
            has_more,
            scanned_to: None,
        }
    }

    /// Where the next page starts (`starting_after`), when there is one: past the last
    /// item (`id` names it), or where a bounded scan stopped.
    pub fn next_cursor(&self, id: impl Fn(&T) -> String) -> Option<String> {
        if !self.has_more {
            return None;
        }
        self.scanned_to
            .clone()
            .or_else(|| self.items.last().map(id))
    }

    /// The same page with each item mapped, keeping where it ends.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            has_more: self.has_more,
            scanned_to: self.scanned_to,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFilter {
    pub status: Option<AccountStatus>,
    pub email: Option<String>,
    pub external_id: Option<String>,
}

impl AccountFilter {
    /// Whether a listed account passes the filter; deleted accounts are never listed.
    pub fn admits(&self, account: &Account) -> bool {
        account.deleted_at.is_none()
            && self.status.is_none_or(|s| account.status == s)
            && self
                .email
                .as_deref()
                .is_none_or(|e| account.email.eq_ignore_ascii_case(e))
            && self
                .external_id
                .as_deref()
                .is_none_or(|x| account.external_id.as_deref() == Some(x))
    }
}

#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Creates a tenant together with its first API key, atomically.
    async fn create_tenant(&self, tenant: &Tenant, first_key: &ApiKey) -> Result<(), StoreError>;
    async fn get_tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError>;
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn get_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
    ) -> Result<Option<ApiKey>, StoreError>;
    async fn insert_api_key(&self, key: &ApiKey, change: &Change) -> Result<(), StoreError>;
    /// Marks a key revoked; fails with `VersionConflict` if it already was.
    async fn revoke_api_key(&self, key: &ApiKey, change: &Change) -> Result<(), StoreError>;
    /// Replaces `retired` (the rolled key with its new `expires_at`) unless it was revoked
    /// meanwhile (`VersionConflict`) and creates its `successor`, with both changes,
    /// atomically.
    async fn roll_api_key(
        &self,
        retired: &ApiKey,
        successor: &ApiKey,
        retirement: &Change,
        creation: &Change,
    ) -> Result<(), StoreError>;
    /// Sets the key's `last_used_at` to `at` if it is unset or not after `stale_since`;
    /// leaves it alone otherwise (another instance wrote it lately). No audit record: a use
    /// is not a change.
    async fn record_key_use(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        at: Timestamp,
        stale_since: Timestamp,
    ) -> Result<(), StoreError>;
    async fn list_api_keys(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>, StoreError>;
}

/// What a claim on a shared rate count got: how much of what it asked for, and the count
/// after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateClaim {
    pub granted: u32,
    pub used: u32,
}

/// The shared counts behind the hourly rate limits, and the tenant's limits.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Adds up to `want` to the count of `subject` (a key, or the tenant) in the window
    /// `[start, end)`, atomically and never past `limit`: two instances claiming the last
    /// requests of a window share them. The count is forgotten some time after `end`.
    /// `want` 0 only reads the count.
    async fn claim_rate(
        &self,
        tenant: TenantId,
        subject: &str,
        window: (Timestamp, Timestamp),
        want: u32,
        limit: u32,
    ) -> Result<RateClaim, StoreError>;
    /// The tenant's limits, or the defaults.
    async fn limit_settings(&self, tenant: TenantId) -> Result<LimitSettings, StoreError>;
    async fn set_limit_settings(
        &self,
        tenant: TenantId,
        settings: &LimitSettings,
        change: &Change,
    ) -> Result<(), StoreError>;
}

/// The identity provider each tenant trusts for staff sign-in, and who trusts an issuer.
#[async_trait]
pub trait IdentityProviderStore: Send + Sync {
    async fn identity_provider(
        &self,
        tenant: TenantId,
    ) -> Result<Option<IdentityProvider>, StoreError>;
    /// Makes `trust.provider` the tenant's provider and moves the tenant's trust record to
    /// its issuer, with `change`, atomically; `VersionConflict` unless the stored provider
    /// still has `previous`'s issuer (or there is none, for `None`).
    async fn set_identity_provider(
        &self,
        trust: &IssuerTrust,
        previous: Option<&IdentityProvider>,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Every tenant whose provider has this issuer.
    async fn issuer_trusts(&self, issuer: &str) -> Result<Vec<IssuerTrust>, StoreError>;
}

/// Fetches an issuer's published signing keys (JWKS); the error says why it could not.
#[async_trait]
pub trait KeySetFetcher: Send + Sync {
    async fn fetch(&self, url: &str) -> Result<KeySet, String>;
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates the account, claims its `external_id`, and writes the change, atomically.
    async fn insert_account(
        &self,
        tenant: TenantId,
        account: &Account,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Replaces `previous` with `next` if the stored version is still `previous.version`,
    /// moving the `external_id` claim when it changed, and writes the change, atomically.
    async fn update_account(
        &self,
        tenant: TenantId,
        previous: &Account,
        next: &Account,
        change: &Change,
    ) -> Result<(), StoreError>;
    async fn get_account(
        &self,
        tenant: TenantId,
        id: AccountId,
    ) -> Result<Option<Account>, StoreError>;
    async fn list_accounts(
        &self,
        tenant: TenantId,
        filter: &AccountFilter,
        page: &PageRequest,
    ) -> Result<Page<Account>, StoreError>;
    /// The accounts with these ids (those that exist), in no particular order.
    async fn get_accounts(
        &self,
        tenant: TenantId,
        ids: &[AccountId],
    ) -> Result<Vec<Account>, StoreError>;
}

/// What a purge erases besides the account itself.
#[async_trait]
pub trait ErasureStore: Send + Sync {
    /// Erases what is held about `account` outside its own item, and may run any number of
    /// times: deletes its payment profile and its pending notices, and erases every value
    /// that may be personal ([`billing_domain::customers::erasure::erase_values`]) in the
    /// audit records and events about `entities` (the account and its payment methods).
    async fn erase_account_records(
        &self,
        tenant: TenantId,
        account: AccountId,
        entities: &[String],
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Newest first; all of the tenant's records, or one entity's.
    async fn list_audit(
        &self,
        tenant: TenantId,
        entity_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError>;
}

/// A response remembered under an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key is ours (new, expired, or left by a holder whose lease ran out): run the
    /// request, then complete or release it.
    Claimed,
    /// The key was used before with the same request: answer with this response.
    Replay(StoredResponse),
    /// The key was used before with a different request.
    Mismatch,
    /// The same request is running right now under this key, within its lease.
    InProgress,
}

/// What a claim asks for: the request it is for, its holder, until when the holder may
/// run it alone, and until when the key is remembered.
#[derive(Debug, Clone, Copy)]
pub struct ClaimTerms<'a> {
    pub fingerprint: &'a str,
    pub owner: &'a str,
    pub now: Timestamp,
    pub lease_until: Timestamp,
    pub expires_at: Timestamp,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key`, atomically: of two requests taking over one expired lease, one wins.
    async fn claim_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        terms: &ClaimTerms<'_>,
    ) -> Result<IdempotencyClaim, StoreError>;
    /// Records the response, if `owner` still holds the key.
    async fn complete_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        owner: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;
    /// Gives the key back after a failure that the caller may retry (a 5xx), if `owner`
    /// still holds it.
    async fn release_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        owner: &str,
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait HealthProbe: Send + Sync {
    /// Succeeds when the store can serve requests.
    async fn ready(&self) -> Result<(), StoreError>;
}

/// Everything the services need from persistence: what the wiring takes and hands to
/// each service narrowed to the ports it uses.
pub trait Store:
    crate::customers::CustomersPorts
    + crate::catalog::CatalogPorts
    + crate::usage::UsagePorts
    + crate::billing::BillingPorts
    + crate::collection::CollectionPorts
    + crate::credits::CreditsPorts
    + crate::coupons::CouponsPorts
    + crate::tax::TaxPorts
    + crate::documents::DocumentsPorts
    + crate::events::EventsPorts
    + crate::retention::RetentionPorts
    + crate::wallets::WalletsPorts
    + crate::hosted::HostedPorts
    + IdempotencyStore
    + HealthProbe
{
}

impl<T> Store for T where
    T: crate::customers::CustomersPorts
        + crate::catalog::CatalogPorts
        + crate::usage::UsagePorts
        + crate::billing::BillingPorts
        + crate::collection::CollectionPorts
        + crate::credits::CreditsPorts
        + crate::coupons::CouponsPorts
        + crate::tax::TaxPorts
        + crate::documents::DocumentsPorts
        + crate::events::EventsPorts
        + crate::retention::RetentionPorts
        + crate::wallets::WalletsPorts
        + crate::hosted::HostedPorts
        + IdempotencyStore
        + HealthProbe
{
}
