//! Sandbox test clocks: move time and watch billing happen.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::App;
use billing_domain::billing::test_clock::TestClock;
use billing_domain::kernel::ids::TestClockId;
use jiff::Timestamp;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::extract::{path_id, ApiJson, ApiPath, Auth, Reply};
use crate::problem::{ApiResult, Problem, ProblemDocument};

crate::routes::handlers!(create_test_clock, get_test_clock, advance_test_clock);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"frozen_time": "2027-01-31T00:00:00Z", "name": "annual renewal check"}))]
pub struct NewTestClock {
    #[schema(value_type = String, format = DateTime)]
    pub frozen_time: Timestamp,
    pub name: Option<String>,
}

/// Creates a test clock (sandbox only). Accounts created with `test_clock` live on it.
#[utoipa::path(post, path = "/v1/test-clocks", tag = "test-clocks", security(("api_key" = ["write_billing"])), request_body = NewTestClock,
    responses((status = 201, body = TestClock), (status = 403, body = ProblemDocument)))]
pub async fn create_test_clock(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<NewTestClock>,
) -> ApiResult<Reply<TestClock>> {
    Ok(Reply(
        StatusCode::CREATED,
        app.billing
            .create_test_clock(&caller, req.name, req.frozen_time)
            .await?,
    ))
}

fn clock_id(raw: &str) -> Result<TestClockId, Problem> {
    path_id(raw, "test clock", TestClockId::parse)
}

#[utoipa::path(get, path = "/v1/test-clocks/{id}", tag = "test-clocks", security(("api_key" = ["read"])), params(("id" = String, Path, description = "`clock_…`")),
    responses((status = 200, body = TestClock), (status = 404, body = ProblemDocument)))]
pub async fn get_test_clock(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<TestClock>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing.get_test_clock(&caller, clock_id(&id)?).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceRequest {
    #[schema(value_type = String, format = DateTime)]
    pub frozen_time: Timestamp,
}

/// Moves the clock forward, running what falls due up to the new time through the normal
/// billing path, earliest first. One request runs at most 20 items (subscription steps,
/// payment attempts, dunning steps); the answer is the clock: `ready` when that was all,
/// else `advancing`, and the billing sweep finishes the rest (100 items per worker run):
/// poll `GET /v1/test-clocks/{id}` until it is `ready`.
#[utoipa::path(post, path = "/v1/test-clocks/{id}/advance", tag = "test-clocks", security(("api_key" = ["write_billing"])), request_body = AdvanceRequest,
    params(("id" = String, Path, description = "`clock_…`")),
    responses((status = 200, body = TestClock), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn advance_test_clock(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AdvanceRequest>,
) -> ApiResult<Reply<TestClock>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .advance_test_clock(&caller, clock_id(&id)?, req.frozen_time)
            .await?,
    ))
}
