//! AWS requests signed by hand: SigV4 from `aws-sigv4` (the SDK's own signer, already
//! linked by the SDK clients) with the process's credentials and region, for the calls that
//! go over `reqwest` without a service crate (S3's objects, Secrets Manager's one read).
//!
//! Why not the service crates: each brings its generated client, endpoint resolver and the
//! readers of every error it can answer, about 0.07 MB of a bootstrap for Secrets Manager's
//! one call per cold start (README, "Bootstrap size").

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_smithy_runtime_api::client::identity::Identity;

use crate::config::MissingVar;

/// Header and query parameters a signature adds to a request.
pub type Signed = (Vec<(String, String)>, Vec<(String, String)>);

/// The process's credentials and region.
#[derive(Clone, Debug)]
pub struct Signer {
    credentials: SharedCredentialsProvider,
    region: String,
}

impl Signer {
    pub fn new(sdk: &aws_config::SdkConfig) -> Result<Self, MissingVar> {
        Ok(Self {
            credentials: sdk.credentials_provider().ok_or(MissingVar(
                "a credentials provider in the SDK configuration",
            ))?,
            region: sdk
                .region()
                .map(ToString::to_string)
                .ok_or(MissingVar("AWS_REGION"))?,
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Signs `method url` of `service` with `headers` (and the body's SHA-256 in
    /// `x-amz-content-sha256`, which S3 checks and the other services accept; or, for a
    /// presigned link, in the query for `expires`); answers the headers and query
    /// parameters to add. Paths are signed as given (S3's rule; the same for `/`).
    pub async fn sign(
        &self,
        service: &str,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        expires: Option<Duration>,
    ) -> Result<Signed, String> {
        let identity: Identity = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| format!("credentials: {e}"))?
            .into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let body = match expires {
            Some(ttl) => {
                settings.signature_location = SignatureLocation::QueryParams;
                settings.expires_in = Some(ttl);
                settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
                SignableBody::UnsignedPayload
            }
            None => {
                settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
                SignableBody::Bytes(body)
            }
        };
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let request = SignableRequest::new(method, url, headers.iter().copied(), body)
            .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let (headers, query) = instructions.into_parts();
        Ok((
            headers
                .into_iter()
                .map(|h| (h.name().to_owned(), h.value().to_owned()))
                .collect(),
            query
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.into_owned()))
                .collect(),
        ))
    }
}
