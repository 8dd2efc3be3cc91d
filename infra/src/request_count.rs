//! Counting DynamoDB requests by operation (`X-Amz-Target`), for the load tools that report
//! what one invoice or one payment costs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};

#[derive(Debug, Default)]
pub struct Counter {
    by_operation: Mutex<BTreeMap<String, u64>>,
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
