//! Invoices: reading them, one-off invoices with manual lines, finalizing drafts under the
//! tenant's gapless numbers, voiding, and previews that write nothing.

use std::collections::BTreeMap;

use billing_domain::billing::invoice::{DraftFacts, Invoice, InvoiceTransitionError};
use billing_domain::billing::invoice_draft::{
    build_invoice, InvoiceDraft, InvoiceInput, LineInput,
};
use billing_domain::billing::periods::BillingTiming;
use billing_domain::billing::subscription::{
    first_paid_period, BillingReason, CollectionMethod, NewSubscription, Subscription,
    SubscriptionTerms,
};
use billing_domain::catalog::charges::Usage;
use billing_domain::catalog::plan::{NewPlan, Plan, PlanVersion};
use billing_domain::collection::credit_note::CreditNote;
use billing_domain::customers::access::Permission;
use billing_domain::customers::account::CustomerDetails;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::error::ValidationError;
use billing_domain::kernel::ids::{
    AccountId, CreditNoteId, InvoiceId, PlanId, SubscriptionId, TenantId,
};
use billing_domain::kernel::metadata::Metadata;
use billing_domain::kernel::money::MinorUnits;
use billing_domain::tax::resolve::InvoiceTax;
use jiff::Timestamp;

use super::BillingService;
use crate::collection::collection_change;
use crate::kernel::{change, new_ulid, to_json, AppError, Caller, ChangeSpec, WRITE_ATTEMPTS};
use crate::ports::{CollectionWrite, InvoiceFilter, InvoiceWrite, Page, PageRequest, StoreError};
use crate::tax::TaxCustomer;

impl From<InvoiceTransitionError> for AppError {
    fn from(err: InvoiceTransitionError) -> Self {
        match err {
            InvoiceTransitionError::Invalid(v) => AppError::Invalid(v),
            InvoiceTransitionError::InvalidTransition { current, action } => AppError::Conflict {
                code: ErrorCode::InvalidTransition,
                message: format!("a {current} invoice cannot {action}"),
                param: None,
            },
        }
    }
}

fn build(input: &InvoiceInput) -> Result<InvoiceDraft, AppError> {
    build_invoice(input).map_err(|e| match e {
        billing_domain::billing::invoice_draft::InvoiceError::Invalid(v) => {
            AppError::Invalid(v.within("lines"))
        }
        other => AppError::Invalid(billing_domain::kernel::error::ValidationError::new(
            ErrorCode::InvalidInvoice,
            "lines",
            other.to_string(),
        )),
    })
}

/// What a preview prices: the next invoice of a subscription (optionally after moving to
/// another plan/quantity), or a hypothetical set of lines.
#[derive(Debug, Clone, PartialEq)]
pub enum PreviewSource {
    Subscription {
        id: SubscriptionId,
        terms: Option<(Option<billing_domain::kernel::ids::PlanId>, Option<u64>)>,
    },
    /// Lines taxed as `customer`'s invoice would be.
    Lines {
        input: InvoiceInput,
        customer: PreviewCustomer,
    },
    /// The first paid period of a subscription that does not exist.
    Hypothetical(Box<HypotheticalSubscription>),
}

/// A subscription to price without creating it (nor its account or plan).
#[derive(Debug, Clone, PartialEq)]
pub struct HypotheticalSubscription {
    pub plan: HypotheticalPlan,
    pub currency: Currency,
    pub quantity: u64,
    /// Defaults to now.
    pub start: Option<Timestamp>,
    /// Defaults to the plan's trial.
    pub trial_days: Option<u32>,
    pub billing_anchor: Option<Timestamp>,
    /// IANA zone the periods are cut in; defaults to UTC.
    pub time_zone: Option<String>,
    /// Usage totals of the period, per metric code.
    pub usage: BTreeMap<String, Usage>,
    /// Whom it is taxed for.
    pub customer: PreviewCustomer,
}

/// Whom a preview without a subscription is taxed for: an account, or a customer's details
/// (nothing known: the seller's own jurisdiction, as for an account without an address).
#[derive(Debug, Clone, PartialEq)]
pub enum PreviewCustomer {
    Account(AccountId),
    Details(Box<CustomerDetails>),
}

