//! The OpenAPI document is valid (an independent validator, Python's
//! `openapi-spec-validator`), every error it describes is a problem document, and a
//! bounded fuzz of every operation (Python's schemathesis) finds no server error and no
//! status or content type the document does not describe (issue 13, item 8).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use billing_tests::api::Api;
use serde_json::Value;

fn document() -> Value {
    serde_json::to_value(billing_http::openapi::document()).unwrap()
}

/// A command of the project's `.venv`, next to its Python.
fn venv_tool(name: &str) -> PathBuf {
    billing_infra::moto::python().with_file_name(name)
}

/// Every (method, path, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            all.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    all
}

#[test]
fn the_document_passes_an_openapi_validator() {
    let file = std::env::temp_dir().join(format!("openapi-{}.json", ulid::Ulid::new()));
    std::fs::write(&file, serde_json::to_vec(&document()).unwrap()).unwrap();
    let output = Command::new(venv_tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .expect("openapi-spec-validator from .venv: run `make venv`");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn operation_ids_are_unique() {
    let doc = document();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (method, path, operation) in operations(&doc) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
            .to_owned();
        if let Some(first) = seen.insert(id.clone(), format!("{method} {path}")) {
            panic!("`{id}` names both {first} and {method} {path}");
        }
    }
}

#[test]
fn every_error_response_is_a_problem_and_the_shared_ones_are_documented() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().unwrap();
        for (status, response) in responses {
            if status.starts_with(['4', '5']) {
                let content = response["content"].as_object().unwrap();
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    ["application/problem+json"],
                    "{method} {path} {status}"
                );
                assert_eq!(
                    content["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/ProblemDocument"
                );
            }
        }
        let documents = |status: &str| responses.contains_key(status);
        let keyed = operation["security"][0]
            .as_object()
            .is_some_and(|s| s.contains_key("api_key"));
        if keyed {
            assert!(
                documents("401") && documents("403") && documents("429"),
                "{method} {path}"
            );
        }
        if path.contains('{') {
            assert!(documents("404"), "{method} {path}");
        }
        if operation.get("requestBody").is_some() {
            assert!(
                documents("400") && documents("413") && documents("415"),
                "{method} {path}"
            );
        }
        if method == "post" {
            assert!(documents("409"), "{method} {path}");
        }
        assert!(documents("503"), "{method} {path}");
    }
}

/// A few generated requests per operation (valid and invalid), deterministic, on the
/// memory store: no 5xx, and every status and content type answered is documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_survives_a_bounded_fuzz() {
    let (api, _) = Api::start(billing_tests::memory_app(), "Fuzz").await;
    let key = api.key_with_role("admin").await;
    // Hundreds of requests in a second: lift the limits (the fuzz may set them again).
    api.patch(
        "/v1/settings/limits",
        serde_json::json!({"per_key_per_hour": 100_000_000, "burst_per_second": 100_000_000}),
    )
    .await;
    let schema = format!("{}/v1/openapi.json", api.base());
    // Run elsewhere: schemathesis keeps a cache of past failures in its working directory.
    let scratch = std::env::temp_dir().join(format!("schemathesis-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut fuzz = Command::new(venv_tool("schemathesis"));
    fuzz.current_dir(&scratch);
    fuzz.args([
        "run",
        &schema,
        "--no-color",
        // One worker: hypothesis describing strategies from two threads trips CPython
        // 3.11's AST constructor ("recursion depth mismatch"), a runtime error of the tool.
        "--workers",
        "1",
        "--seed",
        "13",
    ])
    .args(["--phases", "coverage,fuzzing", "--max-examples", "5"])
    .args(["--no-shrink", "--generation-database", "none"])
    .args([
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance",
    ])
    .args(["-H", &format!("Authorization: Bearer {key}")]);
    let output = tokio::task::spawn_blocking(move || fuzz.output())
        .await
        .unwrap()
        .expect("schemathesis from .venv: run `make venv`");
    let _ = std::fs::remove_dir_all(&scratch);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}");
    // It did run every operation.
    let operations = operations(&document()).len();
    assert!(
        report.contains(&format!("{operations} selected")),
        "expected {operations} operations: {report}"
    );
}
