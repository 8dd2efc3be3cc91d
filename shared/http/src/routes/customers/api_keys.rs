use axum::extract::State;
use axum::http::StatusCode;
use billing_app::App;
use billing_domain::customers::access::{ApiKey, Role};
use billing_domain::kernel::ids::ApiKeyId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, ApiJson, ApiPath, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, ProblemDocument};

crate::routes::handlers!(create, list, revoke);

/// An API key as the API shows it: never the secret, never its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub object: &'static str,
    pub role: Role,
    pub name: Option<String>,
    pub livemode: bool,
    /// `sk_test_…abcd`
    pub masked: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<jiff::Timestamp>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id.to_string(),
            object: "api_key",
            masked: key.masked(),
            role: key.role,
            name: key.name,
            livemode: key.livemode,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A new key with its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedKeyView {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The full key. Store it now: it cannot be retrieved again.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "finance_viewer", "name": "month-end reporting"}))]
pub struct NewApiKey {
    pub role: Role,
    pub name: Option<String>,
}

/// Creates an API key (admin only). The response is the only time the secret is shown.
#[utoipa::path(post, path = "/v1/api-keys", operation_id = "create_api_key", tag = "api-keys", security(("api_key" = ["manage_api_keys"])), request_body = NewApiKey,
    responses((status = 201, body = IssuedKeyView), (status = 400, body = ProblemDocument), (status = 403, body = ProblemDocument)))]
pub async fn create(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<NewApiKey>,
) -> ApiResult<Reply<IssuedKeyView>> {
    let issued = app
        .customers
        .create_api_key(&caller, input.role, input.name.as_deref())
        .await?;
    Ok(Reply(
        StatusCode::CREATED,
        IssuedKeyView {
            key: issued.key.into(),
            secret: issued.secret,
        },
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    limit: Option<i64>,
    starting_after: Option<String>,
}

/// Lists the tenant's API keys, masked.
#[utoipa::path(get, path = "/v1/api-keys", operation_id = "list_api_keys", tag = "api-keys", security(("api_key" = ["manage_api_keys"])), params(ListQuery),
    responses((status = 200, body = inline(List<ApiKeyView>)), (status = 403, body = ProblemDocument)))]
pub async fn list(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Reply<List<ApiKeyView>>> {
    let page = page_request(query.limit, query.starting_after)?;
    let keys = app.customers.list_api_keys(&caller, &page).await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(keys, |k| k.id.to_string(), ApiKeyView::from),
    ))
}

/// Revokes an API key: requests with it get 401 at once from the instance that revoked it,
/// and from every instance within 60 seconds (how long an instance trusts a key it has read).
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", security(("api_key" = ["manage_api_keys"])),
    params(("id" = String, Path, description = "API key id, `key_…`")),
    responses((status = 200, body = ApiKeyView), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn revoke(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<ApiKeyView>> {
    let id = path_id(&id, "api key", ApiKeyId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.customers.revoke_api_key(&caller, id).await?.into(),
    ))
}
