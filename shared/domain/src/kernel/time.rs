//! The supported time range. Every time a client sends is checked against it at the edge,
//! so that the arithmetic done on it later (periods, trials, retention) stays far inside
//! what a timestamp can hold; the few additions that could still reach the end saturate.

use jiff::{SignedDuration, Timestamp};

use super::error::{ErrorCode, ValidationError};

/// The first supported time, 1970-01-01T00:00:00Z.
pub const SUPPORTED_FROM: Timestamp = Timestamp::UNIX_EPOCH;
/// The last supported second, 2999-12-31T23:59:59Z: a period, trial or retention added to
/// it still fits a timestamp (which ends in 9999).
pub const SUPPORTED_UNTIL: Timestamp = Timestamp::constant(32_503_680_000 - 1, 0);

/// The most days a client may give a duration counted in days (days until due, the
/// longest pause): ten years.
pub const MAX_DAYS: u32 = 3650;

/// `n` days, when at most [`MAX_DAYS`]; else `duration_out_of_range` on `param`.
pub fn days(n: u32, param: &'static str) -> Result<SignedDuration, ValidationError> {
    if n > MAX_DAYS {
        return Err(ValidationError::new(
            ErrorCode::DurationOutOfRange,
            param,
            format!("{n} days is more than the {MAX_DAYS} allowed"),
        ));
    }
    Ok(SignedDuration::from_hours(24 * i64::from(n)))
}

/// `at`, when it is inside the supported range; else `timestamp_out_of_range` on `param`.
pub fn supported(at: Timestamp, param: &'static str) -> Result<Timestamp, ValidationError> {
    if (SUPPORTED_FROM..=SUPPORTED_UNTIL).contains(&at) {
        Ok(at)
    } else {
        Err(ValidationError::new(
            ErrorCode::TimestampOutOfRange,
            param,
            format!("{at} is outside the supported range, {SUPPORTED_FROM} to {SUPPORTED_UNTIL}"),
        ))
    }
}

/// `at + d`, saturating at the ends of time instead of panicking: for deadlines and
/// retention, where "never" is the right reading of an overflow.
pub fn later(at: Timestamp, d: SignedDuration) -> Timestamp {
    at.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// How long a rotated secret (a webhook signing secret, an API key) keeps working beside
/// its successor, unless the caller says.
pub const DEFAULT_ROTATION_OVERLAP: SignedDuration = SignedDuration::from_hours(24);
pub const MAX_ROTATION_OVERLAP: SignedDuration = SignedDuration::from_hours(7 * 24);

/// A rotation's overlap (`expires_in_seconds`), when 0 to [`MAX_ROTATION_OVERLAP`]; else
/// `invalid_overlap`.
pub fn rotation_overlap(overlap: SignedDuration) -> Result<SignedDuration, ValidationError> {
    if overlap.is_negative() || overlap > MAX_ROTATION_OVERLAP {
        return Err(ValidationError::new(
            ErrorCode::InvalidOverlap,
            "expires_in_seconds",
            format!(
                "the previous secret may keep working for 0 to {} seconds",
                MAX_ROTATION_OVERLAP.as_secs()
            ),
        ));
    }
    Ok(overlap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_range_is_inclusive_and_names_the_param() {
        assert!(supported(SUPPORTED_FROM, "at").is_ok());
        assert!(supported(SUPPORTED_UNTIL, "at").is_ok());
        assert_eq!(SUPPORTED_UNTIL.to_string(), "2999-12-31T23:59:59Z");
        let err = supported("9999-12-30T00:00:00Z".parse().unwrap(), "start_date").unwrap_err();
        assert_eq!(
            (err.code, err.param.as_str()),
            (ErrorCode::TimestampOutOfRange, "start_date")
        );
        assert!(supported(SUPPORTED_FROM - SignedDuration::from_nanos(1), "at").is_err());
        assert!(supported(SUPPORTED_UNTIL + SignedDuration::from_secs(1), "at").is_err());
    }

    #[test]
    fn days_are_bounded() {
        assert_eq!(days(2, "d"), Ok(SignedDuration::from_hours(48)));
        assert!(days(MAX_DAYS, "d").is_ok());
        let err = days(u32::MAX, "days_until_due").unwrap_err();
        assert_eq!(
            (err.code, err.param.as_str()),
            (ErrorCode::DurationOutOfRange, "days_until_due")
        );
    }

    proptest! {
        #[test]
        fn later_never_panics_and_is_exact_when_it_fits(
            secs in Timestamp::MIN.as_second()..=Timestamp::MAX.as_second(),
            d in any::<i64>(),
        ) {
            let at = Timestamp::from_second(secs).unwrap();
            let d = SignedDuration::from_secs(d);
            let sum = later(at, d);
            match at.checked_add(d) {
                Ok(exact) => prop_assert_eq!(sum, exact),
                Err(_) => prop_assert!(sum == Timestamp::MAX || sum == Timestamp::MIN),
            }
        }
    }
}
