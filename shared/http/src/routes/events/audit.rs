use axum::extract::State;
use axum::http::StatusCode;
use billing_app::App;
use billing_domain::events::record::AuditRecord;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::extract::{key_text, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, ProblemDocument};

crate::routes::handlers!(list);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only the records of this entity (`acct_…`, `key_…`).
    entity_id: Option<String>,
    limit: Option<i64>,
    starting_after: Option<String>,
}

/// The audit log, newest first: who changed what, when, and the before/after of each field.
#[utoipa::path(get, path = "/v1/audit-log", operation_id = "list_audit_log", tag = "audit", security(("api_key" = ["read"])), params(AuditQuery),
    responses((status = 200, body = inline(List<AuditRecord>)), (status = 400, body = ProblemDocument)))]
pub async fn list(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Reply<List<AuditRecord>>> {
    let page = page_request(query.limit, query.starting_after)?;
    let entity_id = key_text(query.entity_id, "entity_id")?;
    let records = app
        .events
        .list_audit_log(&caller, entity_id.as_deref(), &page)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(records, |r| r.id.to_string(), |r| r),
    ))
}
