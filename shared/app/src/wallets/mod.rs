//! Prepaid wallets: creating them, topping them up (granted credits at once, paid credits
//! through a top-up invoice collected like any other), consuming them when invoices are
//! finalized (after the balance's credit), giving back on a void, and the wallet job of
//! the due index (expiry, scheduled top-ups, threshold rules checked after a consumption
//! and periodically against usage not invoiced yet).
//!
//! Every write is one [`WalletChange`] made from the wallet as stored and committed on
//! its version; an invoice's consumption commits inside the invoice's own write and a
//! purchase's arrival inside the write that marks its invoice paid, so credits are spent
//! once and arrive once.

use std::sync::Arc;

use billing_domain::billing::invoice::{DraftFacts, Invoice};
use billing_domain::billing::invoice_draft::{
    build_invoice, CreditInput, InvoiceInput, LineInput, LineSource,
};
use billing_domain::billing::subscription::{BillingReason, CollectionMethod};
use billing_domain::customers::access::Permission;
use billing_domain::customers::account::Account;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::error::{ErrorCode, ValidationError};
use billing_domain::kernel::ids::{AccountId, InvoiceId, TenantId, WalletId};
use billing_domain::kernel::money::MinorUnits;
use billing_domain::wallets::wallet::{
    NewRule, NewWallet, Purchase, Wallet, WalletChange, WalletError, WalletSignal,
    WalletTransaction,
};
use jiff::Timestamp;
use rust_decimal::Decimal;

use crate::collection::{first_attempt, CollectionService};
use crate::kernel::{
    change, event, new_ulid, system_caller, to_json, until_committed, AppError, Caller, ChangeSpec,
    Clocks,
};
use crate::ports::{
    AccountStore, Change, InvoiceStore, InvoiceWrite, Page, PageRequest, StoreError,
    TestClockStore, WalletSettlement, WalletStore,
};
use crate::usage::UsageService;

/// What the wallets service reads and writes.
pub trait WalletsPorts: WalletStore + AccountStore + InvoiceStore + TestClockStore {}

impl<T> WalletsPorts for T where T: WalletStore + AccountStore + InvoiceStore + TestClockStore {}

/// The wallets use cases. Calls collection (to release a top-up invoice's first payment
/// attempt) and usage (the usage not yet invoiced, for the ongoing balance).
#[derive(Clone)]
pub struct WalletsService {
    store: Arc<dyn WalletsPorts>,
    clocks: Clocks,
    collection: CollectionService,
    usage: UsageService,
}

/// A wallet as asked for through the API.
#[derive(Debug, Clone)]
pub struct CreateWallet {
    pub account: AccountId,
    /// Defaults to the account's currency.
    pub currency: Option<Currency>,
    pub name: Option<String>,
    pub rate_amount: Decimal,
    pub granted_credits: Decimal,
    pub paid_credits: Decimal,
    pub expires_at: Option<Timestamp>,
    pub rules: Vec<NewRule>,
}

/// A wallet with its balances in credits, its ongoing balance and one page of its
/// transactions.
#[derive(Debug, Clone)]
pub struct WalletView {
    pub wallet: Wallet,
    /// The balance less the usage of current periods not invoiced yet, minor units.
    pub ongoing_balance: i64,
    pub transactions: Page<WalletTransaction>,
}

impl WalletsService {
    pub(crate) fn new(
        store: Arc<dyn WalletsPorts>,
        clocks: Clocks,
        collection: CollectionService,
        usage: UsageService,
    ) -> Self {
        Self {
            store,
            clocks,
            collection,
            usage,
        }
    }

