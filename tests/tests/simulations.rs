//! Issue 18, "for plans with many subscriptions it runs as a job and answers with a link to
//! the result": a simulation over more live subscriptions than a request prices answers 202
//! with the job, the billing worker prices it a chunk at a time, and the result is what the
//! request would have answered. Chunks delivered twice at once, or a job that saved its chunk
//! but could not queue the next, count each subscription once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use billing_app::billing::SimulationJobs;
use billing_app::ports::{BillingJob, BillingQueue, StoreError};
use billing_app::App;
use billing_domain::kernel::ids::TenantId;
use billing_memory::MemoryBillingQueue;
use billing_tests::api::Api;
use billing_tests::Races;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Seven subscriptions priced three to a chunk: chunks of 3, 3 and 1.
const PER_REQUEST: usize = 3;

/// A plan at $49/€45 a seat with seven subscriptions (one to four seats, every third with a
/// 20 % coupon, in both currencies) and the version to simulate ($59/€52 from 15 Jan 2099,
/// moving existing subscribers). Answers the plan and the version's body.
async fn seven_subscriptions(api: &Api) -> (String, Value) {
    api.patch(
        "/v1/settings/limits",
        json!({"per_key_per_hour": 1_000_000, "burst_per_second": 1_000_000}),
    )
    .await;
    let plan = api
        .created(
            "/v1/plans",
            json!({"code": "seats", "name": "Seats", "interval": {"unit": "month"},
                   "charges": {"recurring_fee": {"prices": {
                       "usd": {"model": "per_unit", "unit_price": "49"},
                       "eur": {"model": "per_unit", "unit_price": "45"}}}}}),
        )
        .await;
    let plan = plan["id"].as_str().unwrap().to_owned();
    api.created(
        "/v1/coupons",
        json!({"code": "TWENTY", "percent_off": "20", "duration": "forever"}),
    )
    .await;
    for n in 0..7 {
        let currency = if n % 2 == 0 { "usd" } else { "eur" };
        let account = api
            .post(
                "/v1/accounts",
                json!({"email": format!("c{n}@acme.test"), "currency": currency}),
            )
            .await;
        let account = account["id"].as_str().unwrap().to_owned();
        api.post(
            &format!("/v1/accounts/{account}/payment-methods"),
            json!({"payment_method": "tok_visa"}),
        )
        .await;
        let mut body = json!({"account": account, "plan": plan, "quantity": 1 + n % 4});
        if n % 3 == 0 {
            body["coupon"] = json!("TWENTY");
        }
        api.created("/v1/subscriptions", body).await;
    }
    let version = json!({"effective_from": "2099-01-15T00:00:00Z", "migrate_existing": true,
        "charges": {"recurring_fee": {"prices": {
            "usd": {"model": "per_unit", "unit_price": "59"},
            "eur": {"model": "per_unit", "unit_price": "52"}}}}});
    (plan, version)
}

/// The same app pricing `PER_REQUEST` subscriptions a request (and a job a chunk) and
/// handing bigger simulations to `queue`, and it served to the same tenant (`api`'s key).
async fn with_jobs(app: &App, api: &Api, queue: Arc<dyn BillingQueue>) -> (App, Api) {
    let jobs = app.clone().with_simulation_jobs(SimulationJobs {
        queue: Some(queue),
        per_request: PER_REQUEST,
    });
    let served = Api::new(billing_tests::serve(jobs.clone()).await, api.key().unwrap());
    (jobs, served)
}

/// What a simulation answers that does not depend on when it ran.
fn numbers(simulation: &Value) -> (Value, Value, Value) {
    (
        simulation["version"]["number"].clone(),
        simulation["currencies"].clone(),
        simulation["subscriptions"].clone(),
    )
}

/// Runs the jobs `queue` holds (and those they queue) through the billing worker's use case
/// until none is left; each is delivered `deliveries` times at once.
async fn work_off(app: &App, tenant: TenantId, queue: &MemoryBillingQueue, deliveries: usize) {
    loop {
        let jobs = queue.take();
        if jobs.is_empty() {
            return;
        }
        for job in jobs {
            let runs: Vec<_> = (0..deliveries)
                .map(|_| {
                    let (app, job) = (app.clone(), job.clone());
                    tokio::spawn(async move { app.billing.run_billing_jobs(tenant, &[job]).await })
                })
                .collect();
            for run in runs {
                for result in run.await.unwrap() {
                    result.unwrap();
                }
            }
        }
    }
}

