//! The tenant's rate limits (`/v1/settings/limits`); a key's own limit is set when it is
//! created (`rate_limit_per_hour`).

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::App;
use billing_domain::customers::limits::{LimitSettings, LimitSettingsPatch};

use crate::extract::{ApiJson, Auth, Reply};
use crate::problem::{ApiResult, ProblemDocument};

crate::routes::handlers!(get_limits, update_limits);

/// The tenant's rate limits: requests an hour per key (1000 unless set), a per-second
/// burst per key (on each API instance), and an optional hourly ceiling for the tenant.
#[utoipa::path(get, path = "/v1/settings/limits", operation_id = "get_limit_settings", tag = "api-keys", security(("api_key" = ["read"])), responses((status = 200, body = LimitSettings)))]
pub async fn get_limits(
    State(app): State<App>,
    Auth(caller): Auth,
) -> ApiResult<Reply<LimitSettings>> {
    Ok(Reply(
        StatusCode::OK,
        app.customers.limit_settings(&caller).await?,
    ))
}

/// Changes the tenant's rate limits: at once on the instance that answers, within 60 s on
/// the others. Each limit is 1 to 100,000,000; `"tenant_per_hour": null` removes the ceiling.
#[utoipa::path(patch, path = "/v1/settings/limits", operation_id = "update_limit_settings", tag = "api-keys", security(("api_key" = ["manage_api_keys"])), request_body = LimitSettingsPatch,
    responses((status = 200, body = LimitSettings), (status = 400, body = ProblemDocument), (status = 403, body = ProblemDocument)))]
pub async fn update_limits(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(patch): ApiJson<LimitSettingsPatch>,
) -> ApiResult<Reply<LimitSettings>> {
    Ok(Reply(
        StatusCode::OK,
        app.customers.update_limit_settings(&caller, patch).await?,
    ))
}
