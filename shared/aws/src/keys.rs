//! The key layout of the single table: one function per entity. Nothing outside this
//! module spells a `pk`, `sk` or index key. Every partition key starts with the tenant.
//!
//! A tenant's items live in two kinds of partition. What is small and rarely written (the
//! tenant, its keys, accounts, catalog, settings, claims, the invoice sequence) shares
//! `T#{tenant}`. What a renewal, a payment or a burst of usage writes per subscription is
//! spread over [`TENANT_SHARDS`] shard partitions `T#{tenant}#{shard:02}` ("`T#{tenant}#S(x)`"
//! below: the shard is the FNV hash of the id `x` modulo the shard count), so a tenant's
//! write capacity is that many partitions' (~1,000 WCU/s each) instead of one's, without
//! waiting for DynamoDB's split for heat. The shard comes from the id, so a GetItem by id
//! needs no lookup; a subscription's rollups share its shard (one Query reads a period's);
//! an account's dunning case, notices, quota snapshots, payment profile, discounts, balances,
//! credit grants and ledger share the account's. A tenant-wide list queries the same sort-key range on every shard and merges
//! the pages by sort key (`DynamoStore::scan_shards`), so its order and cursor (the last
//! id) are what one partition gave; per-account lists stay on `gsi1`.
//!
//! | entity            | pk            | sk                              | gsi1pk                         | gsi1sk            |
//! |-------------------|---------------|---------------------------------|--------------------------------|-------------------|
//! | tenant            | `T#{tenant}`  | `TENANT`                        |                                |                   |
//! | API key           | `T#{tenant}`  | `APIKEY#{key_id}`               |                                |                   |
//! | account           | `T#{tenant}`  | `ACCOUNT#{account_id}`          | `T#{tenant}#EMAIL#{email}`     | `ACCOUNT#{id}`    |
//! | external_id claim | `T#{tenant}`  | `UNIQUE#ACCOUNT_EXTERNAL_ID#{x}`|                                |                   |
//! | audit record      | `T#{tenant}#S(audit_id)` | `AUDIT#{audit_id}` (fields packed) | `T#{tenant}#AUDIT#{entity_id}` | `{audit_id}`      |
//! | domain event      | `T#{tenant}#S(event_id)` | `EVENT#{event_id}` (TTL, fields packed) | `T#{tenant}#EVENTS#{resource}` | `{event_id}` |
//! | its outbox item (until published) | `T#{tenant}#OUTBOX#{fnv(event_id) % 32:02}` (before: `T#{tenant}#S(event_id)`) | `OUTBOX#{event_id}` (TTL, due; keys only) |         |                   |
//! | webhook endpoint  | `T#{tenant}`  | `WEBHOOK#{endpoint_id}`         |                                |                   |
//! | webhook delivery  | `T#{tenant}#S(delivery_id)` | `WHDELIVERY#{endpoint}#{id}` (TTL, due) |   |                   |
//! | idempotency key   | `T#{tenant}#S(key)` | `IDEMPOTENCY#{key}` (TTL) |                                |                   |
//! | metric            | `T#{tenant}`  | `METRIC#{metric_id}`            |                                |                   |
//! | metric code claim | `T#{tenant}`  | `UNIQUE#METRIC_CODE#{code}`     |                                |                   |
//! | plan              | `T#{tenant}`  | `PLAN#{plan_id}`                |                                |                   |
//! | plan code claim   | `T#{tenant}`  | `UNIQUE#PLAN_CODE#{code}`       |                                |                   |
//! | coupon            | `T#{tenant}`  | `COUPON#{coupon_id}`            |                                |                   |
//! | coupon code claim | `T#{tenant}`  | `UNIQUE#COUPON_CODE#{code}`     |                                |                   |
//! | plan version      | `T#{tenant}`  | `PLANVERSION#{plan_id}#{n:06}`  |                                |                   |
//! | subscription      | `T#{tenant}#S(subscription_id)` | `SUB#{subscription_id}` (due; fields packed but `version`) | `T#{tenant}#ACCOUNT#{a}#SUBS` | `{id}` |
//! | invoice           | `T#{tenant}#S(invoice_id)` | `INVOICE#{invoice_id}` (fields packed but `version`) | `T#{tenant}#ACCOUNT#{a}#INVOICES` | `{id}`       |
//! | invoice sequence  | `T#{tenant}`  | `SEQUENCE#INVOICE`              |                                |                   |
//! | (pending invoice) | the invoice's item carries `pending_pk` `T#{tenant}#PENDING#{shard:02}`, `pending_sk` `{N or F}#{created ms}#{invoice_id}` (index `pending`) | | | |
//! | test clock        | `T#{tenant}`  | `CLOCK#{clock_id}`              |                                |                   |
//! | simulation job    | `T#{tenant}`  | `SIMULATION#{simulation_id}` (TTL) |                             |                   |
//! | simulation chunk  | `T#{tenant}`  | `SIMCHUNK#{simulation_id}#{n:06}` (TTL) |                        |                   |
//! | usage event       | `T#{tenant}#USAGE#{transaction_id}` | `USAGE_EVENT`             |                                |                   |
//! | usage rollup      | `T#{tenant}#S(subscription_id)` | `ROLLUP#{sub}#{period ms}#{metric}` (due) |      |                   |
//! | distinct value    | `T#{tenant}#VALUES#{sub}` | `{period ms}#{metric}#{value}` |                       |                   |
//! | quota snapshot    | `T#{tenant}#S(account_id)` | `QUOTA#{account}#{metric}` |                              |                   |
//! | payment (attempt) | `T#{tenant}#S(payment_id)` | `PAYMENT#{payment_id}` (due while pending) | `T#{tenant}#ACCOUNT#{a}#PAYMENTS` | `{id}` |
//! | payment profile   | `T#{tenant}#S(account_id)` | `PAYPROFILE#{account_id}` |                               |                   |
//! | account discounts | `T#{tenant}#S(account_id)` | `DISCOUNTS#{account_id}` |                                |                   |
//! | credit note       | `T#{tenant}`  | `CREDITNOTE#{id}`               | `T#{tenant}#ACCOUNT#{a}#CREDITNOTES` | `{id}`      |
//! | payment settings  | `T#{tenant}`  | `SETTINGS#PAYMENTS`             |                                |                   |
//! | limit settings    | `T#{tenant}`  | `SETTINGS#LIMITS`               |                                |                   |
//! | identity provider | `T#{tenant}`  | `SETTINGS#IDENTITY`             |                                |                   |
//! | issuer trust      | `ISSUER#{sha256 of issuer}` | `T#{tenant}`      |                                |                   |
//! | tax settings      | `T#{tenant}`  | `SETTINGS#TAX`                  |                                |                   |
//! | tax rate          | `T#{tenant}`  | `TAXRATE#{tax_rate_id}`         |                                |                   |
//! | rate count        | `T#{tenant}#S(subject)` | `RATE#{key id or tenant}#{window start s}` (TTL) |      |                   |
//! | gateway event     | `T#{tenant}#S(gateway event id)` | `GWEVENT#{gateway event id}` (TTL) |         |                   |
//! | gateway ref       | `GATEWAY#{gateway object id}` | `REF`           |                                |                   |
//! | hosted link       | `HOSTED#{sha256 of token}` | `LINK`             |                                |                   |
//! | hosted link epoch | `T#{tenant}#S(invoice_id)` | `HOSTEDEPOCH#{invoice_id}` |                       |                   |
//! | document record   | `T#{tenant}#S(of)`         | `DOCUMENT#{of}` (`of`: `in_…`, `cn_…`) |          |                   |
//! | dunning policy    | `T#{tenant}`  | `SETTINGS#DUNNING`              |                                |                   |
//! | dunning case      | `T#{tenant}#S(account_id)` | `DUNNING#{account_id}` (due) |                           |                   |
//! | dunning notice    | `T#{tenant}#S(account_id)` | `DUNNINGNOTICE#{account_id}#{key}` (due) |               |                   |
//! | sweep checkpoint  | `SWEEP`       | `CHECKPOINT` (one, versioned)   |                                |                   |
//! | balance           | `T#{tenant}#S(account_id)` | `BALANCE#{account_id}#{currency}` |                   |                   |
//! | credit grant      | `T#{tenant}#S(account_id)` | `CREDIT#{account_id}#{grant_id}` |                    |                   |
//! | wallet            | `T#{tenant}`  | `WALLET#{id}`                   | `T#{tenant}#ACCOUNT#{a}#WALLETS` | `{id}`          |
//! | wallet holder     | `T#{tenant}#S(account_id)` | `WALLETS#{account_id}#{currency}` |               |                   |
//! | wallet transaction | `T#{tenant}#S(wallet_id)` | `WTX#{wallet_id}#{id}`  |                   |                   |
//! | ledger entry      | `T#{tenant}#S(account_id)` | `LEDGER#{account_id}#{entry_id}` |                    |                   |
//!
//! "Fields packed": the item holds its keys, expiry and one binary `pz` attribute with the
//! record's fields as JSON deflated over a preset dictionary (`dynamo/packed.rs`), about an
//! eighth of their JSON; items written before hold them deflated alone in `packed`, or as
//! plain attributes, and all three read the same.
//!
//! Access patterns: how each read is served.
//!
//! | access pattern | how |
//! |---|---|
//! | authenticate an API key | GetItem `T#{tenant}` / `APIKEY#{key id}` (tenant and id come from the key itself) |
//! | get an account | GetItem `T#{tenant}` / `ACCOUNT#{id}` (consistent read) |
//! | list accounts, oldest first | Query `T#{tenant}`, `begins_with(sk, "ACCOUNT#")`, cursor = last id |
//! | get a subscription, invoice, payment attempt, event by id | GetItem `T#{tenant}#S(id)` / `SUB#{id}` … (consistent read) |
//! | a tenant's subscriptions, oldest first | Query every shard, `begins_with(sk, "SUB#")`, merged by sort key; cursor = last id (each shard resumes after it) |
//! | a tenant's invoices / payment attempts, newest first | the same with `INVOICE#` / `PAYMENT#`, descending |
//! | find accounts by email | Query GSI `gsi1` on `T#{tenant}#EMAIL#{lower-cased email}` |
//! | find the account with an external_id | GetItem of the uniqueness claim `UNIQUE#ACCOUNT_EXTERNAL_ID#{x}` |
//! | audit log, newest first | Query every shard, `begins_with(sk, "AUDIT#")`, descending, merged |
//! | audit log of one entity | Query GSI `gsi1` on `T#{tenant}#AUDIT#{entity id}`, descending |
//! | event log, newest first | Query every shard, `begins_with(sk, "EVENT#")`, descending, merged; `type` filters the pages |
//! | events of one resource | Query GSI `gsi1` on `T#{tenant}#EVENTS#{resource id}`, descending |
//! | webhook endpoints of a tenant | Query `T#{tenant}`, `begins_with(sk, "WEBHOOK#")` (at most 16) |
//! | deliveries of an endpoint | Query every shard, `begins_with(sk, "WHDELIVERY#{endpoint id}#")`, descending, merged |
//! | everything due up to now (outbox, webhook retries) | Query GSI `due`, one per shard `DUE#00`…`DUE#31` at once, `due_sk <= {now ms}~` (or `BETWEEN {from ms}~ AND {now ms}~` for a pass over what fell due since the last), paged per shard by `ExclusiveStartKey` from the last `due_sk` read (it holds the item's key); the sweep's position is GetItem / conditional PutItem of `SWEEP` / `CHECKPOINT` |
//! | idempotency key | conditional PutItem `IDEMPOTENCY#{key}` (taken over when its `lease_until` has passed unanswered), expires by TTL (`expires_at`) after 24 h |
//! | metric / plan by id | GetItem `METRIC#{id}` / `PLAN#{id}` |
//! | metric / plan by code | GetItem of the claim `UNIQUE#METRIC_CODE#{code}` / `UNIQUE#PLAN_CODE#{code}`, then the item |
//! | coupon by id / by code | GetItem `COUPON#{id}`; by code the claim `UNIQUE#COUPON_CODE#{code}`, then the item |
//! | list coupons | Query `begins_with(sk, "COUPON#")` |
//! | redeem a coupon | in the redemption's transaction: UpdateItem `COUPON#{id}` `SET times_redeemed = times_redeemed + 1` if not `deleted` and below `max_redemptions` |
//! | list metrics / plans | Query `begins_with(sk, "METRIC#")` / `"PLAN#"` (plans filtered by `active`) |
//! | a plan's price versions, in order | Query `begins_with(sk, "PLANVERSION#{plan}#")` (zero-padded numbers) |
//! | an account's payment attempts, newest first | Query GSI `gsi1` on `T#{tenant}#ACCOUNT#{a}#PAYMENTS`, descending (`invoice` filters by the invoice's account) |
//! | an account's cards and gateway customer | GetItem `PAYPROFILE#{account}` (one versioned item) |
//! | attempts and retries due | the `due` index: a pending `PAYMENT#{id}` carries its due time (under its test clock when it has one) |
//! | which tenants trust a JWT's issuer | Query `ISSUER#{sha256 of iss}`, `begins_with(sk, "T#")` (a token names only its issuer until its tenant claim is read) |
//! | which tenant a Stripe object belongs to | GetItem `GATEWAY#{pm_… or pi_…}` / `REF` (inbound webhooks name only Stripe's ids) |
//! | a Stripe event applied once | conditional PutItem `GWEVENT#{evt_…}` in the same transaction as its effect (TTL 30 days) |
//! | a usage event counted once | conditional put of `T#{tenant}#USAGE#{transaction_id}` in the transaction that moves its rollup |
//! | which transaction ids of a batch are known | BatchGetItem of the event keys (projection `pk`) |
//! | a subscription's usage of a period | Query the subscription's shard, `ROLLUP#{sub}#{period start ms}#` (one item per metric); ranges by `BETWEEN` |
//! | an entitlement check | GetItem `QUOTA#{account}#{metric}` (the current period's usage and limit) |
//! | late usage waiting for its supplemental invoice | the `due` index on the rollup (under its test clock when it has one) |
//! | a simulation job and its progress | GetItem `SIMULATION#{id}`; a chunk saved with a conditional PutItem `SIMCHUNK#{id}#{n}` and the job's PutItem on its `version`, in one transaction |
//! | a simulation's result | Query `begins_with(sk, "SIMCHUNK#{id}#")` (zero-padded chunk numbers, in order) |
//! | a tenant's drafts waiting for their numbers, oldest first | Query GSI `pending`, one per shard `T#{tenant}#PENDING#00`…`15`, `begins_with(pending_sk, "N#")`, merged by time; then BatchGetItem (consistent) of the invoices |
//! | numbered invoices owing their follow-ups | the same with `F#` |
//! | drafts a lost finalize job left waiting | the `due` index: a pending invoice carries a due entry pointing at `FINALIZE#{invoice id}` (not its own key) at its hand-over time |
//! | the tenant's dunning policy | GetItem `SETTINGS#DUNNING` |
//! | the tenant's rate limits | GetItem `SETTINGS#LIMITS` (once a minute per instance) |
//! | the tenant's tax settings | GetItem `SETTINGS#TAX` (each invoice drafted or previewed) |
//! | a tenant's tax rates, oldest first | Query `begins_with(sk, "TAXRATE#")` (only for tenants with tax settings) |
//! | a share of an hourly rate count | UpdateItem `RATE#{subject}#{window}`: `ADD used :want` if `used <= limit - want`; on failure (old item returned) the remainder, if `used` is unchanged; expires by TTL an hour after the window |
//! | an account's dunning case | GetItem `DUNNING#{account}` (one item per account, reused by its next case); in the `due` index at its next step (under its test clock when it has one) |
//! | a customer notice not yet sent | GetItem `DUNNINGNOTICE#{account}#{key}`; in the `due` index at the end of its sender's claim |
//! | a document's record (download, render once) | GetItem `DOCUMENT#{in_… or cn_…}` (consistent); created with `attribute_not_exists(pk)`, so a second render writes nothing |
//! | an account's balance in a currency, and its open grants | GetItem `BALANCE#{account}#{currency}` (it names its open grants), then BatchGetItem of those `CREDIT#{account}#{id}` |
//! | the balances of a finalizer's page of drafts | BatchGetItem of their `BALANCE#{account}#{currency}` |
//! | an account's balances | Query `begins_with(sk, "BALANCE#{account}#")` (one item per currency) |
//! | an account's grants / ledger, newest first | Query `begins_with(sk, "CREDIT#{account}#")` / `"LEDGER#{account}#"`, descending |
//!
//! The due index (`due`, keys `due_pk`/`due_sk`) is sparse: only items waiting for a time
//! carry it. `due_pk` is one of [`DUE_SHARDS`] shards (`DUE#07`), so a burst of items due
//! at the same second spreads over partitions; `due_sk` is the zero-padded due time in
//! epoch milliseconds followed by the item's own key, so a sweep reads "everything due up to
//! now" with one range query per shard and never scans the table. The index projects keys
//! only (`due_sk` names the item). It is the only key that
//! does not start with a tenant: the sweep serves every tenant, then handles each item
//! within its own tenant.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::PendingStage;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{
    AccountId, ApiKeyId, BalanceTransactionId, CouponId, CreditGrantId, CreditNoteId, InvoiceId,
    MetricId, PaymentId, PlanId, SimulationId, SubscriptionId, TaxRateId, TenantId, TestClockId,
    WalletId, WalletTransactionId,
};

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";
/// Epoch seconds after which DynamoDB's TTL deletes the item.
pub const TTL: &str = "expires_at";
pub const DUE_INDEX: &str = "due";
pub const DUE_PK: &str = "due_pk";
pub const DUE_SK: &str = "due_sk";
/// How many partitions the due index spreads over. Every tenant's renewals write about 13
/// write units of due entries each (their outbox items', the subscription's move, the
/// invoice's hand-over and due date, the payment attempt's), so 16 shards throttled a
/// single tenant renewing 1,100 a second (issue 20). Raising the count needs no
/// migration: an entry stays in the shard it was written to until its item is rewritten
/// or deleted, and the sweep queries every shard up to the count, the old ones among them.
pub const DUE_SHARDS: u32 = 32;
/// The finalizer's index of a tenant's pending invoices (sparse, like `due`).
pub const PENDING_INDEX: &str = "pending";
pub const PENDING_PK: &str = "pending_pk";
pub const PENDING_SK: &str = "pending_sk";
/// How many partitions one tenant's pending invoices spread over: a big tenant drafts
/// thousands a second, past one partition's ~1000 writes a second.
pub const PENDING_SHARDS: u32 = 16;
/// What the due index points at for a tenant's drafts waiting for a finalizer.
pub const FINALIZE_PREFIX: &str = "FINALIZE#";

