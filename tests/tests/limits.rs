//! Rate limits and the API key lifecycle over HTTP, on both stores: 429 with `Retry-After`
//! over a key's hourly limit, the tenant's ceiling and the per-second burst, `RateLimit-*`
//! headers on every answer; keys that expire, roll with an overlap, and note their last
//! use at most once a minute. Then a burst from 20 concurrent clients over four API
//! instances sharing one table, which never gets past the limit, with the DynamoDB
//! requests it cost.

use std::sync::Arc;

use billing_app::ports::Store;
use billing_tests::api::{problem, Api};
use billing_tests::clock::ManualClock;
use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

/// Half past ten: the hour's window ends in 1800 s.
const HALF_PAST: &str = "2027-03-01T10:30:00Z";

async fn start(store: Arc<dyn Store>, at: &str) -> (Api, Arc<ManualClock>) {
    let clock = ManualClock::at(at.parse().unwrap());
    let app = billing_tests::app_with_clock(store, clock.clone());
    let (api, _) = Api::start(app, "Limited").await;
    (api, clock)
}

fn header(response: &Response, name: &str) -> u64 {
    response.headers()[name]
        .to_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A new key with `body`'s terms; its secret.
async fn key(api: &Api, body: Value) -> (String, Value) {
    let created = api.created("/v1/api-keys", body).await;
    (created["secret"].as_str().unwrap().to_owned(), created)
}

async fn get_limits(api: &Api) -> Response {
    api.send(Method::GET, "/v1/settings/limits", None).await
}

/// A key limited to 100 requests an hour gets them, each answer saying how many are
/// left, then 429 `rate_limited` with `Retry-After` until the window ends; the next
/// window admits it again.
async fn a_key_over_its_hourly_limit_gets_429_until_the_window_ends(store: Arc<dyn Store>) {
    let (admin, clock) = start(store, HALF_PAST).await;
    // This clock stands still: lift the per-second burst off the way.
    admin
        .patch("/v1/settings/limits", json!({"burst_per_second": 1000}))
        .await;
    let (secret, created) = key(
        &admin,
        json!({"role": "finance_viewer", "rate_limit_per_hour": 100}),
    )
    .await;
    assert_eq!(created["rate_limit_per_hour"], 100);
    let api = admin.with_key(&secret);
    for n in 1..=100u64 {
        let answer = get_limits(&api).await;
        assert_eq!(answer.status(), StatusCode::OK, "request {n}");
        assert_eq!(header(&answer, "ratelimit-limit"), 100);
        assert_eq!(header(&answer, "ratelimit-remaining"), 100 - n);
        assert_eq!(header(&answer, "ratelimit-reset"), 1800);
    }
    let refused = get_limits(&api).await;
    assert_eq!(header(&refused, "retry-after"), 1800);
    assert_eq!(header(&refused, "ratelimit-remaining"), 0);
    problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Other keys count apart.
    assert_eq!(get_limits(&admin).await.status(), StatusCode::OK);
    clock.advance(SignedDuration::from_mins(30));
    let next_window = get_limits(&api).await;
    assert_eq!(next_window.status(), StatusCode::OK);
    assert_eq!(header(&next_window, "ratelimit-remaining"), 99);
    assert_eq!(header(&next_window, "ratelimit-reset"), 3600);
}

/// `tenant_per_hour` caps all keys together; `burst_per_second` caps one key in a second.
async fn the_tenant_ceiling_and_the_burst_limit_all_keys_and_one_second(store: Arc<dyn Store>) {
    let (admin, clock) = start(store, HALF_PAST).await;
    let (viewer, _) = key(&admin, json!({"role": "finance_viewer"})).await;
    let viewer = admin.with_key(&viewer);
    let settings = admin
        .patch(
            "/v1/settings/limits",
            json!({"tenant_per_hour": 6, "burst_per_second": 2}),
        )
        .await;
    assert_eq!(
        settings,
        json!({"per_key_per_hour": 1000, "burst_per_second": 2, "tenant_per_hour": 6})
    );
    // The admin's two requests so far were in this second.
    clock.advance(SignedDuration::from_secs(1));
    // Two a second per key: the third in the same second waits one second.
    for api in [&admin, &viewer] {
        assert_eq!(get_limits(api).await.status(), StatusCode::OK);
        assert_eq!(get_limits(api).await.status(), StatusCode::OK);
        let burst = get_limits(api).await;
        assert_eq!(header(&burst, "retry-after"), 1);
        problem(burst, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    }
    clock.advance(SignedDuration::from_secs(1));
    // Six for the tenant this hour (the PATCH came before the ceiling): four are spent.
    assert_eq!(get_limits(&admin).await.status(), StatusCode::OK);
    let last = get_limits(&viewer).await;
    assert_eq!(last.status(), StatusCode::OK);
    assert_eq!(
        header(&last, "ratelimit-remaining"),
        0,
        "the tenant's is lower"
    );
    clock.advance(SignedDuration::from_secs(1));
    let over = get_limits(&viewer).await;
    assert_eq!(header(&over, "retry-after"), 1800 - 3);
    problem(over, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let over = get_limits(&admin).await;
    problem(over, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

/// Limits are checked (1 to 100,000,000) and only key managers may change them.
async fn limits_are_checked_and_guarded(store: Arc<dyn Store>) {
    let (admin, _) = start(store, HALF_PAST).await;
    for (body, param) in [
        (json!({"per_key_per_hour": 0}), "per_key_per_hour"),
        (json!({"burst_per_second": 100_000_001}), "burst_per_second"),
        (json!({"tenant_per_hour": 0}), "tenant_per_hour"),
    ] {
        let answer = admin
            .send(Method::PATCH, "/v1/settings/limits", Some(&body))
            .await;
        let problem = problem(answer, StatusCode::BAD_REQUEST, "invalid_rate_limit").await;
        assert_eq!(problem["param"], param);
    }
    let answer = admin
        .send(
            Method::POST,
            "/v1/api-keys",
            Some(&json!({"role": "support", "rate_limit_per_hour": 0})),
        )
        .await;
    problem(answer, StatusCode::BAD_REQUEST, "invalid_rate_limit").await;
    let support = admin.with_key(&admin.key_with_role("support").await);
    let answer = support
        .send(
            Method::PATCH,
            "/v1/settings/limits",
            Some(&json!({"per_key_per_hour": 10})),
        )
        .await;
    problem(answer, StatusCode::FORBIDDEN, "forbidden").await;
    let audit = admin.get("/v1/audit-log").await;
    assert!(
        !audit.to_string().contains("limit_settings"),
        "nothing refused was written"
    );
    admin
        .patch("/v1/settings/limits", json!({"tenant_per_hour": 100}))
        .await;
    let cleared = admin
        .patch("/v1/settings/limits", json!({"tenant_per_hour": null}))
        .await;
    assert_eq!(cleared["tenant_per_hour"], Value::Null);
    assert_eq!(admin.get("/v1/settings/limits").await, cleared);
    let events = admin.get("/v1/events?type=limit_settings.updated").await;
    assert_eq!(events["data"].as_array().unwrap().len(), 2);
}

/// A key with `expires_at` works until then and answers 401 `api_key_expired` after; a
/// revoked key answers 401 `api_key_revoked`; an unknown one 401 `unauthenticated`.
async fn expired_and_revoked_keys_get_distinct_401s(store: Arc<dyn Store>) {
    let (admin, clock) = start(store, HALF_PAST).await;
    let past = admin
        .send(
            Method::POST,
            "/v1/api-keys",
            Some(&json!({"role": "support", "expires_at": "2027-03-01T10:29:59Z"})),
        )
        .await;
    problem(past, StatusCode::BAD_REQUEST, "invalid_expires_at").await;
    let (expiring, created) = key(
        &admin,
        json!({"role": "support", "expires_at": "2027-03-01T11:30:00Z"}),
    )
    .await;
    assert_eq!(created["expires_at"], "2027-03-01T11:30:00Z");
    let (revoked, revoked_key) = key(&admin, json!({"role": "support"})).await;
    let expiring = admin.with_key(&expiring);
    assert_eq!(get_limits(&expiring).await.status(), StatusCode::OK);
    admin
        .delete(&format!(
            "/v1/api-keys/{}",
            revoked_key["id"].as_str().unwrap()
        ))
        .await;
    let answer = get_limits(&admin.with_key(&revoked)).await;
    problem(answer, StatusCode::UNAUTHORIZED, "api_key_revoked").await;
    clock.advance(SignedDuration::from_hours(1));
    let answer = get_limits(&expiring).await;
    let body = problem(answer, StatusCode::UNAUTHORIZED, "api_key_expired").await;
    assert!(
        body["detail"].as_str().unwrap().contains("11:30:00"),
        "{body}"
    );
    let unknown = format!("{}x", &revoked[..revoked.len() - 1]);
    let answer = get_limits(&admin.with_key(&unknown)).await;
    problem(answer, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

/// Rolling a key gives a successor with the same role, name and limit at once; the old
/// key works for the overlap, then answers `api_key_expired`. Both changes are audited and
/// announced; a revoked key cannot be rolled.
async fn a_rolled_key_works_for_its_overlap_then_expires(store: Arc<dyn Store>) {
    let (admin, clock) = start(store, HALF_PAST).await;
    let (old_secret, old) = key(
        &admin,
        json!({"role": "billing_admin", "name": "ci", "rate_limit_per_hour": 500}),
    )
    .await;
    let id = old["id"].as_str().unwrap();
    let rolled = admin
        .created(
            &format!("/v1/api-keys/{id}/roll"),
            json!({"expires_in_seconds": 600}),
        )
        .await;
    assert_eq!(rolled["rolled"]["id"], id);
    assert_eq!(rolled["rolled"]["expires_at"], "2027-03-01T10:40:00Z");
    assert_ne!(rolled["id"], id);
    assert_eq!(rolled["role"], "billing_admin");
    assert_eq!(rolled["name"], "ci");
    assert_eq!(rolled["rate_limit_per_hour"], 500);
    let new_key = admin.with_key(rolled["secret"].as_str().unwrap());
    let old_key = admin.with_key(&old_secret);
    assert_eq!(get_limits(&new_key).await.status(), StatusCode::OK);
    assert_eq!(get_limits(&old_key).await.status(), StatusCode::OK);
    clock.advance(SignedDuration::from_secs(600));
    problem(
        get_limits(&old_key).await,
        StatusCode::UNAUTHORIZED,
        "api_key_expired",
    )
    .await;
    assert_eq!(get_limits(&new_key).await.status(), StatusCode::OK);
    // An expired key is not rolled again; the successor can be, and with no body.
    let answer = admin
        .send(Method::POST, &format!("/v1/api-keys/{id}/roll"), None)
        .await;
    problem(answer, StatusCode::CONFLICT, "invalid_transition").await;
    let audit = admin.get(&format!("/v1/audit-log?entity_id={id}")).await;
    assert_eq!(audit["data"][0]["action"], "update");
    assert_eq!(
        audit["data"][0]["changes"]["expires_at"]["after"],
        "2027-03-01T10:40:00Z"
    );
    let events = admin.get("/v1/events?type=api_key.rolled").await;
    assert_eq!(events["data"][0]["data"]["id"], id);
    assert!(
        events["data"][0]["data"].get("secret_hash").is_none(),
        "no hash leaves the platform"
    );
    let new_id = rolled["id"].as_str().unwrap();
    let created = admin
        .get(&format!("/v1/audit-log?entity_id={new_id}"))
        .await;
    assert_eq!(created["data"][0]["action"], "create");
    let answer = admin
        .send(
            Method::POST,
            &format!("/v1/api-keys/{new_id}/roll"),
            Some(&json!({"expires_in_seconds": 604_801})),
        )
        .await;
    problem(answer, StatusCode::BAD_REQUEST, "invalid_overlap").await;
    admin.delete(&format!("/v1/api-keys/{new_id}")).await;
    let answer = admin
        .send(Method::POST, &format!("/v1/api-keys/{new_id}/roll"), None)
        .await;
    problem(answer, StatusCode::CONFLICT, "already_revoked").await;
}

/// `last_used_at` moves on the first use and then at most once a minute.
async fn last_used_at_is_written_at_most_once_a_minute(store: Arc<dyn Store>) {
    let (admin, clock) = start(store, HALF_PAST).await;
    let (secret, created) = key(&admin, json!({"role": "support"})).await;
    assert_eq!(created["last_used_at"], Value::Null);
    let id = created["id"].as_str().unwrap().to_owned();
    let last_used = || async {
        let keys = admin.get("/v1/api-keys").await;
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id.as_str())
            .unwrap()["last_used_at"]
            .clone()
    };
    let api = admin.with_key(&secret);
    get_limits(&api).await;
    assert_eq!(last_used().await, HALF_PAST);
    clock.advance(SignedDuration::from_secs(59));
    get_limits(&api).await;
    assert_eq!(last_used().await, HALF_PAST, "within the minute: no write");
    clock.advance(SignedDuration::from_secs(1));
    get_limits(&api).await;
    assert_eq!(last_used().await, "2027-03-01T10:31:00Z");
}

billing_tests::on_both_stores!(
    a_key_over_its_hourly_limit_gets_429_until_the_window_ends,
    the_tenant_ceiling_and_the_burst_limit_all_keys_and_one_second,
    limits_are_checked_and_guarded,
    expired_and_revoked_keys_get_distinct_401s,
    a_rolled_key_works_for_its_overlap_then_expires,
    last_used_at_is_written_at_most_once_a_minute,
);

/// Twenty clients at once, spread over four API instances (each with its own shares and
/// caches) over one table, send 1,200 requests under the default 1,000 an hour: no more
/// than 1,000 are admitted, every answer carries the `RateLimit-*` headers and every
/// refusal `Retry-After`. Prints what was admitted and what the limiter cost in DynamoDB
/// requests (the README's figures).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_clients_over_four_instances_never_pass_the_limit() {
    const INSTANCES: usize = 4;
    const CLIENTS: usize = 20;
    const EACH: usize = 60;
    let counter: Arc<billing_infra::request_count::Counter> = Arc::default();
    let store: Arc<dyn Store> =
        Arc::new(billing_tests::counted_dynamo_store(counter.clone()).await);
    // A stopped clock at the start of an hour: the whole burst falls in one window.
    let clock = ManualClock::at("2027-03-01T10:00:00Z".parse::<Timestamp>().unwrap());
    let apps: Vec<_> = (0..INSTANCES)
        .map(|_| billing_tests::app_with_clock(store.clone(), clock.clone()))
        .collect();
    let (first, _) = Api::start(apps[0].clone(), "Burst").await;
    // The burst limit is per instance and per second, and this clock never moves: lift it.
    first
        .patch("/v1/settings/limits", json!({"burst_per_second": 100_000}))
        .await;
    let mut instances = vec![first.clone()];
    for app in &apps[1..] {
        let base = billing_tests::serve(app.clone()).await;
        instances.push(Api::new(base, first.key().expect("a key")));
    }
    // Warm each instance (its key, the tenant's limits, the key's first use) so that the
    // count is of the burst's steady state; with the PATCH, five requests of the window.
    for api in &instances {
        assert_eq!(get_limits(api).await.status(), StatusCode::OK);
    }
    let spent_before = 5;
    counter.start();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let api = instances[client % INSTANCES].clone();
        clients.spawn(async move {
            let (mut admitted, mut refused) = (0u32, 0u32);
            for _ in 0..EACH {
                let answer = get_limits(&api).await;
                assert_eq!(header(&answer, "ratelimit-limit"), 1000);
                assert!(header(&answer, "ratelimit-remaining") <= 1000);
                match answer.status() {
                    StatusCode::OK => admitted += 1,
                    StatusCode::TOO_MANY_REQUESTS => {
                        assert_eq!(header(&answer, "retry-after"), 3600);
                        refused += 1;
                    }
                    other => panic!("unexpected {other}"),
                }
            }
            (admitted, refused)
        });
    }
    let (mut admitted, mut refused) = (0u32, 0u32);
    while let Some(done) = clients.join_next().await {
        let (a, r) = done.unwrap();
        admitted += a;
        refused += r;
    }
    let requests = counter.stop();
    assert_eq!(admitted + refused, (CLIENTS * EACH) as u32);
    let left = 1000 - spent_before;
    assert!(admitted <= left, "{admitted} admitted: past the limit");
    // Unspent shares are the only loss: at most one claim (20) per concurrent client.
    assert!(
        admitted >= left - (CLIENTS as u32) * 20,
        "{admitted} admitted: too many shares left unspent"
    );
    let total: u64 = requests.values().sum();
    // Each admitted request's handler reads the settings once (a GetItem); the rest is
    // the limiter's claims: one per 20 admitted, plus a last one per concurrent client
    // that finds the count spent.
    let limiter = total - u64::from(admitted);
    println!(
        "burst: {admitted} admitted, {refused} refused of {} ({left} left in the window); \
         DynamoDB requests {requests:?}: {limiter} beyond the handlers' own, \
         {} per thousand API requests",
        CLIENTS * EACH,
        limiter * 1000 / (CLIENTS * EACH) as u64
    );
    assert!(
        limiter <= u64::from(left / 20) + CLIENTS as u64 * 2,
        "{limiter} DynamoDB requests for rate limiting 1200 requests"
    );
}