    /// Creates a wallet: granted credits at once; paid credits through a top-up invoice,
    /// finalized and collected now, whose credits arrive when it is paid.
    pub async fn create_wallet(
        &self,
        caller: &Caller,
        req: CreateWallet,
    ) -> Result<Wallet, AppError> {
        caller.require(Permission::WriteBilling)?;
        let account = self
            .store
            .get_account(caller.tenant_id, req.account)
            .await?
            .filter(|a| a.deleted_at.is_none())
            .ok_or_else(|| {
                AppError::Invalid(ValidationError::new(
                    ErrorCode::UnknownAccount,
                    "account",
                    format!("no such account: {}", req.account),
                ))
            })?;
        let now = self
            .clocks
            .now_for(caller.tenant_id, account.test_clock)
            .await?;
        let invoice_id = InvoiceId::from_ulid(new_ulid());
        let change = Wallet::open(
            NewWallet {
                id: WalletId::from_ulid(new_ulid()),
                account_id: account.id,
                currency: req.currency.unwrap_or(account.currency),
                name: req.name,
                rate_amount: req.rate_amount,
                granted_credits: req.granted_credits,
                paid: purchase(invoice_id, req.paid_credits),
                expires_at: req.expires_at,
                rules: req.rules,
                test_clock: account.test_clock,
            },
            now,
            &mut new_ulid,
        )?;
        let wallet = change.wallet.clone();
        let (account, change) = (&account, &change);
        until_committed(
            || async move {
                // Only the top-up invoice's number can have moved: take the next one.
                match self.commit(caller, account, change.clone(), now).await {
                    Ok(()) => Ok(Some(())),
                    Err(StoreError::VersionConflict { .. }) => Ok(None),
                    Err(other) => Err(other.into()),
                }
            },
            busy,
        )
        .await?;
        Ok(wallet)
    }

    /// Adds credits to a wallet: `granted` at once, `paid` through a top-up invoice.
    pub async fn top_up(
        &self,
        caller: &Caller,
        id: WalletId,
        granted: Decimal,
        paid: Decimal,
    ) -> Result<Wallet, AppError> {
        caller.require(Permission::WriteBilling)?;
        let tenant = caller.tenant_id;
        let invoice_id = InvoiceId::from_ulid(new_ulid());
        until_committed(
            || async move {
                let wallet = self.wallet(tenant, id).await?;
                let account = self.account_of(tenant, &wallet).await?;
                let now = self.clocks.now_for(tenant, wallet.test_clock).await?;
                let change = wallet
                    .top_up(granted, purchase(invoice_id, paid), now, &mut new_ulid)
                    .map_err(wallet_error)?;
                let after = change.wallet.clone();
                match self.commit(caller, &account, change, now).await {
                    Ok(()) => Ok(Some(after)),
                    Err(StoreError::VersionConflict { .. }) => Ok(None),
                    Err(other) => Err(other.into()),
                }
            },
            busy,
        )
        .await
    }

    /// A wallet with its ongoing balance and one page of its transactions, newest first.
    pub async fn get_wallet(
        &self,
        caller: &Caller,
        id: WalletId,
        page: &PageRequest,
    ) -> Result<WalletView, AppError> {
        caller.require(Permission::Read)?;
        let wallet = self.wallet(caller.tenant_id, id).await?;
        let unbilled = self.unbilled(caller.tenant_id, &wallet).await?;
        let transactions = self
            .store
            .list_wallet_transactions(caller.tenant_id, id, page)
            .await?;
        Ok(WalletView {
            ongoing_balance: wallet.ongoing_balance(unbilled),
            wallet,
            transactions,
        })
    }

