//! Subscriptions: start, change, pause, cancel, and their history.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::billing::{CreditCapInput, ProrationBehavior, StartSubscription};
use billing_app::coupons::CouponRef;
use billing_app::ports::SubscriptionFilter;
use billing_app::App;
use billing_domain::billing::proration::ChangePolicy;
use billing_domain::billing::subscription::{CollectionMethod, Subscription, SubscriptionStatus};
use billing_domain::events::record::AuditRecord;
use billing_domain::kernel::ids::{AccountId, PlanId, SubscriptionId};
use billing_domain::kernel::metadata::Metadata;
use jiff::Timestamp;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, ApiJson, ApiPath, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, Problem, ProblemDocument};

crate::routes::handlers!(
    create_subscription,
    list_subscriptions,
    get_subscription,
    update_subscription,
    cancel_subscription,
    reactivate_subscription,
    pause_subscription,
    resume_subscription,
    retry_billing,
    change_plan,
    cancel_scheduled_change,
    history
);

fn sub_id(raw: &str) -> Result<SubscriptionId, Problem> {
    path_id(raw, "subscription", SubscriptionId::parse)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"account": "acct_01JD3X7M2Q8Z5V6W9Y0A1B2C3E", "plan": "plan_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "quantity": 3}))]
pub struct NewSubscriptionRequest {
    /// `acct_…`; the subscription bills in the account's currency and time zone.
    pub account: String,
    /// `plan_…`; the version in effect at the start applies.
    pub plan: String,
    #[serde(default = "one")]
    pub quantity: u64,
    /// Overrides the plan's trial (0 for none).
    pub trial_days: Option<u32>,
    /// Defaults to now (the test clock's now for accounts on one).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start_date: Option<Timestamp>,
    /// Periods begin at this instant; the time before it is a prorated first period.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub billing_anchor: Option<Timestamp>,
    #[serde(default = "charge_automatically")]
    pub collection_method: CollectionMethod,
    /// Required for `send_invoice`.
    pub days_until_due: Option<u32>,
    /// A pause longer than this many days cancels the subscription (default 90).
    pub max_pause_days: Option<u32>,
    #[serde(default)]
    pub metadata: Metadata,
    /// A coupon (its code or `coupon_…` id) to redeem as the subscription starts: the
    /// first invoice already takes the discount.
    pub coupon: Option<String>,
}

fn one() -> u64 {
    1
}

pub(super) fn charge_automatically() -> CollectionMethod {
    CollectionMethod::ChargeAutomatically
}

/// Starts a subscription: a trial when the plan (or `trial_days`) has one, else the first
/// period, billed at once.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "subscriptions", security(("api_key" = ["write_billing"])), request_body = NewSubscriptionRequest,
    responses((status = 201, body = Subscription), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn create_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<NewSubscriptionRequest>,
) -> ApiResult<Reply<Subscription>> {
    let input = StartSubscription {
        account_id: AccountId::parse(&req.account, "account")?,
        plan_id: PlanId::parse(&req.plan, "plan")?,
        quantity: req.quantity,
        trial_days: req.trial_days,
        start: req.start_date,
        billing_anchor: req.billing_anchor,
        collection_method: req.collection_method,
        days_until_due: req.days_until_due,
        max_pause_days: req.max_pause_days,
        metadata: req.metadata,
        coupon: req.coupon.as_deref().map(CouponRef::parse),
    };
    Ok(Reply(
        StatusCode::CREATED,
        app.billing.create_subscription(&caller, input).await?,
    ))
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions", security(("api_key" = ["read"])), params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 404, body = ProblemDocument)))]
pub async fn get_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing.get_subscription(&caller, sub_id(&id)?).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionQuery {
    limit: Option<i64>,
    starting_after: Option<String>,
    account: Option<String>,
    status: Option<SubscriptionStatus>,
    plan: Option<String>,
}

#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions", security(("api_key" = ["read"])), params(SubscriptionQuery),
    responses((status = 200, body = inline(List<Subscription>)), (status = 400, body = ProblemDocument)))]
