use std::future::Future;

use super::AppError;

/// How often a write is tried again from a fresh read when another writer got there first.
pub const WRITE_ATTEMPTS: usize = 8;

/// Runs `attempt` until it commits, at most [`WRITE_ATTEMPTS`] times. An attempt answers
/// `Some` when it is done and `None` when it lost a race and is worth running again from a
/// fresh read; past the budget the answer is `exhausted`.
pub async fn until_committed<T, Attempt>(
    mut attempt: impl FnMut() -> Attempt,
    exhausted: impl FnOnce() -> AppError,
) -> Result<T, AppError>
where
    Attempt: Future<Output = Result<Option<T>, AppError>>,
{
    for _ in 0..WRITE_ATTEMPTS {
        if let Some(done) = attempt().await? {
            return Ok(done);
        }
    }
    Err(exhausted())
}
