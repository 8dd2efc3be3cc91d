//! The identity provider the tenant's staff sign in with (`/v1/settings/identity-provider`):
//! its tokens are accepted as `Authorization: Bearer <JWT>` beside API keys.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::App;
use billing_domain::customers::staff::{IdentityProvider, IdentityProviderInput};

use crate::extract::{ApiJson, Auth, Reply};
use crate::problem::{ApiResult, ProblemDocument};

crate::routes::handlers!(get_identity_provider, set_identity_provider);

/// The identity provider the tenant trusts for staff sign-in; 404 until one is set.
#[utoipa::path(get, path = "/v1/settings/identity-provider", operation_id = "get_identity_provider", tag = "api-keys", security(("api_key" = ["read"])),
    responses((status = 200, body = IdentityProvider), (status = 404, body = ProblemDocument)))]
pub async fn get_identity_provider(
    State(app): State<App>,
    Auth(caller): Auth,
) -> ApiResult<Reply<IdentityProvider>> {
    Ok(Reply(
        StatusCode::OK,
        app.customers.identity_provider(&caller).await?,
    ))
}

/// Sets the identity provider whose RS256/ES256 tokens sign the tenant's staff in: `iss`
/// must be `issuer`, `aud` must name `audience`, the keys come from `jwks_url` (https), the
/// `tenant_claim` (default `custom:tenant_id`) must hold this tenant's id, and the
/// `role_claim` (default `cognito:groups`) must hold a value `roles` maps to a role (default:
/// the roles' own names). Applies at once on the instance that answers, within 60 s on the
/// others; a replaced issuer's tokens stop working within the same time.
#[utoipa::path(put, path = "/v1/settings/identity-provider", operation_id = "set_identity_provider", tag = "api-keys", security(("api_key" = ["manage_api_keys"])), request_body = IdentityProviderInput,
    responses((status = 200, body = IdentityProvider), (status = 400, body = ProblemDocument), (status = 403, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn set_identity_provider(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<IdentityProviderInput>,
) -> ApiResult<Reply<IdentityProvider>> {
    Ok(Reply(
        StatusCode::OK,
        app.customers.set_identity_provider(&caller, &input).await?,
    ))
}
