//! The DynamoDB single-table store. Every multi-item change is one TransactWriteItems:
//! the entity, its uniqueness claims, its audit record and its domain events commit
//! together or not at all. Errors are mapped to [`StoreError`] here and nowhere else.

use std::collections::HashMap;
use std::fmt::Debug;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use billing_app::ports::*;
use billing_domain::access::ApiKey;
use billing_domain::account::Account;
use billing_domain::event::{AuditRecord, DomainEvent};
use billing_domain::ids::{AccountId, ApiKeyId, TenantId};
use billing_domain::tenant::Tenant;
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::keys::{self, Key, GSI1, GSI1_PK, PK, SK, TTL};

type Item = HashMap<String, AttributeValue>;

/// The attribute naming what an item is, for people reading the table.
const ENTITY_ATTRIBUTE: &str = "entity";

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<T>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key.primary()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        output.item.map(from_item).transpose()
    }

    /// Runs `query` page by page from `start`, keeping items `admit` accepts, until one
    /// more than the page's limit is found or the query is exhausted.
    async fn query_page<T: DeserializeOwned>(
        &self,
        query: QueryFluentBuilder,
        mut start: Option<Item>,
        limit: usize,
        admit: impl Fn(&T) -> bool,
    ) -> Result<Page<T>, StoreError> {
        let mut items = Vec::with_capacity(limit + 1);
        loop {
            let output = query
                .clone()
                .set_exclusive_start_key(start.take())
                .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(sdk_error)?;
            for raw in output.items.unwrap_or_default() {
                let item: T = from_item(raw)?;
                if admit(&item) {
                    items.push(item);
                }
            }
            start = output.last_evaluated_key;
            if items.len() > limit || start.is_none() {
                break;
            }
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Page { items, has_more })
    }

    fn query_partition(&self, pk: String, sk_prefix: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .expression_attribute_values(":prefix", AttributeValue::S(sk_prefix.to_owned()))
    }

    fn query_gsi1(&self, gsi1pk: String) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", GSI1_PK)
            .expression_attribute_values(":pk", AttributeValue::S(gsi1pk))
    }

    fn transaction(&self) -> Transaction<'_> {
        Transaction {
            store: self,
            writes: Vec::new(),
            on_condition_failure: Vec::new(),
        }
    }
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Internal(format!("unreadable item: {e}")))
}

/// An entity as a table item: its fields, its keys and what it is.
fn to_item<T: Serialize>(entity: &str, value: &T, key: &Key) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(value)
        .map_err(|e| StoreError::Internal(format!("unstorable item: {e}")))?;
    item.extend(key.all());
    item.insert(
        ENTITY_ATTRIBUTE.to_owned(),
        AttributeValue::S(entity.to_owned()),
    );
    Ok(item)
}

fn epoch_seconds(t: Timestamp) -> AttributeValue {
    AttributeValue::N(t.as_second().to_string())
}

/// Maps an SDK failure once: throttling and transport faults are retryable, the rest is not.
fn sdk_error<E: ProvideErrorMetadata + Debug, R: Debug>(err: SdkError<E, R>) -> StoreError {
    const RETRYABLE: &[&str] = &[
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "TransactionInProgressException",
    ];
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(format!("{err:?}"))
        }
        SdkError::ServiceError(service)
            if service.err().code().is_some_and(|c| RETRYABLE.contains(&c)) =>
        {
            StoreError::Unavailable(service.err().code().unwrap_or_default().to_owned())
        }
        _ => StoreError::Internal(format!(
            "{}: {}",
            err.code().unwrap_or("unknown"),
            err.message().unwrap_or("no message")
        )),
    }
}

/// One TransactWriteItems under construction; each write remembers which error a failure
/// of its condition means, so a cancellation maps to the right domain conflict.
struct Transaction<'a> {
    store: &'a DynamoStore,
    writes: Vec<TransactWriteItem>,
    on_condition_failure: Vec<StoreError>,
}

