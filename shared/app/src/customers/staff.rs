//! Staff sign-in: resolves `Authorization: Bearer <JWT>` to a caller of the tenant whose
//! identity provider issued it (see `billing_domain::customers::staff` for the checks),
//! and lets admins set that provider.
//!
//! A warm instance keeps who trusts each issuer for [`TRUST_TTL`] and each issuer's JWKS
//! for [`KEY_SET_MAX_AGE`]; a token whose `kid` the cached JWKS lacks (the issuer rotated
//! its keys) fetches it again, at most once per [`KEY_SET_REFETCH_INTERVAL`] per URL, so a
//! flood of tokens with made-up `kid`s costs the issuer one request a minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use billing_domain::customers::access::Permission;
use billing_domain::customers::staff::{
    IdentityProvider, IdentityProviderInput, IssuerTrust, Jwk, KeySet, TokenRefusal, Unverified,
};
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::time::later;
use jiff::{SignedDuration, Timestamp};

use super::CustomersService;
use crate::kernel::{change, to_json, AppError, Caller, ChangeSpec, TtlCache};
use crate::ports::KeySetFetcher;

/// How long an instance trusts what it read of who trusts an issuer: a provider changed
/// through another instance applies here within this time.
pub const TRUST_TTL: SignedDuration = SignedDuration::from_secs(60);
/// How long fetched keys are used before they are fetched again: a key the issuer
/// withdrew stops working here within this time.
pub const KEY_SET_MAX_AGE: SignedDuration = SignedDuration::from_hours(1);
/// The least time between two fetches of one JWKS.
pub const KEY_SET_REFETCH_INTERVAL: SignedDuration = SignedDuration::from_secs(60);

fn refused(refusal: TokenRefusal) -> AppError {
    AppError::Unauthenticated {
        code: refusal.code,
        message: refusal.message,
    }
}

/// The JWKS of each issuer as last fetched by this instance.
pub struct KeySets {
    fetcher: Option<Arc<dyn KeySetFetcher>>,
    /// URL → (keys, when fetched).
    fetched: Mutex<HashMap<String, (Arc<KeySet>, Timestamp)>>,
}

impl KeySets {
    pub fn new(fetcher: Option<Arc<dyn KeySetFetcher>>) -> Self {
        Self {
            fetcher,
            fetched: Mutex::default(),
        }
    }

    // A panic while holding the lock leaves whole entries behind: keep using them.
    fn fetched(&self) -> MutexGuard<'_, HashMap<String, (Arc<KeySet>, Timestamp)>> {
        self.fetched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key `kid` of the JWKS at `url` at `now`: from the cache while it is younger
    /// than [`KEY_SET_MAX_AGE`] and has the key; else fetched again, unless it was fetched
    /// less than [`KEY_SET_REFETCH_INTERVAL`] ago. `None`: the JWKS has no such key.
    pub async fn key(&self, url: &str, kid: &str, now: Timestamp) -> Result<Option<Jwk>, AppError> {
        let cached = self.fetched().get(url).cloned();
        if let Some((keys, at)) = &cached {
            let fresh = now < later(*at, KEY_SET_MAX_AGE);
            if fresh {
                if let Some(key) = keys.key(kid) {
                    return Ok(Some(key.clone()));
                }
            }
            if now < later(*at, KEY_SET_REFETCH_INTERVAL) {
                return Ok(None);
            }
        }
        let fetcher = self.fetcher.as_ref().ok_or_else(|| {
            AppError::Unavailable("this deployment cannot fetch identity providers' keys".into())
        })?;
        let keys = match fetcher.fetch(url).await {
            Ok(keys) => Arc::new(keys),
            Err(err) => {
                tracing::warn!(url, cause = %err, "could not fetch the JWKS");
                return Err(AppError::Unavailable(format!(
                    "the identity provider's keys could not be fetched: {err}"
                )));
            }
        };
        self.fetched().insert(url.to_owned(), (keys.clone(), now));
        Ok(keys.key(kid).cloned())
    }
}

/// What staff sign-in keeps on a warm instance.
pub(super) struct StaffSignIn {
    trusts: TtlCache<String, Arc<Vec<IssuerTrust>>>,
    key_sets: KeySets,
}

impl StaffSignIn {
    pub(super) fn new(fetcher: Option<Arc<dyn KeySetFetcher>>) -> Self {
        Self {
            trusts: TtlCache::new(TRUST_TTL),
            key_sets: KeySets::new(fetcher),
        }
    }
}

impl CustomersService {
    /// Resolves `Authorization: Bearer <JWT>` to the staff user it speaks for, or refuses
    /// it with a `jwt_*` code.
    pub async fn authenticate_staff(
        &self,
        token: &str,
        request_id: Option<String>,
    ) -> Result<Caller, AppError> {
        let token = Unverified::parse(token).map_err(refused)?;
        let now = self.clocks.now();
        let issuer = token.issuer().map_err(refused)?;
        let trusts = self.issuer_trusts(issuer, now).await?;
        let Some(first) = trusts.first() else {
            return Err(AppError::Unauthenticated {
                code: ErrorCode::JwtIssuerUntrusted,
                message: format!("no tenant trusts the issuer {issuer}"),
            });
        };
        // The tenant is the one its claim names; when the claim names none of those that
        // trust the issuer, the token is still verified first (with the first's keys), so
        // that only a genuine token learns that its tenant does not trust the issuer.
        let named = trusts
            .iter()
            .find(|t| token.names_tenant(&t.provider, t.tenant_id));
        let trust = named.unwrap_or(first);
        let key = self
            .staff
            .key_sets
            .key(&trust.provider.jwks_url, &token.kid, now)
            .await?
            .ok_or_else(|| AppError::Unauthenticated {
                code: ErrorCode::JwtKeyUnknown,
                message: format!("the issuer's JWKS has no key {}", token.kid),
            })?;
        token.verify_signature(&key).map_err(refused)?;
        token.check_claims(&trust.provider, now).map_err(refused)?;
        if named.is_none() {
            return Err(AppError::Unauthenticated {
                code: ErrorCode::JwtTenantUntrusted,
                message: format!(
                    "the token's {} names no tenant that trusts this issuer",
                    trust.provider.tenant_claim
                ),
            });
        }
        let role = token.role(&trust.provider).map_err(refused)?;
        let user = token.user().map_err(refused)?;
        Ok(Caller::of_staff(
            trust.tenant_id,
            trust.livemode,
            user,
            role,
            request_id,
        ))
    }

