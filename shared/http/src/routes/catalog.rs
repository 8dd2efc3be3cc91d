//! The catalog: billable metrics, plans with price versions, and the price calculator.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

use billing_app::billing::{Simulated, Simulation, SimulationView};
use billing_app::catalog::{CapacitySource, PlanWithPrices, PriceSource};
use billing_app::ports::{Page, PlanFilter};
use billing_app::App;
use billing_domain::catalog::capacity::Capacity;
use billing_domain::catalog::charges::{ChargeModel, Commitment, Priced, Usage};
use billing_domain::catalog::metric::{Metric, MetricPatch, NewMetric};
use billing_domain::catalog::plan::{NewPlan, NewPlanVersion, Plan, PlanPatch, PlanVersion};
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::decimal::{parse_decimal, serde_decimal};
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::error::ValidationError;
use billing_domain::kernel::format::format_human;
use billing_domain::kernel::ids::{MetricId, PlanId, SimulationId};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, ApiJson, ApiPath, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, Problem, ProblemDocument};

crate::routes::handlers!(
    create_metric,
    list_metrics,
    get_metric,
    update_metric,
    create_plan,
    list_plans,
    get_plan,
    update_plan,
    deactivate_plan,
    list_versions,
    create_version,
    simulate_version,
    get_simulation,
    subscription_count,
    preview_price
);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub(crate) limit: Option<i64>,
    pub(crate) starting_after: Option<String>,
}

/// Creates a billable metric.
#[utoipa::path(post, path = "/v1/metrics", tag = "catalog", security(("api_key" = ["write_billing"])), request_body = NewMetric,
    responses((status = 201, body = Metric), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn create_metric(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<NewMetric>,
) -> ApiResult<Reply<Metric>> {
    Ok(Reply(
        StatusCode::CREATED,
        app.catalog.create_metric(&caller, input).await?,
    ))
}

#[utoipa::path(get, path = "/v1/metrics", tag = "catalog", security(("api_key" = ["read"])), params(PageQuery),
    responses((status = 200, body = inline(List<Metric>)), (status = 400, body = ProblemDocument)))]
pub async fn list_metrics(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<List<Metric>>> {
    let page = page_request(q.limit, q.starting_after)?;
    let metrics = app.catalog.list_metrics(&caller, &page).await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(metrics, |m| m.id.to_string(), |m| m),
    ))
}

#[utoipa::path(get, path = "/v1/metrics/{id}", tag = "catalog", security(("api_key" = ["read"])), params(("id" = String, Path, description = "`bm_…`")),
    responses((status = 200, body = Metric), (status = 404, body = ProblemDocument)))]
pub async fn get_metric(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<Metric>> {
    let id = path_id(&id, "metric", MetricId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.catalog.get_metric(&caller, id).await?,
    ))
}

/// Renames or redescribes a metric; its code and aggregation are fixed.
#[utoipa::path(patch, path = "/v1/metrics/{id}", tag = "catalog", security(("api_key" = ["write_billing"])), request_body = MetricPatch,
    params(("id" = String, Path, description = "`bm_…`")),
    responses((status = 200, body = Metric), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn update_metric(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<MetricPatch>,
) -> ApiResult<Reply<Metric>> {
    let id = path_id(&id, "metric", MetricId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.catalog.update_metric(&caller, id, patch).await?,
    ))
}

/// A plan with the prices a subscription starting now gets.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    #[serde(flatten)]
    pub plan: Plan,
    pub prices: Option<PlanVersion>,
}

impl From<PlanWithPrices> for PlanView {
    fn from(p: PlanWithPrices) -> Self {
        Self {
            plan: p.plan,
            prices: p.prices,
        }
    }
}

/// Creates a plan with its first price version, effective now.
#[utoipa::path(post, path = "/v1/plans", tag = "catalog", security(("api_key" = ["write_billing"])), request_body = NewPlan,
    responses((status = 201, body = PlanView), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn create_plan(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<NewPlan>,
) -> ApiResult<Reply<PlanView>> {
    Ok(Reply(
        StatusCode::CREATED,
        app.catalog.create_plan(&caller, input).await?.into(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PlanQuery {
    limit: Option<i64>,
    starting_after: Option<String>,
    /// Only active (`true`) or only deactivated (`false`) plans.
    active: Option<bool>,
}

#[utoipa::path(get, path = "/v1/plans", tag = "catalog", security(("api_key" = ["read"])), params(PlanQuery),
    responses((status = 200, body = inline(List<Plan>)), (status = 400, body = ProblemDocument)))]
pub async fn list_plans(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<PlanQuery>,
) -> ApiResult<Reply<List<Plan>>> {
    let page = page_request(q.limit, q.starting_after)?;
    let plans = app
        .catalog
        .list_plans(&caller, PlanFilter { active: q.active }, &page)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(plans, |p| p.id.to_string(), |p| p),
    ))
}

#[utoipa::path(get, path = "/v1/plans/{id}", tag = "catalog", security(("api_key" = ["read"])), params(("id" = String, Path, description = "`plan_…`")),
    responses((status = 200, body = PlanView), (status = 404, body = ProblemDocument)))]
