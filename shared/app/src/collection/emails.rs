//! Customer emails: the words of each notice an event leaves, in the tenant's branding,
//! and the one way every notice (dunning's too) is sent and retired.
//!
//! Exactly once per occurrence: the store writes an event's notice in the event's own
//! transaction ([`crate::ports::PendingNotice::for_event`]), keyed by the event, due at
//! once. The payment worker claims it (a version-checked write, so one sender), sends
//! it and deletes it; a redelivered event writes nothing (the event is not written twice).
//! The one duplicate possible is a send that went out just before a crash, before the
//! delete: no mail service takes part in our transaction, so the worker sends it again
//! when the claim runs out, under the same key (SES: the `X-Billing-Notice-Key` header).
//!
//! What a notice says is read when it is sent: the tenant's switches and reply-to, the
//! account's address (none: no email), the invoice as it stands (an invoice already paid
//! or voided gets no "please pay"), a fresh link to its hosted page.

use billing_domain::billing::invoice::{Invoice, InvoiceStatus};
use billing_domain::billing::subscription::{Subscription, SubscriptionStatus};
use billing_domain::collection::credit_note::CreditNoteReason;
use billing_domain::collection::payment::{DeclineKind, Payment};
use billing_domain::documents::branding::Branding;
use billing_domain::documents::email::{self, Action, EmailSettings, Message, NoticeKind};
use billing_domain::kernel::ids::{AccountId, CreditNoteId, InvoiceId, PaymentId, SubscriptionId};
use jiff::Timestamp;

use super::CollectionService;
use crate::kernel::AppError;
use crate::ports::{Notification, NotifyError, PendingNotice};
use billing_domain::kernel::ids::TenantId;

/// How a tenant's emails look and who they come from.
pub(super) struct Letterhead {
    pub(super) branding: Branding,
    pub(super) settings: EmailSettings,
    /// The branding's legal name, else the tenant's name.
    pub(super) seller: String,
}

impl Letterhead {
    /// `message` dressed in the branding, to `to`, named by `key` for good.
    pub(super) fn notification(
        &self,
        tenant: TenantId,
        account: AccountId,
        to: &str,
        message: &Message,
        key: String,
    ) -> Notification {
        let rendered = email::render(message, &self.branding, &self.seller);
        Notification {
            tenant_id: tenant,
            account_id: account,
            to: to.to_owned(),
            subject: rendered.subject,
            body: rendered.text,
            html: rendered.html,
            reply_to: self
                .settings
                .reply_to
                .clone()
                .or_else(|| self.branding.support_email.clone()),
            key,
        }
    }

    fn money(&self, minor: billing_domain::kernel::money::MinorUnits, invoice: &Invoice) -> String {
        self.branding
            .locale
            .format_money(minor.of(invoice.currency))
    }

    fn date(&self, at: Timestamp) -> String {
        self.branding
            .locale
            .format_date(at.to_zoned(jiff::tz::TimeZone::UTC).date())
    }
}

/// The price change email: what the subscription's sent notice said (the notice named
/// by `key`, so a newer version's notice is not told under an older key).
fn price_change(letterhead: &Letterhead, sub: &Subscription, key: &str) -> Option<Message> {
    let notice = sub
        .price_notice
        .as_ref()
        .filter(|n| key.ends_with(&format!("-v{}", n.plan_version)))?;
    let (old, new, from) = (notice.old_amount?, notice.new_amount?, notice.effective_at?);
    let money = |m| letterhead.branding.locale.format_money(m);
    let plan = &sub.terms.plan_name;
    Some(Message {
        subject: format!(
            "{}: the price of {plan} changes on {}",
            letterhead.seller,
            letterhead.date(from)
        ),
        heading: "Your subscription's price changes".into(),
        paragraphs: vec![format!(
            "From your renewal on {}, {plan} costs {} per period instead of {}. \
             Nothing changes before then.",
            letterhead.date(from),
            money(new),
            money(old)
        )],
        facts: vec![
            ("Current price".into(), money(old)),
            ("New price".into(), money(new)),
            ("From".into(), letterhead.date(from)),
        ],
        actions: Vec::new(),
    })
}