impl Transaction<'_> {
    fn put(
        &mut self,
        item: Item,
        condition: &str,
        values: Option<Item>,
        on_failure: StoreError,
    ) -> Result<&mut Self, StoreError> {
        let put = Put::builder()
            .table_name(&self.store.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.writes
            .push(TransactWriteItem::builder().put(put).build());
        self.on_condition_failure.push(on_failure);
        Ok(self)
    }

    /// Creates an item that must not exist yet.
    fn create(&mut self, item: Item, on_failure: StoreError) -> Result<&mut Self, StoreError> {
        self.put(item, "attribute_not_exists(pk)", None, on_failure)
    }

    /// Replaces an item whose stored `version` must still be `expected`.
    fn replace_version(
        &mut self,
        item: Item,
        expected: u64,
        entity: &'static str,
    ) -> Result<&mut Self, StoreError> {
        self.put(
            item,
            "version = :expected",
            Some(HashMap::from([(
                ":expected".to_owned(),
                AttributeValue::N(expected.to_string()),
            )])),
            StoreError::VersionConflict { entity },
        )
    }

    fn delete(
        &mut self,
        key: &Key,
        condition: &str,
        values: Item,
        on_failure: StoreError,
    ) -> Result<&mut Self, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.store.table)
            .set_key(Some(key.primary()))
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.writes
            .push(TransactWriteItem::builder().delete(delete).build());
        self.on_condition_failure.push(on_failure);
        Ok(self)
    }

    /// Adds the change's audit record and domain events (the outbox).
    fn record(&mut self, tenant: TenantId, change: &Change) -> Result<&mut Self, StoreError> {
        let audit = &change.audit;
        let audit_id = audit.id.to_string();
        self.create(
            to_item(
                "audit",
                audit,
                &keys::audit(tenant, &audit_id, &audit.entity_id),
            )?,
            StoreError::Internal("audit record id reused".into()),
        )?;
        for event in &change.events {
            self.create(
                to_item("event", event, &keys::event(tenant, &event.id.to_string()))?,
                StoreError::Internal("event id reused".into()),
            )?;
        }
        Ok(self)
    }

    async fn commit(self) -> Result<(), StoreError> {
        let result = self
            .store
            .client
            .transact_write_items()
            .set_transact_items(Some(self.writes))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            err.as_service_error()
        {
            let reasons = cancelled.cancellation_reasons();
            if let Some(index) = reasons
                .iter()
                .position(|r| r.code() == Some("ConditionalCheckFailed"))
            {
                return Err(self.on_condition_failure[index].clone());
            }
            if reasons
                .iter()
                .any(|r| matches!(r.code(), Some("TransactionConflict" | "ThrottlingError")))
            {
                return Err(StoreError::Unavailable("transaction conflict".into()));
            }
        }
        Err(sdk_error(err))
    }
}

#[async_trait]
impl TenantStore for DynamoStore {
    async fn create_tenant(&self, tenant: &Tenant, first_key: &ApiKey) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            to_item("tenant", tenant, &keys::tenant(tenant.id))?,
            StoreError::AlreadyExists { entity: "tenant" },
        )?
        .create(
            to_item(
                "api_key",
                first_key,
                &keys::api_key(tenant.id, first_key.id),
            )?,
            StoreError::AlreadyExists { entity: "api_key" },
        )?;
        tx.commit().await
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        self.get(&keys::tenant(id)).await
    }
}

