//! Usage: ingest events, read a subscription's usage, check entitlements.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::usage::{EntitlementCheck, SubscriptionUsage};
use billing_app::App;
use billing_domain::kernel::decimal::parse_decimal;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::SubscriptionId;
use billing_domain::usage::meter::{UsageEventInput, UsageOutcome, UsageStatus};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, timestamp, ApiJson, ApiPath, ApiQuery, Auth, Reply};
use crate::problem::{ApiResult, Problem, ProblemDocument};

crate::routes::handlers!(record, record_batch, subscription_usage, check);

/// Records one usage event. Accepted: 202; a transaction id seen before: 200 with
/// `status: duplicate` (nothing counted again); refused: problem+json naming the field.
/// A cancelled subscription refuses the next event at once; an `external_account_id` whose
/// account gained a second live subscription is found ambiguous within 60 seconds.
#[utoipa::path(post, path = "/v1/usage", tag = "usage", security(("api_key" = ["write_billing"])), request_body = UsageEventInput,
    responses((status = 202, body = UsageOutcome), (status = 200, body = UsageOutcome), (status = 400, body = ProblemDocument)))]
pub async fn record(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<UsageEventInput>,
) -> ApiResult<Reply<UsageOutcome>> {
    let outcome = app.usage.record_usage_event(&caller, input).await?;
    let status = match outcome.status {
        UsageStatus::Accepted => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    Ok(Reply(status, outcome))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageBatch {
    /// 1 to 100 events.
    pub events: Vec<UsageEventInput>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageBatchResult {
    /// One per event, in the order sent.
    pub results: Vec<UsageOutcome>,
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
}

/// Records up to 100 events. Each is accepted, a duplicate, or rejected with its reason;
/// an event is written whole or not at all, and the others go on without a rejected one.
#[utoipa::path(post, path = "/v1/usage/batch", tag = "usage", security(("api_key" = ["write_billing"])), request_body = UsageBatch,
    responses((status = 200, body = UsageBatchResult), (status = 400, body = ProblemDocument)))]
pub async fn record_batch(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(batch): ApiJson<UsageBatch>,
) -> ApiResult<Reply<UsageBatchResult>> {
    let results = app.usage.record_usage(&caller, batch.events).await?;
    let count = |s: UsageStatus| results.iter().filter(|r| r.status == s).count();
    Ok(Reply(
        StatusCode::OK,
        UsageBatchResult {
            accepted: count(UsageStatus::Accepted),
            duplicates: count(UsageStatus::Duplicate),
            rejected: count(UsageStatus::Rejected),
            results,
        },
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// With `to`: every period starting in `[from, to)`; without both, the current period.
    from: Option<String>,
    to: Option<String>,
}

/// A subscription's usage: per metric the aggregate and the amount so far with its
/// derivation, and for the current period the invoice its end would produce.
#[utoipa::path(get, path = "/v1/subscriptions/{id}/usage", tag = "usage", security(("api_key" = ["read"])), params(("id" = String, Path, description = "`sub_…`"), UsageQuery),
    responses((status = 200, body = SubscriptionUsage), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn subscription_usage(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> ApiResult<Reply<SubscriptionUsage>> {
    let id = path_id(&id, "subscription", SubscriptionId::parse)?;
    let range = match (
        timestamp(q.from.as_deref(), "from")?,
        timestamp(q.to.as_deref(), "to")?,
    ) {
        (Some(from), Some(to)) => Some((from, to)),
        (None, None) => None,
        _ => {
            return Err(Problem::invalid(
                ErrorCode::InvalidRange,
                "to",
                "give both `from` and `to`, or neither for the current period",
            ))
        }
    };
    let usage = app.usage.subscription_usage(&caller, id, range).await?;
    Ok(Reply(StatusCode::OK, usage))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    /// `acct_…` or the account's `external_id`.
    account: String,
    /// The metric's code.
    metric: String,
    /// Units about to be used (default 1).
    quantity: Option<String>,
}

/// May the account use the metric now? `allowed` and `remaining` in the current period,
/// from one read in the common case, so your API can enforce quotas on every request.
#[utoipa::path(get, path = "/v1/entitlements/check", tag = "usage", security(("api_key" = ["read"])), params(CheckQuery),
    responses((status = 200, body = EntitlementCheck), (status = 400, body = ProblemDocument)))]
pub async fn check(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<CheckQuery>,
) -> ApiResult<Reply<EntitlementCheck>> {
    let quantity = match q.quantity.as_deref() {
        None => Decimal::ONE,
        Some(raw) => parse_decimal(raw, 12)
            .map_err(|e| Problem::invalid(ErrorCode::InvalidQuantity, "quantity", e.to_string()))?,
    };
    let answer = app
        .usage
        .check_entitlement(&caller, &q.account, &q.metric, quantity)
        .await?;
    Ok(Reply(StatusCode::OK, answer))
}
