//! Coupons and discounts: creating, changing and deleting coupons, and redeeming them onto
//! subscriptions (at creation through billing, later through `redeem_on_subscription`) and
//! onto accounts (`redeem_on_account`; billing reads them with `account_discounts_of`).
//! A redemption's slot and its discount are one write (see [`RedemptionStore`]), retried
//! from a fresh read when another redemption took the counter first.

use std::sync::Arc;

use billing_domain::billing::subscription::Subscription;
use billing_domain::coupons::account::AccountDiscounts;
use billing_domain::coupons::coupon::{Coupon, CouponPatch, NewCoupon};
use billing_domain::coupons::discount::{AppliedDiscount, MAX_DISCOUNTS};
use billing_domain::customers::access::Permission;
use billing_domain::customers::account::Account;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::{ErrorCode, ValidationError};
use billing_domain::kernel::ids::{AccountId, CouponId, DiscountId, SubscriptionId, TenantId};
use jiff::Timestamp;

use crate::kernel::WRITE_ATTEMPTS;
use crate::kernel::{change, new_ulid, to_json, AppError, Caller, ChangeSpec, Clocks};
use crate::ports::{
    AccountDiscountStore, AccountStore, CouponStore, Page, PageRequest, RedemptionStore,
    RedemptionTarget, StoreError, SubscriptionStore,
};

/// What the coupons service reads and writes.
pub trait CouponsPorts:
    CouponStore + RedemptionStore + SubscriptionStore + AccountStore + AccountDiscountStore
{
}

impl<T> CouponsPorts for T where
    T: CouponStore + RedemptionStore + SubscriptionStore + AccountStore + AccountDiscountStore
{
}

/// The coupon use cases. Depends on the kernel only; billing calls
/// [`CouponsService::redeemable`] when a subscription starts with a coupon.
#[derive(Clone)]
pub struct CouponsService {
    store: Arc<dyn CouponsPorts>,
    clocks: Clocks,
}

/// A coupon named by a request, as `param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CouponRef {
    Id(CouponId),
    Code(String),
}

impl CouponRef {
    /// A `coupon_…` id, else a code.
    pub fn parse(text: &str) -> CouponRef {
        match CouponId::parse(text, "coupon") {
            Ok(id) => CouponRef::Id(id),
            Err(_) => CouponRef::Code(text.to_owned()),
        }
    }
}

impl CouponsService {
    pub(crate) fn new(store: Arc<dyn CouponsPorts>, clocks: Clocks) -> Self {
        Self { store, clocks }
    }

    pub async fn create_coupon(
        &self,
        caller: &Caller,
        input: NewCoupon,
    ) -> Result<Coupon, AppError> {
        caller.require(Permission::WriteBilling)?;
        let now = self.clocks.now();
        let coupon = Coupon::create(CouponId::from_ulid(new_ulid()), input, now)?;
        let after = to_json(&coupon)?;
        let change = change(
            caller,
            now,
            ChangeSpec {
                entity_type: "coupon",
                entity_id: coupon.id.to_string(),
                action: AuditAction::Create,
                event_type: Some(EventType::CouponCreated),
                before: None,
                after: &after,
            },
        );
        self.store
            .insert_coupon(caller.tenant_id, &coupon, &change)
            .await
            .map_err(|e| match e {
                StoreError::Duplicate { .. } => AppError::Conflict {
                    code: ErrorCode::DuplicateValue,
                    message: format!("another coupon already has the code `{}`", coupon.code),
                    param: Some("code"),
                },
                other => other.into(),
            })?;
        Ok(coupon)
    }