impl Default for PreviewCustomer {
    fn default() -> Self {
        PreviewCustomer::Details(Box::default())
    }
}

impl PreviewCustomer {
    fn taxed(&self) -> TaxCustomer<'_> {
        match self {
            PreviewCustomer::Account(id) => TaxCustomer::Account(*id),
            PreviewCustomer::Details(details) => TaxCustomer::Details(details),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum HypotheticalPlan {
    Saved(PlanId),
    /// A plan as `POST /v1/plans` would take it, not saved.
    Inline(Box<NewPlan>),
}

impl BillingService {
    pub async fn get_invoice(&self, caller: &Caller, id: InvoiceId) -> Result<Invoice, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_invoice(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("invoice", id))
    }

    pub async fn list_invoices(
        &self,
        caller: &Caller,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> Result<Page<Invoice>, AppError> {
        caller.require(Permission::Read)?;
        let mut filter = filter.clone();
        if let (None, Some(sub)) = (filter.account, filter.subscription) {
            // Invoices are indexed by account: find the subscription's.
            filter.account = self
                .store
                .get_subscription(caller.tenant_id, sub)
                .await?
                .map(|s| s.account_id);
            if filter.account.is_none() {
                return Ok(Page::new(Vec::new(), false));
            }
        }
        Ok(self
            .store
            .list_invoices(caller.tenant_id, &filter, page)
            .await?)
    }

    /// A one-off invoice with manual lines, created as a draft.
    pub async fn create_manual_invoice(
        &self,
        caller: &Caller,
        account_id: AccountId,
        lines: Vec<LineInput>,
        collection_method: CollectionMethod,
    ) -> Result<Invoice, AppError> {
        caller.require(Permission::WriteBilling)?;
        let account = self
            .store
            .get_account(caller.tenant_id, account_id)
            .await?
            .filter(|a| a.deleted_at.is_none())
            .ok_or_else(|| unknown_account(account_id))?;
        if lines.is_empty() {
            return Err(AppError::Invalid(
                billing_domain::kernel::error::ValidationError::new(
                    ErrorCode::MissingLines,
                    "lines",
                    "an invoice needs at least one line",
                ),
            ));
        }
        let now = self
            .clocks
            .now_for(caller.tenant_id, account.test_clock)
            .await?;
        let tax = self
            .tax
            .invoice_tax(
                caller.tenant_id,
                TaxCustomer::Account(account_id),
                now,
                account.test_clock,
            )
            .await?;
        let mut lines = lines;
        tax.apply(&mut lines);
        let built = build(&InvoiceInput {
            currency: account.currency,
            lines,
            discounts: Vec::new(),
            credits: Vec::new(),
            minimum_commitment: None,
        })?;
        let invoice = Invoice::draft(
            DraftFacts {
                id: InvoiceId::from_ulid(new_ulid()),
                account_id,
                subscription_id: None,
                test_clock: account.test_clock,
                billing_reason: BillingReason::Manual,
                period: None,
                collection_method,
            },
            built,
            now,
        )
        .with_tax(&tax);
        let after = to_json(&invoice)?;
        let change = change(
            caller,
            now,
            ChangeSpec {
                entity_type: "invoice",
                entity_id: invoice.id.to_string(),
                action: AuditAction::Create,
                event_type: Some(EventType::InvoiceCreated),
                before: None,
                after: &after,
            },
        );
        let write = InvoiceWrite {
            invoice,
            number: None,
            payment: None,
            pending: None,
            balance: None,
            wallets: None,
            account_discounts: None,
        };
        self.store
            .insert_invoice(caller.tenant_id, &write, &change)
            .await?;
        Ok(write.invoice)
    }

    /// Opens a draft under the tenant's next number (gapless: the number and the invoice are
    /// written together or not at all).
    pub async fn finalize_invoice(
        &self,
        caller: &Caller,
        id: InvoiceId,
        days_until_due: Option<u32>,
    ) -> Result<Invoice, AppError> {
        caller.require(Permission::WriteBilling)?;
        if let Some(days) = days_until_due {
            billing_domain::kernel::time::days(days, "days_until_due")?;
        }
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.get_invoice(caller, id).await?;
            let now = self
                .clocks
                .now_for(caller.tenant_id, current.test_clock)
                .await?;
            let (settled, balance, wallets) = match self
                .credits
                .settle(caller.tenant_id, &current, caller.livemode)
                .await?
            {
                Some(settled) => (settled.invoice, settled.balance, settled.wallets),
                None => (current.clone(), None, None),
            };
            let sequence = self.store.next_invoice_number(caller.tenant_id).await?;
            let number = sequence.number;
            let account = self
                .store
                .get_account(caller.tenant_id, current.account_id)
                .await?;
            let (next, payment) = super::subscriptions::open_draft(
                &settled,
                account.as_ref(),
                &sequence.prefix,
                number,
                days_until_due,
                caller.livemode,
                now,
            )?;
            let write = InvoiceWrite {
                invoice: next,
                number: Some(number),
                payment,
                pending: None,
                balance,
                wallets,
                account_discounts: None,
            };
            let event =
                if write.invoice.status == billing_domain::billing::invoice::InvoiceStatus::Paid {
                    EventType::InvoicePaid
                } else {
                    EventType::InvoiceFinalized
                };
            match self
                .save_invoice(caller, &current, &write, event, now)
                .await
            {
                Err(AppError::Conflict {
                    code: ErrorCode::ConcurrentModification,
                    ..
                }) => continue,
                other => other?,
            }
            self.collection
                .release_invoice_payment(caller.tenant_id, Some(&write), now)
                .await;
            self.credits
                .after_consumption(caller.tenant_id, &write.invoice)
                .await;
            return Ok(write.invoice);
        }
        Err(AppError::Unavailable(
            "the invoice sequence is busy; retry".into(),
        ))
    }

    /// Voids an open invoice, or a paid one with `credit_to_balance`: what was paid comes
    /// back as a credit note, refunded by hand or, with `credit_to_balance`, added to the
    /// account's balance; credit it spent of the balance goes back to the balance. All in
    /// one write.
    pub async fn void_invoice(
        &self,
        caller: &Caller,
        id: InvoiceId,
        credit_to_balance: bool,
    ) -> Result<Invoice, AppError> {
        caller.require(Permission::WriteBilling)?;
        let current = self.get_invoice(caller, id).await?;
        let now = self
            .clocks
            .now_for(caller.tenant_id, current.test_clock)
            .await?;
        let next = current.void(now, credit_to_balance)?;
        let note = CreditNote::for_void(
            CreditNoteId::from_ulid(new_ulid()),
            &current,
            credit_to_balance,
            now,
        );
        let to_balance = note
            .as_ref()
            .filter(|n| n.credited_to_balance)
            .map_or(MinorUnits::ZERO, |n| n.amount);
        let balance = self
            .credits
            .void_settlement(caller.tenant_id, &current, to_balance, caller.livemode)
            .await?
            .map(Box::new);
        let wallets = self
            .credits
            .wallet_restoration(caller.tenant_id, &current, caller.livemode)
            .await?
            .map(Box::new);
        match note {
            None => {
                let write = InvoiceWrite {
                    invoice: next.clone(),
                    number: None,
                    payment: None,
                    pending: None,
                    balance,
                    wallets,
                    account_discounts: None,
                };
                self.save_invoice(caller, &current, &write, EventType::InvoiceVoided, now)
                    .await?;
            }
            Some(note) => {
                let write = CollectionWrite {
                    invoice: Some((current.version, next.clone())),
                    credit_note: Some(note),
                    balance,
                    wallets,
                    ..Default::default()
                };
                let change = collection_change(
                    caller,
                    &write,
                    &[EventType::InvoiceVoided, EventType::CreditNoteCreated],
                    true,
                    now,
                )?;
                match self
                    .store
                    .save_collection(caller.tenant_id, &write, &change)
                    .await
                {
                    Err(StoreError::VersionConflict { .. }) => {
                        return Err(AppError::Conflict {
                            code: ErrorCode::ConcurrentModification,
                            message: "the invoice changed meanwhile; retry".into(),
                            param: None,
                        })
                    }
                    other => other?,
                }
            }
        }
        // Dunning counts a voided invoice as settled.
        self.collection
            .invoice_settled(caller, next.account_id, next.id, now)
            .await?;
        Ok(next)
    }

    async fn save_invoice(
        &self,
        caller: &Caller,
        current: &Invoice,
        next: &InvoiceWrite,
        event_type: EventType,
        now: Timestamp,
    ) -> Result<(), AppError> {
        let (before, after) = (to_json(current)?, to_json(&next.invoice)?);
        let change = change(
            caller,
            now,
            ChangeSpec {
                entity_type: "invoice",
                entity_id: current.id.to_string(),
                action: AuditAction::Update,
                event_type: Some(event_type),
                before: Some(&before),
                after: &after,
            },
        );
        match self
            .store
            .save_invoice(caller.tenant_id, current, next, &change)
            .await
        {
            Err(StoreError::VersionConflict { .. }) => Err(AppError::Conflict {
                code: ErrorCode::ConcurrentModification,
                message: "the invoice changed meanwhile; retry".into(),
                param: None,
            }),
            other => Ok(other?),
        }
    }

    /// The invoice a subscription would get next (optionally after a plan or quantity
    /// change), or the invoice of hypothetical lines. Writes nothing.
    pub async fn preview_invoice(
        &self,
        caller: &Caller,
        source: PreviewSource,
    ) -> Result<(Option<Subscription>, InvoiceDraft), AppError> {
        caller.require(Permission::Read)?;
        match source {
            PreviewSource::Lines {
                mut input,
                customer,
            } => {
                let tenant = caller.tenant_id;
                let (at, test_clock, wallets) = match &customer {
                    PreviewCustomer::Account(id) => {
                        let account = self
                            .store
                            .get_account(tenant, *id)
                            .await?
                            .filter(|a| a.deleted_at.is_none())
                            .ok_or_else(|| unknown_account(*id))?;
                        let now = self.clocks.now_for(tenant, account.test_clock).await?;
                        // An invoice of these lines made for the account now would spend
                        // its balance (after any credits asked for) and then its wallets.
                        let credits = self
                            .credits
                            .preview_credits(tenant, *id, input.currency, now)
                            .await?;
                        input.credits.extend(credits);
                        let wallets = self
                            .credits
                            .preview_wallets(tenant, *id, input.currency, now)
                            .await?;
                        (now, account.test_clock, wallets)
                    }
                    PreviewCustomer::Details(_) => (self.clocks.now(), None, Vec::new()),
                };
                let tax = self
                    .tax
                    .invoice_tax(tenant, customer.taxed(), at, test_clock)
                    .await?;
                Ok((None, taxed(&tax, input)?.with_wallets(&wallets)))
            }
            PreviewSource::Hypothetical(input) => {
                Ok((None, self.preview_hypothetical(caller, *input).await?))
            }
            PreviewSource::Subscription { id, terms } => {
                let mut sub = self.get_subscription(caller, id).await?;
                let now = self
                    .clocks
                    .now_for(caller.tenant_id, sub.test_clock)
                    .await?;
                if let Some((plan, quantity)) = terms {
                    let new_terms = match plan {
                        Some(plan_id) if plan_id != sub.terms.plan_id => {
                            let account = self
                                .store
                                .get_account(caller.tenant_id, sub.account_id)
                                .await?
                                .ok_or_else(|| AppError::not_found("account", sub.account_id))?;
                            self.catalog
                                .subscription_terms(caller, account.currency, plan_id, now)
                                .await?
                                .0
                        }
                        _ => sub.terms.clone(),
                    };
                    let quantity = quantity.unwrap_or(sub.quantity);
                    sub = sub
                        .change(
                            new_terms,
                            quantity,
                            &billing_domain::billing::proration::ChangePolicy::default(),
                            false,
                            now,
                        )?
                        .next;
                }
                let (_, draft) = self.next_invoice(caller.tenant_id, &sub, None).await?;
                Ok((Some(sub), draft))
            }
        }
    }

    /// The next invoice `sub` gets and when, walking its lifecycle forward to the first step
    /// that bills (a trial warning bills nothing), with its usage so far and the credit its
    /// balance would give then. A renewal migrates as billing would, by the catalog as stored,
    /// or as `catalog` has it (a plan with versions not published yet: a simulation).
    pub(super) async fn next_invoice(
        &self,
        tenant: TenantId,
        sub: &Subscription,
        catalog: Option<&(Plan, Vec<PlanVersion>)>,
    ) -> Result<(Timestamp, InvoiceDraft), AppError> {
        let nothing = || AppError::Conflict {
            code: ErrorCode::NoUpcomingInvoice,
            message: "the subscription has nothing more to bill".into(),
            param: None,
        };
        let due = sub.due_at().ok_or_else(nothing)?;
        let mut current = sub.clone();
        for _ in 0..4 {
            let Some(at) = current.due_at() else { break };
            let at = at.max(due);
            let migration = match catalog {
                None => self.migration(tenant, &current, at).await?,
                Some((plan, versions))
                    if (current.renews_at(at) && current.scheduled_change.is_none())
                        || current.notice_due(at).is_some() =>
                {
                    self.catalog
                        .terms_after(tenant, &current, plan, versions, at)?
                }
                Some(_) => None,
            };
            let Some(mut step) = current.advance_migrating(at, migration)? else {
                break;
            };
            self.preview_usage(tenant, &current, &mut step).await?;
            if let Some(billing) = step.billing {
                // The subscription's discounts or its account's, as drafting takes them.
                let (discounts, _) = self.invoice_discounts(tenant, &step.next, &billing).await?;
                // The balance's credit as it would be spent when the invoice is made
                // (grants expired by then left out).
                let credits = self
                    .credits
                    .preview_credits(tenant, sub.account_id, sub.currency, at)
                    .await?;
                // Taxed as it would be when drafted.
                let tax = self
                    .tax
                    .invoice_tax(
                        tenant,
                        TaxCustomer::Account(sub.account_id),
                        at,
                        sub.test_clock,
                    )
                    .await?;
                // Then the wallets, as they stand, that would pay what is still due.
                let wallets = self
                    .credits
                    .preview_wallets(tenant, sub.account_id, sub.currency, at)
                    .await?;
                let draft = taxed(
                    &tax,
                    InvoiceInput {
                        currency: sub.currency,
                        lines: billing.lines,
                        discounts,
                        credits,
                        minimum_commitment: None,
                    },
                )?
                .with_wallets(&wallets);
                return Ok((at, draft));
            }
            current = step.next;
        }
        Err(nothing())
    }
}

impl BillingService {
    async fn preview_hypothetical(
        &self,
        caller: &Caller,
        input: HypotheticalSubscription,
    ) -> Result<InvoiceDraft, AppError> {
        let now = self.clocks.now();
        let start = billing_domain::kernel::time::supported(input.start.unwrap_or(now), "start")?;
        let (terms, plan_trial) = match input.plan {
            HypotheticalPlan::Saved(id) => {
                self.catalog
                    .subscription_terms(caller, input.currency, id, start)
                    .await?
            }
            HypotheticalPlan::Inline(mut plan) => {
                let prices = self
                    .catalog
                    .validate_charges(caller, std::mem::take(&mut plan.charges))
                    .await
                    .map_err(|e| match e {
                        AppError::Invalid(v) => AppError::Invalid(v.within("inline_plan")),
                        other => other,
                    })?;
                let (plan, version) =
                    Plan::create(PlanId::from_ulid(new_ulid()), *plan, prices, now)
                        .map_err(|e| AppError::Invalid(e.within("inline_plan")))?;
                let terms =
                    SubscriptionTerms::of(&plan, &version, input.currency).map_err(|e| {
                        AppError::Invalid(ValidationError::new(
                            ErrorCode::CurrencyNotOffered,
                            "currency",
                            e.to_string(),
                        ))
                    })?;
                (terms, plan.trial_days)
            }
        };
        let timing = terms.billing_timing;
        let plan_id = terms.plan_id;
        let billing = first_paid_period(
            NewSubscription {
                id: SubscriptionId::from_ulid(new_ulid()),
                account_id: AccountId::from_ulid(new_ulid()),
                test_clock: None,
                livemode: caller.livemode,
                currency: input.currency,
                time_zone: input.time_zone.unwrap_or_else(|| "UTC".into()),
                terms,
                quantity: input.quantity,
                trial_days: input.trial_days.unwrap_or(plan_trial),
                start,
                billing_anchor: input.billing_anchor,
                collection_method: CollectionMethod::ChargeAutomatically,
                days_until_due: None,
                max_pause_days: None,
                metadata: Metadata::default(),
                discounts: Vec::new(),
            },
            &input.usage,
        )?;
        // Taxed as of when the period is invoiced: its start in advance, its end in arrears.
        let at = match timing {
            BillingTiming::InAdvance => billing.period.start,
            BillingTiming::InArrears => billing.period.end,
        };
        let tax = self
            .tax
            .invoice_tax(caller.tenant_id, input.customer.taxed(), at, None)
            .await?;
        // For an account, its discounts, as its new subscription's first invoice takes them.
        let account_discounts = match &input.customer {
            PreviewCustomer::Account(id) => {
                self.coupons
                    .account_discounts_of(caller.tenant_id, *id)
                    .await?
            }
            PreviewCustomer::Details(_) => None,
        };
        let (discounts, _) = billing_domain::coupons::account::invoice_discounts(
            &billing,
            plan_id,
            input.currency,
            account_discounts.as_ref(),
        );
        taxed(
            &tax,
            InvoiceInput {
                currency: input.currency,
                lines: billing.lines,
                discounts,
                credits: Vec::new(),
                minimum_commitment: None,
            },
        )
    }
}

/// `input` built with `tax`'s rates on every line without its own, each line saying why.
fn taxed(tax: &InvoiceTax, mut input: InvoiceInput) -> Result<InvoiceDraft, AppError> {
    tax.apply(&mut input.lines);
    let mut draft = build(&input)?;
    tax.mark(&mut draft.lines);
    Ok(draft)
}

fn unknown_account(id: AccountId) -> AppError {
    AppError::Invalid(ValidationError::new(
        ErrorCode::UnknownAccount,
        "account",
        format!("no such account: {id}"),
    ))
}

impl BillingService {
    /// The prefix that invoice numbers are printed with (`INV` unless set).
    pub async fn invoice_prefix(&self, caller: &Caller) -> Result<String, AppError> {
        caller.require(Permission::Read)?;
        Ok(self
            .store
            .next_invoice_number(caller.tenant_id)
            .await?
            .prefix)
    }

