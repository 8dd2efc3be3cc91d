//! A catalog change simulated before it is published: per subscription, its next invoice as
//! it is and as it would be (both priced by billing's own preview), and per currency what
//! that adds up to: the change of the next invoices, monthly recurring revenue before and
//! after, the largest increases, and the subscriptions changed by more than a threshold.
//!
//! MRR is a subscription's recurring fee at its quantity, as a month of its interval
//! (a year is 12 months, a week 52/12 of a month, a day 365/12), summed per currency and
//! rounded once, half away from zero, to the minor unit. Discounts and usage are not
//! recurring revenue and are left out; the next invoices include both.
//!
//! A plan with more subscriptions than a request prices runs as a [`SimulationRun`]: a job
//! that prices them a chunk at a time against a snapshot of the catalog taken when it was
//! asked, each chunk saved over the run's version, so a chunk delivered twice is priced
//! again but saved once.

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::billing::periods::{Interval, IntervalUnit};
use crate::catalog::plan::{Plan, PlanVersion};
use crate::kernel::decimal::{round_minor, serde_decimal};
use crate::kernel::ids::{PlanId, SimulationId, SubscriptionId};
use crate::kernel::time::later;

/// How many of the largest increases a currency's summary lists.
pub const LARGEST: usize = 5;

/// One subscription's next invoice, as it is and as the change would make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SubscriptionImpact {
    #[schema(value_type = String)]
    pub subscription_id: SubscriptionId,
    pub currency: String,
    /// When the next invoice is made.
    #[schema(value_type = String, format = DateTime)]
    pub invoice_at: Timestamp,
    /// Its total now and with the change, minor units.
    pub before: i64,
    pub after: i64,
    pub change: i64,
    /// The change in percent of `before` (two decimals); `null` when `before` is zero.
    #[serde(with = "serde_decimal::option")]
    #[schema(value_type = Option<String>)]
    pub change_percent: Option<Decimal>,
    /// Whether that invoice moves the subscription to the new version.
    pub migrates: bool,
    /// Recurring fee as a month, unrounded minor units, before and after.
    #[serde(skip)]
    pub mrr_before: Decimal,
    #[serde(skip)]
    pub mrr_after: Decimal,
}

impl SubscriptionImpact {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        subscription_id: SubscriptionId,
        currency: String,
        invoice_at: Timestamp,
        before: i64,
        after: i64,
        migrates: bool,
        mrr_before: Decimal,
        mrr_after: Decimal,
    ) -> Self {
        let change = after - before;
        let change_percent = (before != 0).then(|| {
            (Decimal::from(change) * Decimal::ONE_HUNDRED / Decimal::from(before)).round_dp(2)
        });
        Self {
            subscription_id,
            currency,
            invoice_at,
            before,
            after,
            change,
            change_percent,
            migrates,
            mrr_before,
            mrr_after,
        }
    }

    /// Changed by more than `threshold` percent (either way); from nothing to something
    /// always counts.
    pub fn over(&self, threshold: Decimal) -> bool {
        match self.change_percent {
            Some(p) => p.abs() > threshold,
            None => self.change != 0,
        }
    }
}

/// A [`SubscriptionImpact`] as a simulation job keeps it between its chunks: with the
/// unrounded MRR the answer leaves out, which the summary adds up at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedImpact {
    pub subscription_id: SubscriptionId,
    pub currency: String,
    pub invoice_at: Timestamp,
    pub before: i64,
    pub after: i64,
    pub migrates: bool,
    #[serde(with = "serde_decimal")]
    pub mrr_before: Decimal,
    #[serde(with = "serde_decimal")]
    pub mrr_after: Decimal,
}

impl From<&SubscriptionImpact> for PricedImpact {
    fn from(i: &SubscriptionImpact) -> Self {
        Self {
            subscription_id: i.subscription_id,
            currency: i.currency.clone(),
            invoice_at: i.invoice_at,
            before: i.before,
            after: i.after,
            migrates: i.migrates,
            mrr_before: i.mrr_before,
            mrr_after: i.mrr_after,
        }
    }
}

