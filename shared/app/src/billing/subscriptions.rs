//! Subscriptions: start, change, cancel, pause, resume, and the records every step writes
//! (its audit record, events and finalized invoice). The steps that fall due are in
//! `steps.rs`.

use billing_domain::billing::invoice::InvoiceStatus;
use billing_domain::billing::invoice::{self, DraftFacts, Invoice};
use billing_domain::billing::invoice_draft::{build_invoice, Discount, InvoiceInput};
use billing_domain::billing::proration::{ChangePolicy, CreditCap};
use billing_domain::billing::subscription::{
    Billing, CollectionMethod, NewSubscription, Subscription, SubscriptionError, Transition,
};
use billing_domain::coupons::account::{self, AccountDiscounts};
use billing_domain::customers::access::Permission;
use billing_domain::customers::account::Account;
use billing_domain::customers::erasure::BillingDetails;
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::error::ValidationError;
use billing_domain::kernel::ids::{AccountId, PlanId, SubscriptionId, TenantId};
use billing_domain::kernel::metadata::Metadata;
use billing_domain::kernel::money::Money;
use billing_domain::kernel::time::later;
use jiff::Timestamp;

use super::BillingService;
use crate::collection::first_attempt;
use crate::coupons::CouponRef;
use crate::customers::refuse_blocked;
use crate::kernel::{
    change, event, new_ulid, to_json, AppError, Caller, ChangeSpec, WRITE_ATTEMPTS,
};
use crate::ports::{
    CreditNoteFilter, Finalization, InvoiceFilter, InvoiceWrite, Page, PageRequest,
    RedemptionTarget, StoreError, SubscriptionFilter, SubscriptionStep, ACCOUNT_DISCOUNTS,
};
use crate::tax::TaxCustomer;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartSubscription {
    pub account_id: AccountId,
    pub plan_id: PlanId,
    pub quantity: u64,
    pub trial_days: Option<u32>,
    pub start: Option<Timestamp>,
    pub billing_anchor: Option<Timestamp>,
    pub collection_method: CollectionMethod,
    pub days_until_due: Option<u32>,
    pub max_pause_days: Option<u32>,
    pub metadata: Metadata,
    /// A coupon (its code or id) to redeem onto the subscription as it starts.
    pub coupon: Option<CouponRef>,
}

impl StartSubscription {
    /// One seat of `plan_id` for `account_id` from now, with the plan's trial, charged
    /// automatically.
    pub fn new(account_id: AccountId, plan_id: PlanId) -> Self {
        Self {
            account_id,
            plan_id,
            quantity: 1,
            trial_days: None,
            start: None,
            billing_anchor: None,
            collection_method: CollectionMethod::ChargeAutomatically,
            days_until_due: None,
            max_pause_days: None,
            metadata: Metadata::default(),
            coupon: None,
        }
    }
}

/// How a plan or quantity change is billed (Stripe's `proration_behavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProrationBehavior {
    /// Prorations go on the next invoice.
    CreateProrations,
    /// Prorations are invoiced now.
    AlwaysInvoice,
}

impl From<SubscriptionError> for AppError {
    fn from(err: SubscriptionError) -> Self {
        match err {
            SubscriptionError::Invalid(v) => AppError::Invalid(v),
            SubscriptionError::InvalidTransition { current, action } => AppError::Conflict {
                code: ErrorCode::InvalidTransition,
                message: format!("a {current} subscription cannot {action}"),
                param: None,
            },
            other => AppError::Internal(other.to_string()),
        }
    }
}

fn invalid(code: ErrorCode, param: &'static str, message: impl Into<String>) -> AppError {
    AppError::Invalid(billing_domain::kernel::error::ValidationError::new(
        code, param, message,
    ))
}

