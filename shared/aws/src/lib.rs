//! AWS adapters: the DynamoDB single-table store behind the app's ports, the table
//! definition, and configuration from the environment.

pub mod billing_queue;
pub mod config;
pub mod dispatch;
pub mod dynamo;
pub mod keys;
pub mod sqs_batch;
pub mod table;
pub mod webhook_sender;

pub use billing_queue::SqsBillingQueue;
pub use config::Config;
pub use dispatch::AwsDispatch;
pub use dynamo::DynamoStore;
pub use webhook_sender::HttpSender;
