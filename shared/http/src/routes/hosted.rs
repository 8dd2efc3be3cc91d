//! Links to hosted invoice pages: minted (and rotated) and revoked by the tenant. The
//! pages themselves are [`crate::hosted`].

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use billing_app::App;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{path_id, ApiPath, Auth, OptionalJson, Reply};
use crate::problem::{ApiResult, ProblemDocument};
use billing_domain::kernel::ids::InvoiceId;

crate::routes::handlers!(create_hosted_link, revoke_hosted_links);

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostedLinkRequest {
    /// Revoke every earlier link to the invoice's page first.
    #[serde(default)]
    pub rotate: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HostedLinkResponse {
    /// `in_…`
    pub invoice: String,
    /// The page, `{origin}/i/{token}`: shown once, only its hash is kept.
    pub url: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HostedLinksRevoked {
    /// `in_…`
    pub invoice: String,
    pub revoked: bool,
}

fn invoice_id(raw: &str) -> Result<InvoiceId, crate::problem::Problem> {
    path_id(raw, "invoice", InvoiceId::parse)
}

/// The origin the API was called on, as the client named it: where its pages are served.
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.rsplit(',').next().unwrap_or(v).trim().to_owned())
        .unwrap_or_else(|| {
            let local = host.starts_with("127.0.0.1") || host.starts_with("localhost");
            if local { "http" } else { "https" }.to_owned()
        });
    format!("{scheme}://{host}")
}

/// Mints a link to a finalized invoice's hosted page, where the customer sees it and pays
/// it: 32 random bytes, of which only the SHA-256 is kept, so the URL is shown only here.
/// Each call mints another link (earlier ones keep working); `rotate` revokes them first.
#[utoipa::path(post, path = "/v1/invoices/{id}/hosted-link", tag = "invoices", security(("api_key" = ["write_billing"])),
    request_body = HostedLinkRequest, params(("id" = String, Path, description = "`in_…`")),
    responses((status = 201, body = HostedLinkResponse), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn create_hosted_link(
    State(app): State<App>,
    Auth(caller): Auth,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    OptionalJson(req): OptionalJson<HostedLinkRequest>,
) -> ApiResult<Reply<HostedLinkResponse>> {
    let issued = app
        .hosted
        .issue_link(&caller, invoice_id(&id)?, req.rotate)
        .await?;
    Ok(Reply(
        StatusCode::CREATED,
        HostedLinkResponse {
            invoice: issued.invoice_id.to_string(),
            url: format!("{}/i/{}", origin(&headers), issued.token),
            created_at: issued.created_at,
        },
    ))
}

/// Revokes every link to the invoice's hosted page at once: they answer 404 from now on.
#[utoipa::path(delete, path = "/v1/invoices/{id}/hosted-link", tag = "invoices", security(("api_key" = ["write_billing"])),
    params(("id" = String, Path, description = "`in_…`")),
    responses((status = 200, body = HostedLinksRevoked), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn revoke_hosted_links(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<HostedLinksRevoked>> {
    let id = invoice_id(&id)?;
    app.hosted.revoke_links(&caller, id).await?;
    Ok(Reply(
        StatusCode::OK,
        HostedLinksRevoked {
            invoice: id.to_string(),
            revoked: true,
        },
    ))
}