impl BillingService {
    async fn load_account(&self, caller: &Caller, id: AccountId) -> Result<Account, AppError> {
        let account = self
            .store
            .get_account(caller.tenant_id, id)
            .await?
            .ok_or_else(|| {
                invalid(
                    ErrorCode::UnknownAccount,
                    "account",
                    format!("no such account: {id}"),
                )
            })?;
        if account.deleted_at.is_some() {
            return Err(AppError::Conflict {
                code: ErrorCode::AccountDeleted,
                message: "the account is deleted".into(),
                param: Some("account"),
            });
        }
        Ok(account)
    }

    pub async fn create_subscription(
        &self,
        caller: &Caller,
        input: StartSubscription,
    ) -> Result<Subscription, AppError> {
        caller.require(Permission::WriteBilling)?;
        let account = self.load_account(caller, input.account_id).await?;
        refuse_blocked(&account)?;
        let now = self
            .clocks
            .now_for(caller.tenant_id, account.test_clock)
            .await?;
        let start = input.start.unwrap_or(now);
        if start < now - jiff::SignedDuration::from_mins(5) {
            return Err(invalid(
                ErrorCode::StartInPast,
                "start_date",
                "a subscription cannot start in the past",
            ));
        }
        let (terms, plan_trial) = self
            .catalog
            .subscription_terms(caller, account.currency, input.plan_id, start)
            .await?;
        let id = SubscriptionId::from_ulid(new_ulid());
        let new_subscription = |discounts| NewSubscription {
            id,
            account_id: account.id,
            test_clock: account.test_clock,
            livemode: caller.livemode,
            currency: account.currency,
            time_zone: account.timezone.clone(),
            terms: terms.clone(),
            quantity: input.quantity,
            trial_days: input.trial_days.unwrap_or(plan_trial),
            start,
            billing_anchor: input.billing_anchor,
            collection_method: input.collection_method,
            days_until_due: input.days_until_due,
            max_pause_days: input.max_pause_days,
            metadata: input.metadata.clone(),
            discounts,
        };
        for _ in 0..WRITE_ATTEMPTS {
            // Started without the discount first: the coupon is checked against the
            // subscription as it will be (its plan, currency), then it starts with it, so
            // that its first invoice takes it.
            let mut transition = Subscription::start(new_subscription(Vec::new()), now)?;
            let coupon = match &input.coupon {
                None => None,
                Some(named) => {
                    let (coupon, discount) = self
                        .coupons
                        .redeemable(caller, named, &transition.next, now, "coupon")
                        .await?;
                    transition = Subscription::start(new_subscription(vec![discount]), now)?;
                    transition.events.push(EventType::CouponRedeemed);
                    Some(coupon)
                }
            };
            let (invoice, change) = self
                .step_records(
                    caller,
                    None,
                    &transition,
                    AuditAction::Create,
                    now,
                    Numbering::Now,
                )
                .await?;
            let written = match &coupon {
                None => {
                    self.store
                        .insert_subscription(
                            caller.tenant_id,
                            &transition.next,
                            invoice.as_ref(),
                            &change,
                        )
                        .await
                }
                Some(coupon) => {
                    self.store
                        .redeem_coupon(
                            caller.tenant_id,
                            coupon,
                            RedemptionTarget::NewSubscription {
                                subscription: &transition.next,
                                invoice: invoice.as_ref(),
                            },
                            &change,
                        )
                        .await
                }
            };
            match written {
                // Another invoice took the number, or another redemption the coupon's
                // counter: read again and decide again.
                Err(StoreError::VersionConflict {
                    entity: "invoice sequence" | "coupon" | ACCOUNT_DISCOUNTS,
                }) => continue,
                other => other?,
            }
            self.collection
                .release_invoice_payment(caller.tenant_id, invoice.as_ref(), now)
                .await;
            return Ok(transition.next);
        }
        Err(AppError::Unavailable(
            "the invoice sequence is busy; retry".into(),
        ))
    }

