//! Documents: the tenant's branding for invoice and credit note PDFs and customer emails,
//! and which emails go out.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::App;
use billing_domain::documents::branding::{Branding, BrandingPatch};
use billing_domain::documents::email::{EmailSettings, EmailSettingsPatch};

use crate::extract::{ApiJson, Auth, Reply};
use crate::problem::{ApiResult, ProblemDocument};

crate::routes::handlers!(
    get_branding,
    update_branding,
    get_email_settings,
    update_email_settings
);

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

/// The tenant's customer emails: a switch per kind (invoice issued, receipt, payment
/// failed, action required, trial ending, credit note issued; all on by default) and the
/// reply-to address. The defaults (`version` 0) until it sets any.
#[utoipa::path(get, path = "/v1/settings/emails", operation_id = "get_email_settings", tag = "documents", security(("api_key" = ["read"])),
    responses((status = 200, body = EmailSettings)))]
pub async fn get_email_settings(
    State(app): State<App>,
    Auth(caller): Auth,
) -> ApiResult<Reply<EmailSettings>> {
    Ok(Reply(
        StatusCode::OK,
        app.documents.email_settings(&caller).await?,
    ))
}

/// Changes the switches given and the reply-to address (`null` clears it: replies go to
/// the branding's `support_email`; an invalid one is `invalid_email` on `reply_to`). Emails
/// sent from now on follow it, also those already waiting (`email_settings.updated`).
#[utoipa::path(patch, path = "/v1/settings/emails", operation_id = "update_email_settings", tag = "documents", security(("api_key" = ["write_billing"])), request_body = EmailSettingsPatch,
    responses((status = 200, body = EmailSettings), (status = 400, body = ProblemDocument)))]
pub async fn update_email_settings(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(patch): ApiJson<EmailSettingsPatch>,
) -> ApiResult<Reply<EmailSettings>> {
    Ok(Reply(
        StatusCode::OK,
        app.documents.update_email_settings(&caller, patch).await?,
    ))
}
