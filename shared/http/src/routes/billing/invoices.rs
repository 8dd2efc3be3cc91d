//! Invoices: one-off drafts, finalize, void, previews and the number prefix.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::billing::{
    HypotheticalPlan, HypotheticalSubscription, PreviewCustomer, PreviewSource,
};
use billing_app::ports::InvoiceFilter;
use billing_app::App;
use billing_domain::billing::invoice::{Invoice, InvoiceStatus};
use billing_domain::billing::invoice_draft::{InvoiceDraft, InvoiceInput, LineInput, LineSource};
use billing_domain::billing::subscription::CollectionMethod;
use billing_domain::catalog::charges::Usage;
use billing_domain::catalog::plan::NewPlan;
use billing_domain::customers::account::CustomerDetails;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{AccountId, InvoiceId, PlanId, SubscriptionId};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, timestamp, ApiJson, ApiPath, ApiQuery, Auth, OptionalJson, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, Problem, ProblemDocument};

use super::subscriptions::charge_automatically;

crate::routes::handlers!(
    list_invoices,
    create_invoice,
    get_invoice,
    finalize_invoice,
    void_invoice,
    preview_invoice,
    get_invoice_settings,
    update_invoice_settings
);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceQuery {
    limit: Option<i64>,
    starting_after: Option<String>,
    account: Option<String>,
    subscription: Option<String>,
    status: Option<InvoiceStatus>,
    /// Created at or after (RFC 3339).
    created_from: Option<String>,
    /// Created before (RFC 3339).
    created_to: Option<String>,
}

/// Invoices, newest first.
#[utoipa::path(get, path = "/v1/invoices", tag = "invoices", security(("api_key" = ["read"])), params(InvoiceQuery),
    responses((status = 200, body = inline(List<Invoice>)), (status = 400, body = ProblemDocument)))]
pub async fn list_invoices(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<InvoiceQuery>,
) -> ApiResult<Reply<List<Invoice>>> {
    let page = page_request(q.limit, q.starting_after)?;
    let filter = InvoiceFilter {
        account: q
            .account
            .as_deref()
            .map(|a| AccountId::parse(a, "account"))
            .transpose()?,
        subscription: q
            .subscription
            .as_deref()
            .map(|s| SubscriptionId::parse(s, "subscription"))
            .transpose()?,
        status: q.status,
        created_from: timestamp(q.created_from.as_deref(), "created_from")?,
        created_to: timestamp(q.created_to.as_deref(), "created_to")?,
    };
    let invoices = app.billing.list_invoices(&caller, &filter, &page).await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(invoices, |i| i.id.to_string(), |i| i),
    ))
}

fn invoice_id(raw: &str) -> Result<InvoiceId, Problem> {
    path_id(raw, "invoice", InvoiceId::parse)
}

#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "invoices", security(("api_key" = ["read"])), params(("id" = String, Path, description = "`in_…`")),
    responses((status = 200, body = Invoice), (status = 404, body = ProblemDocument)))]
pub async fn get_invoice(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<Invoice>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing.get_invoice(&caller, invoice_id(&id)?).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualLine {
    pub description: String,
    /// Minor units.
    pub amount: i64,
    pub quantity: Option<u64>,
    /// `inclusive` if `amount` contains the tax, `exclusive` if tax is added to it;
    /// absent follows the tenant's `prices_include_tax`.
    pub tax_behavior: Option<billing_domain::tax::rates::TaxBehavior>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"account": "acct_01JD3X7M2Q8Z5V6W9Y0A1B2C3E", "lines": [{"description": "Onboarding", "amount": 50000}]}))]
pub struct NewInvoiceRequest {
    pub account: String,
    pub lines: Vec<ManualLine>,
    #[serde(default = "charge_automatically")]
    pub collection_method: CollectionMethod,
}

fn manual_lines(lines: Vec<ManualLine>) -> Vec<LineInput> {
    lines
        .into_iter()
        .map(|l| LineInput {
            id: None,
            description: l.description,
            period: None,
            source: LineSource::Fixed {
                amount: l.amount,
                quantity: l.quantity.map(rust_decimal::Decimal::from),
            },
            tax_rates: Vec::new(),
            tax_behavior: l.tax_behavior,
            discountable: true,
        })
        .collect()
}

/// A one-off invoice with manual lines, as a draft; finalize it to send it.
#[utoipa::path(post, path = "/v1/invoices", tag = "invoices", security(("api_key" = ["write_billing"])), request_body = NewInvoiceRequest,
    responses((status = 201, body = Invoice), (status = 400, body = ProblemDocument)))]
