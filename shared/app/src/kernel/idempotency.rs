//! `Idempotency-Key` replay: the first request under a key runs, every later request with
//! the same key and body gets the first one's response, and a different body is refused.

use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::TenantId;
use jiff::{SignedDuration, Timestamp};

use std::sync::Arc;

use crate::kernel::AppError;
use crate::ports::{Clock, IdempotencyClaim, IdempotencyStore, StoredResponse};

/// How long a key is remembered.
pub const RETENTION: SignedDuration = SignedDuration::from_hours(24);
pub const MAX_KEY_CHARS: usize = 255;

/// Claims and completes `Idempotency-Key`s for the HTTP layer.
#[derive(Clone)]
pub struct IdempotencyService {
    store: Arc<dyn IdempotencyStore>,
    clock: Arc<dyn Clock>,
}

impl IdempotencyService {
    pub(crate) fn new(store: Arc<dyn IdempotencyStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub async fn claim_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyClaim, AppError> {
        if key.is_empty() || key.len() > MAX_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(AppError::Invalid(billing_domain::kernel::error::ValidationError::new(
                ErrorCode::InvalidIdempotencyKey,
                "Idempotency-Key",
                format!("an Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters"),
            )));
        }
        let now = self.clock.now();
        let expires_at = now.checked_add(RETENTION).unwrap_or(Timestamp::MAX);
        Ok(self
            .store
            .claim_idempotency_key(tenant, key, fingerprint, now, expires_at)
            .await?)
    }

    /// Remembers the response, or gives the key back when the failure is worth retrying.
    pub async fn finish_idempotent_request(
        &self,
        tenant: TenantId,
        key: &str,
        response: StoredResponse,
    ) -> Result<(), AppError> {
        if response.status >= 500 {
            self.store.release_idempotency_key(tenant, key).await?;
        } else {
            self.store
                .complete_idempotency_key(tenant, key, &response)
                .await?;
        }
        Ok(())
    }
}
