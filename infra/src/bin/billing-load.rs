//! Billing throughput on the local stack, and what billing one invoice costs in DynamoDB
//! requests. Starts its own stand-in, then:
//!
//! 1. measures the stand-in's raw conditional-put rate (the ceiling for anything here);
//! 2. creates `--subscriptions` daily subscriptions over `--tenants` tenants on a clock one
//!    day back, so one renewal of each is due now;
//! 3. drafts them all through the `billing-worker` handler as the FIFO billing queue
//!    delivers them (batches of ten of a tenant, `--workers` batches at once), counting
//!    every DynamoDB request by operation;
//! 4. finalizes each tenant's drafts as its finalize job would (tenants at once, each
//!    tenant's one finalizer), counting again.
//!
//! `cargo run --release -p billing-infra --bin billing-load -- --subscriptions 2000 --tenants 2`

// Rates and ratios of a measurement, never money.
#![allow(clippy::float_arithmetic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::billing::StartSubscription;
use billing_app::ports::{BillingJob, Clock, SystemClock};
use billing_app::{App, Caller};
use billing_aws::DynamoStore;
use billing_domain::customers::tenant::TenantMode;
use billing_infra::request_count::{counted_client, Counter};
use billing_infra::stack;
use clap::Parser;
use jiff::{SignedDuration, Timestamp};

#[derive(Parser)]
#[command(about = "Billing throughput and DynamoDB requests per invoice, locally")]
struct Args {
    #[arg(long, default_value_t = 1000)]
    subscriptions: usize,
    /// SQS batches handled at once (Lambda concurrency).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Conditional puts for the stand-in's baseline rate.
    #[arg(long, default_value_t = 1000)]
    puts: usize,
    /// Tenants the subscriptions are spread over (each bills on its own invoice sequence).
    #[arg(long, default_value_t = 10)]
    tenants: usize,
}

struct Stopped(Timestamp);

