//! Subscriptions, invoices and test clocks.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use billing_app::billing::{HypotheticalPlan, HypotheticalSubscription, PreviewSource};
use billing_app::billing::{ProrationBehavior, StartSubscription};
use billing_app::ports::{InvoiceFilter, SubscriptionFilter};
use billing_app::App;
use billing_domain::billing::invoice::{Invoice, InvoiceStatus};
use billing_domain::billing::invoice_draft::{InvoiceDraft, InvoiceInput, LineInput, LineSource};
use billing_domain::billing::subscription::{CollectionMethod, Subscription, SubscriptionStatus};
use billing_domain::billing::test_clock::TestClock;
use billing_domain::catalog::charges::Usage;
use billing_domain::catalog::plan::NewPlan;
use billing_domain::events::record::AuditRecord;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{AccountId, InvoiceId, PlanId, SubscriptionId, TestClockId};
use billing_domain::kernel::metadata::Metadata;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, ApiJson, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, Problem, ProblemDocument};

fn sub_id(raw: &str) -> Result<SubscriptionId, Problem> {
    path_id(raw, "subscription", SubscriptionId::parse)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"account": "acct_01JD3X7M2Q8Z5V6W9Y0A1B2C3E", "plan": "plan_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "quantity": 3}))]
pub struct NewSubscriptionRequest {
    /// `acct_…`; the subscription bills in the account's currency and time zone.
    pub account: String,
    /// `plan_…`; the version in effect at the start applies.
    pub plan: String,
    #[serde(default = "one")]
    pub quantity: u64,
    /// Overrides the plan's trial (0 for none).
    pub trial_days: Option<u32>,
    /// Defaults to now (the test clock's now for accounts on one).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start_date: Option<Timestamp>,
    /// Periods begin at this instant; the time before it is a prorated first period.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub billing_anchor: Option<Timestamp>,
    #[serde(default = "charge_automatically")]
    pub collection_method: CollectionMethod,
    /// Required for `send_invoice`.
    pub days_until_due: Option<u32>,
    /// A pause longer than this many days cancels the subscription (default 90).
    pub max_pause_days: Option<u32>,
    #[serde(default)]
    pub metadata: Metadata,
}

fn one() -> u64 {
    1
}

fn charge_automatically() -> CollectionMethod {
    CollectionMethod::ChargeAutomatically
}

/// Starts a subscription: a trial when the plan (or `trial_days`) has one, else the first
/// period, billed at once.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "subscriptions", request_body = NewSubscriptionRequest,
    responses((status = 201, body = Subscription), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn create_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<NewSubscriptionRequest>,
) -> ApiResult<Reply<Subscription>> {
    let input = StartSubscription {
        account_id: AccountId::parse(&req.account, "account")?,
        plan_id: PlanId::parse(&req.plan, "plan")?,
        quantity: req.quantity,
        trial_days: req.trial_days,
        start: req.start_date,
        billing_anchor: req.billing_anchor,
        collection_method: req.collection_method,
        days_until_due: req.days_until_due,
        max_pause_days: req.max_pause_days,
        metadata: req.metadata,
    };
    Ok(Reply(
        StatusCode::CREATED,
        app.billing.create_subscription(&caller, input).await?,
    ))
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions", params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 404, body = ProblemDocument)))]
pub async fn get_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing.get_subscription(&caller, sub_id(&id)?).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionQuery {
    limit: Option<i64>,
    starting_after: Option<String>,
    account: Option<String>,
    status: Option<SubscriptionStatus>,
    plan: Option<String>,
}

#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions", params(SubscriptionQuery),
    responses((status = 200, body = inline(List<Subscription>)), (status = 400, body = ProblemDocument)))]
pub async fn list_subscriptions(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<SubscriptionQuery>,
) -> ApiResult<Reply<List<Subscription>>> {
    let page = page_request(q.limit, q.starting_after)?;
    let filter = SubscriptionFilter {
        account: q
            .account
            .as_deref()
            .map(|a| AccountId::parse(a, "account"))
            .transpose()?,
        status: q.status,
        plan: q
            .plan
            .as_deref()
            .map(|p| PlanId::parse(p, "plan"))
            .transpose()?,
    };
    let subs = app
        .billing
        .list_subscriptions(&caller, &filter, &page)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(subs, |s| s.id.to_string(), |s| s),
    ))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProrationBehaviorParam {
    /// Prorations wait for the next invoice.
    #[default]
    CreateProrations,
    /// Prorations are invoiced now.
    AlwaysInvoice,
}

