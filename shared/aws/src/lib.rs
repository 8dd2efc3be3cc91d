//! AWS adapters: the DynamoDB single-table store behind the app's ports, the table
//! definition, and configuration from the environment.

pub mod config;
pub mod dynamo;
pub mod keys;
pub mod table;

pub use config::Config;
pub use dynamo::DynamoStore;
