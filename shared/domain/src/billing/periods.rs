//! Billing periods and calendars.
//!
//! A [`BillingCycle`] is an interval (`day`/`week`/`month`/`year` × count), an anchor instant and
//! the account's IANA time zone. Boundary `k` is computed **from the anchor** each time, never
//! by stepping from the previous boundary: the anchor's local date plus `k × count` units (jiff's
//! calendar arithmetic clamps to the month's last day), at the anchor's local time of day, in the
//! account's zone. So a Jan 31 anchor gives Feb 28 (Feb 29 in leap years), then Mar 31 again; a
//! Feb 29 yearly anchor gives Feb 28 in common years and Feb 29 again in leap years.
//!
//! The zone decides where periods start and end. A local time that does not exist (spring-forward
//! gap) resolves to the instant just after the gap; an ambiguous one (fall-back fold) resolves to
//! the earlier instant (jiff's "compatible" disambiguation, as RFC 5545 and Temporal do).
//!
//! Periods are half-open instants `[start, end)` ([`Period`]).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde::{Deserialize, Serialize};

/// A half-open span of time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Period {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Period {
    pub fn new(start: Timestamp, end: Timestamp) -> Result<Self, PeriodError> {
        if start >= end {
            return Err(PeriodError::Empty { start, end });
        }
        Ok(Period { start, end })
    }

    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }

    /// Whether `other` lies within this period (boundaries included).
    pub fn covers(&self, other: &Period) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// The part of this period from `t` on (`[max(start, t), end)`), if any.
    pub fn from(&self, t: Timestamp) -> Option<Period> {
        let start = self.start.max(t);
        (start < self.end).then_some(Period {
            start,
            end: self.end,
        })
    }

    /// The part of this period before `t` (`[start, min(end, t))`), if any.
    pub fn until(&self, t: Timestamp) -> Option<Period> {
        let end = self.end.min(t);
        (self.start < end).then_some(Period {
            start: self.start,
            end,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error(
        "unknown time zone `{0}`: expected an IANA name such as Europe/Paris or America/New_York"
    )]
    UnknownTimeZone(String),
    #[error("interval count must be between 1 and {max} (got {got})")]
    BadCount { got: u32, max: u32 },
    #[error("empty period: start {start} is not before end {end}")]
    Empty { start: Timestamp, end: Timestamp },
    #[error("date out of the supported range")]
    OutOfRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntervalUnit {
    Day,
    Week,
    Month,
    Year,
}

/// `count` × `unit`, e.g. every 3 months.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    pub unit: IntervalUnit,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

impl Interval {
    /// Largest count accepted (e.g. 3 years of days, 5 years of months).
    pub fn max_count(unit: IntervalUnit) -> u32 {
        match unit {
            IntervalUnit::Day => 1095,
            IntervalUnit::Week => 156,
            IntervalUnit::Month => 60,
            IntervalUnit::Year => 5,
        }
    }

    pub fn new(unit: IntervalUnit, count: u32) -> Result<Self, PeriodError> {
        let i = Interval { unit, count };
        i.validate()?;
        Ok(i)
    }

    pub fn monthly() -> Self {
        Interval {
            unit: IntervalUnit::Month,
            count: 1,
        }
    }

    pub fn yearly() -> Self {
        Interval {
            unit: IntervalUnit::Year,
            count: 1,
        }
    }

    pub fn validate(&self) -> Result<(), PeriodError> {
        let max = Self::max_count(self.unit);
        if self.count == 0 || self.count > max {
            return Err(PeriodError::BadCount {
                got: self.count,
                max,
            });
        }
        Ok(())
    }

    /// The calendar span of `k` intervals.
    fn span(&self, k: i64) -> Result<Span, PeriodError> {
        let n = k
            .checked_mul(i64::from(self.count))
            .ok_or(PeriodError::OutOfRange)?;
        let s = match self.unit {
            IntervalUnit::Day => Span::new().try_days(n),
            IntervalUnit::Week => Span::new().try_weeks(n),
            IntervalUnit::Month => Span::new().try_months(n),
            IntervalUnit::Year => Span::new().try_years(n),
        };
        s.map_err(|_| PeriodError::OutOfRange)
    }

    /// Whole intervals from `a` to `b` by a calendar estimate (may be off by one; callers adjust).
    fn estimate(&self, a: Date, b: Date) -> i64 {
        let months = (i64::from(b.year()) - i64::from(a.year())) * 12 + i64::from(b.month())
            - i64::from(a.month());
        let days = b.since(a).map(|s| i64::from(s.get_days())).unwrap_or(0);
        let units = match self.unit {
            IntervalUnit::Day => days,
            IntervalUnit::Week => days.div_euclid(7),
            IntervalUnit::Month => months,
            IntervalUnit::Year => months.div_euclid(12),
        };
        units.div_euclid(i64::from(self.count.max(1)))
    }
}

/// In advance (licensed fees billed at period start) or in arrears (usage billed at period end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingTiming {
    InAdvance,
    InArrears,
}

impl BillingTiming {
    /// When a charge for `period` is billed.
    pub fn bill_at(self, period: &Period) -> Timestamp {
        match self {
            BillingTiming::InAdvance => period.start,
            BillingTiming::InArrears => period.end,
        }
    }
}

/// The serialisable description of a cycle (what a subscription stores).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CycleSpec {
    pub interval: Interval,
    /// The billing cycle anchor instant.
    pub anchor: Timestamp,
    /// IANA zone of the account, e.g. `Europe/Paris`.
    pub time_zone: String,
}