/// A primary key, plus the index keys an item carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub pk: String,
    pub sk: String,
    pub gsi1: Option<(String, String)>,
}

impl Key {
    fn new(pk: String, sk: String) -> Self {
        Self { pk, sk, gsi1: None }
    }

    fn with_gsi1(mut self, pk: String, sk: String) -> Self {
        self.gsi1 = Some((pk, sk));
        self
    }

    /// Just the primary key, for GetItem/DeleteItem.
    pub fn primary(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.pk.clone())),
            (SK.to_owned(), AttributeValue::S(self.sk.clone())),
        ])
    }

    /// Every key attribute, for writing an item or resuming a query after it.
    pub fn all(&self) -> HashMap<String, AttributeValue> {
        let mut map = self.primary();
        if let Some((pk, sk)) = &self.gsi1 {
            map.insert(GSI1_PK.to_owned(), AttributeValue::S(pk.clone()));
            map.insert(GSI1_SK.to_owned(), AttributeValue::S(sk.clone()));
        }
        map
    }
}

/// The primary key of a stored item, read back from it.
pub fn item_key(item: &HashMap<String, AttributeValue>) -> Option<Key> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    Some(Key::new(text(PK)?, text(SK)?))
}

pub fn tenant_partition(tenant: TenantId) -> String {
    format!("T#{tenant}")
}

