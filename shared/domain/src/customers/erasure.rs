//! Retention and erasure: a soft-deleted account is purged [`PURGE_AFTER`] its deletion.
//! Its personal data (email, name, address, VAT id, external id, metadata, payment
//! methods, notices) is erased and the account stays as a tombstone (id, currency, states
//! and dates), so that invoices and credit notes, which are legal records, still name an
//! account. They keep the [`BillingDetails`] snapshotted on them when they were issued.
//!
//! An account that still owes or is owed work (an open or draft invoice, a subscription
//! not cancelled) is not purged: the purge is postponed by [`PURGE_RETRY`] and tried
//! again, each postponement recorded with what blocked it.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::account::{Account, Address};
use crate::kernel::ids::{InvoiceId, SubscriptionId};
use crate::kernel::metadata::Metadata;
use crate::kernel::time::later;

/// How long a deleted account keeps its data (the seeds' T163: 30 days).
pub const PURGE_AFTER: SignedDuration = SignedDuration::from_hours(24 * 30);
/// How long a purge that something blocked waits before it is tried again.
pub const PURGE_RETRY: SignedDuration = SignedDuration::from_hours(24 * 7);
/// Audit records expire (by the table's TTL) after this many days unless configured
/// otherwise: three years (the seeds' T163), counting one leap day.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 3 * 365 + 1;
/// What an erased value reads as in records kept after the purge.
pub const ERASED: &str = "[erased]";

/// Who an invoice was issued to, as it was when the invoice was finalized. The email is
/// contact data, not part of an invoice, and is not kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BillingDetails {
    pub name: Option<String>,
    pub address: Option<Address>,
    pub vat_id: Option<String>,
}

impl BillingDetails {
    pub fn of(account: &Account) -> Self {
        Self {
            name: account.name.clone(),
            address: account.billing_address.clone(),
            vat_id: account.vat_id.clone(),
        }
    }
}

/// Why a due purge was postponed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PurgeBlocker {
    /// A draft or open invoice: it may still be paid, voided or credited.
    OpenInvoice {
        #[schema(value_type = String)]
        id: InvoiceId,
    },
    /// A subscription not cancelled: it still bills the account.
    ActiveSubscription {
        #[schema(value_type = String)]
        id: SubscriptionId,
    },
}

/// The `data` of `account.purge_postponed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountPurgePostponed {
    #[schema(value_type = String)]
    pub account: crate::kernel::ids::AccountId,
    #[schema(value_type = String, format = DateTime)]
    pub retry_at: Timestamp,
    pub blockers: Vec<PurgeBlocker>,
}

/// What a purge due at `now` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeDecision {
    /// Not deleted, already purged, or not due yet (a postponed purge): nothing.
    Nothing,
    /// Blocked: try again at `retry_at`.
    Postpone {
        retry_at: Timestamp,
        blockers: Vec<PurgeBlocker>,
    },
    Erase,
}

impl Account {
    /// When the purge of this account is due, while one is pending.
    pub fn purge_due(&self) -> Option<Timestamp> {
        self.purge_at.filter(|_| self.purged_at.is_none())
    }

    pub fn purge_decision(&self, now: Timestamp, blockers: Vec<PurgeBlocker>) -> PurgeDecision {
        match self.purge_due() {
            Some(due) if due <= now => {
                if blockers.is_empty() {
                    PurgeDecision::Erase
                } else {
                    PurgeDecision::Postpone {
                        retry_at: later(now, PURGE_RETRY),
                        blockers,
                    }
                }
            }
            _ => PurgeDecision::Nothing,
        }
    }

    /// The next version with the purge moved to `retry_at`.
    pub fn postpone_purge(&self, retry_at: Timestamp, now: Timestamp) -> Account {
        Account {
            purge_at: Some(retry_at),
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        }
    }

    /// The tombstone: the next version without anything personal.
    pub fn erase(&self, now: Timestamp) -> Account {
        Account {
            email: String::new(),
            name: None,
            external_id: None,
            billing_address: None,
            vat_id: None,
            vat_id_status: None,
            metadata: Metadata::default(),
            purge_at: None,
            purged_at: Some(now),
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        }
    }
}

