//! What every capability's service uses and none owns: who is calling and what they may
//! do, the error every use case answers with, the records a change commits with (audit
//! record and events), the time of a tenant or of its test clock, the retry over lost
//! races, `Idempotency-Key` claims, and the per-process cache of what rarely changes.

pub mod cache;
mod caller;
mod clock;
mod error;
pub mod idempotency;
mod record;
mod retry;

pub use cache::{MetricCache, TtlCache};
pub use caller::{system_caller, Caller};
pub use clock::Clocks;
pub use error::{gateway_unavailable, AppError};
pub use idempotency::IdempotencyService;
pub use record::{change, event, new_ulid, to_json, ChangeSpec};
pub use retry::{until_committed, WRITE_ATTEMPTS};
