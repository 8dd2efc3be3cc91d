//! A customer's cards: attach, list, make default, detach.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::App;
use billing_domain::customers::payment_method::{PaymentMethod, PaymentProfile};
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::AccountId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{path_id, ApiJson, ApiPath, Auth, Reply};
use crate::problem::{ApiResult, ProblemDocument};

crate::routes::handlers!(attach, list_methods, update_method, detach);

fn account_id(raw: &str) -> Result<AccountId, crate::problem::Problem> {
    path_id(raw, "account", AccountId::parse)
}

/// A card as the API shows it: what identifies it to a person, never the number.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodView {
    /// Always `payment_method`.
    pub object: &'static str,
    #[serde(flatten)]
    pub method: PaymentMethod,
    /// The card charged for the account's invoices.
    pub default: bool,
}

fn view(profile: &PaymentProfile, method: PaymentMethod) -> PaymentMethodView {
    PaymentMethodView {
        object: "payment_method",
        default: profile.default_method.as_deref() == Some(method.id.as_str()),
        method,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<PaymentMethodView>,
    pub has_more: bool,
}

fn method_list(profile: PaymentProfile) -> PaymentMethodList {
    PaymentMethodList {
        object: "list",
        data: profile
            .methods
            .iter()
            .cloned()
            .map(|m| view(&profile, m))
            .collect(),
        has_more: false,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"payment_method": "tok_visa", "default": true}))]
pub struct AttachRequest {
    /// A Stripe `pm_…` id, or with the sandbox gateway a test token or card number
    /// (`tok_visa`, `4000000000009995`, …).
    pub payment_method: String,
    /// Make it the card that is charged (the first card always is).
    #[serde(default)]
    pub default: bool,
}

/// Attaches a card; the gateway customer is created on first need.
#[utoipa::path(post, path = "/v1/accounts/{id}/payment-methods", tag = "payments", security(("api_key" = ["write_accounts"])), request_body = AttachRequest,
    params(("id" = String, Path, description = "`acct_…`")),
    responses((status = 201, body = PaymentMethodView), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn attach(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<AttachRequest>,
) -> ApiResult<Reply<PaymentMethodView>> {
    let (method, default) = app
        .customers
        .add_payment_method(&caller, account_id(&id)?, &req.payment_method, req.default)
        .await?;
    Ok(Reply(
        StatusCode::CREATED,
        PaymentMethodView {
            object: "payment_method",
            method,
            default,
        },
    ))
}

#[utoipa::path(get, path = "/v1/accounts/{id}/payment-methods", tag = "payments", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "`acct_…`")),
    responses((status = 200, body = PaymentMethodList)))]
pub async fn list_methods(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply<PaymentMethodList>> {
    let profile = app
        .customers
        .list_payment_methods(&caller, account_id(&id)?)
        .await?;
    Ok(Reply(StatusCode::OK, method_list(profile)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMethodRequest {
    /// `true` makes this the card that is charged.
    pub default: bool,
}

/// Makes a card the default.
#[utoipa::path(patch, path = "/v1/accounts/{id}/payment-methods/{pm}", tag = "payments", security(("api_key" = ["write_accounts"])), request_body = UpdateMethodRequest,
    params(("id" = String, Path, description = "`acct_…`"), ("pm" = String, Path, description = "the card's `pm_…` id")),
    responses((status = 200, body = PaymentMethodView), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn update_method(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath((id, pm)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<UpdateMethodRequest>,
) -> ApiResult<Reply<PaymentMethodView>> {
    let account = account_id(&id)?;
    if !req.default {
        return Err(billing_app::AppError::Invalid(
            billing_domain::kernel::error::ValidationError::new(
                ErrorCode::InvalidDefault,
                "default",
                "make another card the default instead of unsetting this one",
            ),
        )
        .into());
    }
    let profile = app
        .customers
        .set_default_payment_method(&caller, account, &pm)
        .await?;
    let method = profile
        .get(&pm)
        .cloned()
        .ok_or_else(|| billing_app::AppError::not_found("payment method", &pm))?;
    Ok(Reply(StatusCode::OK, view(&profile, method)))
}

/// Detaches a card at the gateway and forgets it; if it was the default, the newest
/// remaining card becomes the default.
#[utoipa::path(delete, path = "/v1/accounts/{id}/payment-methods/{pm}", tag = "payments", security(("api_key" = ["write_accounts"])),
    params(("id" = String, Path, description = "`acct_…`"), ("pm" = String, Path, description = "the card's `pm_…` id")),
    responses((status = 200, body = PaymentMethodList), (status = 404, body = ProblemDocument)))]
pub async fn detach(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath((id, pm)): ApiPath<(String, String)>,
) -> ApiResult<Reply<PaymentMethodList>> {
    let profile = app
        .customers
        .remove_payment_method(&caller, account_id(&id)?, &pm)
        .await?;
    Ok(Reply(StatusCode::OK, method_list(profile)))
}