/// Fields of an account, payment method or their changes that say nothing about the
/// person: ids, states, dates, currency. Everything else in a record about an erased
/// account is erased, including fields added later (kept only when listed here).
const KEPT_FIELDS: &[&str] = &[
    "id",
    "account_id",
    "status",
    "currency",
    "timezone",
    "tax_exempt",
    "created_at",
    "updated_at",
    "deleted_at",
    "purge_at",
    "purged_at",
    "test_clock",
    "version",
    "gateway",
    "default",
];

/// Replaces every value of `object` that may be personal with [`ERASED`]; the field
/// names stay, so an audit trail still shows what changed when.
pub fn erase_values(object: &mut Map<String, Value>) {
    for (field, value) in object.iter_mut() {
        if !KEPT_FIELDS.contains(&field.as_str()) && !value.is_null() {
            *value = Value::String(ERASED.to_owned());
        }
    }
}

/// [`erase_values`] of a JSON object (an event's `data`); anything else stays.
pub fn erase_object(value: &mut Value) {
    if let Some(object) = value.as_object_mut() {
        erase_values(object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customers::account::NewAccount;
    use crate::kernel::ids::AccountId;
    use serde_json::json;
    use ulid::Ulid;

    fn t(day: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_hours(24 * day)
    }

    fn deleted_account() -> Account {
        let input: NewAccount = serde_json::from_value(json!({
            "email": "ada@example.com", "name": "Ada", "currency": "eur", "vat_id": "DE136695976",
            "external_id": "u-1", "metadata": {"k": "v"},
            "billing_address": {"line1": "Main St 1", "city": "Berlin", "country": "DE"}
        }))
        .unwrap();
        Account::create(AccountId::from_ulid(Ulid::from_parts(1, 1)), input, t(0))
            .unwrap()
            .delete(t(0))
            .unwrap()
    }

    #[test]
    fn deleting_schedules_the_purge_thirty_days_later() {
        let account = deleted_account();
        assert_eq!(account.purge_due(), Some(t(30)));
        assert_eq!(
            account.purge_decision(t(29), vec![]),
            PurgeDecision::Nothing
        );
        assert_eq!(account.purge_decision(t(30), vec![]), PurgeDecision::Erase);
    }

    #[test]
    fn a_blocked_purge_is_postponed_a_week() {
        let account = deleted_account();
        let blockers = vec![PurgeBlocker::OpenInvoice {
            id: InvoiceId::from_ulid(Ulid::from_parts(2, 2)),
        }];
        let PurgeDecision::Postpone { retry_at, .. } =
            account.purge_decision(t(30), blockers.clone())
        else {
            panic!("postponed");
        };
        assert_eq!(retry_at, t(37));
        let postponed = account.postpone_purge(retry_at, t(30));
        assert_eq!(
            postponed.purge_decision(t(36), vec![]),
            PurgeDecision::Nothing
        );
        assert_eq!(
            postponed.purge_decision(t(37), vec![]),
            PurgeDecision::Erase
        );
    }

    #[test]
    fn the_tombstone_keeps_nothing_personal_and_is_purged_once() {
        let account = deleted_account();
        let tombstone = account.erase(t(30));
        let text = serde_json::to_string(&tombstone).unwrap();
        for personal in ["ada@example.com", "Ada", "DE1", "u-1", "Berlin", "\"k\""] {
            assert!(!text.contains(personal), "{personal} in {text}");
        }
        assert_eq!(tombstone.id, account.id);
        assert_eq!(tombstone.purged_at, Some(t(30)));
        assert_eq!(
            tombstone.purge_decision(t(90), vec![]),
            PurgeDecision::Nothing
        );
    }

    #[test]
    fn erasing_values_keeps_field_names_ids_and_states() {
        let mut changes = json!({
            "email": {"before": null, "after": "ada@example.com"},
            "status": {"before": null, "after": "active"},
            "name": null
        });
        erase_values(changes.as_object_mut().unwrap());
        assert_eq!(
            changes,
            json!({"email": ERASED, "status": {"before": null, "after": "active"}, "name": null})
        );
    }
}
