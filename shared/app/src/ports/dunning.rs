//! Ports for dunning and customer notices: the per-tenant policy, each account's case, the
//! pending notices (dunning's, and the emails events leave), and the notifier that tells
//! customers.

use async_trait::async_trait;
use billing_domain::collection::dunning::{DunningCase, DunningPolicy, NoticeKind};
use billing_domain::customers::account::Account;
use billing_domain::documents::email;
use billing_domain::events::record::DomainEvent;
use billing_domain::kernel::ids::{AccountId, TenantId};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Change, StoreError};

/// An account whose status a dunning write moves: the stored version and the next one.
#[derive(Debug, Clone, Copy)]
pub struct AccountStatusWrite<'a> {
    pub previous: &'a Account,
    pub next: &'a Account,
}

#[async_trait]
pub trait DunningStore: Send + Sync {
    /// The tenant's policy, `None` while it never set one (the default applies).
    async fn get_dunning_policy(
        &self,
        tenant: TenantId,
    ) -> Result<Option<DunningPolicy>, StoreError>;
    async fn set_dunning_policy(
        &self,
        tenant: TenantId,
        policy: &DunningPolicy,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// The account's latest case.
    async fn get_dunning_case(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<DunningCase>, StoreError>;
    /// Writes `next` over `previous` (`None`: the account has no case yet), version-checked,
    /// with its next step in the due index (on the account's test clock if it has one), the
    /// account's status move (version-checked), the notice the move left (in the due index
    /// at its `retry_at`) and the change, atomically. `VersionConflict` when the case or the
    /// account moved meanwhile.
    async fn save_dunning_case(
        &self,
        tenant: TenantId,
        previous: Option<&DunningCase>,
        next: &DunningCase,
        account: Option<AccountStatusWrite<'_>>,
        notice: Option<&PendingNotice>,
        change: &Change,
    ) -> Result<(), StoreError>;
    async fn get_dunning_notice(
        &self,
        tenant: TenantId,
        account: AccountId,
        key: &str,
    ) -> Result<Option<PendingNotice>, StoreError>;
    /// Replaces the notice if its stored version is still `previous.version` (a new claim
    /// on sending it); `VersionConflict` otherwise, also when it is gone.
    async fn claim_dunning_notice(
        &self,
        tenant: TenantId,
        previous: &PendingNotice,
        next: &PendingNotice,
    ) -> Result<(), StoreError>;
    /// Removes a notice once sent. Removing one that is gone is not an error.
    async fn delete_dunning_notice(
        &self,
        tenant: TenantId,
        account: AccountId,
        key: &str,
    ) -> Result<(), StoreError>;
}

/// A notice committed with a change and not yet sent: a dunning move's, or the email an
/// event asks for ([`PendingNotice::for_event`], which every store writes in the event's
/// own transaction). It waits in the due index (in real time: a crash is a real-time
/// matter) until `retry_at`, when its sender is presumed dead (or, for an event's email,
/// at once) and the payment worker sends it; sending deletes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingNotice {
    pub account_id: AccountId,
    /// Unique within the account; see [`billing_domain::collection::dunning::Notice`].
    pub key: String,
    pub kind: NoticeKind,
    /// When the move that left it was made (the account's time).
    pub made_at: Timestamp,
    pub retry_at: Timestamp,
    pub version: u64,
    /// The id of what an event's email is about (its invoice, payment, credit note or
    /// subscription); `None` for dunning's, which are about the account's case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
}

impl PendingNotice {
    /// The email `event` asks for ([`email::notice_for`]), due at once: no process holds
    /// a claim on it, the payment worker sends it when the sweep hands it over.
    pub fn for_event(event: &DomainEvent) -> Option<PendingNotice> {
        let notice = email::notice_for(event)?;
        Some(PendingNotice {
            account_id: notice.account_id,
            key: notice.key,
            kind: notice.kind,
            made_at: event.created,
            retry_at: Timestamp::UNIX_EPOCH,
            version: 1,
            about: Some(event.resource_id.clone()),
        })
    }

    /// The same notice claimed by a new sender until `retry_at`, when the last claim has
    /// run out at `now`.
    pub fn reclaim(&self, now: Timestamp, retry_at: Timestamp) -> Option<PendingNotice> {
        (self.retry_at <= now).then(|| PendingNotice {
            retry_at,
            version: self.version + 1,
            ..self.clone()
        })
    }
}

/// A message to a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub tenant_id: TenantId,
    pub account_id: AccountId,
    /// The account's email address.
    pub to: String,
    pub subject: String,
    /// The plain-text part.
    pub body: String,
    /// The HTML part: the same words, in the tenant's branding, self-contained.
    pub html: String,
    /// Where replies go (the tenant's `reply_to`, else its support address).
    pub reply_to: Option<String>,
    /// Names the message for good: a send repeated after a crash carries the same key.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// Worth trying again later (throttling, a network fault).
    #[error("the notifier is unavailable: {0}")]
    Unavailable(String),
    /// Will never go through (a rejected address); not retried.
    #[error("the notification was rejected: {0}")]
    Rejected(String),
}

/// Sends customer notifications (email through SES in AWS, files locally).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn send(&self, notification: &Notification) -> Result<(), NotifyError>;
}