#[async_trait]
impl ApiKeyStore for DynamoStore {
    async fn get_api_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
    ) -> Result<Option<ApiKey>, StoreError> {
        self.get(&keys::api_key(tenant, id)).await
    }

    async fn insert_api_key(&self, key: &ApiKey, change: &Change) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            to_item("api_key", key, &keys::api_key(key.tenant_id, key.id))?,
            StoreError::AlreadyExists { entity: "api_key" },
        )?
        .record(key.tenant_id, change)?;
        tx.commit().await
    }

    async fn revoke_api_key(&self, key: &ApiKey, change: &Change) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.put(
            to_item("api_key", key, &keys::api_key(key.tenant_id, key.id))?,
            "attribute_exists(pk) AND (attribute_not_exists(revoked_at) OR attribute_type(revoked_at, :null))",
            Some(HashMap::from([(":null".to_owned(), AttributeValue::S("NULL".into()))])),
            StoreError::VersionConflict { entity: "api_key" },
        )?
        .record(key.tenant_id, change)?;
        tx.commit().await
    }

    async fn list_api_keys(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>, StoreError> {
        let start = page
            .starting_after
            .as_deref()
            .and_then(|id| ApiKeyId::parse(id, "starting_after").ok())
            .map(|id| keys::api_key(tenant, id).primary());
        let query = self.query_partition(keys::tenant_partition(tenant), keys::API_KEY_PREFIX);
        self.query_page(query, start, page.limit, |_: &ApiKey| true)
            .await
    }
}

#[async_trait]
impl AccountStore for DynamoStore {
    async fn insert_account(
        &self,
        tenant: TenantId,
        account: &Account,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.create(
            to_item(
                "account",
                account,
                &keys::account(tenant, account.id, &account.email),
            )?,
            StoreError::AlreadyExists { entity: "account" },
        )?;
        if let Some(external_id) = &account.external_id {
            tx.create(
                claim_item(&keys::account_external_id(tenant, external_id), account.id),
                duplicate_external_id(),
            )?;
        }
        tx.record(tenant, change)?;
        tx.commit().await
    }

    async fn update_account(
        &self,
        tenant: TenantId,
        previous: &Account,
        next: &Account,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.replace_version(
            to_item(
                "account",
                next,
                &keys::account(tenant, next.id, &next.email),
            )?,
            previous.version,
            "account",
        )?;
        if previous.external_id != next.external_id {
            if let Some(new) = &next.external_id {
                tx.create(
                    claim_item(&keys::account_external_id(tenant, new), next.id),
                    duplicate_external_id(),
                )?;
            }
            if let Some(old) = &previous.external_id {
                tx.delete(
                    &keys::account_external_id(tenant, old),
                    "account_id = :id",
                    HashMap::from([(":id".to_owned(), AttributeValue::S(next.id.to_string()))]),
                    StoreError::VersionConflict { entity: "account" },
                )?;
            }
        }
        tx.record(tenant, change)?;
        tx.commit().await
    }

    async fn get_account(
        &self,
        tenant: TenantId,
        id: AccountId,
    ) -> Result<Option<Account>, StoreError> {
        self.get(&keys::account(tenant, id, "")).await
    }

    async fn list_accounts(
        &self,
        tenant: TenantId,
        filter: &AccountFilter,
        page: &PageRequest,
    ) -> Result<Page<Account>, StoreError> {
        let cursor = page
            .starting_after
            .as_deref()
            .and_then(|id| AccountId::parse(id, "starting_after").ok());
        if let Some(external_id) = &filter.external_id {
            // At most one account has it: answer from the uniqueness claim.
            let claim: Option<Claim> = self
                .get(&keys::account_external_id(tenant, external_id))
                .await?;
            let account = match claim {
                Some(claim) if cursor.is_none() => {
                    self.get_account(tenant, claim.account_id).await?
                }
                _ => None,
            };
            return Ok(Page {
                items: account.into_iter().filter(|a| filter.admits(a)).collect(),
                has_more: false,
            });
        }
        let admit = |a: &Account| filter.admits(a);
        match &filter.email {
            Some(email) => {
                let gsi1pk = keys::account_email_index(tenant, email);
                let start = cursor.map(|id| {
                    let mut start = keys::account(tenant, id, email).all();
                    start.insert(GSI1_PK.to_owned(), AttributeValue::S(gsi1pk.clone()));
                    start
                });
                self.query_page(self.query_gsi1(gsi1pk.clone()), start, page.limit, admit)
                    .await
            }
            None => {
                let start = cursor.map(|id| keys::account(tenant, id, "").primary());
                let query =
                    self.query_partition(keys::tenant_partition(tenant), keys::ACCOUNT_PREFIX);
                self.query_page(query, start, page.limit, admit).await
            }
        }
    }
}