pub async fn get_plan(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<PlanView>> {
    let id = path_id(&id, "plan", PlanId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.catalog.get_plan(&caller, id).await?.into(),
    ))
}

/// Changes a plan's name, description, trial, proration or metadata. Prices change only
/// through a new version.
#[utoipa::path(patch, path = "/v1/plans/{id}", tag = "catalog", security(("api_key" = ["write_billing"])), request_body = PlanPatch,
    params(("id" = String, Path, description = "`plan_…`")),
    responses((status = 200, body = Plan), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn update_plan(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<PlanPatch>,
) -> ApiResult<Reply<Plan>> {
    let id = path_id(&id, "plan", PlanId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.catalog.update_plan(&caller, id, patch).await?,
    ))
}

/// Deactivates a plan: no new subscriptions; existing subscriptions continue.
#[utoipa::path(delete, path = "/v1/plans/{id}", tag = "catalog", security(("api_key" = ["write_billing"])), params(("id" = String, Path, description = "`plan_…`")),
    responses((status = 200, body = Plan), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn deactivate_plan(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<Plan>> {
    let id = path_id(&id, "plan", PlanId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.catalog.deactivate_plan(&caller, id).await?,
    ))
}

/// Every price version of the plan, oldest first.
#[utoipa::path(get, path = "/v1/plans/{id}/versions", tag = "catalog", security(("api_key" = ["read"])), params(("id" = String, Path, description = "`plan_…`")),
    responses((status = 200, body = inline(List<PlanVersion>)), (status = 404, body = ProblemDocument)))]