    pub async fn get_coupon(&self, caller: &Caller, id: CouponId) -> Result<Coupon, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_coupon(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("coupon", id))
    }

    pub async fn list_coupons(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<Coupon>, AppError> {
        caller.require(Permission::Read)?;
        Ok(self.store.list_coupons(caller.tenant_id, page).await?)
    }

    pub async fn update_coupon(
        &self,
        caller: &Caller,
        id: CouponId,
        patch: CouponPatch,
    ) -> Result<Coupon, AppError> {
        caller.require(Permission::WriteBilling)?;
        self.change_coupon(caller, id, EventType::CouponUpdated, |c, now| {
            Ok(Some(c.apply(patch.clone(), now)?))
        })
        .await
    }

    /// Deletes the coupon: no new redemptions; discounts already made run their course.
    /// Deleting a deleted coupon changes nothing.
    pub async fn delete_coupon(&self, caller: &Caller, id: CouponId) -> Result<Coupon, AppError> {
        caller.require(Permission::WriteBilling)?;
        self.change_coupon(caller, id, EventType::CouponDeleted, |c, now| {
            Ok(c.delete(now))
        })
        .await
    }

    async fn change_coupon(
        &self,
        caller: &Caller,
        id: CouponId,
        event_type: EventType,
        step: impl Fn(&Coupon, Timestamp) -> Result<Option<Coupon>, AppError>,
    ) -> Result<Coupon, AppError> {
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.get_coupon(caller, id).await?;
            let now = self.clocks.now();
            let Some(next) = step(&current, now)? else {
                return Ok(current);
            };
            let (before, after) = (to_json(&current)?, to_json(&next)?);
            let change = change(
                caller,
                now,
                ChangeSpec {
                    entity_type: "coupon",
                    entity_id: id.to_string(),
                    action: if next.deleted {
                        AuditAction::Delete
                    } else {
                        AuditAction::Update
                    },
                    event_type: Some(event_type),
                    before: Some(&before),
                    after: &after,
                },
            );
            match self
                .store
                .save_coupon(caller.tenant_id, &current, &next, &change)
                .await
            {
                Err(StoreError::VersionConflict { .. }) => continue,
                other => other?,
            }
            return Ok(next);
        }
        Err(kept_changing("coupon"))
    }

    async fn find(
        &self,
        caller: &Caller,
        coupon: &CouponRef,
        param: &'static str,
    ) -> Result<Coupon, AppError> {
        let found = match coupon {
            CouponRef::Id(id) => self.store.get_coupon(caller.tenant_id, *id).await?,
            CouponRef::Code(code) => {
                self.store
                    .get_coupon_by_code(caller.tenant_id, code)
                    .await?
            }
        };
        found.ok_or_else(|| {
            AppError::Invalid(ValidationError::new(
                ErrorCode::UnknownCoupon,
                param,
                "no coupon has this code or id",
            ))
        })
    }

    /// The coupon `coupon` as read now and the discount one more redemption of it would
    /// put on `subscription` at `now` (its terms and plan as they will be stored), or why
    /// it cannot be redeemed. The caller writes both with [`RedemptionStore::redeem_coupon`].
    pub async fn redeemable(
        &self,
        caller: &Caller,
        coupon: &CouponRef,
        subscription: &Subscription,
        now: Timestamp,
        param: &'static str,
    ) -> Result<(Coupon, AppliedDiscount), AppError> {
        let coupon = self.find(caller, coupon, param).await?;
        if subscription
            .discounts
            .iter()
            .any(|d| d.coupon_id == coupon.id)
        {
            return Err(AppError::Invalid(ValidationError::new(
                ErrorCode::AlreadyDiscounted,
                param,
                "the subscription already carries a discount from this coupon",
            )));
        }
        if subscription.discounts.len() >= MAX_DISCOUNTS {
            return Err(AppError::Invalid(ValidationError::new(
                ErrorCode::AlreadyDiscounted,
                param,
                format!("a subscription carries at most {MAX_DISCOUNTS} discounts"),
            )));
        }
        let discount = coupon
            .redeem(
                DiscountId::from_ulid(new_ulid()),
                subscription.terms.plan_id,
                subscription.currency,
                now,
            )
            .map_err(|e| AppError::Invalid(e.problem(param)))?;
        Ok((coupon, discount))
    }

    /// Redeems `coupon` onto an existing subscription: its next period invoices take the
    /// discount. One redemption slot is taken in the same write.
    pub async fn redeem_on_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        coupon: &CouponRef,
    ) -> Result<Subscription, AppError> {
        caller.require(Permission::WriteBilling)?;
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.subscription(caller, id).await?;
            if current.ended_at.is_some() {
                return Err(AppError::Invalid(ValidationError::new(
                    ErrorCode::SubscriptionCancelled,
                    "coupon",
                    "the subscription has ended",
                )));
            }
            let now = self
                .clocks
                .now_for(caller.tenant_id, current.test_clock)
                .await?;
            let (found, discount) = self
                .redeemable(caller, coupon, &current, now, "coupon")
                .await?;
            let mut next = current.clone();
            next.discounts.push(discount);
            next.updated_at = now;
            next.version += 1;
            let change =
                self.subscription_change(caller, &current, &next, now, EventType::CouponRedeemed)?;
            match self
                .store
                .redeem_coupon(
                    caller.tenant_id,
                    &found,
                    RedemptionTarget::Subscription {
                        previous: &current,
                        next: &next,
                    },
                    &change,
                )
                .await
            {
                Err(StoreError::VersionConflict { .. }) => continue,
                other => other?,
            }
            return Ok(next);
        }
        Err(kept_changing("subscription or coupon"))
    }

    /// Takes a discount off a subscription before it ends; its redemption stays counted.
    pub async fn remove_discount(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        discount: DiscountId,
    ) -> Result<Subscription, AppError> {
        caller.require(Permission::WriteBilling)?;
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.subscription(caller, id).await?;
            if !current.discounts.iter().any(|d| d.id == discount) {
                return Err(AppError::not_found("discount", discount));
            }
            let now = self
                .clocks
                .now_for(caller.tenant_id, current.test_clock)
                .await?;
            let mut next = current.clone();
            next.discounts.retain(|d| d.id != discount);
            next.updated_at = now;
            next.version += 1;
            let change =
                self.subscription_change(caller, &current, &next, now, EventType::DiscountDeleted)?;
            match self
                .store
                .save_subscription(caller.tenant_id, &current, &next, None, &change)
                .await
            {
                Err(StoreError::VersionConflict { .. }) => continue,
                other => other?,
            }
            return Ok(next);
        }
        Err(kept_changing("subscription"))
    }

    /// Redeems `coupon` onto an account: the period invoices of all its subscriptions that
    /// carry no discount of their own take it (see [`billing_domain::coupons::account`]).
    /// One redemption slot is taken in the same write.
    pub async fn redeem_on_account(
        &self,
        caller: &Caller,
        id: AccountId,
        coupon: &CouponRef,
    ) -> Result<AccountDiscounts, AppError> {
        caller.require(Permission::WriteBilling)?;
        for _ in 0..WRITE_ATTEMPTS {
            let account = self.account(caller, id).await?;
            if account.deleted_at.is_some() {
                return Err(AppError::Conflict {
                    code: ErrorCode::AccountDeleted,
                    message: "the account is deleted".into(),
                    param: None,
                });
            }
            let now = self
                .clocks
                .now_for(caller.tenant_id, account.test_clock)
                .await?;
            let current = self
                .stored_discounts(caller.tenant_id, &account, now)
                .await?;
            let found = self.find(caller, coupon, "coupon").await?;
            // Ended discounts make room; the same coupon twice is refused while it runs.
            let running: Vec<_> = current
                .discounts
                .iter()
                .filter(|d| AccountDiscounts::running(d, now))
                .collect();
            if running.iter().any(|d| d.coupon_id == found.id) {
                return Err(AppError::Invalid(ValidationError::new(
                    ErrorCode::AlreadyDiscounted,
                    "coupon",
                    "the account already carries a discount from this coupon",
                )));
            }
            if running.len() >= MAX_DISCOUNTS {
                return Err(AppError::Invalid(ValidationError::new(
                    ErrorCode::AlreadyDiscounted,
                    "coupon",
                    format!("an account carries at most {MAX_DISCOUNTS} discounts"),
                )));
            }
            let zone = billing_domain::kernel::time_zones::get(&account.timezone)
                .unwrap_or(jiff::tz::TimeZone::UTC);
            let discount = found
                .redeem_on_account(
                    DiscountId::from_ulid(new_ulid()),
                    account.currency,
                    &zone,
                    now,
                )
                .map_err(|e| AppError::Invalid(e.problem("coupon")))?;
            let next = current.changed(now, |all| {
                all.retain(|d| AccountDiscounts::running(d, now));
                all.push(discount);
            });
            let change = self.account_discounts_change(
                caller,
                &current,
                &next,
                now,
                EventType::AccountDiscountApplied,
            )?;
            match self
                .store
                .redeem_coupon(
                    caller.tenant_id,
                    &found,
                    RedemptionTarget::Account(&next),
                    &change,
                )
                .await
            {
                Err(StoreError::VersionConflict { .. }) => continue,
                other => other?,
            }
            return Ok(next);
        }
        Err(kept_changing("account's discounts or coupon"))
    }

    /// The discounts on an account (ended `repeating` ones included, with their `end`).
    pub async fn account_discounts(
        &self,
        caller: &Caller,
        id: AccountId,
    ) -> Result<AccountDiscounts, AppError> {
        caller.require(Permission::Read)?;
        let account = self.account(caller, id).await?;
        let now = self.clocks.now();
        self.stored_discounts(caller.tenant_id, &account, now).await
    }

    /// Takes a discount off an account before it ends; its redemption stays counted.
    pub async fn remove_account_discount(
        &self,
        caller: &Caller,
        id: AccountId,
        discount: DiscountId,
    ) -> Result<AccountDiscounts, AppError> {
        caller.require(Permission::WriteBilling)?;
        for _ in 0..WRITE_ATTEMPTS {
            let account = self.account(caller, id).await?;
            let now = self
                .clocks
                .now_for(caller.tenant_id, account.test_clock)
                .await?;
            let current = self
                .stored_discounts(caller.tenant_id, &account, now)
                .await?;
            if !current.discounts.iter().any(|d| d.id == discount) {
                return Err(AppError::not_found("discount", discount));
            }
            let next = current.changed(now, |all| all.retain(|d| d.id != discount));
            let change = self.account_discounts_change(
                caller,
                &current,
                &next,
                now,
                EventType::AccountDiscountRemoved,
            )?;
            match self
                .store
                .save_account_discounts(caller.tenant_id, &next, &change)
                .await
            {
                Err(StoreError::VersionConflict { .. }) => continue,
                other => other?,
            }
            return Ok(next);
        }
        Err(kept_changing("account's discounts"))
    }

    /// The account's discounts as stored, for billing and previews (`None`: never any).
    pub async fn account_discounts_of(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<AccountDiscounts>, AppError> {
        Ok(self.store.get_account_discounts(tenant, account).await?)
    }

    async fn account(&self, caller: &Caller, id: AccountId) -> Result<Account, AppError> {
        self.store
            .get_account(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("account", id))
    }

    async fn stored_discounts(
        &self,
        tenant: TenantId,
        account: &Account,
        now: Timestamp,
    ) -> Result<AccountDiscounts, AppError> {
        Ok(self
            .store
            .get_account_discounts(tenant, account.id)
            .await?
            .unwrap_or_else(|| AccountDiscounts::none(account.id, account.currency, now)))
    }

    fn account_discounts_change(
        &self,
        caller: &Caller,
        current: &AccountDiscounts,
        next: &AccountDiscounts,
        now: Timestamp,
        event_type: EventType,
    ) -> Result<crate::ports::Change, AppError> {
        let (before, after) = (to_json(current)?, to_json(next)?);
        Ok(change(
            caller,
            now,
            ChangeSpec {
                entity_type: ACCOUNT_DISCOUNTS_ENTITY,
                entity_id: next.account_id.to_string(),
                action: if current.version == 0 {
                    AuditAction::Create
                } else {
                    AuditAction::Update
                },
                event_type: Some(event_type),
                before: (current.version > 0).then_some(&before),
                after: &after,
            },
        ))
    }

    async fn subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
    ) -> Result<Subscription, AppError> {
        self.store
            .get_subscription(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("subscription", id))
    }

    fn subscription_change(
        &self,
        caller: &Caller,
        current: &Subscription,
        next: &Subscription,
        now: Timestamp,
        event_type: EventType,
    ) -> Result<crate::ports::Change, AppError> {
        let (before, after) = (to_json(current)?, to_json(next)?);
        Ok(change(
            caller,
            now,
            ChangeSpec {
                entity_type: "subscription",
                entity_id: next.id.to_string(),
                action: AuditAction::Update,
                event_type: Some(event_type),
                before: Some(&before),
                after: &after,
            },
        ))
    }
}

/// The audit records' entity type of an account's discounts.
pub(crate) const ACCOUNT_DISCOUNTS_ENTITY: &str = "account_discounts";

/// What a write that lost every race answers.
fn kept_changing(what: &str) -> AppError {
    AppError::Conflict {
        code: ErrorCode::ConcurrentModification,
        message: format!("the {what} kept changing under this request; retry"),
        param: None,
    }
}
