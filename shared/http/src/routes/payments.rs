//! Payment methods, payments, paying invoices, refunds, credit notes and payment settings.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use billing_app::ports::{CreditNoteFilter, PaymentFilter};
use billing_app::App;
use billing_domain::billing::invoice::Invoice;
use billing_domain::collection::credit_note::CreditNote;
use billing_domain::collection::payment::{Payment, PaymentStatus};
use billing_domain::collection::retry::{FinalAction, PaymentSettings};
use billing_domain::customers::payment_method::{PaymentMethod, PaymentProfile};
use billing_domain::kernel::ids::{AccountId, InvoiceId, PaymentId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, ApiJson, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, Problem, ProblemDocument};

fn account_id(raw: &str) -> Result<AccountId, crate::problem::Problem> {
    path_id(raw, "account", AccountId::parse)
}

/// A card as the API shows it: what identifies it to a person, never the number.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodView {
    /// Always `payment_method`.
    pub object: &'static str,
    #[serde(flatten)]
    pub method: PaymentMethod,
    /// The card charged for the account's invoices.
    pub default: bool,
}

fn view(profile: &PaymentProfile, method: PaymentMethod) -> PaymentMethodView {
    PaymentMethodView {
        object: "payment_method",
        default: profile.default_method.as_deref() == Some(method.id.as_str()),
        method,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<PaymentMethodView>,
    pub has_more: bool,
}

fn method_list(profile: PaymentProfile) -> PaymentMethodList {
    PaymentMethodList {
        object: "list",
        data: profile
            .methods
            .iter()
            .cloned()
            .map(|m| view(&profile, m))
            .collect(),
        has_more: false,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"payment_method": "tok_visa", "default": true}))]
pub struct AttachRequest {
    /// A Stripe `pm_…` id, or with the sandbox gateway a test token or card number
    /// (`tok_visa`, `4000000000009995`, …).
    pub payment_method: String,
    /// Make it the card that is charged (the first card always is).
    #[serde(default)]
    pub default: bool,
}

/// Attaches a card; the gateway customer is created on first need.
#[utoipa::path(post, path = "/v1/accounts/{id}/payment-methods", tag = "payments", request_body = AttachRequest,
    params(("id" = String, Path, description = "`acct_…`")),
    responses((status = 201, body = PaymentMethodView), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn attach(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AttachRequest>,
) -> ApiResult<Reply<PaymentMethodView>> {
    let (method, default) = app
        .customers
        .add_payment_method(&caller, account_id(&id)?, &req.payment_method, req.default)
        .await?;
    Ok(Reply(
        StatusCode::CREATED,
        PaymentMethodView {
            object: "payment_method",
            method,
            default,
        },
    ))
}

#[utoipa::path(get, path = "/v1/accounts/{id}/payment-methods", tag = "payments",
    params(("id" = String, Path, description = "`acct_…`")),
    responses((status = 200, body = PaymentMethodList)))]
pub async fn list_methods(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Reply<PaymentMethodList>> {
    let profile = app
        .customers
        .list_payment_methods(&caller, account_id(&id)?)
        .await?;
    Ok(Reply(StatusCode::OK, method_list(profile)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMethodRequest {
    /// `true` makes this the card that is charged.
    pub default: bool,
}

/// Makes a card the default.
#[utoipa::path(patch, path = "/v1/accounts/{id}/payment-methods/{pm}", tag = "payments", request_body = UpdateMethodRequest,
    params(("id" = String, Path, description = "`acct_…`"), ("pm" = String, Path, description = "the card's `pm_…` id")),
    responses((status = 200, body = PaymentMethodView), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn update_method(
    State(app): State<App>,
    Auth(caller): Auth,
    Path((id, pm)): Path<(String, String)>,
    ApiJson(req): ApiJson<UpdateMethodRequest>,
) -> ApiResult<Reply<PaymentMethodView>> {
    let account = account_id(&id)?;
    if !req.default {
        return Err(billing_app::AppError::Invalid(
            billing_domain::kernel::error::ValidationError::new(
                "invalid_default",
                "default",
                "make another card the default instead of unsetting this one",
            ),
        )
        .into());
    }
    let profile = app
        .customers
        .set_default_payment_method(&caller, account, &pm)
        .await?;
    let method = profile
        .get(&pm)
        .cloned()
        .ok_or_else(|| billing_app::AppError::not_found("payment method", &pm))?;
    Ok(Reply(StatusCode::OK, view(&profile, method)))
}

/// Detaches a card at the gateway and forgets it; if it was the default, the newest
/// remaining card becomes the default.
#[utoipa::path(delete, path = "/v1/accounts/{id}/payment-methods/{pm}", tag = "payments",
    params(("id" = String, Path, description = "`acct_…`"), ("pm" = String, Path, description = "the card's `pm_…` id")),
    responses((status = 200, body = PaymentMethodList), (status = 404, body = ProblemDocument)))]
pub async fn detach(
    State(app): State<App>,
    Auth(caller): Auth,
    Path((id, pm)): Path<(String, String)>,
) -> ApiResult<Reply<PaymentMethodList>> {
    let profile = app
        .customers
        .remove_payment_method(&caller, account_id(&id)?, &pm)
        .await?;
    Ok(Reply(StatusCode::OK, method_list(profile)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PaymentQuery {
    limit: Option<i64>,
    starting_after: Option<String>,
    account: Option<String>,
    invoice: Option<String>,
    status: Option<PaymentStatus>,
}

/// Payment attempts, newest first.
#[utoipa::path(get, path = "/v1/payments", tag = "payments", params(PaymentQuery),
    responses((status = 200, body = inline(List<Payment>)), (status = 400, body = ProblemDocument)))]
pub async fn list_payments(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<PaymentQuery>,
) -> ApiResult<Reply<List<Payment>>> {
    let page = page_request(q.limit, q.starting_after)?;
    let (account, invoice) = account_and_invoice(q.account, q.invoice)?;
    let filter = PaymentFilter {
        account,
        invoice,
        status: q.status,
    };
    let payments = app
        .collection
        .list_payments(&caller, &filter, &page)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(payments, |p| p.id.to_string(), |p| p),
    ))
}

#[utoipa::path(get, path = "/v1/payments/{id}", tag = "payments", params(("id" = String, Path, description = "`pay_…`")),
    responses((status = 200, body = Payment), (status = 404, body = ProblemDocument)))]