    pub async fn get_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
    ) -> Result<Subscription, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_subscription(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("subscription", id))
    }

    pub async fn list_subscriptions(
        &self,
        caller: &Caller,
        filter: &SubscriptionFilter,
        page: &PageRequest,
    ) -> Result<Page<Subscription>, AppError> {
        caller.require(Permission::Read)?;
        Ok(self
            .store
            .list_subscriptions(caller.tenant_id, filter, page)
            .await?)
    }

    /// The audit record, events and invoice of one lifecycle step: opened under the
    /// tenant's next number, or a draft waiting for the finalizer (see [`Numbering`]).
    pub(super) async fn step_records(
        &self,
        caller: &Caller,
        previous: Option<&Subscription>,
        transition: &Transition,
        action: AuditAction,
        now: Timestamp,
        numbering: Numbering,
    ) -> Result<(Option<InvoiceWrite>, crate::ports::Change), AppError> {
        let sub = &transition.next;
        let before = previous.map(to_json).transpose()?;
        let after = to_json(sub)?;
        let mut change = change(
            caller,
            now,
            ChangeSpec {
                entity_type: "subscription",
                entity_id: sub.id.to_string(),
                action,
                event_type: Some(
                    transition
                        .events
                        .first()
                        .copied()
                        .unwrap_or(EventType::SubscriptionUpdated),
                ),
                before: before.as_ref(),
                after: &after,
            },
        );
        let previous_attributes = change.events[0].previous_attributes.clone();
        for &event_type in transition.events.iter().skip(1) {
            let event = event(
                caller,
                now,
                event_type,
                sub.id.to_string(),
                after.clone(),
                previous_attributes.clone(),
            );
            change.events.push(event);
        }
        // A discount that left with this step's invoice ran its course (taking one off
        // is not a lifecycle step).
        if let Some(previous) = previous {
            if previous
                .discounts
                .iter()
                .any(|d| !sub.discounts.iter().any(|n| n.id == d.id))
            {
                change.events.push(event(
                    caller,
                    now,
                    EventType::DiscountEnded,
                    sub.id.to_string(),
                    after.clone(),
                    previous_attributes.clone(),
                ));
            }
        }
        let Some(billing) = &transition.billing else {
            return Ok((None, change));
        };
        let id = invoice::subscription_invoice_id(sub.id, sub.invoice_count, billing.period.start);
        let invoice = match numbering {
            Numbering::Now => {
                self.finalized_invoice(caller, sub, billing, id, now)
                    .await?
            }
            Numbering::Deferred => {
                let (draft, account_discounts) =
                    self.draft_invoice(caller, sub, billing, id, now).await?;
                InvoiceWrite {
                    invoice: draft,
                    number: None,
                    payment: None,
                    pending: Some(Finalization {
                        days_until_due: sub.days_until_due,
                        livemode: sub.livemode,
                        hand_over_at: later(self.clocks.now(), FINALIZE_HAND_OVER),
                    }),
                    balance: None,
                    wallets: None,
                    account_discounts,
                }
            }
        };
        let data = to_json(&invoice.invoice)?;
        // The invoice took the account's `once` discount: it leaves the account with it.
        if let Some(discounts) = &invoice.account_discounts {
            change.events.push(event(
                caller,
                now,
                EventType::AccountDiscountEnded,
                discounts.account_id.to_string(),
                to_json(discounts)?,
                None,
            ));
        }
        change.events.push(event(
            caller,
            now,
            EventType::InvoiceCreated,
            invoice.invoice.id.to_string(),
            data.clone(),
            None,
        ));
        if invoice.number.is_some() {
            change
                .events
                .extend(opened_events(caller, now, &invoice.invoice, &data));
        }
        Ok((Some(invoice), change))
    }

    /// Builds the invoice `id` of `sub` from `billing` and opens it under the tenant's
    /// next invoice number.
    pub(super) async fn finalized_invoice(
        &self,
        caller: &Caller,
        sub: &Subscription,
        billing: &Billing,
        id: billing_domain::kernel::ids::InvoiceId,
        now: Timestamp,
    ) -> Result<InvoiceWrite, AppError> {
        let (draft, account_discounts) = self.draft_invoice(caller, sub, billing, id, now).await?;
        let (draft, balance, wallets) = match self
            .credits
            .settle(caller.tenant_id, &draft, sub.livemode)
            .await?
        {
            Some(settled) => (settled.invoice, settled.balance, settled.wallets),
            None => (draft, None, None),
        };
        let next = self.store.next_invoice_number(caller.tenant_id).await?;
        let account = self
            .store
            .get_account(caller.tenant_id, sub.account_id)
            .await?;
        let (invoice, payment) = open_draft(
            &draft,
            account.as_ref(),
            &next.prefix,
            next.number,
            sub.days_until_due,
            sub.livemode,
            now,
        )?;
        Ok(InvoiceWrite {
            invoice,
            number: Some(next.number),
            payment,
            pending: None,
            balance,
            wallets,
            account_discounts,
        })
    }

    /// Applies a change to a loaded subscription and stores it; retried from a fresh read
    /// when another writer got there first.
    async fn mutate_subscription<F>(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        action: AuditAction,
        step: F,
    ) -> Result<Subscription, AppError>
    where
        F: Fn(&Subscription, Timestamp) -> Result<Option<Transition>, AppError>,
    {
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.get_subscription(caller, id).await?;
            let now = self
                .clocks
                .now_for(caller.tenant_id, current.test_clock)
                .await?;
            let Some(mut transition) = step(&current, now)? else {
                return Ok(current);
            };
            let rollups = self
                .bill_closed_usage(caller.tenant_id, &current, &mut transition)
                .await?;
            let (invoice, change) = self
                .step_records(
                    caller,
                    Some(&current),
                    &transition,
                    action,
                    now,
                    Numbering::Now,
                )
                .await?;
            let step = SubscriptionStep {
                previous: current,
                next: transition.next,
                invoice,
                rollups,
                change,
            };
            match self.save_step(caller.tenant_id, &step).await {
                Err(StoreError::VersionConflict { .. }) | Err(StoreError::AlreadyExists { .. }) => {
                    continue
                }
                other => other?,
            }
            self.collection
                .release_invoice_payment(caller.tenant_id, step.invoice.as_ref(), now)
                .await;
            return Ok(step.next);
        }
        Err(AppError::Conflict {
            code: ErrorCode::ConcurrentModification,
            message: "the subscription kept changing under this request; retry".into(),
            param: None,
        })
    }

    pub async fn cancel_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        at_period_end: bool,
        prorate: bool,
    ) -> Result<Subscription, AppError> {
        caller.require(Permission::WriteBilling)?;
        self.mutate_subscription(caller, id, AuditAction::Update, |s, now| {
            Ok(Some(s.cancel(at_period_end, prorate, now)?))
        })
        .await
    }

    pub async fn reactivate_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
    ) -> Result<Subscription, AppError> {
        caller.require(Permission::WriteBilling)?;
        self.mutate_subscription(caller, id, AuditAction::Update, |s, now| {
            Ok(Some(plain(
                s.reactivate(now)?,
                EventType::SubscriptionReactivated,
            )))
        })
        .await
    }

    /// Clears a parked billing and runs what is due now: billed when the cause was fixed,
    /// parked again (announced again) when not. Answers the subscription as it then is.
    pub async fn retry_billing(
        &self,
        caller: &Caller,
        id: SubscriptionId,
    ) -> Result<Subscription, AppError> {
        caller.require(Permission::WriteBilling)?;
        let cleared = self
            .mutate_subscription(caller, id, AuditAction::Update, |s, now| {
                Ok(Some(plain(
                    s.retry_billing(now)?,
                    EventType::SubscriptionUpdated,
                )))
            })
            .await?;
        let now = self
            .clocks
            .now_for(caller.tenant_id, cleared.test_clock)
            .await?;
        self.run_due_subscription(caller.tenant_id, id, now).await?;
        self.get_subscription(caller, id).await
    }

    pub async fn pause_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        resumes_at: Option<Timestamp>,
    ) -> Result<Subscription, AppError> {
        caller.require(Permission::WriteBilling)?;
        self.mutate_subscription(caller, id, AuditAction::Update, |s, now| {
            Ok(Some(plain(
                s.pause(resumes_at, now)?,
                EventType::SubscriptionPaused,
            )))
        })
        .await
    }

    pub async fn resume_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
    ) -> Result<Subscription, AppError> {
        caller.require(Permission::WriteBilling)?;
        self.mutate_subscription(caller, id, AuditAction::Update, |s, now| {
            Ok(Some(s.resume(now)?))
        })
        .await
    }

    /// Moves to another plan and/or quantity: upgrades now with prorations, downgrades at
    /// the period end (the domain's change policy decides which is which). The credit for
    /// unused time is capped by what the period was paid minus what was credited for it
    /// (Flexprice): `paid_elsewhere` when its fee was not on our invoice, else our invoices.
    #[allow(clippy::too_many_arguments)]
    pub async fn change_subscription(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        plan_id: Option<PlanId>,
        quantity: Option<u64>,
        behavior: ProrationBehavior,
        policy: ChangePolicy,
        paid_elsewhere: Option<CreditCapInput>,
    ) -> Result<Subscription, AppError> {
        caller.require(Permission::WriteBilling)?;
        let current = self.get_subscription(caller, id).await?;
        let cap = match paid_elsewhere {
            Some(given) => Some(given.validate(current.currency)?),
            None => self.credit_cap_from_invoices(caller, &current).await?,
        };
        let terms = match plan_id {
            Some(plan_id) if plan_id != current.terms.plan_id => {
                let account = self.load_account(caller, current.account_id).await?;
                refuse_blocked(&account)?;
                let now = self
                    .clocks
                    .now_for(caller.tenant_id, current.test_clock)
                    .await?;
                Some(
                    self.catalog
                        .subscription_terms(caller, account.currency, plan_id, now)
                        .await?
                        .0,
                )
            }
            // Buying more is a plan change too; buying less is not refused.
            _ if quantity.is_some_and(|q| q > current.quantity) => {
                refuse_blocked(&self.load_account(caller, current.account_id).await?)?;
                None
            }
            _ => None,
        };
        self.mutate_subscription(caller, id, AuditAction::Update, |s, now| {
            let terms = terms.clone().unwrap_or_else(|| s.terms.clone());
            let quantity = quantity.unwrap_or(s.quantity);
            // Another change may have landed since `current` was read: its period's
            // invoices are then not the ones the cap was read from.
            let cap = cap.filter(|_| s.current_period == current.current_period);
            Ok(Some(s.change_capped(
                terms,
                quantity,
                &policy,
                behavior == ProrationBehavior::AlwaysInvoice,
                cap.as_ref(),
                now,
            )?))
        })
        .await
    }

    /// What our invoices of the subscription's current period were charged (positive
    /// totals) and credited (negative totals and credit notes such as refunds); `None` when
    /// no invoice of ours charged the period (nothing to cap by).
    async fn credit_cap_from_invoices(
        &self,
        caller: &Caller,
        sub: &Subscription,
    ) -> Result<Option<CreditCap>, AppError> {
        let period = sub.current_period;
        let filter = InvoiceFilter {
            account: Some(sub.account_id),
            subscription: Some(sub.id),
            ..InvoiceFilter::default()
        };
        let (mut paid, mut credited) = (0i64, 0i64);
        let mut found = false;
        let mut page = PageRequest::first(100);
        loop {
            let invoices = self
                .store
                .list_invoices(caller.tenant_id, &filter, &page)
                .await?;
            for invoice in &invoices.items {
                let in_period = invoice
                    .period
                    .is_some_and(|p| p.start >= period.start && p.start < period.end);
                if !in_period || invoice.status == InvoiceStatus::Void {
                    continue;
                }
                found = true;
                let total = invoice.total.get();
                paid = paid.saturating_add(total.max(0));
                credited = credited.saturating_add((-total).max(0));
                let notes = self
                    .collection
                    .list_credit_notes(
                        caller,
                        &CreditNoteFilter {
                            account: Some(sub.account_id),
                            invoice: Some(invoice.id),
                        },
                        &PageRequest::first(100),
                    )
                    .await?;
                for note in notes.items {
                    credited = credited.saturating_add(note.amount.get());
                }
            }
            // Newest first: once a page reaches back before the period, the rest is older.
            let older = invoices
                .items
                .iter()
                .any(|i| i.period.is_some_and(|p| p.end <= period.start));
            match invoices.items.last() {
                Some(last) if invoices.has_more && !older => {
                    page = PageRequest {
                        starting_after: Some(last.id.to_string()),
                        ..PageRequest::first(100)
                    }
                }
                _ => break,
            }
        }
        Ok(found.then(|| CreditCap {
            paid: Money::new(paid, sub.currency),
            already_credited: Money::new(credited, sub.currency),
        }))
    }

    pub async fn cancel_scheduled_change(
        &self,
        caller: &Caller,
        id: SubscriptionId,
    ) -> Result<Subscription, AppError> {
        caller.require(Permission::WriteBilling)?;
        self.mutate_subscription(caller, id, AuditAction::Update, |s, now| {
            Ok(Some(plain(
                s.cancel_scheduled_change(now)?,
                EventType::SubscriptionChangeCancelled,
            )))
        })
        .await
    }

    pub async fn update_subscription_metadata(
        &self,
        caller: &Caller,
        id: SubscriptionId,
        metadata: &Metadata,
    ) -> Result<Subscription, AppError> {
        caller.require(Permission::WriteBilling)?;
        self.mutate_subscription(caller, id, AuditAction::Update, |s, now| {
            Ok(Some(plain(
                s.set_metadata(metadata, now)?,
                EventType::SubscriptionUpdated,
            )))
        })
        .await
    }
}

