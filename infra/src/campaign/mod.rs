//! The fault campaign: each billing flow run once cleanly, then once per fault at every
//! place a fault can strike, then redelivered and left to the sweep as the deployment
//! would; after each run, the invariants. Seeded: one seed is one set of worlds, faults and
//! interleavings, so a violation replays with `--seed`.
//!
//! Faults go through [`billing_memory::hooked`]: every port of a world (store, gateway,
//! notifier, dispatch, webhook sender, payment queue) is wrapped, so "the k-th operation"
//! counts them all.

mod flows;
mod world;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use billing_memory::hooked::{Faults, Hook, Op, Racing, Target, When};

pub use flows::Flow;
use world::{Outcome, World};

/// A kind of fault, as the table names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// No fault: the reference run (its invariants are checked too).
    None,
    /// The k-th operation runs, then the worker dies (the caller sees an error), for every k.
    CrashAfter,
    /// The k-th operation fails without effect (a failed commit, a failed read), for every k.
    FailedCall,
    /// The job is delivered twice.
    Duplicate,
    /// Two workers run the job at once, interleaving at every operation.
    Concurrent,
    /// The gateway charges, and its answer is lost on the way back.
    LostGatewayAnswer,
    /// The first publish after a commit fails.
    PublishFails,
    /// An older gateway event arrives after a newer one (and is replayed).
    OutOfOrder,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::None => "none (reference)",
            FaultKind::CrashAfter => "crash after the k-th op",
            FaultKind::FailedCall => "k-th op fails",
            FaultKind::Duplicate => "duplicate delivery",
            FaultKind::Concurrent => "two concurrent workers",
            FaultKind::LostGatewayAnswer => "gateway answer lost",
            FaultKind::PublishFails => "publish fails after commit",
            FaultKind::OutOfOrder => "out-of-order gateway event",
        }
    }
}

/// Runs and violations of one flow under one kind of fault.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub runs: u64,
    /// Runs in which the fault struck (a crash or failure at the k-th op always does; a
    /// lost answer needs a charge).
    pub faults: u64,
    pub violations: u64,
    /// The first few violations, to replay: seed, position, what broke.
    pub examples: Vec<String>,
}

/// What a campaign found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub tallies: BTreeMap<(Flow, FaultKind), Tally>,
}

impl Report {
    pub fn faults(&self) -> u64 {
        self.tallies.values().map(|t| t.faults).sum()
    }

    pub fn violations(&self) -> u64 {
        self.tallies.values().map(|t| t.violations).sum()
    }

    /// The table: flow × fault kind × runs × faults injected × violations, as Markdown.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| flow | fault | runs | faults injected | violations |\n|---|---|---:|---:|---:|\n",
        );
        for ((flow, kind), t) in &self.tallies {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                flow.name(),
                kind.name(),
                t.runs,
                t.faults,
                t.violations
            );
        }
        let runs: u64 = self.tallies.values().map(|t| t.runs).sum();
        let _ = writeln!(
            out,
            "| **all** | | **{runs}** | **{}** | **{}** |",
            self.faults(),
            self.violations()
        );
        out
    }

    fn record(&mut self, flow: Flow, kind: FaultKind, fired: bool, broken: Vec<String>, at: &str) {
        let tally = self.tallies.entry((flow, kind)).or_default();
        tally.runs += 1;
        tally.faults += u64::from(fired);
        if !broken.is_empty() {
            tally.violations += 1;
            if tally.examples.len() < 3 {
                tally.examples.push(format!("{at}: {}", broken.join("; ")));
            }
        }
    }
}

/// What to run: `rounds` seeds from `seed`, every flow of `flows`; `max_k` caps the
/// positions tried per flow (`None`: every operation of the reference run).
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub rounds: u64,
    pub flows: Vec<Flow>,
    pub max_k: Option<u64>,
}

/// Runs the campaign. Call it on tokio's paused clock (concurrent workers sleep seeded
/// random delays; the clock moves instead of waiting).
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for seed in plan.seed..plan.seed + plan.rounds {
        for &flow in &plan.flows {
            run_flow(flow, seed, plan.max_k, &mut report).await?;
        }
    }
    Ok(report)
}

