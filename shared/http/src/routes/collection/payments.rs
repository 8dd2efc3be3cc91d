//! Payment attempts, paying invoices, retries and the retry settings.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::ports::PaymentFilter;
use billing_app::App;
use billing_domain::billing::invoice::Invoice;
use billing_domain::collection::connect::StripeAccount;
use billing_domain::collection::payment::{Payment, PaymentStatus};
use billing_domain::collection::retry::{FinalAction, PaymentSettings};
use billing_domain::kernel::ids::{AccountId, InvoiceId, PaymentId};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, ApiJson, ApiPath, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, Problem, ProblemDocument};

crate::routes::handlers!(
    list_payments,
    get_payment,
    pay_invoice,
    retry,
    mark_paid,
    get_settings,
    update_settings
);

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
#[utoipa::path(get, path = "/v1/payments", tag = "payments", security(("api_key" = ["read"])), params(PaymentQuery),
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

#[utoipa::path(get, path = "/v1/payments/{id}", tag = "payments", security(("api_key" = ["read"])), params(("id" = String, Path, description = "`pay_…`")),
    responses((status = 200, body = Payment), (status = 404, body = ProblemDocument)))]
pub async fn get_payment(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
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
#[utoipa::path(post, path = "/v1/invoices/{id}/pay", tag = "payments", security(("api_key" = ["write_billing"])), request_body = PayRequest,
    params(("id" = String, Path, description = "`in_…`")),
    responses((status = 200, body = Payment), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn pay_invoice(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
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
#[utoipa::path(post, path = "/v1/payments/retry", tag = "payments", security(("api_key" = ["write_billing"])), request_body = RetryRequest,
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
#[utoipa::path(post, path = "/v1/invoices/{id}/mark-paid", tag = "payments", security(("api_key" = ["write_billing"])), request_body = MarkPaidRequest,
    params(("id" = String, Path, description = "`in_…`")),
    responses((status = 200, body = Invoice), (status = 409, body = ProblemDocument)))]
pub async fn mark_paid(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
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

/// The tenant's retry schedule and what happens after the last failed attempt.
#[utoipa::path(get, path = "/v1/settings/payments", operation_id = "get_payment_settings", tag = "payments", security(("api_key" = ["read"])), responses((status = 200, body = PaymentSettings)))]
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
    /// The tenant's Stripe connected account (`acct_…`, at most 64 bytes): every Stripe
    /// request made for the tenant (customers, cards, charges, refunds) is sent on it with
    /// the platform's key and `Stripe-Account` (Connect direct charges), and only Stripe
    /// events of that account are applied to the tenant. `""` removes it: the tenant then
    /// collects into the platform's own Stripe account. Sandbox tenants name a test-mode
    /// connected account, live tenants a live one.
    pub stripe_account: Option<String>,
}

#[utoipa::path(patch, path = "/v1/settings/payments", operation_id = "update_payment_settings", tag = "payments", security(("api_key" = ["write_billing"])), request_body = PaymentSettingsRequest,
    responses((status = 200, body = PaymentSettings), (status = 400, body = ProblemDocument)))]
pub async fn update_settings(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<PaymentSettingsRequest>,
) -> ApiResult<Reply<PaymentSettings>> {
    Ok(Reply(
        StatusCode::OK,
        app.collection
            .set_payment_settings(
                &caller,
                req.retry_days,
                req.final_action,
                connected_account(req.stripe_account)?,
            )
            .await?,
    ))
}

/// `stripe_account` of a settings change: absent leaves it, `""` removes it.
fn connected_account(raw: Option<String>) -> Result<Option<Option<StripeAccount>>, Problem> {
    Ok(match raw.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(raw) => Some(Some(StripeAccount::parse(raw, "stripe_account")?)),
    })
}

/// The `account` and `invoice` filters of a list query.
pub(super) fn account_and_invoice(
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