/// How many partitions a tenant's high-volume items spread over. Each partition takes
/// about 1,000 write units a second and a renewal puts about 20 on its tenant's shards, so
/// 32 shards carry about 1,600 renewals a second where one partition carried 50 (fewer
/// writes per renewal raise both). A tenant-wide list queries every shard, so the count trades
/// list reads for write capacity. Changing it moves every sharded item: a migration, not
/// a setting.
pub const TENANT_SHARDS: u32 = 32;

/// One of a tenant's shard partitions, `T#{tenant}#07`.
pub fn tenant_shard(tenant: TenantId, shard: u32) -> String {
    format!("T#{tenant}#{shard:02}")
}

/// Every shard partition of a tenant: a tenant-wide list queries each and merges them by
/// sort key.
pub fn tenant_shards(tenant: TenantId) -> Vec<String> {
    (0..TENANT_SHARDS)
        .map(|shard| tenant_shard(tenant, shard))
        .collect()
}

/// The shard partition of the items filed under `owner` (an id): picked by the id's hash,
/// so reading an item by its id needs no lookup.
fn shard_of(tenant: TenantId, owner: &str) -> String {
    tenant_shard(tenant, fnv(owner.bytes()) % TENANT_SHARDS)
}

pub fn tenant(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), "TENANT".into())
}