pub async fn create_invoice(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<NewInvoiceRequest>,
) -> ApiResult<Reply<Invoice>> {
    let account = AccountId::parse(&req.account, "account")?;
    let invoice = app
        .billing
        .create_manual_invoice(
            &caller,
            account,
            manual_lines(req.lines),
            req.collection_method,
        )
        .await?;
    Ok(Reply(StatusCode::CREATED, invoice))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinalizeRequest {
    pub days_until_due: Option<u32>,
}

/// Opens a draft under the tenant's next invoice number (gapless).
#[utoipa::path(post, path = "/v1/invoices/{id}/finalize", tag = "invoices", security(("api_key" = ["write_billing"])), request_body = FinalizeRequest,
    params(("id" = String, Path, description = "`in_…`")),
    responses((status = 200, body = Invoice), (status = 409, body = ProblemDocument)))]
pub async fn finalize_invoice(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<FinalizeRequest>,
) -> ApiResult<Reply<Invoice>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .finalize_invoice(&caller, invoice_id(&id)?, req.days_until_due)
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidRequest {
    /// Keep what was paid on the invoice as account balance (its credit note says so)
    /// instead of refunding it; required to void a paid invoice. Default false.
    #[serde(default)]
    pub credit_to_balance: bool,
}

/// Voids an open invoice, or a paid one with `credit_to_balance`. What was paid comes back
/// as a credit note (into the account's balance with `credit_to_balance`); credit the
/// invoice spent of the balance goes back to the balance. The body is optional.
#[utoipa::path(post, path = "/v1/invoices/{id}/void", tag = "invoices", security(("api_key" = ["write_billing"])), request_body = VoidRequest, params(("id" = String, Path, description = "`in_…`")),
    responses((status = 200, body = Invoice), (status = 409, body = ProblemDocument)))]
