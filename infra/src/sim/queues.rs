//! SQS and EventBridge as the simulation sees them: the billing queue (FIFO with one
//! message group per tenant as deployed today, or standard), the payments queue (which
//! records when each payment attempt was enqueued), and the post-commit dispatch.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use billing_app::ports::*;
use billing_domain::events::record::DomainEvent;
use billing_domain::kernel::ids::{PaymentId, TenantId};
use jiff::SignedDuration;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::aws;
use billing_aws::billing_queue::SENDS_IN_FLIGHT;

/// Requests to SQS and EventBridge, for the cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessagingCounts {
    pub sqs_fifo_requests: u64,
    pub sqs_standard_requests: u64,
    pub events_published: u64,
}

#[derive(Clone, Default)]
pub struct Messaging(Arc<Mutex<MessagingCounts>>);

impl Messaging {
    pub fn counts(&self) -> MessagingCounts {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, f: impl FnOnce(&mut MessagingCounts)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn sqs(&self, fifo: bool, requests: u64) {
        self.add(|c| {
            if fifo {
                c.sqs_fifo_requests += requests;
            } else {
                c.sqs_standard_requests += requests;
            }
        });
    }
}

/// How long a failed message stays invisible before it comes back (template.yaml's
/// `VisibilityTimeout` of the billing queue).
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(60);

/// SQS FIFO's deduplication interval.
const DEDUPLICATION_WINDOW: Duration = Duration::from_secs(300);

/// A FIFO group stays locked while its batch is in flight; a consumer always finishes.
const IN_FLIGHT: Duration = Duration::from_secs(86_400);

struct Message {
    job: BillingJob,
    visible_at: Instant,
}

#[derive(Default)]
struct QueueState {
    /// FIFO: one queue per message group (tenant); standard: everything under one key.
    groups: BTreeMap<Option<String>, VecDeque<Message>>,
    /// Groups with messages in flight (FIFO hands a group to one consumer at a time).
    busy: BTreeMap<Option<String>, Instant>,
    /// FIFO deduplication ids seen in the last five minutes.
    deduplicated: std::collections::HashMap<String, Instant>,
    distinct: std::collections::HashSet<String>,
}

/// The billing queue.
pub struct BillingQueueSim {
    fifo: bool,
    start: Instant,
    state: Mutex<QueueState>,
    arrived: Notify,
    messaging: Messaging,
}

impl BillingQueueSim {
    pub fn new(fifo: bool, messaging: Messaging) -> Self {
        Self {
            fifo,
            start: Instant::now(),
            state: Mutex::default(),
            arrived: Notify::new(),
            messaging,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Different jobs sent so far.
    pub fn distinct(&self) -> u64 {
        self.state().distinct.len() as u64
    }

    /// Up to ten visible messages (FIFO: of one group not in flight), waiting for some.
    /// The Lambda poller's long polling is not billed per empty receive here: its cost is
    /// Lambda's, counted in requests per batch.
    pub async fn receive(&self) -> Vec<BillingJob> {
        loop {
            let notified = self.arrived.notified();
            let (batch, next) = self.take();
            if !batch.is_empty() {
                self.messaging.sqs(self.fifo, 1);
                tokio::time::sleep(aws::SQS_RECEIVE).await;
                return batch;
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    fn take(&self) -> (Vec<BillingJob>, Option<Instant>) {
        let now = Instant::now();
        let mut state = self.state();
        let state = &mut *state;
        let mut next: Option<Instant> = None;
        for (group, messages) in &mut state.groups {
            if let Some(until) = state.busy.get(group).copied() {
                if until > now {
                    next = Some(next.map_or(until, |n| n.min(until)));
                    continue;
                }
                state.busy.remove(&group.clone());
            }
            let mut batch = Vec::new();
            while batch.len() < 10 {
                match messages.front() {
                    Some(m) if m.visible_at <= now => {
                        batch.extend(messages.pop_front().map(|m| m.job));
                    }
                    Some(m) => {
                        next = Some(next.map_or(m.visible_at, |n| n.min(m.visible_at)));
                        break;
                    }
                    None => break,
                }
            }
            if !batch.is_empty() {
                let group = group.clone();
                // Empty groups go, so that a receive looks at groups with messages only.
                if messages.is_empty() {
                    state.groups.remove(&group);
                }
                if self.fifo {
                    // Until the consumer finishes the batch.
                    state.busy.insert(group, now + IN_FLIGHT);
                }
                return (batch, next);
            }
        }
        (Vec::new(), next)
    }

    /// Deletes what succeeded; what failed comes back after the visibility timeout (and
    /// on FIFO keeps its group waiting until then).
    pub async fn finish(&self, jobs: Vec<BillingJob>, failed: &[usize]) {
        let now = Instant::now();
        let Some(group) = jobs.first().map(|j| self.group(j)) else {
            return;
        };
        {
            let mut state = self.state();
            let queue = state.groups.entry(group.clone()).or_default();
            for (i, job) in jobs.into_iter().enumerate().rev() {
                if failed.contains(&i) {
                    queue.push_front(Message {
                        job,
                        visible_at: now + VISIBILITY_TIMEOUT,
                    });
                }
            }
            if failed.is_empty() {
                state.busy.remove(&group);
            } else {
                state.busy.insert(group, now + VISIBILITY_TIMEOUT);
            }
        }
        // The event source mapping deletes the batch's successes with one request.
        self.messaging.sqs(self.fifo, 1);
        self.arrived.notify_waiters();
    }

    fn group(&self, job: &BillingJob) -> Option<String> {
        self.fifo.then(|| job.group())
    }
}

#[async_trait]
impl BillingQueue for BillingQueueSim {
    async fn enqueue(&self, jobs: &[BillingJob]) -> Result<(), StoreError> {
        for wave in jobs.chunks(10 * SENDS_IN_FLIGHT) {
            self.messaging
                .sqs(self.fifo, wave.len().div_ceil(10) as u64);
            tokio::time::sleep(aws::SQS_SEND).await;
            let now = Instant::now();
            let mut state = self.state();
            for job in wave {
                // A tenant's finalize jobs share a deduplication id per second (as
                // `SqsQueue` sends them): FIFO drops a repeat within five minutes.
                if let (true, BillingJob::Finalize { tenant }) = (self.fifo, job) {
                    let id = format!("{tenant}-{}", (now - self.start).as_secs());
                    if state
                        .deduplicated
                        .get(&id)
                        .is_some_and(|at| now - *at < DEDUPLICATION_WINDOW)
                    {
                        continue;
                    }
                    state.deduplicated.insert(id, now);
                }
                state.distinct.insert(format!("{job:?}"));
                let group = self.group(job);
                state.groups.entry(group).or_default().push_back(Message {
                    job: job.clone(),
                    visible_at: now,
                });
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    fn coalesces_finalize_jobs_per_second(&self) -> bool {
        self.fifo
    }
}

/// The payments queue (standard): records each attempt's enqueues and when the last came.
#[derive(Default)]
pub struct PaymentQueueSim {
    state: Mutex<PaymentsSeen>,
    messaging: Messaging,
}

#[derive(Default, Clone)]
pub struct PaymentsSeen {
    pub enqueued: BTreeMap<PaymentId, u32>,
    pub last_at: Option<Instant>,
}

impl PaymentQueueSim {
    pub fn new(messaging: Messaging) -> Self {
        Self {
            state: Mutex::default(),
            messaging,
        }
    }

    pub fn seen(&self) -> PaymentsSeen {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl PaymentQueue for PaymentQueueSim {
    async fn enqueue(&self, jobs: &[PaymentJob]) -> Result<(), StoreError> {
        for wave in jobs.chunks(10 * SENDS_IN_FLIGHT) {
            self.messaging.sqs(false, wave.len().div_ceil(10) as u64);
            tokio::time::sleep(aws::SQS_SEND).await;
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            for job in wave {
                if let PaymentJob::Attempt { id, .. } = job {
                    *state.enqueued.entry(*id).or_default() += 1;
                }
            }
            state.last_at = Some(Instant::now());
        }
        Ok(())
    }
}

/// EventBridge and the webhook queue, as `AwsDispatch` uses them after a commit: one
/// PutEvents per ten events and one SendMessageBatch per ten to the webhook queue.
#[derive(Clone, Default)]
pub struct DispatchSim {
    pub messaging: Messaging,
}

#[async_trait]
impl Dispatch for DispatchSim {
    async fn publish(&self, _tenant: TenantId, events: &[DomainEvent]) -> Result<(), StoreError> {
        let batches = events.len().div_ceil(10) as u64;
        self.messaging.add(|c| {
            c.events_published += events.len() as u64;
            c.sqs_standard_requests += batches;
        });
        // The bus and the queue are called at once, per batch of ten.
        for _ in 0..batches {
            tokio::time::sleep(aws::PUT_EVENTS.max(aws::SQS_SEND)).await;
        }
        Ok(())
    }

    async fn schedule_delivery(
        &self,
        _job: &DeliveryJob,
        _delay: SignedDuration,
    ) -> Result<(), StoreError> {
        self.messaging.sqs(false, 1);
        tokio::time::sleep(aws::SQS_SEND).await;
        Ok(())
    }
}
