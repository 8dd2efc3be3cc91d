//! Coupons, their code claims, and redemptions: the coupon's counter moves in the same
//! transaction as the subscription that gets the discount.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::*;
use billing_domain::coupons::account::AccountDiscounts;
use billing_domain::coupons::coupon::Coupon;
use billing_domain::kernel::ids::{AccountId, CouponId, TenantId};

use super::{claim_item, to_item, DynamoStore, Transaction};
use crate::keys;

fn coupon_item(tenant: TenantId, coupon: &Coupon) -> Result<super::Item, StoreError> {
    to_item("coupon", coupon, &keys::coupon(tenant, coupon.id))
}

#[async_trait]
impl CouponStore for DynamoStore {
    async fn insert_coupon(
        &self,
        tenant: TenantId,
        coupon: &Coupon,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            coupon_item(tenant, coupon)?,
            StoreError::AlreadyExists { entity: "coupon" },
        )?
        .create(
            claim_item(
                &keys::coupon_code(tenant, &coupon.code),
                &coupon.id.to_string(),
            ),
            StoreError::Duplicate {
                entity: "coupon",
                field: "code",
            },
        )?
        .record(tenant, change)?;
        tx.commit().await
    }

    async fn save_coupon(
        &self,
        tenant: TenantId,
        previous: &Coupon,
        next: &Coupon,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        // The whole item is written, counter included: only over the count it was read with.
        tx.put(
            coupon_item(tenant, next)?,
            "version = :expected AND times_redeemed = :count",
            Some(HashMap::from([
                (
                    ":expected".to_owned(),
                    AttributeValue::N(previous.version.to_string()),
                ),
                (
                    ":count".to_owned(),
                    AttributeValue::N(previous.times_redeemed.to_string()),
                ),
            ])),
            StoreError::VersionConflict { entity: "coupon" },
        )?
        .record(tenant, change)?;
        tx.commit().await
    }

    async fn get_coupon(
        &self,
        tenant: TenantId,
        id: CouponId,
    ) -> Result<Option<Coupon>, StoreError> {
        self.get(&keys::coupon(tenant, id)).await
    }

    async fn get_coupon_by_code(
        &self,
        tenant: TenantId,
        code: &str,
    ) -> Result<Option<Coupon>, StoreError> {
        let owner = self.claim_owner(&keys::coupon_code(tenant, code)).await?;
        match owner.and_then(|id| CouponId::parse(&id, "owner_id").ok()) {
            Some(id) => self.get_coupon(tenant, id).await,
            None => Ok(None),
        }
    }

    async fn list_coupons(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<Coupon>, StoreError> {
        let start = page
            .starting_after
            .as_deref()
            .and_then(|id| CouponId::parse(id, "starting_after").ok())
            .map(|id| keys::coupon(tenant, id).primary());
        let query = self.query_partition(keys::tenant_partition(tenant), keys::COUPON_PREFIX);
        self.query_page(query, start, page.limit).await
    }
}

#[async_trait]
impl RedemptionStore for DynamoStore {
    async fn redeem_coupon(
        &self,
        tenant: TenantId,
        coupon: &Coupon,
        target: RedemptionTarget<'_>,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        match target {
            RedemptionTarget::NewSubscription {
                subscription,
                invoice,
            } => tx.new_subscription(tenant, subscription, invoice, change)?,
            RedemptionTarget::Subscription { previous, next } => {
                tx.subscription_step(tenant, previous, next, None, change)?
            }
            RedemptionTarget::Account(next) => tx
                .account_discounts(tenant, Some(next))?
                .record(tenant, change)?,
        };
        let mut values = HashMap::from([
            (":one".to_owned(), AttributeValue::N("1".into())),
            (":no".to_owned(), AttributeValue::Bool(false)),
        ]);
        // `max_redemptions` is fixed at creation, so the one read is the one stored.
        let condition = match coupon.max_redemptions {
            Some(max) => {
                values.insert(":max".to_owned(), AttributeValue::N(max.to_string()));
                "deleted = :no AND times_redeemed < :max"
            }
            None => "deleted = :no",
        };
        tx.update(
            &keys::coupon(tenant, coupon.id),
            "SET times_redeemed = times_redeemed + :one",
            Some(condition),
            values,
            StoreError::VersionConflict { entity: "coupon" },
        )?;
        tx.commit().await
    }
}

impl Transaction<'_> {
    /// An account's discounts over the version before `next` (created at version 1).
    pub(super) fn account_discounts(
        &mut self,
        tenant: TenantId,
        next: Option<&AccountDiscounts>,
    ) -> Result<&mut Self, StoreError> {
        let Some(next) = next else {
            return Ok(self);
        };
        let item = to_item(
            "account_discounts",
            next,
            &keys::account_discounts(tenant, next.account_id),
        )?;
        if next.version == 1 {
            self.create(
                item,
                StoreError::VersionConflict {
                    entity: ACCOUNT_DISCOUNTS,
                },
            )
        } else {
            self.replace_version(item, next.version - 1, ACCOUNT_DISCOUNTS)
        }
    }
}

#[async_trait]
impl AccountDiscountStore for DynamoStore {
    async fn get_account_discounts(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<AccountDiscounts>, StoreError> {
        self.get(&keys::account_discounts(tenant, account)).await
    }

    async fn save_account_discounts(
        &self,
        tenant: TenantId,
        next: &AccountDiscounts,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.account_discounts(tenant, Some(next))?
            .record(tenant, change)?;
        tx.commit().await
    }
}
