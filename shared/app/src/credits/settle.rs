//! Invoices against the balance. Credit is applied when an invoice's amount is fixed for
//! good, just before it is numbered: the finalizer settles each draft in a write of its own
//! (the draft and the balance, both version-checked) before numbering the page, and a
//! step that numbers its invoice at once (a subscription's first invoice, a cancellation,
//! a plan change) carries the settlement in its own transaction. One DynamoDB transaction
//! cannot touch an item twice, and bulk numbering puts up to 99 invoices, possibly of one
//! account, in one: so the balance is never part of the numbering write.

use billing_domain::billing::invoice::Invoice;
use billing_domain::billing::invoice_draft::CreditInput;
use billing_domain::billing::subscription::BillingReason;
use billing_domain::credits::balance::Ledger;
use billing_domain::events::record::AuditAction;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{AccountId, TenantId};
use billing_domain::kernel::money::MinorUnits;
use jiff::Timestamp;

use super::{balance_record, CreditsService};
use crate::kernel::{
    change, new_ulid, system_caller, to_json, AppError, ChangeSpec, WRITE_ATTEMPTS,
};
use crate::ports::{BalanceSettlement, InvoiceWrite, PendingInvoice, StoreError, WalletSettlement};

/// A draft settled against its account's balance and then its prepaid wallets, ready to
/// be written.
pub struct Settled {
    pub invoice: Invoice,
    pub balance: Option<Box<BalanceSettlement>>,
    pub wallets: Option<Box<WalletSettlement>>,
}

impl CreditsService {
    /// Settles `draft` against its account's balance as stored now (available credit
    /// applied, at most what it owes; a negative total moved into the balance), then lets
    /// the account's prepaid wallets consume what it still owes: wallets come after
    /// discounts, tax and credit, as Lago applies prepaid credits. `None` when there is
    /// nothing to settle. The caller writes all of it together.
    pub async fn settle(
        &self,
        tenant: TenantId,
        draft: &Invoice,
        livemode: bool,
    ) -> Result<Option<Settled>, AppError> {
        let balance = self.settle_balance(tenant, draft, livemode).await?;
        let invoice = balance.as_ref().map_or(draft, |(i, _)| i);
        let wallets = self.wallets.consume(tenant, invoice, livemode).await?;
        Ok(match (balance, wallets) {
            (None, None) => None,
            (balance, Some((invoice, wallets))) => Some(Settled {
                invoice,
                balance: balance.map(|(_, b)| Box::new(b)),
                wallets: Some(Box::new(wallets)),
            }),
            (Some((invoice, balance)), None) => Some(Settled {
                invoice,
                balance: Some(Box::new(balance)),
                wallets: None,
            }),
        })
    }

    /// The balance's part of [`CreditsService::settle`].
    async fn settle_balance(
        &self,
        tenant: TenantId,
        draft: &Invoice,
        livemode: bool,
    ) -> Result<Option<(Invoice, BalanceSettlement)>, AppError> {
        let needs = draft.total.get() < 0 || draft.amount_due.is_positive();
        if !needs || draft.billing_reason == BillingReason::WalletTopUp {
            return Ok(None);
        }
        let balance = self
            .store
            .get_balance(tenant, draft.account_id, draft.currency)
            .await?;
        if balance.is_none() && draft.total.get() >= 0 {
            return Ok(None);
        }
        let now = self.clocks.now_for(tenant, draft.test_clock).await?;
        let ledger = match balance {
            Some(balance) => self.ledger_of(tenant, balance, None).await?,
            None => Ledger::empty(draft.account_id, draft.currency, draft.test_clock, now),
        };
        let Some((invoice, change)) = ledger.settle_invoice(draft, now, &mut new_ulid) else {
            return Ok(None);
        };
        let record = balance_record(&system_caller(tenant, livemode), &change, now)?;
        Ok(Some((invoice, BalanceSettlement { change, record })))
    }

    /// What voiding `invoice` gives back to the prepaid wallets it consumed; the caller
    /// writes it with the void.
    pub async fn wallet_restoration(
        &self,
        tenant: TenantId,
        invoice: &Invoice,
        livemode: bool,
    ) -> Result<Option<WalletSettlement>, AppError> {
        self.wallets.restoration(tenant, invoice, livemode).await
    }

    /// A wallet's job of the due index (see
    /// [`crate::wallets::WalletsService::run_wallet_job`]).
    pub async fn run_wallet_job(
        &self,
        tenant: TenantId,
        wallet: billing_domain::kernel::ids::WalletId,
        at: Timestamp,
    ) -> Result<(), AppError> {
        self.wallets.run_wallet_job(tenant, wallet, at).await
    }

    /// Runs the wallet rules an invoice's consumption made due, after its write.
    pub async fn after_consumption(&self, tenant: TenantId, invoice: &Invoice) {
        self.wallets.after_consumption(tenant, invoice).await;
    }

    /// The account's credit an invoice in `currency` made at `at` would spend, in the
    /// order it would spend it: the credits of a preview.
    pub async fn preview_credits(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Currency,
        at: Timestamp,
    ) -> Result<Vec<CreditInput>, AppError> {
        let Some(ledger) = self.ledger(tenant, account, currency, None).await? else {
            return Ok(Vec::new());
        };
        Ok(ledger
            .spending_order(at)
            .into_iter()
            .map(|g| CreditInput {
                id: g.id.to_string(),
                amount: g.remaining.get(),
            })
            .collect())
    }