    /// The account's wallets, newest first.
    pub async fn list_wallets(
        &self,
        caller: &Caller,
        account: AccountId,
        page: &PageRequest,
    ) -> Result<Page<Wallet>, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_account(caller.tenant_id, account)
            .await?
            .ok_or_else(|| AppError::not_found("account", account))?;
        Ok(self
            .store
            .list_wallets(caller.tenant_id, account, page)
            .await?)
    }

    /// The account's active wallets in the invoice's currency consume what `invoice` (a
    /// draft about to be numbered) still owes after discounts, tax and balance credit,
    /// oldest wallet first. `None` when none does (or it is a top-up invoice itself). The
    /// caller writes the settlement with the invoice.
    pub async fn consume(
        &self,
        tenant: TenantId,
        invoice: &Invoice,
        livemode: bool,
    ) -> Result<Option<(Invoice, WalletSettlement)>, AppError> {
        if !invoice.amount_due.is_positive() || invoice.billing_reason == BillingReason::WalletTopUp
        {
            return Ok(None);
        }
        let wallets = self
            .store
            .active_wallets(tenant, invoice.account_id)
            .await?;
        let now = self.clocks.now_for(tenant, invoice.test_clock).await?;
        let mut current = invoice.clone();
        let mut changes = Vec::new();
        for wallet in wallets.iter().filter(|w| w.currency == invoice.currency) {
            if let Some((next, change)) = wallet.consume(&current, now, &mut new_ulid) {
                current = next;
                changes.push(change);
            }
        }
        if changes.is_empty() {
            return Ok(None);
        }
        // One version further however many wallets it took.
        current.version = invoice.version + 1;
        let record = settlement_record(&system_caller(tenant, livemode), &changes, now)?;
        Ok(Some((current, WalletSettlement { changes, record })))
    }

    /// The account's wallets in `currency` still usable at `at`, in the order an invoice
    /// consumes them, with their balances (what a preview shows them paying).
    pub async fn preview_wallets(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Currency,
        at: Timestamp,
    ) -> Result<Vec<CreditInput>, AppError> {
        Ok(self
            .store
            .active_wallets(tenant, account)
            .await?
            .into_iter()
            .filter(|w| w.currency == currency && w.usable(at))
            .map(|w| CreditInput {
                id: w.id.to_string(),
                amount: w.balance.get(),
            })
            .collect())
    }

    /// Which of `wanted` (accounts and currencies of a finalizer's page of drafts that owe
    /// something) have wallets: one batched read; the others are not looked at further.
    pub async fn holders(
        &self,
        tenant: TenantId,
        wanted: &[(AccountId, Currency)],
    ) -> Result<Vec<(AccountId, Currency)>, AppError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.store.wallet_holders(tenant, wanted).await?)
    }

    /// What voiding `invoice` gives back to the wallets it consumed, written with the void.
    pub async fn restoration(
        &self,
        tenant: TenantId,
        invoice: &Invoice,
        livemode: bool,
    ) -> Result<Option<WalletSettlement>, AppError> {
        if invoice.wallets_applied.is_empty() {
            return Ok(None);
        }
        let now = self.clocks.now_for(tenant, invoice.test_clock).await?;
        let mut changes = Vec::new();
        let mut seen = Vec::new();
        for applied in &invoice.wallets_applied {
            if seen.contains(&applied.wallet_id) {
                continue;
            }
            seen.push(applied.wallet_id);
            let wallet = self.wallet(tenant, applied.wallet_id).await?;
            changes.extend(wallet.restore(invoice, now, &mut new_ulid));
        }
        if changes.is_empty() {
            return Ok(None);
        }
        let record = settlement_record(&system_caller(tenant, livemode), &changes, now)?;
        Ok(Some(WalletSettlement { changes, record }))
    }

    /// The wallet job of the due index at `at`: the expiry, a scheduled top-up, or the
    /// threshold rules (after a consumption, or the periodic check that sees usage not
    /// invoiced yet). Safe to run twice: each writes on the wallet's version and a second
    /// run finds nothing due.
    pub async fn run_wallet_job(
        &self,
        tenant: TenantId,
        id: WalletId,
        at: Timestamp,
    ) -> Result<(), AppError> {
        until_committed(
            || async move {
                let Some(wallet) = self.store.get_wallet(tenant, id).await? else {
                    return Ok(Some(()));
                };
                let Some(account) = self.store.get_account(tenant, wallet.account_id).await? else {
                    return Ok(Some(()));
                };
                let caller = system_caller(tenant, true);
                let change = match wallet.expire(at, &mut new_ulid) {
                    Some(expired) => Some(expired),
                    None => {
                        let ongoing = if wallet.has_threshold_rules() {
                            wallet.ongoing_balance(self.unbilled(tenant, &wallet).await?)
                        } else {
                            wallet.balance.get()
                        };
                        let invoice_id = InvoiceId::from_ulid(new_ulid());
                        wallet.run_rules(ongoing, at, &mut || invoice_id, &mut new_ulid)
                    }
                };
                let Some(change) = change else {
                    return Ok(Some(()));
                };
                match self.commit(&caller, &account, change, at).await {
                    Ok(()) => Ok(Some(())),
                    Err(StoreError::VersionConflict { .. }) => Ok(None),
                    Err(other) => Err(other.into()),
                }
            },
            busy,
        )
        .await
    }

    /// Runs the wallet jobs that a consumption just made due (the threshold rules), right
    /// after the invoice's write; the due index runs any this misses. Failures are only
    /// logged.
    pub async fn after_consumption(&self, tenant: TenantId, invoice: &Invoice) {
        for applied in &invoice.wallets_applied {
            let at = match self.clocks.now_for(tenant, invoice.test_clock).await {
                Ok(at) => at,
                Err(err) => {
                    tracing::warn!(%err, "wallet rules left to the due index");
                    return;
                }
            };
            if let Err(err) = self.run_wallet_job(tenant, applied.wallet_id, at).await {
                tracing::warn!(%err, wallet = %applied.wallet_id, "wallet rules left to the due index");
            }
        }
    }

    /// Writes `change`: with its top-up invoice (finalized now, first attempt released
    /// after the commit) when it buys credits, on its own otherwise.
    async fn commit(
        &self,
        caller: &Caller,
        account: &Account,
        change: WalletChange,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let tenant = caller.tenant_id;
        let record = settlement_record(caller, std::slice::from_ref(&change), now)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let Some(bought) = change.purchase().cloned() else {
            return self.store.save_wallet(tenant, &change, &record).await;
        };
        let write = self
            .top_up_invoice(caller, account, &change.wallet, &bought, now)
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let write = InvoiceWrite {
            wallets: Some(Box::new(WalletSettlement {
                changes: vec![change],
                record,
            })),
            ..write
        };
        let data = to_json(&write.invoice).map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut invoice_change = change_of_invoice(caller, now, &write.invoice, &data);
        invoice_change.events.push(event(
            caller,
            now,
            EventType::InvoiceFinalized,
            write.invoice.id.to_string(),
            data,
            None,
        ));
        self.store
            .insert_invoice(tenant, &write, &invoice_change)
            .await?;
        self.collection
            .release_invoice_payment(tenant, Some(&write), now)
            .await;
        Ok(())
    }

    /// The invoice selling `bought`: one line, untaxed (the credits are taxed when the
    /// invoices they pay are), numbered now and charged to the account's default card.
    async fn top_up_invoice(
        &self,
        caller: &Caller,
        account: &Account,
        wallet: &Wallet,
        bought: &WalletTransaction,
        now: Timestamp,
    ) -> Result<InvoiceWrite, AppError> {
        let built = build_invoice(&InvoiceInput {
            currency: wallet.currency,
            lines: vec![LineInput {
                id: Some(wallet.id.to_string()),
                description: format!("Prepaid credits: {} credits", bought.credits.normalize()),
                period: None,
                source: LineSource::Fixed {
                    amount: bought.amount.get(),
                    quantity: None,
                },
                tax_rates: Vec::new(),
                tax_behavior: None,
                discountable: false,
            }],
            discounts: Vec::new(),
            credits: Vec::new(),
            minimum_commitment: None,
        })
        .map_err(|e| AppError::Internal(e.to_string()))?;
        let invoice_id = bought
            .invoice_id
            .ok_or_else(|| AppError::Internal("a purchase without its invoice".into()))?;
        let draft = Invoice::draft(
            DraftFacts {
                id: invoice_id,
                account_id: account.id,
                subscription_id: None,
                test_clock: account.test_clock,
                billing_reason: BillingReason::WalletTopUp,
                period: None,
                collection_method: CollectionMethod::ChargeAutomatically,
            },
            built,
            now,
        );
        let sequence = self.store.next_invoice_number(caller.tenant_id).await?;
        let mut invoice = draft.finalize(
            billing_domain::billing::invoice::format_number(&sequence.prefix, sequence.number),
            None,
            now,
        )?;
        invoice.billing_details = Some(billing_domain::customers::erasure::BillingDetails::of(
            account,
        ));
        let payment = first_attempt(&invoice, caller.livemode, now);
        Ok(InvoiceWrite {
            invoice,
            number: Some(sequence.number),
            payment,
            pending: None,
            balance: None,
            wallets: None,
            account_discounts: None,
        })
    }

    async fn wallet(&self, tenant: TenantId, id: WalletId) -> Result<Wallet, AppError> {
        self.store
            .get_wallet(tenant, id)
            .await?
            .ok_or_else(|| AppError::not_found("wallet", id))
    }

    async fn account_of(&self, tenant: TenantId, wallet: &Wallet) -> Result<Account, AppError> {
        self.store
            .get_account(tenant, wallet.account_id)
            .await?
            .ok_or_else(|| AppError::not_found("account", wallet.account_id))
    }

    /// The usage of the account's current periods in the wallet's currency not invoiced
    /// yet (untaxed).
    async fn unbilled(&self, tenant: TenantId, wallet: &Wallet) -> Result<MinorUnits, AppError> {
        self.usage
            .unbilled_usage(tenant, wallet.account_id, wallet.currency)
            .await
    }
}