pub async fn void_invoice(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    OptionalJson(req): OptionalJson<VoidRequest>,
) -> ApiResult<Reply<Invoice>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .void_invoice(&caller, invoice_id(&id)?, req.credit_to_balance)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"subscription": "sub_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "plan": "plan_01JD3X7M2Q8Z5V6W9Y0A1B2C3F"}))]
pub struct InvoicePreviewRequest {
    /// The next invoice of this subscription…
    pub subscription: Option<String>,
    /// …after moving it to this plan and/or quantity.
    pub plan: Option<String>,
    pub quantity: Option<u64>,
    /// Or a hypothetical subscription (no `subscription`, no `lines`): a saved `plan` or an
    /// `inline_plan`, in `currency`, at `quantity` (default 1), starting at `start`
    /// (default now) with `trial_days` (default the plan's), `billing_anchor` and
    /// `time_zone` (default UTC), with the period's `usage` totals per metric code. The
    /// answer is the invoice of its first paid period.
    pub inline_plan: Option<NewPlan>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start: Option<Timestamp>,
    pub trial_days: Option<u32>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub billing_anchor: Option<Timestamp>,
    pub time_zone: Option<String>,
    pub usage: Option<BTreeMap<String, Usage>>,
    /// Or a hypothetical invoice: currency and engine lines (charges with usage, fixed
    /// amounts, prorations), with discounts, credits and taxes.
    pub currency: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub lines: Option<Vec<LineInput>>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub discounts: Option<Vec<billing_domain::billing::invoice_draft::Discount>>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub credits: Option<Vec<billing_domain::billing::invoice_draft::CreditInput>>,
    /// A hypothetical invoice or subscription is taxed as this account's invoice would be
    /// (`acct_…`); a hypothetical invoice then also spends the account's balance (after
    /// `credits`) and its prepaid wallets, as finalizing it now would…
    pub account: Option<String>,
    /// …or as a customer with these details' would be. Without either, as the invoice of
    /// a customer without an address: the seller's own rate (`address_missing`).
    pub customer_details: Option<CustomerDetails>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoicePreview {
    pub subscription: Option<String>,
    /// The invoice's lines and totals: `discount_total`, `tax_total`, `total`, then what
    /// the balance's credit (`credit_total`, `credits_applied`) and prepaid wallets
    /// (`wallet_total`, `wallets_applied`) would pay, and the `amount_due` left.
    #[schema(value_type = Object)]
    pub invoice: InvoiceDraft,
}

/// The invoice that would be made, computed without writing anything.
#[utoipa::path(post, path = "/v1/invoices/preview", tag = "invoices", security(("api_key" = ["read"])), request_body = InvoicePreviewRequest,
    responses((status = 200, body = InvoicePreview), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn preview_invoice(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<InvoicePreviewRequest>,
) -> ApiResult<Reply<InvoicePreview>> {
    let currency = || {
        let code = req.currency.as_deref().ok_or_else(|| {
            Problem::invalid(
                ErrorCode::MissingField,
                "currency",
                "a hypothetical invoice or subscription needs a currency",
            )
        })?;
        Currency::from_code(code)
            .map_err(|e| Problem::invalid(ErrorCode::InvalidCurrency, "currency", e.to_string()))
    };
    let hypothetical = req.inline_plan.is_some() || req.usage.is_some();
    let for_subscription = req.subscription.is_some();
    let customer = match (req.account.as_deref(), req.customer_details) {
        (Some(_), Some(_)) => {
            return Err(Problem::invalid(
                ErrorCode::InvalidSource,
                "customer_details",
                "give `account` or `customer_details`, not both",
            ))
        }
        (account, details) if for_subscription && (account.is_some() || details.is_some()) => {
            return Err(Problem::invalid(
                ErrorCode::InvalidSource,
                if account.is_some() {
                    "account"
                } else {
                    "customer_details"
                },
                "a subscription's preview is taxed for its own account",
            ))
        }
        (Some(id), None) => PreviewCustomer::Account(AccountId::parse(id, "account")?),
        (None, Some(details)) => PreviewCustomer::Details(Box::new(
            details
                .validate("customer_details")
                .map_err(Problem::from)?,
        )),
        (None, None) => PreviewCustomer::default(),
    };
    let source = match (req.subscription, req.lines) {
        (None, None) if req.plan.is_some() || hypothetical => {
            let plan = match (req.plan.as_deref(), req.inline_plan) {
                (Some(id), None) => HypotheticalPlan::Saved(PlanId::parse(id, "plan")?),
                (None, Some(plan)) => HypotheticalPlan::Inline(Box::new(plan)),
                _ => {
                    return Err(Problem::invalid(
                        ErrorCode::InvalidSource,
                        "plan",
                        "a hypothetical subscription takes exactly one of `plan` or `inline_plan`",
                    ))
                }
            };
            PreviewSource::Hypothetical(Box::new(HypotheticalSubscription {
                plan,
                currency: currency()?,
                quantity: req.quantity.unwrap_or(1),
                start: req.start,
                trial_days: req.trial_days,
                billing_anchor: req.billing_anchor,
                time_zone: req.time_zone,
                usage: req.usage.unwrap_or_default(),
                customer,
            }))
        }
        (Some(_), _) | (_, Some(_)) if hypothetical => {
            return Err(Problem::invalid(
                ErrorCode::InvalidSource,
                "inline_plan",
                "`inline_plan` and `usage` describe a hypothetical subscription: give them without `subscription` or `lines`",
            ))
        }
        (Some(sub), None) => PreviewSource::Subscription {
            id: SubscriptionId::parse(&sub, "subscription")?,
            terms: (req.plan.is_some() || req.quantity.is_some())
                .then(|| {
                    Ok::<_, Problem>((
                        req.plan
                            .as_deref()
                            .map(|p| PlanId::parse(p, "plan"))
                            .transpose()?,
                        req.quantity,
                    ))
                })
                .transpose()?,
        },
        (None, Some(lines)) => {
            PreviewSource::Lines {
                input: InvoiceInput {
                    currency: currency()?,
                    lines,
                    discounts: req.discounts.unwrap_or_default(),
                    credits: req.credits.unwrap_or_default(),
                    minimum_commitment: None,
                },
                customer,
            }
        }
        _ => {
            return Err(Problem::invalid(
                ErrorCode::InvalidSource,
                "subscription",
                "give exactly one of `subscription`, `lines`, or a hypothetical `plan`/`inline_plan`",
            ))
        }
    };
    let (sub, invoice) = app.billing.preview_invoice(&caller, source).await?;
    Ok(Reply(
        StatusCode::OK,
        InvoicePreview {
            subscription: sub.map(|s| s.id.to_string()),
            invoice,
        },
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"invoice_prefix": "ACME"}))]
pub struct InvoiceSettings {
    /// Printed before the number: `ACME-000123`. 1–12 upper-case letters or digits.
    pub invoice_prefix: String,
}

#[utoipa::path(get, path = "/v1/settings/invoices", tag = "invoices", security(("api_key" = ["read"])), responses((status = 200, body = InvoiceSettings)))]
pub async fn get_invoice_settings(
    State(app): State<App>,
    Auth(caller): Auth,
) -> ApiResult<Reply<InvoiceSettings>> {
    let invoice_prefix = app.billing.invoice_prefix(&caller).await?;
    Ok(Reply(StatusCode::OK, InvoiceSettings { invoice_prefix }))
}

/// Sets the prefix of invoice numbers assigned from now on; the sequence goes on unbroken.
#[utoipa::path(patch, path = "/v1/settings/invoices", tag = "invoices", security(("api_key" = ["write_billing"])), request_body = InvoiceSettings,
    responses((status = 200, body = InvoiceSettings), (status = 400, body = ProblemDocument)))]
pub async fn update_invoice_settings(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<InvoiceSettings>,
) -> ApiResult<Reply<InvoiceSettings>> {
    let invoice_prefix = app
        .billing
        .set_invoice_prefix(&caller, &req.invoice_prefix)
        .await?;
    Ok(Reply(StatusCode::OK, InvoiceSettings { invoice_prefix }))
}
