use async_trait::async_trait;
use billing_domain::kernel::ids::TenantId;

use crate::{Idempotency, MemoryStore};
use billing_app::ports::*;

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        terms: &ClaimTerms<'_>,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut s = self.state();
        let slot = (tenant, key.to_owned());
        if let Some(existing) = s
            .idempotency
            .get(&slot)
            .filter(|e| e.expires_at > terms.now)
        {
            if existing.fingerprint != terms.fingerprint {
                return Ok(IdempotencyClaim::Mismatch);
            }
            if let Some(response) = &existing.response {
                return Ok(IdempotencyClaim::Replay(response.clone()));
            }
            if existing.lease_until > terms.now {
                return Ok(IdempotencyClaim::InProgress);
            }
        }
        s.idempotency.insert(
            slot,
            Idempotency {
                fingerprint: terms.fingerprint.to_owned(),
                owner: terms.owner.to_owned(),
                lease_until: terms.lease_until,
                response: None,
                expires_at: terms.expires_at,
            },
        );
        Ok(IdempotencyClaim::Claimed)
    }

    async fn complete_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        owner: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        if let Some(entry) = self
            .state()
            .idempotency
            .get_mut(&(tenant, key.to_owned()))
            .filter(|e| e.owner == owner)
        {
            entry.response = Some(response.clone());
        }
        Ok(())
    }

    async fn release_idempotency_key(
        &self,
        tenant: TenantId,
        key: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        let mut s = self.state();
        let slot = (tenant, key.to_owned());
        if s.idempotency.get(&slot).is_some_and(|e| e.owner == owner) {
            s.idempotency.remove(&slot);
        }
        Ok(())
    }
}