pub async fn list_versions(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<List<PlanVersion>>> {
    let id = path_id(&id, "plan", PlanId::parse)?;
    let versions = app.catalog.list_plan_versions(&caller, id).await?;
    let page = Page::new(versions, false);
    Ok(Reply(
        StatusCode::OK,
        List::from_page(page, |v| v.number.to_string(), |v| v),
    ))
}

/// Writes new prices as the next version, effective from a time (default now). Existing
/// subscriptions keep their version unless `migrate_existing` moves them at their next renewal;
/// with `migration_notice_days` each subscriber is emailed that many days before the first
/// renewal at the new prices, and migrates only at a renewal at least that long after the email.
#[utoipa::path(post, path = "/v1/plans/{id}/versions", tag = "catalog", security(("api_key" = ["write_billing"])), request_body = NewPlanVersion,
    params(("id" = String, Path, description = "`plan_…`")),
    responses((status = 201, body = PlanVersion), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn create_version(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<NewPlanVersion>,
) -> ApiResult<Reply<PlanVersion>> {
    let id = path_id(&id, "plan", PlanId::parse)?;
    Ok(Reply(
        StatusCode::CREATED,
        app.billing.publish_plan_version(&caller, id, input).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SimulateQuery {
    /// List the subscriptions whose next invoice changes by more than this many percent
    /// (a decimal, default 10).
    threshold_percent: Option<String>,
}

/// What publishing this version (the body of `POST /v1/plans/{id}/versions`) would do, before
/// it is published: per currency the subscriptions moved on their next invoice, MRR before and
/// after, the next invoices' totals and change, the largest increases and the subscriptions
/// changed by more than `threshold_percent`; per subscription its next invoice before and
/// after, priced by the same preview billing uses. Writes nothing of billing's. A plan with
/// more than 500 live subscriptions (the deployment's `SIMULATION_PER_REQUEST`) is
/// simulated by a job: 202 with the job (`status: running`) and its `Location`,
/// `GET /v1/simulations/{id}`, which has the same answer as its `result` once `completed`.
#[utoipa::path(post, path = "/v1/plans/{id}/versions/simulate", tag = "catalog", security(("api_key" = ["read"])), request_body = NewPlanVersion,
    params(("id" = String, Path, description = "`plan_…`"), SimulateQuery),
    responses((status = 200, body = Simulation), (status = 202, body = SimulationView, headers(("Location" = String, description = "`/v1/simulations/{id}`"))), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn simulate_version(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SimulateQuery>,
    ApiJson(input): ApiJson<NewPlanVersion>,
) -> ApiResult<Response> {
    let id = path_id(&id, "plan", PlanId::parse)?;
    let threshold = match q.threshold_percent.as_deref() {
        None => Decimal::TEN,
        Some(raw) => parse_decimal(raw, 6).map_err(|e| {
            Problem::invalid(ErrorCode::InvalidValue, "threshold_percent", e.to_string())
        })?,
    };
    Ok(
        match app
            .billing
            .simulate_plan_version(&caller, id, input, threshold)
            .await?
        {
            Simulated::Priced(simulation) => Reply(StatusCode::OK, simulation).into_response(),
            Simulated::Started(job) => (
                [(header::LOCATION, job.url.clone())],
                Reply(StatusCode::ACCEPTED, job),
            )
                .into_response(),
        },
    )
}

/// A catalog change simulation run as a job: `running` with the subscriptions priced so
/// far, `completed` with its `result` (the answer of `POST /v1/plans/{id}/versions/simulate`),
/// or `failed` with its `failure_reason`. Kept a week, then 404.
#[utoipa::path(get, path = "/v1/simulations/{id}", tag = "catalog", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "`sim_…`")),
    responses((status = 200, body = SimulationView), (status = 404, body = ProblemDocument)))]
pub async fn get_simulation(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<SimulationView>> {
    let id = path_id(&id, "simulation", SimulationId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.billing.simulation(&caller, id).await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionCount {
    pub version: u32,
    pub subscriptions: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"plan_id": "plan_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "total": 3, "by_version": [{"version": 1, "subscriptions": 2}, {"version": 2, "subscriptions": 1}]}))]
pub struct SubscriptionCountView {
    pub plan_id: String,
    pub total: u64,
    pub by_version: Vec<VersionCount>,
}

/// How many subscriptions use the plan, per price version.
#[utoipa::path(get, path = "/v1/plans/{id}/subscription-count", tag = "catalog", security(("api_key" = ["read"])), params(("id" = String, Path, description = "`plan_…`")),
    responses((status = 200, body = SubscriptionCountView), (status = 404, body = ProblemDocument)))]
pub async fn subscription_count(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<SubscriptionCountView>> {
    let plan_id = path_id(&id, "plan", PlanId::parse)?;
    let counts = app
        .catalog
        .plan_subscription_counts(&caller, plan_id)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        SubscriptionCountView {
            plan_id: plan_id.to_string(),
            total: counts.total,
            by_version: counts
                .by_version
                .into_iter()
                .map(|(version, subscriptions)| VersionCount {
                    version,
                    subscriptions,
                })
                .collect(),
        },
    ))
}

/// What to price: an inline `charge`, or a plan's charge (`plan_id`, plus `metric` for a usage
/// charge); and the usage: `quantity`, or `usage` for transactions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "charge": {"model": "graduated", "tiers": [
        {"up_to": "1000", "unit_price": "0.01"}, {"up_to": "10000", "unit_price": "0.005"}, {"up_to": null, "unit_price": "0.001"}]},
    "currency": "usd", "quantity": "12500"
}))]
pub struct PricePreviewRequest {
    pub charge: Option<ChargeModel>,
    pub plan_id: Option<String>,
    pub metric: Option<String>,
    pub currency: String,
    #[serde(default, with = "serde_decimal::option")]
    #[schema(value_type = Option<String>)]
    pub quantity: Option<Decimal>,
    pub usage: Option<Usage>,
    pub commitment: Option<Commitment>,
    /// Kill Bill capacity instead of a charge: an inline `capacity` (or a plan's
    /// `capacity_charge` by code, with `plan_id`) priced at `units`, the usage per unit type
    /// (decimal strings): the price of the first tier whose every limit holds.
    #[schema(value_type = Option<Object>, example = json!({"tiers": [
        {"limits": {"api_calls": "1000", "storage_gb": "100"}, "price": 1000},
        {"limits": {"api_calls": null, "storage_gb": null}, "price": 3000}]}))]
    pub capacity: Option<Capacity>,
    pub capacity_charge: Option<String>,
    #[schema(value_type = Option<BTreeMap<String, String>>, example = json!({"api_calls": "1000", "storage_gb": "101"}))]
    pub units: Option<BTreeMap<String, String>>,
}

/// How a price was reached: a charge model's derivation, or the capacity tier chosen.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PriceDerivation {
    Charge(billing_domain::catalog::charges::Derivation),
    Capacity {
        model: &'static str,
        /// 0-based index of the tier chosen; `null` without any usage.
        tier: Option<usize>,
        /// The usage priced per unit type, as decimal strings.
        units: BTreeMap<String, String>,
    },
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PricePreview {
    /// `{"amount": 1999, "currency": "usd"}`, minor units.
    #[schema(value_type = Object)]
    pub amount: billing_domain::kernel::money::Money,
    /// For people: `$19.99`.
    pub formatted: String,
    #[schema(value_type = Option<String>)]
    pub unit_price: Option<Decimal>,
    /// Tier slices, blocks, rates and the single rounding that produced the amount; for
    /// capacity, the tier chosen and the units.
    #[schema(value_type = Object)]
    pub derivation: PriceDerivation,
}