pub async fn get_payment(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Reply<Payment>> {
    let id = path_id(&id, "payment", PaymentId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.collection.get_payment(&caller, id).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    /// A card of the account's (`pm_…`) to charge instead of the default.
    pub payment_method: Option<String>,
}

/// Pays an open invoice now: a new attempt, charged in the request. The answer is the
/// attempt (`succeeded`, `failed` or `requires_action`).
#[utoipa::path(post, path = "/v1/invoices/{id}/pay", tag = "payments", request_body = PayRequest,
    params(("id" = String, Path, description = "`in_…`")),
    responses((status = 200, body = Payment), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn pay_invoice(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PayRequest>,
) -> ApiResult<Reply<Payment>> {
    let id = path_id(&id, "invoice", InvoiceId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.collection
            .pay_invoice(&caller, id, req.payment_method)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// The `in_…` whose failed payment to retry now.
    pub invoice: String,
}

/// Retries an invoice's failed (or authentication-waiting) payment now.
#[utoipa::path(post, path = "/v1/payments/retry", tag = "payments", request_body = RetryRequest,
    responses((status = 200, body = Payment), (status = 409, body = ProblemDocument)))]
pub async fn retry(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<RetryRequest>,
) -> ApiResult<Reply<Payment>> {
    let invoice = InvoiceId::parse(&req.invoice, "invoice")?;
    Ok(Reply(
        StatusCode::OK,
        app.collection.retry_payment(&caller, invoice).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reference": "wire transfer 2026-11-20 #4711"}))]
pub struct MarkPaidRequest {
    /// How it was paid (a bank transfer's reference, a cheque number).
    pub reference: String,
}

/// Marks an invoice paid outside the platform.
#[utoipa::path(post, path = "/v1/invoices/{id}/mark-paid", tag = "payments", request_body = MarkPaidRequest,
    params(("id" = String, Path, description = "`in_…`")),
    responses((status = 200, body = Invoice), (status = 409, body = ProblemDocument)))]
pub async fn mark_paid(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<MarkPaidRequest>,
) -> ApiResult<Reply<Invoice>> {
    let id = path_id(&id, "invoice", InvoiceId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.collection
            .mark_invoice_paid(&caller, id, req.reference)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": 500, "memo": "goodwill"}))]
pub struct RefundRequestBody {
    /// Minor units; all that is left to refund when absent.
    pub amount: Option<i64>,
    pub memo: Option<String>,
}

/// Refunds a payment, fully or partly; the refund is recorded as a credit note.
#[utoipa::path(post, path = "/v1/payments/{id}/refunds", tag = "payments", request_body = RefundRequestBody,
    params(("id" = String, Path, description = "`pay_…`")),
    responses((status = 201, body = CreditNote), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn refund(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
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
#[utoipa::path(get, path = "/v1/credit-notes", tag = "payments", params(CreditNoteQuery),
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

/// The tenant's retry schedule and what happens after the last failed attempt.
#[utoipa::path(get, path = "/v1/settings/payments", tag = "payments", responses((status = 200, body = PaymentSettings)))]
pub async fn get_settings(
    State(app): State<App>,
    Auth(caller): Auth,
) -> ApiResult<Reply<PaymentSettings>> {
    Ok(Reply(
        StatusCode::OK,
        app.collection.payment_settings(&caller).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"retry_days": [3, 5, 7, 10], "final_action": "mark_uncollectible"}))]
pub struct PaymentSettingsRequest {
    /// Days after the first failure on which a payment is retried, increasing, at most 8,
    /// each up to 60. `[]`: no retries.
    pub retry_days: Option<Vec<u32>>,
    /// `leave_open` (default) or `mark_uncollectible`.
    pub final_action: Option<FinalAction>,
}

#[utoipa::path(patch, path = "/v1/settings/payments", tag = "payments", request_body = PaymentSettingsRequest,
    responses((status = 200, body = PaymentSettings), (status = 400, body = ProblemDocument)))]
pub async fn update_settings(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<PaymentSettingsRequest>,
) -> ApiResult<Reply<PaymentSettings>> {
    Ok(Reply(
        StatusCode::OK,
        app.collection
            .set_payment_settings(&caller, req.retry_days, req.final_action)
            .await?,
    ))
}

/// The `account` and `invoice` filters of a list query.
fn account_and_invoice(
    account: Option<String>,
    invoice: Option<String>,
) -> Result<(Option<AccountId>, Option<InvoiceId>), Problem> {
    Ok((
        account
            .as_deref()
            .map(|a| AccountId::parse(a, "account"))
            .transpose()?,
        invoice
            .as_deref()
            .map(|i| InvoiceId::parse(i, "invoice"))
            .transpose()?,
    ))
}