async fn run_flow(
    flow: Flow,
    seed: u64,
    max_k: Option<u64>,
    report: &mut Report,
) -> anyhow::Result<()> {
    // The reference run, counting the operations a fault can strike.
    let counter = Arc::new(Faults::none());
    let (reference, _) = faulty_run(flow, seed, counter.clone(), FaultKind::None).await?;
    let ops = counter.seen();
    report.record(
        flow,
        FaultKind::None,
        false,
        reference.invariants(),
        &format!("seed {seed}"),
    );
    let positions = max_k.map_or(ops, |max| ops.min(max));
    for (kind, when) in [
        (FaultKind::CrashAfter, When::After),
        (FaultKind::FailedCall, When::Before),
    ] {
        for k in 1..=positions {
            let faults = Arc::new(Faults::at(when, Target::Any, k));
            let (outcome, _) = faulty_run(flow, seed, faults.clone(), kind).await?;
            let broken = outcome.against(&reference);
            let at = format!("seed {seed}, k = {k}");
            report.record(flow, kind, faults.fired(), broken, &at);
        }
    }
    let mut single = vec![
        (FaultKind::Duplicate, None),
        (FaultKind::PublishFails, Some(op("Dispatch", "publish"))),
    ];
    if flow.charges() {
        single.push((
            FaultKind::LostGatewayAnswer,
            Some(op("PaymentGateway", "charge")),
        ));
    }
    if flow.has_gateway_event() {
        single.push((FaultKind::OutOfOrder, None));
    }
    for (kind, target) in single {
        let faults = Arc::new(match (kind, target) {
            (FaultKind::LostGatewayAnswer, Some(target)) => {
                Faults::at(When::After, Target::Op(target), 1)
            }
            (_, Some(target)) => Faults::at(When::Before, Target::Op(target), 1),
            (_, None) => Faults::none(),
        });
        let (outcome, _) = faulty_run(flow, seed, faults.clone(), kind).await?;
        let fired = target.is_none() || faults.fired();
        report.record(
            flow,
            kind,
            fired,
            outcome.against(&reference),
            &format!("seed {seed}"),
        );
    }
    let racing: Arc<dyn Hook> = Arc::new(Racing::new(seed).with_delays(Duration::from_millis(3)));
    let (outcome, raced) = faulty_run(flow, seed, racing, FaultKind::Concurrent).await?;
    report.record(
        flow,
        FaultKind::Concurrent,
        raced,
        outcome.against(&reference),
        &format!("seed {seed}"),
    );
    Ok(())
}

fn op(port: &'static str, method: &'static str) -> Op {
    Op { port, method }
}

/// One run: the flow's world set up, `hook` armed, the job delivered as `kind` says,
/// redelivered while it fails, the deployment's sweep run until quiet; the outcome. Also
/// whether the job's deliveries overlapped (for concurrent runs).
async fn faulty_run(
    flow: Flow,
    seed: u64,
    hook: Arc<dyn Hook>,
    kind: FaultKind,
) -> anyhow::Result<(Outcome, bool)> {
    let world = World::new(seed).await?;
    let job = flow.set_up(&world, seed).await?;
    world.arm(hook);
    let mut overlapped = false;
    let mut failed = match kind {
        FaultKind::Concurrent => {
            let (a, b) = tokio::join!(
                tokio::spawn({
                    let (world, job) = (world.clone(), job.clone());
                    async move { flow.deliver(&world, &job).await }
                }),
                tokio::spawn({
                    let (world, job) = (world.clone(), job.clone());
                    async move { flow.deliver(&world, &job).await }
                }),
            );
            overlapped = true;
            u32::from(a?.is_err()) + u32::from(b?.is_err())
        }
        FaultKind::Duplicate => {
            let first = flow.deliver(&world, &job).await.is_err();
            u32::from(first) + u32::from(flow.deliver(&world, &job).await.is_err())
        }
        FaultKind::OutOfOrder => {
            let first = flow.deliver(&world, &job).await.is_err();
            flow.deliver_stale(&world, &job).await?;
            flow.deliver_stale(&world, &job).await?;
            u32::from(first)
        }
        _ => u32::from(flow.deliver(&world, &job).await.is_err()),
    };
    // SQS redelivers a failed message (a bounded number of times, then the DLQ: a stuck job).
    for _ in 0..3 {
        if failed == 0 {
            break;
        }
        failed = u32::from(flow.deliver(&world, &job).await.is_err());
    }
    world.settle().await;
    world.disarm();
    let mut outcome = world.outcome(&job).await?;
    if failed > 0 {
        outcome
            .stuck
            .push("the job still fails after three redeliveries".into());
    }
    Ok((outcome, overlapped))
}