impl From<ProrationBehaviorParam> for ProrationBehavior {
    fn from(p: ProrationBehaviorParam) -> Self {
        match p {
            ProrationBehaviorParam::CreateProrations => ProrationBehavior::CreateProrations,
            ProrationBehaviorParam::AlwaysInvoice => ProrationBehavior::AlwaysInvoice,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"quantity": 5, "proration_behavior": "always_invoice"}))]
pub struct SubscriptionPatch {
    /// A new quantity, prorated like a plan change.
    pub quantity: Option<u64>,
    #[serde(default)]
    pub proration_behavior: ProrationBehaviorParam,
    pub metadata: Option<Metadata>,
    /// `true` cancels at the period end; `false` reactivates.
    pub cancel_at_period_end: Option<bool>,
}

#[utoipa::path(patch, path = "/v1/subscriptions/{id}", tag = "subscriptions", request_body = SubscriptionPatch,
    params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn update_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<SubscriptionPatch>,
) -> ApiResult<Reply<Subscription>> {
    let id = sub_id(&id)?;
    let mut sub = app.billing.get_subscription(&caller, id).await?;
    if let Some(quantity) = patch.quantity.filter(|q| *q != sub.quantity) {
        sub = app
            .billing
            .change_subscription(
                &caller,
                id,
                None,
                Some(quantity),
                patch.proration_behavior.into(),
            )
            .await?;
    }
    if let Some(metadata) = &patch.metadata {
        sub = app
            .billing
            .update_subscription_metadata(&caller, id, metadata)
            .await?;
    }
    match patch.cancel_at_period_end {
        Some(true) if !sub.cancel_at_period_end => {
            sub = app
                .billing
                .cancel_subscription(&caller, id, true, false)
                .await?
        }
        Some(false) if sub.cancel_at_period_end => {
            sub = app.billing.reactivate_subscription(&caller, id).await?
        }
        _ => {}
    }
    Ok(Reply(StatusCode::OK, sub))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"at_period_end": false, "prorate": true}))]
pub struct CancelRequest {
    /// Cancel when the current period ends instead of now.
    #[serde(default)]
    pub at_period_end: bool,
    /// When cancelling now, credit the unused part of the period on a final invoice.
    #[serde(default)]
    pub prorate: bool,
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/cancel", tag = "subscriptions", request_body = CancelRequest,
    params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 409, body = ProblemDocument)))]
pub async fn cancel_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CancelRequest>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .cancel_subscription(&caller, sub_id(&id)?, req.at_period_end, req.prorate)
            .await?,
    ))
}

/// Undoes a cancellation scheduled for the period end.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/reactivate", tag = "subscriptions", params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 409, body = ProblemDocument)))]
pub async fn reactivate_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .reactivate_subscription(&caller, sub_id(&id)?)
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Resume automatically at this time.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resumes_at: Option<Timestamp>,
}

/// Pauses: no invoices while paused; at resume a fresh period starts and the unused part of
/// the period paid before the pause is credited.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/pause", tag = "subscriptions", request_body = PauseRequest,
    params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 409, body = ProblemDocument)))]
pub async fn pause_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PauseRequest>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .pause_subscription(&caller, sub_id(&id)?, req.resumes_at)
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/resume", tag = "subscriptions", params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 409, body = ProblemDocument)))]
pub async fn resume_subscription(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .resume_subscription(&caller, sub_id(&id)?)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"plan": "plan_01JD3X7M2Q8Z5V6W9Y0A1B2C3F", "proration_behavior": "always_invoice"}))]
pub struct ChangePlanRequest {
    pub plan: String,
    pub quantity: Option<u64>,
    #[serde(default)]
    pub proration_behavior: ProrationBehaviorParam,
}

