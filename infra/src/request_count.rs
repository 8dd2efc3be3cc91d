//! Counting DynamoDB requests by operation (`X-Amz-Target`), for the load tools that report
//! what one invoice or one payment costs, and the writes DynamoDB refused on their
//! condition: each one is a writer that lost a race (or a duplicate that found its work
//! done), which tests of concurrent deliveries count to show the race happened.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

#[derive(Debug, Default)]
pub struct Counter {
    by_operation: Mutex<BTreeMap<String, u64>>,
    refused: AtomicU64,
    enabled: AtomicBool,
}

impl Counter {
    /// Counts from now on.
    pub fn start(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Stops counting and takes the counts so far.
    pub fn stop(&self) -> BTreeMap<String, u64> {
        self.enabled.store(false, Ordering::Relaxed);
        std::mem::take(&mut *self.by_operation.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Writes refused on their condition while counting (a transaction counts once,
    /// however many of its items failed), never reset.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Whether DynamoDB answered a write with its condition failed.
fn refused_on_condition(
    err: &aws_smithy_runtime_api::client::interceptors::context::Error,
) -> bool {
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        err.downcast_ref()
    {
        return cancelled
            .cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("ConditionalCheckFailed"));
    }
    err.downcast_ref::<PutItemError>()
        .is_some_and(PutItemError::is_conditional_check_failed_exception)
        || err
            .downcast_ref::<UpdateItemError>()
            .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
        || err
            .downcast_ref::<DeleteItemError>()
            .is_some_and(DeleteItemError::is_conditional_check_failed_exception)
}

#[derive(Debug)]
pub struct CountingInterceptor(pub Arc<Counter>);

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "request-counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if self.0.enabled.load(Ordering::Relaxed) {
            let target = context
                .request()
                .headers()
                .get("x-amz-target")
                .and_then(|t| t.rsplit('.').next())
                .unwrap_or("unknown")
                .to_owned();
            *self
                .0
                .by_operation
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(target)
                .or_default() += 1;
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let refused = context
            .output_or_error()
            .err()
            .and_then(|err| err.as_operation_error())
            .is_some_and(refused_on_condition);
        if refused && self.0.enabled.load(Ordering::Relaxed) {
            self.0.refused.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A DynamoDB client for `sdk` whose requests `counter` counts.
pub fn counted_client(
    sdk: &aws_config::SdkConfig,
    counter: Arc<Counter>,
) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(CountingInterceptor(counter))
            .build(),
    )
}
