//! The DynamoDB request model: which requests a store call issues (what the DynamoDB store
//! in `billing-aws` sends for it), what each costs in capacity on which partition key, and
//! how DynamoDB answers under load: per-partition token buckets, throttling retried with
//! the SDK's backoff, and transactions cancelled when another in-flight transaction holds
//! one of their items.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use billing_app::ports::StoreError;
use tokio::time::Instant;

use super::aws;

/// A DynamoDB operation, named as its `X-Amz-Target` (what infra's request counter counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    GetItem,
    BatchGetItem,
    Query,
    TransactWriteItems,
    BatchWriteItem,
    PutItem,
    UpdateItem,
    DeleteItem,
}

impl Op {
    pub fn target(self) -> &'static str {
        match self {
            Op::GetItem => "GetItem",
            Op::BatchGetItem => "BatchGetItem",
            Op::Query => "Query",
            Op::TransactWriteItems => "TransactWriteItems",
            Op::BatchWriteItem => "BatchWriteItem",
            Op::PutItem => "PutItem",
            Op::UpdateItem => "UpdateItem",
            Op::DeleteItem => "DeleteItem",
        }
    }
}

/// One DynamoDB request: its operation, item count, the capacity units it takes from each
/// partition key (table and index partitions alike), and the items it writes (for
/// transaction conflicts).
#[derive(Debug, Clone)]
pub struct Request {
    pub op: Op,
    pub items: u32,
    /// Write units by partition key.
    pub writes: Vec<(String, u64)>,
    /// Read units by partition key, in half units (an eventually consistent read of 4 KB
    /// is one half unit).
    pub reads: Vec<(String, u64)>,
    pub touched: Vec<String>,
    /// Write units by what they write (an item kind, with its index entries), for the
    /// report's breakdown.
    pub written: Vec<(String, u64)>,
}

impl Request {
    pub fn new(op: Op) -> Self {
        Self {
            op,
            items: 1,
            writes: Vec::new(),
            reads: Vec::new(),
            touched: Vec::new(),
            written: Vec::new(),
        }
    }

    /// A strongly consistent read of `bytes` from `partition`.
    pub fn read(mut self, partition: &str, bytes: usize) -> Self {
        self.reads
            .push((partition.to_owned(), 2 * read_units(bytes)));
        self
    }

    /// An eventually consistent read (an index query) of `bytes`.
    pub fn read_eventually(mut self, partition: &str, bytes: usize) -> Self {
        self.reads.push((partition.to_owned(), read_units(bytes)));
        self
    }

    pub fn items(mut self, items: u32) -> Self {
        self.items = items;
        self
    }
}

/// 4 KB read units of an item (at least one).
fn read_units(bytes: usize) -> u64 {
    (bytes.div_ceil(4096)).max(1) as u64
}

/// 1 KB write units of an item (at least one).
pub fn write_units(bytes: usize) -> u64 {
    (bytes.div_ceil(1024)).max(1) as u64
}

/// The kinds of partition key a renewal writes to (as `billing_aws::keys` names them), for
/// the report: how much of each invoice's writes the tenant's shards carry is what bounds
/// a tenant's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartitionKind {
    /// `T#{tenant}#07`.
    TenantShard,
    /// `T#{tenant}#OUTBOX#07`.
    Outbox,
    /// `T#{tenant}`.
    Tenant,
    /// `T#{tenant}#PENDING#07` (the `pending` index).
    Pending,
    /// `DUE#07` (the `due` index).
    Due,
    /// Every other key: `gsi1`'s (`T#{tenant}#ACCOUNT#…`, `#EVENTS#…`, `#AUDIT#…`).
    Gsi1,
}

impl PartitionKind {
    pub fn of(pk: &str) -> Self {
        if pk.starts_with("DUE#") {
            return Self::Due;
        }
        let Some(rest) = pk.strip_prefix("T#") else {
            return Self::Gsi1;
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match rest.split_once('#').map(|(_, after)| after) {
            None => Self::Tenant,
            Some(shard) if digits(shard) => Self::TenantShard,
            Some(after) => match after.split_once('#') {
                Some(("OUTBOX", shard)) if digits(shard) => Self::Outbox,
                Some(("PENDING", shard)) if digits(shard) => Self::Pending,
                _ => Self::Gsi1,
            },
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::TenantShard => "the tenant's shards (`T#{tenant}#NN`)",
            Self::Outbox => "its outbox partitions (`T#{tenant}#OUTBOX#NN`)",
            Self::Tenant => "its own partition (`T#{tenant}`: the invoice sequence)",
            Self::Pending => "the `pending` index",
            Self::Due => "the `due` index",
            Self::Gsi1 => "`gsi1` (by account, resource, entity)",
        }
    }
}

/// Totals of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpTotals {
    pub requests: u64,
    pub items: u64,
}

