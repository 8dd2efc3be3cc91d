//! The markdown the `billing-sim` command prints (and the README's scale section shows).

use std::fmt::Write;
use std::time::Duration;

use super::cost::{dollars, Cost, Usage};
use super::{run, Outcome, Scenario};

/// The target: a million renewals in 15 simulated minutes.
const TARGET: Duration = Duration::from_secs(15 * 60);
const MILLION: u64 = 1_000_000;

/// Runs every size at every concurrency and reports times, requests and cost.
pub fn table(sizes: &[usize], concurrency: &[usize], fifo: bool) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut outcomes = Vec::new();
    writeln!(
        out,
        "| renewals | workers | sweep | draft | finalize/number | payment attempt enqueued | throttled requests | cancelled transactions |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for &n in sizes {
        for &workers in concurrency {
            let outcome = run(Scenario {
                subscriptions: n,
                concurrency: workers,
                fifo,
            })?;
            let s = &outcome.stages;
            writeln!(
                out,
                "| {n} | {workers} | {} | {} | {} | {} | {} | {} |",
                clock(s.sweep),
                clock(s.draft),
                clock(s.finalize),
                clock(s.payment),
                outcome.dynamo.throttled,
                outcome.dynamo.conflicts
            )?;
            outcomes.push(outcome);
        }
    }
    let Some(largest) = outcomes.iter().max_by_key(|o| o.scenario.subscriptions) else {
        return Ok(out);
    };
    let n = largest.scenario.subscriptions as u64;
    if n < MILLION {
        writeln!(out)?;
        writeln!(
            out,
            "1,000,000 renewals, extrapolated linearly from {n} (each stage's time × {}):",
            ratio(MILLION, n)
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "| renewals | workers | sweep | draft | finalize/number | payment attempt enqueued |"
        )?;
        writeln!(out, "|---:|---:|---:|---:|---:|---:|")?;
        for o in outcomes
            .iter()
            .filter(|o| o.scenario.subscriptions as u64 == n)
        {
            let scale =
                |d: Option<Duration>| d.map(|d| d * u32::try_from(MILLION / n).unwrap_or(1));
            let s = &o.stages;
            writeln!(
                out,
                "| 1000000 (extrapolated) | {} | {} | {} | {} | {} |",
                o.scenario.concurrency,
                clock(scale(s.sweep)),
                clock(scale(s.draft)),
                clock(scale(s.finalize)),
                clock(scale(s.payment))
            )?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "DynamoDB requests per invoice ({n} renewals, {} workers):",
        largest.scenario.concurrency
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| operation | requests per invoice | items per request |"
    )?;
    writeln!(out, "|---|---:|---:|")?;
    let invoices = largest.renewals.len().max(1) as u64;
    for (op, totals) in &largest.dynamo.by_op {
        writeln!(
            out,
            "| {} | {} | {} |",
            op.target(),
            hundredths(totals.requests, invoices),
            hundredths(totals.items, totals.requests.max(1))
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Write request units per invoice: {}; read request units per invoice: {}.",
        hundredths(largest.dynamo.write_units, invoices),
        hundredths(largest.dynamo.read_half_units, 2 * invoices)
    )?;
    let items = &largest.invoice_items;
    writeln!(out)?;
    writeln!(
        out,
        "The largest invoice item written (bytes as DynamoDB counts them; 1 write unit per \
         started KB): drafted {}, numbered {}, followed up {}.",
        items.drafted, items.numbered, items.followed_up
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Write request units per invoice by what they write (the item and its index entries; \
         transactional writes count twice):"
    )?;
    writeln!(out)?;
    writeln!(out, "| written | write units per invoice |")?;
    writeln!(out, "|---|---:|")?;
    let mut written: Vec<_> = largest.dynamo.written.iter().collect();
    written.sort_by_key(|(_, units)| std::cmp::Reverse(**units));
    let labelled: u64 = written.iter().map(|(_, units)| **units).sum();
    for (what, units) in written {
        writeln!(out, "| {what} | {} |", hundredths(*units, invoices))?;
    }
    writeln!(
        out,
        "| other (single-item writes) | {} |",
        hundredths(
            largest.dynamo.write_units.saturating_sub(labelled),
            invoices
        )
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Write request units per invoice by the partitions they land on (each partition key \
         takes 1,000 a second):"
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| partitions | write units per invoice | throttled requests (short of capacity there) |"
    )?;
    writeln!(out, "|---|---:|---:|")?;
    for (kind, units) in &largest.dynamo.by_partition {
        writeln!(
            out,
            "| {} | {} | {} |",
            kind.describe(),
            hundredths(*units, invoices),
            largest.dynamo.throttled_on.get(kind).copied().unwrap_or(0)
        )?;
    }
    if !largest.dynamo.unmodelled.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "Store calls without a request model (not in the counts): {:?}",
            largest.dynamo.unmodelled
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "AWS cost per million invoices (us-east-1 list prices):"
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| renewals | Lambda | DynamoDB | SQS | EventBridge | API Gateway | total |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|")?;
    for o in outcomes
        .iter()
        .filter(|o| o.scenario.concurrency == largest.scenario.concurrency)
    {
        let c = cost_per_million(o);
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            o.scenario.subscriptions,
            dollars(c.lambda),
            dollars(c.dynamodb),
            dollars(c.sqs),
            dollars(c.eventbridge),
            dollars(c.api_gateway),
            dollars(c.total())
        )?;
    }
    let best = outcomes
        .iter()
        .filter(|o| o.scenario.subscriptions as u64 == n)
        .filter_map(|o| {
            Some((
                o.stages.payment? * u32::try_from(MILLION / n).unwrap_or(1),
                o,
            ))
        })
        .min_by_key(|(t, _)| *t);
    writeln!(out)?;
    match best {
        Some((time, o)) => writeln!(
            out,
            "Target (1,000,000 in ≤ 15 min at ≤ 200 workers, ≤ $10 per million): time {} ({} at {} workers), cost {} ({}).",
            if time <= TARGET { "met" } else { "not met" },
            clock(Some(time)),
            o.scenario.concurrency,
            if cost_per_million(o).total() <= 10 * 1_000_000_000_000 { "met" } else { "not met" },
            dollars(cost_per_million(o).total())
        )?,
        None => writeln!(out, "Target: no run finished.")?,
    }
    Ok(out)
}

pub fn cost_per_million(outcome: &Outcome) -> Cost {
    let usage = Usage::of(&outcome.dynamo, &outcome.messaging, &outcome.lambda);
    Cost::of(&usage).per_million(outcome.renewals.len() as u64)
}

fn clock(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "unfinished".into();
    };
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn hundredths(n: u64, of: u64) -> String {
    let h = (n * 100 + of / 2) / of.max(1);
    format!("{}.{:02}", h / 100, h % 100)
}

fn ratio(a: u64, b: u64) -> u64 {
    a / b.max(1)
}
