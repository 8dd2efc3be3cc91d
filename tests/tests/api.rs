//! The API over real HTTP, served by the same router the Lambda runs, on the DynamoDB
//! store against the local stand-in.

use billing_app::App;
use billing_domain::customers::access::Role;
use billing_domain::customers::tenant::TenantMode;
use billing_tests::api::{problem, Api};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

/// Another tenant on the same deployment: its admin key.
async fn other_tenant_key(app: &App) -> String {
    app.customers
        .create_tenant("Globex", TenantMode::Sandbox)
        .await
        .unwrap()
        .1
        .secret
}

async fn start() -> (Api, App) {
    let app = billing_tests::dynamo_app().await;
    let (api, _) = Api::start(app.clone(), "Acme").await;
    (api, app)
}

fn acme() -> Value {
    json!({"email": "billing@acme.test", "name": "Acme", "currency": "eur", "external_id": "user-1"})
}

#[tokio::test]
async fn an_account_round_trips_and_tenants_are_walls() {
    let (api, app) = start().await;
    let created = api.send(Method::POST, "/v1/accounts", Some(&acme())).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert!(created.headers().contains_key("request-id"));
    let account: Value = created.json().await.unwrap();
    let id = account["id"].as_str().unwrap();
    assert!(id.starts_with("acct_"));
    assert_eq!(account["currency"], "eur");
    assert_eq!(account["timezone"], "UTC");
    assert_eq!(account["status"], "active");

    let fetched: Value = api.get(&format!("/v1/accounts/{id}")).await;
    assert_eq!(fetched, account);

    let anonymous = api
        .anonymous()
        .send(Method::GET, &format!("/v1/accounts/{id}"), None)
        .await;
    problem(anonymous, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let forged = api
        .with_key("sk_test_not-a-key")
        .send(Method::GET, &format!("/v1/accounts/{id}"), None)
        .await;
    problem(forged, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    let other = other_tenant_key(&app).await;
    problem(
        api.with_key(&other)
            .send(Method::GET, &format!("/v1/accounts/{id}"), None)
            .await,
        StatusCode::NOT_FOUND,
        "resource_missing",
    )
    .await;
    let listed: Value = api.with_key(&other).get("/v1/accounts").await;
    assert_eq!(listed["data"], json!([]));
    // The same external_id is free in the other tenant.
    assert_eq!(
        api.with_key(&other)
            .send(Method::POST, "/v1/accounts", Some(&acme()))
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn bad_input_gets_a_problem_naming_the_field() {
    let (api, _) = start().await;
    let malformed = api
        .request(Method::POST, "/v1/accounts")
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    problem(malformed, StatusCode::BAD_REQUEST, "malformed_json").await;

    let unknown = api
        .send(
            Method::POST,
            "/v1/accounts",
            Some(&json!({"email": "a@b.io", "currency": "usd", "colour": "red"})),
        )
        .await;
    assert_eq!(
        problem(unknown, StatusCode::BAD_REQUEST, "unknown_field").await["param"],
        "colour"
    );

    let nested = json!({"email": "a@b.io", "currency": "usd", "billing_address": {"country": "DE", "planet": "Earth"}});
    let nested = api.send(Method::POST, "/v1/accounts", Some(&nested)).await;
    assert_eq!(
        problem(nested, StatusCode::BAD_REQUEST, "unknown_field").await["param"],
        "billing_address.planet"
    );

    let wrong_type = api
        .send(
            Method::POST,
            "/v1/accounts",
            Some(&json!({"email": "a@b.io", "currency": "usd", "tax_exempt": "yes"})),
        )
        .await;
    assert_eq!(
        problem(wrong_type, StatusCode::BAD_REQUEST, "invalid_value").await["param"],
        "tax_exempt"
    );

    let missing = api
        .send(
            Method::POST,
            "/v1/accounts",
            Some(&json!({"email": "a@b.io"})),
        )
        .await;
    assert_eq!(
        problem(missing, StatusCode::BAD_REQUEST, "missing_field").await["param"],
        "currency"
    );

    for (body, code, param) in [
        (
            json!({"email": "nope", "currency": "usd"}),
            "invalid_email",
            "email",
        ),
        (
            json!({"email": "a@b.io", "currency": "usx"}),
            "invalid_currency",
            "currency",
        ),
        (
            json!({"email": "a@b.io", "currency": "usd", "timezone": "Moon/Base"}),
            "invalid_timezone",
            "timezone",
        ),
        (
            json!({"email": "a@b.io", "currency": "usd", "metadata": {"k".repeat(41): "v"}}),
            "invalid_metadata_key",
            &*format!("metadata.{}", "k".repeat(41)),
        ),
    ] {
        let response = api.send(Method::POST, "/v1/accounts", Some(&body)).await;
        assert_eq!(
            problem(response, StatusCode::BAD_REQUEST, code).await["param"],
            param
        );
    }

    let bad_enum = api
        .send(Method::GET, "/v1/accounts?status=sleeping", None)
        .await;
    assert_eq!(
        problem(bad_enum, StatusCode::BAD_REQUEST, "invalid_query").await["param"],
        "status"
    );
    let bad_limit = api.send(Method::GET, "/v1/accounts?limit=0", None).await;
    assert_eq!(
        problem(bad_limit, StatusCode::BAD_REQUEST, "invalid_limit").await["param"],
        "limit"
    );
    let unknown_query = api.send(Method::GET, "/v1/accounts?colour=red", None).await;
    assert_eq!(
        problem(unknown_query, StatusCode::BAD_REQUEST, "invalid_query").await["param"],
        "colour"
    );

    let huge = json!({"email": "a@b.io", "currency": "usd", "name": "x".repeat(70_000)});
    problem(
        api.send(Method::POST, "/v1/accounts", Some(&huge)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await;

    let not_json = api
        .request(Method::POST, "/v1/accounts")
        .body("email=a")
        .send()
        .await
        .unwrap();
    problem(
        not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    let bad_id = api.send(Method::GET, "/v1/accounts/not-an-id", None).await;
    problem(bad_id, StatusCode::NOT_FOUND, "resource_missing").await;
    problem(
        api.send(Method::GET, "/v1/nothing-here", None).await,
        StatusCode::NOT_FOUND,
        "resource_missing",
    )
    .await;

    let listed: Value = api.get("/v1/accounts").await;
    assert_eq!(
        listed["data"],
        json!([]),
        "no rejected request wrote anything"
    );
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_reuse_and_serialise_duplicates() {
    let (api, _) = start().await;
    let send =
        |key: &'static str, body: Value| api.post_idempotent("/v1/accounts", key, &body).send();
    let first = send("create-acme", acme()).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let replay = send("create-acme", acme()).await.unwrap();
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(
        replay.json::<Value>().await.unwrap(),
        first,
        "identical response"
    );

    let reused = send(
        "create-acme",
        json!({"email": "other@acme.test", "currency": "eur"}),
    )
    .await
    .unwrap();
    assert_eq!(
        problem(reused, StatusCode::CONFLICT, "idempotency_key_reused").await["param"],
        "Idempotency-Key"
    );

    // Ten concurrent requests under one new key create exactly one account.
    let body = json!({"email": "race@acme.test", "currency": "usd"});
    let attempts = futures_like_join(10, || send("race", body.clone())).await;
    let created = attempts
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert!(created >= 1);
    assert!(attempts
        .iter()
        .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT));
    let listed: Value = api.get("/v1/accounts?limit=100").await;
    let emails: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails.iter().filter(|e| **e == "race@acme.test").count(), 1);
    assert_eq!(emails.len(), 2);
}

/// Runs `n` requests at once and returns their statuses.
async fn futures_like_join<F, Fut>(n: usize, make: F) -> Vec<StatusCode>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<Response>> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|_| tokio::spawn(make())).collect();
    let mut statuses = Vec::new();
    for handle in handles {
        statuses.push(handle.await.unwrap().unwrap().status());
    }
    statuses
}

#[tokio::test]
async fn roles_decide_what_a_key_may_do() {
    let (api, _) = start().await;
    let viewer = api.key_with_role("finance_viewer").await;
    let support = api.key_with_role("support").await;
    let billing = api.key_with_role("billing_admin").await;

    problem(
        api.with_key(&viewer)
            .send(Method::POST, "/v1/accounts", Some(&acme()))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        api.with_key(&viewer)
            .send(Method::GET, "/v1/accounts", None)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        api.with_key(&viewer)
            .send(Method::GET, "/v1/audit-log", None)
            .await
            .status(),
        StatusCode::OK
    );

    let account: Value = api.with_key(&support).post("/v1/accounts", &acme()).await;
    let patched = api
        .with_key(&support)
        .send(
            Method::PATCH,
            &format!("/v1/accounts/{}", account["id"].as_str().unwrap()),
            Some(&json!({"name": "Acme AG"})),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    problem(
        api.with_key(&support)
            .send(Method::GET, "/v1/api-keys", None)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    problem(
        api.with_key(&billing)
            .send(
                Method::POST,
                "/v1/api-keys",
                Some(&json!({"role": "admin"})),
            )
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // Admins list keys masked and revoke them; a revoked key is refused at once.
    let keys: Value = api.get("/v1/api-keys").await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 4);
    for key in keys["data"].as_array().unwrap() {
        assert!(key["masked"].as_str().unwrap().starts_with("sk_test_…"));
        assert!(key.get("secret").is_none() && key.get("secret_hash").is_none());
    }
    let support_id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "support")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.delete(&format!("/v1/api-keys/{support_id}")).await;
    problem(
        api.with_key(&support)
            .send(Method::GET, "/v1/accounts", None)
            .await,
        StatusCode::UNAUTHORIZED,
        "api_key_revoked",
    )
    .await;
    assert_eq!(Role::Support.as_str(), "support");
}

#[tokio::test]
async fn updates_deletes_pagination_and_the_audit_trail() {
    let (api, _) = start().await;
    let account: Value = api.post("/v1/accounts", &acme()).await;
    let path = format!("/v1/accounts/{}", account["id"].as_str().unwrap());
    let patch = json!({"name": null, "timezone": "Asia/Tokyo", "metadata": {"tier": "gold"}});
    let patched = api.patch(&path, &patch).await;
    assert_eq!(patched["name"], Value::Null);
    assert_eq!(patched["timezone"], "Asia/Tokyo");
    assert_eq!(patched["version"], 2);

    api.delete(&path).await;
    let again = api
        .send(Method::PATCH, &path, Some(&json!({"name": "x"})))
        .await;
    problem(again, StatusCode::CONFLICT, "account_deleted").await;
    let still_readable: Value = api.get(&path).await;
    assert!(still_readable["deleted_at"].is_string());

    let audit: Value = api
        .send(
            Method::GET,
            &format!(
                "/v1/audit-log?entity_id={}",
                account["id"].as_str().unwrap()
            ),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let records = audit["data"].as_array().unwrap();
    assert_eq!(
        records
            .iter()
            .map(|r| r["action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["delete", "update", "create"]
    );
    assert_eq!(
        records[1]["changes"]["timezone"],
        json!({"before": "UTC", "after": "Asia/Tokyo"})
    );
    assert_eq!(records[1]["actor"]["role"], "admin");
    assert!(records[1]["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req_"));

    for i in 0..5 {
        let body = json!({"email": format!("p{i}@acme.test"), "currency": "usd"});
        assert_eq!(
            api.send(Method::POST, "/v1/accounts", Some(&body))
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    let first: Value = api.get("/v1/accounts?limit=3").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 3);
    assert_eq!(first["has_more"], true);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = api
        .get(&format!("/v1/accounts?limit=3&starting_after={cursor}"))
        .await;
    assert_eq!(second["data"].as_array().unwrap().len(), 2);
    assert_eq!(second["has_more"], false);
    assert_eq!(second["next_cursor"], Value::Null);
    let by_email: Value = api.get("/v1/accounts?email=P3@ACME.TEST").await;
    assert_eq!(by_email["data"][0]["email"], "p3@acme.test");
}

#[tokio::test]
async fn health_openapi_and_docs_need_no_key() {
    let (api, _) = start().await;
    for path in ["/health", "/health/ready", "/docs"] {
        let response = api.anonymous().send(Method::GET, path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let spec = api.anonymous().get("/v1/openapi.json").await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/accounts",
        "/v1/accounts/{id}",
        "/v1/api-keys",
        "/v1/api-keys/{id}",
        "/v1/audit-log",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(spec["components"]["schemas"]["NewAccount"]["example"].is_object());
}

/// Issue 13, item 10: a body with a second JSON value after the first is refused as
/// malformed, and nothing is created (before, the first value was taken and the rest
/// ignored).
#[tokio::test]
async fn a_body_with_trailing_json_is_refused_and_writes_nothing() {
    let (api, _) = start().await;
    let response = api
        .request(Method::POST, "/v1/accounts")
        .header("content-type", "application/json")
        .body(r#"{"email":"trail@example.com","currency":"usd"}{"is_admin":true}"#)
        .send()
        .await
        .unwrap();
    let refused = problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    assert_eq!(refused["param"], "body");
    assert!(api
        .list("/v1/accounts?email=trail@example.com")
        .await
        .is_empty());
    // White space after the value is still fine.
    let created = api
        .request(Method::POST, "/v1/accounts")
        .header("content-type", "application/json")
        .body("{\"email\":\"trail@example.com\",\"currency\":\"usd\"}\n  ")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
}

/// Issue 13, item 9: errors axum or the body limit used to answer in plain text or with an
/// empty body are problems: a method the route does not have, a path that is not UTF-8,
/// and bodies over the limit on every kind of body (JSON, optional JSON), whose answer
/// also says the connection closes (the rest of the body is left unread).
#[tokio::test]
async fn errors_outside_the_handlers_are_problems() {
    let (api, _) = start().await;
    let response = api.send(Method::PUT, "/v1/accounts", None).await;
    problem(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;

    let response = api.send(Method::GET, "/v1/accounts/%ff%fe", None).await;
    let refused = problem(response, StatusCode::BAD_REQUEST, "invalid_path").await;
    assert_eq!(refused["param"], "path");

    // Over axum's own 2 MiB limit, which used to answer `text/plain`.
    let huge = vec![b' '; 3 * 1024 * 1024];
    for path in [
        "/v1/accounts",
        "/v1/events/evt_01JD0000000000000000000000/resend",
        "/v1/webhook-endpoints/we_01JD0000000000000000000000/rotate-secret",
    ] {
        let response = api
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["connection"], "close", "{path}");
        problem(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    }
}

/// Issue 13, item 9: too many or too large headers used to get hyper's empty 431.
#[tokio::test]
async fn oversized_headers_are_problems_that_close_the_connection() {
    let (api, _) = start().await;
    let many = (0..150).fold(api.request(Method::GET, "/v1/accounts"), |request, i| {
        request.header(format!("x-extra-{i}"), "1")
    });
    let huge = api
        .request(Method::GET, "/v1/accounts")
        .header("x-large", "a".repeat(40 * 1024));
    for request in [many, huge] {
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["connection"], "close");
        problem(
            response,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
        )
        .await;
    }
    // Up to the limit is served as usual.
    let within = (0..90).fold(api.request(Method::GET, "/v1/accounts"), |request, i| {
        request.header(format!("x-extra-{i}"), "1")
    });
    assert_eq!(within.send().await.unwrap().status(), StatusCode::OK);
}

/// Issue 13, item 11: text that becomes part of a DynamoDB key is bounded in bytes, on
/// writes and on lookups; 255 emoji (1,020 bytes) used to overflow the external id's
/// uniqueness key, and 3,000-character filters the lookups' keys.
#[tokio::test]
async fn text_in_keys_is_bounded_in_bytes() {
    let (api, _) = start().await;
    let emoji = |n: usize| "😀".repeat(n);
    let mut account = acme();
    account["external_id"] = json!(emoji(255));
    let response = api.send(Method::POST, "/v1/accounts", Some(&account)).await;
    let refused = problem(response, StatusCode::BAD_REQUEST, "too_long").await;
    assert_eq!(refused["param"], "external_id");
    assert!(api.list("/v1/accounts").await.is_empty(), "nothing written");
    // 63 emoji are 252 bytes: fine, and found again by it.
    account["external_id"] = json!(emoji(63));
    let created = api.created("/v1/accounts", &account).await;
    let encoded = emoji(63)
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect::<String>();
    let found = api
        .list(&format!("/v1/accounts?external_id={encoded}"))
        .await;
    assert_eq!(found[0]["id"], created["id"]);

    let long = "a".repeat(3000);
    for (path, param) in [
        (format!("/v1/accounts?external_id={long}"), "external_id"),
        (format!("/v1/accounts?email={long}@acme.test"), "email"),
        (format!("/v1/audit-log?entity_id={long}"), "entity_id"),
        (
            format!("/v1/audit-log?starting_after={long}"),
            "starting_after",
        ),
        (format!("/v1/events?resource={long}"), "resource"),
        (
            format!("/v1/entitlements/check?account={long}&metric=api_calls"),
            "account",
        ),
        (
            format!("/v1/entitlements/check?account=user-1&metric={long}"),
            "metric",
        ),
    ] {
        let response = api.send(Method::GET, &path, None).await;
        let refused = problem(response, StatusCode::BAD_REQUEST, "too_long").await;
        assert_eq!(refused["param"], param);
    }
}

/// Issue 13, item 12: every query parameter of every operation is read or refused: `limit`
/// on the lists that are not paginated used to be ignored (every item, 200); the cards of
/// an account that does not exist used to be an empty list; a negative quantity used to be
/// `allowed`.
#[tokio::test]
async fn list_parameters_are_validated() {
    let (api, _) = start().await;
    let plan = api
        .created(
            "/v1/plans",
            json!({"code": "basic", "name": "Basic", "interval": {"unit": "month"},
                "charges": {"recurring_fee": {"prices": {"usd": {"model": "per_unit", "unit_price": "10"}}}}}),
        )
        .await;
    let account = api.created("/v1/accounts", acme()).await;
    for path in [
        format!(
            "/v1/plans/{}/versions?limit=abc",
            plan["id"].as_str().unwrap()
        ),
        format!(
            "/v1/accounts/{}/payment-methods?limit=abc",
            account["id"].as_str().unwrap()
        ),
        "/v1/accounts?limit=abc".to_owned(),
    ] {
        let response = api.send(Method::GET, &path, None).await;
        let refused = problem(response, StatusCode::BAD_REQUEST, "invalid_query").await;
        assert_eq!(refused["param"], "limit", "{path}");
    }
    // A parameter no operation declares is not silently ignored either.
    let response = api.send(Method::GET, "/v1/plans?colour=red", None).await;
    let refused = problem(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_eq!(refused["param"], "colour");

    let response = api
        .send(
            Method::GET,
            "/v1/accounts/acct_01JD0000000000000000000000/payment-methods",
            None,
        )
        .await;
    problem(response, StatusCode::NOT_FOUND, "resource_missing").await;
    let cards = api
        .get(&format!(
            "/v1/accounts/{}/payment-methods",
            account["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(cards["data"], json!([]));

    let response = api
        .send(
            Method::GET,
            "/v1/entitlements/check?account=user-1&metric=api_calls&quantity=-1",
            None,
        )
        .await;
    let refused = problem(response, StatusCode::BAD_REQUEST, "invalid_quantity").await;
    assert_eq!(refused["param"], "quantity");
}