/// A uniqueness claim: the item that owns a unique value.
#[derive(serde::Deserialize)]
struct Claim {
    account_id: AccountId,
}

fn claim_item(key: &Key, owner: AccountId) -> Item {
    let mut item = key.all();
    item.insert(
        "account_id".to_owned(),
        AttributeValue::S(owner.to_string()),
    );
    item.insert(
        ENTITY_ATTRIBUTE.to_owned(),
        AttributeValue::S("unique_claim".into()),
    );
    item
}

fn duplicate_external_id() -> StoreError {
    StoreError::Duplicate {
        entity: "account",
        field: "external_id",
    }
}

#[async_trait]
impl AuditStore for DynamoStore {
    async fn list_audit(
        &self,
        tenant: TenantId,
        entity_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError> {
        match entity_id {
            Some(entity_id) => {
                let start = page
                    .starting_after
                    .as_deref()
                    .map(|id| keys::audit(tenant, id, entity_id).all());
                let query = self
                    .query_gsi1(keys::audit_entity_index(tenant, entity_id))
                    .scan_index_forward(false);
                self.query_page(query, start, page.limit, |_: &AuditRecord| true)
                    .await
            }
            None => {
                let start = page
                    .starting_after
                    .as_deref()
                    .map(|id| keys::audit(tenant, id, "").primary());
                let query = self
                    .query_partition(keys::tenant_partition(tenant), keys::AUDIT_PREFIX)
                    .scan_index_forward(false);
                self.query_page(query, start, page.limit, |_: &AuditRecord| true)
                    .await
            }
        }
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn list_events(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<DomainEvent>, StoreError> {
        let start = page
            .starting_after
            .as_deref()
            .map(|id| keys::event(tenant, id).primary());
        let query = self.query_partition(keys::tenant_partition(tenant), keys::EVENT_PREFIX);
        self.query_page(query, start, page.limit, |_: &DomainEvent| true)
            .await
    }
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        fingerprint: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut item = keys::idempotency(tenant, key).all();
        item.insert(
            "fingerprint".into(),
            AttributeValue::S(fingerprint.to_owned()),
        );
        item.insert(TTL.into(), epoch_seconds(expires_at));
        item.insert(
            ENTITY_ATTRIBUTE.into(),
            AttributeValue::S("idempotency_key".into()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // An expired record that TTL has not swept yet counts as absent.
            .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":now", epoch_seconds(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(IdempotencyClaim::Claimed),
            Err(err) => err,
        };
        let existing = match err.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(failed)) => failed.item.clone(),
            _ => return Err(sdk_error(err)),
        };
        let Some(existing) = existing else {
            return Ok(IdempotencyClaim::InProgress);
        };
        let text = |name: &str| existing.get(name).and_then(|v| v.as_s().ok()).cloned();
        if text("fingerprint").as_deref() != Some(fingerprint) {
            return Ok(IdempotencyClaim::Mismatch);
        }
        let status = existing
            .get("response_status")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok());
        Ok(match (status, text("response_body")) {
            (Some(status), Some(body)) => IdempotencyClaim::Replay(StoredResponse { status, body }),
            _ => IdempotencyClaim::InProgress,
        })
    }

    async fn complete_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(keys::idempotency(tenant, key).primary()))
            .update_expression("SET response_status = :status, response_body = :body")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":status", AttributeValue::N(response.status.to_string()))
            .expression_attribute_values(":body", AttributeValue::S(response.body.clone()))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn release_idempotency_key(&self, tenant: TenantId, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(keys::idempotency(tenant, key).primary()))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}

#[async_trait]
impl HealthProbe for DynamoStore {
    async fn ready(&self) -> Result<(), StoreError> {
        self.get::<serde::de::IgnoredAny>(&keys::health_probe())
            .await
            .map(|_| ())
    }
}
