//! `Idempotency-Key`s that outlive their request, over real HTTP on both stores: a claim
//! whose holder died is taken over after its lease, a request whose client hung up still
//! records its answer for the retry, and a panicking handler gives its key back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{from_fn, Next};
use axum::routing::post;
use axum::{Json, Router};
use billing_app::kernel::idempotency::DEFAULT_LEASE;
use billing_app::ports::{AccountFilter, IdempotencyClaim, PageRequest, Store};
use billing_app::{App, Caller};
use billing_tests::api::{problem, Api};
use billing_tests::clock::ManualClock;
use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Notify;

fn account() -> Value {
    json!({"email": "billing@acme.test", "currency": "usd"})
}

/// A holder that claimed a key and died (a Lambda timeout) blocks the key for its lease
/// only: before, the retry waits (409); after, it runs once and is then replayed.
async fn a_claim_whose_holder_died_is_taken_over_after_its_lease(store: Arc<dyn Store>) {
    let clock = ManualClock::at(Timestamp::now());
    let app = billing_tests::app_with_clock(store, clock.clone());
    let (api, tenant) = Api::start(app.clone(), "Acme").await;
    let body = serde_json::to_vec(&account()).unwrap();
    let fingerprint =
        billing_http::idempotency::fingerprint(&http::Method::POST, "/v1/accounts", &body);
    assert_eq!(
        app.idempotency
            .claim_idempotency_key(tenant.id, "k", &fingerprint, "died-mid-request")
            .await
            .unwrap(),
        IdempotencyClaim::Claimed
    );
    let send = || api.post_idempotent("/v1/accounts", "k", &account()).send();

    clock.advance(DEFAULT_LEASE - SignedDuration::from_secs(1));
    let waiting = send().await.unwrap();
    let in_use = problem(waiting, StatusCode::CONFLICT, "idempotency_key_in_use").await;
    assert_eq!(in_use["param"], "Idempotency-Key");

    clock.advance(SignedDuration::from_secs(2));
    let taken_over = send().await.unwrap();
    assert_eq!(taken_over.status(), StatusCode::CREATED);
    let created: Value = taken_over.json().await.unwrap();
    let replay = send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), created);
    assert_eq!(api.list("/v1/accounts").await.len(), 1);
}

/// The steps of the slow route below, seen from the test.
#[derive(Default)]
struct Gate {
    started: Notify,
    open: Notify,
    /// The server dropped the request's future: its client hung up.
    dropped: Notify,
}

struct SignalDrop(Arc<Gate>);

impl Drop for SignalDrop {
    fn drop(&mut self) {
        self.0.dropped.notify_one();
    }
}

/// `POST /slow` creates an account once the test opens the gate; `POST /panic` panics on
/// its first call and creates an account on the next. Both run inside the API's own
/// request handling ([`billing_http::handling`]), as `caller`.
async fn serve_test_routes(app: App, caller: Caller, gate: Arc<Gate>) -> String {
    let create = |app: App, caller: Caller| async move {
        let input = serde_json::from_value(account()).unwrap();
        let created = app.customers.create_account(&caller, input).await.unwrap();
        (StatusCode::CREATED, Json(created))
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let routes = Router::new()
        .route(
            "/slow",
            post({
                let (gate, caller) = (gate.clone(), caller.clone());
                move |State(app): State<App>| async move {
                    gate.started.notify_one();
                    gate.open.notified().await;
                    create(app, caller).await
                }
            }),
        )
        .route(
            "/panic",
            post({
                let caller = caller.clone();
                move |State(app): State<App>| async move {
                    assert!(calls.fetch_add(1, Ordering::SeqCst) > 0, "a bug");
                    create(app, caller).await
                }
            }),
        );
    let router = billing_http::handling(routes, &app)
        .layer(from_fn(move |mut req: Request, next: Next| {
            req.extensions_mut().insert(caller.clone());
            next.run(req)
        }))
        .layer(from_fn(move |req: Request, next: Next| {
            let signal = SignalDrop(gate.clone());
            async move {
                let response = next.run(req).await;
                drop(signal);
                response
            }
        }))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// The client hangs up while its request is being handled: the work still finishes and
/// its answer is recorded, so the retry gets that answer instead of running it again.
async fn a_request_whose_client_hung_up_is_replayed_to_its_retry(app: App) {
    let caller = billing_tests::admin(&app, "Acme").await;
    let gate = Arc::new(Gate::default());
    let base = serve_test_routes(app.clone(), caller.clone(), gate.clone()).await;
    let api = Api::new(base, "unused");
    let send = || api.post_idempotent("/slow", "hung-up", &json!({})).send();

    let client = tokio::spawn(send());
    gate.started.notified().await;
    client.abort();
    gate.dropped.notified().await;
    gate.open.notify_one();

    // The retry waits its turn (409) while the abandoned work finishes, then replays it;
    // a handler run a second time would wait on the gate forever.
    let mut retry = send().await.unwrap();
    for _ in 0..1000 {
        if retry.status() != StatusCode::CONFLICT {
            break;
        }
        tokio::task::yield_now().await;
        retry = send().await.unwrap();
    }
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let replayed: Value = retry.json().await.unwrap();
    let accounts = app
        .customers
        .list_accounts(&caller, &AccountFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(accounts.items.len(), 1, "the work ran once");
    assert_eq!(replayed["id"], accounts.items[0].id.to_string());
}

/// A bug's panic answers 500 problem+json, and the key is free for the retry.
async fn a_panicking_handler_answers_500_and_frees_its_key(app: App) {
    let caller = billing_tests::admin(&app, "Acme").await;
    let base = serve_test_routes(app.clone(), caller, Arc::new(Gate::default())).await;
    let api = Api::new(base, "unused");
    let send = || api.post_idempotent("/panic", "k", &json!({})).send();
    let failed = send().await.expect("an answer, not a dropped connection");
    problem(failed, StatusCode::INTERNAL_SERVER_ERROR, "internal_error").await;
    let retried = send().await.unwrap();
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    let again = api
        .request(Method::POST, "/panic")
        .header("idempotency-key", "k")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
}

billing_tests::on_both_stores!(
    a_claim_whose_holder_died_is_taken_over_after_its_lease,
    a_request_whose_client_hung_up_is_replayed_to_its_retry,
    a_panicking_handler_answers_500_and_frees_its_key,
);
