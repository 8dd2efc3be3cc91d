//! A local stand-in for the VIES REST API (`POST /check-vat-number`), answering each VAT id
//! as a test sets it: registered, not registered, or the two ways VIES says it cannot
//! answer (a 503, and a 200 carrying `actionSucceed: false` with `MS_UNAVAILABLE`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

/// How the fake answers a VAT id (by its compact form, `FR23334175221`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vies {
    Registered,
    NotRegistered,
    /// HTTP 503.
    Down,
    /// HTTP 200 with `{"actionSucceed": false, "errorWrappers": [{"error": "MS_UNAVAILABLE"}]}`.
    MemberStateUnavailable,
}

#[derive(Default)]
struct Registry {
    answers: HashMap<String, Vies>,
    /// Every request body received, in order.
    requests: Vec<Value>,
}

type Shared = Arc<Mutex<Registry>>;

pub struct FakeVies {
    /// What the adapter is given as its API base.
    pub url: String,
    state: Shared,
}

impl FakeVies {
    pub async fn start() -> Self {
        let state: Shared = Arc::default();
        let router = axum::Router::new()
            .route("/check-vat-number", axum::routing::post(check))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake VIES");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, state }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on, answers `vat_id` so (unknown ids are not registered).
    pub fn answer(&self, vat_id: &str, answer: Vies) {
        self.registry().answers.insert(vat_id.to_owned(), answer);
    }

    /// Every request body received, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.registry().requests.clone()
    }
}

async fn check(State(state): State<Shared>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let mut registry = state.lock().unwrap_or_else(|e| e.into_inner());
    registry.requests.push(body.clone());
    let (country, number) = (
        body["countryCode"].as_str().unwrap_or_default(),
        body["vatNumber"].as_str().unwrap_or_default(),
    );
    let answer = registry
        .answers
        .get(&format!("{country}{number}"))
        .copied()
        .unwrap_or(Vies::NotRegistered);
    let record = |valid: bool| {
        json!({"countryCode": country, "vatNumber": number, "requestDate": "2027-01-01T00:00:00.000Z",
               "valid": valid, "name": if valid { "ACME" } else { "---" }, "address": "---"})
    };
    match answer {
        Vies::Registered => (StatusCode::OK, Json(record(true))),
        Vies::NotRegistered => (StatusCode::OK, Json(record(false))),
        Vies::Down => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"actionSucceed": false, "errorWrappers": [{"error": "SERVICE_UNAVAILABLE"}]}),
            ),
        ),
        Vies::MemberStateUnavailable => (
            StatusCode::OK,
            Json(
                json!({"actionSucceed": false, "errorWrappers": [{"error": "MS_UNAVAILABLE",
                        "message": "The application at the Member State is not replying"}]}),
            ),
        ),
    }
}
