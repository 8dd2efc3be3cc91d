//! Documents: the tenant's branding for invoice and credit note PDFs.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::App;
use billing_domain::documents::branding::{Branding, BrandingPatch};

use crate::extract::{ApiJson, Auth, Reply};
use crate::problem::{ApiResult, ProblemDocument};

crate::routes::handlers!(get_branding, update_branding);

/// The tenant's branding: seller block, colours, footer and locale of its documents. The
/// defaults (`version` 0) until it sets any.
#[utoipa::path(get, path = "/v1/settings/branding", operation_id = "get_branding", tag = "documents", security(("api_key" = ["read"])),
    responses((status = 200, body = Branding)))]
pub async fn get_branding(
    State(app): State<App>,
    Auth(caller): Auth,
) -> ApiResult<Reply<Branding>> {
    Ok(Reply(
        StatusCode::OK,
        app.documents.branding(&caller).await?,
    ))
}

/// Changes the fields given (`null` clears a clearable one). Colours are `#rrggbb`
/// (`invalid_color`), `support_email` an address (`invalid_email`), at most 5 tax ids.
/// Documents rendered from now on use it.
#[utoipa::path(patch, path = "/v1/settings/branding", operation_id = "update_branding", tag = "documents", security(("api_key" = ["write_billing"])), request_body = BrandingPatch,
    responses((status = 200, body = Branding), (status = 400, body = ProblemDocument)))]
pub async fn update_branding(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(patch): ApiJson<BrandingPatch>,
) -> ApiResult<Reply<Branding>> {
    Ok(Reply(
        StatusCode::OK,
        app.documents.update_branding(&caller, patch).await?,
    ))
}