/// Reads the id an event's notice is about.
fn about<T>(
    pending: &PendingNotice,
    parse: impl Fn(&str, &'static str) -> Result<T, billing_domain::kernel::error::ValidationError>,
) -> Result<T, AppError> {
    let raw = pending.about.as_deref().unwrap_or_default();
    parse(raw, "about").map_err(|e| AppError::Internal(format!("notice {}: {e}", pending.key)))
}

impl CollectionService {
    pub(super) async fn letterhead(&self, tenant: TenantId) -> Result<Letterhead, AppError> {
        let branding = self.store.branding(tenant).await?.unwrap_or_default();
        let settings = self.store.email_settings(tenant).await?.unwrap_or_default();
        let tenant_name = self
            .store
            .get_tenant(tenant)
            .await?
            .map(|t| t.name)
            .unwrap_or_default();
        let seller = email::seller_name(&branding, &tenant_name).to_owned();
        Ok(Letterhead {
            branding,
            settings,
            seller,
        })
    }

    /// Sends a notice this process holds the claim on (`None`: nothing to say any more)
    /// and deletes it. A notifier that is unavailable leaves it pending (the worker tries
    /// again when the claim runs out); a rejected one is logged and deleted, since it
    /// would be rejected again. Without a notifier the notice waits for the worker.
    pub(super) async fn deliver(
        &self,
        tenant: TenantId,
        pending: &PendingNotice,
        notification: Option<Notification>,
    ) -> Result<(), AppError> {
        let Some(notifier) = &self.notifier else {
            return Ok(());
        };
        if let Some(notification) = notification {
            match notifier.send(&notification).await {
                Ok(()) => {}
                Err(NotifyError::Unavailable(cause)) => {
                    tracing::warn!(%cause, key = %pending.key, "notice not sent; the worker retries it");
                    return Ok(());
                }
                Err(NotifyError::Rejected(cause)) => {
                    tracing::warn!(%cause, key = %pending.key, "notice rejected; not retried");
                }
            }
        }
        self.store
            .delete_dunning_notice(tenant, pending.account_id, &pending.key)
            .await?;
        Ok(())
    }

    /// The email an event's notice stands for, as things are now; `None` when the tenant
    /// switched its kind off, the account has no address (or is gone), or what it would
    /// ask for is moot (the invoice was paid or voided meanwhile, the trial ended).
    pub(super) async fn event_email(
        &self,
        tenant: TenantId,
        pending: &PendingNotice,
    ) -> Result<Option<Notification>, AppError> {
        let letterhead = self.letterhead(tenant).await?;
        if !letterhead.settings.sends(pending.kind) {
            return Ok(None);
        }
        let Some(account) = self
            .store
            .get_account(tenant, pending.account_id)
            .await?
            .filter(|a| a.deleted_at.is_none() && !a.email.trim().is_empty())
        else {
            return Ok(None);
        };
        let message = match pending.kind {
            NoticeKind::InvoiceIssued => {
                let invoice = self.stored_invoice(tenant, about(pending, InvoiceId::parse)?);
                match invoice.await?.filter(|i| i.status == InvoiceStatus::Open) {
                    Some(invoice) => {
                        Some(self.invoice_issued(tenant, &letterhead, &invoice).await?)
                    }
                    None => None,
                }
            }
            NoticeKind::Receipt | NoticeKind::PaymentFailed | NoticeKind::ActionRequired => {
                let id = about(pending, PaymentId::parse)?;
                match self.store.get_payment(tenant, id).await? {
                    Some(payment) => {
                        self.payment_email(tenant, &letterhead, pending.kind, &payment)
                            .await?
                    }
                    None => None,
                }
            }
            NoticeKind::TrialEnding => {
                let id = about(pending, SubscriptionId::parse)?;
                self.store
                    .get_subscription(tenant, id)
                    .await?
                    .filter(|s| s.status == SubscriptionStatus::Trialing)
                    .and_then(|s| {
                        let end = s.trial_end?;
                        Some(Message {
                            subject: format!(
                                "{}: your trial of {} ends on {}",
                                letterhead.seller,
                                s.terms.plan_name,
                                letterhead.date(end)
                            ),
                            heading: "Your trial ends in 3 days".into(),
                            paragraphs: vec![format!(
                                "Your trial of {} ends on {}. Your subscription continues \
                                 then, and its first invoice follows.",
                                s.terms.plan_name,
                                letterhead.date(end)
                            )],
                            facts: vec![("Trial ends".into(), letterhead.date(end))],
                            actions: Vec::new(),
                        })
                    })
            }
            NoticeKind::PriceChange => {
                let id = about(pending, SubscriptionId::parse)?;
                self.store
                    .get_subscription(tenant, id)
                    .await?
                    .filter(|s| s.status != SubscriptionStatus::Cancelled)
                    .and_then(|s| price_change(&letterhead, &s, &pending.key))
            }
            NoticeKind::CreditNoteIssued => {
                let id = about(pending, CreditNoteId::parse)?;
                match self.store.get_credit_note(tenant, id).await? {
                    Some(note) => match self.stored_invoice(tenant, note.invoice_id).await? {
                        Some(invoice) => {
                            let amount = letterhead.money(note.amount, &invoice);
                            let number = invoice.number.clone().unwrap_or_default();
                            let why = match note.reason {
                                CreditNoteReason::Refund => format!(
                                    "{amount} of your payment for invoice {number} was \
                                     refunded to your card."
                                ),
                                CreditNoteReason::Void => format!(
                                    "Invoice {number} was voided; {amount} paid or credited \
                                     on it is credited back to you."
                                ),
                            };
                            Some(Message {
                                subject: format!("{}: credit note for {amount}", letterhead.seller),
                                heading: "A credit note was issued".into(),
                                paragraphs: vec![why],
                                facts: vec![
                                    ("Credit note".into(), note.id.to_string()),
                                    ("Invoice".into(), number),
                                    ("Amount".into(), amount),
                                ],
                                actions: self
                                    .invoice_actions(tenant, &invoice, "View the invoice", false)
                                    .await?,
                            })
                        }
                        None => None,
                    },
                    None => None,
                }
            }
            NoticeKind::Reminder
            | NoticeKind::Warning
            | NoticeKind::Blocked
            | NoticeKind::Unblocked => None,
        };
        Ok(message.map(|message| {
            letterhead.notification(
                tenant,
                account.id,
                &account.email,
                &message,
                format!("{}/email/{}", account.id, pending.key),
            )
        }))
    }

    async fn stored_invoice(
        &self,
        tenant: TenantId,
        id: InvoiceId,
    ) -> Result<Option<Invoice>, AppError> {
        Ok(self.store.get_invoice(tenant, id).await?)
    }

    /// A `send_invoice` invoice: what it comes to, when it is due, where to pay it and
    /// its PDF.
    async fn invoice_issued(
        &self,
        tenant: TenantId,
        letterhead: &Letterhead,
        invoice: &Invoice,
    ) -> Result<Message, AppError> {
        let number = invoice.number.clone().unwrap_or_default();
        let due = letterhead.money(
            invoice.amount_due.saturating_sub(invoice.amount_paid),
            invoice,
        );
        let mut facts = vec![
            ("Invoice".into(), number.clone()),
            ("Amount due".into(), due.clone()),
        ];
        if let Some(at) = invoice.due_date {
            facts.push(("Due".into(), letterhead.date(at)));
        }
        Ok(Message {
            subject: format!("{}: invoice {number} for {due}", letterhead.seller),
            heading: format!("Invoice {number}"),
            paragraphs: vec![format!(
                "Here is your invoice from {} for {due}.",
                letterhead.seller
            )],
            facts,
            actions: self
                .invoice_actions(tenant, invoice, "Pay this invoice", true)
                .await?,
        })
    }

    /// A payment's receipt, failure or request to authenticate; `None` once moot (the
    /// invoice paid or closed before a failure's email went out).
    async fn payment_email(
        &self,
        tenant: TenantId,
        letterhead: &Letterhead,
        kind: NoticeKind,
        payment: &Payment,
    ) -> Result<Option<Message>, AppError> {
        let Some(invoice) = self.stored_invoice(tenant, payment.invoice_id).await? else {
            return Ok(None);
        };
        let amount = letterhead.money(payment.amount, &invoice);
        let number = invoice.number.clone().unwrap_or_default();
        let seller = &letterhead.seller;
        // Asking to pay is moot once nothing is owed (an uncollectible invoice still is).
        let owed = matches!(
            invoice.status,
            InvoiceStatus::Open | InvoiceStatus::Uncollectible
        );
        if kind != NoticeKind::Receipt && !owed {
            return Ok(None);
        }
        Ok(Some(match kind {
            NoticeKind::Receipt => Message {
                subject: format!("{seller}: receipt for your payment of {amount}"),
                heading: "Thank you for your payment".into(),
                paragraphs: vec![format!(
                    "We received your payment of {amount} for invoice {number}."
                )],
                facts: vec![
                    ("Invoice".into(), number),
                    ("Amount paid".into(), amount),
                    ("Paid on".into(), letterhead.date(payment.updated_at)),
                ],
                actions: self
                    .invoice_actions(tenant, &invoice, "View the invoice", false)
                    .await?,
            },
            NoticeKind::PaymentFailed => {
                let failure = payment.failure.as_ref();
                let mut paragraphs = vec![format!(
                    "We could not collect {amount} for invoice {number}{}.",
                    failure.map_or(String::new(), |f| format!(": {}", f.message))
                )];
                paragraphs.push(
                    if failure.is_some_and(|f| f.kind == DeclineKind::Hard) {
                        "We will not try this card again. Please pay with another card."
                    } else {
                        "Please pay the invoice or update your card."
                    }
                    .into(),
                );
                Message {
                    subject: format!("{seller}: your payment of {amount} failed"),
                    heading: "Your payment failed".into(),
                    paragraphs,
                    facts: vec![("Invoice".into(), number), ("Amount".into(), amount)],
                    actions: self
                        .invoice_actions(tenant, &invoice, "Pay or update your card", false)
                        .await?,
                }
            }
            _ => Message {
                subject: format!("{seller}: please confirm your payment of {amount}"),
                heading: "Your bank asks you to confirm a payment".into(),
                paragraphs: vec![format!(
                    "Your payment of {amount} for invoice {number} needs your confirmation \
                     (3-D Secure) before it can complete."
                )],
                facts: vec![("Invoice".into(), number), ("Amount".into(), amount)],
                actions: self
                    .invoice_actions(tenant, &invoice, "Complete the payment", false)
                    .await?,
            },
        }))
    }

    /// A fresh link to the invoice's hosted page (and its PDF) for an email; none when
    /// this deployment has no public origin configured.
    async fn invoice_actions(
        &self,
        tenant: TenantId,
        invoice: &Invoice,
        label: &str,
        with_pdf: bool,
    ) -> Result<Vec<Action>, AppError> {
        let Some(origin) = &self.public_url else {
            return Ok(Vec::new());
        };
        let issued =
            crate::hosted::mint_link(&*self.store, tenant, invoice, self.clocks.now()).await?;
        let page = format!("{origin}/i/{}", issued.token);
        let mut actions = vec![Action {
            label: label.into(),
            url: page.clone(),
        }];
        if with_pdf {
            actions.push(Action {
                label: "Download the PDF".into(),
                url: format!("{page}/pdf"),
            });
        }
        Ok(actions)
    }
}
