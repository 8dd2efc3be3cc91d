use axum::extract::State;
use axum::http::StatusCode;
use billing_app::ports::EventFilter;
use billing_app::App;
use billing_domain::events::types::EventEnvelope;
use billing_domain::events::webhook::WebhookDelivery;
use billing_domain::kernel::ids::{EventId, WebhookEndpointId};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{key_text, path_id, ApiPath, ApiQuery, Auth, OptionalJson, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, ProblemDocument};

crate::routes::handlers!(list, get, resend);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListEventsQuery {
    /// 1 to 100, default 10.
    limit: Option<i64>,
    /// The last id of the previous page.
    starting_after: Option<String>,
    /// Only events of this type, e.g. `account.updated`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Only events about this resource id, e.g. `acct_…`.
    resource: Option<String>,
}

/// Lists the events of the last 30 days, newest first.
#[utoipa::path(get, path = "/v1/events", operation_id = "list_events", tag = "events", security(("api_key" = ["read"])), params(ListEventsQuery),
    responses((status = 200, body = inline(List<EventEnvelope>)), (status = 400, body = ProblemDocument)))]
pub async fn list(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiQuery(query): ApiQuery<ListEventsQuery>,
) -> ApiResult<Reply<List<EventEnvelope>>> {
    if let Some(cursor) = &query.starting_after {
        EventId::parse(cursor, "starting_after")?;
    }
    let page = page_request(query.limit, query.starting_after)?;
    let filter = EventFilter {
        event_type: query.event_type.filter(|t| !t.is_empty()),
        resource_id: key_text(query.resource, "resource")?.filter(|r| !r.is_empty()),
    };
    let events = app.events.list_events(&caller, &filter, &page).await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(events, |e| e.id.to_string(), |e| e),
    ))
}

/// Retrieves one event (kept for 30 days).
#[utoipa::path(get, path = "/v1/events/{id}", operation_id = "get_event", tag = "events", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "Event id, `evt_…`")),
    responses((status = 200, body = EventEnvelope), (status = 404, body = ProblemDocument)))]
pub async fn get(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<EventEnvelope>> {
    let id = path_id(&id, "event", EventId::parse)?;
    Ok(Reply(
        StatusCode::OK,
        app.events.get_event(&caller, id).await?,
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    /// Resend to this endpoint only (`we_…`); by default to every enabled endpoint
    /// subscribed to the event's type.
    endpoint: Option<String>,
}

/// Delivers an event again as a new delivery (with its own retries). The body is optional.
#[utoipa::path(post, path = "/v1/events/{id}/resend", tag = "events", security(("api_key" = ["manage_api_keys"])), request_body(content = Option<ResendRequest>),
    params(("id" = String, Path, description = "Event id, `evt_…`")),
    responses((status = 202, body = inline(List<WebhookDelivery>)), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn resend(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    OptionalJson(request): OptionalJson<ResendRequest>,
) -> ApiResult<Reply<List<WebhookDelivery>>> {
    let id = path_id(&id, "event", EventId::parse)?;
    let endpoint = request
        .endpoint
        .map(|e| WebhookEndpointId::parse(&e, "endpoint"))
        .transpose()?;
    let deliveries = app.events.resend_event(&caller, id, endpoint).await?;
    Ok(Reply(
        StatusCode::ACCEPTED,
        List::from_page(
            billing_app::ports::Page::new(deliveries, false),
            |d| d.id.to_string(),
            |d| d,
        ),
    ))
}
