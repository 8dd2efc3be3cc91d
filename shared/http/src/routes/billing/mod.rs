//! Billing: subscriptions, invoices and test clocks.

pub mod invoices;
pub mod subscriptions;
pub mod test_clocks;

use billing_app::App;
use utoipa_axum::router::OpenApiRouter;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .merge(subscriptions::routes())
        .merge(invoices::routes())
        .merge(test_clocks::routes())
}
