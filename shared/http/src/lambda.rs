//! Serves a router as an API Gateway HTTP API (payload 2.0) Lambda: what `lambda_http::run`
//! does, but answering a body that is UTF-8 as text and any other as base64. `lambda_http`
//! decodes every text response by its `charset` with `encoding_rs`, whose label lookup keeps
//! all of its legacy encodings' tables in the bootstrap (0.15 MB) for bodies that are UTF-8
//! anyway; any body sent as text bytes for bytes (or base64) reaches the client unchanged.
//! The loop around it is [`billing_aws::runtime`]'s, not `lambda_runtime`'s.

use std::convert::Infallible;

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body as LambdaBody;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderName, HeaderValue, Response};
use axum::response::IntoResponse;
use axum::Router;
use billing_aws::runtime::Invocation;
use http_body_util::BodyExt;
use lambda_http::request::LambdaRequest;
use tower::ServiceExt;

use crate::problem::Problem;

/// What the runtime loop ends with; a function's `main` returns it too.
pub use billing_aws::runtime::Error;

/// Answers every invocation with `router` until the runtime stops; a panic, where it
/// aborts the process, with the 500 problem+json `catch_panic` gives where panics unwind.
pub async fn run(router: Router) -> Result<(), Error> {
    billing_aws::runtime::run(
        Box::new(move |invocation| Box::pin(invoke(router.clone(), invocation))),
        panic_answer().await?,
    )
    .await
}

/// The answer to a handler's panic, as API Gateway reads it.
async fn panic_answer() -> Result<Vec<u8>, Error> {
    let problem = Problem::internal().into_response();
    Ok(serde_json::to_vec(&gateway_response(problem).await?)?)
}

/// One invocation: the event as an HTTP request (with its API Gateway context as an
/// extension, as `lambda_http` puts it), answered by `router`, the answer as JSON.
pub async fn invoke(router: Router, invocation: Invocation) -> Result<Vec<u8>, Error> {
    let payload: LambdaRequest = serde_json::from_slice(&invocation.event)?;
    let mut request: axum::http::Request<lambda_http::Body> = payload.into();
    // The trace header of the invocation, which the SDK's calls propagate.
    if let Some(trace) = invocation
        .xray_trace_id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        request
            .headers_mut()
            .insert(HeaderName::from_static("x-amzn-trace-id"), trace);
    }
    let response = router
        .oneshot(request)
        .await
        .unwrap_or_else(|never: Infallible| match never {});
    Ok(serde_json::to_vec(&gateway_response(response).await?)?)
}

/// `response` as API Gateway expects it: `Set-Cookie` in `cookies`, repeated headers
/// joined by API Gateway itself, the body as text when it is UTF-8, else base64.
pub async fn gateway_response(
    response: Response<axum::body::Body>,
) -> Result<ApiGatewayV2httpResponse, Error> {
    let (mut parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let cookies = parts
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok().map(str::to_owned))
        .collect();
    parts.headers.remove(SET_COOKIE);
    let mut answer = ApiGatewayV2httpResponse::default();
    answer.status_code = parts.status.as_u16().into();
    answer.headers = parts.headers;
    answer.cookies = cookies;
    (answer.body, answer.is_base64_encoded) = match String::from_utf8(bytes.to_vec()) {
        Ok(text) if text.is_empty() => (None, false),
        Ok(text) => (Some(LambdaBody::Text(text)), false),
        Err(binary) => (Some(LambdaBody::Binary(binary.into_bytes())), true),
    };
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::CONTENT_TYPE;
    use axum::http::StatusCode;

    fn response(content_type: &str, body: Vec<u8>) -> Response<axum::body::Body> {
        Response::builder()
            .status(StatusCode::CREATED)
            .header(CONTENT_TYPE, content_type)
            .header(SET_COOKIE, "a=1")
            .header(SET_COOKIE, "b=2")
            .body(axum::body::Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn utf8_is_text_other_bytes_base64_and_cookies_move_to_their_field() {
        let json = gateway_response(response(
            "application/json",
            b"{\"a\":\"\xc3\xa9\"}".to_vec(),
        ))
        .await
        .unwrap();
        assert_eq!(json.status_code, 201);
        assert_eq!(json.body, Some(LambdaBody::Text("{\"a\":\"é\"}".into())));
        assert!(!json.is_base64_encoded);
        assert_eq!(json.cookies, ["a=1", "b=2"]);
        assert!(json.headers.get(SET_COOKIE).is_none());
        assert_eq!(json.headers[CONTENT_TYPE], "application/json");

        let pdf = gateway_response(response("application/pdf", vec![0x25, 0xff, 0x00]))
            .await
            .unwrap();
        assert_eq!(pdf.body, Some(LambdaBody::Binary(vec![0x25, 0xff, 0x00])));
        assert!(pdf.is_base64_encoded);
        // As API Gateway reads it.
        let wire = serde_json::to_value(&pdf).unwrap();
        assert_eq!(wire["body"], "Jf8A");
        assert_eq!(wire["isBase64Encoded"], true);

        let empty = gateway_response(response("text/plain", Vec::new()))
            .await
            .unwrap();
        assert_eq!(empty.body, None);
    }

    #[tokio::test]
    async fn a_panic_is_answered_500_problem_json() {
        let answer: serde_json::Value =
            serde_json::from_slice(&panic_answer().await.unwrap()).unwrap();
        assert_eq!(answer["statusCode"], 500);
        assert_eq!(
            answer["headers"]["content-type"],
            "application/problem+json"
        );
        let body: serde_json::Value =
            serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["code"], "internal_error");
    }
}
