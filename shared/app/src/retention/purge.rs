//! The purge: a deleted account's due-index entry (at `purge_at`, on its test clock when
//! it has one) brings it to a billing worker, which erases it or postpones it.
//!
//! Exactly once: the records about the account are erased first (safe to repeat), then
//! the tombstone replaces the account on its version together with the `account.purged`
//! event and a `purge` audit record. A second run, or a racing one, finds the account
//! purged (or loses the version) and writes nothing.

use billing_domain::billing::invoice::InvoiceStatus;
use billing_domain::billing::subscription::SubscriptionStatus;
use billing_domain::customers::account::Account;
use billing_domain::customers::erasure::{AccountPurgePostponed, PurgeBlocker, PurgeDecision};
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::ids::{AccountId, TenantId};
use jiff::Timestamp;

use super::RetentionService;
use crate::kernel::{change, system_caller, to_json, until_committed, AppError, ChangeSpec};
use crate::ports::{InvoiceFilter, PageRequest, StoreError, SubscriptionFilter};

/// What a due purge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeOutcome {
    /// Nothing was due (already purged, restored, postponed to later, or gone).
    Nothing,
    Erased,
    Postponed {
        retry_at: Timestamp,
        blockers: Vec<PurgeBlocker>,
    },
}

impl RetentionService {
    /// Runs the purge of `id` due at `now` (the account's time: its test clock's when it
    /// has one). Safe to run twice and concurrently.
    pub async fn purge_account(
        &self,
        tenant: TenantId,
        id: AccountId,
        now: Timestamp,
    ) -> Result<PurgeOutcome, AppError> {
        let livemode = self
            .store
            .get_tenant(tenant)
            .await?
            .is_some_and(|t| t.mode.is_live());
        until_committed(
            || self.purge_once(tenant, id, now, livemode),
            || AppError::Unavailable("the account kept changing; the purge comes back".into()),
        )
        .await
    }

    async fn purge_once(
        &self,
        tenant: TenantId,
        id: AccountId,
        now: Timestamp,
        livemode: bool,
    ) -> Result<Option<PurgeOutcome>, AppError> {
        let Some(current) = self.store.get_account(tenant, id).await? else {
            return Ok(Some(PurgeOutcome::Nothing));
        };
        let blockers = match current.purge_due() {
            Some(due) if due <= now => self.blockers(tenant, id).await?,
            _ => Vec::new(),
        };
        let caller = system_caller(tenant, livemode);
        let (next, outcome, action, event_type) = match current.purge_decision(now, blockers) {
            PurgeDecision::Nothing => return Ok(Some(PurgeOutcome::Nothing)),
            PurgeDecision::Postpone { retry_at, blockers } => (
                current.postpone_purge(retry_at, now),
                PurgeOutcome::Postponed { retry_at, blockers },
                AuditAction::Update,
                EventType::AccountPurgePostponed,
            ),
            PurgeDecision::Erase => {
                self.erase_records(tenant, &current).await?;
                (
                    current.erase(now),
                    PurgeOutcome::Erased,
                    AuditAction::Purge,
                    EventType::AccountPurged,
                )
            }
        };
        let (before, after) = (to_json(&current)?, to_json(&next)?);
        let mut change = change(
            &caller,
            now,
            ChangeSpec {
                entity_type: "account",
                entity_id: id.to_string(),
                action,
                event_type: Some(event_type),
                before: Some(&before),
                after: &after,
            },
        );
        if let PurgeOutcome::Postponed { retry_at, blockers } = &outcome {
            let data = to_json(&AccountPurgePostponed {
                account: id,
                retry_at: *retry_at,
                blockers: blockers.clone(),
            })?;
            for event in &mut change.events {
                event.data = data.clone();
            }
        } else {
            // The purge's own record names what changed, not the values it erased.
            billing_domain::customers::erasure::erase_values(&mut change.audit.changes);
            for event in &mut change.events {
                event.previous_attributes = None;
            }
        }
        match self
            .store
            .update_account(tenant, &current, &next, &change)
            .await
        {
            Ok(()) => Ok(Some(outcome)),
            Err(StoreError::VersionConflict { .. }) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }

    /// Erases the account's payment profile and notices, and the personal values in the
    /// records about it and its payment methods.
    async fn erase_records(&self, tenant: TenantId, account: &Account) -> Result<(), AppError> {
        let mut entities = vec![account.id.to_string()];
        if let Some(profile) = self.store.get_payment_profile(tenant, account.id).await? {
            entities.extend(profile.methods.iter().map(|m| m.id.clone()));
        }
        self.store
            .erase_account_records(tenant, account.id, &entities)
            .await?;
        Ok(())
    }

    /// What keeps the account from being purged: its draft and open invoices and its
    /// subscriptions not cancelled.
    async fn blockers(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Vec<PurgeBlocker>, AppError> {
        let mut blockers = Vec::new();
        let mut page = PageRequest::first(100);
        let filter = SubscriptionFilter {
            account: Some(account),
            ..Default::default()
        };
        loop {
            let found = self
                .store
                .list_subscriptions(tenant, &filter, &page)
                .await?;
            blockers.extend(
                found
                    .items
                    .iter()
                    .filter(|s| s.status != SubscriptionStatus::Cancelled)
                    .map(|s| PurgeBlocker::ActiveSubscription { id: s.id }),
            );
            match found.next_cursor(|s| s.id.to_string()) {
                Some(cursor) => page.starting_after = Some(cursor),
                None => break,
            }
        }
        for status in [InvoiceStatus::Draft, InvoiceStatus::Open] {
            let filter = InvoiceFilter {
                account: Some(account),
                status: Some(status),
                ..Default::default()
            };
            let mut page = PageRequest::first(100);
            loop {
                let found = self.store.list_invoices(tenant, &filter, &page).await?;
                blockers.extend(
                    found
                        .items
                        .iter()
                        .map(|i| PurgeBlocker::OpenInvoice { id: i.id }),
                );
                match found.next_cursor(|i| i.id.to_string()) {
                    Some(cursor) => page.starting_after = Some(cursor),
                    None => break,
                }
            }
        }
        Ok(blockers)
    }
}