/// Upgrades apply now with prorations (invoiced now or on the next invoice); downgrades are
/// scheduled for the period end.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/change-plan", tag = "subscriptions", request_body = ChangePlanRequest,
    params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn change_plan(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ChangePlanRequest>,
) -> ApiResult<Reply<Subscription>> {
    let plan = PlanId::parse(&req.plan, "plan")?;
    let sub = app
        .billing
        .change_subscription(
            &caller,
            sub_id(&id)?,
            Some(plan),
            req.quantity,
            req.proration_behavior.into(),
        )
        .await?;
    Ok(Reply(StatusCode::OK, sub))
}

/// Drops a change scheduled for the period end.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}/scheduled-change", tag = "subscriptions", params(("id" = String, Path, description = "`sub_…`")),
    responses((status = 200, body = Subscription), (status = 409, body = ProblemDocument)))]
pub async fn cancel_scheduled_change(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Reply<Subscription>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .cancel_scheduled_change(&caller, sub_id(&id)?)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    limit: Option<i64>,
    starting_after: Option<String>,
}

/// Every state and term change, newest first, with who and when.
#[utoipa::path(get, path = "/v1/subscriptions/{id}/history", tag = "subscriptions", params(("id" = String, Path, description = "`sub_…`"), HistoryQuery),
    responses((status = 200, body = inline(List<AuditRecord>)), (status = 404, body = ProblemDocument)))]
pub async fn history(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Reply<List<AuditRecord>>> {
    let id = sub_id(&id)?;
    app.billing.get_subscription(&caller, id).await?;
    let page = page_request(q.limit, q.starting_after)?;
    let records = app
        .events
        .list_audit_log(&caller, Some(&id.to_string()), &page)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(records, |r| r.id.to_string(), |r| r),
    ))
}

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

pub(crate) fn timestamp(
    raw: Option<&str>,
    param: &'static str,
) -> Result<Option<Timestamp>, Problem> {
    raw.map(|r| {
        r.parse::<Timestamp>().map_err(|_| {
            Problem::invalid(
                "invalid_timestamp",
                param,
                "expected an RFC 3339 time such as 2026-11-22T10:00:00Z",
            )
        })
    })
    .transpose()
}

/// Invoices, newest first.
#[utoipa::path(get, path = "/v1/invoices", tag = "invoices", params(InvoiceQuery),
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

#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "invoices", params(("id" = String, Path, description = "`in_…`")),
    responses((status = 200, body = Invoice), (status = 404, body = ProblemDocument)))]
pub async fn get_invoice(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
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
            discountable: true,
        })
        .collect()
}

/// A one-off invoice with manual lines, as a draft; finalize it to send it.
#[utoipa::path(post, path = "/v1/invoices", tag = "invoices", request_body = NewInvoiceRequest,
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
#[utoipa::path(post, path = "/v1/invoices/{id}/finalize", tag = "invoices", request_body = FinalizeRequest,
    params(("id" = String, Path, description = "`in_…`")),
    responses((status = 200, body = Invoice), (status = 409, body = ProblemDocument)))]
pub async fn finalize_invoice(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<FinalizeRequest>,
) -> ApiResult<Reply<Invoice>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing
            .finalize_invoice(&caller, invoice_id(&id)?, req.days_until_due)
            .await?,
    ))
}

/// Voids an open invoice.
#[utoipa::path(post, path = "/v1/invoices/{id}/void", tag = "invoices", params(("id" = String, Path, description = "`in_…`")),
    responses((status = 200, body = Invoice), (status = 409, body = ProblemDocument)))]
