//! A per-process cache of what rarely changes, each entry kept for a fixed time from when
//! it was read. What an entry may be trusted for is decided where it is used: each cache's
//! TTL and invalidation rule are documented with it (README, "Caches of a warm instance").

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use billing_domain::catalog::metric::Metric;
use billing_domain::kernel::ids::TenantId;
use billing_domain::kernel::time::later;
use jiff::{SignedDuration, Timestamp};

/// Entries a cache holds at most: when full, expired entries go, and if none had expired,
/// all of them (a bound on memory, not a policy anything relies on).
const CAPACITY: usize = 10_000;

/// Values by key, each until `ttl` after it was put, by the caller's clock.
pub struct TtlCache<K, V> {
    ttl: SignedDuration,
    entries: Mutex<HashMap<K, (V, Timestamp)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: SignedDuration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> SignedDuration {
        self.ttl
    }

    // A panic while holding the lock cannot leave an entry half written: take it back.
    fn entries(&self) -> MutexGuard<'_, HashMap<K, (V, Timestamp)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value put under `key` less than `ttl` before `now`.
    pub fn get(&self, key: &K, now: Timestamp) -> Option<V> {
        let mut entries = self.entries();
        match entries.get(key) {
            Some((value, expires)) if now < *expires => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: K, value: V, now: Timestamp) {
        let mut entries = self.entries();
        if entries.len() >= CAPACITY {
            entries.retain(|_, (_, expires)| now < *expires);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (value, later(now, self.ttl)));
    }

    pub fn forget(&self, key: &K) {
        self.entries().remove(key);
    }

    /// Forgets every entry `stale` says so of.
    pub fn forget_where(&self, mut stale: impl FnMut(&K, &V) -> bool) {
        self.entries().retain(|k, (v, _)| !stale(k, v));
    }
}

/// Metrics by tenant, mode and code: what ingest reads of a metric (code, aggregation,
/// field) never changes and a metric is never deleted, so an entry is exact however long it
/// is kept; catalog forgets one it updates anyway, and an unknown code is never cached.
pub type MetricCache = Arc<TtlCache<(TenantId, bool, String), Arc<Metric>>>;

/// How long a metric stays cached: only a bound on memory (see [`MetricCache`]).
pub const METRIC_TTL: SignedDuration = SignedDuration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_until_its_ttl_and_can_be_forgotten() {
        let cache = TtlCache::new(SignedDuration::from_secs(60));
        let t0: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        cache.put("a", 1, t0);
        cache.put("b", 2, t0);
        let just_before = t0 + SignedDuration::from_secs(59);
        assert_eq!(cache.get(&"a", just_before), Some(1));
        assert_eq!(cache.get(&"a", t0 + SignedDuration::from_secs(60)), None);
        // Expired entries are gone, not revived by an earlier clock.
        assert_eq!(cache.get(&"a", t0), None);
        cache.forget(&"b");
        assert_eq!(cache.get(&"b", t0), None);
        cache.put("c", 3, t0);
        cache.put("d", 4, t0);
        cache.forget_where(|_, v| *v == 3);
        assert_eq!((cache.get(&"c", t0), cache.get(&"d", t0)), (None, Some(4)));
    }

    #[test]
    fn a_full_cache_drops_what_expired_first() {
        let cache = TtlCache::new(SignedDuration::from_secs(60));
        let t0: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        for i in 0..CAPACITY - 1 {
            cache.put(i, i, t0);
        }
        let later = t0 + SignedDuration::from_secs(30);
        cache.put(CAPACITY - 1, 0, later);
        let expired = t0 + SignedDuration::from_secs(61);
        cache.put(CAPACITY, 0, expired);
        assert_eq!(cache.get(&(CAPACITY - 1), expired), Some(0));
        assert_eq!(cache.entries().len(), 2);
    }
}
