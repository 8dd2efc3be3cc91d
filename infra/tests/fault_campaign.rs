//! A bounded slice of the fault campaign (one seed, every flow, every fault kind, the first
//! positions of each flow): no run breaks an invariant, and the faults did strike.

use billing_infra::campaign::{self, Flow, Plan};

#[tokio::test(start_paused = true)]
async fn one_seed_of_the_fault_campaign_breaks_no_invariant() {
    let plan = Plan {
        seed: 7,
        rounds: 1,
        flows: Flow::ALL.to_vec(),
        max_k: Some(25),
    };
    let report = campaign::run(&plan).await.unwrap();
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
    assert!(report.faults() > 8 * 50, "{}", report.table());
}
