//! Rate limits: admits a caller's request against its key's burst, its key's hourly limit
//! and its tenant's, and keeps the tenant's limit settings.
//!
//! An instance spends shares of the shared hourly counts that it claimed from the table
//! (see `billing_domain::customers::limits`): a request costs a DynamoDB write only when
//! its instance's share of a count is spent, once per `claim_size(limit)` requests (one
//! per 20 under the default 1000 an hour), plus a read of the tenant's limits once a
//! minute ([`LIMITS_TTL`]).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use billing_domain::customers::access::Permission;
use billing_domain::customers::limits::{self, LimitSettings, LimitSettingsPatch, WINDOW};
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::ids::TenantId;
use jiff::{SignedDuration, Timestamp};

use super::CustomersService;
use crate::kernel::{change, to_json, AppError, Caller, ChangeSpec, TtlCache};
use crate::ports::RateClaim;

/// How long an instance trusts a tenant's limits as read: a change made through another
/// instance applies here within this time.
pub const LIMITS_TTL: SignedDuration = SignedDuration::from_secs(60);

/// Shares and burst counts an instance keeps at most before dropping those of past windows
/// (a bound on memory: one entry per key and tenant seen this hour).
const MAX_ENTRIES: usize = 10_000;

/// The subject of a tenant's own count.
const TENANT_SUBJECT: &str = "tenant";

/// A limit as the `RateLimit-*` headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// Requests the window allows.
    pub limit: u32,
    /// Requests left in the window: exact on one instance, an estimate across several
    /// (other instances' unspent shares count as spent).
    pub remaining: u32,
    /// Seconds until the window ends.
    pub reset_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted(RateLimitStatus),
    /// Over a limit: try again in `retry_after` seconds.
    Limited {
        status: RateLimitStatus,
        retry_after: u64,
    },
}

/// What this instance holds of one shared count in the current window.
#[derive(Debug, Clone, Copy)]
struct Share {
    window_start: Timestamp,
    /// Claimed and not spent yet.
    left: u32,
    /// The shared count as this instance last saw it (its own claims included).
    used: u32,
}

/// What spending from this instance's share found.
enum Spent {
    /// One request taken: the share after it.
    Taken(Share),
    /// Nothing left here, and the shared count was at the limit when last seen.
    Exhausted,
    /// Nothing left here: claim more.
    NoneLeft,
}

/// This instance's shares, burst counts and cached limits.
pub(super) struct RateLimiter {
    shares: Mutex<HashMap<(TenantId, String), Share>>,
    /// Requests in the current second, by key: (epoch second, count).
    bursts: Mutex<HashMap<(TenantId, String), (i64, u32)>>,
    settings: TtlCache<TenantId, LimitSettings>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            shares: Mutex::default(),
            bursts: Mutex::default(),
            settings: TtlCache::new(LIMITS_TTL),
        }
    }
}