impl From<PricedImpact> for SubscriptionImpact {
    fn from(p: PricedImpact) -> Self {
        SubscriptionImpact::new(
            p.subscription_id,
            p.currency,
            p.invoice_at,
            p.before,
            p.after,
            p.migrates,
            p.mrr_before,
            p.mrr_after,
        )
    }
}

/// How long a simulation job's result is kept (then it is gone: 404, and DynamoDB's TTL
/// deletes it): a week to read it, and publish or not.
pub const RESULT_RETENTION: SignedDuration = SignedDuration::from_hours(7 * 24);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SimulationStatus {
    Running,
    Completed,
    Failed,
}

/// A simulation run as a job: the catalog as it was when asked (the plan and its versions,
/// and the plan with the simulated version added), how far through the plan's subscriptions
/// it has got, and its outcome. The impacts themselves are kept per chunk beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulationRun {
    pub id: SimulationId,
    pub plan_id: PlanId,
    pub plan: Plan,
    pub versions: Vec<PlanVersion>,
    /// The plan as publishing the version would leave it.
    pub next_plan: Plan,
    /// The version as it would be published.
    pub simulated: PlanVersion,
    #[serde(with = "serde_decimal")]
    pub threshold_percent: Decimal,
    pub status: SimulationStatus,
    /// Why it failed (`status: failed`).
    pub failure: Option<String>,
    /// Where the next chunk resumes listing the plan's subscriptions (`None`: at the first).
    pub resume_after: Option<String>,
    /// Chunks saved so far: the next chunk's number.
    pub chunks: u32,
    /// Subscriptions priced so far.
    pub priced: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the run and its chunks are deleted (not `expires_at`: the table's TTL
    /// attribute, epoch seconds, has that name).
    pub retained_until: Timestamp,
    pub version: u64,
}

/// One chunk's impacts, saved with the run's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulationChunk {
    pub number: u32,
    pub impacts: Vec<PricedImpact>,
}

impl SimulationRun {
    /// A run not started yet, of `simulated` added to `plan` (making `next_plan`).
    pub fn start(
        id: SimulationId,
        (plan, versions): (Plan, Vec<PlanVersion>),
        next_plan: Plan,
        simulated: PlanVersion,
        threshold_percent: Decimal,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            plan_id: plan.id,
            plan,
            versions,
            next_plan,
            simulated,
            threshold_percent,
            status: SimulationStatus::Running,
            failure: None,
            resume_after: None,
            chunks: 0,
            priced: 0,
            created_at: now,
            updated_at: now,
            retained_until: later(now, RESULT_RETENTION),
            version: 1,
        }
    }

    /// The catalog as it is, and as it would be with the version published.
    pub fn catalogs(&self) -> ((Plan, Vec<PlanVersion>), (Plan, Vec<PlanVersion>)) {
        let mut versions = self.versions.clone();
        versions.push(self.simulated.clone());
        (
            (self.plan.clone(), self.versions.clone()),
            (self.next_plan.clone(), versions),
        )
    }

    /// The chunk that comes next, priced as `impacts`, and the run after it: it resumes
    /// after `resume_after`, or, when that is `None` (the last chunk), is completed.
    pub fn advance(
        &self,
        impacts: Vec<PricedImpact>,
        resume_after: Option<String>,
        now: Timestamp,
    ) -> (SimulationChunk, Self) {
        let next = Self {
            status: if resume_after.is_some() {
                SimulationStatus::Running
            } else {
                SimulationStatus::Completed
            },
            resume_after,
            chunks: self.chunks + 1,
            priced: self.priced + impacts.len() as u64,
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        };
        let chunk = SimulationChunk {
            number: self.chunks,
            impacts,
        };
        (chunk, next)
    }

    /// The run failed for `reason`: nothing more is priced.
    pub fn fail(&self, reason: String, now: Timestamp) -> Self {
        Self {
            status: SimulationStatus::Failed,
            failure: Some(reason),
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        }
    }

    pub fn expired(&self, now: Timestamp) -> bool {
        self.retained_until <= now
    }
}

