//! Events and webhooks end to end: signed deliveries to a real HTTP receiver through the
//! local stack's queue, the backoff schedule on an injected clock, the outbox sweep after
//! a "crash" between commit and publish, and the SSRF rules.

use std::sync::Arc;
use std::time::Duration;

use billing_app::ports::*;
use billing_app::{events::Fanout, jobs::Sweeper};
use billing_app::{App, Caller};
use billing_aws::{AwsDispatch, Config, DynamoStore, HttpSender};
use billing_domain::customers::access::{NewApiKey, Role};
use billing_domain::customers::account::NewAccount;
use billing_domain::customers::tenant::TenantMode;
use billing_domain::events::webhook::{self, DeliveryStatus, NewWebhookEndpoint};
use billing_domain::kernel::deployment::Deployment;
use billing_memory::MemoryStore;
use billing_tests::api::Api;
use billing_tests::clock::ManualClock;
use billing_tests::webhooks::{Receiver, RecordingDispatch};
use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use serde_json::{json, Value};

async fn caller(app: &App, mode: TenantMode) -> (Caller, String) {
    let (_, issued) = app
        .customers
        .create_tenant("Hooks Inc", mode)
        .await
        .unwrap();
    let caller = Caller::of_key(&issued.key, None);
    (caller, issued.secret)
}

fn endpoint(url: &str, events: &[&str]) -> NewWebhookEndpoint {
    NewWebhookEndpoint {
        url: url.into(),
        enabled_events: events.iter().map(|e| e.to_string()).collect(),
        description: None,
    }
}

fn account(email: &str) -> NewAccount {
    NewAccount {
        email: email.into(),
        currency: "usd".into(),
        ..Default::default()
    }
}

/// The local stack around `table` (queues, the event bus) and a webhook queue of this
/// test's own, so tests running at once never consume each other's messages.
async fn local_queue(table: &str) -> (aws_config::SdkConfig, String) {
    let sdk = Config::local(table, billing_tests::aws_endpoint())
        .sdk_config()
        .await;
    // Once per process: tests run concurrently and the stack's resources are shared.
    static STACK: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    STACK
        .get_or_init(|| async { billing_infra::stack::ensure(&sdk, table).await.unwrap() })
        .await;
    let queue = format!("wh-{}", ulid::Ulid::new().to_string().to_lowercase());
    aws_sdk_sqs::Client::new(&sdk)
        .create_queue()
        .queue_name(&queue)
        .send()
        .await
        .unwrap();
    (sdk, queue)
}