pub async fn list_subscriptions(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<SubscriptionQuery>,
) -> ApiResult<Reply<List<Subscription>>> {
    let page = page_request(q.limit, q.starting_after)?;
    let filter = SubscriptionFilter {
        account: q
            .account
            .as_deref()
            .map(|a| AccountId::parse(a, "account"))
            .transpose()?,
        status: q.status,
        plan: q
            .plan
            .as_deref()
            .map(|p| PlanId::parse(p, "plan"))
            .transpose()?,
    };
    let subs = app
        .billing
        .list_subscriptions(&caller, &filter, &page)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(subs, |s| s.id.to_string(), |s| s),
    ))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProrationBehaviorParam {
    /// Prorations wait for the next invoice.
    #[default]
    CreateProrations,
    /// Prorations are invoiced now.
    AlwaysInvoice,
}

impl From<ProrationBehaviorParam> for ProrationBehavior {
    fn from(p: ProrationBehaviorParam) -> Self {
        match p {
            ProrationBehaviorParam::CreateProrations => ProrationBehavior::CreateProrations,
            ProrationBehaviorParam::AlwaysInvoice => ProrationBehavior::AlwaysInvoice,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"quantity": 5, "proration_behavior": "always_invoice"}))]
pub struct SubscriptionPatch {
    /// A new quantity, prorated like a plan change.
    pub quantity: Option<u64>,
    #[serde(default)]
    pub proration_behavior: ProrationBehaviorParam,
    pub metadata: Option<Metadata>,
    /// `true` cancels at the period end; `false` reactivates.
    pub cancel_at_period_end: Option<bool>,
}

#[utoipa::path(patch, path = "/v1/subscriptions/{id}", tag = "subscriptions", security(("api_key" = ["write_billing"])), request_body = SubscriptionPatch,
    params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn update_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<SubscriptionPatch>,
) -> ApiResult<Reply<Subscription>> {
    let id = sub_id(&id)?;
    let mut sub = app.billing.get_subscription(&caller, id).await?;
    if let Some(quantity) = patch.quantity.filter(|q| *q != sub.quantity) {
        sub = app
            .billing
            .change_subscription(
                &caller,
                id,
                None,
                Some(quantity),
                patch.proration_behavior.into(),
                ChangePolicy::default(),
                None,
            )
            .await?;
    }
    if let Some(metadata) = &patch.metadata {
        sub = app
            .billing
            .update_subscription_metadata(&caller, id, metadata)
            .await?;
    }
    match patch.cancel_at_period_end {
        Some(true) if !sub.cancel_at_period_end => {
            sub = app
                .billing
                .cancel_subscription(&caller, id, true, false)
                .await?
        }
        Some(false) if sub.cancel_at_period_end => {
            sub = app.billing.reactivate_subscription(&caller, id).await?
        }
        _ => {}
    }
    Ok(Reply(StatusCode::OK, sub))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"at_period_end": false, "prorate": true}))]
pub struct CancelRequest {
    /// Cancel when the current period ends instead of now.
    #[serde(default)]
    pub at_period_end: bool,
    /// When cancelling now, credit the unused part of the period on a final invoice.
    #[serde(default)]
    pub prorate: bool,
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/cancel", tag = "subscriptions", security(("api_key" = ["write_billing"])), request_body = CancelRequest,
    params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 409, body = ProblemDocument)))]
pub async fn cancel_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<CancelRequest>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .cancel_subscription(&caller, sub_id(&id)?, req.at_period_end, req.prorate)
            .await?,
    ))
}

/// Undoes a cancellation scheduled for the period end.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/reactivate", tag = "subscriptions", security(("api_key" = ["write_billing"])), params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 409, body = ProblemDocument)))]
pub async fn reactivate_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .reactivate_subscription(&caller, sub_id(&id)?)
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Resume automatically at this time.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resumes_at: Option<Timestamp>,
}

/// Pauses: no invoices while paused; at resume a fresh period starts and the unused part of
/// the period paid before the pause is credited.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/pause", tag = "subscriptions", security(("api_key" = ["write_billing"])), request_body = PauseRequest,
    params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 409, body = ProblemDocument)))]
