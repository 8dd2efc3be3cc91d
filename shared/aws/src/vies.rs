//! The EU's VAT registry (VIES) over its REST API: `POST check-vat-number` with the member
//! state's prefix and the number (`{"countryCode": "FR", "vatNumber": "23334175221"}`),
//! answered with `valid`. A member state's service being down or busy comes back as
//! `{"actionSucceed": false, "errorWrappers": [{"error": "MS_UNAVAILABLE"}]}`, sometimes
//! with 200, or as a 5xx: both are "could not answer", except `INVALID_INPUT` (the number
//! cannot be one), which is "not registered".

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use billing_app::ports::{RegistryAnswer, RegistryUnavailable, VatRegistry};
use billing_domain::tax::vat_id::VatId;
use serde::Deserialize;

/// Where the REST API lives.
pub const VIES_API: &str = "https://ec.europa.eu/taxation_customs/vies/rest-api";

/// An account update waits for the answer: past this, the id is accepted unverified.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct ViesRegistry {
    http: reqwest::Client,
    /// Where `check-vat-number` is appended: VIES, or a local fake in tests.
    base: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
#[error("the VIES client cannot be built: {0}")]
pub struct ViesConfigError(String);

impl ViesRegistry {
    /// A client of VIES; `api_base` replaces [`VIES_API`] (a local fake in tests).
    pub fn new(api_base: Option<&str>) -> Result<Self, ViesConfigError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("serverless-billing/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ViesConfigError(e.to_string()))?;
        Ok(Self {
            http,
            base: api_base.unwrap_or(VIES_API).trim_end_matches('/').into(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    /// `isValid` on the service's GET variant.
    #[serde(alias = "isValid")]
    valid: Option<bool>,
    action_succeed: Option<bool>,
    #[serde(default)]
    error_wrappers: Vec<ErrorWrapper>,
}

#[derive(Deserialize)]
struct ErrorWrapper {
    error: Option<String>,
}

#[async_trait]
impl VatRegistry for ViesRegistry {
    async fn check(&self, vat_id: &VatId) -> Result<RegistryAnswer, RegistryUnavailable> {
        let (country_code, vat_number) = vat_id.vies_parts();
        let response = self
            .http
            .post(format!("{}/check-vat-number", self.base))
            .json(&serde_json::json!({"countryCode": country_code, "vatNumber": vat_number}))
            .send()
            .await
            .map_err(|e| RegistryUnavailable(e.to_string()))?;
        let status = response.status();
        let answer: Option<Answer> = response.json().await.ok();
        let errors: Vec<String> = answer
            .iter()
            .flat_map(|a| a.error_wrappers.iter().filter_map(|w| w.error.clone()))
            .collect();
        if errors.iter().any(|e| e == "INVALID_INPUT") {
            return Ok(RegistryAnswer::NotRegistered);
        }
        match answer {
            Some(Answer {
                valid: Some(valid),
                action_succeed: None | Some(true),
                ..
            }) if status.is_success() => Ok(if valid {
                RegistryAnswer::Registered
            } else {
                RegistryAnswer::NotRegistered
            }),
            _ => Err(RegistryUnavailable(format!(
                "VIES answered {status} {}",
                errors.join(", ")
            ))),
        }
    }
}
