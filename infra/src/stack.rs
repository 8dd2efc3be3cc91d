//! The resources the functions expect, created on the local stand-in. Their cloud twins
//! are in `template.yaml`; the table's definition comes from `billing_aws::table`.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;

/// Work queues; each gets a dead-letter queue `<name>-dlq` after five failed receives.
/// Names ending in `.fifo` are FIFO queues (their dead-letter queue too).
pub const QUEUES: &[&str] = &[
    "billing-runs.fifo",
    "billing-payments",
    "billing-webhooks",
    "billing-documents",
];
pub const MAX_RECEIVES: u32 = 5;
pub const EVENT_BUS: &str = "billing-events";
/// The queue `billing-worker` consumes (one of [`QUEUES`]): FIFO, a message group per
/// tenant.
pub const BILLING_QUEUE: &str = "billing-runs.fifo";
/// The queue `payment-worker` consumes (one of [`QUEUES`]).
pub const PAYMENT_QUEUE: &str = "billing-payments";
/// The queue `webhook-fanout` consumes (one of [`QUEUES`]).
pub const WEBHOOK_QUEUE: &str = "billing-webhooks";
/// The queue `document-renderer` consumes (one of [`QUEUES`]), fed by [`DOCUMENTS_RULE`].
pub const DOCUMENTS_QUEUE: &str = "billing-documents";
/// The bus rule that puts the events a document is drawn for on [`DOCUMENTS_QUEUE`] (the
/// template's `DocumentsRule`, same pattern).
pub const DOCUMENTS_RULE: &str = "billing-documents";
/// The bucket PDFs are kept in (the template's `DocumentsBucket`).
pub const DOCUMENTS_BUCKET: &str = "billing-documents";
/// Stripe credentials: none means "use the sandbox gateway". Created holding only
/// [`LOCAL_WEBHOOK_SECRET`].
pub const STRIPE_SECRET: &str = "billing/stripe";
/// The signing secret of Stripe webhooks on the local stack, where nothing but a developer
/// sends them (`make invoke` signs the sample Stripe event with it). Never Stripe's.
pub const LOCAL_WEBHOOK_SECRET: &str = "whsec_localStackOnlyNotFromStripe";
/// The sender of customer notices on the local stack (the template's `NoticeFromAddress`).
pub const NOTICE_FROM_ADDRESS: &str = "billing@localhost.test";
/// The origin customer emails link to on the local stack (the template's `PublicUrl`):
/// `make dev`'s default port.
pub const PUBLIC_URL: &str = "http://127.0.0.1:3000";

#[derive(Debug, thiserror::Error)]
#[error("creating the local stack failed at {step}: {message}")]
pub struct StackError {
    step: &'static str,
    message: String,
}

fn failed<E: std::fmt::Debug>(step: &'static str) -> impl FnOnce(E) -> StackError {
    move |e| StackError {
        step,
        message: format!("{e:?}"),
    }
}

/// Creates the table, queues with their dead-letter queues, the event bus with the
/// documents rule, the documents bucket and the secret, skipping whatever exists already.
pub async fn ensure(sdk: &SdkConfig, table: &str) -> Result<(), StackError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    billing_aws::table::ensure_table(&dynamodb, table)
        .await
        .map_err(failed("table"))?;

    let sqs = aws_sdk_sqs::Client::new(sdk);
    for queue in QUEUES {
        let fifo = queue.strip_suffix(".fifo");
        let fifo_attribute =
            |create: aws_sdk_sqs::operation::create_queue::builders::CreateQueueFluentBuilder| {
                match fifo {
                    Some(_) => create.attributes(QueueAttributeName::FifoQueue, "true"),
                    None => create,
                }
            };
        let dlq = fifo_attribute(sqs.create_queue())
            .queue_name(match fifo {
                Some(base) => format!("{base}-dlq.fifo"),
                None => format!("{queue}-dlq"),
            })
            .send()
            .await
            .map_err(failed("dead-letter queue"))?;
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(dlq.queue_url().unwrap_or_default())
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(failed("dead-letter queue arn"))?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .unwrap_or_default();
        let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES.to_string()});
        fifo_attribute(sqs.create_queue())
            .queue_name(*queue)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .map_err(failed("queue"))?;
    }

    let events = aws_sdk_eventbridge::Client::new(sdk);
    let buses = events
        .list_event_buses()
        .name_prefix(EVENT_BUS)
        .send()
        .await
        .map_err(failed("event bus"))?;
    if !buses
        .event_buses()
        .iter()
        .any(|b| b.name() == Some(EVENT_BUS))
    {
        events
            .create_event_bus()
            .name(EVENT_BUS)
            .send()
            .await
            .map_err(failed("event bus"))?;
    }

    documents_rule(&sqs, &events).await?;
    billing_aws::S3Objects::new(sdk, DOCUMENTS_BUCKET, None)
        .map_err(failed("documents bucket"))?
        .create_bucket()
        .await
        .map_err(failed("documents bucket"))?;

    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    if secrets
        .describe_secret()
        .secret_id(STRIPE_SECRET)
        .send()
        .await
        .is_err()
    {
        secrets
            .create_secret()
            .name(STRIPE_SECRET)
            .secret_string(
                serde_json::json!({"webhook_secrets": [LOCAL_WEBHOOK_SECRET]}).to_string(),
            )
            .send()
            .await
            .map_err(failed("secret"))?;
    }
    Ok(())
}

