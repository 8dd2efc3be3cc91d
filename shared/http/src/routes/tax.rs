//! Tax: the tenant's tax settings, tax rates (created, changed from a date, the EU
//! standard VAT rates loaded with one call).

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::App;
use billing_domain::kernel::ids::TaxRateId;
use billing_domain::tax::rates::{NewTaxRate, TaxRate, TaxRateChange, TaxSettings};

use crate::extract::{path_id, ApiJson, ApiPath, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, ProblemDocument};
use crate::routes::catalog::PageQuery;

crate::routes::handlers!(
    get_tax_settings,
    set_tax_settings,
    create_tax_rate,
    list_tax_rates,
    get_tax_rate,
    change_tax_rate,
    load_eu_standard_vat,
);

fn tax_rate_id(raw: &str) -> Result<TaxRateId, crate::problem::Problem> {
    path_id(raw, "tax rate", TaxRateId::parse)
}

/// The tenant's tax settings; 404 until they are set (the tenant charges no tax).
#[utoipa::path(get, path = "/v1/settings/tax", tag = "tax", security(("api_key" = ["read"])),
    responses((status = 200, body = TaxSettings), (status = 404, body = ProblemDocument)))]
pub async fn get_tax_settings(
    State(app): State<App>,
    Auth(caller): Auth,
) -> ApiResult<Reply<TaxSettings>> {
    Ok(Reply(StatusCode::OK, app.tax.tax_settings(&caller).await?))
}

/// Sets the seller's country (and region), its registrations, whether prices include tax,
/// and its tax ids (VAT ids are checked, `invalid_vat_id`). Invoices drafted from now on
/// are taxed by them.
#[utoipa::path(put, path = "/v1/settings/tax", tag = "tax", security(("api_key" = ["write_billing"])), request_body = TaxSettings,
    responses((status = 200, body = TaxSettings), (status = 400, body = ProblemDocument)))]
pub async fn set_tax_settings(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<TaxSettings>,
) -> ApiResult<Reply<TaxSettings>> {
    Ok(Reply(
        StatusCode::OK,
        app.tax.set_tax_settings(&caller, input).await?,
    ))
}

/// Creates a tax rate of a jurisdiction (country, optional region and postal-code prefix),
/// effective from `effective_from` (default now).
#[utoipa::path(post, path = "/v1/tax-rates", tag = "tax", security(("api_key" = ["write_billing"])), request_body = NewTaxRate,
    responses((status = 201, body = TaxRate), (status = 400, body = ProblemDocument)))]
pub async fn create_tax_rate(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<NewTaxRate>,
) -> ApiResult<Reply<TaxRate>> {
    Ok(Reply(
        StatusCode::CREATED,
        app.tax.create_tax_rate(&caller, input).await?,
    ))
}

/// The tenant's tax rates, oldest first, ended ones included (with `effective_to`).
#[utoipa::path(get, path = "/v1/tax-rates", tag = "tax", security(("api_key" = ["read"])), params(PageQuery),
    responses((status = 200, body = inline(List<TaxRate>)), (status = 400, body = ProblemDocument)))]
pub async fn list_tax_rates(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Reply<List<TaxRate>>> {
    let page = page_request(q.limit, q.starting_after)?;
    let rates = app.tax.list_tax_rates(&caller, &page).await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(rates, |r| r.id.to_string(), |r| r),
    ))
}

#[utoipa::path(get, path = "/v1/tax-rates/{id}", tag = "tax", security(("api_key" = ["read"])), params(("id" = String, Path, description = "`txr_…`")),
    responses((status = 200, body = TaxRate), (status = 404, body = ProblemDocument)))]
pub async fn get_tax_rate(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<TaxRate>> {
    Ok(Reply(
        StatusCode::OK,
        app.tax.get_tax_rate(&caller, tax_rate_id(&id)?).await?,
    ))
}

/// Changes a rate from a date: answers the new rate; the old one keeps its percentage and
/// gets `effective_to`, so invoices dated before the change keep it.
#[utoipa::path(post, path = "/v1/tax-rates/{id}/change", tag = "tax", security(("api_key" = ["write_billing"])), request_body = TaxRateChange,
    params(("id" = String, Path, description = "`txr_…`")),
    responses((status = 201, body = TaxRate), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn change_tax_rate(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<TaxRateChange>,
) -> ApiResult<Reply<TaxRate>> {
    Ok(Reply(
        StatusCode::CREATED,
        app.tax
            .change_tax_rate(&caller, tax_rate_id(&id)?, input)
            .await?,
    ))
}

/// Loads the EU member states' standard VAT rates (the checked-in table names its source
/// and date); loading again adds only what is missing.
#[utoipa::path(post, path = "/v1/tax-rates/eu-standard-vat", tag = "tax", security(("api_key" = ["write_billing"])),
    responses((status = 200, body = inline(Vec<TaxRate>))))]
pub async fn load_eu_standard_vat(
    State(app): State<App>,
    Auth(caller): Auth,
) -> ApiResult<Reply<Vec<TaxRate>>> {
    Ok(Reply(
        StatusCode::OK,
        app.tax.load_eu_standard_vat(&caller).await?,
    ))
}
