//! The simulation bills what the pipeline bills: every renewal once, gapless numbers,
//! every first payment attempt handed to the payments queue once, and no store call the
//! request model does not know.

use std::collections::BTreeSet;

use billing_infra::sim::{run, Outcome, Scenario};

fn assert_billed_exactly_once(outcome: &Outcome) {
    let n = outcome.scenario.subscriptions;
    assert!(outcome.stages.payment.is_some(), "the run finished");
    assert_eq!(
        outcome.renewals.len(),
        n,
        "one renewal invoice per subscription"
    );
    let billed: BTreeSet<_> = outcome
        .renewals
        .iter()
        .filter_map(|i| i.subscription_id)
        .collect();
    let subscribed: BTreeSet<_> = outcome.subscription_ids.iter().copied().collect();
    assert_eq!(billed, subscribed, "each subscription billed, none twice");
    let mut numbers: Vec<u64> = outcome
        .renewals
        .iter()
        .map(|i| {
            let number = i.number.as_deref().expect("renewals are finalized");
            number.rsplit('-').next().unwrap().parse().unwrap()
        })
        .collect();
    numbers.sort_unstable();
    let expected: Vec<u64> =
        (outcome.numbers_before + 1..=outcome.numbers_before + n as u64).collect();
    assert_eq!(
        numbers, expected,
        "gapless numbers after the first invoices'"
    );
    assert_eq!(
        outcome.released.len(),
        n,
        "every invoice's first attempt enqueued"
    );
    assert!(
        outcome.released.values().all(|times| *times == 1),
        "no attempt handed over twice right after its commit"
    );
    assert!(
        outcome.dynamo.unmodelled.is_empty(),
        "store calls without a request model: {:?}",
        outcome.dynamo.unmodelled
    );
}

#[test]
fn bills_every_renewal_once_through_todays_fifo_queue() {
    let outcome = run(Scenario {
        subscriptions: 2_000,
        concurrency: 10,
        fifo: true,
    })
    .unwrap();
    assert_billed_exactly_once(&outcome);
    // One finalizer at a time (its message group): never two transactions on the sequence.
    assert_eq!(outcome.dynamo.conflicts, 0);
}

#[test]
fn bills_every_renewal_once_when_any_worker_takes_any_job() {
    let outcome = run(Scenario {
        subscriptions: 1_000,
        concurrency: 20,
        fifo: false,
    })
    .unwrap();
    assert_billed_exactly_once(&outcome);
    // Sized by the DynamoDB store's own item builders: each of the renewal invoice's three
    // writes is of an item under 1 KB, so 2 write units on its shard instead of 4.
    let items = outcome.invoice_items;
    for (write, bytes) in [
        ("drafted", items.drafted),
        ("numbered", items.numbered),
        ("followed up", items.followed_up),
    ] {
        assert!(bytes > 0, "the {write} invoice was sized");
        assert!(bytes < 1024, "the {write} invoice item is {bytes} bytes");
    }
}

/// The request model cannot drift from the DynamoDB store: the same pipeline in turn
/// (`sim::in_turn`: the sweep's run, the worker's batches, the finalize jobs drafting
/// queued) over the same 25 renewals runs on the stand-in through `DynamoStore`, its
/// requests counted by operation, and through the simulation's model; the counts agree
/// exactly.
#[tokio::test]
async fn the_request_model_counts_what_the_dynamodb_store_sends() {
    use std::sync::Arc;

    use billing_aws::DynamoStore;
    use billing_infra::request_count::{counted_client, Counter};
    use billing_infra::{sim, stack};

    const RENEWALS: usize = 25;
    let stack::OwnStack {
        stand_in: mut child,
        config,
        sdk,
    } = stack::own_stack("sim-model").await.unwrap();
    let counter = Arc::new(Counter::default());
    let dispatch = Arc::new(
        billing_aws::AwsDispatch::by_queue_name(&sdk, stack::WEBHOOK_QUEUE, stack::EVENT_BUS)
            .await
            .unwrap(),
    );
    let store = Arc::new(
        DynamoStore::new(counted_client(&sdk, counter.clone()), &config.table_name)
            .with_dispatch(dispatch.clone()),
    );
    sim::setup(store.clone(), RENEWALS).await.unwrap();
    counter.start();
    let ran = sim::in_turn(store, dispatch).await;
    let real = counter.stop();
    let _ = child.kill();
    ran.unwrap();

    // The model runs on a paused-clock runtime of its own.
    let modelled = tokio::task::spawn_blocking(|| sim::modelled_in_turn(RENEWALS))
        .await
        .unwrap()
        .unwrap();
    assert!(
        modelled.unmodelled.is_empty(),
        "store calls without a model: {:?}",
        modelled.unmodelled
    );
    let modelled: std::collections::BTreeMap<String, u64> = modelled
        .by_op
        .iter()
        .map(|(op, totals)| (op.target().to_owned(), totals.requests))
        .collect();
    assert_eq!(modelled, real, "requests by operation: modelled vs sent");
}
