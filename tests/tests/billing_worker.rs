//! The `billing-worker` handler: the sample SQS event, and real jobs billing exactly once
//! however often they are delivered.

use std::path::Path;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use billing_app::ports::{BillingJob, BillingQueue, InvoiceFilter, PageRequest};
use serde_json::json;

#[tokio::test]
async fn the_sample_event_reports_only_its_unreadable_record() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/billing-worker-sqs.json");
    let event: SqsEvent = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let app = billing_tests::memory_app();
    let response = billing_worker::handle(&app, event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    // The subscription job names nothing this store has: nothing is due, which is success.
    assert_eq!(failed, ["c2e8a0f4-1b3d-4e6f-9a7c-5d8b0e2f4a62"]);
}

fn message(id: &str, job: &BillingJob) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some(id.to_owned());
    message.body = Some(serde_json::to_string(job).unwrap());
    message
}

#[tokio::test]
async fn a_delivered_job_bills_what_is_due_once() {
    let store: std::sync::Arc<dyn billing_app::ports::Store> =
        std::sync::Arc::new(billing_tests::dynamo_store().await);
    let three_days_ago = jiff::Timestamp::now()
        - jiff::SignedDuration::from_hours(72)
        - jiff::SignedDuration::from_mins(1);
    let app = billing_tests::app_with_clock(
        store.clone(),
        billing_tests::clock::ManualClock::at(three_days_ago),
    );
    let caller = billing_tests::admin(&app, "Worker").await;
    let tenant = caller.tenant_id;
    // Created on a clock three days back: today the worker finds three renewals due.
    let sub = billing_tests::subscribe(
        &app,
        &caller,
        json!({"email": "w@acme.test", "currency": "eur"}),
        "day",
        100,
    )
    .await;
    let worker = billing_tests::app(store);
    let job = BillingJob::Subscription { tenant, id: sub.id };
    // The job arrives, then is delivered twice more (one in the same batch).
    let mut event = SqsEvent::default();
    event.records = (0..2).map(|i| message(&format!("m{i}"), &job)).collect();
    assert!(billing_worker::handle(&worker, event)
        .await
        .batch_item_failures
        .is_empty());
    let mut again = SqsEvent::default();
    again.records = vec![message("m2", &job)];
    assert!(billing_worker::handle(&worker, again)
        .await
        .batch_item_failures
        .is_empty());

    let filter = InvoiceFilter {
        subscription: Some(sub.id),
        ..Default::default()
    };
    let page = PageRequest::first(10);
    let invoices = worker
        .billing
        .list_invoices(&caller, &filter, &page)
        .await
        .unwrap()
        .items;
    assert_eq!(
        invoices.len(),
        4,
        "the first day plus three renewals, each once"
    );
    let mut numbers: Vec<String> = invoices.iter().filter_map(|i| i.number.clone()).collect();
    numbers.sort();
    assert_eq!(
        numbers,
        ["INV-000001", "INV-000002", "INV-000003", "INV-000004"]
    );
}

#[tokio::test]
async fn the_sweep_hands_due_subscriptions_and_advancing_clocks_to_the_worker() {
    let store: std::sync::Arc<dyn billing_app::ports::Store> =
        std::sync::Arc::new(billing_tests::dynamo_store().await);
    let yesterday = jiff::Timestamp::now()
        - jiff::SignedDuration::from_hours(24)
        - jiff::SignedDuration::from_mins(1);
    let past = billing_tests::app_with_clock(
        store.clone(),
        billing_tests::clock::ManualClock::at(yesterday),
    );
    let caller = billing_tests::admin(&past, "Sweep").await;
    let tenant = caller.tenant_id;
    let sub = billing_tests::subscribe(
        &past,
        &caller,
        json!({"email": "s@acme.test", "currency": "usd"}),
        "day",
        100,
    )
    .await;
    // A clock whose advance was asked for but not run (the request timed out, say).
    let now_app = billing_tests::app(store);
    let clock = now_app
        .billing
        .create_test_clock(&caller, None, yesterday)
        .await
        .unwrap();
    now_app
        .billing
        .begin_test_clock_advance(&caller, clock.id, jiff::Timestamp::now())
        .await
        .unwrap();

    let queue = std::sync::Arc::new(billing_memory::MemoryBillingQueue::default());
    let sweeper = billing_app::jobs::Sweeper::new(
        now_app.clone(),
        std::sync::Arc::new(billing_tests::NoDispatch),
        queue.clone(),
    );
    let report = sweeper.sweep(100).await.unwrap();
    assert_eq!(report.billing_jobs_queued, 2, "{report:?}");
    let jobs = queue.take();
    assert!(jobs.contains(&BillingJob::Subscription { tenant, id: sub.id }));
    assert!(jobs.contains(&BillingJob::TestClock {
        tenant,
        id: clock.id
    }));

    let mut event = SqsEvent::default();
    event.records = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| message(&format!("s{i}"), job))
        .collect();
    assert!(billing_worker::handle(&now_app, event)
        .await
        .batch_item_failures
        .is_empty());
    let clock = now_app
        .billing
        .get_test_clock(&caller, clock.id)
        .await
        .unwrap();
    assert_eq!(
        clock.status,
        billing_domain::billing::test_clock::TestClockStatus::Ready
    );
    let filter = InvoiceFilter {
        subscription: Some(sub.id),
        ..Default::default()
    };
    let page = PageRequest::first(10);
    assert_eq!(
        now_app
            .billing
            .list_invoices(&caller, &filter, &page)
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    // Handled: nothing of either is due any more.
    assert_eq!(sweeper.sweep(100).await.unwrap().billing_jobs_queued, 0);
}

