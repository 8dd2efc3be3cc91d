//! Credits: grants, manual adjustments, and an account's balance per currency with its
//! ledger.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::credits::{AdjustmentRequest, GrantRequest};
use billing_app::App;
use billing_domain::credits::balance::{Balance, BalanceTransaction, CreditGrant};
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::AccountId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, timestamp, ApiJson, ApiPath, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, Problem, ProblemDocument};

crate::routes::handlers!(grant_credit, list_credits, get_balance, adjust_balance);

fn currency(code: &str) -> Result<Currency, Problem> {
    Currency::from_code(code)
        .map_err(|e| Problem::invalid(ErrorCode::InvalidCurrency, "currency", e.to_string()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"account": "acct_01JD0000000000000000000000", "amount": 1500, "currency": "usd", "reason": "goodwill", "expires_at": "2027-01-01T00:00:00Z"}))]
pub struct GrantRequestBody {
    pub account: String,
    /// Minor units, positive.
    pub amount: i64,
    pub currency: String,
    /// Why it is granted (1–200 characters), shown in the ledger.
    pub reason: String,
    pub note: Option<String>,
    /// After this time what remains of it leaves the balance.
    pub expires_at: Option<String>,
}

/// Grants credit to an account. Its next invoices in that currency spend it when they are
/// finalized, soonest-expiring grant first, then oldest.
#[utoipa::path(post, path = "/v1/credits", tag = "credits", security(("api_key" = ["write_billing"])), request_body = GrantRequestBody,
    responses((status = 201, body = CreditGrant), (status = 400, body = ProblemDocument)))]
pub async fn grant_credit(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<GrantRequestBody>,
) -> ApiResult<Reply<CreditGrant>> {
    let grant = GrantRequest {
        account: AccountId::parse(&req.account, "account")?,
        amount: req.amount,
        currency: currency(&req.currency)?,
        reason: req.reason,
        note: req.note,
        expires_at: timestamp(req.expires_at.as_deref(), "expires_at")?,
    };
    Ok(Reply(
        StatusCode::CREATED,
        app.credits.grant_credit(&caller, grant).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CreditsQuery {
    limit: Option<i64>,
    starting_after: Option<String>,
}

/// The account's credit grants (every currency and source), newest first, with what
/// remains of each.
#[utoipa::path(get, path = "/v1/accounts/{id}/credits", tag = "credits", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "`acct_…`"), CreditsQuery),
    responses((status = 200, body = inline(List<CreditGrant>)), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn list_credits(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<CreditsQuery>,
) -> ApiResult<Reply<List<CreditGrant>>> {
    let account = path_id(&id, "account", AccountId::parse)?;
    let page = page_request(q.limit, q.starting_after)?;
    let grants = app.credits.list_credits(&caller, account, &page).await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(grants, |g: &CreditGrant| g.id.to_string(), |g| g),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BalanceQuery {
    /// Only this currency's balance and entries.
    currency: Option<String>,
    limit: Option<i64>,
    starting_after: Option<String>,
}

/// An account's balance per currency and its ledger.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountBalance {
    pub object: &'static str,
    pub account_id: String,
    pub balances: Vec<Balance>,
    /// The ledger, newest first (paginated with `limit` and `starting_after`).
    #[schema(inline)]
    pub transactions: List<BalanceTransaction>,
}

/// The account's balance in each currency and one page of its ledger, newest first.
#[utoipa::path(get, path = "/v1/accounts/{id}/balance", tag = "credits", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "`acct_…`"), BalanceQuery),
    responses((status = 200, body = AccountBalance), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn get_balance(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<BalanceQuery>,
) -> ApiResult<Reply<AccountBalance>> {
    let account = path_id(&id, "account", AccountId::parse)?;
    let page = page_request(q.limit, q.starting_after)?;
    let currency = q.currency.as_deref().map(currency).transpose()?;
    let view = app
        .credits
        .balance(&caller, account, currency, &page)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        AccountBalance {
            object: "balance",
            account_id: account.to_string(),
            balances: view.balances,
            transactions: List::from_page(
                view.transactions,
                |e: &BalanceTransaction| e.id.to_string(),
                |e| e,
            ),
        },
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": -500, "currency": "usd", "reason": "correction of a duplicate grant"}))]
pub struct AdjustmentRequestBody {
    /// Signed minor units: positive adds to the balance, negative takes from it (never
    /// below zero).
    pub amount: i64,
    pub currency: String,
    /// Why (1–200 characters), shown in the ledger.
    pub reason: String,
}

/// Adjusts the account's balance by hand, with a reason; answers the balance after it.
#[utoipa::path(post, path = "/v1/accounts/{id}/balance/adjustments", tag = "credits", security(("api_key" = ["write_billing"])), request_body = AdjustmentRequestBody,
    params(("id" = String, Path, description = "`acct_…`")),
    responses((status = 201, body = Balance), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn adjust_balance(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AdjustmentRequestBody>,
) -> ApiResult<Reply<Balance>> {
    let account = path_id(&id, "account", AccountId::parse)?;
    let adjustment = AdjustmentRequest {
        amount: req.amount,
        currency: currency(&req.currency)?,
        reason: req.reason,
    };
    Ok(Reply(
        StatusCode::CREATED,
        app.credits
            .adjust_balance(&caller, account, adjustment)
            .await?,
    ))
}
