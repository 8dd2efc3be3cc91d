//! Retention: the export of everything held about a customer (GDPR access). Purges run
//! from the due index, not from a route.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::retention::AccountExport;
use billing_app::App;
use billing_domain::kernel::ids::AccountId;

use crate::extract::{path_id, ApiPath, Auth, Reply};
use crate::problem::{ApiResult, ProblemDocument};

crate::routes::handlers!(export);

/// Exports everything held about a customer: the account (also a deleted or purged one),
/// its cards, and the newest 100 of each of its subscriptions, invoices, credit notes,
/// payments, ledger entries and audit records (each with `has_more` and the `next_cursor`
/// its list route continues from), its balances and the usage of the exported
/// subscriptions.
#[utoipa::path(get, path = "/v1/accounts/{id}/export", operation_id = "export_account", tag = "accounts", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "Account id, `acct_…`")),
    responses((status = 200, body = Object, description = "`account_export`: `account`, `payment_methods`, `subscriptions`, `invoices`, `credit_notes`, `payments`, `balances`, `balance_transactions`, `usage`, `audit`"),
        (status = 404, body = ProblemDocument)))]
pub async fn export(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<AccountExport>> {
    let id = path_id(&id, "account", AccountId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.retention.export_account(&caller, id).await?,
    ))
}
