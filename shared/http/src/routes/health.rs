use axum::extract::State;
use axum::Json;
use billing_app::App;
use serde_json::{json, Value};

use crate::problem::{ApiResult, Problem, ProblemDocument};
use billing_domain::kernel::error::ErrorCode;

crate::routes::handlers!(live, ready);

/// Liveness: answers without touching any dependency.
#[utoipa::path(get, path = "/health", tag = "health", security(()), responses((status = 200, description = "The process is up")))]
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the table can be read.
#[utoipa::path(get, path = "/health/ready", tag = "health", security(()),
    responses((status = 200, description = "Dependencies reachable"), (status = 503, body = ProblemDocument)))]
pub async fn ready(State(app): State<App>) -> ApiResult<Json<Value>> {
    app.store.ready().await.map_err(|err| {
        tracing::warn!(error = %err, "readiness check failed");
        Problem::new(ErrorCode::NotReady, "the table is not reachable")
    })?;
    Ok(Json(json!({"status": "ready"})))
}
