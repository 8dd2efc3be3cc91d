use axum::extract::State;
use axum::http::StatusCode;
use billing_app::ports::AccountFilter;
use billing_app::App;
use billing_domain::customers::account::{Account, AccountPatch, AccountStatus, NewAccount};
use billing_domain::kernel::ids::AccountId;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::extract::{key_text, path_id, ApiJson, ApiPath, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, ProblemDocument};

crate::routes::handlers!(create, list, get, update, delete);

/// Creates a customer account.
#[utoipa::path(post, path = "/v1/accounts", operation_id = "create_account", tag = "accounts", security(("api_key" = ["write_accounts"])), request_body = NewAccount,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and body replay the first response for 24 hours.")),
    responses((status = 201, body = Account), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn create(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<NewAccount>,
) -> ApiResult<Reply<Account>> {
    let account = app.customers.create_account(&caller, input).await?;
    Ok(Reply(StatusCode::CREATED, account))
}

/// Retrieves an account, including a soft-deleted one.
#[utoipa::path(get, path = "/v1/accounts/{id}", operation_id = "get_account", tag = "accounts", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "Account id, `acct_…`")),
    responses((status = 200, body = Account), (status = 404, body = ProblemDocument)))]
pub async fn get(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<Account>> {
    let id = path_id(&id, "account", AccountId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.customers.get_account(&caller, id).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListAccountsQuery {
    /// 1 to 100, default 10.
    limit: Option<i64>,
    /// The last id of the previous page.
    starting_after: Option<String>,
    status: Option<AccountStatus>,
    /// Exact match, case-insensitive.
    email: Option<String>,
    external_id: Option<String>,
}

/// Lists accounts, oldest first; deleted accounts are left out.
#[utoipa::path(get, path = "/v1/accounts", operation_id = "list_accounts", tag = "accounts", security(("api_key" = ["read"])), params(ListAccountsQuery),
    responses((status = 200, body = inline(List<Account>)), (status = 400, body = ProblemDocument)))]
pub async fn list(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(query): ApiQuery<ListAccountsQuery>,
) -> ApiResult<Reply<List<Account>>> {
    if let Some(cursor) = &query.starting_after {
        AccountId::parse(cursor, "starting_after")?;
    }
    let page = page_request(query.limit, query.starting_after)?;
    let filter = AccountFilter {
        status: query.status,
        email: key_text(query.email, "email")?,
        external_id: key_text(query.external_id, "external_id")?,
    };
    let accounts = app.customers.list_accounts(&caller, &filter, &page).await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(accounts, |a| a.id.to_string(), |a| a),
    ))
}

/// Updates an account. Absent fields stay; `null` clears; metadata merges (empty value removes).
#[utoipa::path(patch, path = "/v1/accounts/{id}", operation_id = "update_account", tag = "accounts", security(("api_key" = ["write_accounts"])), request_body = AccountPatch,
    params(("id" = String, Path, description = "Account id, `acct_…`")),
    responses((status = 200, body = Account), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn update(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<AccountPatch>,
) -> ApiResult<Reply<Account>> {
    let id = path_id(&id, "account", AccountId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.customers.update_account(&caller, id, patch).await?,
    ))
}

/// Soft-deletes an account: it stays readable but no longer changes or lists.
#[utoipa::path(delete, path = "/v1/accounts/{id}", operation_id = "delete_account", tag = "accounts", security(("api_key" = ["write_accounts"])),
    params(("id" = String, Path, description = "Account id, `acct_…`")),
    responses((status = 200, body = Account), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn delete(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<Account>> {
    let id = path_id(&id, "account", AccountId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.customers.delete_account(&caller, id).await?,
    ))
}