pub async fn pause_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PauseRequest>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .pause_subscription(&caller, sub_id(&id)?, req.resumes_at)
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/resume", tag = "subscriptions", security(("api_key" = ["write_billing"])), params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 409, body = ProblemDocument)))]
pub async fn resume_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .resume_subscription(&caller, sub_id(&id)?)
            .await?,
    ))
}

/// Retries a parked billing (`billing_failure` set, after `subscription.billing_failed`):
/// clears it and runs what is due now. Fix the cause first (move the subscription to a plan
/// that can price its usage, say); if the step still cannot be priced, billing is parked
/// again and the answer shows `billing_failure` anew. 409 `invalid_transition` when billing
/// has not failed.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/retry-billing", tag = "subscriptions", security(("api_key" = ["write_billing"])), params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn retry_billing(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing.retry_billing(&caller, sub_id(&id)?).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"plan": "plan_01JD3X7M2Q8Z5V6W9Y0A1B2C3F", "proration_behavior": "always_invoice"}))]
pub struct ChangePlanRequest {
    pub plan: String,
    pub quantity: Option<u64>,
    #[serde(default)]
    pub proration_behavior: ProrationBehaviorParam,
    /// When an upgrade, a downgrade and a lateral move take effect (`immediate` or
    /// `end_of_period`) and how plans are compared (`annualised_amount`,
    /// `amount_per_period`, `longer_interval_first`). Default: upgrades and lateral moves
    /// now, downgrades at the period end; `{"downgrade": "immediate"}` downgrades now with
    /// the unused time credited.
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({"downgrade": "immediate"}))]
    pub change_policy: ChangePolicy,
    /// Caps the credit for unused time at `paid − already_credited` (minor units, Flexprice)
    /// when the current period was paid outside this platform (a subscription migrated
    /// mid-period). Without it the cap is read from the period's invoices here: their
    /// charges minus their credits and credit notes (refunds), so a refunded period is not
    /// credited again.
    #[schema(example = json!({"paid": 20000, "already_credited": 18000}))]
    pub credit_cap: Option<CreditCapInput>,
}

/// Upgrades apply now with prorations (invoiced now or on the next invoice); downgrades are
/// scheduled for the period end unless the change policy says `immediate`.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/change-plan", tag = "subscriptions", security(("api_key" = ["write_billing"])), request_body = ChangePlanRequest,
    params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn change_plan(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ChangePlanRequest>,
) -> ApiResult<Reply<Subscription>> {
    let plan = PlanId::parse(&req.plan, "plan")?;
    let sub = app
        .billing
        .change_subscription(
            &caller,
            sub_id(&id)?,
            Some(plan),
            req.quantity,
            req.proration_behavior.into(),
            req.change_policy,
            req.credit_cap,
        )
        .await?;
    Ok(Reply(StatusCode::OK, sub))
}

/// Drops a change scheduled for the period end.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}/scheduled-change", tag = "subscriptions", security(("api_key" = ["write_billing"])), params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 409, body = ProblemDocument)))]
pub async fn cancel_scheduled_change(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .cancel_scheduled_change(&caller, sub_id(&id)?)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    limit: Option<i64>,
    starting_after: Option<String>,
}

/// Every state and term change, newest first, with who and when.
#[utoipa::path(get, path = "/v1/subscriptions/{id}/history", tag = "subscriptions", security(("api_key" = ["read"])), params(("id" = String, Path, description = "`sub_…`"), HistoryQuery),
    responses((status = 200, body = inline(List<AuditRecord>)), (status = 404, body = ProblemDocument)))]
pub async fn history(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Reply<List<AuditRecord>>> {
    let id = sub_id(&id)?;
    app.billing.get_subscription(&caller, id).await?;
    let page = page_request(q.limit, q.starting_after)?;
    let records = app
        .events
        .list_audit_log(&caller, Some(&id.to_string()), &page)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(records, |r| r.id.to_string(), |r| r),
    ))
}
