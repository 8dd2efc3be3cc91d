//! Feeds the sample events of the non-HTTP functions through their handlers, as
//! `cargo lambda invoke --data-file` would: an SQS batch to `webhook-fanout` (one good
//! record, one poison record reported back alone), a scheduled event to `billing-run`, and
//! an SQS batch of bus events to `document-renderer`.

use std::path::Path;
use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use billing_app::ports::{Clock, OUTBOX_GRACE};
use billing_app::{events::Fanout, jobs::Sweeper};
use billing_aws::HttpSender;
use billing_domain::customers::account::NewAccount;
use billing_domain::events::webhook::NewWebhookEndpoint;
use billing_domain::kernel::deployment::Deployment;
use billing_tests::clock::ManualClock;
use billing_tests::webhooks::{Receiver, RecordingDispatch};
use jiff::Timestamp;

fn sample<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn the_sqs_sample_is_delivered_and_its_poison_record_reported_alone() {
    let app = billing_tests::memory_app();
    let tenant = app
        .customers
        .ensure_tenant_with_key("Events", billing_tests::EVENTS_KEY)
        .await
        .unwrap();
    let caller = app
        .customers
        .authenticate(billing_tests::EVENTS_KEY, None)
        .await
        .unwrap();
    assert_eq!(tenant.id.to_string(), "ten_01JD0000000000000000000000");
    let (receiver, url) = Receiver::start(vec![]).await;
    let endpoint = app
        .events
        .create_webhook_endpoint(
            &caller,
            NewWebhookEndpoint {
                url,
                enabled_events: vec!["account.*".into()],
                description: Some("sample receiver".into()),
            },
        )
        .await
        .unwrap();
    let fanout = Fanout::new(
        app.events.clone(),
        Arc::new(RecordingDispatch::default()),
        Arc::new(HttpSender::new(Deployment::Local)),
    );
    let event: SqsEvent = sample("webhook-fanout-sqs.json");
    let response = webhook_fanout::handle(&fanout, event.clone()).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["5d21f0c4-2b7a-4c9e-8f63-91a0e4d6b222"]);
    receiver.wait_for(1).await;
    receiver.assert_signed_with(&endpoint.secret);
    assert_eq!(receiver.bodies()[0]["id"], "evt_01JD3KQ4ZC6W5X2V9T8R7P6N5M");
    // SQS delivers at least once: the same batch again delivers nothing new.
    webhook_fanout::handle(&fanout, event).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(receiver.bodies().len(), 1);
}

#[tokio::test]
async fn the_scheduled_sample_sweeps_what_is_due() {
    let clock = ManualClock::at(Timestamp::now());
    let app = billing_tests::app_with_clock(billing_tests::memory_store(), clock.clone());
    app.customers
        .ensure_tenant_with_key("Events", billing_tests::EVENTS_KEY)
        .await
        .unwrap();
    let caller = app
        .customers
        .authenticate(billing_tests::EVENTS_KEY, None)
        .await
        .unwrap();
    app.customers
        .create_account(
            &caller,
            NewAccount {
                email: "billing@acme.test".into(),
                currency: "eur".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let dispatch = Arc::new(RecordingDispatch::default());
    let sweeper = Sweeper::new(
        app,
        dispatch.clone(),
        std::sync::Arc::new(billing_memory::MemoryBillingQueue::default()),
    );
    let schedule: EventBridgeEvent<serde_json::Value> = sample("billing-run-schedule.json");
    // Within the grace the post-commit publish is still expected: nothing is due.
    let early = billing_run::handle(
        &sweeper,
        schedule.clone(),
        clock.now() + billing_run::TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(early.republished, 0);
    clock.advance(OUTBOX_GRACE);
    let summary = billing_run::handle(
        &sweeper,
        schedule.clone(),
        clock.now() + billing_run::TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!((summary.republished, summary.errors), (1, 0));
    assert_eq!(
        dispatch.published.lock().unwrap()[0].1.event_type,
        "account.created"
    );
    assert!(clock.now() > Timestamp::now());
    let again = billing_run::handle(&sweeper, schedule, clock.now() + billing_run::TIMEOUT)
        .await
        .unwrap();
    assert_eq!(again.republished, 0, "published events leave the due index");
}

/// `document-renderer`'s sample: an `invoice.finalized` of an invoice this store does not
/// hold (skipped, so acknowledged: redelivering it could never help) and an unreadable record,
/// reported back alone.
#[tokio::test]
async fn the_documents_sample_skips_an_unknown_invoice_and_reports_its_poison_record() {
    let app = billing_tests::memory_app();
    let objects = Arc::new(billing_memory::MemoryObjects::default());
    let pipeline = app
        .documents
        .pipeline(objects.clone(), Arc::new(document_renderer::Pdfs));
    let event: SqsEvent = sample("document-renderer-sqs.json");
    let response = document_renderer::handle(&pipeline, event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["9b1d3f5a-7c9e-4b0d-8f2a-4c6e8a0b2d46"]);
    assert!(objects.keys().is_empty());
}
