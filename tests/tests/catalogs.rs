//! The event and error catalogs are generated from the domain's enums: the OpenAPI document
//! and the README list every `EventType` and every `ErrorCode`, and cannot go stale.

use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use serde_json::Value;

fn openapi() -> Value {
    serde_json::to_value(billing_http::openapi::document()).unwrap()
}

#[test]
fn every_event_type_is_in_x_event_types_with_its_schema() {
    let doc = openapi();
    let listed: Vec<&str> = doc["x-event-types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    let all: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(listed, all);
    for t in EventType::ALL {
        let schema = &doc["components"]["schemas"][format!("event.{t}")];
        assert_eq!(schema["description"], t.description(), "{t}");
        let data = &schema["allOf"][1]["properties"]["data"];
        if doc["components"]["schemas"][t.schema()].is_object() {
            assert_eq!(
                data["$ref"],
                format!("#/components/schemas/{}", t.schema()),
                "{t}"
            );
        } else {
            // `api_key.*` carry the stored key (secrets left out), which no endpoint returns.
            assert!(
                data["description"].as_str().unwrap().contains(t.schema()),
                "{t}"
            );
        }
    }
}

#[test]
fn every_error_code_is_in_the_problem_schema_with_its_description() {
    let doc = openapi();
    let schemas = &doc["components"]["schemas"];
    let code = &schemas["ProblemDocument"]["properties"]["code"];
    let code = match code["$ref"].as_str() {
        Some(r) => &schemas[r.trim_start_matches("#/components/schemas/")],
        None => code,
    };
    let listed: Vec<&str> = code["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, all);
    let described = code["x-enum-descriptions"].as_array().unwrap();
    for (c, d) in ErrorCode::ALL.iter().zip(described) {
        assert!(d.as_str().unwrap().starts_with(c.description()), "{c}");
    }
}

#[test]
fn the_readme_tables_are_generated_from_the_catalogs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let rendered = billing_infra::readme::render(&readme).unwrap();
    assert!(
        rendered == readme,
        "the README's event-type or error-code table is stale: run `make docs`"
    );
}