/// What the simulated DynamoDB served: requests by operation, capacity consumed (write
/// units, read half units), throttled attempts and cancelled transactions.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub by_op: BTreeMap<Op, OpTotals>,
    pub write_units: u64,
    /// The write units of [`Request::written`], by what they write.
    pub written: BTreeMap<String, u64>,
    /// Write units by the kind of partition they land on ([`PartitionKind`]).
    pub by_partition: BTreeMap<PartitionKind, u64>,
    pub read_half_units: u64,
    pub throttled: u64,
    /// Throttled requests by the kind of partition that was short.
    pub throttled_on: BTreeMap<PartitionKind, u64>,
    pub conflicts: u64,
    /// Store calls without a request model, by method: a scenario that meets one is
    /// outside what the simulation can answer for.
    pub unmodelled: BTreeMap<&'static str, u64>,
}

struct Bucket {
    tokens: u64,
    at: Instant,
}

impl Bucket {
    /// Takes `units` if the bucket (refilled at `rate` per second, holding at most one
    /// second's worth) has them.
    fn take(&mut self, units: u64, rate: u64, now: Instant) -> bool {
        let refill = (now - self.at).as_micros() * u128::from(rate) / 1_000_000;
        if refill > 0 {
            self.tokens = (self.tokens + u64::try_from(refill).unwrap_or(u64::MAX)).min(rate);
            self.at = now;
        }
        // A request bigger than a full bucket waits for a full one.
        let units = units.min(rate);
        if self.tokens >= units {
            self.tokens -= units;
            true
        } else {
            false
        }
    }
}

#[derive(Default)]
struct State {
    counts: Counts,
    writes: HashMap<String, Bucket>,
    reads: HashMap<String, Bucket>,
    in_flight: HashSet<String>,
    seed: u64,
}

/// The simulated DynamoDB: shared by every store call of one run.
#[derive(Clone, Default)]
pub struct Dynamo {
    state: Arc<Mutex<State>>,
}

impl Dynamo {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn counts(&self) -> Counts {
        self.state().counts.clone()
    }

    pub fn unmodelled(&self, method: &'static str) {
        *self.state().counts.unmodelled.entry(method).or_default() += 1;
    }

    /// Sends `request` as the SDK would: throttled attempts back off and retry up to the
    /// SDK's attempt limit; a transaction meeting an in-flight one on an item is cancelled
    /// (not retried by the SDK: the app's own retry decides). Waits out its latency.
    pub async fn send(&self, request: &Request) -> Result<(), StoreError> {
        for attempt in 0..aws::SDK_MAX_ATTEMPTS {
            let admitted = self.admit(request);
            match admitted {
                Admission::Throttled(backoff_permille) => {
                    let cap = aws::SDK_BACKOFF_BASE
                        .saturating_mul(1 << attempt)
                        .min(aws::SDK_BACKOFF_MAX);
                    tokio::time::sleep(cap * backoff_permille / 1000).await;
                }
                Admission::Conflict => {
                    return Err(StoreError::Unavailable("transaction conflict".into()));
                }
                Admission::Admitted => {
                    tokio::time::sleep(aws::latency(request.op, request.items)).await;
                    if request.op == Op::TransactWriteItems {
                        let mut state = self.state();
                        for item in &request.touched {
                            state.in_flight.remove(item);
                        }
                    }
                    return Ok(());
                }
            }
        }
        Err(StoreError::Unavailable("ThrottlingException".into()))
    }