pub const API_KEY_PREFIX: &str = "APIKEY#";

pub fn api_key(tenant: TenantId, id: ApiKeyId) -> Key {
    Key::new(tenant_partition(tenant), format!("{API_KEY_PREFIX}{id}"))
}

pub const ACCOUNT_PREFIX: &str = "ACCOUNT#";

/// An account; found by its email unless it has none (a purged account's tombstone).
pub fn account(tenant: TenantId, id: AccountId, email: &str) -> Key {
    let key = Key::new(tenant_partition(tenant), format!("{ACCOUNT_PREFIX}{id}"));
    if email.is_empty() {
        return key;
    }
    key.with_gsi1(
        account_email_index(tenant, email),
        format!("{ACCOUNT_PREFIX}{id}"),
    )
}

/// Accounts are found by email case-insensitively.
pub fn account_email_index(tenant: TenantId, email: &str) -> String {
    format!("T#{tenant}#EMAIL#{}", email.to_lowercase())
}

pub fn account_external_id(tenant: TenantId, external_id: &str) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("UNIQUE#ACCOUNT_EXTERNAL_ID#{external_id}"),
    )
}

pub const AUDIT_PREFIX: &str = "AUDIT#";

pub fn audit(tenant: TenantId, audit_id: &str, entity_id: &str) -> Key {
    Key::new(
        shard_of(tenant, audit_id),
        format!("{AUDIT_PREFIX}{audit_id}"),
    )
    .with_gsi1(audit_entity_index(tenant, entity_id), audit_id.to_owned())
}

pub fn audit_entity_index(tenant: TenantId, entity_id: &str) -> String {
    format!("T#{tenant}#AUDIT#{entity_id}")
}

pub const EVENT_PREFIX: &str = "EVENT#";

pub fn event(tenant: TenantId, event_id: &str) -> Key {
    Key::new(
        shard_of(tenant, event_id),
        format!("{EVENT_PREFIX}{event_id}"),
    )
}

/// An event as written: its primary key plus the index that lists one resource's events.
pub fn event_of_resource(tenant: TenantId, event_id: &str, resource_id: &str) -> Key {
    event(tenant, event_id).with_gsi1(
        event_resource_index(tenant, resource_id),
        event_id.to_owned(),
    )
}

pub const OUTBOX_PREFIX: &str = "OUTBOX#";

/// How many partitions a tenant's outbox items spread over. Nothing lists them (the sweep
/// finds them through `due`, marking deletes them by key), so the count costs no reads;
/// a renewal writes and deletes about 9 write units of them, which at 1,500 renewals a
/// second fill some 14 partitions.
pub const OUTBOX_SHARDS: u32 = 32;

/// The segment that names a tenant's outbox partitions, `T#{tenant}#OUTBOX#07`.
const OUTBOX_PARTITION: &str = "OUTBOX";

/// An event's outbox item: keys, its due entry and its expiry only. Deleting it marks the
/// event published, which costs a few write units instead of rewriting the event and its
/// `gsi1` copy. It lives in the tenant's outbox partitions, not beside the event: its
/// write and delete are a quarter of what a renewal writes, and off the shards they leave
/// the shards' capacity to the entities (issue 20).
pub fn outbox(tenant: TenantId, event_id: &str) -> Key {
    let shard = fnv(event_id.bytes()) % OUTBOX_SHARDS;
    Key::new(
        format!("T#{tenant}#{OUTBOX_PARTITION}#{shard:02}"),
        format!("{OUTBOX_PREFIX}{event_id}"),
    )
}

