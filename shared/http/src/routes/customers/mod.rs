//! Customers: accounts, their payment methods, API keys and rate limits.

pub mod accounts;
pub mod api_keys;
pub mod limits;
pub mod payment_methods;

use billing_app::App;
use utoipa_axum::router::OpenApiRouter;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .merge(accounts::routes())
        .merge(payment_methods::routes())
        .merge(api_keys::routes())
        .merge(limits::routes())
}
