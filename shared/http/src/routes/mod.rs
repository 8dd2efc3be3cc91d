pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod billing;
pub mod catalog;
pub mod events;
pub mod health;
pub mod webhooks;
