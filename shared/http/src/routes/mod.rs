//! The API's routes by capability, with the same names as in `billing_domain` and
//! `billing_app`. A route is declared once: its handler's `#[utoipa::path]` names the
//! method, path, OpenAPI operation and permission (the `api_key` security scope, or
//! `security(())` for an open route), and its module's `routes()` lists the handler in a
//! `routes!`. The router, the OpenAPI document and the permission check all read that.

pub mod billing;
pub mod catalog;
pub mod collection;
pub mod coupons;
pub mod customers;
pub mod events;
pub mod health;
pub mod usage;

use billing_app::App;
use utoipa_axum::router::OpenApiRouter;

/// Every documented route, with the document's paths and the schemas they use.
pub fn all() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .merge(customers::routes())
        .merge(catalog::routes())
        .merge(billing::routes())
        .merge(coupons::routes())
        .merge(usage::routes())
        .merge(collection::routes())
        .merge(events::routes())
        .merge(health::routes())
}
