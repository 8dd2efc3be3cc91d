//! Webhook endpoints. They hold signing secrets, so changing one (or resending an event to
//! them) needs `manage_api_keys`, like API keys; reading them needs `read`.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::events::EndpointWithSecret;
use billing_app::App;
use billing_domain::events::webhook::{
    NewWebhookEndpoint, WebhookDelivery, WebhookEndpointPatch, WebhookEndpointView,
};
use billing_domain::kernel::ids::{DeliveryId, WebhookEndpointId};
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, ApiJson, ApiPath, ApiQuery, Auth, OptionalJson, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, ProblemDocument};

crate::routes::handlers!(create, list, get, update, delete, rotate_secret, deliveries);

/// An endpoint with its signing secret: only in the answers to create and rotate.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointWithSecret {
    #[serde(flatten)]
    endpoint: WebhookEndpointView,
    /// `whsec_…`: verify `Billing-Signature` with it. Shown once; store it now.
    secret: String,
}

impl From<EndpointWithSecret> for WebhookEndpointWithSecret {
    fn from(e: EndpointWithSecret) -> Self {
        Self {
            endpoint: e.endpoint,
            secret: e.secret,
        }
    }
}

fn endpoint_id(raw: &str) -> Result<WebhookEndpointId, crate::problem::Problem> {
    path_id(raw, "webhook endpoint", WebhookEndpointId::parse)
}

/// Adds a webhook endpoint; the answer holds its signing secret, once.
#[utoipa::path(post, path = "/v1/webhook-endpoints", operation_id = "create_webhook_endpoint", tag = "webhooks", security(("api_key" = ["manage_api_keys"])), request_body = NewWebhookEndpoint,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and body replay the first response for 24 hours.")),
    responses((status = 201, body = WebhookEndpointWithSecret), (status = 400, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn create(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<NewWebhookEndpoint>,
) -> ApiResult<Reply<WebhookEndpointWithSecret>> {
    let created = app.events.create_webhook_endpoint(&caller, input).await?;
    Ok(Reply(StatusCode::CREATED, created.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1 to 100, default 10.
    limit: Option<i64>,
    /// The last id of the previous page.
    starting_after: Option<String>,
}

/// Lists webhook endpoints, oldest first.
#[utoipa::path(get, path = "/v1/webhook-endpoints", operation_id = "list_webhook_endpoints", tag = "webhooks", security(("api_key" = ["read"])), params(ListQuery),
    responses((status = 200, body = inline(List<WebhookEndpointView>)), (status = 400, body = ProblemDocument)))]
pub async fn list(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Reply<List<WebhookEndpointView>>> {
    if let Some(cursor) = &query.starting_after {
        WebhookEndpointId::parse(cursor, "starting_after")?;
    }
    let page = page_request(query.limit, query.starting_after)?;
    let endpoints = app.events.list_webhook_endpoints(&caller, &page).await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(endpoints, |e| e.id.to_string(), |e| e),
    ))
}

/// Retrieves a webhook endpoint (without its secret).
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", operation_id = "get_webhook_endpoint", tag = "webhooks", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "Webhook endpoint id, `we_…`")),
    responses((status = 200, body = WebhookEndpointView), (status = 404, body = ProblemDocument)))]
pub async fn get(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<WebhookEndpointView>> {
    let id = endpoint_id(&id)?;
    Ok(Reply(
        StatusCode::OK,
        app.events.get_webhook_endpoint(&caller, id).await?,
    ))
}

/// Changes the URL, events or description, or enables/disables the endpoint.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", operation_id = "update_webhook_endpoint", tag = "webhooks", security(("api_key" = ["manage_api_keys"])), request_body = WebhookEndpointPatch,
    params(("id" = String, Path, description = "Webhook endpoint id, `we_…`")),
    responses((status = 200, body = WebhookEndpointView), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn update(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<WebhookEndpointPatch>,
) -> ApiResult<Reply<WebhookEndpointView>> {
    let id = endpoint_id(&id)?;
    Ok(Reply(
        StatusCode::OK,
        app.events
            .update_webhook_endpoint(&caller, id, patch)
            .await?,
    ))
}

/// Deletes a webhook endpoint; its pending deliveries are given up.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", operation_id = "delete_webhook_endpoint", tag = "webhooks", security(("api_key" = ["manage_api_keys"])),
    params(("id" = String, Path, description = "Webhook endpoint id, `we_…`")),
    responses((status = 200, body = WebhookEndpointView), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn delete(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<WebhookEndpointView>> {
    let id = endpoint_id(&id)?;
    Ok(Reply(
        StatusCode::OK,
        app.events.delete_webhook_endpoint(&caller, id).await?,
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the previous secret keeps working too: 0 to 604800 seconds, default 86400.
    pub expires_in_seconds: Option<i64>,
}

/// Replaces the signing secret; deliveries carry a signature with each secret until the
/// previous one expires. The body is optional; the answer holds the new secret, once.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks", security(("api_key" = ["manage_api_keys"])), request_body(content = Option<RotateSecret>),
    params(("id" = String, Path, description = "Webhook endpoint id, `we_…`")),
    responses((status = 200, body = WebhookEndpointWithSecret), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn rotate_secret(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    OptionalJson(request): OptionalJson<RotateSecret>,
) -> ApiResult<Reply<WebhookEndpointWithSecret>> {
    let id = endpoint_id(&id)?;
    let overlap = request.expires_in_seconds.map(SignedDuration::from_secs);
    let rotated = app
        .events
        .rotate_webhook_secret(&caller, id, overlap)
        .await?;
    Ok(Reply(StatusCode::OK, rotated.into()))
}

/// The endpoint's deliveries, newest first: status, attempts, response codes, latency.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhooks", security(("api_key" = ["read"])), params(
        ("id" = String, Path, description = "Webhook endpoint id, `we_…`"), ListQuery),
    responses((status = 200, body = inline(List<WebhookDelivery>)), (status = 404, body = ProblemDocument)))]
pub async fn deliveries(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Reply<List<WebhookDelivery>>> {
    let id = endpoint_id(&id)?;
    if let Some(cursor) = &query.starting_after {
        DeliveryId::parse(cursor, "starting_after")?;
    }
    let page = page_request(query.limit, query.starting_after)?;
    let deliveries = app
        .events
        .list_webhook_deliveries(&caller, id, &page)
        .await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(deliveries, |d| d.id.to_string(), |d| d),
    ))
}
