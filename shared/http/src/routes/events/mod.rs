//! Events: the event log, webhook endpoints and the audit log.

pub mod audit;
pub mod log;
pub mod webhooks;

use billing_app::App;
use utoipa_axum::router::OpenApiRouter;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .merge(log::routes())
        .merge(webhooks::routes())
        .merge(audit::routes())
}