    async fn issuer_trusts(
        &self,
        issuer: &str,
        now: Timestamp,
    ) -> Result<Arc<Vec<IssuerTrust>>, AppError> {
        let issuer = issuer.to_owned();
        if let Some(trusts) = self.staff.trusts.get(&issuer, now) {
            return Ok(trusts);
        }
        let trusts = Arc::new(self.store.issuer_trusts(&issuer).await?);
        self.staff.trusts.put(issuer, trusts.clone(), now);
        Ok(trusts)
    }

    /// The tenant's identity provider for staff sign-in.
    pub async fn identity_provider(&self, caller: &Caller) -> Result<IdentityProvider, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .identity_provider(caller.tenant_id)
            .await?
            .ok_or_else(|| AppError::not_found("identity provider", caller.tenant_id))
    }

    /// Sets the tenant's identity provider: tokens it issues sign staff in at once on this
    /// instance, within [`TRUST_TTL`] on the others (and a previous issuer's stop then).
    pub async fn set_identity_provider(
        &self,
        caller: &Caller,
        input: &IdentityProviderInput,
    ) -> Result<IdentityProvider, AppError> {
        caller.require(Permission::ManageApiKeys)?;
        let next = input.validate(self.deployment)?;
        let current = self.store.identity_provider(caller.tenant_id).await?;
        let before = current.as_ref().map(to_json).transpose()?;
        let after = to_json(&next)?;
        let change = change(
            caller,
            self.clocks.now(),
            ChangeSpec {
                entity_type: "identity_provider",
                entity_id: caller.tenant_id.to_string(),
                action: if current.is_some() {
                    AuditAction::Update
                } else {
                    AuditAction::Create
                },
                event_type: Some(EventType::IdentityProviderUpdated),
                before: before.as_ref(),
                after: &after,
            },
        );
        let trust = IssuerTrust {
            tenant_id: caller.tenant_id,
            livemode: caller.livemode,
            provider: next.clone(),
        };
        self.store
            .set_identity_provider(&trust, current.as_ref(), &change)
            .await?;
        self.staff.trusts.forget(&next.issuer);
        if let Some(previous) = current {
            self.staff.trusts.forget(&previous.issuer);
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Serves one JWKS, then another (the issuer rotated its keys), counting fetches.
    struct Rotating {
        fetches: AtomicUsize,
    }

    fn key(kid: &str) -> Jwk {
        Jwk {
            kty: "EC".into(),
            kid: kid.into(),
            alg: None,
            n: None,
            e: None,
            crv: Some("P-256".into()),
            x: None,
            y: None,
        }
    }

    #[async_trait::async_trait]
    impl KeySetFetcher for Rotating {
        async fn fetch(&self, _url: &str) -> Result<KeySet, String> {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst);
            let kid = if n == 0 { "old" } else { "new" };
            Ok(KeySet {
                keys: vec![key(kid)],
            })
        }
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_at_most_once_a_minute() {
        let fetcher = Arc::new(Rotating {
            fetches: AtomicUsize::new(0),
        });
        let sets = KeySets::new(Some(fetcher.clone()));
        let fetches = || fetcher.fetches.load(Ordering::SeqCst);
        let t0: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| later(t0, SignedDuration::from_secs(s));
        let url = "https://idp.example/jwks.json";
        assert!(sets.key(url, "old", t0).await.unwrap().is_some());
        assert_eq!(fetches(), 1);
        // Known kids cost nothing; unknown ones within the minute neither.
        for s in [1, 10, 59] {
            assert!(sets.key(url, "old", at(s)).await.unwrap().is_some());
            assert!(sets.key(url, "made-up", at(s)).await.unwrap().is_none());
        }
        assert_eq!(fetches(), 1);
        // A minute on, an unknown kid fetches once: the rotated key is found…
        assert!(sets.key(url, "new", at(60)).await.unwrap().is_some());
        assert_eq!(fetches(), 2);
        // …and the next unknown kid waits for another minute.
        assert!(sets.key(url, "made-up", at(61)).await.unwrap().is_none());
        assert!(sets.key(url, "made-up", at(119)).await.unwrap().is_none());
        assert_eq!(fetches(), 2);
        assert!(sets.key(url, "made-up", at(120)).await.unwrap().is_none());
        assert_eq!(fetches(), 3);
        // Known keys are fetched again once the set is an hour old.
        assert!(sets
            .key(url, "new", at(120 + 3599))
            .await
            .unwrap()
            .is_some());
        assert_eq!(fetches(), 3);
        assert!(sets
            .key(url, "new", at(120 + 3600))
            .await
            .unwrap()
            .is_some());
        assert_eq!(fetches(), 4);
    }
}
