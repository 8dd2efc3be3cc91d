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
}
