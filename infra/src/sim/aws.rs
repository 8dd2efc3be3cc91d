//! The published AWS figures the simulation runs on: request latencies, DynamoDB's
//! per-partition limits, the SDK's retry schedule and us-east-1 list prices. Each constant
//! names its source; where AWS publishes a range ("single-digit milliseconds"), the value
//! is the middle of it, and the README's scale section lists every one of them.

use std::time::Duration;

use super::model::Op;

// DynamoDB: "consistent single-digit millisecond response times at any scale"
// (https://aws.amazon.com/dynamodb/ and the developer guide's "Troubleshooting latency
// issues", https://repost.aws/knowledge-center/dynamodb-high-latency: "For most atomic
// operations, such as GetItem and PutItem, you can expect an average latency in
// single-digit milliseconds").
const GET_ITEM: Duration = Duration::from_millis(5);
const SINGLE_WRITE: Duration = Duration::from_millis(7);
/// BatchGetItem reads its keys in parallel inside DynamoDB: one round trip, a little more.
const BATCH_GET: Duration = Duration::from_millis(8);
/// A Query page (up to 1 MB); non-atomic operations' latency "depends on the size of
/// the result set" (same knowledge-center article).
const QUERY: Duration = Duration::from_millis(8);
/// TransactWriteItems runs two phases (prepare, commit) over every item
/// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html,
/// "Capacity management for transactions": each item is read and written twice), so its
/// latency grows with the items: a base round trip plus a share per item.
/// BatchWriteItem writes its items in parallel inside DynamoDB, like BatchGetItem: one
/// round trip, a little more than a single write.
const BATCH_WRITE: Duration = Duration::from_millis(9);
const TRANSACTION_BASE: Duration = Duration::from_millis(15);
const TRANSACTION_PER_ITEM: Duration = Duration::from_micros(400);

// SQS: "typical latencies for SendMessage, ReceiveMessage, and DeleteMessage API requests
// are in the tens or low hundreds of milliseconds"
// (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-throughput-horizontal-scaling-and-batching.html).
pub const SQS_SEND: Duration = Duration::from_millis(20);
pub const SQS_RECEIVE: Duration = Duration::from_millis(20);
// EventBridge PutEvents: the service's published P50 of ~0.5 s end to end is delivery to
// targets; the API call itself answers in tens of ms
// (https://aws.amazon.com/blogs/compute/introducing-the-amazon-eventbridge-service-integration-for-aws-step-functions/).
pub const PUT_EVENTS: Duration = Duration::from_millis(30);
/// Lambda cold start of a ~10 MB Rust bootstrap on provided.al2023: a minimal axum
/// bootstrap reports an Init Duration of 18–22 ms
/// (https://fulgurion.com/blog/posts/rust-on-aws-lambda-cold-start/); ours also builds the
/// SDK clients and reads its config, so twice the high end plus code loading of ~10 MB.
pub const COLD_START: Duration = Duration::from_millis(80);
/// What Lambda's SQS event source mapping adds between a message becoming visible and the
/// invocation (its pollers long-poll; https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html).
pub const POLL_TO_INVOKE: Duration = Duration::from_millis(20);

/// Per-partition throughput: "each individual partition is limited to 1,000 write units
/// per second and 3,000 read units per second"
/// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/warm-throughput-scenarios.html).
pub const PARTITION_WCU_PER_SECOND: u64 = 1_000;
pub const PARTITION_RCU_PER_SECOND: u64 = 3_000;

/// The AWS SDK's standard retry mode: 3 attempts, exponential backoff with full jitter from
/// a 1 s base capped at 20 s (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html).
pub const SDK_MAX_ATTEMPTS: u32 = 3;
pub const SDK_BACKOFF_BASE: Duration = Duration::from_secs(1);
pub const SDK_BACKOFF_MAX: Duration = Duration::from_secs(20);

/// The latency of one DynamoDB request of `items` items.
pub fn latency(op: Op, items: u32) -> Duration {
    match op {
        Op::GetItem => GET_ITEM,
        Op::BatchGetItem => BATCH_GET,
        Op::Query => QUERY,
        Op::PutItem | Op::UpdateItem | Op::DeleteItem => SINGLE_WRITE,
        Op::BatchWriteItem => BATCH_WRITE,
        Op::TransactWriteItems => TRANSACTION_BASE + TRANSACTION_PER_ITEM * items,
    }
}

/// us-east-1 list prices in picodollars (10^-12 USD), so that every price is an integer
/// and the arithmetic exact, as published on the pricing pages (read 2026-12-02):
/// - Lambda (https://aws.amazon.com/lambda/pricing/): $0.20 per 1M requests;
///   arm64 $0.0000133334 per GB-second.
/// - DynamoDB on-demand (https://aws.amazon.com/dynamodb/pricing/on-demand/, after the
///   November 2024 reduction): $0.625 per million write request units, $0.125 per million
///   read request units; a transactional write is 2 WRU per KB, a strongly consistent
///   read 1 RRU per 4 KB, an eventually consistent one half that.
/// - SQS (https://aws.amazon.com/sqs/pricing/): $0.40 per million standard requests,
///   $0.50 per million FIFO requests (each 64 KB chunk of a request is one request).
/// - EventBridge (https://aws.amazon.com/eventbridge/pricing/): $1.00 per million custom
///   events published (64 KB chunks).
/// - API Gateway HTTP APIs (https://aws.amazon.com/api-gateway/pricing/): $1.00 per
///   million requests (first 300 million a month).
pub mod price {
    pub const LAMBDA_REQUEST: u128 = 200_000;
    pub const LAMBDA_GB_SECOND: u128 = 13_333_400;
    pub const DYNAMODB_WRU: u128 = 625_000;
    pub const DYNAMODB_RRU: u128 = 125_000;
    pub const SQS_STANDARD: u128 = 400_000;
    pub const SQS_FIFO: u128 = 500_000;
    pub const EVENTBRIDGE_EVENT: u128 = 1_000_000;
    pub const HTTP_API_REQUEST: u128 = 1_000_000;
}