    /// The account's wallets an invoice in `currency` made at `at` would consume, in that
    /// order, with their balances: the wallets of a preview.
    pub async fn preview_wallets(
        &self,
        tenant: TenantId,
        account: AccountId,
        currency: Currency,
        at: Timestamp,
    ) -> Result<Vec<CreditInput>, AppError> {
        self.wallets
            .preview_wallets(tenant, account, currency, at)
            .await
    }

    /// Settles the drafts of a finalizer's page before they are numbered, one write each;
    /// returns them as now stored, leaving out any that another writer took off the page.
    pub async fn settle_drafts(
        &self,
        tenant: TenantId,
        drafts: Vec<PendingInvoice>,
    ) -> Result<Vec<PendingInvoice>, AppError> {
        let wanted: Vec<(AccountId, Currency)> = drafts
            .iter()
            .filter(|d| d.invoice.amount_due.is_positive())
            .map(|d| (d.invoice.account_id, d.invoice.currency))
            .collect();
        let balances = async {
            if wanted.is_empty() {
                return Ok(Vec::new());
            }
            self.store.get_balances(tenant, &wanted).await
        };
        let (balances, with_wallets) =
            tokio::join!(balances, self.wallets.holders(tenant, &wanted));
        let with_balance: Vec<(AccountId, Currency)> = balances?
            .into_iter()
            .filter(|b| b.available.is_positive())
            .map(|b| (b.account_id, b.currency))
            .collect();
        let with_wallets = with_wallets?;
        let mut settled = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let invoice = &draft.invoice;
            let worth_a_look = invoice.total.get() < 0
                || with_balance.contains(&(invoice.account_id, invoice.currency))
                || with_wallets.contains(&(invoice.account_id, invoice.currency));
            if !worth_a_look {
                settled.push(draft);
                continue;
            }
            if let Some(now_stored) = self.settle_draft(tenant, draft).await? {
                settled.push(now_stored);
            }
        }
        Ok(settled)
    }

    /// One draft settled and written; re-read after a lost race. `None` when the draft is
    /// no longer waiting for its number.
    async fn settle_draft(
        &self,
        tenant: TenantId,
        mut draft: PendingInvoice,
    ) -> Result<Option<PendingInvoice>, AppError> {
        for _ in 0..WRITE_ATTEMPTS {
            let livemode = draft.finalization.livemode;
            let Some(settled) = self.settle(tenant, &draft.invoice, livemode).await? else {
                return Ok(Some(draft));
            };
            let caller = system_caller(tenant, livemode);
            let before = to_json(&draft.invoice)?;
            let after = to_json(&settled.invoice)?;
            let now = self
                .clocks
                .now_for(tenant, draft.invoice.test_clock)
                .await?;
            let record = change(
                &caller,
                now,
                ChangeSpec {
                    entity_type: "invoice",
                    entity_id: draft.invoice.id.to_string(),
                    action: AuditAction::Update,
                    event_type: None,
                    before: Some(&before),
                    after: &after,
                },
            );
            let write = InvoiceWrite {
                invoice: settled.invoice,
                number: None,
                payment: None,
                pending: Some(draft.finalization),
                balance: settled.balance,
                wallets: settled.wallets,
                account_discounts: None,
            };
            match self
                .store
                .save_invoice(tenant, &draft.invoice, &write, &record)
                .await
            {
                Ok(()) => {
                    self.after_consumption(tenant, &write.invoice).await;
                    draft.invoice = write.invoice;
                    return Ok(Some(draft));
                }
                Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => {
                    match self.store.get_invoice(tenant, draft.invoice.id).await? {
                        Some(current) if current.status == draft.invoice.status => {
                            draft.invoice = current;
                        }
                        _ => return Ok(None),
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(AppError::Unavailable(
            "the balance kept changing while settling a draft; the finalize job comes back".into(),
        ))
    }

    /// What voiding `invoice` gives the balance: the credit it spent, back to the grants
    /// it came from, and `to_balance` (its credit note, when the customer keeps it as
    /// balance). `None` when neither. The caller writes it with the void.
    pub async fn void_settlement(
        &self,
        tenant: TenantId,
        invoice: &Invoice,
        to_balance: MinorUnits,
        livemode: bool,
    ) -> Result<Option<BalanceSettlement>, AppError> {
        if invoice.credits_applied.is_empty() && !to_balance.is_positive() {
            return Ok(None);
        }
        let spent: Vec<_> = invoice.credits_applied.iter().map(|c| c.grant_id).collect();
        let now = self.clocks.now_for(tenant, invoice.test_clock).await?;
        let ledger = match self
            .ledger(tenant, invoice.account_id, invoice.currency, Some(&spent))
            .await?
        {
            Some(ledger) => ledger,
            None if spent.is_empty() => Ledger::empty(
                invoice.account_id,
                invoice.currency,
                invoice.test_clock,
                now,
            ),
            None => {
                return Err(AppError::Internal(format!(
                    "invoice {} spent credit of no balance",
                    invoice.id
                )))
            }
        };
        let Some(change) = ledger.void_invoice(invoice, to_balance, now, &mut new_ulid) else {
            return Ok(None);
        };
        let record = balance_record(&system_caller(tenant, livemode), &change, now)?;
        Ok(Some(BalanceSettlement { change, record }))
    }
}
