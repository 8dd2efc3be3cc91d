//! Documents: the tenant's branding for invoice and credit note PDFs and customer emails,
//! which emails go out, and the PDFs' downloads.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use billing_app::documents::Download;
use billing_app::App;
use billing_domain::documents::branding::{Branding, BrandingPatch};
use billing_domain::documents::email::{EmailSettings, EmailSettingsPatch};
use billing_domain::documents::logo::MAX_LOGO_BYTES;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{CreditNoteId, InvoiceId};

use crate::extract::{body_bytes, path_id, ApiJson, ApiPath, Auth, Reply};
use crate::problem::{ApiResult, Problem, ProblemDocument};

crate::routes::handlers!(
    get_branding,
    update_branding,
    set_logo,
    delete_logo,
    get_email_settings,
    update_email_settings,
    invoice_pdf,
    credit_note_pdf
);

/// A download as HTTP: the file (`application/pdf`, saved under its number), or a 302 to
/// the short-lived link the object store made.
pub(crate) fn download_response(download: Download) -> Response {
    match download {
        Download::File { bytes, file_name } => {
            let mut response = (StatusCode::OK, bytes).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pdf"),
            );
            // The name is the number with anything but `[A-Za-z0-9._-]` replaced, so it
            // is always a valid header value.
            if let Ok(value) =
                HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
            {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Download::Link(url) => match HeaderValue::from_str(&url) {
            Ok(location) => {
                let mut response = StatusCode::FOUND.into_response();
                response.headers_mut().insert(header::LOCATION, location);
                response
            }
            Err(_) => crate::problem::Problem::internal().into_response(),
        },
    }
}

/// The invoice's PDF, rendered moments after it was finalized: the file, or (when the
/// deployment is set so) a 302 to a presigned link valid a few minutes. `document_not_ready`
/// (409) until it is rendered; `invoice_not_finalized` (409) for a draft.
#[utoipa::path(get, path = "/v1/invoices/{id}/pdf", operation_id = "get_invoice_pdf", tag = "invoices", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "`in_…`")),
    responses((status = 200, description = "The PDF", content_type = "application/pdf", body = Vec<u8>),
        (status = 302, description = "A presigned link to the PDF (`Location`)"),
        (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn invoice_pdf(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let id = path_id(&id, "invoice", InvoiceId::parse)?;
    Ok(download_response(
        app.documents.invoice_pdf(&caller, id).await?,
    ))
}

/// The credit note's PDF, as for invoices: `document_not_ready` (409) until rendered.
#[utoipa::path(get, path = "/v1/credit-notes/{id}/pdf", operation_id = "get_credit_note_pdf", tag = "payments", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "`cn_…`")),
    responses((status = 200, description = "The PDF", content_type = "application/pdf", body = Vec<u8>),
        (status = 302, description = "A presigned link to the PDF (`Location`)"),
        (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn credit_note_pdf(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let id = path_id(&id, "credit note", CreditNoteId::parse)?;
    Ok(download_response(
        app.documents.credit_note_pdf(&caller, id).await?,
    ))
}

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

/// Uploads the logo: the body is the file, `Content-Type: image/png` or `image/jpeg` (1 to
/// 2000 px a side) or `image/svg+xml` (an `<svg` root whose `width`/`height` or `viewBox` is
/// at most 2000, no script, event handler or reference to another file), at most 256 KB
/// (`logo_too_large`); anything else is `invalid_logo`. Stored under its SHA-256 and shown
/// on the hosted invoice page; PDFs rendered afterwards draw a PNG or JPEG logo at the top
/// of the first page (an SVG is not drawn on PDFs).
#[utoipa::path(put, path = "/v1/settings/branding/logo", operation_id = "set_logo", tag = "documents", security(("api_key" = ["write_billing"])),
    request_body(content((Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"), (String = "image/svg+xml"))),
    responses((status = 200, body = Branding), (status = 400, body = ProblemDocument), (status = 413, body = ProblemDocument)))]
pub async fn set_logo(
    State(app): State<App>,
    Auth(caller): Auth,
    req: Request,
) -> ApiResult<Reply<Branding>> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = body_bytes(req, MAX_LOGO_BYTES).await.map_err(|_| {
        Problem::invalid(
            ErrorCode::LogoTooLarge,
            "logo",
            format!("the logo is larger than {MAX_LOGO_BYTES} bytes"),
        )
        .hint("Send a smaller file: scale the PNG down or simplify the SVG.")
    })?;
    Ok(Reply(
        StatusCode::OK,
        app.documents
            .set_logo(&caller, &content_type, bytes.to_vec())
            .await?,
    ))
}

/// Removes the logo from the branding.
#[utoipa::path(delete, path = "/v1/settings/branding/logo", operation_id = "delete_logo", tag = "documents", security(("api_key" = ["write_billing"])),
    responses((status = 200, body = Branding)))]
pub async fn delete_logo(State(app): State<App>, Auth(caller): Auth) -> ApiResult<Reply<Branding>> {
    Ok(Reply(
        StatusCode::OK,
        app.documents.delete_logo(&caller).await?,
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
