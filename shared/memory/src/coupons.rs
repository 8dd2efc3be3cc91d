//! Coupons, their unique codes and redemption counters.

use std::collections::BTreeMap;

use async_trait::async_trait;
use billing_domain::coupons::account::AccountDiscounts;
use billing_domain::coupons::coupon::Coupon;
use billing_domain::kernel::ids::{AccountId, CouponId, TenantId};

use crate::{paginate, MemoryStore, State};
use billing_app::ports::*;

#[derive(Default)]
pub(crate) struct CouponState {
    coupons: BTreeMap<(TenantId, CouponId), Coupon>,
    codes: BTreeMap<(TenantId, String), CouponId>,
    account_discounts: BTreeMap<(TenantId, AccountId), AccountDiscounts>,
}

impl State {
    /// Checks that `next` replaces the version stored before it (none for version 1).
    pub(crate) fn check_account_discounts(
        &self,
        tenant: TenantId,
        next: &AccountDiscounts,
    ) -> Result<(), StoreError> {
        let stored = self
            .coupons
            .account_discounts
            .get(&(tenant, next.account_id))
            .map_or(0, |d| d.version);
        if stored + 1 != next.version {
            return Err(StoreError::VersionConflict {
                entity: ACCOUNT_DISCOUNTS,
            });
        }
        Ok(())
    }

    pub(crate) fn write_account_discounts(&mut self, tenant: TenantId, next: &AccountDiscounts) {
        self.coupons
            .account_discounts
            .insert((tenant, next.account_id), next.clone());
    }
}

#[async_trait]
impl CouponStore for MemoryStore {
    async fn insert_coupon(
        &self,
        tenant: TenantId,
        coupon: &Coupon,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.coupons.coupons.contains_key(&(tenant, coupon.id)) {
            return Err(StoreError::AlreadyExists { entity: "coupon" });
        }
        if s.coupons.codes.contains_key(&(tenant, coupon.code.clone())) {
            return Err(StoreError::Duplicate {
                entity: "coupon",
                field: "code",
            });
        }
        s.coupons
            .codes
            .insert((tenant, coupon.code.clone()), coupon.id);
        s.coupons
            .coupons
            .insert((tenant, coupon.id), coupon.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn save_coupon(
        &self,
        tenant: TenantId,
        previous: &Coupon,
        next: &Coupon,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        match s.coupons.coupons.get(&(tenant, next.id)) {
            Some(stored)
                if stored.version == previous.version
                    && stored.times_redeemed == previous.times_redeemed => {}
            _ => return Err(StoreError::VersionConflict { entity: "coupon" }),
        }
        s.coupons.coupons.insert((tenant, next.id), next.clone());
        s.record(tenant, change);
        Ok(())
    }

    async fn get_coupon(
        &self,
        tenant: TenantId,
        id: CouponId,
    ) -> Result<Option<Coupon>, StoreError> {
        Ok(self.state().coupons.coupons.get(&(tenant, id)).cloned())
    }

    async fn get_coupon_by_code(
        &self,
        tenant: TenantId,
        code: &str,
    ) -> Result<Option<Coupon>, StoreError> {
        let s = self.state();
        Ok(s.coupons
            .codes
            .get(&(tenant, code.to_owned()))
            .and_then(|id| s.coupons.coupons.get(&(tenant, *id)))
            .cloned())
    }

    async fn list_coupons(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Coupon>, StoreError> {
        let s = self.state();
        let items = s
            .coupons
            .coupons
            .range((tenant, CouponId::from_ulid(ulid::Ulid::nil()))..)
            .take_while(|((t, _), _)| *t == tenant)
            .map(|((_, id), c)| (id.to_string(), c.clone()));
        Ok(paginate(items, page, |_| true))
    }
}

#[async_trait]
impl RedemptionStore for MemoryStore {
    async fn redeem_coupon(
        &self,
        tenant: TenantId,
        coupon: &Coupon,
        target: RedemptionTarget<'_>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let slot_free = s
            .coupons
            .coupons
            .get(&(tenant, coupon.id))
            .is_some_and(|stored| {
                !stored.deleted
                    && coupon
                        .max_redemptions
                        .is_none_or(|max| stored.times_redeemed < max)
            });
        if !slot_free {
            return Err(StoreError::VersionConflict { entity: "coupon" });
        }
        // Each write checks all its conditions before it changes anything.
        match target {
            RedemptionTarget::Account(next) => {
                s.check_account_discounts(tenant, next)?;
                s.write_account_discounts(tenant, next);
                s.record(tenant, change);
            }
            RedemptionTarget::NewSubscription {
                subscription,
                invoice,
            } => s.insert_subscription(tenant, subscription, invoice, change)?,
            RedemptionTarget::Subscription { previous, next } => {
                s.save_subscription(tenant, previous, next, None, change)?
            }
        }
        if let Some(stored) = s.coupons.coupons.get_mut(&(tenant, coupon.id)) {
            stored.times_redeemed += 1;
        }
        Ok(())
    }
}

#[async_trait]
impl AccountDiscountStore for MemoryStore {
    async fn get_account_discounts(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<AccountDiscounts>, StoreError> {
        Ok(self
            .state()
            .coupons
            .account_discounts
            .get(&(tenant, account))
            .cloned())
    }

    async fn save_account_discounts(
        &self,
        tenant: TenantId,
        next: &AccountDiscounts,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        s.check_account_discounts(tenant, next)?;
        s.write_account_discounts(tenant, next);
        s.record(tenant, change);
        Ok(())
    }
}
