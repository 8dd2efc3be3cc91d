use async_trait::async_trait;
use billing_domain::kernel::ids::TenantId;
use jiff::Timestamp;

use crate::{Idempotency, MemoryStore};
use billing_app::ports::*;

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        fingerprint: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut s = self.state();
        let slot = (tenant, key.to_owned());
        if let Some(existing) = s.idempotency.get(&slot).filter(|e| e.expires_at > now) {
            return Ok(if existing.fingerprint != fingerprint {
                IdempotencyClaim::Mismatch
            } else if let Some(response) = &existing.response {
                IdempotencyClaim::Replay(response.clone())
            } else {
                IdempotencyClaim::InProgress
            });
        }
        s.idempotency.insert(
            slot,
            Idempotency {
                fingerprint: fingerprint.to_owned(),
                response: None,
                expires_at,
            },
        );
        Ok(IdempotencyClaim::Claimed)
    }

    async fn complete_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        if let Some(entry) = self.state().idempotency.get_mut(&(tenant, key.to_owned())) {
            entry.response = Some(response.clone());
        }
        Ok(())
    }

    async fn release_idempotency_key(&self, tenant: TenantId, key: &str) -> Result<(), StoreError> {
        self.state().idempotency.remove(&(tenant, key.to_owned()));
        Ok(())
    }
}
