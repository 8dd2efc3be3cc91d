//! Feeds every file in `events/` through the `api` Lambda's handler exactly as
//! `cargo lambda invoke --data-file` (or `sam local invoke -e`) would deliver it: parsed
//! by lambda_http into a request, answered by the handler.

use std::path::Path;

use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Each sample event and the status the handler must answer it with.
const EXPECTED: &[(&str, u16)] = &[
    ("api-health.json", 200),
    ("api-openapi.json", 200),
    ("api-create-account.json", 201),
    ("api-list-accounts.json", 200),
    ("api-get-account-missing.json", 404),
    ("api-create-account-malformed.json", 400),
    ("api-list-accounts-no-key.json", 401),
];

async fn invoke(app: &billing_app::App, file: &str) -> (u16, http::HeaderMap, Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let request = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let request = request.map(|body| Body::from(body.to_vec()));
    let response = api::handler(app.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn every_sample_event_gets_its_expected_answer() {
    let app = billing_tests::memory_app();
    app.customers
        .ensure_tenant_with_key("Events", billing_tests::EVENTS_KEY)
        .await
        .unwrap();
    let on_disk: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../events"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("api-"))
            .collect();
    for name in &on_disk {
        assert!(
            EXPECTED.iter().any(|(f, _)| f == name),
            "{name} has no expected answer"
        );
    }
    for (file, expected) in EXPECTED {
        let (status, headers, body) = invoke(&app, file).await;
        assert_eq!(status, *expected, "{file}: {body}");
        assert_eq!(
            headers["request-id"].to_str().unwrap(),
            format!(
                "evt-{}",
                file.trim_start_matches("api-").trim_end_matches(".json")
            ),
            "API Gateway's request id is the response's"
        );
    }
    // The create event carries an Idempotency-Key: invoking it again replays, not duplicates.
    let (_, first_headers, first) = invoke(&app, "api-create-account.json").await;
    assert_eq!(first_headers["idempotent-replayed"], "true");
    let (_, _, list) = invoke(&app, "api-list-accounts.json").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], first["id"]);
}
