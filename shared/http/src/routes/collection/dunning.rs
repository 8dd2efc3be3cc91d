//! Dunning: the tenant's policy and an account's case.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::App;
use billing_domain::collection::dunning::{BlockEffects, DunningCase, DunningPolicy, DunningStep};
use billing_domain::kernel::ids::AccountId;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::extract::{path_id, ApiJson, ApiPath, Auth, Reply};
use crate::problem::{ApiResult, ProblemDocument};

crate::routes::handlers!(get_settings, update_settings, get_case);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"steps": [
    {"after_days": 1, "action": "reminder"},
    {"after_days": 5, "action": "warning"},
    {"after_days": 10, "action": "block"}
]}))]
pub struct DunningSettingsRequest {
    /// Days after the oldest unpaid invoice's first failed payment, strictly increasing;
    /// a `block` only last; at most 10. `[]` turns dunning off for new cases.
    pub steps: Vec<DunningStep>,
    /// What a block does besides refusing new subscriptions and plan changes: entitlement
    /// checks denied (`deny_entitlements`, default true), renewals suspended until the
    /// account is unblocked (`suspend_subscriptions`, default false). Omitted: unchanged.
    #[serde(default)]
    pub on_block: Option<BlockEffects>,
}

/// The tenant's dunning policy: by default a reminder on day 3, a warning on day 7
/// (account `warning`) and a block on day 14 (account `blocked`).
#[utoipa::path(get, path = "/v1/settings/dunning", operation_id = "get_dunning_settings", tag = "dunning", security(("api_key" = ["read"])), responses((status = 200, body = DunningPolicy)))]
pub async fn get_settings(
    State(app): State<App>,
    Auth(caller): Auth,
) -> ApiResult<Reply<DunningPolicy>> {
    Ok(Reply(
        StatusCode::OK,
        app.collection.dunning_policy(&caller).await?,
    ))
}

/// Replaces the tenant's dunning policy. Cases already running keep the policy they opened
/// with; the new one applies to cases opened from now on.
#[utoipa::path(patch, path = "/v1/settings/dunning", operation_id = "update_dunning_settings", tag = "dunning", security(("api_key" = ["write_billing"])), request_body = DunningSettingsRequest,
    responses((status = 200, body = DunningPolicy), (status = 400, body = ProblemDocument)))]
pub async fn update_settings(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<DunningSettingsRequest>,
) -> ApiResult<Reply<DunningPolicy>> {
    Ok(Reply(
        StatusCode::OK,
        app.collection
            .set_dunning_policy(&caller, req.steps, req.on_block)
            .await?,
    ))
}

/// The account's latest dunning case: its overdue invoices, the steps taken and the next.
#[utoipa::path(get, path = "/v1/accounts/{id}/dunning", tag = "dunning", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "`acct_…`")),
    responses((status = 200, body = DunningCase), (status = 404, body = ProblemDocument)))]
pub async fn get_case(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<DunningCase>> {
    let id = path_id(&id, "account", AccountId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.collection.get_dunning_case(&caller, id).await?,
    ))
}