/// What the change does in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CurrencyImpact {
    pub currency: String,
    /// Subscriptions of the plan in this currency.
    pub subscriptions: u64,
    /// Those whose next invoice moves them to the new version.
    pub affected: u64,
    /// Minor units a month.
    pub mrr_before: i64,
    pub mrr_after: i64,
    /// The next invoices' totals, now and with the change, minor units.
    pub next_invoices_before: i64,
    pub next_invoices_after: i64,
    pub change: i64,
    /// The largest increases, largest first (at most [`LARGEST`]).
    pub largest_increases: Vec<SubscriptionImpact>,
    /// Subscriptions whose next invoice changes by more than the threshold.
    #[schema(value_type = Vec<String>)]
    pub over_threshold: Vec<SubscriptionId>,
}

/// A recurring fee of `minor` units per `interval`, as a month (unrounded).
pub fn monthly(minor: i64, interval: Interval) -> Decimal {
    let per_unit = match interval.unit {
        IntervalUnit::Month => Decimal::ONE,
        IntervalUnit::Year => Decimal::from(12),
        IntervalUnit::Week => Decimal::from(12) / Decimal::from(52),
        IntervalUnit::Day => Decimal::from(12) / Decimal::from(365),
    };
    Decimal::from(minor) / (per_unit * Decimal::from(interval.count.max(1)))
}