pub async fn void_invoice(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Reply<Invoice>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing.void_invoice(&caller, invoice_id(&id)?).await?,
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
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoicePreview {
    pub subscription: Option<String>,
    #[schema(value_type = Object)]
    pub invoice: InvoiceDraft,
}

/// The invoice that would be made, computed without writing anything.
#[utoipa::path(post, path = "/v1/invoices/preview", tag = "invoices", request_body = InvoicePreviewRequest,
    responses((status = 200, body = InvoicePreview), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn preview_invoice(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<InvoicePreviewRequest>,
) -> ApiResult<Reply<InvoicePreview>> {
    let currency = || {
        let code = req.currency.as_deref().ok_or_else(|| {
            Problem::invalid(
                "missing_field",
                "currency",
                "a hypothetical invoice or subscription needs a currency",
            )
        })?;
        Currency::from_code(code)
            .map_err(|e| Problem::invalid("invalid_currency", "currency", e.to_string()))
    };
    let hypothetical = req.inline_plan.is_some() || req.usage.is_some();
    let source = match (req.subscription, req.lines) {
        (None, None) if req.plan.is_some() || hypothetical => {
            let plan = match (req.plan.as_deref(), req.inline_plan) {
                (Some(id), None) => HypotheticalPlan::Saved(PlanId::parse(id, "plan")?),
                (None, Some(plan)) => HypotheticalPlan::Inline(Box::new(plan)),
                _ => {
                    return Err(Problem::invalid(
                        "invalid_source",
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
            }))
        }
        (Some(_), _) | (_, Some(_)) if hypothetical => {
            return Err(Problem::invalid(
                "invalid_source",
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
            PreviewSource::Lines(InvoiceInput {
                currency: currency()?,
                lines,
                discounts: req.discounts.unwrap_or_default(),
                credits: req.credits.unwrap_or_default(),
                minimum_commitment: None,
            })
        }
        _ => {
            return Err(Problem::invalid(
                "invalid_source",
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"frozen_time": "2027-01-31T00:00:00Z", "name": "annual renewal check"}))]
pub struct NewTestClock {
    #[schema(value_type = String, format = DateTime)]
    pub frozen_time: Timestamp,
    pub name: Option<String>,
}

/// Creates a test clock (sandbox only). Accounts created with `test_clock` live on it.
#[utoipa::path(post, path = "/v1/test-clocks", tag = "test-clocks", request_body = NewTestClock,
    responses((status = 201, body = TestClock), (status = 403, body = ProblemDocument)))]
pub async fn create_test_clock(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<NewTestClock>,
) -> ApiResult<Reply<TestClock>> {
    Ok(Reply(
        StatusCode::CREATED,
        app.billing
            .create_test_clock(&caller, req.name, req.frozen_time)
            .await?,
    ))
}

fn clock_id(raw: &str) -> Result<TestClockId, Problem> {
    path_id(raw, "test clock", TestClockId::parse)
}

#[utoipa::path(get, path = "/v1/test-clocks/{id}", tag = "test-clocks", params(("id" = String, Path, description = "`clock_…`")),
    responses((status = 200, body = TestClock), (status = 404, body = ProblemDocument)))]
pub async fn get_test_clock(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Reply<TestClock>> {
    Ok(Reply(
        StatusCode::OK,
        app.billing.get_test_clock(&caller, clock_id(&id)?).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceRequest {
    #[schema(value_type = String, format = DateTime)]
    pub frozen_time: Timestamp,
}

/// Moves the clock forward, running everything that falls due up to the new time through
/// the normal billing path. The answer is the clock: `ready` when done; `advancing` while
/// work remains (the billing sweep finishes it).
#[utoipa::path(post, path = "/v1/test-clocks/{id}/advance", tag = "test-clocks", request_body = AdvanceRequest,
    params(("id" = String, Path, description = "`clock_…`")),
    responses((status = 200, body = TestClock), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn advance_test_clock(
    State(app): State<App>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AdvanceRequest>,
) -> ApiResult<Reply<TestClock>> {
    let id = clock_id(&id)?;
    app.billing
        .begin_test_clock_advance(&caller, id, req.frozen_time)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        app.billing.run_test_clock(caller.tenant_id, id).await?,
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"invoice_prefix": "ACME"}))]
pub struct InvoiceSettings {
    /// Printed before the number: `ACME-000123`. 1–12 upper-case letters or digits.
    pub invoice_prefix: String,
}

#[utoipa::path(get, path = "/v1/settings/invoices", tag = "invoices", responses((status = 200, body = InvoiceSettings)))]
pub async fn get_invoice_settings(
    State(app): State<App>,
    Auth(caller): Auth,
) -> ApiResult<Reply<InvoiceSettings>> {
    let invoice_prefix = app.billing.invoice_prefix(&caller).await?;
    Ok(Reply(StatusCode::OK, InvoiceSettings { invoice_prefix }))
}

/// Sets the prefix of invoice numbers assigned from now on; the sequence goes on unbroken.
#[utoipa::path(patch, path = "/v1/settings/invoices", tag = "invoices", request_body = InvoiceSettings,
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
