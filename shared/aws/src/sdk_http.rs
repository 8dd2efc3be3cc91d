//! The AWS SDK's HTTP client: the workspace's one `reqwest` client (HTTP/1.1, rustls on
//! ring) behind the SDK's [`HttpClient`] port, instead of `aws-smithy-http-client`.
//!
//! Why: the SDK's own hyper client always compiles HTTP/2 (`h2`, about 0.36 MB of every
//! bootstrap, see the README's "Bootstrap size") and a second instance of hyper's pooled
//! client next to reqwest's, though DynamoDB, SQS, EventBridge, Secrets Manager and SES all
//! answer over HTTP/1.1. Every request these services take is a small in-memory body, so a
//! streaming body is refused instead of being supported.
//!
//! Retries, timeouts of an attempt and of the operation, and signing stay the SDK's: this
//! only moves bytes. Its connect timeout is the one the SDK settings give (the
//! configuration sets it for every client).

use std::sync::Arc;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use tracing::Instrument;

use crate::xray;

/// The SDK client for every AWS service client of the process.
pub fn client(connect_timeout: Duration) -> SharedHttpClient {
    SharedHttpClient::new(ReqwestClient {
        connector: SharedHttpConnector::new(ReqwestConnector {
            http: Arc::new(
                reqwest::Client::builder()
                    .connect_timeout(connect_timeout)
                    // AWS endpoints never redirect a signed request.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .expect("a client with static settings builds"),
            ),
        }),
    })
}

#[derive(Debug)]
struct ReqwestClient {
    connector: SharedHttpConnector,
}

impl HttpClient for ReqwestClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // One pool for every operation: the settings' connect timeout is the client's, and
        // the SDK's attempt timeout bounds a slow read.
        self.connector.clone()
    }
}

#[derive(Debug)]
struct ReqwestConnector {
    http: Arc<reqwest::Client>,
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = self.http.clone();
        HttpConnectorFuture::new(async move { send(&http, request).await })
    }
}

async fn send(
    http: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, ConnectorError> {
    let request = request
        .try_into_http1x()
        .map_err(|e| ConnectorError::user(e.into()))?;
    let (parts, body) = request.into_parts();
    let Some(body) = body.bytes().map(<[u8]>::to_vec) else {
        return Err(ConnectorError::user(
            "a streaming request body: no AWS call of this platform sends one".into(),
        ));
    };
    let (service, operation) = xray::aws_operation(&parts.headers, &parts.method, &parts.uri);
    let call = xray::aws_call(&service, &operation);
    let answered = async {
        let response = http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        tracing::Span::current().record("status", response.status().as_u16());
        let status = response.status();
        let headers = response.headers().clone();
        Ok((status, headers, response.bytes().await?))
    }
    .instrument(call)
    .await;
    let (status, headers, body) = answered.map_err(transport_error)?;
    let mut answer = http::Response::new(SdkBody::from(body));
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    HttpResponse::try_from(answer).map_err(|e| ConnectorError::other(e.into(), None))
}

/// Timeouts and connection faults are transient to the SDK's retry strategy, as they are
/// from its own client.
fn transport_error(error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::timeout(error.into())
    } else if error.is_connect() || error.is_request() || error.is_body() {
        ConnectorError::io(error.into())
    } else {
        ConnectorError::other(error.into(), None)
    }
}