/// Sums the impacts per currency (in currency-code order).
pub fn summarize(impacts: &[SubscriptionImpact], threshold: Decimal) -> Vec<CurrencyImpact> {
    let mut currencies: Vec<&str> = impacts.iter().map(|i| i.currency.as_str()).collect();
    currencies.sort_unstable();
    currencies.dedup();
    currencies
        .into_iter()
        .map(|currency| {
            let of: Vec<&SubscriptionImpact> =
                impacts.iter().filter(|i| i.currency == currency).collect();
            let sum = |f: fn(&SubscriptionImpact) -> i64| of.iter().map(|i| f(i)).sum::<i64>();
            let mrr = |f: fn(&SubscriptionImpact) -> Decimal| {
                round_minor(of.iter().map(|i| f(i)).sum::<Decimal>()).unwrap_or(i64::MAX)
            };
            let mut increases: Vec<SubscriptionImpact> = of
                .iter()
                .filter(|i| i.change > 0)
                .map(|i| (*i).clone())
                .collect();
            increases.sort_by(|a, b| {
                b.change
                    .cmp(&a.change)
                    .then(a.subscription_id.cmp(&b.subscription_id))
            });
            increases.truncate(LARGEST);
            CurrencyImpact {
                currency: currency.to_owned(),
                subscriptions: of.len() as u64,
                affected: of.iter().filter(|i| i.migrates).count() as u64,
                mrr_before: mrr(|i| i.mrr_before),
                mrr_after: mrr(|i| i.mrr_after),
                next_invoices_before: sum(|i| i.before),
                next_invoices_after: sum(|i| i.after),
                change: sum(|i| i.change),
                largest_increases: increases,
                over_threshold: of
                    .iter()
                    .filter(|i| i.over(threshold))
                    .map(|i| i.subscription_id)
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u128) -> SubscriptionId {
        SubscriptionId::from_ulid(ulid::Ulid::from(n))
    }

    fn impact(n: u128, currency: &str, before: i64, after: i64) -> SubscriptionImpact {
        SubscriptionImpact::new(
            id(n),
            currency.into(),
            "2027-02-01T00:00:00Z".parse().unwrap(),
            before,
            after,
            before != after,
            Decimal::from(before),
            Decimal::from(after),
        )
    }

    #[test]
    fn a_year_is_twelve_months_and_a_week_52_twelfths() {
        assert_eq!(monthly(120_000, Interval::yearly()), Decimal::from(10_000));
        assert_eq!(monthly(4_900, Interval::monthly()), Decimal::from(4_900));
        let quarterly = Interval {
            unit: IntervalUnit::Month,
            count: 3,
        };
        assert_eq!(monthly(3_000, quarterly), Decimal::from(1_000));
        let weekly = Interval {
            unit: IntervalUnit::Week,
            count: 1,
        };
        // 1,200 a week × 52 / 12 = 5,200 a month.
        assert_eq!(monthly(1_200, weekly).round_dp(6), Decimal::from(5_200));
    }

    #[test]
    fn currencies_are_summed_apart_with_the_largest_increases_and_the_threshold() {
        let impacts = [
            impact(1, "usd", 4_900, 5_900),
            impact(2, "usd", 14_700, 17_700),
            impact(3, "eur", 4_500, 5_200),
            impact(4, "usd", 0, 500),
            impact(5, "usd", 1_000, 1_000),
        ];
        let summary = summarize(&impacts, Decimal::from(20));
        assert_eq!(summary.len(), 2);
        let (eur, usd) = (&summary[0], &summary[1]);
        assert_eq!((eur.currency.as_str(), eur.change), ("eur", 700));
        assert_eq!(eur.over_threshold, Vec::<SubscriptionId>::new(), "15.56 %");
        assert_eq!(usd.subscriptions, 4);
        assert_eq!(usd.affected, 3);
        assert_eq!(usd.next_invoices_before, 20_600);
        assert_eq!(usd.next_invoices_after, 25_100);
        assert_eq!(usd.change, 4_500);
        let largest: Vec<SubscriptionId> = usd
            .largest_increases
            .iter()
            .map(|i| i.subscription_id)
            .collect();
        assert_eq!(largest, [id(2), id(1), id(4)]);
        assert_eq!(
            usd.largest_increases[1].change_percent,
            Some(Decimal::new(2041, 2))
        );
        assert_eq!(
            usd.over_threshold,
            [id(1), id(2), id(4)],
            "20.41 % and from zero"
        );
    }

    #[test]
    fn a_kept_impact_comes_back_the_same_with_its_mrr() {
        let mut i = impact(7, "usd", 4_900, 5_900);
        i.mrr_before = Decimal::from(12) / Decimal::from(52);
        let kept: PricedImpact =
            serde_json::from_str(&serde_json::to_string(&PricedImpact::from(&i)).unwrap()).unwrap();
        assert_eq!(SubscriptionImpact::from(kept), i);
    }

    proptest! {
        /// Each currency's change is the sum of its subscriptions' changes, and the totals
        /// of all currencies are those of all subscriptions.
        #[test]
        fn the_summary_adds_up(rows in prop::collection::vec((0u8..3, 0i64..1_000_000, 0i64..1_000_000), 0..40)) {
            let impacts: Vec<SubscriptionImpact> = rows
                .iter()
                .enumerate()
                .map(|(n, (c, b, a))| impact(n as u128, ["eur", "jpy", "usd"][*c as usize], *b, *a))
                .collect();
            let summary = summarize(&impacts, Decimal::from(10));
            let all_before: i64 = impacts.iter().map(|i| i.before).sum();
            let all_after: i64 = impacts.iter().map(|i| i.after).sum();
            prop_assert_eq!(summary.iter().map(|c| c.next_invoices_before).sum::<i64>(), all_before);
            prop_assert_eq!(summary.iter().map(|c| c.next_invoices_after).sum::<i64>(), all_after);
            prop_assert_eq!(summary.iter().map(|c| c.subscriptions).sum::<u64>(), impacts.len() as u64);
            for c in &summary {
                prop_assert_eq!(c.change, c.next_invoices_after - c.next_invoices_before);
                prop_assert!(c.largest_increases.len() <= LARGEST);
                prop_assert!(c.largest_increases.windows(2).all(|w| w[0].change >= w[1].change));
            }
        }
    }
}