/// When a paid invoice is a top-up invoice: its wallet's purchase arrives, written with
/// the payment (the invoice's paid transition makes it once). `None` for other invoices.
/// A function over the wallet store, not a service call: collection calls it.
pub(crate) async fn purchase_paid(
    store: &dyn WalletStore,
    tenant: TenantId,
    paid: &Invoice,
    livemode: bool,
    now: Timestamp,
) -> Result<Option<WalletSettlement>, AppError> {
    if paid.billing_reason != BillingReason::WalletTopUp {
        return Ok(None);
    }
    let Some(wallet_id) = paid
        .lines
        .first()
        .and_then(|l| l.id.as_deref())
        .and_then(|id| WalletId::parse(id, "line").ok())
    else {
        return Ok(None);
    };
    let Some(wallet) = store.get_wallet(tenant, wallet_id).await? else {
        return Ok(None);
    };
    let Some(change) = wallet.settle_purchase(paid.id, now, &mut new_ulid) else {
        return Ok(None);
    };
    let record = settlement_record(
        &system_caller(tenant, livemode),
        std::slice::from_ref(&change),
        now,
    )?;
    Ok(Some(WalletSettlement {
        changes: vec![change],
        record,
    }))
}

fn purchase(invoice_id: InvoiceId, credits: Decimal) -> Option<Purchase> {
    (!credits.is_zero()).then_some(Purchase {
        invoice_id,
        credits,
    })
}

