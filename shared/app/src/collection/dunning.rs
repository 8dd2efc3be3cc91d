//! Dunning: what happens to an account whose invoices could not be collected.
//!
//! Payments report in with [`CollectionService::invoice_past_due`] (an invoice's first failed payment:
//! the case opens and its step days count from then) and [`CollectionService::invoice_settled`] (paid
//! or voided: when nothing overdue is left the account is unblocked). Steps wait in the due
//! index; the payment worker runs them ([`CollectionService::run_due_dunning`]), and so does a test clock's
//! advance for accounts on the clock. The rules are
//! `billing_domain::collection::dunning`; this module loads, writes and notifies.
//!
//! Exactly once: every move is computed from the stored case and written only over the
//! version it was computed from, together with the account's status, the audit record and
//! the event. Running anything twice, or concurrently, makes each move once.
//!
//! Customer notices are at least once, deduplicated by key: a move writes its notice as a
//! pending item in the same transaction, claimed by the committing process for
//! [`NOTICE_CLAIM`]; that process sends it and then deletes it. If it dies in between, the
//! notice waits in the due index until the claim runs out and the payment worker sends it
//! ([`CollectionService::send_due_notice`]) under the same key; the only duplicate possible is a send
//! that went out just before a crash. A process without a notifier leaves its notices due
//! at once for the worker. A step's notice still pending when its case is resolved is
//! dropped: the customer gets the good news, not a stale warning.

use billing_domain::kernel::time::later;
use std::collections::BTreeMap;

use billing_domain::billing::invoice::{Invoice, InvoiceStatus};
use billing_domain::collection::dunning::{
    self, notice_text, BlockEffects, CaseFacts, DunningCase, DunningPolicy, DunningStatus,
    DunningStep, DunningTransition, NoticeKind,
};
use billing_domain::customers::access::Permission;
use billing_domain::customers::account::Account;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{AccountId, InvoiceId, TenantId};
use billing_domain::kernel::money::Money;
use jiff::{SignedDuration, Timestamp};

use super::CollectionService;
use crate::kernel::{
    change, system_caller, to_json, until_committed, AppError, Caller, ChangeSpec, WRITE_ATTEMPTS,
};
use crate::ports::{AccountStatusWrite, Change, Notification, PendingNotice, StoreError};

/// How long the process that committed a notice has to send it before the worker does.
pub const NOTICE_CLAIM: SignedDuration = SignedDuration::from_secs(120);
/// Most moves one run makes (every step of the longest policy, with room for races).
const MAX_MOVES: usize = 4 * dunning::MAX_STEPS;
const ENTITY: &str = "dunning";

/// Whether an invoice is still owed: open, or given up on by collection (uncollectible
/// invoices are still debts; only paying or voiding settles them).
fn owed(invoice: &Invoice) -> bool {
    matches!(
        invoice.status,
        InvoiceStatus::Open | InvoiceStatus::Uncollectible
    )
}

fn busy() -> AppError {
    AppError::Conflict {
        code: ErrorCode::ConcurrentModification,
        message: "the account's dunning kept changing under this request; retry".into(),
        param: None,
    }
}

/// What one attempt at a move came to.
enum Moved {
    /// Written; the case as now stored.
    Made(Box<DunningCase>),
    /// Another writer moved the case or the account first: read again.
    Lost,
}

impl CollectionService {
    /// The tenant's dunning policy (the default until it sets one).
    pub async fn dunning_policy(&self, caller: &Caller) -> Result<DunningPolicy, AppError> {
        caller.require(Permission::Read)?;
        Ok(self
            .store
            .get_dunning_policy(caller.tenant_id)
            .await?
            .unwrap_or_default())
    }

    /// Replaces the tenant's policy. Cases already running keep the steps they opened with;
    /// `on_block` (kept when `None`) applies at once.
    pub async fn set_dunning_policy(
        &self,
        caller: &Caller,
        steps: Vec<DunningStep>,
        on_block: Option<BlockEffects>,
    ) -> Result<DunningPolicy, AppError> {
        caller.require(Permission::WriteBilling)?;
        let mut policy = DunningPolicy::new(steps)?;
        let current = self.dunning_policy(caller).await?;
        policy.on_block = on_block.unwrap_or(current.on_block);
        let before = to_json(&current)?;
        let after = to_json(&policy)?;
        let change = change(
            caller,
            self.clocks.now(),
            ChangeSpec {
                entity_type: "dunning_settings",
                entity_id: caller.tenant_id.to_string(),
                action: AuditAction::Update,
                event_type: Some(EventType::DunningSettingsUpdated),
                before: Some(&before),
                after: &after,
            },
        );
        self.store
            .set_dunning_policy(caller.tenant_id, &policy, &change)
            .await?;
        Ok(policy)
    }