/// The rule on [`EVENT_BUS`] that sends `invoice.finalized` and `credit_note.created` to
/// [`DOCUMENTS_QUEUE`] (put again each time: the same rule and target).
async fn documents_rule(
    sqs: &aws_sdk_sqs::Client,
    events: &aws_sdk_eventbridge::Client,
) -> Result<(), StackError> {
    let url = sqs
        .get_queue_url()
        .queue_name(DOCUMENTS_QUEUE)
        .send()
        .await
        .map_err(failed("documents queue"))?
        .queue_url
        .unwrap_or_default();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(failed("documents queue arn"))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    let pattern = serde_json::json!({
        "source": [billing_aws::dispatch::EVENT_SOURCE],
        "detail-type": [
            billing_domain::events::types::EventType::InvoiceFinalized.as_str(),
            billing_domain::events::types::EventType::CreditNoteCreated.as_str(),
        ],
    });
    events
        .put_rule()
        .name(DOCUMENTS_RULE)
        .event_bus_name(EVENT_BUS)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .map_err(failed("documents rule"))?;
    events
        .put_targets()
        .rule(DOCUMENTS_RULE)
        .event_bus_name(EVENT_BUS)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("documents")
                .arn(arn)
                .build()
                .map_err(failed("documents rule target"))?,
        )
        .send()
        .await
        .map_err(failed("documents rule target"))?;
    Ok(())
}

/// What each name the template's `Environment` blocks `!Ref` is on the local stack (its
/// resources' logical ids and its parameters), for [`crate::function_env`]. The stack must
/// exist ([`ensure`]).
pub async fn references(
    sdk: &SdkConfig,
    table: &str,
) -> Result<BTreeMap<String, String>, StackError> {
    let mut references: BTreeMap<String, String> = [
        ("Table", table),
        ("EventBus", EVENT_BUS),
        ("StripeSecret", STRIPE_SECRET),
        ("NoticeFromAddress", NOTICE_FROM_ADDRESS),
        ("PublicUrl", PUBLIC_URL),
        ("DocumentsBucket", DOCUMENTS_BUCKET),
        // Downloads answer the file locally (no presigned links to a stand-in).
        ("DocumentLinkSeconds", ""),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    for (name, queue) in [
        ("BillingRunsQueue", BILLING_QUEUE),
        ("PaymentsQueue", PAYMENT_QUEUE),
        ("WebhooksQueue", WEBHOOK_QUEUE),
        ("DocumentsQueue", DOCUMENTS_QUEUE),
    ] {
        let queue = billing_aws::SqsQueue::by_name(sdk, queue)
            .await
            .map_err(failed("queue url"))?;
        references.insert(name.to_owned(), queue.url().to_owned());
    }
    Ok(references)
}

/// A stand-in of one's own, on a free port, with the stack on it (for the load tools).
pub struct OwnStack {
    /// Dies with the thread that started it; kill it when done.
    pub stand_in: std::process::Child,
    pub config: billing_aws::Config,
    pub sdk: SdkConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum OwnStackError {
    #[error(transparent)]
    Port(#[from] std::io::Error),
    #[error(transparent)]
    StandIn(#[from] crate::moto::MotoError),
    #[error(transparent)]
    Stack(#[from] StackError),
}

/// Starts a stand-in and creates the stack on it, with the table named `table`.
pub async fn own_stack(table: &str) -> Result<OwnStack, OwnStackError> {
    let port = crate::moto::free_port()?;
    let stand_in = crate::moto::start(port)?;
    let config = billing_aws::Config::local(table, format!("http://127.0.0.1:{port}"));
    let sdk = config.sdk_config().await;
    ensure(&sdk, &config.table_name).await?;
    Ok(OwnStack {
        stand_in,
        config,
        sdk,
    })
}