// A panic while holding a lock leaves plain counts behind: keep using them.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl RateLimiter {
    /// Counts a request of `subject` in the second of `now`; false past `per_second`.
    fn within_burst(&self, key: &(TenantId, String), now: Timestamp, per_second: u32) -> bool {
        let second = now.as_second();
        let mut bursts = lock(&self.bursts);
        if bursts.len() >= MAX_ENTRIES && !bursts.contains_key(key) {
            bursts.retain(|_, (s, _)| *s == second);
        }
        let entry = bursts.entry(key.clone()).or_insert((second, 0));
        if entry.0 != second {
            *entry = (second, 0);
        }
        if entry.1 >= per_second {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// Spends one request of this instance's share of `window_start`'s window.
    fn spend(&self, key: &(TenantId, String), window_start: Timestamp, limit: u32) -> Spent {
        let mut shares = lock(&self.shares);
        match shares.get_mut(key) {
            Some(share) if share.window_start == window_start => {
                if share.left > 0 {
                    share.left -= 1;
                    Spent::Taken(*share)
                } else if share.used >= limit {
                    Spent::Exhausted
                } else {
                    Spent::NoneLeft
                }
            }
            _ => Spent::NoneLeft,
        }
    }

    /// Adds what a claim got to this instance's share.
    fn add(&self, key: &(TenantId, String), window_start: Timestamp, claim: RateClaim) -> Share {
        let mut shares = lock(&self.shares);
        if shares.len() >= MAX_ENTRIES && !shares.contains_key(key) {
            shares.retain(|_, share| share.window_start == window_start);
        }
        let share = shares.entry(key.clone()).or_insert(Share {
            window_start,
            left: 0,
            used: 0,
        });
        if share.window_start != window_start {
            *share = Share {
                window_start,
                left: 0,
                used: 0,
            };
        }
        share.left += claim.granted;
        share.used = share.used.max(claim.used);
        *share
    }

    /// Returns a spent request (its request was refused by another limit).
    fn give_back(&self, key: &(TenantId, String), window_start: Timestamp) {
        if let Some(share) = lock(&self.shares).get_mut(key) {
            if share.window_start == window_start {
                share.left += 1;
            }
        }
    }
}

impl CustomersService {
    /// Admits one request of `caller`, or says which limit it is over and for how long:
    /// the key's burst, the key's hourly limit, then the tenant's.
    pub async fn admit(&self, caller: &Caller) -> Result<Admission, AppError> {
        let now = self.clocks.now();
        let settings = self.cached_limit_settings(caller.tenant_id, now).await?;
        let window = limits::window(now, WINDOW);
        let reset_seconds = limits::seconds_until(now, window.1);
        let key = (caller.tenant_id, caller.rate_subject());
        let key_limit = caller
            .rate_limit_per_hour
            .unwrap_or(settings.per_key_per_hour);
        if !self
            .limiter
            .within_burst(&key, now, settings.burst_per_second)
        {
            let status = RateLimitStatus {
                limit: settings.burst_per_second,
                remaining: 0,
                reset_seconds: 1,
            };
            return Ok(Admission::Limited {
                status,
                retry_after: 1,
            });
        }
        let Some(key_status) = self.take(&key, window, key_limit).await? else {
            return Ok(limited(key_limit, reset_seconds));
        };
        let mut status = key_status.reported(key_limit, reset_seconds);
        if let Some(tenant_limit) = settings.tenant_per_hour {
            let tenant_key = (caller.tenant_id, TENANT_SUBJECT.to_owned());
            let Some(tenant_status) = self.take(&tenant_key, window, tenant_limit).await? else {
                self.limiter.give_back(&key, window.0);
                return Ok(limited(tenant_limit, reset_seconds));
            };
            let tenant_status = tenant_status.reported(tenant_limit, reset_seconds);
            if tenant_status.remaining < status.remaining {
                status = tenant_status;
            }
        }
        Ok(Admission::Admitted(status))
    }

    /// Takes one request from the shared count of `key`, claiming a share when this
    /// instance has none left; `None` when the window's count is spent.
    async fn take(
        &self,
        key: &(TenantId, String),
        window: (Timestamp, Timestamp),
        limit: u32,
    ) -> Result<Option<Share>, AppError> {
        loop {
            match self.limiter.spend(key, window.0, limit) {
                Spent::Taken(share) => return Ok(Some(share)),
                // Counts only grow within a window: asking again would cost a write and
                // get nothing until the window ends or the limit is raised.
                Spent::Exhausted => return Ok(None),
                Spent::NoneLeft => {}
            }
            let claim = self
                .store
                .claim_rate(key.0, &key.1, window, limits::claim_size(limit), limit)
                .await?;
            self.limiter.add(key, window.0, claim);
            // Every granted claim moves the shared count towards the limit, so this ends;
            // another request of this instance may spend the share first, then claim again.
            if claim.granted == 0 {
                return Ok(None);
            }
        }
    }

    async fn cached_limit_settings(
        &self,
        tenant: TenantId,
        now: Timestamp,
    ) -> Result<LimitSettings, AppError> {
        if let Some(settings) = self.limiter.settings.get(&tenant, now) {
            return Ok(settings);
        }
        let settings = self.store.limit_settings(tenant).await?;
        self.limiter.settings.put(tenant, settings, now);
        Ok(settings)
    }

    pub async fn limit_settings(&self, caller: &Caller) -> Result<LimitSettings, AppError> {
        caller.require(Permission::Read)?;
        Ok(self.store.limit_settings(caller.tenant_id).await?)
    }

    /// Changes the tenant's limits: at once on this instance, within [`LIMITS_TTL`] on
    /// the others.
    pub async fn update_limit_settings(
        &self,
        caller: &Caller,
        patch: LimitSettingsPatch,
    ) -> Result<LimitSettings, AppError> {
        caller.require(Permission::ManageApiKeys)?;
        let current = self.store.limit_settings(caller.tenant_id).await?;
        let next = current.patched(patch)?;
        let (before, after) = (to_json(&current)?, to_json(&next)?);
        let change = change(
            caller,
            self.clocks.now(),
            ChangeSpec {
                entity_type: "limit_settings",
                entity_id: caller.tenant_id.to_string(),
                action: AuditAction::Update,
                event_type: Some(EventType::LimitSettingsUpdated),
                before: Some(&before),
                after: &after,
            },
        );
        self.store
            .set_limit_settings(caller.tenant_id, &next, &change)
            .await?;
        self.limiter.settings.forget(&caller.tenant_id);
        Ok(next)
    }
}

impl Share {
    fn reported(self, limit: u32, reset_seconds: u64) -> RateLimitStatus {
        RateLimitStatus {
            limit,
            remaining: limit.saturating_sub(self.used).saturating_add(self.left),
            reset_seconds,
        }
    }
}

fn limited(limit: u32, reset_seconds: u64) -> Admission {
    Admission::Limited {
        status: RateLimitStatus {
            limit,
            remaining: 0,
            reset_seconds,
        },
        retry_after: reset_seconds,
    }
}
