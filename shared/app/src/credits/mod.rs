//! Credits: account balances per currency, credit grants, manual adjustments and the
//! ledger; settling drafts against the balance when they are finalized; giving back what
//! a voided invoice spent; moving expired grants out.
//!
//! Every write is one [`BalanceChange`] made from the stored ledger and committed on the
//! condition that the balance is still at the version it was read at (see
//! [`CreditStore::save_balance`]); a writer that loses the race reads again. So two
//! invoices of one account finalized at once never spend the same credit.

mod settle;

use std::sync::Arc;

use billing_domain::credits::balance::{
    Balance, BalanceChange, BalanceError, BalanceTransaction, CreditGrant, CreditSource, Ledger,
    NewGrant, TransactionKind,
};
use billing_domain::customers::access::Permission;
use billing_domain::customers::account::Account;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::error::{ErrorCode, ValidationError};
use billing_domain::kernel::ids::{AccountId, CreditGrantId, TenantId};
use jiff::Timestamp;

use crate::kernel::{
    change, event, new_ulid, to_json, until_committed, AppError, Caller, ChangeSpec, Clocks,
};
use crate::ports::{
    AccountStore, Change, CreditStore, InvoiceStore, Page, PageRequest, StoreError, TestClockStore,
};
use crate::wallets::WalletsService;

pub use settle::Settled;

/// What the credits service reads and writes.
pub trait CreditsPorts: CreditStore + AccountStore + InvoiceStore + TestClockStore {}

impl<T> CreditsPorts for T where T: CreditStore + AccountStore + InvoiceStore + TestClockStore {}

/// The credits use cases. Calls wallets (consumption after credit); billing calls it to
/// settle drafts and voids.
#[derive(Clone)]
pub struct CreditsService {
    store: Arc<dyn CreditsPorts>,
    clocks: Clocks,
    /// Settling a draft also consumes the account's prepaid wallets, after its credit.
    wallets: WalletsService,
}

/// A grant as asked for through the API.
#[derive(Debug, Clone)]
pub struct GrantRequest {
    pub account: AccountId,
    pub amount: i64,
    pub currency: Currency,
    pub reason: String,
    pub note: Option<String>,
    pub expires_at: Option<Timestamp>,
}

/// A manual adjustment: positive adds a lot to the balance, negative takes from it.
#[derive(Debug, Clone)]
pub struct AdjustmentRequest {
    pub amount: i64,
    pub currency: Currency,
    pub reason: String,
}

/// An account's balances and one page of its ledger.
#[derive(Debug, Clone)]
pub struct BalanceView {
    pub balances: Vec<Balance>,
    pub transactions: Page<BalanceTransaction>,
}

impl CreditsService {
    pub(crate) fn new(
        store: Arc<dyn CreditsPorts>,
        clocks: Clocks,
        wallets: WalletsService,
    ) -> Self {
        Self {
            store,
            clocks,
            wallets,
        }
    }

    /// Grants credit to an account; it is spent by the account's next invoices in its
    /// currency, soonest-expiring first.
    pub async fn grant_credit(
        &self,
        caller: &Caller,
        req: GrantRequest,
    ) -> Result<CreditGrant, AppError> {
        caller.require(Permission::WriteBilling)?;
        let account = self.account(caller, req.account, "account").await?;
        let id = CreditGrantId::from_ulid(new_ulid());
        let source = CreditSource::Grant;
        self.write(caller, &account, req.currency, |ledger, now| {
            ledger.grant(
                NewGrant {
                    id,
                    source,
                    amount: req.amount,
                    reason: req.reason.clone(),
                    note: req.note.clone(),
                    invoice_id: None,
                    expires_at: req.expires_at,
                },
                now,
                &mut new_ulid,
            )
        })
        .await?;
        self.grant_of(caller.tenant_id, account.id, id).await
    }

