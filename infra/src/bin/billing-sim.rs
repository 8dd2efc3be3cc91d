//! How long one tenant's renewals on the 1st take on AWS, per stage and Lambda
//! concurrency, and what they cost: see `billing_infra::sim`.
//!
//! `cargo run --release -p billing-infra --bin billing-sim -- --subscriptions 100000 --concurrency 10,50,100,200`

use billing_infra::sim;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Simulated time and AWS cost to bill one tenant's renewals")]
struct Args {
    /// Renewals of one tenant, all due on the 1st; several sizes show how time and cost grow.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    subscriptions: Vec<usize>,
    /// Billing workers (Lambda concurrency).
    #[arg(long, value_delimiter = ',', default_value = "10,50,100,200")]
    concurrency: Vec<usize>,
    /// A standard billing queue instead of today's FIFO queue with a group per tenant.
    #[arg(long)]
    standard_queue: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    print!(
        "{}",
        sim::report::table(&args.subscriptions, &args.concurrency, !args.standard_queue)?
    );
    Ok(())
}