/// A resolved billing cycle: interval, anchor and zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingCycle {
    interval: Interval,
    anchor: Timestamp,
    local_anchor: DateTime,
    tz: TimeZone,
    tz_name: String,
}

/// Looks an IANA zone up in the embedded database ([`crate::kernel::time_zones`]).
pub fn time_zone(name: &str) -> Result<TimeZone, PeriodError> {
    crate::kernel::time_zones::get(name)
        .ok_or_else(|| PeriodError::UnknownTimeZone(name.to_owned()))
}

/// The local calendar date of an instant in a zone.
pub fn local_date(t: Timestamp, tz: &TimeZone) -> Date {
    tz.to_datetime(t).date()
}

impl BillingCycle {
    pub fn new(
        interval: Interval,
        anchor: Timestamp,
        time_zone_name: &str,
    ) -> Result<Self, PeriodError> {
        interval.validate()?;
        let tz = time_zone(time_zone_name)?;
        let local_anchor = tz.to_datetime(anchor);
        Ok(BillingCycle {
            interval,
            anchor,
            local_anchor,
            tz,
            tz_name: time_zone_name.to_owned(),
        })
    }

    pub fn from_spec(spec: &CycleSpec) -> Result<Self, PeriodError> {
        Self::new(spec.interval, spec.anchor, &spec.time_zone)
    }

    pub fn spec(&self) -> CycleSpec {
        CycleSpec {
            interval: self.interval,
            anchor: self.anchor,
            time_zone: self.tz_name.clone(),
        }
    }

    pub fn interval(&self) -> Interval {
        self.interval
    }

    pub fn anchor(&self) -> Timestamp {
        self.anchor
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    pub fn time_zone_name(&self) -> &str {
        &self.tz_name
    }

    /// Boundary `k` (boundary 0 is the anchor; negative `k` goes back in time).
    pub fn boundary(&self, k: i64) -> Result<Timestamp, PeriodError> {
        if k == 0 {
            return Ok(self.anchor);
        }
        let date = self
            .local_anchor
            .date()
            .checked_add(self.interval.span(k)?)
            .map_err(|_| PeriodError::OutOfRange)?;
        let local = date.to_datetime(self.local_anchor.time());
        self.tz
            .to_ambiguous_timestamp(local)
            .compatible()
            .map_err(|_| PeriodError::OutOfRange)
    }

    /// Period `k`: `[boundary(k), boundary(k + 1))`.
    pub fn period(&self, k: i64) -> Result<Period, PeriodError> {
        let next = k.checked_add(1).ok_or(PeriodError::OutOfRange)?;
        Period::new(self.boundary(k)?, self.boundary(next)?)
    }

    /// Index of the period containing `t`.
    pub fn index_at(&self, t: Timestamp) -> Result<i64, PeriodError> {
        let mut k = self
            .interval
            .estimate(self.local_anchor.date(), local_date(t, &self.tz));
        // The estimate is within one or two periods; walk to the exact one.
        for _ in 0..8 {
            if self.boundary(k)? > t {
                k -= 1;
            } else if self.boundary(k + 1)? <= t {
                k += 1;
            } else {
                return Ok(k);
            }
        }
        Err(PeriodError::OutOfRange)
    }

    /// The full period containing `t`.
    pub fn period_containing(&self, t: Timestamp) -> Result<Period, PeriodError> {
        self.period(self.index_at(t)?)
    }

    /// The first boundary strictly after `t`.
    pub fn next_boundary_after(&self, t: Timestamp) -> Result<Timestamp, PeriodError> {
        self.boundary(self.index_at(t)? + 1)
    }

    /// The first period of a subscription that starts at `start`: from `start` to the next
    /// boundary. It is partial when `start` is not on a boundary (Stripe's prorated first
    /// period when the anchor is set apart from the start).
    pub fn first_period(&self, start: Timestamp) -> Result<FirstPeriod, PeriodError> {
        let k = self.index_at(start)?;
        let full = self.period(k)?;
        let period = Period::new(start, full.end)?;
        Ok(FirstPeriod {
            period,
            full,
            partial: start != full.start,
        })
    }

    /// `n` consecutive periods starting with the one containing `t` (for previews).
    pub fn periods_from(&self, t: Timestamp, n: usize) -> Result<Vec<Period>, PeriodError> {
        let k = self.index_at(t)?;
        (0..n as i64).map(|i| self.period(k + i)).collect()
    }

    /// What an invoice at boundary `k` covers: the period starting there (fees in advance) and
    /// the period ending there (usage in arrears).
    pub fn invoice_periods(&self, k: i64) -> Result<InvoicePeriods, PeriodError> {
        Ok(InvoicePeriods {
            in_advance: self.period(k)?,
            in_arrears: self.period(k - 1)?,
        })
    }
}

/// A subscription's first period and the full cycle period it sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstPeriod {
    pub period: Period,
    pub full: Period,
    pub partial: bool,
}

