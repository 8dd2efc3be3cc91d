//! The export of everything held about a customer (GDPR art. 15): the account, its cards,
//! subscriptions, invoices, credit notes, payments, balances and ledger, usage and the
//! audit trail about it. Each list is bounded to [`EXPORT_SECTION_LIMIT`] newest items
//! with `has_more` and a cursor for its list route, so one export is one bounded answer.

use billing_domain::billing::invoice::Invoice;
use billing_domain::billing::subscription::Subscription;
use billing_domain::collection::credit_note::CreditNote;
use billing_domain::collection::payment::Payment;
use billing_domain::credits::balance::{Balance, BalanceTransaction};
use billing_domain::customers::access::Permission;
use billing_domain::customers::account::Account;
use billing_domain::customers::payment_method::PaymentMethod;
use billing_domain::events::record::AuditRecord;
use billing_domain::kernel::ids::AccountId;
use jiff::Timestamp;
use serde::Serialize;

use super::RetentionService;
use crate::kernel::{AppError, Caller};
use crate::ports::{
    CreditNoteFilter, InvoiceFilter, Page, PageRequest, PaymentFilter, Rollup, SubscriptionFilter,
};

/// Most items of each list in one export.
pub const EXPORT_SECTION_LIMIT: usize = 100;

/// One list of an export: its newest items, and where its list route continues.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportSection<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

impl<T> ExportSection<T> {
    fn of(page: Page<T>, id: impl Fn(&T) -> String) -> Self {
        Self {
            next_cursor: page.next_cursor(id),
            has_more: page.has_more,
            data: page.items,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountExport {
    pub object: &'static str,
    pub exported_at: Timestamp,
    pub account: Account,
    pub payment_methods: Vec<PaymentMethod>,
    pub subscriptions: ExportSection<Subscription>,
    pub invoices: ExportSection<Invoice>,
    pub credit_notes: ExportSection<CreditNote>,
    pub payments: ExportSection<Payment>,
    pub balances: Vec<Balance>,
    pub balance_transactions: ExportSection<BalanceTransaction>,
    /// The usage of each exported subscription, by period and metric.
    pub usage: Vec<Rollup>,
    pub audit: ExportSection<AuditRecord>,
}

impl RetentionService {
    pub async fn export_account(
        &self,
        caller: &Caller,
        id: AccountId,
    ) -> Result<AccountExport, AppError> {
        caller.require(Permission::Read)?;
        let tenant = caller.tenant_id;
        let account = self
            .store
            .get_account(tenant, id)
            .await?
            .ok_or_else(|| AppError::not_found("account", id))?;
        let page = PageRequest::first(EXPORT_SECTION_LIMIT);
        let subscriptions = self
            .store
            .list_subscriptions(
                tenant,
                &SubscriptionFilter {
                    account: Some(id),
                    ..Default::default()
                },
                &page,
            )
            .await?;
        let now = self.clocks.now_for(tenant, account.test_clock).await?;
        let mut usage = Vec::new();
        for sub in &subscriptions.items {
            usage.extend(
                self.store
                    .list_rollups(tenant, sub.id, sub.created_at, now)
                    .await?,
            );
        }
        let invoices = self
            .store
            .list_invoices(
                tenant,
                &InvoiceFilter {
                    account: Some(id),
                    ..Default::default()
                },
                &page,
            )
            .await?;
        let credit_notes = self
            .store
            .list_credit_notes(
                tenant,
                &CreditNoteFilter {
                    account: Some(id),
                    invoice: None,
                },
                &page,
            )
            .await?;
        let payments = self
            .store
            .list_payments(
                tenant,
                &PaymentFilter {
                    account: Some(id),
                    ..Default::default()
                },
                &page,
            )
            .await?;
        let ledger = self
            .store
            .list_balance_transactions(tenant, id, None, &page)
            .await?;
        let audit = self
            .store
            .list_audit(tenant, Some(&id.to_string()), &page)
            .await?;
        Ok(AccountExport {
            object: "account_export",
            exported_at: self.clocks.now(),
            payment_methods: self
                .store
                .get_payment_profile(tenant, id)
                .await?
                .map(|p| p.methods)
                .unwrap_or_default(),
            balances: self.store.list_balances(tenant, id).await?,
            subscriptions: ExportSection::of(subscriptions, |s| s.id.to_string()),
            invoices: ExportSection::of(invoices, |i| i.id.to_string()),
            credit_notes: ExportSection::of(credit_notes, |c| c.id.to_string()),
            payments: ExportSection::of(payments, |p| p.id.to_string()),
            balance_transactions: ExportSection::of(ledger, |t| t.id.to_string()),
            audit: ExportSection::of(audit, |a| a.id.to_string()),
            usage,
            account,
        })
    }
}