impl From<Priced> for PricePreview {
    fn from(p: Priced) -> Self {
        Self {
            formatted: format_human(p.amount),
            amount: p.amount,
            unit_price: p.unit_price,
            derivation: PriceDerivation::Charge(p.derivation),
        }
    }
}

fn invalid(code: ErrorCode, param: &'static str, message: &str) -> Problem {
    Problem::from(ValidationError::new(code, param, message))
}

/// The price calculator: what a charge costs for a quantity or for transactions, with the
/// derivation. Writes nothing; usable for a public pricing page.
#[utoipa::path(post, path = "/v1/prices/preview", tag = "catalog", security(("api_key" = ["read"])), request_body = PricePreviewRequest,
    responses((status = 200, body = PricePreview), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn preview_price(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<PricePreviewRequest>,
) -> ApiResult<Reply<PricePreview>> {
    let currency = Currency::from_code(&req.currency)
        .map_err(|e| invalid(ErrorCode::InvalidCurrency, "currency", &e.to_string()))?;
    if req.capacity.is_some() || req.capacity_charge.is_some() || req.units.is_some() {
        return preview_capacity(app, caller, req, currency).await;
    }
    let source = match (req.charge, req.plan_id) {
        (Some(charge), None) => {
            if req.metric.is_some() {
                return Err(invalid(
                    ErrorCode::UnexpectedField,
                    "metric",
                    "`metric` selects a plan's charge; use it with `plan_id`",
                ));
            }
            PriceSource::Inline(charge)
        }
        (None, Some(plan_id)) => PriceSource::Plan {
            plan_id: PlanId::parse(&plan_id, "plan_id")?,
            metric: req.metric,
        },
        _ => {
            return Err(invalid(
                ErrorCode::InvalidSource,
                "charge",
                "give exactly one of `charge` or `plan_id`",
            ))
        }
    };
    let usage = match (req.quantity, req.usage) {
        (Some(quantity), None) => Usage::quantity(quantity),
        (None, Some(usage)) => usage,
        _ => {
            return Err(invalid(
                ErrorCode::InvalidUsage,
                "quantity",
                "give exactly one of `quantity` or `usage`",
            ))
        }
    };
    let priced = app
        .catalog
        .preview_price(&caller, source, currency, usage, req.commitment)
        .await?;
    Ok(Reply(StatusCode::OK, priced.into()))
}

/// The price calculator's capacity form: `capacity` or `plan_id` + `capacity_charge`, with
/// `units`.
async fn preview_capacity(
    app: App,
    caller: billing_app::Caller,
    req: PricePreviewRequest,
    currency: Currency,
) -> ApiResult<Reply<PricePreview>> {
    if req.charge.is_some() || req.metric.is_some() {
        return Err(invalid(
            ErrorCode::InvalidSource,
            "capacity",
            "capacity is priced instead of a charge: give `capacity` (or `plan_id` with \
             `capacity_charge`) without `charge` or `metric`",
        ));
    }
    if req.quantity.is_some() || req.usage.is_some() || req.commitment.is_some() {
        return Err(invalid(
            ErrorCode::InvalidUsage,
            "units",
            "capacity is priced at `units` (usage per unit type), not `quantity` or `usage`",
        ));
    }
    let source = match (req.capacity, req.plan_id, req.capacity_charge) {
        (Some(capacity), None, None) => CapacitySource::Inline(capacity),
        (None, Some(plan_id), Some(code)) => CapacitySource::Plan {
            plan_id: PlanId::parse(&plan_id, "plan_id")?,
            code,
        },
        _ => {
            return Err(invalid(
                ErrorCode::InvalidSource,
                "capacity",
                "give `capacity`, or `plan_id` with `capacity_charge`",
            ))
        }
    };
    let Some(given) = req.units else {
        return Err(invalid(
            ErrorCode::InvalidUsage,
            "units",
            "give `units`: the usage per unit type, such as {\"api_calls\": \"1000\"}",
        ));
    };
    let mut units = BTreeMap::new();
    for (unit, value) in given {
        let amount = billing_domain::kernel::decimal::parse_decimal(&value, 12).map_err(|e| {
            Problem::from(ValidationError::new(
                ErrorCode::InvalidUsage,
                format!("units.{unit}"),
                e.to_string(),
            ))
        })?;
        units.insert(unit, amount);
    }
    let shown = units
        .iter()
        .map(|(u, a)| (u.clone(), a.to_string()))
        .collect();
    let priced = app
        .catalog
        .preview_capacity(&caller, source, currency, units)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        PricePreview {
            formatted: format_human(priced.amount),
            amount: priced.amount,
            unit_price: None,
            derivation: PriceDerivation::Capacity {
                model: "capacity",
                tier: priced.tier,
                units: shown,
            },
        },
    ))
}
