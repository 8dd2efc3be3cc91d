//! The [`ObjectStore`] port on S3: PutObject, GetObject and presigned GETs, sent over the
//! workspace's `reqwest` client and signed by [`Signer`] (`aws-sigv4`, already linked by the SDK).
//!
//! Why not `aws-sdk-s3`: it would add the S3 client's generated code (the SDK's largest
//! service crate), its checksum and XML machinery, and its own compile time to every build,
//! for three calls whose requests and answers are raw bytes. Signing is the one hard part,
//! and the SDK's own signer does it here.
//!
//! | variable                | meaning                                                  |
//! |-------------------------|----------------------------------------------------------|
//! | `DOCUMENTS_BUCKET`      | the bucket documents are kept in                         |
//! | `DOCUMENT_LINK_SECONDS` | when set, downloads answer a presigned GET valid this long |
//!
//! Addressing: path-style (`{endpoint}/{bucket}/{key}`) against a set endpoint (the local
//! stand-in), virtual-hosted (`https://{bucket}.s3.{region}.amazonaws.com/{key}`) in AWS.

use std::time::Duration;

use async_trait::async_trait;
use billing_app::ports::{ObjectStore, StoreError};

use crate::config::MissingVar;
use crate::sigv4::{Signed, Signer};

/// How long a connection may take to open; a body is small and its transfer bounded by
/// the request timeout.
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct S3Objects {
    http: reqwest::Client,
    signer: Signer,
    /// The bucket's URL, ending in `/`.
    bucket_url: String,
    link_ttl: Option<Duration>,
}

fn unavailable<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Unavailable(format!("S3 {what}: {e}"))
}

/// A key's path, each segment percent-encoded but for S3's unreserved characters.
fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|segment| {
            segment
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl S3Objects {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        bucket: &str,
        link_ttl: Option<Duration>,
    ) -> Result<Self, MissingVar> {
        let signer = Signer::new(sdk)?;
        let bucket_url = match sdk.endpoint_url() {
            Some(endpoint) => format!("{}/{bucket}/", endpoint.trim_end_matches('/')),
            None => format!("https://{bucket}.s3.{}.amazonaws.com/", signer.region()),
        };
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(crate::config::CONNECT_TIMEOUT)
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client with static settings builds"),
            signer,
            bucket_url,
            link_ttl,
        })
    }

    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, MissingVar> {
        let var = |name: &'static str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let bucket = var("DOCUMENTS_BUCKET").ok_or(MissingVar("DOCUMENTS_BUCKET"))?;
        let link_ttl = match var("DOCUMENT_LINK_SECONDS") {
            Some(s) => Some(Duration::from_secs(
                s.parse::<u64>()
                    .ok()
                    .filter(|s| (1..=3600).contains(s))
                    .ok_or(MissingVar("DOCUMENT_LINK_SECONDS (1 to 3600)"))?,
            )),
            None => None,
        };
        Self::new(sdk, &bucket, link_ttl)
    }

    async fn signed(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        expires: Option<Duration>,
    ) -> Result<Signed, StoreError> {
        self.signer
            .sign("s3", method, url, headers, body, expires)
            .await
            .map_err(unavailable("signing"))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response, StoreError> {
        let (signed, _) = self
            .signed(method.as_str(), url, headers, &body, None)
            .await?;
        let mut request = self.http.request(method, url).body(body);
        for (name, value) in headers.iter().copied() {
            request = request.header(name, value);
        }
        for (name, value) in signed {
            request = request.header(name, value);
        }
        request.send().await.map_err(unavailable("request"))
    }

    /// Creates the bucket (the local stack's; in AWS the template does), if absent.
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        let body = if self.signer.region() == "us-east-1" {
            Vec::new()
        } else {
            format!(
                "<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.signer.region()
            )
            .into_bytes()
        };
        let response = self
            .send(reqwest::Method::PUT, &self.bucket_url, &[], body)
            .await?;
        let status = response.status();
        // Created, or there already (`BucketAlreadyOwnedByYou`).
        if status.is_success() || status == reqwest::StatusCode::CONFLICT {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "S3 CreateBucket answered {status}"
            )))
        }
    }

    fn url(&self, key: &str) -> String {
        format!("{}{}", self.bucket_url, encode_key(key))
    }
}

#[async_trait]
impl ObjectStore for S3Objects {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        // The signature covers the body's SHA-256 (`x-amz-content-sha256`), which S3
        // checks: a cut body is refused rather than stored.
        let response = self
            .send(
                reqwest::Method::PUT,
                &self.url(key),
                &[
                    ("content-type", content_type),
                    ("x-amz-server-side-encryption", "AES256"),
                ],
                bytes,
            )
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "S3 PutObject answered {}",
                response.status()
            )))
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let response = self
            .send(reqwest::Method::GET, &self.url(key), &[], Vec::new())
            .await?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => Ok(Some(
                response
                    .bytes()
                    .await
                    .map_err(unavailable("body"))?
                    .to_vec(),
            )),
            status => Err(StoreError::Unavailable(format!(
                "S3 GetObject answered {status}"
            ))),
        }
    }

    async fn download_link(
        &self,
        key: &str,
        file_name: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some(ttl) = self.link_ttl else {
            return Ok(None);
        };
        // S3 answers the object with this Content-Disposition, so the browser saves it
        // under the invoice's number.
        let disposition = format!("attachment; filename=\"{file_name}\"");
        let url = format!(
            "{}?response-content-disposition={}",
            self.url(key),
            encode_key(&disposition)
        );
        let (_, query) = self.signed("GET", &url, &[], &[], Some(ttl)).await?;
        let mut link = url;
        for (name, value) in query {
            link.push('&');
            link.push_str(&name);
            link.push('=');
            link.push_str(&encode_key(&value).replace('/', "%2F"));
        }
        Ok(Some(link))
    }
}