#[tokio::test]
async fn signed_events_reach_each_subscribed_endpoint_once_through_the_local_stack() {
    let store = billing_tests::dynamo_store().await;
    let (sdk, queue) = local_queue(store.table()).await;
    let local = billing_infra::workers::Local::with_queue(
        &sdk,
        store.table(),
        &queue,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let _workers = local.spawn(1, Duration::from_millis(500));
    let (_, key) = caller(&local.app, TenantMode::Sandbox).await;
    let api = Api::new(billing_tests::serve(local.app.clone()).await, key);

    let (a, url_a) = Receiver::start(vec![]).await;
    let (b, url_b) = Receiver::start(vec![]).await;
    let (c, url_c) = Receiver::start(vec![]).await;
    let mut secrets = Vec::new();
    for (url, events) in [
        (&url_a, json!(["*"])),
        (&url_b, json!(["account.*"])),
        (&url_c, json!(["api_key.*"])),
    ] {
        let created = api
            .created(
                "/v1/webhook-endpoints",
                json!({"url": url, "enabled_events": events}),
            )
            .await;
        assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
        secrets.push(created);
    }
    // The secret is shown once: reading the endpoint never shows it.
    let read = api
        .get(&format!(
            "/v1/webhook-endpoints/{}",
            secrets[0]["id"].as_str().unwrap()
        ))
        .await;
    assert!(read.get("secret").is_none() && !read.to_string().contains("whsec_"));

    let acct = api
        .post(
            "/v1/accounts",
            json!({"email": "ada@example.com", "currency": "eur"}),
        )
        .await;
    // A subscribes to everything: it also hears of the three endpoints being created.
    a.wait_for(4).await;
    b.wait_for(1).await;
    // Let the sweeper run a few times: nothing is delivered twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut a_types: Vec<String> = a
        .bodies()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    a_types.sort();
    assert_eq!(
        a_types,
        [
            "account.created",
            "webhook_endpoint.created",
            "webhook_endpoint.created",
            "webhook_endpoint.created"
        ]
    );
    assert_eq!(b.bodies().len(), 1);
    assert!(
        c.bodies().is_empty(),
        "C is not subscribed to account events"
    );
    let event = &b.bodies()[0];
    assert_eq!(event["type"], "account.created");
    assert_eq!(event["object"], "event");
    assert_eq!(event["data"]["id"], acct["id"]);
    assert_eq!(event["livemode"], false);
    a.assert_signed_with(secrets[0]["secret"].as_str().unwrap());
    b.assert_signed_with(secrets[1]["secret"].as_str().unwrap());

    // The event log: filter by type and resource, read one, and the delivery log.
    let listed = api
        .get(&format!(
            "/v1/events?type=account.created&resource={}",
            acct["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["id"], event["id"]);
    let one = api
        .get(&format!("/v1/events/{}", event["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        one, *event,
        "the API and the webhook show the same envelope"
    );
    let all = api.get("/v1/events?limit=100").await;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        4,
        "3 endpoints and 1 account"
    );
    let b_id = secrets[1]["id"].as_str().unwrap();
    let log = api
        .get(&format!("/v1/webhook-endpoints/{b_id}/deliveries"))
        .await;
    let delivery = &log["data"][0];
    assert_eq!(delivery["status"], "succeeded");
    assert_eq!(delivery["event_id"], event["id"]);
    assert_eq!(delivery["attempts"][0]["response_status"], 200);

    // Resend: a new delivery, to B only.
    let resent = api
        .send(
            Method::POST,
            &format!("/v1/events/{}/resend", event["id"].as_str().unwrap()),
            Some(&json!({"endpoint": b_id})),
        )
        .await;
    assert_eq!(resent.status(), 202);
    b.wait_for(2).await;
    assert_eq!(b.bodies()[1]["id"], event["id"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.bodies().len(), 4, "A was not part of the resend");

    // Rotation: the new secret signs at once, the old one still does during the overlap.
    let rotated = api
        .post(
            &format!("/v1/webhook-endpoints/{b_id}/rotate-secret"),
            json!({}),
        )
        .await;
    api.post(
        "/v1/accounts",
        json!({"email": "bob@example.com", "currency": "eur"}),
    )
    .await;
    b.wait_for(3).await;
    let last = b.received.lock().unwrap()[2].clone();
    let header = last.0[webhook::SIGNATURE_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    for secret in [
        rotated["secret"].as_str().unwrap(),
        secrets[1]["secret"].as_str().unwrap(),
    ] {
        webhook::verify(
            &header,
            last.1.as_bytes(),
            secret,
            Timestamp::now().as_second(),
            300,
        )
        .unwrap();
    }
}

async fn a_receiver_failing_twice_gets_three_attempts_on_the_backoff_schedule(
    store: Arc<dyn Store>,
) {
    let start: Timestamp = "2026-05-04T10:00:00Z".parse().unwrap();
    let clock = ManualClock::at(start);
    let app = billing_tests::app_with_clock(store.clone(), clock.clone());
    let dispatch = Arc::new(RecordingDispatch::default());
    let fanout = Fanout::new(
        app.events.clone(),
        dispatch.clone(),
        Arc::new(HttpSender::new(Deployment::Local)),
    );
    let (caller, _) = caller(&app, TenantMode::Sandbox).await;
    let (receiver, url) = Receiver::start(vec![500, 503]).await;
    let created = app
        .events
        .create_webhook_endpoint(&caller, endpoint(&url, &["account.created"]))
        .await
        .unwrap();
    app.customers
        .create_account(&caller, account("ada@example.com"))
        .await
        .unwrap();

    // The store publishes nothing after its commits here: the sweep publishes once the
    // grace is over.
    clock.advance(OUTBOX_GRACE);
    let report = Sweeper::new(
        app.clone(),
        dispatch.clone(),
        std::sync::Arc::new(billing_memory::MemoryBillingQueue::default()),
    )
    .sweep(100)
    .await
    .unwrap();
    assert_eq!(
        report.republished, 2,
        "the endpoint's and the account's events"
    );
    let (tenant, event) = dispatch
        .published
        .lock()
        .unwrap()
        .iter()
        .find(|(_, e)| e.event_type == "account.created")
        .cloned()
        .unwrap();
    let first_at = clock.now();
    let handled = fanout
        .handle(WebhookMessage::Event {
            tenant_id: tenant,
            event: event.clone(),
        })
        .await
        .unwrap();
    assert_eq!((handled.attempted, handled.delivered), (1, 0));
    // The same event fanned out again (a duplicate message) makes no second delivery.
    let again = fanout
        .handle(WebhookMessage::Event {
            tenant_id: tenant,
            event,
        })
        .await
        .unwrap();
    assert_eq!((again.attempted, again.skipped), (0, 1));

    for (n, status) in [(1usize, 503u16), (2, 200)] {
        let (job, delay) = dispatch.scheduled.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            delay,
            webhook::RETRY_DELAYS[n - 1],
            "short waits go on the queue delayed"
        );
        // A message arriving early (before its delay) does nothing.
        let early = fanout
            .handle(WebhookMessage::Deliver(job.clone()))
            .await
            .unwrap();
        assert_eq!(early.skipped, 1);
        clock.advance(delay);
        let report = fanout.handle(WebhookMessage::Deliver(job)).await.unwrap();
        assert_eq!(report.attempted, 1);
        assert_eq!(report.delivered, usize::from(status == 200));
    }
    assert_eq!(receiver.bodies().len(), 3);
    let deliveries = app
        .events
        .list_webhook_deliveries(&caller, created.endpoint.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert_eq!(d.status, DeliveryStatus::Succeeded);
    let at: Vec<Timestamp> = d.attempts.iter().map(|a| a.at).collect();
    assert_eq!(
        at,
        [
            first_at,
            first_at + webhook::RETRY_DELAYS[0],
            first_at + webhook::RETRY_DELAYS[0] + webhook::RETRY_DELAYS[1]
        ]
    );
    let statuses: Vec<Option<u16>> = d.attempts.iter().map(|a| a.response_status).collect();
    assert_eq!(statuses, [Some(500), Some(503), Some(200)]);
    // The endpoint recovered: no longer failing.
    let view = app
        .events
        .get_webhook_endpoint(&caller, created.endpoint.id)
        .await
        .unwrap();
    assert_eq!(view.failing_since, None);
    // The retries never needed the due index: nothing is due even a day later.
    clock.advance(SignedDuration::from_hours(24));
    assert!(store.due_items(clock.now(), 10).await.unwrap().is_empty());
}

async fn long_waits_come_back_through_the_due_index_and_a_dead_endpoint_is_disabled(
    store: Arc<dyn Store>,
) {
    let start: Timestamp = "2026-05-04T10:00:00Z".parse().unwrap();
    let clock = ManualClock::at(start);
    let app = billing_tests::app_with_clock(store.clone(), clock.clone());
    let dispatch = Arc::new(RecordingDispatch::default());
    let fanout = Fanout::new(
        app.events.clone(),
        dispatch.clone(),
        Arc::new(HttpSender::new(Deployment::Local)),
    );
    let sweeper = Sweeper::new(
        app.clone(),
        dispatch.clone(),
        std::sync::Arc::new(billing_memory::MemoryBillingQueue::default()),
    );
    let (caller, _) = caller(&app, TenantMode::Sandbox).await;
    let (receiver, url) = Receiver::start(vec![500; 100]).await;
    let created = app
        .events
        .create_webhook_endpoint(&caller, endpoint(&url, &["account.*"]))
        .await
        .unwrap();
    let mut attempts = 0;
    // Three days of events, each failing through its whole schedule.
    for day in 0..4 {
        app.customers
            .create_account(&caller, account(&format!("d{day}@example.com")))
            .await
            .unwrap();
        clock.advance(OUTBOX_GRACE);
        sweeper.sweep(100).await.unwrap();
        let events: Vec<_> = dispatch.published.lock().unwrap().drain(..).collect();
        for (tenant, event) in events {
            attempts += fanout
                .handle(WebhookMessage::Event {
                    tenant_id: tenant,
                    event,
                })
                .await
                .unwrap()
                .attempted;
        }
        // Play the schedule: queued short waits and swept long ones alike.
        loop {
            let jobs: Vec<_> = dispatch.scheduled.lock().unwrap().drain(..).collect();
            let due_next = store
                .due_items(clock.now() + SignedDuration::from_hours(13), 10)
                .await
                .unwrap();
            if jobs.is_empty() && due_next.is_empty() {
                break;
            }
            match jobs.first() {
                Some((_, delay)) => clock.advance(*delay),
                None => clock.advance(due_next[0].due_at.duration_since(clock.now())),
            }
            let swept = sweeper.sweep(100).await.unwrap();
            let queued: Vec<_> = dispatch.scheduled.lock().unwrap().drain(..).collect();
            assert!(swept.retries_queued <= queued.len());
            for (job, _) in jobs.into_iter().chain(queued) {
                attempts += fanout
                    .handle(WebhookMessage::Deliver(job))
                    .await
                    .unwrap()
                    .attempted;
            }
        }
        let view = app
            .events
            .get_webhook_endpoint(&caller, created.endpoint.id)
            .await
            .unwrap();
        if view.status == webhook::EndpointStatus::Disabled {
            assert!(day >= 2, "disabled only after days of failure");
            let disabled = app
                .events
                .list_events(
                    &caller,
                    &EventFilter {
                        event_type: Some("webhook_endpoint.disabled".into()),
                        resource_id: None,
                    },
                    &PageRequest::first(10),
                )
                .await
                .unwrap();
            assert_eq!(disabled.items.len(), 1);
            assert!(attempts >= 2 * webhook::MAX_ATTEMPTS as usize);
            let log = app
                .events
                .list_webhook_deliveries(&caller, created.endpoint.id, &PageRequest::first(10))
                .await
                .unwrap();
            assert!(log.items.iter().all(|d| d.status == DeliveryStatus::Failed));
            assert!(log
                .items
                .iter()
                .any(|d| d.attempts.len() == webhook::MAX_ATTEMPTS as usize));
            assert_eq!(receiver.bodies().len(), attempts);
            return;
        }
    }
    panic!("the endpoint was never disabled");
}

#[tokio::test]
async fn an_event_left_unpublished_by_a_crash_is_delivered_through_the_sweep() {
    // The API's store has no dispatcher: the commit happens, the publish never does —
    // exactly what a crash right after the commit leaves behind.
    let crashed = billing_tests::dynamo_store().await;
    let table = crashed.table().to_owned();
    let (sdk, queue) = local_queue(&table).await;
    let app = billing_tests::app_with_clock(Arc::new(crashed.clone()), Arc::new(SystemClock));
    let (caller, _) = caller(&app, TenantMode::Sandbox).await;
    let (receiver, url) = Receiver::start(vec![]).await;
    app.events
        .create_webhook_endpoint(&caller, endpoint(&url, &["account.created"]))
        .await
        .unwrap();
    let acct = app
        .customers
        .create_account(&caller, account("ada@example.com"))
        .await
        .unwrap();
    let events = app
        .events
        .list_events(&caller, &EventFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(events.items.len(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.bodies().is_empty(), "nothing was published");

    // The sweep, once the outbox grace is over (its clock runs ahead), publishes them.
    let later = ManualClock::at(Timestamp::now() + OUTBOX_GRACE);
    let dispatch = Arc::new(
        AwsDispatch::by_queue_name(&sdk, &queue, billing_infra::stack::EVENT_BUS)
            .await
            .unwrap(),
    );
    let swept_app = billing_tests::app_with_clock(
        Arc::new(DynamoStore::new(crashed.client().clone(), &table)),
        later,
    );
    let sweeper = Sweeper::new(
        swept_app,
        dispatch.clone(),
        std::sync::Arc::new(billing_memory::MemoryBillingQueue::default()),
    );
    let report = sweeper.sweep(100).await.unwrap();
    assert_eq!((report.republished, report.errors.len()), (2, 0));
    assert_eq!(
        sweeper.sweep(100).await.unwrap().republished,
        0,
        "published once"
    );

    let worker_app = billing_tests::app_with_clock(
        Arc::new(DynamoStore::new(crashed.client().clone(), &table)),
        Arc::new(SystemClock),
    );
    let fanout = Fanout::new(
        worker_app.events,
        dispatch,
        Arc::new(HttpSender::new(Deployment::Local)),
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .get_queue_url()
        .queue_name(&queue)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let consumer = tokio::spawn(billing_infra::workers::consume(sqs, url, move |event| {
        let fanout = fanout.clone();
        async move { webhook_fanout::handle(&fanout, event).await }
    }));
    receiver.wait_for(1).await;
    assert_eq!(receiver.bodies()[0]["data"]["id"], acct.id.to_string());
    consumer.abort();
}

/// Outbox items moved from beside their event (`T#{tenant}#NN`) to the tenant's outbox
/// partitions (`T#{tenant}#OUTBOX#NN`) without a migration: one written under the old
/// layout (its event's publish failed just before the change) is still found by the sweep,
/// published once, and deleted, and its event then reads published.
#[tokio::test]
async fn an_outbox_item_written_beside_its_event_is_still_swept_published_and_deleted() {
    use billing_aws::keys;
    let store = billing_tests::dynamo_store().await;
    let (client, table) = (store.client().clone(), store.table().to_owned());
    let app = billing_tests::app_with_clock(Arc::new(store.clone()), Arc::new(SystemClock));
    let (caller, _) = caller(&app, TenantMode::Sandbox).await;
    let tenant = caller.tenant_id;
    app.customers
        .create_account(&caller, account("ada@example.com"))
        .await
        .unwrap();
    let filter = EventFilter {
        event_type: Some("account.created".into()),
        resource_id: None,
    };
    let event = app
        .events
        .list_events(&caller, &filter, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .remove(0);
    let id = event.id.to_string();
    let (outbox, beside_event) = (
        keys::outbox(tenant, &id),
        keys::outbox_beside_event(tenant, &id),
    );
    // The item as the store wrote it before: beside the event, due after the grace.
    client
        .delete_item()
        .table_name(&table)
        .set_key(Some(outbox.primary()))
        .send()
        .await
        .unwrap();
    let mut old = beside_event.all();
    old.extend(keys::due(&beside_event, event.created + OUTBOX_GRACE));
    old.insert(
        keys::TTL.to_owned(),
        aws_sdk_dynamodb::types::AttributeValue::N(
            (event.created + EVENT_RETENTION).as_second().to_string(),
        ),
    );
    client
        .put_item()
        .table_name(&table)
        .set_item(Some(old))
        .send()
        .await
        .unwrap();
    let stored = store.get_event(tenant, event.id).await.unwrap().unwrap();
    assert!(!stored.published, "an old outbox item still holds it");

    let dispatch = Arc::new(RecordingDispatch::default());
    let sweeper = Sweeper::new(
        billing_tests::app_with_clock(
            Arc::new(store.clone()),
            ManualClock::at(Timestamp::now() + OUTBOX_GRACE),
        ),
        dispatch.clone(),
        Arc::new(billing_memory::MemoryBillingQueue::default()),
    );
    let report = sweeper.sweep(100).await.unwrap();
    assert_eq!((report.republished, report.errors.len()), (1, 0));
    let published = dispatch.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1);
    assert_eq!((published[0].0, published[0].1.id), (tenant, event.id));
    assert_eq!(
        sweeper.sweep(100).await.unwrap().republished,
        0,
        "published once"
    );
    for key in [&beside_event, &outbox] {
        let left = client
            .get_item()
            .table_name(&table)
            .set_key(Some(key.primary()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item;
        assert_eq!(left, None, "{} / {} deleted", key.pk, key.sk);
    }
    let stored = store.get_event(tenant, event.id).await.unwrap().unwrap();
    assert!(stored.published);
}

#[tokio::test]
async fn live_tenants_cannot_point_webhooks_at_internal_addresses() {
    // As deployed: the platform's own loopback is internal too.
    let app = App::new(
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        Arc::new(billing_aws::SandboxGateway::new()),
    );
    let (_, live_key) = caller(&app, TenantMode::Live).await;
    let (_, sandbox_key) = caller(&app, TenantMode::Sandbox).await;
    let live = Api::new(billing_tests::serve(app.clone()).await, live_key);
    let sandbox = live.with_key(&sandbox_key);
    let create = |api: &Api, url: &str| {
        let body = json!({"url": url, "enabled_events": ["*"]});
        let api = api.clone();
        async move {
            api.send(Method::POST, "/v1/webhook-endpoints", Some(&body))
                .await
        }
    };
    for (url, code) in [
        ("https://169.254.169.254/latest/meta-data/", "forbidden_url"),
        ("https://[fd00:ec2::254]/", "forbidden_url"),
        ("https://10.0.0.7/hook", "forbidden_url"),
        ("https://192.168.1.20/hook", "forbidden_url"),
        ("https://127.0.0.1/hook", "forbidden_url"),
        ("https://[::1]/hook", "forbidden_url"),
        ("https://localhost/hook", "forbidden_url"),
        ("https://metadata.google.internal/", "forbidden_url"),
        ("http://127.0.0.1:8080/hook", "insecure_url"),
        ("http://hooks.example.com/hook", "insecure_url"),
    ] {
        let response = create(&live, url).await;
        assert_eq!(response.status(), 400, "{url}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], code, "{url}: {problem}");
        assert_eq!(problem["param"], "url");
        assert!(!problem["hint"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        create(&live, "https://hooks.example.com/billing")
            .await
            .status(),
        201
    );
    // A sandbox gets no further inside (the loopback: a_deployed_platform_…).
    assert_eq!(
        create(&sandbox, "https://10.0.0.7/hook").await.status(),
        400
    );
    // Unknown event types are refused with the index at fault.
    let bad = live
        .send(
            Method::POST,
            "/v1/webhook-endpoints",
            Some(&json!({"url": "https://hooks.example.com/x", "enabled_events": ["account.created", "acount.updated"]})),
        )
        .await;
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["param"], "enabled_events[1]");

    // The sender re-checks at delivery time, so a stored URL cannot reach inside either.
    let outcome = HttpSender::new(Deployment::Deployed)
        .send(&WebhookRequest {
            url: "https://169.254.169.254/latest".into(),
            body: "{}".into(),
            signature: "t=0".into(),
            livemode: true,
            event_id: billing_domain::kernel::ids::EventId::from_ulid(ulid::Ulid::new()),
            delivery_id: billing_domain::kernel::ids::DeliveryId::from_ulid(ulid::Ulid::new()),
        })
        .await;
    assert_eq!(outcome.status, None);
    assert!(outcome.error.unwrap().contains("not reachable"));
}

/// Issue 13, item 3: the loopback is the deployment's to allow, never the tenant mode's.
#[tokio::test]
async fn a_deployed_platform_never_registers_or_sends_to_the_loopback_a_local_one_does() {
    let (receiver, url) = Receiver::start(vec![200]).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let register = |deployment: Deployment| {
        let url = url.clone();
        async move {
            let app = App::new(
                Arc::new(MemoryStore::new()),
                Arc::new(SystemClock),
                Arc::new(billing_aws::SandboxGateway::new()),
            )
            .with_deployment(deployment);
            let (_, key) = caller(&app, TenantMode::Sandbox).await;
            let api = Api::new(billing_tests::serve(app).await, key);
            let mut codes = Vec::new();
            for url in [
                url.as_str(),
                "https://127.0.0.1/hook",
                "http://localhost:9/hook",
                "https://[::1]/hook",
            ] {
                let body = json!({"url": url, "enabled_events": ["*"]});
                let response = api
                    .send(Method::POST, "/v1/webhook-endpoints", Some(&body))
                    .await;
                let status = response.status().as_u16();
                let problem: Value = response.json().await.unwrap();
                codes.push((status, problem["code"].as_str().map(str::to_owned)));
            }
            codes
        }
    };
    let deployed = register(Deployment::Deployed).await;
    assert_eq!(
        deployed,
        [
            (400, Some("insecure_url".into())),
            (400, Some("forbidden_url".into())),
            (400, Some("insecure_url".into())),
            (400, Some("forbidden_url".into())),
        ],
        "a sandbox tenant of a deployed platform"
    );
    let local = register(Deployment::Local).await;
    assert!(local.iter().all(|(status, _)| *status == 201), "{local:?}");

    // At send time too: a URL stored before the rules tightened does not reach it.
    let request = |url: &str| WebhookRequest {
        url: url.into(),
        body: "{}".into(),
        signature: "t=0".into(),
        livemode: false,
        event_id: billing_domain::kernel::ids::EventId::from_ulid(ulid::Ulid::new()),
        delivery_id: billing_domain::kernel::ids::DeliveryId::from_ulid(ulid::Ulid::new()),
    };
    let refused = HttpSender::new(Deployment::Deployed)
        .send(&request(&url))
        .await;
    assert_eq!(refused.status, None);
    assert!(refused.error.unwrap().contains("https"));
    assert!(receiver.bodies().is_empty(), "nothing reached the receiver");
    let sent = HttpSender::new(Deployment::Local)
        .send(&request(&url))
        .await;
    assert_eq!(sent.status, Some(200), "{:?}", sent.error);
    assert_eq!(receiver.bodies().len(), 1);
}

#[tokio::test]
async fn the_catalog_is_in_the_openapi_document_and_events_carry_no_secrets() {
    let app = billing_tests::memory_app();
    let base = billing_tests::serve(app.clone()).await;
    let doc: Value = reqwest::get(format!("{base}/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let catalog = doc["x-event-types"].as_array().unwrap();
    assert_eq!(
        catalog.len(),
        billing_domain::events::types::EventType::ALL.len()
    );
    for entry in catalog {
        let name = format!("event.{}", entry["type"].as_str().unwrap());
        let schema = &doc["components"]["schemas"][&name];
        assert!(schema["allOf"].is_array(), "{name} has a schema");
    }
    assert_eq!(
        doc["components"]["schemas"]["event.account.created"]["allOf"][1]["properties"]["data"]
            ["$ref"],
        "#/components/schemas/Account"
    );

    let (caller, _) = caller(&app, TenantMode::Sandbox).await;
    app.customers
        .create_api_key(&caller, &NewApiKey::new(Role::Support, Some("ci")))
        .await
        .unwrap();
    let created = app
        .events
        .create_webhook_endpoint(&caller, endpoint("http://127.0.0.1:9/x", &["*"]))
        .await
        .unwrap();
    app.events
        .rotate_webhook_secret(&caller, created.endpoint.id, None)
        .await
        .unwrap();
    let events = app
        .events
        .list_events(&caller, &EventFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(events.items.len(), 3);
    let text = serde_json::to_string(&events.items).unwrap();
    assert!(
        !text.contains("whsec_") && !text.contains("secret_hash"),
        "{text}"
    );
}

#[tokio::test]
async fn an_endpoint_subscribed_to_invoice_created_is_accepted_and_receives_it() {
    let clock = ManualClock::at("2026-05-04T10:00:00Z".parse().unwrap());
    let app = App::new(
        Arc::new(MemoryStore::new()),
        clock.clone(),
        Arc::new(billing_aws::SandboxGateway::new()),
    )
    .with_deployment(Deployment::Local);
    let dispatch = Arc::new(RecordingDispatch::default());
    let fanout = Fanout::new(
        app.events.clone(),
        dispatch.clone(),
        Arc::new(HttpSender::new(Deployment::Local)),
    );
    let base = billing_tests::serve(app.clone()).await;
    let (_, key) = caller(&app, TenantMode::Sandbox).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let (receiver, url) = Receiver::start(vec![]).await;
    let created = post(
        "/v1/webhook-endpoints",
        json!({"url": url, "enabled_events": ["invoice.created"]}),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201, "invoice.created is subscribable");
    let acct: Value = post(
        "/v1/accounts",
        json!({"email": "ada@example.com", "currency": "usd"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let invoice = post(
        "/v1/invoices",
        json!({"account": acct["id"], "lines": [{"description": "Setup", "amount": 5000}]}),
    )
    .await
    .unwrap();
    assert_eq!(invoice.status(), 201);
    let invoice: Value = invoice.json().await.unwrap();

    clock.advance(OUTBOX_GRACE);
    Sweeper::new(
        app.clone(),
        dispatch.clone(),
        Arc::new(billing_memory::MemoryBillingQueue::default()),
    )
    .sweep(100)
    .await
    .unwrap();
    let published = dispatch.published.lock().unwrap().clone();
    for (tenant, event) in published {
        fanout
            .handle(WebhookMessage::Event {
                tenant_id: tenant,
                event,
            })
            .await
            .unwrap();
    }
    receiver.wait_for(1).await;
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1, "only the subscribed type: {bodies:?}");
    assert_eq!(bodies[0]["type"], "invoice.created");
    assert_eq!(bodies[0]["data"]["id"], invoice["id"]);
}

billing_tests::on_both_stores!(
    a_receiver_failing_twice_gets_three_attempts_on_the_backoff_schedule,
    long_waits_come_back_through_the_due_index_and_a_dead_endpoint_is_disabled,
);