/// What the period's fee was paid and credited when that was not on our invoice (a
/// subscription migrated mid-period), in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditCapInput {
    /// What the customer paid for the current period.
    pub paid: i64,
    /// What was already credited or refunded for it.
    #[serde(default)]
    pub already_credited: i64,
}

impl CreditCapInput {
    fn validate(self, currency: Currency) -> Result<CreditCap, AppError> {
        for (value, param) in [
            (self.paid, "credit_cap.paid"),
            (self.already_credited, "credit_cap.already_credited"),
        ] {
            if !(0..=MAX_MINOR).contains(&value) {
                return Err(AppError::Invalid(ValidationError::new(
                    ErrorCode::InvalidCreditCap,
                    param,
                    "must be 0 to 10^18 minor units",
                )));
            }
        }
        Ok(CreditCap {
            paid: Money::new(self.paid, currency),
            already_credited: Money::new(self.already_credited, currency),
        })
    }
}

/// The largest amount a caller may state, in minor units.
const MAX_MINOR: i64 = 1_000_000_000_000_000_000;

/// A change that bills nothing, announced by one event.
pub(super) fn plain(next: Subscription, event: EventType) -> Transition {
    Transition {
        next,
        billing: None,
        events: vec![event],
    }
}

/// How a lifecycle step's invoice gets its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Numbering {
    /// In the step's own write: changes a caller makes and waits for (start, cancel,
    /// change), who sees the open invoice in the answer.
    Now,
    /// Later, by the tenant's finalizer: steps that fall due, which many workers draft in
    /// parallel while the numbers stay serial.
    Deferred,
}

