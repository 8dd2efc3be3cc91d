//! `Idempotency-Key` replay: the first request under a key runs, every later request with
//! the same key and body gets the first one's response, and a different body is refused.
//!
//! A claim is a lease: if its holder dies without an answer (a Lambda timeout, a crash),
//! the same request may take the key over once the lease has run out, instead of
//! answering `idempotency_key_in_use` until the key expires.

use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::TenantId;
use billing_domain::kernel::time::later;
use jiff::SignedDuration;

use std::sync::Arc;

use crate::kernel::AppError;
use crate::ports::{ClaimTerms, Clock, IdempotencyClaim, IdempotencyStore, StoredResponse};

/// How long a key is remembered.
pub const RETENTION: SignedDuration = SignedDuration::from_hours(24);
/// How long a claim is its holder's: the `api` function's `Timeout` in template.yaml, after
/// which Lambda has stopped the holder, so a retry taking over never runs beside it.
pub const DEFAULT_LEASE: SignedDuration = SignedDuration::from_secs(10);
pub const MAX_KEY_CHARS: usize = 255;

/// Claims and completes `Idempotency-Key`s for the HTTP layer.
#[derive(Clone)]
pub struct IdempotencyService {
    store: Arc<dyn IdempotencyStore>,
    clock: Arc<dyn Clock>,
    lease: SignedDuration,
}

impl IdempotencyService {
    pub(crate) fn new(
        store: Arc<dyn IdempotencyStore>,
        clock: Arc<dyn Clock>,
        lease: SignedDuration,
    ) -> Self {
        Self {
            store,
            clock,
            lease,
        }
    }

    /// Claims `key` for the request with `fingerprint`, as `owner` (a token new to this
    /// request): only the owner may then complete or release it.
    pub async fn claim_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        fingerprint: &str,
        owner: &str,
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
        let terms = ClaimTerms {
            fingerprint,
            owner,
            now,
            lease_until: later(now, self.lease),
            expires_at: later(now, RETENTION),
        };
        Ok(self
            .store
            .claim_idempotency_key(tenant, key, &terms)
            .await?)
    }

    /// Remembers the response, or gives the key back when the failure is worth retrying.
    /// Does nothing when `owner` no longer holds the key (its lease ran out and a retry
    /// took it over: that retry's answer is the one remembered).
    pub async fn finish_idempotent_request(
        &self,
        tenant: TenantId,
        key: &str,
        owner: &str,
        response: StoredResponse,
    ) -> Result<(), AppError> {
        if response.status >= 500 {
            self.store
                .release_idempotency_key(tenant, key, owner)
                .await?;
        } else {
            self.store
                .complete_idempotency_key(tenant, key, owner, &response)
                .await?;
        }
        Ok(())
    }
}