#[tokio::test]
/// Drafting runs in parallel across a tenant's subscriptions (a group each); its finalize
/// jobs share one group per tenant, so one finalizer at a time numbers its drafts.
async fn the_billing_queue_groups_subscriptions_apart_and_a_tenants_finalize_jobs_together() {
    let config = billing_aws::Config::local("queue-groups", billing_tests::aws_endpoint());
    let sdk = config.sdk_config().await;
    billing_infra::stack::ensure(&sdk, &config.table_name)
        .await
        .unwrap();
    let queue = billing_aws::SqsQueue::by_name(&sdk, billing_infra::stack::BILLING_QUEUE)
        .await
        .unwrap();
    let (a, b) = (
        billing_domain::kernel::ids::TenantId::from_ulid(ulid::Ulid::new()),
        billing_domain::kernel::ids::TenantId::from_ulid(ulid::Ulid::new()),
    );
    let sub = || billing_domain::kernel::ids::SubscriptionId::from_ulid(ulid::Ulid::new());
    let jobs = [
        BillingJob::Subscription {
            tenant: a,
            id: sub(),
        },
        BillingJob::Subscription {
            tenant: b,
            id: sub(),
        },
        BillingJob::Subscription {
            tenant: a,
            id: sub(),
        },
        BillingJob::Finalize { tenant: b },
    ];
    queue.enqueue(&jobs).await.unwrap();
    // Enqueuing the same jobs again is not swallowed as a duplicate: each send is new work.
    queue.enqueue(&jobs[..1]).await.unwrap();

    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut received = Vec::new();
    while received.len() < 5 {
        let output = sqs
            .receive_message()
            .queue_url(queue.url())
            .max_number_of_messages(10)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
            )
            .send()
            .await
            .unwrap();
        let messages = output.messages();
        assert!(!messages.is_empty(), "every job is delivered");
        for message in messages {
            let job: BillingJob = serde_json::from_str(message.body().unwrap()).unwrap();
            let group = message
                .attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                })
                .cloned();
            received.push((job, group));
            sqs.delete_message()
                .queue_url(queue.url())
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    for (job, group) in &received {
        let expected = match job {
            BillingJob::Subscription { id, .. } => id.to_string(),
            BillingJob::Finalize { tenant } => format!("finalize-{tenant}"),
            BillingJob::TestClock { id, .. } => id.to_string(),
            BillingJob::CreditExpiry { account, .. } => format!("balance-{account}"),
            BillingJob::AccountPurge { account, .. } => account.to_string(),
            BillingJob::Wallet { wallet, .. } => wallet.to_string(),
            BillingJob::Simulation { simulation, .. } => simulation.to_string(),
            BillingJob::PriceNotices { plan, version, .. } => {
                format!("price-notices-{plan}-v{version}")
            }
        };
        assert_eq!(group.as_deref(), Some(expected.as_str()), "{job:?}");
    }
    assert_eq!(received.iter().filter(|(j, _)| j.tenant() == a).count(), 3);
    assert_eq!(received.iter().filter(|(j, _)| *j == jobs[3]).count(), 1);
}