/// How long a draft waits for a finalize job before the sweep hands it over again.
pub(crate) const FINALIZE_HAND_OVER: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

impl BillingService {
    /// The draft invoice `id` of `sub` from `billing`, taxed as of `now` (the tax
    /// provider's rates on every line that has none of its own), with the account's
    /// discounts to write beside it when it took a `once` one.
    async fn draft_invoice(
        &self,
        caller: &Caller,
        sub: &Subscription,
        billing: &Billing,
        id: billing_domain::kernel::ids::InvoiceId,
        now: Timestamp,
    ) -> Result<(Invoice, Option<Box<AccountDiscounts>>), AppError> {
        let (discounts, account_discounts) = self
            .invoice_discounts(caller.tenant_id, sub, billing)
            .await?;
        let tax = self
            .tax
            .invoice_tax(
                caller.tenant_id,
                TaxCustomer::Account(sub.account_id),
                now,
                sub.test_clock,
            )
            .await?;
        let mut lines = billing.lines.clone();
        tax.apply(&mut lines);
        let built = build_invoice(&InvoiceInput {
            currency: sub.currency,
            lines,
            discounts,
            credits: Vec::new(),
            minimum_commitment: None,
        })
        .map_err(|e| crate::usage::pricing::unpriceable(sub, e))?;
        let invoice = Invoice::draft(
            DraftFacts {
                id,
                account_id: sub.account_id,
                subscription_id: Some(sub.id),
                test_clock: sub.test_clock,
                billing_reason: billing.reason,
                period: Some(billing.period),
                collection_method: sub.collection_method,
            },
            built,
            now,
        )
        .with_tax(&tax);
        Ok((invoice, account_discounts.map(Box::new)))
    }