    /// Adjusts an account's balance by hand, with a reason; returns the balance after it.
    pub async fn adjust_balance(
        &self,
        caller: &Caller,
        account: AccountId,
        req: AdjustmentRequest,
    ) -> Result<Balance, AppError> {
        caller.require(Permission::WriteBilling)?;
        let account = self.account_path(caller, account).await?;
        let id = CreditGrantId::from_ulid(new_ulid());
        let change = self
            .write(caller, &account, req.currency, |ledger, now| {
                if req.amount >= 0 {
                    ledger.grant(
                        NewGrant {
                            id,
                            source: CreditSource::Adjustment,
                            amount: req.amount,
                            reason: req.reason.clone(),
                            note: None,
                            invoice_id: None,
                            expires_at: None,
                        },
                        now,
                        &mut new_ulid,
                    )
                } else {
                    ledger.debit(
                        req.amount.checked_neg().unwrap_or(i64::MAX),
                        req.reason.clone(),
                        now,
                        &mut new_ulid,
                    )
                }
            })
            .await?;
        Ok(change.balance)
    }

    /// The account's grants of every currency, newest first, with what remains of each.
    pub async fn list_credits(
        &self,
        caller: &Caller,
        account: AccountId,
        page: &PageRequest,
    ) -> Result<Page<CreditGrant>, AppError> {
        caller.require(Permission::Read)?;
        self.account_path(caller, account).await?;
        Ok(self
            .store
            .list_grants(caller.tenant_id, account, page)
            .await?)
    }

    /// The account's balance per currency and its ledger, newest first (one currency's
    /// entries when `currency` is given).
    pub async fn balance(
        &self,
        caller: &Caller,
        account: AccountId,
        currency: Option<Currency>,
        page: &PageRequest,
    ) -> Result<BalanceView, AppError> {
        caller.require(Permission::Read)?;
        self.account_path(caller, account).await?;
        let tenant = caller.tenant_id;
        let mut balances = self.store.list_balances(tenant, account).await?;
        balances.retain(|b| currency.is_none_or(|c| b.currency == c));
        let transactions = self
            .store
            .list_balance_transactions(tenant, account, currency, page)
            .await?;
        Ok(BalanceView {
            balances,
            transactions,
        })
    }

    /// Moves what expired by `at` of the account's balance in `currency` out: the job
    /// the due index holds for the balance's next expiry (a worker's `at` is now, a test
    /// clock's the moment it fell due). Running it twice expires nothing the second time.
    /// Returns whether anything expired.
    pub async fn expire_credits(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Currency,
        at: Timestamp,
    ) -> Result<bool, AppError> {
        let store = &self.store;
        until_committed(
            || async move {
                let Some(ledger) = self.ledger(tenant, account, currency, None).await? else {
                    return Ok(Some(false));
                };
                let Some(change) = ledger.expire(at, &mut new_ulid) else {
                    return Ok(Some(false));
                };
                let caller = crate::kernel::system_caller(tenant, true);
                let record = balance_record(&caller, &change, at)?;
                match store.save_balance(tenant, &change, &record).await {
                    Ok(()) => Ok(Some(true)),
                    Err(StoreError::VersionConflict { .. }) => Ok(None),
                    Err(other) => Err(other.into()),
                }
            },
            || AppError::Unavailable("the balance kept changing while credit expired".into()),
        )
        .await
    }

    /// The stored ledger of `account` in `currency` (with `extra` grants loaded too, for a
    /// restore); `None` while it never had a balance.
    async fn ledger(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Currency,
        extra: Option<&[CreditGrantId]>,
    ) -> Result<Option<Ledger>, AppError> {
        let Some(balance) = self.store.get_balance(tenant, account, currency).await? else {
            return Ok(None);
        };
        Ok(Some(self.ledger_of(tenant, balance, extra).await?))
    }