fn busy() -> AppError {
    AppError::Conflict {
        code: ErrorCode::ConcurrentModification,
        message: "the wallet kept changing under this request; retry".into(),
        param: None,
    }
}

fn wallet_error(err: WalletError) -> AppError {
    match err {
        WalletError::Invalid(e) => AppError::Invalid(e),
        WalletError::Terminated => AppError::Conflict {
            code: ErrorCode::WalletTerminated,
            message: err.to_string(),
            param: None,
        },
    }
}

fn change_of_invoice(
    caller: &Caller,
    now: Timestamp,
    invoice: &Invoice,
    after: &serde_json::Value,
) -> Change {
    change(
        caller,
        now,
        ChangeSpec {
            entity_type: "invoice",
            entity_id: invoice.id.to_string(),
            action: AuditAction::Create,
            event_type: Some(EventType::InvoiceCreated),
            before: None,
            after,
        },
    )
}

/// The audit record and events of wallet changes: `wallet.created`, `wallet.topped_up`,
/// `wallet.low_balance`, `wallet.depleted`, as their signals say.
fn settlement_record(
    caller: &Caller,
    changes: &[WalletChange],
    now: Timestamp,
) -> Result<Change, AppError> {
    let first = changes
        .first()
        .ok_or_else(|| AppError::Internal("a settlement of no wallet".into()))?;
    let after = to_json(&first.wallet)?;
    let mut record = change(
        caller,
        now,
        ChangeSpec {
            entity_type: "wallet",
            entity_id: first.wallet.id.to_string(),
            action: if first.previous_version == 0 {
                AuditAction::Create
            } else {
                AuditAction::Update
            },
            event_type: None,
            before: None,
            after: &after,
        },
    );
    for change in changes {
        let wallet = to_json(&change.wallet)?;
        let id = change.wallet.id.to_string();
        for signal in &change.signals {
            let (event_type, data) = match signal {
                WalletSignal::Created => (EventType::WalletCreated, wallet.clone()),
                WalletSignal::ToppedUp(tx) => {
                    let Some(tx) = change.transactions.iter().find(|t| t.id == *tx) else {
                        continue;
                    };
                    (EventType::WalletToppedUp, to_json(tx)?)
                }
                WalletSignal::LowBalance => (EventType::WalletLowBalance, wallet.clone()),
                WalletSignal::Depleted => (EventType::WalletDepleted, wallet.clone()),
            };
            record
                .events
                .push(event(caller, now, event_type, id.clone(), data, None));
        }
    }
    Ok(record)
}