/// Where an event's outbox item was written before the outbox partitions: beside the
/// event, in its shard. Such an item is left only by an event whose publish failed just
/// before the change, until the sweep publishes it; reading an event and marking it
/// published look here too, so none is lost and none stays due (no migration).
pub fn outbox_beside_event(tenant: TenantId, event_id: &str) -> Key {
    Key::new(
        shard_of(tenant, event_id),
        format!("{OUTBOX_PREFIX}{event_id}"),
    )
}

pub fn event_resource_index(tenant: TenantId, resource_id: &str) -> String {
    format!("T#{tenant}#EVENTS#{resource_id}")
}

use billing_domain::kernel::ids::{DeliveryId, WebhookEndpointId};

pub const WEBHOOK_ENDPOINT_PREFIX: &str = "WEBHOOK#";

pub fn webhook_endpoint(tenant: TenantId, id: WebhookEndpointId) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{WEBHOOK_ENDPOINT_PREFIX}{id}"),
    )
}

pub const WEBHOOK_DELIVERY_PREFIX: &str = "WHDELIVERY#";

/// Deliveries sort under their endpoint, so one endpoint's log is one range of each shard.
pub fn webhook_delivery(tenant: TenantId, endpoint: WebhookEndpointId, id: DeliveryId) -> Key {
    Key::new(
        shard_of(tenant, &id.to_string()),
        format!("{}{id}", webhook_deliveries_of(endpoint)),
    )
}

pub fn webhook_deliveries_of(endpoint: WebhookEndpointId) -> String {
    format!("{WEBHOOK_DELIVERY_PREFIX}{endpoint}#")
}

/// What a due-index entry points at: its due time and its item's primary key, read back
/// from `due_sk` (the inverse of [`due`]).
pub fn parse_due(due_sk: &str) -> Option<(jiff::Timestamp, String, String)> {
    let (millis, rest) = due_sk.split_once('#')?;
    let at = jiff::Timestamp::from_millisecond(millis.parse().ok()?).ok()?;
    // pk is `T#{tenant}`, a shard `T#{tenant}#07` or an outbox partition
    // `T#{tenant}#OUTBOX#07`: the item's sk starts after the second `#`, or after the
    // shard's digits (no sort key starts with a digit, nor is one `OUTBOX#{digits}#…`).
    let mut pk_end = rest.match_indices('#').nth(1)?.0;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let segments: Vec<&str> = rest[pk_end + 1..].splitn(3, '#').collect();
    match segments[..] {
        [shard, _, ..] if digits(shard) => pk_end += 1 + shard.len(),
        [OUTBOX_PARTITION, shard, _] if digits(shard) => {
            pk_end += 2 + OUTBOX_PARTITION.len() + shard.len();
        }
        _ => {}
    }
    Some((at, rest[..pk_end].to_owned(), rest[pk_end + 1..].to_owned()))
}

/// The tenant of a partition key `T#{tenant}` or `T#{tenant}#…`.
pub fn tenant_of(pk: &str) -> Option<TenantId> {
    let rest = pk.strip_prefix("T#")?;
    let tenant = rest.split_once('#').map_or(rest, |(tenant, _)| tenant);
    TenantId::parse(tenant, "pk").ok()
}

pub fn idempotency(tenant: TenantId, key: &str) -> Key {
    Key::new(shard_of(tenant, key), format!("IDEMPOTENCY#{key}"))
}

pub const METRIC_PREFIX: &str = "METRIC#";

pub fn metric(tenant: TenantId, id: MetricId) -> Key {
    Key::new(tenant_partition(tenant), format!("{METRIC_PREFIX}{id}"))
}

pub fn metric_code(tenant: TenantId, code: &str) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("UNIQUE#METRIC_CODE#{code}"),
    )
}

pub const COUPON_PREFIX: &str = "COUPON#";

pub fn coupon(tenant: TenantId, id: CouponId) -> Key {
    Key::new(tenant_partition(tenant), format!("{COUPON_PREFIX}{id}"))
}

pub fn coupon_code(tenant: TenantId, code: &str) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("UNIQUE#COUPON_CODE#{code}"),
    )
}

pub const PLAN_PREFIX: &str = "PLAN#";

pub fn plan(tenant: TenantId, id: PlanId) -> Key {
    Key::new(tenant_partition(tenant), format!("{PLAN_PREFIX}{id}"))
}

pub fn plan_code(tenant: TenantId, code: &str) -> Key {
    Key::new(tenant_partition(tenant), format!("UNIQUE#PLAN_CODE#{code}"))
}

/// All versions of a plan share this prefix and sort by number.
pub fn plan_versions_prefix(plan: PlanId) -> String {
    format!("PLANVERSION#{plan}#")
}

pub fn plan_version(tenant: TenantId, plan: PlanId, number: u32) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{}{number:06}", plan_versions_prefix(plan)),
    )
}

pub const SUBSCRIPTION_PREFIX: &str = "SUB#";

pub fn subscription(tenant: TenantId, id: SubscriptionId, account: AccountId) -> Key {
    subscription_primary(tenant, id)
        .with_gsi1(account_subscriptions_index(tenant, account), id.to_string())
}

/// A subscription's primary key, for reading it by id (its index key needs the account).
pub fn subscription_primary(tenant: TenantId, id: SubscriptionId) -> Key {
    Key::new(
        subscription_partition(tenant, id),
        format!("{SUBSCRIPTION_PREFIX}{id}"),
    )
}

/// The shard holding a subscription and its usage rollups.
pub fn subscription_partition(tenant: TenantId, id: SubscriptionId) -> String {
    shard_of(tenant, &id.to_string())
}

pub fn account_subscriptions_index(tenant: TenantId, account: AccountId) -> String {
    format!("T#{tenant}#ACCOUNT#{account}#SUBS")
}

pub const INVOICE_PREFIX: &str = "INVOICE#";

pub fn invoice(tenant: TenantId, id: InvoiceId, account: AccountId) -> Key {
    invoice_primary(tenant, id).with_gsi1(account_invoices_index(tenant, account), id.to_string())
}

/// An invoice's primary key, for reading it by id.
pub fn invoice_primary(tenant: TenantId, id: InvoiceId) -> Key {
    let id = id.to_string();
    Key::new(shard_of(tenant, &id), format!("{INVOICE_PREFIX}{id}"))
}

pub fn account_invoices_index(tenant: TenantId, account: AccountId) -> String {
    format!("T#{tenant}#ACCOUNT#{account}#INVOICES")
}