/// The periods one invoice at a boundary bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoicePeriods {
    pub in_advance: Period,
    pub in_arrears: Period,
}

/// A trial ending at `trial_end` leaves this billable part of `period`, if any.
pub fn after_trial(period: &Period, trial_end: Option<Timestamp>) -> Option<Period> {
    match trial_end {
        Some(t) => period.from(t),
        None => Some(*period),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn local(p: &Period, tz: &str) -> (String, String) {
        let tz = time_zone(tz).unwrap();
        (
            tz.to_datetime(p.start).to_string(),
            tz.to_datetime(p.end).to_string(),
        )
    }

    #[test]
    fn month_end_clamping_keeps_the_anchor() {
        let c = BillingCycle::new(Interval::monthly(), ts("2024-01-31T00:00:00Z"), "UTC").unwrap();
        let starts: Vec<String> = (0..5).map(|k| c.boundary(k).unwrap().to_string()).collect();
        assert_eq!(
            starts,
            vec![
                "2024-01-31T00:00:00Z",
                "2024-02-29T00:00:00Z",
                "2024-03-31T00:00:00Z",
                "2024-04-30T00:00:00Z",
                "2024-05-31T00:00:00Z"
            ]
        );
        let c = BillingCycle::new(Interval::monthly(), ts("2023-01-31T00:00:00Z"), "UTC").unwrap();
        assert_eq!(c.boundary(1).unwrap().to_string(), "2023-02-28T00:00:00Z");
        assert_eq!(c.boundary(2).unwrap().to_string(), "2023-03-31T00:00:00Z");
    }

    #[test]
    fn leap_day_yearly_anchor() {
        let c = BillingCycle::new(Interval::yearly(), ts("2024-02-29T12:00:00Z"), "UTC").unwrap();
        assert_eq!(c.boundary(1).unwrap().to_string(), "2025-02-28T12:00:00Z");
        assert_eq!(c.boundary(4).unwrap().to_string(), "2028-02-29T12:00:00Z");
    }

    #[test]
    fn time_zone_decides_boundaries_across_dst() {
        // Midnight in Paris on Mar 1 is 23:00 UTC the day before (CET, +01:00); midnight on
        // Apr 1 is 22:00 UTC (CEST, +02:00): the March period is 30 days 23 hours long.
        let c = BillingCycle::new(
            Interval::monthly(),
            ts("2024-02-29T23:00:00Z"),
            "Europe/Paris",
        )
        .unwrap();
        let p = c.period(0).unwrap();
        assert_eq!(
            local(&p, "Europe/Paris"),
            ("2024-03-01T00:00:00".into(), "2024-04-01T00:00:00".into())
        );
        assert_eq!(p.end.to_string(), "2024-03-31T22:00:00Z");
        assert_eq!(
            (p.end.as_second() - p.start.as_second()) / 3600,
            31 * 24 - 1
        );
        // Daily cycle over the fall-back night in New York: that day is 25 hours.
        let d = BillingCycle::new(
            Interval {
                unit: IntervalUnit::Day,
                count: 1,
            },
            ts("2024-11-02T04:00:00Z"),
            "America/New_York",
        )
        .unwrap();
        let p = d.period(1).unwrap();
        assert_eq!(
            local(&p, "America/New_York"),
            ("2024-11-03T00:00:00".into(), "2024-11-04T00:00:00".into())
        );
        assert_eq!(p.end.as_second() - p.start.as_second(), 25 * 3600);
    }

    #[test]
    fn gap_times_resolve_after_the_gap() {
        // Anchor 02:30 local on a day without DST; on Mar 10 2024 02:30 does not exist in New York.
        let c = BillingCycle::new(
            Interval {
                unit: IntervalUnit::Day,
                count: 1,
            },
            ts("2024-03-09T07:30:00Z"), // 02:30 EST
            "America/New_York",
        )
        .unwrap();
        let b = c.boundary(1).unwrap();
        assert_eq!(
            time_zone("America/New_York")
                .unwrap()
                .to_datetime(b)
                .to_string(),
            "2024-03-10T03:30:00"
        );
        assert_eq!(c.boundary(2).unwrap().to_string(), "2024-03-11T06:30:00Z"); // 02:30 EDT
    }

    #[test]
    fn containing_first_and_invoice_periods() {
        let c = BillingCycle::new(
            Interval {
                unit: IntervalUnit::Week,
                count: 2,
            },
            ts("2024-01-01T00:00:00Z"),
            "UTC",
        )
        .unwrap();
        let p = c.period_containing(ts("2024-01-20T10:00:00Z")).unwrap();
        assert_eq!(
            (p.start.to_string(), p.end.to_string()),
            ("2024-01-15T00:00:00Z".into(), "2024-01-29T00:00:00Z".into())
        );
        let p = c.period_containing(ts("2023-12-31T23:59:59Z")).unwrap();
        assert_eq!(p.start.to_string(), "2023-12-18T00:00:00Z");
        assert_eq!(c.index_at(ts("2024-01-29T00:00:00Z")).unwrap(), 2);
        let m = BillingCycle::new(Interval::monthly(), ts("2024-01-15T00:00:00Z"), "UTC").unwrap();
        let f = m.first_period(ts("2024-03-03T00:00:00Z")).unwrap();
        assert!(f.partial);
        assert_eq!(f.period.end.to_string(), "2024-03-15T00:00:00Z");
        assert_eq!(f.full.start.to_string(), "2024-02-15T00:00:00Z");
        let ip = m.invoice_periods(2).unwrap();
        assert_eq!(ip.in_advance.start.to_string(), "2024-03-15T00:00:00Z");
        assert_eq!(ip.in_arrears.start.to_string(), "2024-02-15T00:00:00Z");
        assert_eq!(
            BillingTiming::InArrears.bill_at(&ip.in_arrears),
            ip.in_advance.start
        );
        let q = BillingCycle::new(
            Interval {
                unit: IntervalUnit::Month,
                count: 3,
            },
            ts("2024-01-31T00:00:00Z"),
            "UTC",
        )
        .unwrap();
        assert_eq!(
            q.period_containing(ts("2024-05-01T00:00:00Z"))
                .unwrap()
                .start
                .to_string(),
            "2024-04-30T00:00:00Z"
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(BillingCycle::new(
            Interval::monthly(),
            ts("2024-01-01T00:00:00Z"),
            "Mars/Olympus"
        )
        .is_err());
        assert!(Interval::new(IntervalUnit::Month, 0).is_err());
        assert!(Interval::new(IntervalUnit::Year, 6).is_err());
        let c = BillingCycle::new(Interval::monthly(), ts("2024-01-01T00:00:00Z"), "UTC").unwrap();
        assert!(c.boundary(i64::MAX).is_err());
        assert!(c.boundary(200_000).is_err());
        assert!(Period::new(ts("2024-01-02T00:00:00Z"), ts("2024-01-01T00:00:00Z")).is_err());
        let spec: CycleSpec = serde_json::from_str(
            r#"{"interval":{"unit":"month","count":1},"anchor":"2024-01-31T00:00:00Z","time_zone":"Asia/Tokyo"}"#,
        )
        .unwrap();
        assert_eq!(BillingCycle::from_spec(&spec).unwrap().spec(), spec);
    }
}
