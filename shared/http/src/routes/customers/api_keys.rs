use axum::extract::State;
use axum::http::StatusCode;
use billing_app::customers::IssuedKey;
use billing_app::App;
use billing_domain::customers::access::{ApiKey, NewApiKey, Role};
use billing_domain::kernel::ids::ApiKeyId;
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, ApiJson, ApiPath, ApiQuery, Auth, OptionalJson, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, ProblemDocument};
use crate::routes::events::webhooks::RotateSecret;

crate::routes::handlers!(create, list, revoke, roll);

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
    /// When the key stops working (set at creation, or the end of a roll's overlap).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<jiff::Timestamp>,
    /// When the key was last used, to the minute.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<jiff::Timestamp>,
    /// The key's own hourly limit; `null`: the tenant's per-key limit applies.
    pub rate_limit_per_hour: Option<u32>,
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
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
            rate_limit_per_hour: key.rate_limit_per_hour,
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

/// Creates an API key (admin only), optionally with an `expires_at` and its own
/// `rate_limit_per_hour`. The response is the only time the secret is shown.
#[utoipa::path(post, path = "/v1/api-keys", operation_id = "create_api_key", tag = "api-keys", security(("api_key" = ["manage_api_keys"])), request_body = NewApiKey,
    responses((status = 201, body = IssuedKeyView), (status = 400, body = ProblemDocument), (status = 403, body = ProblemDocument)))]
pub async fn create(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<NewApiKey>,
) -> ApiResult<Reply<IssuedKeyView>> {
    let issued = app.customers.create_api_key(&caller, &input).await?;
    Ok(Reply(StatusCode::CREATED, issued.into()))
}

impl From<IssuedKey> for IssuedKeyView {
    fn from(issued: IssuedKey) -> Self {
        Self {
            key: issued.key.into(),
            secret: issued.secret,
        }
    }
}

/// A rolled key: its successor, whose secret is shown this once, and the old key, which
/// works until its `expires_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolledKeyView {
    #[serde(flatten)]
    pub successor: IssuedKeyView,
    pub rolled: ApiKeyView,
}

/// Rolls a key: a new key with the same role, name and limit now (its secret shown once);
/// the old one keeps working for `expires_in_seconds` (default 86400, at most 604800; 0 ends
/// it now), then answers 401 `api_key_expired`. The body is optional.
#[utoipa::path(post, path = "/v1/api-keys/{id}/roll", operation_id = "roll_api_key", tag = "api-keys", security(("api_key" = ["manage_api_keys"])), request_body(content = Option<RotateSecret>),
    params(("id" = String, Path, description = "API key id, `key_…`")),
    responses((status = 201, body = RolledKeyView), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn roll(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    OptionalJson(request): OptionalJson<RotateSecret>,
) -> ApiResult<Reply<RolledKeyView>> {
    let id = path_id(&id, "api key", ApiKeyId::parse)?;
    let overlap = request.expires_in_seconds.map(SignedDuration::from_secs);
    let (successor, rolled) = app.customers.roll_api_key(&caller, id, overlap).await?;
    Ok(Reply(
        StatusCode::CREATED,
        RolledKeyView {
            successor: successor.into(),
            rolled: rolled.into(),
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
