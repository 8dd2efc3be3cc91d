//! Persistence of coupons, and the writes that redeem one: the redemption counter moves
//! in the same transaction as the discount it pays for.

use async_trait::async_trait;
use billing_domain::billing::subscription::Subscription;
use billing_domain::coupons::account::AccountDiscounts;
use billing_domain::coupons::coupon::Coupon;
use billing_domain::kernel::ids::{AccountId, CouponId, TenantId};

use super::{Change, InvoiceWrite, Page, PageRequest, StoreError};

#[async_trait]
pub trait CouponStore: Send + Sync {
    /// Creates the coupon and claims its `code` (`Duplicate` when taken), atomically.
    async fn insert_coupon(
        &self,
        tenant: TenantId,
        coupon: &Coupon,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Replaces `previous` if its version and redemption count are still stored (a patch,
    /// a delete); else `VersionConflict`, and the caller reads again.
    async fn save_coupon(
        &self,
        tenant: TenantId,
        previous: &Coupon,
        next: &Coupon,
        change: &Change,
    ) -> Result<(), StoreError>;
    async fn get_coupon(
        &self,
        tenant: TenantId,
        id: CouponId,
    ) -> Result<Option<Coupon>, StoreError>;
    async fn get_coupon_by_code(
        &self,
        tenant: TenantId,
        code: &str,
    ) -> Result<Option<Coupon>, StoreError>;
    /// Oldest first, deleted coupons included.
    async fn list_coupons(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Coupon>, StoreError>;
}

/// Where a redemption's discount goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RedemptionTarget<'a> {
    /// A subscription created with it (and its first invoice), as `insert_subscription`.
    NewSubscription {
        subscription: &'a Subscription,
        invoice: Option<&'a InvoiceWrite>,
    },
    /// A subscription that exists: `next` replaces `previous` (version-checked).
    Subscription {
        previous: &'a Subscription,
        next: &'a Subscription,
    },
    /// An account's discounts, as [`AccountDiscountStore::save_account_discounts`].
    Account(&'a AccountDiscounts),
}

/// An account's discounts: one item per account. Every write of it (a redemption, a
/// removal, an invoice taking a `once` discount) replaces version `next.version - 1` (none
/// stored for version 1), else `VersionConflict { entity: "account discounts" }`.
#[async_trait]
pub trait AccountDiscountStore: Send + Sync {
    async fn get_account_discounts(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<AccountDiscounts>, StoreError>;
    async fn save_account_discounts(
        &self,
        tenant: TenantId,
        next: &AccountDiscounts,
        change: &Change,
    ) -> Result<(), StoreError>;
}

/// The entity a failed account-discounts condition names.
pub const ACCOUNT_DISCOUNTS: &str = "account discounts";

#[async_trait]
pub trait RedemptionStore: Send + Sync {
    /// Writes `target` and takes one redemption slot of `coupon`, atomically: the
    /// coupon's stored counter goes up by one on the condition that the coupon is not
    /// deleted and, when it has a `max_redemptions`, that the counter is still below it.
    /// A failed condition is `VersionConflict { entity: "coupon" }` and writes nothing:
    /// the caller reads the coupon again to say why.
    async fn redeem_coupon(
        &self,
        tenant: TenantId,
        coupon: &Coupon,
        target: RedemptionTarget<'_>,
        change: &Change,
    ) -> Result<(), StoreError>;
}