impl Clock for Stopped {
    fn now(&self) -> Timestamp {
        self.0
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_writer(std::io::stderr)
        .init();
    let stack::OwnStack {
        stand_in: mut child,
        config,
        sdk,
    } = stack::own_stack("billing-load").await?;
    // What `webhook-fanout` does with the webhook queue, minus the deliveries (there are no
    // endpoints): take the events off it. Left to pile up, the stand-in's SQS gets slower
    // with every message queued (it counts the queue on each send).
    let draining = tokio::spawn(drain(
        aws_sdk_sqs::Client::new(&sdk),
        billing_aws::SqsQueue::by_name(&sdk, stack::WEBHOOK_QUEUE)
            .await?
            .url()
            .to_owned(),
    ));
    let counter = Arc::new(Counter::default());
    let dynamodb = counted_client(&sdk, counter.clone());

    // 1. The stand-in's raw conditional-put rate, at the same concurrency.
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.workers {
        let (client, next, table, total) = (
            dynamodb.clone(),
            next.clone(),
            config.table_name.clone(),
            args.puts as u64,
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let _ = client
                    .put_item()
                    .table_name(&table)
                    .item("pk", AttributeValue::S(format!("LOAD#{i}")))
                    .item("sk", AttributeValue::S("LOAD".into()))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let put_rate = args.puts as f64 / started.elapsed().as_secs_f64();

    // 2. Subscriptions created a day (and a minute) ago: one renewal each is due now. They
    //    are spread over `--tenants` tenants, each with its plan and account; a tenant's
    //    subscriptions are created one after another (they share its invoice sequence).
    let store: Arc<dyn billing_app::ports::Store> =
        Arc::new(DynamoStore::new(dynamodb.clone(), &config.table_name));
    let back = Timestamp::now() - SignedDuration::from_hours(24) - SignedDuration::from_mins(1);
    let past = App::new(
        store.clone(),
        Arc::new(Stopped(back)),
        std::sync::Arc::new(billing_aws::SandboxGateway::new()),
    );
    let created = Instant::now();
    let tenants = args.tenants.max(1);
    let next_tenant = Arc::new(AtomicU64::new(0));
    let mut creating = tokio::task::JoinSet::new();
    for _ in 0..args.workers.min(tenants) {
        let (past, next_tenant) = (past.clone(), next_tenant.clone());
        let (subscriptions, tenants) = (args.subscriptions, tenants);
        creating.spawn(async move {
            let mut made = Vec::new();
            loop {
                let t = next_tenant.fetch_add(1, Ordering::Relaxed) as usize;
                if t >= tenants {
                    return anyhow::Ok(made);
                }
                let count = subscriptions / tenants + usize::from(t < subscriptions % tenants);
                made.push(tenant_with_subscriptions(&past, t, count).await?);
            }
        });
    }
    let mut groups = Vec::new();
    while let Some(made) = creating.join_next().await {
        groups.extend(made??);
    }
    let setup = created.elapsed();
    let billed: usize = groups.iter().map(Vec::len).sum();

    // 3. Draft through the worker's handler, counting requests. Each subscription is its
    //    own FIFO message group, so any worker takes any batch (of ten of a tenant).
    // The worker as deployed: events published to the bus and webhook queue after each commit.
    let dispatch = Arc::new(
        billing_aws::AwsDispatch::by_queue_name(&sdk, stack::WEBHOOK_QUEUE, stack::EVENT_BUS)
            .await?,
    );
    let worker_store =
        DynamoStore::new(dynamodb.clone(), &config.table_name).with_dispatch(dispatch);
    let finalize_jobs = Arc::new(FinalizeJobs::default());
    let worker = App::new(
        Arc::new(worker_store),
        Arc::new(SystemClock),
        std::sync::Arc::new(billing_aws::SandboxGateway::new()),
    )
    .with_finalize_queue(finalize_jobs.clone());
    drop(store);
    let batches: Vec<SqsEvent> = groups
        .iter()
        .flat_map(|jobs| jobs.chunks(10).map(sqs_batch))
        .collect();
    let queue = Arc::new(Mutex::new(batches));
    counter.start();
    let started = Instant::now();
    let failures = Arc::new(AtomicU64::new(0));
    let mut billing = tokio::task::JoinSet::new();
    for _ in 0..args.workers {
        let (worker, queue, failures) = (worker.clone(), queue.clone(), failures.clone());
        billing.spawn(async move {
            loop {
                let batch = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(batch) = batch else { return };
                let response = billing_worker::handle(&worker, batch).await;
                failures.fetch_add(response.batch_item_failures.len() as u64, Ordering::Relaxed);
            }
        });
    }
    while billing.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let counts = counter.stop();
    let invoices = billed as f64;
    let rate = invoices / elapsed.as_secs_f64();

    // 4. The finalize jobs drafting sent, one per tenant (as their deduplication makes a
    //    burst of them), each tenant's finalizer at once.
    counter.start();
    let finalizing = Instant::now();
    let tenants_to_finalize: Vec<_> =
        std::mem::take(&mut *finalize_jobs.0.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect();
    let mut finalizers = tokio::task::JoinSet::new();
    for tenant in tenants_to_finalize {
        let worker = worker.clone();
        finalizers.spawn(async move { worker.billing.finalize_pending_invoices(tenant).await });
    }
    let mut numbered = 0;
    let mut transactions = 0;
    while let Some(report) = finalizers.join_next().await {
        let report = report??;
        numbered += report.numbered;
        transactions += report.transactions;
    }
    let finalize_elapsed = finalizing.elapsed();
    let finalize_counts = counter.stop();

    println!(
        "stand-in conditional PutItem: {put_rate:.0}/s ({} puts, {} at once)",
        args.puts, args.workers
    );
    println!(
        "created {billed} subscriptions over {tenants} tenants in {:.1} s",
        setup.as_secs_f64()
    );
    println!(
        "billed {billed} renewals in {:.1} s: {rate:.1} invoices/s ({} failed records), ratio to raw puts {:.2}",
        elapsed.as_secs_f64(),
        failures.load(Ordering::Relaxed),
        rate / put_rate
    );
    println!("DynamoDB requests per invoice, drafting:");
    for (operation, n) in &counts {
        println!("  {operation:<20} {:.2}", *n as f64 / invoices);
    }
    println!(
        "finalized {numbered} drafts in {transactions} numbering transactions in {:.1} s",
        finalize_elapsed.as_secs_f64()
    );
    println!("DynamoDB requests per invoice, finalizing:");
    for (operation, n) in &finalize_counts {
        println!("  {operation:<20} {:.2}", *n as f64 / invoices);
    }
    draining.abort();
    let _ = child.kill();
    Ok(())
}

/// The finalize queue: the tenants drafting asked to finalize.
#[derive(Default)]
struct FinalizeJobs(Mutex<std::collections::BTreeSet<billing_domain::kernel::ids::TenantId>>);

#[async_trait::async_trait]
impl billing_app::ports::BillingQueue for FinalizeJobs {
    async fn enqueue(&self, jobs: &[BillingJob]) -> Result<(), billing_app::ports::StoreError> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(jobs.iter().map(BillingJob::tenant));
        Ok(())
    }
}

/// Receives and deletes the queue's messages, ten at a time, until aborted.
async fn drain(sqs: aws_sdk_sqs::Client, url: String) {
    loop {
        let Ok(output) = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
        else {
            continue;
        };
        let entries: Vec<_> = output
            .messages()
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty() {
            let _ = sqs
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await;
        }
    }
}

/// A tenant with a daily plan, one account and `count` subscriptions on it, created on the
/// clock a day back; returns the billing jobs of their renewals.
async fn tenant_with_subscriptions(
    past: &App,
    n: usize,
    count: usize,
) -> anyhow::Result<Vec<BillingJob>> {
    let (tenant, issued) = past
        .customers
        .create_tenant(&format!("Load {n}"), TenantMode::Sandbox)
        .await?;
    let caller = Caller::of_key(&issued.key, None);
    let plan = past.catalog
        .create_plan(
            &caller,
            serde_json::from_value(serde_json::json!({"code": "daily", "name": "Daily", "interval": {"unit": "day"},
                "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 100}}}}}))?,
        )
        .await?;
    let account = past
        .customers
        .create_account(
            &caller,
            serde_json::from_value(
                serde_json::json!({"email": "load@example.com", "currency": "usd"}),
            )?,
        )
        .await?;
    let mut jobs = Vec::with_capacity(count);
    for _ in 0..count {
        let start = StartSubscription::new(account.id, plan.plan.id);
        let sub = past.billing.create_subscription(&caller, start).await?;
        jobs.push(BillingJob::Subscription {
            tenant: tenant.id,
            id: sub.id,
        });
    }
    Ok(jobs)
}

fn job_id(job: &BillingJob) -> String {
    match job {
        BillingJob::Subscription { id, .. } => id.to_string(),
        other => format!("{other:?}"),
    }
}

fn sqs_batch(jobs: &[BillingJob]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = jobs
        .iter()
        .map(|job| {
            let mut message = SqsMessage::default();
            message.message_id = Some(job_id(job));
            message.body = serde_json::to_string(job).ok();
            message
        })
        .collect();
    event
}