    /// Sets the prefix of invoice numbers assigned from now on; the sequence goes on, so
    /// numbers stay gapless across the change.
    pub async fn set_invoice_prefix(
        &self,
        caller: &Caller,
        prefix: &str,
    ) -> Result<String, AppError> {
        caller.require(Permission::WriteBilling)?;
        let valid = !prefix.is_empty()
            && prefix.len() <= 12
            && prefix
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !valid {
            return Err(AppError::Invalid(
                billing_domain::kernel::error::ValidationError::new(
                    ErrorCode::InvalidInvoicePrefix,
                    "invoice_prefix",
                    "an invoice prefix is 1 to 12 upper-case letters or digits, such as ACME",
                ),
            ));
        }
        let before = serde_json::json!({"invoice_prefix": self.invoice_prefix(caller).await?});
        let after = serde_json::json!({"invoice_prefix": prefix});
        let change = change(
            caller,
            self.clocks.now(),
            ChangeSpec {
                entity_type: "invoice_settings",
                entity_id: caller.tenant_id.to_string(),
                action: AuditAction::Update,
                event_type: Some(EventType::InvoiceSettingsUpdated),
                before: Some(&before),
                after: &after,
            },
        );
        self.store
            .set_invoice_prefix(caller.tenant_id, prefix, &change)
            .await?;
        Ok(prefix.to_owned())
    }
}
