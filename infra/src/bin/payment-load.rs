//! What one successful payment costs: DynamoDB requests (by operation) and payment gateway
//! requests, through the `payment-worker` handler on the local stack with the sandbox
//! gateway, as deployed (events published to the bus and the webhook queue after commit).
//! Starts its own stand-in, gives `--payments` accounts a card and a subscription (whose
//! first invoice waits for its payment attempt), then runs every attempt through the
//! handler while counting.
//!
//! `cargo run -p billing-infra --bin payment-load -- --payments 50`

// Ratios of a measurement, never money.
#![allow(clippy::float_arithmetic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use billing_app::billing::StartSubscription;
use billing_app::ports::*;
use billing_app::{App, Caller};
use billing_aws::SandboxGateway;
use billing_aws::{AwsDispatch, DynamoStore};
use billing_domain::collection::payment::PaymentStatus;
use billing_domain::customers::tenant::TenantMode;
use billing_infra::request_count::{counted_client, Counter};
use billing_infra::stack;
use clap::Parser;

#[derive(Parser)]
#[command(about = "DynamoDB and gateway requests per successful payment, locally")]
struct Args {
    #[arg(long, default_value_t = 50)]
    payments: usize,
}

/// The sandbox gateway, counting the calls made to it.
#[derive(Default)]
struct CountingGateway {
    inner: SandboxGateway,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl CountingGateway {
    fn count(&self, call: &'static str) {
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(call)
            .or_default() += 1;
    }

    fn take(&self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl PaymentGateway for CountingGateway {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn create_customer(&self, customer: &NewGatewayCustomer) -> Result<String, GatewayError> {
        self.count("create_customer");
        self.inner.create_customer(customer).await
    }

    async fn attach_payment_method(
        &self,
        customer: &str,
        token: &str,
    ) -> Result<CardDetails, GatewayError> {
        self.count("attach_payment_method");
        self.inner.attach_payment_method(customer, token).await
    }

    async fn detach_payment_method(&self, gateway_id: &str) -> Result<(), GatewayError> {
        self.count("detach_payment_method");
        self.inner.detach_payment_method(gateway_id).await
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        self.count("charge");
        self.inner.charge(request).await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundOutcome, GatewayError> {
        self.count("refund");
        self.inner.refund(request).await
    }

    async fn action_outcome(&self, payment_intent: &str) -> Result<ChargeOutcome, GatewayError> {
        self.count("action_outcome");
        self.inner.action_outcome(payment_intent).await
    }

    async fn action_secret(&self, payment_intent: &str) -> Result<Option<String>, GatewayError> {
        self.count("action_secret");
        self.inner.action_secret(payment_intent).await
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
    } = stack::own_stack("payment-load").await?;
    let counter = Arc::new(Counter::default());
    let dispatch =
        Arc::new(AwsDispatch::by_queue_name(&sdk, stack::WEBHOOK_QUEUE, stack::EVENT_BUS).await?);
    let store = DynamoStore::new(counted_client(&sdk, counter.clone()), &config.table_name)
        .with_dispatch(dispatch);
    let gateway = Arc::new(CountingGateway::default());
    let app = App::new(Arc::new(store), Arc::new(SystemClock), gateway.clone());

    let (tenant, issued) = app
        .customers
        .create_tenant("Payments", TenantMode::Sandbox)
        .await?;
    let caller = Caller::of_key(&issued.key, None);
    let plan = app.catalog
        .create_plan(
            &caller,
            serde_json::from_value(serde_json::json!({"code": "monthly", "name": "Monthly", "interval": {"unit": "month"},
                "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 1999}}}}}))?,
        )
        .await?;
    let mut attempts = Vec::with_capacity(args.payments);
    for i in 0..args.payments {
        let account = app.customers
            .create_account(
                &caller,
                serde_json::from_value(
                    serde_json::json!({"email": format!("payer{i}@example.com"), "currency": "usd"}),
                )?,
            )
            .await?;
        app.customers
            .add_payment_method(&caller, account.id, "tok_visa", false)
            .await?;
        app.billing
            .create_subscription(&caller, StartSubscription::new(account.id, plan.plan.id))
            .await?;
        let filter = PaymentFilter {
            account: Some(account.id),
            ..Default::default()
        };
        let page = PageRequest::first(10);
        attempts.extend(
            app.collection
                .list_payments(&caller, &filter, &page)
                .await?
                .items,
        );
    }
    let attach_calls = gateway.take();

    counter.start();
    for (i, attempt) in attempts.iter().enumerate() {
        let job = PaymentJob::Attempt {
            tenant: tenant.id,
            id: attempt.id,
        };
        let mut message = SqsMessage::default();
        message.message_id = Some(i.to_string());
        message.body = Some(serde_json::to_string(&job)?);
        let mut event = SqsEvent::default();
        event.records = vec![message];
        let response = payment_worker::handle(&app, event).await;
        anyhow::ensure!(
            response.batch_item_failures.is_empty(),
            "attempt {} failed",
            attempt.id
        );
    }
    let counts = counter.stop();
    let calls = gateway.take();
    let paid = attempts.len() as f64;
    let filter = PaymentFilter {
        status: Some(PaymentStatus::Succeeded),
        ..Default::default()
    };
    let page = PageRequest::first(100);
    let succeeded = app
        .collection
        .list_payments(&caller, &filter, &page)
        .await?
        .items
        .len();
    println!("{succeeded} of {} attempts succeeded", attempts.len());
    println!("DynamoDB requests per successful payment:");
    for (operation, n) in &counts {
        println!("  {operation:<20} {:.2}", *n as f64 / paid);
    }
    println!(
        "  {:<20} {:.2}",
        "total",
        counts.values().sum::<u64>() as f64 / paid
    );
    println!("gateway requests per successful payment:");
    for (call, n) in &calls {
        println!("  {call:<20} {:.2}", *n as f64 / paid);
    }
    println!("gateway requests once per account (first card):");
    for (call, n) in &attach_calls {
        println!("  {call:<22} {:.2}", *n as f64 / paid);
    }
    let _ = child.kill();
    Ok(())
}