    fn admit(&self, request: &Request) -> Admission {
        let now = Instant::now();
        let mut state = self.state();
        let state = &mut *state;
        if request.op == Op::TransactWriteItems
            && request.touched.iter().any(|i| state.in_flight.contains(i))
        {
            state.counts.conflicts += 1;
            count(&mut state.counts, request);
            return Admission::Conflict;
        }
        // The first partition key short of what the request wants of it, if any.
        let short = |buckets: &HashMap<String, Bucket>, wanted: &[(String, u64)], rate: u64| {
            let mut by_key: HashMap<&str, u64> = HashMap::new();
            for (key, units) in wanted {
                *by_key.entry(key).or_default() += units;
            }
            by_key
                .into_iter()
                .find(|(key, units)| {
                    buckets.get(*key).is_some_and(|b| {
                        let mut probe = Bucket {
                            tokens: b.tokens,
                            at: b.at,
                        };
                        !probe.take(*units, rate, now)
                    })
                })
                .map(|(key, _)| PartitionKind::of(key))
        };
        let read_rate = 2 * aws::PARTITION_RCU_PER_SECOND;
        let throttled_on = short(
            &state.writes,
            &request.writes,
            aws::PARTITION_WCU_PER_SECOND,
        )
        .or_else(|| short(&state.reads, &request.reads, read_rate));
        if let Some(kind) = throttled_on {
            state.counts.throttled += 1;
            *state.counts.throttled_on.entry(kind).or_default() += 1;
            // xorshift: deterministic jitter, so that a run is repeatable.
            state.seed ^= state.seed << 13 | 0x9E37_79B9;
            state.seed ^= state.seed >> 7;
            state.seed ^= state.seed << 17;
            return Admission::Throttled(u32::try_from(state.seed % 1000).unwrap_or(0));
        }
        for (key, units) in &request.writes {
            let bucket = state.writes.entry(key.clone()).or_insert(Bucket {
                tokens: aws::PARTITION_WCU_PER_SECOND,
                at: now,
            });
            bucket.take(*units, aws::PARTITION_WCU_PER_SECOND, now);
            state.counts.write_units += units;
            *state
                .counts
                .by_partition
                .entry(PartitionKind::of(key))
                .or_default() += units;
        }
        for (what, units) in &request.written {
            *state.counts.written.entry(what.clone()).or_default() += units;
        }
        for (key, units) in &request.reads {
            let bucket = state.reads.entry(key.clone()).or_insert(Bucket {
                tokens: read_rate,
                at: now,
            });
            bucket.take(*units, read_rate, now);
            state.counts.read_half_units += units;
        }
        if request.op == Op::TransactWriteItems {
            state.in_flight.extend(request.touched.iter().cloned());
        }
        count(&mut state.counts, request);
        Admission::Admitted
    }
}

enum Admission {
    Admitted,
    /// Wait this many thousandths of the backoff cap (full jitter) and try again.
    Throttled(u32),
    Conflict,
}

fn count(counts: &mut Counts, request: &Request) {
    let totals = counts.by_op.entry(request.op).or_default();
    totals.requests += 1;
    totals.items += u64::from(request.items);
}

/// How long a run of requests takes when sent one after another, without capacity
/// limits: for reports.
pub fn unloaded(requests: &[Request]) -> Duration {
    requests.iter().map(|r| aws::latency(r.op, r.items)).sum()
}

#[cfg(test)]
mod tests {
    use super::PartitionKind;
    use billing_app::new_ulid;
    use billing_aws::keys;
    use billing_domain::kernel::ids::{AccountId, InvoiceId, TenantId};

    #[test]
    fn each_key_the_store_writes_is_told_by_its_partition_kind() {
        let tenant = TenantId::from_ulid(new_ulid());
        let invoice = InvoiceId::from_ulid(new_ulid());
        let account = AccountId::from_ulid(new_ulid());
        let event = "evt_01KBKQ0000000000000000000";
        let cases = [
            (
                keys::invoice(tenant, invoice, account).pk,
                PartitionKind::TenantShard,
            ),
            (
                keys::outbox_beside_event(tenant, event).pk,
                PartitionKind::TenantShard,
            ),
            (keys::outbox(tenant, event).pk, PartitionKind::Outbox),
            (keys::invoice_sequence(tenant).pk, PartitionKind::Tenant),
            (keys::pending_shard(tenant, 7), PartitionKind::Pending),
            (keys::due_shard(3), PartitionKind::Due),
            (
                keys::account_invoices_index(tenant, account),
                PartitionKind::Gsi1,
            ),
            (
                keys::event_resource_index(tenant, "in_1"),
                PartitionKind::Gsi1,
            ),
        ];
        for (pk, kind) in cases {
            assert_eq!(PartitionKind::of(&pk), kind, "{pk}");
        }
    }
}
