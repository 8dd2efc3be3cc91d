//! A bounded slice of the fault campaign (one seed, every flow, every fault kind, the first
//! positions of each flow): no run breaks an invariant, and the faults did strike.

use billing_infra::campaign::{self, FaultKind, Flow, Plan};

#[test]
fn one_seed_of_the_fault_campaign_breaks_no_invariant() {
    let plan = Plan {
        seed: 7,
        rounds: 1,
        flows: Flow::ALL.to_vec(),
        max_k: Some(25),
    };
    // The flows' unoptimised futures are deep: give the campaign the 8 MB a main thread
    // has (the `fault-campaign` binary's), not a test thread's 2 MB.
    let report = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap()
                .block_on(campaign::run(&plan))
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    let broken: Vec<String> = report
        .tallies
        .iter()
        .flat_map(|((flow, kind), t)| {
            t.examples
                .iter()
                .map(move |e| format!("{} / {}: {e}", flow.name(), kind.name()))
        })
        .collect();
    assert!(
        broken.is_empty(),
        "{}\n{}",
        report.table(),
        broken.join("\n")
    );
    // Every flow took a crash and a failure at its positions (a publish fault strikes only
    // where the flow publishes, a lost answer only where it charges).
    for ((flow, kind), tally) in &report.tallies {
        if matches!(kind, FaultKind::CrashAfter | FaultKind::FailedCall) {
            assert!(
                tally.faults > 0,
                "{} / {}: no fault struck\n{}",
                flow.name(),
                kind.name(),
                report.table()
            );
        }
    }
    let flows = report.tallies.keys().map(|(flow, _)| *flow);
    assert_eq!(
        flows.collect::<std::collections::BTreeSet<_>>().len(),
        Flow::ALL.len()
    );
}
