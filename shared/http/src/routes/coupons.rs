//! Coupons, and discounts on subscriptions and accounts: redeeming a coupon onto either and
//! taking a discount off.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::coupons::CouponRef;
use billing_app::App;
use billing_domain::billing::subscription::Subscription;
use billing_domain::coupons::account::AccountDiscounts;
use billing_domain::coupons::coupon::{Coupon, CouponPatch, NewCoupon};
use billing_domain::kernel::ids::{AccountId, CouponId, DiscountId, SubscriptionId};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::extract::{path_id, ApiJson, ApiPath, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, ProblemDocument};
use crate::routes::catalog::PageQuery;

crate::routes::handlers!(
    create_coupon,
    list_coupons,
    get_coupon,
    update_coupon,
    delete_coupon,
    redeem_coupon,
    delete_discount,
    redeem_account_coupon,
    list_account_discounts,
    delete_account_discount,
);

fn coupon_id(raw: &str) -> Result<CouponId, crate::problem::Problem> {
    path_id(raw, "coupon", CouponId::parse)
}

/// Creates a coupon: `percent_off` or `amount_off` (per currency), for `once`, `repeating`
/// (`duration_in_periods` period invoices) or `forever`.
#[utoipa::path(post, path = "/v1/coupons", tag = "coupons", security(("api_key" = ["write_billing"])), request_body = NewCoupon,
    responses((status = 201, body = Coupon), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn create_coupon(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<NewCoupon>,
) -> ApiResult<Reply<Coupon>> {
    Ok(Reply(
        StatusCode::CREATED,
        app.coupons.create_coupon(&caller, input).await?,
    ))
}

/// The tenant's coupons, oldest first (deleted ones included, marked `deleted`).
#[utoipa::path(get, path = "/v1/coupons", tag = "coupons", security(("api_key" = ["read"])), params(PageQuery),
    responses((status = 200, body = inline(List<Coupon>)), (status = 400, body = ProblemDocument)))]
pub async fn list_coupons(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<List<Coupon>>> {
    let page = page_request(q.limit, q.starting_after)?;
    let coupons = app.coupons.list_coupons(&caller, &page).await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(coupons, |c| c.id.to_string(), |c| c),
    ))
}

#[utoipa::path(get, path = "/v1/coupons/{id}", tag = "coupons", security(("api_key" = ["read"])), params(("id" = String, Path, description = "`coupon_…`")),
    responses((status = 200, body = Coupon), (status = 404, body = ProblemDocument)))]
pub async fn get_coupon(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<Coupon>> {
    Ok(Reply(
        StatusCode::OK,
        app.coupons.get_coupon(&caller, coupon_id(&id)?).await?,
    ))
}

/// Renames a coupon or replaces its metadata; its terms are fixed.
#[utoipa::path(patch, path = "/v1/coupons/{id}", tag = "coupons", security(("api_key" = ["write_billing"])), request_body = CouponPatch,
    params(("id" = String, Path, description = "`coupon_…`")),
    responses((status = 200, body = Coupon), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn update_coupon(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<CouponPatch>,
) -> ApiResult<Reply<Coupon>> {
    Ok(Reply(
        StatusCode::OK,
        app.coupons
            .update_coupon(&caller, coupon_id(&id)?, patch)
            .await?,
    ))
}

/// Deletes a coupon: it takes no new redemptions; discounts already made run their course.
#[utoipa::path(delete, path = "/v1/coupons/{id}", tag = "coupons", security(("api_key" = ["write_billing"])),
    params(("id" = String, Path, description = "`coupon_…`")),
    responses((status = 200, body = Coupon), (status = 404, body = ProblemDocument)))]
pub async fn delete_coupon(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<Coupon>> {
    Ok(Reply(
        StatusCode::OK,
        app.coupons.delete_coupon(&caller, coupon_id(&id)?).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"coupon": "LAUNCH20"}))]
pub struct RedeemRequest {
    /// The coupon's code, or its `coupon_…` id.
    pub coupon: String,
}

/// Redeems a coupon onto a subscription: its next period invoices take the discount (one
/// of the coupon's `max_redemptions` is used, exactly once).
#[utoipa::path(post, path = "/v1/subscriptions/{id}/discounts", tag = "coupons", security(("api_key" = ["write_billing"])), request_body = RedeemRequest,
    params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn redeem_coupon(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RedeemRequest>,
) -> ApiResult<Reply<Subscription>> {
    let id = path_id(&id, "subscription", SubscriptionId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.coupons
            .redeem_on_subscription(&caller, id, &CouponRef::parse(&req.coupon))
            .await?,
    ))
}

/// Takes a discount off a subscription before it ends.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}/discounts/{discount}", tag = "coupons", security(("api_key" = ["write_billing"])),
    params(("id" = String, Path, description = "`sub_…`"), ("discount" = String, Path, description = "`di_…`")),
    responses((status = 200, body = Subscription), (status = 404, body = ProblemDocument)))]
pub async fn delete_discount(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath((id, discount)): ApiPath<(String, String)>,
) -> ApiResult<Reply<Subscription>> {
    let id = path_id(&id, "subscription", SubscriptionId::parse)?;
    let discount = path_id(&discount, "discount", DiscountId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.coupons.remove_discount(&caller, id, discount).await?,
    ))
}

/// Redeems a coupon onto an account: the period invoices of all its subscriptions take the
/// discount, except those whose subscription carries a discount of its own (which wins, as
/// in Stripe). `once` is taken by one invoice; `repeating` runs `duration_in_periods` months
/// from now (`end`). One of the coupon's `max_redemptions` is used, exactly once.
#[utoipa::path(post, path = "/v1/accounts/{id}/discounts", tag = "coupons", security(("api_key" = ["write_billing"])), request_body = RedeemRequest,
    params(("id" = String, Path, description = "`acct_…`")),
    responses((status = 200, body = AccountDiscounts), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn redeem_account_coupon(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RedeemRequest>,
) -> ApiResult<Reply<AccountDiscounts>> {
    let id = path_id(&id, "account", AccountId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.coupons
            .redeem_on_account(&caller, id, &CouponRef::parse(&req.coupon))
            .await?,
    ))
}

/// The discounts on an account, in redemption order (a `repeating` one whose `end` has
/// passed no longer applies).
#[utoipa::path(get, path = "/v1/accounts/{id}/discounts", tag = "coupons", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "`acct_…`")),
    responses((status = 200, body = AccountDiscounts), (status = 404, body = ProblemDocument)))]
pub async fn list_account_discounts(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<AccountDiscounts>> {
    let id = path_id(&id, "account", AccountId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.coupons.account_discounts(&caller, id).await?,
    ))
}

/// Takes a discount off an account before it ends; its redemption stays counted.
#[utoipa::path(delete, path = "/v1/accounts/{id}/discounts/{discount}", tag = "coupons", security(("api_key" = ["write_billing"])),
    params(("id" = String, Path, description = "`acct_…`"), ("discount" = String, Path, description = "`di_…`")),
    responses((status = 200, body = AccountDiscounts), (status = 404, body = ProblemDocument)))]
pub async fn delete_account_discount(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath((id, discount)): ApiPath<(String, String)>,
) -> ApiResult<Reply<AccountDiscounts>> {
    let id = path_id(&id, "account", AccountId::parse)?;
    let discount = path_id(&discount, "discount", DiscountId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.coupons
            .remove_account_discount(&caller, id, discount)
            .await?,
    ))
}