/// 202 with the job and its `Location`; running until the worker has priced it; then
/// `completed` with the result the request prices when the plan is small enough.
async fn a_simulation_job_answers_what_the_request_would(app: App) {
    let (api, tenant) = Api::start(app.clone(), "Simulated Co").await;
    let (plan, version) = seven_subscriptions(&api).await;
    let path = format!("/v1/plans/{plan}/versions/simulate?threshold_percent=20");
    let priced = api.post(&path, version.clone()).await;
    assert_eq!(priced["subscriptions"].as_array().unwrap().len(), 7);

    let queue = Arc::new(MemoryBillingQueue::default());
    let (worker, jobs) = with_jobs(&app, &api, queue.clone()).await;
    let response = jobs.send(Method::POST, &path, Some(&version)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let started: Value = response.json().await.unwrap();
    assert_eq!(started["status"], "running", "{started}");
    assert_eq!(started["url"], location.as_str());
    assert!(location.starts_with("/v1/simulations/sim_"), "{location}");
    assert_eq!(started["result"], Value::Null);
    let running = api.get(&location).await;
    assert_eq!(
        (&running["status"], &running["subscriptions_priced"]),
        (&json!("running"), &json!(0))
    );

    work_off(&worker, tenant.id, &queue, 1).await;
    let done = api.get(&location).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["subscriptions_priced"], 7);
    assert_eq!(numbers(&done["result"]), numbers(&priced));
    assert_eq!(
        api.get(&format!("/v1/plans/{plan}/versions")).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "a simulation publishes nothing"
    );
    let (status, _) = api
        .call(
            Method::GET,
            "/v1/simulations/sim_01JD3X7M2Q8Z5V6W9Y0A1B2C3D",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Every chunk delivered three times at once: each chunk is saved by one delivery, the
/// others find the job's version moved, and the result counts each subscription once.
async fn chunks_delivered_at_once_count_each_subscription_once(app: App, races: Races) {
    let (api, tenant) = Api::start(app.clone(), "Raced Co").await;
    let (plan, version) = seven_subscriptions(&api).await;
    let path = format!("/v1/plans/{plan}/versions/simulate");
    let priced = api.post(&path, version.clone()).await;
    let queue = Arc::new(MemoryBillingQueue::default());
    let (worker, jobs) = with_jobs(&app, &api, queue.clone()).await;
    let started = jobs.post(&path, version).await;
    races.begin();
    work_off(&worker, tenant.id, &queue, 3).await;
    let done = api
        .get(&format!(
            "/v1/simulations/{}",
            started["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["subscriptions_priced"], 7, "{done}");
    assert_eq!(numbers(&done["result"]), numbers(&priced));
}

/// The same on the memory store interleaving the deliveries at each operation: on one
/// thread they switch only at the store's yields, so each seed is one interleaving.
#[tokio::test]
async fn chunks_delivered_at_once_on_the_racing_memory_store() {
    for seed in 0..4 {
        let (app, racing) = billing_tests::racing_app(seed, false);
        chunks_delivered_at_once_count_each_subscription_once(app, Races::default()).await;
        assert!(
            racing.refused_of("SimulationStore", "save_simulation") > 0,
            "seed {seed}: no delivery lost the race to save its chunk: {:?}",
            racing.refused()
        );
    }
}

billing_tests::racing_on_the_stand_in!(chunks_delivered_at_once_count_each_subscription_once);

/// The billing queue refusing its second job: the request's first job goes through, the
/// first chunk's follow-up does not, so the job that saved that chunk fails and comes back.
struct RefusesSecond {
    sent: AtomicUsize,
    inner: MemoryBillingQueue,
}

#[async_trait]
impl BillingQueue for RefusesSecond {
    async fn enqueue(&self, jobs: &[BillingJob]) -> Result<(), StoreError> {
        if self.sent.fetch_add(1, Ordering::SeqCst) == 1 {
            return Err(StoreError::Unavailable("queue down".into()));
        }
        self.inner.enqueue(jobs).await
    }
}

async fn a_chunk_saved_whose_next_was_not_queued_is_not_priced_again(app: App) {
    let (api, tenant) = Api::start(app.clone(), "Flaky Co").await;
    let (plan, version) = seven_subscriptions(&api).await;
    let path = format!("/v1/plans/{plan}/versions/simulate");
    let priced = api.post(&path, version.clone()).await;
    let queue = Arc::new(RefusesSecond {
        sent: AtomicUsize::new(0),
        inner: MemoryBillingQueue::default(),
    });
    let (worker, jobs) = with_jobs(&app, &api, queue.clone()).await;
    let started = jobs.post(&path, version).await;
    let id = started["id"].as_str().unwrap().to_owned();
    let job = BillingJob::Simulation {
        tenant: tenant.id,
        simulation: billing_domain::kernel::ids::SimulationId::parse(&id, "id").unwrap(),
    };
    // The request's job, delivered: it prices and saves chunk 0, then cannot queue chunk 1.
    let delivery = std::slice::from_ref(&job);
    assert_eq!(queue.inner.take(), delivery);
    let first = worker.billing.run_billing_jobs(tenant.id, delivery).await;
    assert!(first[0].is_err(), "{first:?}");
    let after_first = api.get(&format!("/v1/simulations/{id}")).await;
    assert_eq!(after_first["subscriptions_priced"], PER_REQUEST);
    // Redelivered, it goes on from chunk 1 and queues the rest.
    let again = worker.billing.run_billing_jobs(tenant.id, delivery).await;
    assert!(again[0].is_ok(), "{again:?}");
    work_off(&worker, tenant.id, &queue.inner, 1).await;
    let done = api.get(&format!("/v1/simulations/{id}")).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["subscriptions_priced"], 7);
    assert_eq!(numbers(&done["result"]), numbers(&priced));
}

billing_tests::on_both_stores!(
    a_simulation_job_answers_what_the_request_would,
    a_chunk_saved_whose_next_was_not_queued_is_not_priced_again,
);
