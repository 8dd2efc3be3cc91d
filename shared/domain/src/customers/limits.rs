//! Rate limits: how many requests an API key and a whole tenant may make in an hour, and
//! how many a key may make in one second.
//!
//! The hourly limits hold across every instance of the API. Each counts in a fixed window
//! (the clock hour) kept in the table; an instance does not write that count on every
//! request but claims a share of it at once ([`claim_size`]) and spends the share locally.
//! A claim never takes more than what is left ([`grant`]), so the requests admitted in a
//! window never exceed the limit, however many instances run; what an instance claimed and
//! did not spend before the window ended is lost, so under many instances a window may
//! admit up to `claim_size` fewer per other instance. The per-second burst is counted by
//! each instance alone: it protects an instance from a spike, not the tenant's budget.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::kernel::error::{ErrorCode, ValidationError};

/// The seeds' 1000 requests an hour per key.
pub const DEFAULT_PER_HOUR: u32 = 1000;
/// Requests a key may make in one second on one instance.
pub const DEFAULT_BURST_PER_SECOND: u32 = 50;
/// The largest limit that can be set.
pub const MAX_LIMIT: u32 = 100_000_000;
/// The window the hourly limits count in.
pub const WINDOW: SignedDuration = SignedDuration::from_hours(1);

/// A tenant's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"per_key_per_hour": 1000, "burst_per_second": 50, "tenant_per_hour": null}))]
pub struct LimitSettings {
    /// Requests an hour per API key, unless the key has its own limit.
    pub per_key_per_hour: u32,
    /// Requests a second per API key, on each instance.
    pub burst_per_second: u32,
    /// Requests an hour for the whole tenant, all keys together; `None`: no ceiling.
    pub tenant_per_hour: Option<u32>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            per_key_per_hour: DEFAULT_PER_HOUR,
            burst_per_second: DEFAULT_BURST_PER_SECOND,
            tenant_per_hour: None,
        }
    }
}

/// A change to a tenant's limits: each field set replaces the current value
/// (`tenant_per_hour: Some(None)` removes the tenant's ceiling).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"per_key_per_hour": 5000, "tenant_per_hour": 100000}))]
pub struct LimitSettingsPatch {
    pub per_key_per_hour: Option<u64>,
    pub burst_per_second: Option<u64>,
    /// `null` removes the tenant's ceiling.
    #[serde(default, deserialize_with = "crate::customers::account::present")]
    #[schema(value_type = Option<u64>)]
    pub tenant_per_hour: Option<Option<u64>>,
}

impl LimitSettings {
    pub fn patched(self, patch: LimitSettingsPatch) -> Result<Self, ValidationError> {
        Ok(Self {
            per_key_per_hour: match patch.per_key_per_hour {
                Some(n) => limit(n, "per_key_per_hour")?,
                None => self.per_key_per_hour,
            },
            burst_per_second: match patch.burst_per_second {
                Some(n) => limit(n, "burst_per_second")?,
                None => self.burst_per_second,
            },
            tenant_per_hour: match patch.tenant_per_hour {
                Some(Some(n)) => Some(limit(n, "tenant_per_hour")?),
                Some(None) => None,
                None => self.tenant_per_hour,
            },
        })
    }
}

/// A limit as a client sends it: 1 to [`MAX_LIMIT`], else `invalid_limit_value` on `param`.
pub fn limit(value: u64, param: &'static str) -> Result<u32, ValidationError> {
    match u32::try_from(value) {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ValidationError::new(
            ErrorCode::InvalidRateLimit,
            param,
            format!("a rate limit is 1 to {MAX_LIMIT} requests"),
        )),
    }
}

/// The window `now` falls in: `[start, end)`, aligned to multiples of `length` since the
/// epoch, so every instance agrees on it without asking anyone.
pub fn window(now: Timestamp, length: SignedDuration) -> (Timestamp, Timestamp) {
    let length = length.as_secs().max(1);
    let start = now.as_second().div_euclid(length) * length;
    let at = |s: i64| Timestamp::from_second(s).unwrap_or(now);
    (at(start), at(start + length))
}

/// How many requests an instance claims from a shared count at once: a fiftieth of the
/// limit, at least one. The larger the share, the fewer writes (one per `claim_size`
/// requests) and the more an instance can leave unspent when the window ends.
pub fn claim_size(limit: u32) -> u32 {
    (limit / 50).max(1)
}

/// What a claim of `want` gets from a count at `used` of `limit`: never past the limit.
pub fn grant(used: u32, want: u32, limit: u32) -> u32 {
    want.min(limit.saturating_sub(used))
}

/// Whole seconds from `now` until `end`, rounded up, at least one: what `Retry-After` and
/// `RateLimit-Reset` say.
pub fn seconds_until(now: Timestamp, end: Timestamp) -> u64 {
    let nanos = end.as_nanosecond() - now.as_nanosecond();
    let seconds = nanos.div_euclid(1_000_000_000) + i128::from(nanos.rem_euclid(1_000_000_000) > 0);
    u64::try_from(seconds.max(1)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_hours() {
        let now: Timestamp = "2027-03-01T10:59:59.5Z".parse().unwrap();
        let (start, end) = window(now, WINDOW);
        assert_eq!(start, "2027-03-01T10:00:00Z".parse().unwrap());
        assert_eq!(end, "2027-03-01T11:00:00Z".parse().unwrap());
        assert_eq!(seconds_until(now, end), 1);
        assert_eq!(seconds_until(start, end), 3600);
        assert_eq!(window(end, WINDOW).0, end);
    }

    #[test]
    fn claims_never_pass_the_limit() {
        assert_eq!(claim_size(1000), 20);
        assert_eq!(claim_size(10), 1);
        assert_eq!(grant(990, 20, 1000), 10);
        assert_eq!(grant(1000, 20, 1000), 0);
        assert_eq!(grant(1200, 20, 1000), 0);
    }

    #[test]
    fn a_patch_replaces_only_what_it_names_and_checks_it() {
        let settings = LimitSettings::default();
        let patched = settings
            .patched(LimitSettingsPatch {
                tenant_per_hour: Some(Some(50_000)),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(patched.tenant_per_hour, Some(50_000));
        assert_eq!(patched.per_key_per_hour, DEFAULT_PER_HOUR);
        let err = settings
            .patched(LimitSettingsPatch {
                burst_per_second: Some(0),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(
            (err.code, err.param.as_str()),
            (ErrorCode::InvalidRateLimit, "burst_per_second")
        );
        assert!(settings
            .patched(LimitSettingsPatch {
                per_key_per_hour: Some(u64::from(u32::MAX) + 1),
                ..Default::default()
            })
            .is_err());
    }
}
