//! The price change notice: a plan version published with `migrate_existing` and
//! `migration_notice_days: N` moves a subscription only at a renewal at least N days after
//! the subscription's customer was emailed about it. The notice is armed on the
//! subscription (when the version is published, or at the first renewal that could not
//! migrate yet), wakes it at `send_at` through its `due_at`, and is sent once.
//!
//! Rule for a notice sent late (fewer than N days before the next renewal): that renewal
//! keeps the old prices, and the subscription migrates at the first renewal at least N
//! days after the notice (the customer always gets the full notice period).

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::subscription::SubscriptionTerms;
use crate::catalog::plan::{NotPricedIn, Plan, PlanVersion};
use crate::kernel::currency::Currency;
use crate::kernel::money::Money;
use crate::kernel::time;

/// A newer price version of the subscription's plan that a renewal would move to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The version's prices in the subscription's currency.
    pub terms: SubscriptionTerms,
    /// The version's `migration_notice_days` (0: it migrates unannounced).
    pub notice_days: u32,
    /// When the version takes effect.
    pub effective_from: Timestamp,
}

impl Migration {
    /// The move to `version` of `plan` for a subscription in `currency`.
    pub fn to(plan: &Plan, version: &PlanVersion, currency: Currency) -> Result<Self, NotPricedIn> {
        Ok(Migration {
            terms: SubscriptionTerms::of(plan, version, currency)?,
            notice_days: version.migration_notice_days,
            effective_from: version.effective_from,
        })
    }

    /// A version that migrates at the next renewal without a notice (today's behaviour).
    pub fn unannounced(terms: SubscriptionTerms) -> Self {
        Migration {
            terms,
            notice_days: 0,
            effective_from: Timestamp::MIN,
        }
    }

    fn notice_period(&self) -> SignedDuration {
        SignedDuration::from_hours(24 * i64::from(self.notice_days))
    }

    /// When the notice for a renewal at `renewal` is sent: `notice_days` before it, or at
    /// `now` when that has passed.
    pub fn send_at(&self, renewal: Timestamp, now: Timestamp) -> Timestamp {
        time::later(renewal, -self.notice_period()).max(now)
    }

    /// The earliest a renewal may bill this version with `notice` as the subscription has it.
    pub fn earliest_with(&self, notice: Option<&PriceNotice>) -> Option<Timestamp> {
        if self.notice_days == 0 {
            return Some(self.effective_from);
        }
        let sent = notice
            .filter(|n| n.plan_version == self.terms.plan_version)?
            .sent_at?;
        Some(time::later(sent, self.notice_period()).max(self.effective_from))
    }

    /// May a renewal at `at` move to this version? Without a notice period, yes; with one,
    /// only once its notice was sent at least `notice_days` before `at`.
    pub fn allowed(&self, notice: Option<&PriceNotice>, at: Timestamp) -> bool {
        self.earliest_with(notice)
            .is_some_and(|earliest| earliest <= at)
    }
}

/// The email announcing a price migration to this subscription's customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PriceNotice {
    /// The plan version it announces.
    pub plan_version: u32,
    /// The version's `migration_notice_days`.
    pub notice_days: u32,
    /// When the email is (or was) due: the subscription wakes then.
    #[schema(value_type = String, format = DateTime)]
    pub send_at: Timestamp,
    /// When it was sent; `None` while it waits.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sent_at: Option<Timestamp>,
    /// What it said, once sent: the full-period recurring fee at the subscription's
    /// quantity before and after, and the first renewal billed at the new prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub old_amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub new_amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub effective_at: Option<Timestamp>,
}

impl PriceNotice {
    /// A notice of `migration` waiting to be sent at `send_at`.
    pub fn armed(migration: &Migration, send_at: Timestamp) -> Self {
        PriceNotice {
            plan_version: migration.terms.plan_version,
            notice_days: migration.notice_days,
            send_at,
            sent_at: None,
            old_amount: None,
            new_amount: None,
            effective_at: None,
        }
    }

    /// When the subscription must wake to send it (`None` once sent).
    pub fn pending_at(&self) -> Option<Timestamp> {
        self.sent_at.is_none().then_some(self.send_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> Timestamp {
        time::later(Timestamp::UNIX_EPOCH, SignedDuration::from_hours(24 * days))
    }

    fn migration(notice_days: u32, effective_from: Timestamp) -> Migration {
        let terms: SubscriptionTerms = serde_json::from_value(serde_json::json!({
            "plan_id": "plan_01JD3X7M2Q8Z5V6W9Y0A1B2C3D", "plan_version": 2, "plan_name": "Pro",
            "interval": {"unit": "month", "count": 1}, "billing_timing": "in_advance",
            "proration": "exact_seconds", "recurring_fee": null, "usage_charges": []
        }))
        .unwrap();
        Migration {
            terms,
            notice_days,
            effective_from,
        }
    }

    /// Sent `notice_days` before the renewal, or at once when that has passed; the gate
    /// opens `notice_days` after sending, never before the version takes effect, and only
    /// for the version the notice announced.
    #[test]
    fn the_notice_is_sent_before_the_renewal_and_opens_the_gate_after_its_period() {
        let m = migration(7, at(0));
        assert_eq!(m.send_at(at(30), at(10)), at(23));
        assert_eq!(m.send_at(at(30), at(27)), at(27));
        let mut notice = PriceNotice::armed(&m, at(23));
        assert!(!m.allowed(Some(&notice), at(30)), "not sent yet");
        notice.sent_at = Some(at(23));
        assert!(m.allowed(Some(&notice), at(30)));
        assert!(!m.allowed(Some(&notice), at(29)));
        notice.plan_version = 3;
        assert!(
            !m.allowed(Some(&notice), at(30)),
            "another version's notice"
        );
        assert!(!m.allowed(None, at(300)));
        let later = migration(7, at(60));
        let sent = PriceNotice {
            sent_at: Some(at(23)),
            ..PriceNotice::armed(&later, at(23))
        };
        assert_eq!(later.earliest_with(Some(&sent)), Some(at(60)));
        assert!(migration(0, at(5)).allowed(None, at(5)), "no notice period");
        assert!(!migration(0, at(5)).allowed(None, at(4)));
    }
}
