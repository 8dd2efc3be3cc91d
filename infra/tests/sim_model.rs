//! The request model cannot drift from the DynamoDB store: the same scenario (renewals of
//! one tenant: a sweep, the billing worker's batches, another sweep) runs on the local
//! DynamoDB stand-in through `DynamoStore`, its requests counted by operation, and through
//! the simulation's model; the counts must agree exactly.

use std::sync::Arc;

use billing_app::jobs::Sweeper;
use billing_app::ports::{Clock, Store};
use billing_app::App;
use billing_aws::DynamoStore;
use billing_infra::request_count::{counted_client, Counter};
use billing_infra::sim::{self, Scenario};
use billing_infra::stack;
use billing_memory::{MemoryBillingQueue, MemoryPaymentQueue};
use jiff::Timestamp;

const RENEWALS: usize = 25;

struct Fixed(Timestamp);

impl Clock for Fixed {
    fn now(&self) -> Timestamp {
        self.0
    }
}

#[tokio::test]
async fn the_simulated_requests_are_the_dynamodb_stores() {
    let stack::OwnStack {
        stand_in: mut child,
        config,
        sdk,
    } = stack::own_stack("sim-model").await.unwrap();
    let counter = Arc::new(Counter::default());
    let client = counted_client(&sdk, counter.clone());
    let dispatch = Arc::new(
        billing_aws::AwsDispatch::by_queue_name(&sdk, stack::WEBHOOK_QUEUE, stack::EVENT_BUS)
            .await
            .unwrap(),
    );
    let store: Arc<dyn Store> =
        Arc::new(DynamoStore::new(client, &config.table_name).with_dispatch(dispatch.clone()));
    sim::setup(store.clone(), RENEWALS).await.unwrap();

    let app = App::new(
        store,
        Arc::new(Fixed(sim::RENEWAL_DAY.parse().unwrap())),
        Arc::new(billing_aws::SandboxGateway::new()),
    )
    .with_payment_queue(Arc::new(MemoryPaymentQueue::default()));
    let queue = Arc::new(MemoryBillingQueue::default());
    let sweeper = Sweeper::new(app.clone(), dispatch, queue.clone());
    counter.start();
    sweeper.sweep(billing_run::BATCH).await.unwrap();
    let jobs = queue.take();
    assert_eq!(jobs.len(), RENEWALS);
    for batch in jobs.chunks(10) {
        let response = billing_worker::handle(&app, sim::sqs_event(batch)).await;
        assert!(response.batch_item_failures.is_empty());
    }
    // The next scheduled run finds the attempts that wait for the payment worker.
    sweeper.sweep(billing_run::BATCH).await.unwrap();
    let real = counter.stop();
    let _ = child.kill();

    // The simulation runs on a paused-clock runtime of its own.
    let simulated = tokio::task::spawn_blocking(|| {
        sim::run(Scenario {
            subscriptions: RENEWALS,
            concurrency: 1,
            fifo: true,
        })
    })
    .await
    .unwrap()
    .unwrap();
    assert!(simulated.dynamo.unmodelled.is_empty());
    let modelled: std::collections::BTreeMap<String, u64> = simulated
        .dynamo
        .by_op
        .iter()
        .map(|(op, totals)| (op.target().to_owned(), totals.requests))
        .collect();
    assert_eq!(
        modelled, real,
        "requests by operation: simulated vs DynamoDB store"
    );
}