    async fn ledger_of(
        &self,
        tenant: TenantId,
        balance: Balance,
        extra: Option<&[CreditGrantId]>,
    ) -> Result<Ledger, AppError> {
        let mut ids = balance.open_grants.clone();
        for id in extra.unwrap_or_default() {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        let grants = if ids.is_empty() {
            Vec::new()
        } else {
            self.store
                .get_grants(tenant, balance.account_id, &ids)
                .await?
        };
        Ok(Ledger { balance, grants })
    }

    /// Makes one change with `make` from a fresh read of the ledger, until it commits.
    async fn write(
        &self,
        caller: &Caller,
        account: &Account,
        currency: Currency,
        make: impl Fn(&Ledger, Timestamp) -> Result<BalanceChange, BalanceError>,
    ) -> Result<BalanceChange, AppError> {
        let tenant = caller.tenant_id;
        let make = &make;
        until_committed(
            || async move {
                let now = self.clocks.now_for(tenant, account.test_clock).await?;
                let ledger = self
                    .ledger(tenant, account.id, currency, None)
                    .await?
                    .unwrap_or_else(|| {
                        Ledger::empty(account.id, currency, account.test_clock, now)
                    });
                let change = make(&ledger, now).map_err(balance_error)?;
                let record = balance_record(caller, &change, now)?;
                match self.store.save_balance(tenant, &change, &record).await {
                    Ok(()) => Ok(Some(change)),
                    Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => {
                        Ok(None)
                    }
                    Err(other) => Err(other.into()),
                }
            },
            || AppError::Conflict {
                code: ErrorCode::ConcurrentModification,
                message: "the balance kept changing under this request; retry".into(),
                param: None,
            },
        )
        .await
    }

    async fn grant_of(
        &self,
        tenant: TenantId,
        account: AccountId,
        id: CreditGrantId,
    ) -> Result<CreditGrant, AppError> {
        self.store
            .get_grants(tenant, account, &[id])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AppError::Internal(format!("grant {id} not found after its write")))
    }

    /// An account named in a request body: unknown is a 400 on `param`.
    async fn account(
        &self,
        caller: &Caller,
        id: AccountId,
        param: &'static str,
    ) -> Result<Account, AppError> {
        self.store
            .get_account(caller.tenant_id, id)
            .await?
            .filter(|a| a.deleted_at.is_none())
            .ok_or_else(|| {
                AppError::Invalid(ValidationError::new(
                    ErrorCode::UnknownAccount,
                    param,
                    format!("no such account: {id}"),
                ))
            })
    }

    /// An account named in the path: unknown is a 404.
    async fn account_path(&self, caller: &Caller, id: AccountId) -> Result<Account, AppError> {
        self.store
            .get_account(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("account", id))
    }
}

fn balance_error(err: BalanceError) -> AppError {
    match err {
        BalanceError::Invalid(e) => AppError::Invalid(e),
        BalanceError::Insufficient { .. } => AppError::Conflict {
            code: ErrorCode::InsufficientBalance,
            message: err.to_string(),
            param: Some("amount"),
        },
    }
}

/// The audit record and events of a balance change: `balance.updated`, and one event per
/// grant added, credit applied and grant expired.
pub(crate) fn balance_record(
    caller: &Caller,
    change: &BalanceChange,
    now: Timestamp,
) -> Result<Change, AppError> {
    let account = change.balance.account_id.to_string();
    let after = to_json(&change.balance)?;
    let mut record = change_of(caller, now, &account, &after);
    for entry in &change.entries {
        let (event_type, resource, data) = match entry.kind {
            TransactionKind::Granted
            | TransactionKind::Adjusted
            | TransactionKind::InvoiceExcess
            | TransactionKind::CreditNote
                if entry.amount.is_positive() =>
            {
                let Some(grant) = entry
                    .grants
                    .first()
                    .and_then(|g| change.grants.iter().find(|c| c.id == g.grant_id))
                else {
                    continue;
                };
                (
                    EventType::CreditGranted,
                    grant.id.to_string(),
                    to_json(grant)?,
                )
            }
            TransactionKind::Applied => (
                EventType::CreditApplied,
                entry
                    .invoice_id
                    .map_or_else(|| account.clone(), |i| i.to_string()),
                to_json(entry)?,
            ),
            TransactionKind::Expired => {
                (EventType::CreditExpired, account.clone(), to_json(entry)?)
            }
            _ => continue,
        };
        record
            .events
            .push(event(caller, now, event_type, resource, data, None));
    }
    Ok(record)
}

fn change_of(caller: &Caller, now: Timestamp, account: &str, after: &serde_json::Value) -> Change {
    change(
        caller,
        now,
        ChangeSpec {
            entity_type: "balance",
            entity_id: account.to_owned(),
            action: AuditAction::Update,
            event_type: Some(EventType::BalanceUpdated),
            before: None,
            after,
        },
    )
}