/// The tenant's invoice-number sequence (attribute `last`).
pub fn invoice_sequence(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), "SEQUENCE#INVOICE".into())
}

/// One shard of a tenant's pending invoices.
pub fn pending_shard(tenant: TenantId, shard: u32) -> String {
    format!("T#{tenant}#PENDING#{shard:02}")
}

/// Where a pending invoice's `pending_sk` starts for `stage`: drafts (`N#`) and numbered
/// invoices owing their follow-ups (`F#`) are two ranges of each shard.
pub fn pending_stage(stage: PendingStage) -> &'static str {
    match stage {
        PendingStage::Number => "N#",
        PendingStage::FollowUps => "F#",
    }
}

/// The pending-index attributes of invoice `id`, drafted at `created_at`, at `stage`: its
/// shard comes from its id, its order within the shard from its time.
pub fn pending(
    tenant: TenantId,
    id: InvoiceId,
    created_at: jiff::Timestamp,
    stage: PendingStage,
) -> HashMap<String, AttributeValue> {
    let id = id.to_string();
    let shard = fnv(id.bytes()) % PENDING_SHARDS;
    HashMap::from([
        (
            PENDING_PK.to_owned(),
            AttributeValue::S(pending_shard(tenant, shard)),
        ),
        (
            PENDING_SK.to_owned(),
            AttributeValue::S(format!(
                "{}{}#{id}",
                pending_stage(stage),
                due_time(created_at)
            )),
        ),
    ])
}

/// The due entry of a pending invoice: at `at` the sweep hands its tenant to a finalizer.
pub fn finalize_due(
    tenant: TenantId,
    id: InvoiceId,
    at: jiff::Timestamp,
) -> HashMap<String, AttributeValue> {
    due(
        &Key::new(tenant_partition(tenant), format!("{FINALIZE_PREFIX}{id}")),
        at,
    )
}

pub const TEST_CLOCK_PREFIX: &str = "CLOCK#";

pub fn test_clock(tenant: TenantId, id: TestClockId) -> Key {
    Key::new(tenant_partition(tenant), format!("{TEST_CLOCK_PREFIX}{id}"))
}

pub fn simulation(tenant: TenantId, id: SimulationId) -> Key {
    Key::new(tenant_partition(tenant), format!("SIMULATION#{id}"))
}

pub fn simulation_chunks_prefix(id: SimulationId) -> String {
    format!("SIMCHUNK#{id}#")
}

pub fn simulation_chunk(tenant: TenantId, id: SimulationId, number: u32) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{}{number:06}", simulation_chunks_prefix(id)),
    )
}

pub fn dunning_policy(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), "SETTINGS#DUNNING".into())
}

pub const DUNNING_PREFIX: &str = "DUNNING#";

/// An account's latest dunning case; one item per account, reused by its next case.
pub fn dunning_case(tenant: TenantId, account: AccountId) -> Key {
    Key::new(
        account_partition(tenant, account),
        format!("{DUNNING_PREFIX}{account}"),
    )
}

pub const DUNNING_NOTICE_PREFIX: &str = "DUNNINGNOTICE#";

/// A customer notice (a dunning step's, or the email an event asks for) not yet confirmed
/// sent; `key` is unique within the account.
pub fn dunning_notice(tenant: TenantId, account: AccountId, key: &str) -> Key {
    Key::new(
        account_partition(tenant, account),
        format!("{}{key}", dunning_notices_of(account)),
    )
}

/// The sort-key prefix of an account's notices.
pub fn dunning_notices_of(account: AccountId) -> String {
    format!("{DUNNING_NOTICE_PREFIX}{account}#")
}

pub const PAYMENT_PREFIX: &str = "PAYMENT#";

pub fn payment(tenant: TenantId, id: PaymentId, account: AccountId) -> Key {
    payment_primary(tenant, id).with_gsi1(account_payments_index(tenant, account), id.to_string())
}

/// A payment attempt's primary key, for reading it by id.
pub fn payment_primary(tenant: TenantId, id: PaymentId) -> Key {
    let id = id.to_string();
    Key::new(shard_of(tenant, &id), format!("{PAYMENT_PREFIX}{id}"))
}

pub fn account_payments_index(tenant: TenantId, account: AccountId) -> String {
    format!("T#{tenant}#ACCOUNT#{account}#PAYMENTS")
}

/// An account's discounts (coupons redeemed onto the account), one versioned item.
pub fn account_discounts(tenant: TenantId, account: AccountId) -> Key {
    Key::new(
        account_partition(tenant, account),
        format!("DISCOUNTS#{account}"),
    )
}

/// An account's gateway customer and cards.
pub fn payment_profile(tenant: TenantId, account: AccountId) -> Key {
    Key::new(
        account_partition(tenant, account),
        format!("PAYPROFILE#{account}"),
    )
}

pub const CREDIT_NOTE_PREFIX: &str = "CREDITNOTE#";

pub fn credit_note(tenant: TenantId, id: CreditNoteId, account: AccountId) -> Key {
    Key::new(
        tenant_partition(tenant),
        format!("{CREDIT_NOTE_PREFIX}{id}"),
    )
    .with_gsi1(account_credit_notes_index(tenant, account), id.to_string())
}

pub fn account_credit_notes_index(tenant: TenantId, account: AccountId) -> String {
    format!("T#{tenant}#ACCOUNT#{account}#CREDITNOTES")
}

pub fn limit_settings(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), "SETTINGS#LIMITS".into())
}

pub fn identity_provider(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), "SETTINGS#IDENTITY".into())
}

/// The partition of the tenants that trust `issuer` (hashed: an issuer is any URL).
pub fn issuer_trusts(issuer: &str) -> String {
    use sha2::Digest;
    format!(
        "ISSUER#{}",
        hex_of(&sha2::Sha256::digest(issuer.as_bytes()))
    )
}

pub fn issuer_trust(issuer: &str, tenant: TenantId) -> Key {
    Key::new(issuer_trusts(issuer), tenant_partition(tenant))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn tax_settings(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), "SETTINGS#TAX".into())
}

/// The tenant's branding for documents.
pub fn branding(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), "SETTINGS#BRANDING".into())
}

/// The tenant's customer email switches and reply-to address.
pub fn email_settings(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), "SETTINGS#EMAILS".into())
}

pub const TAX_RATE_PREFIX: &str = "TAXRATE#";

