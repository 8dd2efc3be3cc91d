//! Collection: payments and retries, refunds and credit notes, dunning.

pub mod credit_notes;
pub mod dunning;
pub mod payments;

use billing_app::App;
use utoipa_axum::router::OpenApiRouter;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .merge(payments::routes())
        .merge(credit_notes::routes())
        .merge(dunning::routes())
}
