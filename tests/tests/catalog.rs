//! The catalog API over HTTP on the local stack: metrics, plans, versions, the price
//! calculator, and every bad-input path answering with the field at fault.

use billing_domain::customers::tenant::TenantMode;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

struct Api {
    base: String,
    http: Client,
    key: String,
}

impl Api {
    async fn start() -> Self {
        let app = billing_tests::dynamo_app().await;
        let (_, issued) = app
            .customers
            .create_tenant("Catalog Co", TenantMode::Sandbox)
            .await
            .unwrap();
        Self {
            base: billing_tests::serve(app).await,
            http: Client::new(),
            key: issued.secret,
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> Response {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    async fn created(&self, path: &str, body: &Value) -> Value {
        let response = self.post(path, body).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }
}

async fn rejected(response: Response, status: StatusCode) -> (String, String) {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    (
        body["code"].as_str().unwrap().to_owned(),
        body["param"].as_str().unwrap_or("").to_owned(),
    )
}

fn api_calls() -> Value {
    json!({"code": "api_calls", "name": "API calls", "aggregation": "count"})
}

fn pro_plan() -> Value {
    json!({
        "code": "pro", "name": "Pro", "interval": {"unit": "month"}, "trial_days": 14,
        "charges": {
            "recurring_fee": {"prices": {
                "usd": {"model": "flat_fee", "amount": 4900},
                "eur": {"model": "flat_fee", "amount": 4500},
                "jpy": {"model": "flat_fee", "amount": 7500}}},
            "usage_charges": [{"metric": "api_calls", "prices": {
                "usd": {"model": "graduated", "tiers": [{"up_to": "1000", "unit_price": "0"}, {"up_to": null, "unit_price": "0.002"}]},
                "eur": {"model": "graduated", "tiers": [{"up_to": "1000", "unit_price": "0"}, {"up_to": null, "unit_price": "0.0018"}]},
                "jpy": {"model": "graduated", "tiers": [{"up_to": "1000", "unit_price": "0"}, {"up_to": null, "unit_price": "0.3"}]}}}]
        }
    })
}

#[tokio::test]
async fn metrics_are_created_listed_renamed_and_unique_by_code() {
    let api = Api::start().await;
    let metric = api.created("/v1/metrics", &api_calls()).await;
    assert!(metric["id"].as_str().unwrap().starts_with("bm_"));
    assert_eq!(metric["aggregation"], "count");
    let id = metric["id"].as_str().unwrap();

    let (code, param) = rejected(
        api.post("/v1/metrics", &api_calls()).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!((code.as_str(), param.as_str()), ("duplicate_value", "code"));

    let renamed = api
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/metrics/{id}"),
            Some(&json!({"name": "Calls"})),
        )
        .await;
    assert_eq!(renamed.status(), StatusCode::OK);
    let immutable = api
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/metrics/{id}"),
            Some(&json!({"aggregation": "sum"})),
        )
        .await;
    assert_eq!(
        rejected(immutable, StatusCode::BAD_REQUEST).await,
        ("unknown_field".into(), "aggregation".into())
    );

    let storage = json!({"code": "storage", "name": "Storage", "aggregation": "max", "field": "gb", "recurring": true});
    api.created("/v1/metrics", &storage).await;
    let list = api.get("/v1/metrics?limit=1").await;
    assert_eq!(list["has_more"], true);
    let rest = api
        .get(&format!(
            "/v1/metrics?starting_after={}",
            list["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rest["data"][0]["code"], "storage");
    assert_eq!(api.get(&format!("/v1/metrics/{id}")).await["name"], "Calls");

    let no_field = json!({"code": "bytes", "name": "Bytes", "aggregation": "sum"});
    assert_eq!(
        rejected(
            api.post("/v1/metrics", &no_field).await,
            StatusCode::BAD_REQUEST
        )
        .await
        .1,
        "field"
    );
    let bad_enum = json!({"code": "x", "name": "X", "aggregation": "median"});
    assert_eq!(
        rejected(
            api.post("/v1/metrics", &bad_enum).await,
            StatusCode::BAD_REQUEST
        )
        .await
        .1,
        "aggregation"
    );
}

#[tokio::test]
async fn plans_carry_versioned_multi_currency_prices() {
    let api = Api::start().await;
    api.created("/v1/metrics", &api_calls()).await;
    let plan = api.created("/v1/plans", &pro_plan()).await;
    let id = plan["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("plan_"));
    assert_eq!(plan["current_version"], 1);
    assert_eq!(plan["prices"]["number"], 1);
    assert_eq!(plan["prices"]["currencies"], json!(["eur", "jpy", "usd"]));
    assert_eq!(
        plan["prices"]["recurring_fee"]["prices"]["jpy"]["amount"],
        7500
    );

    let (code, param) = rejected(
        api.post("/v1/plans", &pro_plan()).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!((code.as_str(), param.as_str()), ("duplicate_value", "code"));

    // A new version in the future: new subscriptions keep getting version 1 until then.
    let next = json!({
        "effective_from": "2099-01-01T00:00:00Z", "migrate_existing": true,
        "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 5900}}}}
    });
    let v2 = api
        .created(&format!("/v1/plans/{id}/versions"), &next)
        .await;
    assert_eq!(
        (v2["number"].as_u64(), v2["migrate_existing"].as_bool()),
        (Some(2), Some(true))
    );
    let fetched = api.get(&format!("/v1/plans/{id}")).await;
    assert_eq!(fetched["current_version"], 2);
    assert_eq!(
        fetched["prices"]["number"], 1,
        "version 2 is not in effect yet"
    );
    let versions = api.get(&format!("/v1/plans/{id}/versions")).await;
    assert_eq!(
        versions["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["number"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    let earlier = json!({"effective_from": "2098-01-01T00:00:00Z",
        "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 1}}}}});
    let (code, param) = rejected(
        api.post(&format!("/v1/plans/{id}/versions"), &earlier)
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        (code.as_str(), param.as_str()),
        ("effective_from_out_of_order", "effective_from")
    );

    let count = api.get(&format!("/v1/plans/{id}/subscription-count")).await;
    assert_eq!(count["total"], 0);
    assert_eq!(count["by_version"].as_array().unwrap().len(), 2);

    // Patch, deactivate (existing subscriptions continue; no new versions), filter lists.
    let patched = api
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/plans/{id}"),
            Some(&json!({"trial_days": 30})),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let basic = json!({"code": "basic", "name": "Basic", "interval": {"unit": "year"},
        "charges": {"recurring_fee": {"prices": {"usd": {"model": "per_unit", "unit_price": "10"}}}}});
    api.created("/v1/plans", &basic).await;
    let deactivated = api
        .send(reqwest::Method::DELETE, &format!("/v1/plans/{id}"), None)
        .await;
    assert_eq!(deactivated.status(), StatusCode::OK);
    let active = api.get("/v1/plans?active=true").await;
    assert_eq!(
        active["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["code"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["basic"]
    );
    let inactive = api.get("/v1/plans?active=false").await;
    assert_eq!(inactive["data"][0]["trial_days"], 30);
    let refused = api.post(&format!("/v1/plans/{id}/versions"), &next).await;
    assert_eq!(
        rejected(refused, StatusCode::CONFLICT).await.0,
        "plan_inactive"
    );

    // Every change is audited and emitted.
    let audit = api.get(&format!("/v1/audit-log?entity_id={id}")).await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "update", "update", "create"]);
}

#[tokio::test]
async fn bad_plans_name_the_field_at_fault() {
    let api = Api::start().await;
    api.created("/v1/metrics", &api_calls()).await;
    let with = |charges: Value| json!({"code": "p", "name": "P", "interval": {"unit": "month"}, "charges": charges});
    let cases = [
        (
            with(
                json!({"recurring_fee": {"prices": {"usd": {"model": "graduated", "tiers": []}}}}),
            ),
            "invalid_charge",
            "charges.recurring_fee.prices.usd.tiers",
        ),
        (
            with(
                json!({"recurring_fee": {"prices": {"usx": {"model": "flat_fee", "amount": 100}}}}),
            ),
            "invalid_currency",
            "charges.recurring_fee.prices.usx",
        ),
        (
            with(
                json!({"recurring_fee": {"prices": {"usd": {"model": "per_unit", "unit_price": "-1"}}}}),
            ),
            "invalid_charge",
            "charges.recurring_fee.prices.usd.unit_price",
        ),
        (
            with(
                json!({"usage_charges": [{"prices": {"usd": {"model": "per_unit", "unit_price": "1"}}}]}),
            ),
            "missing_field",
            "charges.usage_charges[0].metric",
        ),
        (
            with(
                json!({"usage_charges": [{"metric": "ghost", "prices": {"usd": {"model": "per_unit", "unit_price": "1"}}}]}),
            ),
            "unknown_metric",
            "charges.usage_charges[0].metric",
        ),
        (
            with(
                json!({"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 100, "colour": 1}}}}),
            ),
            "unknown_field",
            "charges.recurring_fee.prices.usd.colour",
        ),
        (
            with(
                json!({"recurring_fee": {"prices": {"usd": {"model": "sliding", "amount": 100}}}}),
            ),
            "invalid_value",
            "charges.recurring_fee.prices.usd.model",
        ),
        (
            json!({"code": "p", "name": "P", "interval": {"unit": "month", "count": 0}, "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 1}}}}}),
            "invalid_interval",
            "interval.count",
        ),
        (
            json!({"code": "P P", "name": "P", "interval": {"unit": "month"}, "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 1}}}}}),
            "invalid_code",
            "code",
        ),
    ];
    for (body, code, param) in cases {
        let (got_code, got_param) =
            rejected(api.post("/v1/plans", &body).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            (got_code.as_str(), got_param.as_str()),
            (code, param),
            "{body}"
        );
    }
    assert_eq!(
        api.get("/v1/plans").await["data"],
        json!([]),
        "nothing was written"
    );
}

#[tokio::test]
async fn the_price_calculator_explains_its_arithmetic() {
    let api = Api::start().await;
    // 12,500 calls: 1,000 × $0.01 + 9,000 × $0.005 + 2,500 × $0.001 = $10 + $45 + $2.50 = $57.50.
    let inline = json!({"currency": "usd", "quantity": "12500", "charge": {"model": "graduated", "tiers": [
        {"up_to": "1000", "unit_price": "0.01"}, {"up_to": "10000", "unit_price": "0.005"}, {"up_to": null, "unit_price": "0.001"}]}});
    let response = api.post("/v1/prices/preview", &inline).await;
    assert_eq!(response.status(), StatusCode::OK);
    let priced: Value = response.json().await.unwrap();
    assert_eq!(priced["amount"], json!({"amount": 5750, "currency": "usd"}));
    assert_eq!(priced["formatted"], "$57.50");
    assert_eq!(priced["derivation"]["steps"].as_array().unwrap().len(), 3);

    api.created("/v1/metrics", &api_calls()).await;
    let plan = api.created("/v1/plans", &pro_plan()).await;
    let of_plan = json!({"plan_id": plan["id"], "metric": "api_calls", "currency": "jpy", "quantity": "3000"});
    let priced: Value = api
        .post("/v1/prices/preview", &of_plan)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        priced["amount"],
        json!({"amount": 600, "currency": "jpy"}),
        "2,000 × ¥0.3"
    );
    let fee = json!({"plan_id": plan["id"], "currency": "eur", "quantity": "1"});
    let priced: Value = api
        .post("/v1/prices/preview", &fee)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(priced["amount"]["amount"], 4500);

    let not_offered = json!({"plan_id": plan["id"], "currency": "gbp", "quantity": "1"});
    assert_eq!(
        rejected(
            api.post("/v1/prices/preview", &not_offered).await,
            StatusCode::BAD_REQUEST
        )
        .await
        .0,
        "currency_not_offered"
    );
    let both = json!({"plan_id": plan["id"], "currency": "usd", "quantity": "1", "charge": {"model": "flat_fee", "amount": 1}});
    assert_eq!(
        rejected(
            api.post("/v1/prices/preview", &both).await,
            StatusCode::BAD_REQUEST
        )
        .await
        .0,
        "invalid_source"
    );
    // Floats never reach money: a JSON number with a fraction is refused (a tagged charge
    // reports its own path, so the param is the charge).
    let float = json!({"currency": "usd", "quantity": "1", "charge": {"model": "per_unit", "unit_price": 0.1}});
    assert_eq!(
        rejected(
            api.post("/v1/prices/preview", &float).await,
            StatusCode::BAD_REQUEST
        )
        .await,
        ("invalid_value".into(), "charge".into())
    );
}