pub fn tax_rate(tenant: TenantId, id: TaxRateId) -> Key {
    Key::new(tenant_partition(tenant), format!("{TAX_RATE_PREFIX}{id}"))
}

/// The shared count of a rate limit's window: in the shard of its subject (a key id, or
/// `tenant`), so the counts of a tenant's busy keys spread over partitions.
pub fn rate_count(tenant: TenantId, subject: &str, window_start_seconds: i64) -> Key {
    Key::new(
        shard_of(tenant, subject),
        format!("RATE#{subject}#{window_start_seconds}"),
    )
}

pub fn payment_settings(tenant: TenantId) -> Key {
    Key::new(tenant_partition(tenant), "SETTINGS#PAYMENTS".into())
}

/// An inbound gateway event applied (kept for the gateway's retry window, by TTL).
pub fn gateway_event(tenant: TenantId, event_id: &str) -> Key {
    Key::new(shard_of(tenant, event_id), format!("GWEVENT#{event_id}"))
}

/// Which tenant a gateway object (a payment method, a payment intent) belongs to. The
/// second key that does not start with a tenant: inbound gateway events name only the
/// gateway's ids, and this is how they find their tenant. Gateway ids are unique.
pub fn gateway_ref(gateway_id: &str) -> Key {
    Key::new(format!("GATEWAY#{gateway_id}"), "REF".into())
}

/// A hosted invoice link, by the hash of its token: the third key that does not start
/// with a tenant, since the page's URL names only the token.
pub fn hosted_link(token_hash: &str) -> Key {
    Key::new(format!("HOSTED#{token_hash}"), "LINK".into())
}

/// An invoice's hosted link epoch, beside the invoice in its shard.
pub fn hosted_link_epoch(tenant: TenantId, invoice: InvoiceId) -> Key {
    let id = invoice.to_string();
    Key::new(shard_of(tenant, &id), format!("HOSTEDEPOCH#{id}"))
}

/// The record of an invoice's or credit note's rendered PDF, in the shard of the record's
/// id (`of`: `in_…` or `cn_…`), so its read is one GetItem beside the invoice's.
pub fn document(tenant: TenantId, of: &str) -> Key {
    Key::new(shard_of(tenant, of), format!("DOCUMENT#{of}"))
}

/// Items on a test clock wait in the due index under the clock, not under a shard: the
/// real-time sweep never sees them; advancing the clock reads them.
pub fn due_on_clock(
    clock: TestClockId,
    key: &Key,
    at: jiff::Timestamp,
) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            DUE_PK.to_owned(),
            AttributeValue::S(clock_due_partition(clock)),
        ),
        (
            DUE_SK.to_owned(),
            AttributeValue::S(format!("{}#{}#{}", due_time(at), key.pk, key.sk)),
        ),
    ])
}

pub fn clock_due_partition(clock: TestClockId) -> String {
    format!("CLOCK#{clock}")
}

/// The due-index attributes for an item with primary key `key`, due at `at`.
pub fn due(key: &Key, at: jiff::Timestamp) -> HashMap<String, AttributeValue> {
    let shard = fnv(key.pk.bytes().chain(key.sk.bytes())) % DUE_SHARDS;
    HashMap::from([
        (DUE_PK.to_owned(), AttributeValue::S(due_shard(shard))),
        (
            DUE_SK.to_owned(),
            AttributeValue::S(format!("{}#{}#{}", due_time(at), key.pk, key.sk)),
        ),
    ])
}

/// FNV-1a: a stable hash for spreading keys over shards.
fn fnv(bytes: impl Iterator<Item = u8>) -> u32 {
    bytes.fold(2_166_136_261u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(16_777_619)
    })
}

pub fn due_shard(shard: u32) -> String {
    format!("DUE#{shard:02}")
}

/// Epoch milliseconds, zero-padded so that text order is time order; `due_sk <= due_time(now)~`
/// selects everything due up to `now`.
pub fn due_time(at: jiff::Timestamp) -> String {
    format!("{:015}", at.as_millisecond().max(0))
}

pub const USAGE_EVENT_SK: &str = "USAGE_EVENT";

/// A usage event, by its transaction id. Each event is a partition of its own (the bulk
/// of usage writes), so ingestion never heats one partition.
pub fn usage_event(tenant: TenantId, transaction_id: &str) -> Key {
    Key::new(
        format!("T#{tenant}#USAGE#{transaction_id}"),
        USAGE_EVENT_SK.into(),
    )
}

pub const ROLLUP_PREFIX: &str = "ROLLUP#";

/// The rollups of one subscription, in period order.
pub fn rollups_of(subscription: SubscriptionId) -> String {
    format!("{ROLLUP_PREFIX}{subscription}#")
}

/// A rollup: one subscription's metric in the period starting at `period_start`.
pub fn rollup(
    tenant: TenantId,
    subscription: SubscriptionId,
    period_start: jiff::Timestamp,
    metric: &str,
) -> Key {
    Key::new(
        subscription_partition(tenant, subscription),
        format!(
            "{}{}#{metric}",
            rollups_of(subscription),
            due_time(period_start)
        ),
    )
}

/// The subscription a rollup's sort key names (the inverse of [`rollup`]).
pub fn rollup_subscription(sk: &str) -> Option<SubscriptionId> {
    let rest = sk.strip_prefix(ROLLUP_PREFIX)?;
    SubscriptionId::parse(rest.split_once('#')?.0, "sk").ok()
}

/// A distinct value seen by a unique_count rollup. The markers of a subscription share a
/// partition of their own.
pub fn distinct_value(
    tenant: TenantId,
    subscription: SubscriptionId,
    period_start: jiff::Timestamp,
    metric: &str,
    value: &str,
) -> Key {
    Key::new(
        format!("T#{tenant}#VALUES#{subscription}"),
        format!("{}#{metric}#{value}", due_time(period_start)),
    )
}

/// An account's usage and limit of a metric in its current period.
pub fn quota(tenant: TenantId, account: AccountId, metric: &str) -> Key {
    Key::new(
        account_partition(tenant, account),
        format!("QUOTA#{account}#{metric}"),
    )
}

/// A fixed item the readiness probe reads; it never exists.
pub fn health_probe() -> Key {
    Key::new("HEALTH".into(), "HEALTH".into())
}

