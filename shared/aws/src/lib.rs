//! AWS adapters: the DynamoDB single-table store behind the app's ports, the table
//! definition, and configuration from the environment.

pub mod billing_queue;
pub mod config;
pub mod dispatch;
pub mod dynamo;
pub mod key_sets;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod payment_gateway;
pub mod runtime;
pub mod s3_objects;
pub mod sandbox_gateway;
pub mod sdk_http;
pub mod ses_notifier;
pub mod sigv4;
pub mod sqs_batch;
pub mod stripe_gateway;
pub mod table;
pub mod vies;
pub mod webhook_sender;
pub mod xray;

pub use billing_queue::SqsQueue;
pub use config::Config;
pub use dispatch::AwsDispatch;
pub use dynamo::DynamoStore;
pub use key_sets::HttpKeySets;
pub use payment_gateway::{payment_gateway, PaymentSetup};
pub use s3_objects::S3Objects;
pub use sandbox_gateway::SandboxGateway;
pub use ses_notifier::SesNotifier;
pub use stripe_gateway::StripeGateway;
pub use webhook_sender::HttpSender;
