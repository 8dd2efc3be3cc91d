//! Injects faults into every billing flow at every place one can strike, lets the
//! deployment recover as it would, and checks the exactly-once invariants after each run:
//! see `billing_infra::campaign`. Prints flow × fault × runs × violations; fails if any
//! invariant broke.
//!
//! `cargo run -p billing-infra --bin fault-campaign -- --seed 1 --runs 10`

use billing_infra::campaign::{self, Flow, Plan};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Fault injection across the billing flows, with the invariants checked")]
struct Args {
    /// The first seed: worlds, amounts and interleavings follow from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rounds, one seed each (seed, seed + 1, …); each faults every flow everywhere.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Only these flows.
    #[arg(long, value_enum, value_delimiter = ',')]
    flows: Vec<Flow>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = Plan {
        seed: args.seed,
        rounds: args.runs,
        flows: if args.flows.is_empty() {
            Flow::ALL.to_vec()
        } else {
            args.flows
        },
        max_k: None,
    };
    // The paused clock: concurrent workers' seeded delays move time instead of waiting.
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?
        .block_on(campaign::run(&plan))?;
    print!("{}", report.table());
    for ((flow, kind), tally) in &report.tallies {
        for example in &tally.examples {
            eprintln!("{} / {}: {example}", flow.name(), kind.name());
        }
    }
    anyhow::ensure!(
        report.violations() == 0,
        "{} runs broke an invariant",
        report.violations()
    );
    Ok(())
}
