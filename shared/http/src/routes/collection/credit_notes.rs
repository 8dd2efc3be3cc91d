//! Refunds and the credit notes they (and voids of paid invoices) leave.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::ports::CreditNoteFilter;
use billing_app::App;
use billing_domain::collection::credit_note::CreditNote;
use billing_domain::kernel::ids::PaymentId;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, ApiJson, ApiPath, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, ProblemDocument};

use super::payments::account_and_invoice;

crate::routes::handlers!(refund, list_credit_notes);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": 500, "memo": "goodwill"}))]
pub struct RefundRequestBody {
    /// Minor units; all that is left to refund when absent.
    pub amount: Option<i64>,
    pub memo: Option<String>,
}

/// Refunds a payment, fully or partly; the refund is recorded as a credit note.
#[utoipa::path(post, path = "/v1/payments/{id}/refunds", tag = "payments", security(("api_key" = ["write_billing"])), request_body = RefundRequestBody,
    params(("id" = String, Path, description = "`pay_…`")),
    responses((status = 201, body = CreditNote), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn refund(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RefundRequestBody>,
) -> ApiResult<Reply<CreditNote>> {
    let id = path_id(&id, "payment", PaymentId::parse)?;
    Ok(Reply(
        StatusCode::CREATED,
        app.collection
            .refund_payment(&caller, id, req.amount, req.memo)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CreditNoteQuery {
    limit: Option<i64>,
    starting_after: Option<String>,
    account: Option<String>,
    invoice: Option<String>,
}

/// Credit notes (refunds, voids of paid or credited invoices), newest first.
#[utoipa::path(get, path = "/v1/credit-notes", tag = "payments", security(("api_key" = ["read"])), params(CreditNoteQuery),
    responses((status = 200, body = inline(List<CreditNote>)), (status = 400, body = ProblemDocument)))]
pub async fn list_credit_notes(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<CreditNoteQuery>,
) -> ApiResult<Reply<List<CreditNote>>> {
    let page = page_request(q.limit, q.starting_after)?;
    let (account, invoice) = account_and_invoice(q.account, q.invoice)?;
    let filter = CreditNoteFilter { account, invoice };
    let notes = app
        .collection
        .list_credit_notes(&caller, &filter, &page)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(notes, |c: &CreditNote| c.id.to_string(), |c| c),
    ))
}