/// Where the due-index sweep left its pass (one item for the whole table, as the index's
/// shards are).
pub fn sweep_checkpoint() -> Key {
    Key::new("SWEEP".into(), "CHECKPOINT".into())
}

/// The shard holding an account's dunning case, quota snapshots, payment profile, balances,
/// credit grants and ledger: one Query reads each of its lists.
pub fn account_partition(tenant: TenantId, account: AccountId) -> String {
    shard_of(tenant, &account.to_string())
}

pub const BALANCE_PREFIX: &str = "BALANCE#";

/// An account's balance in one currency (`currency` is the lower-case ISO code).
pub fn balance(tenant: TenantId, account: AccountId, currency: &str) -> Key {
    Key::new(
        account_partition(tenant, account),
        format!("{}{currency}", balances_of(account)),
    )
}

/// The account and currency a balance's sort key names (the inverse of [`balance`]).
pub fn balance_of(sk: &str) -> Option<(AccountId, Currency)> {
    let (account, currency) = sk.strip_prefix(BALANCE_PREFIX)?.split_once('#')?;
    Some((
        AccountId::parse(account, "sk").ok()?,
        Currency::from_code(currency).ok()?,
    ))
}

/// The sort-key prefix of one account's balances.
pub fn balances_of(account: AccountId) -> String {
    format!("{BALANCE_PREFIX}{account}#")
}

/// A credit grant; an account's grants sort by id (time) under their account.
pub fn credit_grant(tenant: TenantId, account: AccountId, id: CreditGrantId) -> Key {
    Key::new(
        account_partition(tenant, account),
        format!("{}{id}", credit_grants_of(account)),
    )
}

pub fn credit_grants_of(account: AccountId) -> String {
    format!("CREDIT#{account}#")
}

/// A ledger entry of an account's balances; they sort by id (time) under their account.
pub fn balance_transaction(tenant: TenantId, account: AccountId, id: BalanceTransactionId) -> Key {
    Key::new(
        account_partition(tenant, account),
        format!("{}{id}", balance_transactions_of(account)),
    )
}

pub fn balance_transactions_of(account: AccountId) -> String {
    format!("LEDGER#{account}#")
}

pub const WALLET_PREFIX: &str = "WALLET#";

/// A prepaid wallet: read by id in the tenant's partition, listed under its account. It
/// waits in the due index for its next job (expiry, scheduled top-up, threshold rules).
pub fn wallet(tenant: TenantId, id: WalletId, account: AccountId) -> Key {
    Key::new(tenant_partition(tenant), format!("{WALLET_PREFIX}{id}"))
        .with_gsi1(account_wallets_index(tenant, account), id.to_string())
}

pub fn account_wallets_index(tenant: TenantId, account: AccountId) -> String {
    format!("T#{tenant}#ACCOUNT#{account}#WALLETS")
}

/// Marks that an account has (or had) a wallet in `currency` (the lower-case ISO code),
/// beside its balances: the finalizer batch-reads these for its page of drafts.
pub fn wallet_holder(tenant: TenantId, account: AccountId, currency: &str) -> Key {
    Key::new(
        account_partition(tenant, account),
        format!("WALLETS#{account}#{currency}"),
    )
}

/// A wallet transaction; a wallet's transactions sort by id (time) in its shard.
pub fn wallet_transaction(tenant: TenantId, wallet: WalletId, id: WalletTransactionId) -> Key {
    Key::new(
        shard_of(tenant, &wallet.to_string()),
        format!("{}{id}", wallet_transactions_of(wallet)),
    )
}

pub fn wallet_transactions_of(wallet: WalletId) -> String {
    format!("WTX#{wallet}#")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    fn tenant() -> TenantId {
        TenantId::from_ulid(Ulid::from_parts(1, 7))
    }

    fn subscription_ids(count: u128) -> impl Iterator<Item = SubscriptionId> {
        (0..count).map(|n| SubscriptionId::from_ulid(Ulid::from_parts(1_700_000_000_000, n)))
    }

    #[test]
    fn a_due_entry_names_its_tenant_and_item_whether_sharded_or_not() {
        let at = jiff::Timestamp::from_millisecond(1_767_225_600_000).unwrap();
        let id = subscription_ids(1).next().unwrap();
        let sharded = subscription_primary(tenant(), id);
        let invoice = InvoiceId::from_ulid(Ulid::from_parts(9, 9));
        let unsharded = Key::new(
            tenant_partition(tenant()),
            format!("{FINALIZE_PREFIX}{invoice}"),
        );
        let event = "evt_01KBKQ0000000000000000000";
        let (outbox, beside_event) = (
            outbox(tenant(), event),
            outbox_beside_event(tenant(), event),
        );
        assert_ne!(outbox.pk, beside_event.pk);
        for key in [sharded, unsharded, outbox, beside_event] {
            let due_sk = due(&key, at)[DUE_SK].as_s().unwrap().clone();
            let (due_at, pk, sk) = parse_due(&due_sk).unwrap();
            assert_eq!((due_at, &pk, &sk), (at, &key.pk, &key.sk));
            assert_eq!(tenant_of(&pk), Some(tenant()));
        }
    }

    #[test]
    fn a_subscription_its_rollups_and_its_reads_by_id_share_one_of_the_tenants_shards() {
        let shards = tenant_shards(tenant());
        for id in subscription_ids(50) {
            let key = subscription(tenant(), id, AccountId::from_ulid(Ulid::nil()));
            let start = jiff::Timestamp::UNIX_EPOCH;
            assert_eq!(key.pk, subscription_primary(tenant(), id).pk);
            assert_eq!(key.pk, rollup(tenant(), id, start, "calls").pk);
            assert!(shards.contains(&key.pk), "{} is not a shard", key.pk);
        }
    }

    #[test]
    fn ten_thousand_subscriptions_spread_over_every_shard_near_evenly() {
        let mut per_shard: HashMap<String, u32> = HashMap::new();
        for id in subscription_ids(10_000) {
            *per_shard
                .entry(subscription_primary(tenant(), id).pk)
                .or_default() += 1;
        }
        let mean = 10_000 / TENANT_SHARDS;
        assert_eq!(per_shard.len(), TENANT_SHARDS as usize);
        let busiest = per_shard.values().max().copied().unwrap_or_default();
        assert!(
            busiest < mean + mean / 4,
            "busiest shard holds {busiest}, mean {mean}"
        );
    }
}