    /// What a block of the tenant's accounts does besides refusing changes (billing asks
    /// before a renewal).
    pub async fn block_effects(&self, tenant: TenantId) -> Result<BlockEffects, AppError> {
        Ok(self
            .store
            .get_dunning_policy(tenant)
            .await?
            .unwrap_or_default()
            .on_block)
    }

    /// The account's latest dunning case.
    pub async fn get_dunning_case(
        &self,
        caller: &Caller,
        account: AccountId,
    ) -> Result<DunningCase, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_dunning_case(caller.tenant_id, account)
            .await?
            .ok_or_else(|| AppError::not_found("dunning case of account", account))
    }

    /// An invoice of `account` could not be collected (its first failed payment): opens the
    /// account's dunning case at `now`, or notes one more overdue invoice in the open one.
    /// Nothing happens for an invoice no longer owed, or one already noted. Called by the
    /// payment use cases after their own permission checks; `caller` is who the audit names.
    pub async fn invoice_past_due(
        &self,
        caller: &Caller,
        account: AccountId,
        invoice: InvoiceId,
        now: Timestamp,
    ) -> Result<(), AppError> {
        let tenant = caller.tenant_id;
        let stored = self.invoice_of(tenant, account, invoice).await?;
        if !owed(&stored) {
            return Ok(());
        }
        let owner = self
            .store
            .get_account(tenant, account)
            .await?
            .ok_or_else(|| AppError::not_found("account", account))?;
        let facts = CaseFacts {
            account_id: account,
            test_clock: owner.test_clock,
            livemode: caller.livemode,
        };
        let policy = self
            .store
            .get_dunning_policy(tenant)
            .await?
            .unwrap_or_default();
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.store.get_dunning_case(tenant, account).await?;
            let next = match &current {
                Some(case) if case.status == DunningStatus::Active => {
                    case.note_overdue(invoice, now)
                }
                previous => DunningCase::open(facts, previous.as_ref(), &policy, invoice, now),
            };
            let Some(next) = next else {
                return Ok(());
            };
            let change = self.case_change(caller, current.as_ref(), &next, None, None, now)?;
            match self
                .store
                .save_dunning_case(tenant, current.as_ref(), &next, None, None, &change)
                .await
            {
                Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => {}
                other => return Ok(other?),
            }
        }
        Err(busy())
    }

    /// An invoice of `account` was paid or voided: takes it out of the account's case and,
    /// when no overdue invoice is left, resolves the case (account active again, pending
    /// steps cancelled, `dunning.unblocked` if the customer had been told anything).
    /// Nothing happens for an invoice that is still owed or that no case holds. Called like
    /// [`CollectionService::invoice_past_due`].
    pub async fn invoice_settled(
        &self,
        caller: &Caller,
        account: AccountId,
        invoice: InvoiceId,
        now: Timestamp,
    ) -> Result<(), AppError> {
        let tenant = caller.tenant_id;
        if owed(&self.invoice_of(tenant, account, invoice).await?) {
            return Ok(());
        }
        until_committed(
            move || async move {
                let Some(current) = self.store.get_dunning_case(tenant, account).await? else {
                    return Ok(Some(()));
                };
                let Some(transition) = current.settle(&[invoice], now) else {
                    return Ok(Some(()));
                };
                Ok(
                    match self.commit(caller, &current, transition, now).await? {
                        Moved::Made(_) => Some(()),
                        Moved::Lost => None,
                    },
                )
            },
            busy,
        )
        .await
    }

    /// Runs every step of the account's case due at or before `now`, in order, each at the
    /// moment it fell due, but never past the account's own time (its test clock's: the
    /// time the clock is advancing to, or stands at). A step finds first whether its
    /// invoices were settled meanwhile (and resolves the case instead). What the payment
    /// worker does with a dunning job, and a test clock's advance with a case on the clock.
    /// Safe to run twice and concurrently: each move is made once. Returns the moves made.
    pub async fn run_due_dunning(
        &self,
        tenant: TenantId,
        account: AccountId,
        now: Timestamp,
    ) -> Result<usize, AppError> {
        let Some(case) = self.store.get_dunning_case(tenant, account).await? else {
            return Ok(0);
        };
        let until = match case.test_clock {
            None => now,
            Some(clock) => {
                let clock = self
                    .store
                    .get_test_clock(tenant, clock)
                    .await?
                    .ok_or_else(|| AppError::not_found("test clock", clock))?;
                now.min(clock.advancing_to.unwrap_or(clock.frozen_time))
            }
        };
        let mut moves = 0;
        // The case just read, or just written by our own move: no read needed for it.
        let mut known = Some(case);
        for _ in 0..MAX_MOVES {
            let current = match known.take() {
                Some(case) => case,
                None => match self.store.get_dunning_case(tenant, account).await? {
                    Some(case) => case,
                    None => break,
                },
            };
            let caller = system_caller(tenant, current.livemode);
            let Some(due) = current
                .next_step_at
                .filter(|at| *at <= until && current.status == DunningStatus::Active)
            else {
                break;
            };
            let settled = self.settled_invoices(tenant, &current).await?;
            let transition = if settled.is_empty() {
                current.take_due_step(until)
            } else {
                current.settle(&settled, due)
            };
            let Some(transition) = transition else {
                break;
            };
            if let Moved::Made(next) = self.commit(&caller, &current, transition, due).await? {
                moves += 1;
                known = Some(*next);
            }
        }
        Ok(moves)
    }

    /// Writes one move of a case with the account's status, the audit record and the
    /// events, then sends the notice it left.
    async fn commit(
        &self,
        caller: &Caller,
        current: &DunningCase,
        transition: DunningTransition,
        at: Timestamp,
    ) -> Result<Moved, AppError> {
        let tenant = caller.tenant_id;
        let DunningTransition {
            next,
            event,
            notice,
        } = transition;
        let account = self
            .store
            .get_account(tenant, next.account_id)
            .await?
            .ok_or_else(|| AppError::not_found("account", next.account_id))?;
        let moved = dunning::account_after(&account, &next, at);
        let status = moved.as_ref().map(|next_account| (&account, next_account));
        let change = self.case_change(caller, Some(current), &next, event, status, at)?;
        let write = moved.as_ref().map(|next_account| AccountStatusWrite {
            previous: &account,
            next: next_account,
        });
        let pending = notice.map(|notice| PendingNotice {
            account_id: next.account_id,
            key: notice.key,
            kind: notice.kind,
            made_at: at,
            retry_at: match self.notifier {
                Some(_) => later(self.clocks.now(), NOTICE_CLAIM),
                None => self.clocks.now(),
            },
            version: 1,
            about: None,
        });
        match self
            .store
            .save_dunning_case(
                tenant,
                Some(current),
                &next,
                write,
                pending.as_ref(),
                &change,
            )
            .await
        {
            Ok(()) => {}
            Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => {
                return Ok(Moved::Lost)
            }
            Err(err) => return Err(err.into()),
        }
        if let Some(pending) = pending.filter(|_| self.notifier.is_some()) {
            self.send_notice(tenant, &pending, &next, &account.email)
                .await?;
        }
        Ok(Moved::Made(Box::new(next)))
    }

    /// The audit record of a case's move, its dunning event (if the move has one) and,
    /// when the account's status moves with it, `account.updated`.
    fn case_change(
        &self,
        caller: &Caller,
        previous: Option<&DunningCase>,
        next: &DunningCase,
        event: Option<EventType>,
        account: Option<(&Account, &Account)>,
        at: Timestamp,
    ) -> Result<Change, AppError> {
        let before = previous.map(to_json).transpose()?;
        let after = to_json(next)?;
        let mut change = change(
            caller,
            at,
            ChangeSpec {
                entity_type: ENTITY,
                entity_id: next.account_id.to_string(),
                action: if previous.is_some() {
                    AuditAction::Update
                } else {
                    AuditAction::Create
                },
                event_type: event,
                before: before.as_ref(),
                after: &after,
            },
        );
        if caller.is_system() {
            change.audit.actor.via = "system".into();
        }
        if let Some((before, after)) = account {
            let previous_attributes = serde_json::json!({"status": before.status});
            change.events.push(crate::kernel::event(
                caller,
                at,
                EventType::AccountUpdated,
                after.id.to_string(),
                to_json(after)?,
                Some(previous_attributes),
            ));
        }
        Ok(change)
    }

    /// Sends a notice whose claim ran out (its sender died or its notifier was down), or
    /// an event's email (due at once): what the payment worker does with a notice job.
    /// Claims it anew first, so two workers do not both send it.
    pub async fn send_due_notice(
        &self,
        tenant: TenantId,
        account: AccountId,
        key: &str,
    ) -> Result<(), AppError> {
        if self.notifier.is_none() {
            return Err(AppError::Unavailable(
                "this process has no notifier; the payment worker sends notices".into(),
            ));
        }
        let Some(stored) = self.store.get_dunning_notice(tenant, account, key).await? else {
            return Ok(());
        };
        let now = self.clocks.now();
        let Some(claimed) = stored.reclaim(now, later(now, NOTICE_CLAIM)) else {
            return Ok(());
        };
        match self
            .store
            .claim_dunning_notice(tenant, &stored, &claimed)
            .await
        {
            Ok(()) => {}
            Err(StoreError::VersionConflict { .. }) => return Ok(()),
            Err(err) => return Err(err.into()),
        }
        if !claimed.kind.is_dunning() {
            let notification = self.event_email(tenant, &claimed).await?;
            return self.deliver(tenant, &claimed, notification).await;
        }
        let case = self.store.get_dunning_case(tenant, account).await?;
        let owner = self.store.get_account(tenant, account).await?;
        match (case, owner) {
            // A step's notice is moot once the case is resolved: the good news replaces it.
            (Some(case), Some(owner))
                if case.status == DunningStatus::Active
                    || claimed.kind == NoticeKind::Unblocked =>
            {
                self.send_notice(tenant, &claimed, &case, &owner.email)
                    .await
            }
            _ => Ok(self
                .store
                .delete_dunning_notice(tenant, account, key)
                .await?),
        }
    }

    /// Sends a dunning notice this process holds the claim on, and deletes it.
    async fn send_notice(
        &self,
        tenant: TenantId,
        pending: &PendingNotice,
        case: &DunningCase,
        to: &str,
    ) -> Result<(), AppError> {
        let notification = self.notification(tenant, case, pending, to).await?;
        self.deliver(tenant, pending, notification).await
    }

    /// The words of a notice to `to`, with what the account owes now.
    async fn notification(
        &self,
        tenant: TenantId,
        case: &DunningCase,
        pending: &PendingNotice,
        to: &str,
    ) -> Result<Option<Notification>, AppError> {
        let letterhead = self.letterhead(tenant).await?;
        let mut owed_by_currency: BTreeMap<String, Money> = BTreeMap::new();
        let mut invoices = Vec::new();
        // The good news names no amount: nothing is owed any more.
        let owing = (pending.kind != NoticeKind::Unblocked).then_some(&case.overdue_invoices);
        for id in owing.into_iter().flatten() {
            if let Some(invoice) = self.store.get_invoice(tenant, *id).await? {
                invoices.push(invoice);
            }
        }
        for invoice in invoices.iter().filter(|i| owed(i)) {
            let left = invoice
                .amount_due
                .saturating_sub(invoice.amount_paid)
                .of(invoice.currency);
            let sum = owed_by_currency
                .entry(invoice.currency.api_code())
                .or_insert(Money::zero(invoice.currency));
            *sum = sum
                .checked_add(left)
                .map_err(|e| AppError::Internal(e.to_string()))?;
        }
        let owed: Vec<String> = owed_by_currency
            .into_values()
            .map(|m| letterhead.branding.locale.format_money(m))
            .collect();
        let days = pending
            .made_at
            .duration_since(case.overdue_since)
            .as_hours()
            / 24;
        Ok(
            notice_text(pending.kind, &letterhead.seller, &owed, days).map(|message| {
                letterhead.notification(
                    tenant,
                    case.account_id,
                    to,
                    &message,
                    format!("{}/dunning/{}", case.account_id, pending.key),
                )
            }),
        )
    }

    /// The invoices of a case that were paid or voided (or are gone) meanwhile.
    async fn settled_invoices(
        &self,
        tenant: TenantId,
        case: &DunningCase,
    ) -> Result<Vec<InvoiceId>, AppError> {
        let mut settled = Vec::new();
        for id in &case.overdue_invoices {
            let still_owed = self
                .store
                .get_invoice(tenant, *id)
                .await?
                .is_some_and(|i| owed(&i));
            if !still_owed {
                settled.push(*id);
            }
        }
        Ok(settled)
    }

    async fn invoice_of(
        &self,
        tenant: TenantId,
        account: AccountId,
        id: InvoiceId,
    ) -> Result<Invoice, AppError> {
        let invoice = self
            .store
            .get_invoice(tenant, id)
            .await?
            .ok_or_else(|| AppError::not_found("invoice", id))?;
        if invoice.account_id != account {
            return Err(AppError::Invalid(
                billing_domain::kernel::error::ValidationError::new(
                    ErrorCode::InvoiceOfAnotherAccount,
                    "invoice",
                    format!("invoice {id} does not belong to account {account}"),
                ),
            ));
        }
        Ok(invoice)
    }
}
