//! Documents over HTTP on both stores: the tenant's branding (defaults, partial updates,
//! clearing, validation answers, concurrent updates that both land).

use billing_app::App;
use billing_tests::api::{problem, Api};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn branding_is_patched_field_by_field(app: App) {
    let (api, _) = Api::start(app, "Branding").await;
    let defaults = api.ok(Method::GET, "/v1/settings/branding", None).await;
    assert_eq!(defaults["version"], 0);
    assert_eq!(defaults["locale"], "en-US");
    assert_eq!(defaults["primary_color"], "#1f2937");

    let set = api
        .ok(
            Method::PATCH,
            "/v1/settings/branding",
            Some(&json!({
                "legal_name": "Nimbus Cloud GmbH", "accent_color": "#0E7490",
                "address": {"line1": "Torstraße 12", "city": "Berlin", "country": "de"},
                "tax_ids": ["DE136695976"], "support_email": "billing@nimbus.test",
                "footer": "HRB 123456 B", "locale": "de-DE"
            })),
        )
        .await;
    assert_eq!(set["version"], 1);
    assert_eq!(set["accent_color"], "#0e7490");
    assert_eq!(set["address"]["country"], "DE");
    assert_eq!(
        set,
        api.ok(Method::GET, "/v1/settings/branding", None).await
    );

    let cleared = api
        .ok(
            Method::PATCH,
            "/v1/settings/branding",
            Some(&json!({"footer": null, "primary_color": "#000000"})),
        )
        .await;
    assert_eq!(cleared["version"], 2);
    assert!(cleared["footer"].is_null());
    assert_eq!(cleared["legal_name"], "Nimbus Cloud GmbH");
    assert_eq!(cleared["primary_color"], "#000000");
}

async fn bad_branding_is_refused_with_the_field_named(app: App) {
    let (api, _) = Api::start(app, "Branding errors").await;
    for (body, code, param) in [
        (
            json!({"primary_color": "red"}),
            "invalid_color",
            "primary_color",
        ),
        (
            json!({"accent_color": "#12345g"}),
            "invalid_color",
            "accent_color",
        ),
        (
            json!({"support_email": "no-at-sign"}),
            "invalid_email",
            "support_email",
        ),
        (
            json!({"address": {"country": "Deutschland"}}),
            "invalid_country",
            "address.country",
        ),
        (
            json!({"tax_ids": ["A", "B", "C", "D", "E", "F"]}),
            "too_long",
            "tax_ids",
        ),
        (json!({"footer": "x".repeat(501)}), "too_long", "footer"),
        (json!({"locale": "xx-XX"}), "invalid_value", "locale"),
        (
            json!({"logo_colour": "#000000"}),
            "unknown_field",
            "logo_colour",
        ),
    ] {
        let answer = api
            .send(Method::PATCH, "/v1/settings/branding", Some(&body))
            .await;
        let doc = problem(answer, StatusCode::BAD_REQUEST, code).await;
        assert_eq!(doc["param"], param, "{body}: {doc}");
    }
    // Nothing was written.
    let branding = api.ok(Method::GET, "/v1/settings/branding", None).await;
    assert_eq!(branding["version"], 0);
}

async fn concurrent_updates_both_land(app: App) {
    let (api, _) = Api::start(app, "Branding race").await;
    let name = json!({"legal_name": "Racing Ltd"});
    let colour = json!({"accent_color": "#abcdef"});
    let (a, b) = tokio::join!(
        api.ok(Method::PATCH, "/v1/settings/branding", Some(&name)),
        api.ok(Method::PATCH, "/v1/settings/branding", Some(&colour)),
    );
    let mut versions = [a["version"].as_u64(), b["version"].as_u64()];
    versions.sort();
    assert_eq!(versions, [Some(1), Some(2)]);
    let after = api.ok(Method::GET, "/v1/settings/branding", None).await;
    assert_eq!(
        (
            &after["legal_name"],
            &after["accent_color"],
            &after["version"]
        ),
        (&json!("Racing Ltd"), &json!("#abcdef"), &json!(2))
    );
}

billing_tests::on_both_stores!(
    branding_is_patched_field_by_field,
    bad_branding_is_refused_with_the_field_named,
    concurrent_updates_both_land,
);