    /// The discounts the invoice of `billing` takes: the subscription's own, or else, on a
    /// period invoice, its account's (read only then), as billing and previews apply them.
    pub(super) async fn invoice_discounts(
        &self,
        tenant: TenantId,
        sub: &Subscription,
        billing: &Billing,
    ) -> Result<(Vec<Discount>, Option<AccountDiscounts>), AppError> {
        let account = if billing.discounts.is_empty() && billing.reason.is_period() {
            self.coupons
                .account_discounts_of(tenant, sub.account_id)
                .await?
        } else {
            None
        };
        Ok(account::invoice_discounts(
            billing,
            sub.terms.plan_id,
            sub.currency,
            account.as_ref(),
        ))
    }
}

/// Opens `draft` under `number` (printed with `prefix`), issued to `account` as it reads
/// now, with its first payment attempt when it is charged automatically: the one
/// numbering rule of every path that finalizes (a step's own write, the bulk finalizer,
/// `POST /v1/invoices/{id}/finalize`).
pub(super) fn open_draft(
    draft: &Invoice,
    account: Option<&billing_domain::customers::account::Account>,
    prefix: &str,
    number: u64,
    days_until_due: Option<u32>,
    livemode: bool,
    now: Timestamp,
) -> Result<
    (
        Invoice,
        Option<billing_domain::collection::payment::Payment>,
    ),
    AppError,
> {
    let mut invoice =
        draft.finalize(invoice::format_number(prefix, number), days_until_due, now)?;
    invoice.billing_details = account.map(BillingDetails::of);
    let payment = first_attempt(&invoice, livemode, now);
    Ok((invoice, payment))
}

/// The events of an invoice just opened: `invoice.finalized`, and `invoice.paid` when
/// there was nothing to pay.
pub(super) fn opened_events(
    caller: &Caller,
    now: Timestamp,
    invoice: &Invoice,
    data: &serde_json::Value,
) -> Vec<billing_domain::events::record::DomainEvent> {
    let mut types = vec![EventType::InvoiceFinalized];
    if invoice.status == InvoiceStatus::Paid {
        types.push(EventType::InvoicePaid);
    }
    types
        .into_iter()
        .map(|t| event(caller, now, t, invoice.id.to_string(), data.clone(), None))
        .collect()
}
