//! Customer emails: what the customer is told and when, the tenant's switches and
//! reply-to address, and the message itself, as HTML with a plain-text part.
//!
//! Every email is a notice ([`NoticeKind`]): dunning's steps, and the kinds an event
//! triggers ([`notice_for`]): the store writes the notice in the same transaction as the
//! event, so each occurrence has exactly one notice, named by the event.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::customers::account::{present, validate_email};
use crate::documents::branding::{Branding, Color};
use crate::events::record::DomainEvent;
use crate::events::types::EventType;
use crate::kernel::error::ValidationError;
pub use crate::kernel::html::escape;
use crate::kernel::ids::AccountId;

/// What a customer is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// Dunning: a payment is overdue.
    Reminder,
    /// Dunning: the account will be blocked.
    Warning,
    /// Dunning: the account is blocked.
    Blocked,
    /// Dunning: the overdue invoices are settled; the account is in good standing again.
    Unblocked,
    /// A `send_invoice` invoice was finalized with something to pay.
    InvoiceIssued,
    /// A payment succeeded.
    Receipt,
    /// A payment attempt failed.
    PaymentFailed,
    /// A payment waits for the customer to authenticate (3-D Secure).
    ActionRequired,
    /// A trial ends in three days.
    TrialEnding,
    /// A credit note was issued.
    CreditNoteIssued,
    /// A price version with a notice period applies from a coming renewal.
    PriceChange,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reminder => "reminder",
            Self::Warning => "warning",
            Self::Blocked => "blocked",
            Self::Unblocked => "unblocked",
            Self::InvoiceIssued => "invoice_issued",
            Self::Receipt => "receipt",
            Self::PaymentFailed => "payment_failed",
            Self::ActionRequired => "action_required",
            Self::TrialEnding => "trial_ending",
            Self::CreditNoteIssued => "credit_note_issued",
            Self::PriceChange => "price_change",
        }
    }

    /// A dunning step's notice (sent while its case asks for it, not switchable here: the
    /// dunning policy decides).
    pub fn is_dunning(self) -> bool {
        matches!(
            self,
            Self::Reminder | Self::Warning | Self::Blocked | Self::Unblocked
        )
    }
}

/// The notice an event leaves: its account and kind; its key is `{kind}-{event id}`, one
/// per occurrence, except a price change's, `price_change-{subscription}-v{version}`: one
/// per subscription and plan version, however often it were announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNotice {
    pub account_id: AccountId,
    pub kind: NoticeKind,
    pub key: String,
}

/// The email an event asks for, if any: the rule both stores apply when they write it.
pub fn notice_for(event: &DomainEvent) -> Option<EventNotice> {
    let data = &event.data;
    let kind = match event.event_type {
        EventType::InvoiceFinalized
            if data["collection_method"] == "send_invoice"
                && data["status"] == "open"
                && data["amount_due"].as_i64().is_some_and(|due| due > 0) =>
        {
            NoticeKind::InvoiceIssued
        }
        EventType::PaymentSucceeded => NoticeKind::Receipt,
        EventType::PaymentFailed => NoticeKind::PaymentFailed,
        EventType::PaymentRequiresAction => NoticeKind::ActionRequired,
        EventType::SubscriptionTrialWillEnd => NoticeKind::TrialEnding,
        EventType::CreditNoteCreated => NoticeKind::CreditNoteIssued,
        EventType::SubscriptionPriceChangeNotice => NoticeKind::PriceChange,
        _ => return None,
    };
    let account_id = AccountId::parse(data["account_id"].as_str()?, "account_id").ok()?;
    let key = match kind {
        NoticeKind::PriceChange => format!(
            "{}-{}-v{}",
            kind.as_str(),
            data["id"].as_str()?,
            data["price_notice"]["plan_version"].as_u64()?
        ),
        _ => format!("{}-{}", kind.as_str(), event.id),
    };
    Some(EventNotice {
        account_id,
        kind,
        key,
    })
}

/// A tenant's customer emails: one switch per kind (all on until turned off) and the
/// address replies go to. Dunning notices follow the dunning policy instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "invoice_issued": true, "receipt": true, "payment_failed": true, "action_required": true,
    "trial_ending": true, "credit_note_issued": false, "price_change": true,
    "reply_to": "billing@acme.test",
    "version": 2, "updated_at": "2026-05-01T10:00:00Z"
}))]
pub struct EmailSettings {
    pub invoice_issued: bool,
    pub receipt: bool,
    pub payment_failed: bool,
    pub action_required: bool,
    pub trial_ending: bool,
    pub credit_note_issued: bool,
    /// Settings stored before this switch existed read it as on.
    #[serde(default = "on")]
    pub price_change: bool,
    /// Where the customer's replies go; without it, the branding's `support_email`.
    pub reply_to: Option<String>,
    /// 0 until the first write.
    pub version: u64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<Timestamp>,
}

fn on() -> bool {
    true
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            invoice_issued: true,
            receipt: true,
            payment_failed: true,
            action_required: true,
            trial_ending: true,
            credit_note_issued: true,
            price_change: true,
            reply_to: None,
            version: 0,
            updated_at: None,
        }
    }
}

/// A partial update: absent fields stay, `reply_to: null` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"receipt": false, "reply_to": "billing@acme.test"}))]
pub struct EmailSettingsPatch {
    pub invoice_issued: Option<bool>,
    pub receipt: Option<bool>,
    pub payment_failed: Option<bool>,
    pub action_required: Option<bool>,
    pub trial_ending: Option<bool>,
    pub credit_note_issued: Option<bool>,
    pub price_change: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub reply_to: Option<Option<String>>,
}

impl EmailSettings {
    /// Whether a notice of `kind` is sent.
    pub fn sends(&self, kind: NoticeKind) -> bool {
        match kind {
            NoticeKind::InvoiceIssued => self.invoice_issued,
            NoticeKind::Receipt => self.receipt,
            NoticeKind::PaymentFailed => self.payment_failed,
            NoticeKind::ActionRequired => self.action_required,
            NoticeKind::TrialEnding => self.trial_ending,
            NoticeKind::CreditNoteIssued => self.credit_note_issued,
            NoticeKind::PriceChange => self.price_change,
            NoticeKind::Reminder
            | NoticeKind::Warning
            | NoticeKind::Blocked
            | NoticeKind::Unblocked => true,
        }
    }

    /// The settings after `patch`, validated, one version on.
    pub fn patched(
        &self,
        patch: EmailSettingsPatch,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        let mut next = self.clone();
        let switches = [
            (&mut next.invoice_issued, patch.invoice_issued),
            (&mut next.receipt, patch.receipt),
            (&mut next.payment_failed, patch.payment_failed),
            (&mut next.action_required, patch.action_required),
            (&mut next.trial_ending, patch.trial_ending),
            (&mut next.credit_note_issued, patch.credit_note_issued),
            (&mut next.price_change, patch.price_change),
        ];
        for (switch, value) in switches {
            if let Some(on) = value {
                *switch = on;
            }
        }
        if let Some(reply_to) = patch.reply_to {
            next.reply_to = match reply_to.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(e) => Some(validate_email(e).map_err(|mut err| {
                    err.param = "reply_to".into();
                    err
                })?),
            };
        }
        next.version = self.version + 1;
        next.updated_at = Some(now);
        Ok(next)
    }
}

/// A button in a message: a link the customer follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub label: String,
    pub url: String,
}

/// What a message says, before it is dressed in the tenant's branding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub heading: String,
    pub paragraphs: Vec<String>,
    /// Label and value rows (amount, due date, …).
    pub facts: Vec<(String, String)>,
    pub actions: Vec<Action>,
}

/// A message ready to send: the same words as HTML and as plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The seller's name on a message: the branding's legal name, else the tenant's name.
pub fn seller_name<'a>(branding: &'a Branding, tenant_name: &'a str) -> &'a str {
    branding.legal_name.as_deref().unwrap_or(tenant_name)
}

/// Dresses `message` in the tenant's branding: inline styles in its colours (mail clients
/// drop style sheets and we load no external asset), the seller and support address at
/// the foot. Every piece of text is escaped; links are only the message's own actions.
pub fn render(message: &Message, branding: &Branding, seller: &str) -> Email {
    let color = |c: Color| String::from(c);
    let (primary, accent) = (color(branding.primary_color), color(branding.accent_color));
    let mut text = format!("{}\n\n", message.heading);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body style=\"margin:0;padding:24px;background:#f9fafb;font-family:Helvetica,Arial,sans-serif;color:#111827\">\
         <div style=\"max-width:560px;margin:0 auto;background:#ffffff;padding:24px;border-top:4px solid {primary}\">\
         <p style=\"margin:0 0 16px;font-size:14px;color:{primary};font-weight:bold\">{}</p>\
         <h1 style=\"margin:0 0 16px;font-size:20px;color:{primary}\">{}</h1>",
        escape(&message.subject),
        escape(seller),
        escape(&message.heading),
    );
    for paragraph in &message.paragraphs {
        text.push_str(&format!("{paragraph}\n\n"));
        html.push_str(&format!(
            "<p style=\"margin:0 0 16px;line-height:1.5\">{}</p>",
            escape(paragraph)
        ));
    }
    if !message.facts.is_empty() {
        html.push_str("<table style=\"width:100%;border-collapse:collapse;margin:0 0 16px\">");
        for (label, value) in &message.facts {
            text.push_str(&format!("{label}: {value}\n"));
            html.push_str(&format!(
                "<tr><td style=\"padding:6px 0;color:#6b7280\">{}</td>\
                 <td style=\"padding:6px 0;text-align:right;font-weight:bold\">{}</td></tr>",
                escape(label),
                escape(value)
            ));
        }
        html.push_str("</table>");
        text.push('\n');
    }
    for action in &message.actions {
        text.push_str(&format!("{}: {}\n", action.label, action.url));
        html.push_str(&format!(
            "<p style=\"margin:0 0 12px\"><a href=\"{}\" style=\"display:inline-block;padding:10px 16px;\
             background:{accent};color:#ffffff;text-decoration:none;border-radius:4px\">{}</a></p>",
            escape(&action.url),
            escape(&action.label)
        ));
    }
    if !message.actions.is_empty() {
        text.push('\n');
    }
    let mut foot = vec![seller.to_owned()];
    if let Some(support) = &branding.support_email {
        foot.push(format!("Questions? {support}"));
    }
    foot.extend(branding.footer.clone());
    text.push_str("--\n");
    html.push_str(
        "<hr style=\"border:none;border-top:1px solid #e5e7eb;margin:24px 0 12px\">\
         <div style=\"font-size:12px;color:#6b7280\">",
    );
    for line in &foot {
        text.push_str(&format!("{line}\n"));
        html.push_str(&format!("<p style=\"margin:0 0 4px\">{}</p>", escape(line)));
    }
    html.push_str("</div></div></body></html>\n");
    Email {
        subject: message.subject.clone(),
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ids::EventId;
    use proptest::prelude::*;

    fn event(event_type: EventType, data: serde_json::Value) -> DomainEvent {
        DomainEvent {
            id: EventId::from_ulid(ulid::Ulid::from_parts(7, 7)),
            event_type,
            api_version: "1".into(),
            created: Timestamp::UNIX_EPOCH,
            livemode: false,
            resource_id: "in_1".into(),
            data,
            previous_attributes: None,
            published: false,
        }
    }

    fn account() -> String {
        AccountId::from_ulid(ulid::Ulid::from_parts(1, 1)).to_string()
    }

    #[test]
    fn only_open_send_invoice_invoices_with_something_due_are_emailed() {
        let invoice = |method: &str, status: &str, due: i64| {
            event(
                EventType::InvoiceFinalized,
                serde_json::json!({"account_id": account(), "collection_method": method,
                                   "status": status, "amount_due": due}),
            )
        };
        let issued = notice_for(&invoice("send_invoice", "open", 100)).unwrap();
        assert_eq!(issued.kind, NoticeKind::InvoiceIssued);
        assert_eq!(issued.account_id.to_string(), account());
        assert!(
            issued.key.starts_with("invoice_issued-evt_"),
            "{}",
            issued.key
        );
        assert_eq!(
            notice_for(&invoice("charge_automatically", "open", 100)),
            None
        );
        assert_eq!(notice_for(&invoice("send_invoice", "paid", 100)), None);
        assert_eq!(notice_for(&invoice("send_invoice", "open", 0)), None);
    }

    #[test]
    fn payments_trials_and_credit_notes_are_emailed_and_others_not() {
        let data = serde_json::json!({"account_id": account()});
        for (t, kind) in [
            (EventType::PaymentSucceeded, Some(NoticeKind::Receipt)),
            (EventType::PaymentFailed, Some(NoticeKind::PaymentFailed)),
            (
                EventType::PaymentRequiresAction,
                Some(NoticeKind::ActionRequired),
            ),
            (
                EventType::SubscriptionTrialWillEnd,
                Some(NoticeKind::TrialEnding),
            ),
            (
                EventType::CreditNoteCreated,
                Some(NoticeKind::CreditNoteIssued),
            ),
            (EventType::InvoicePaid, None),
            (EventType::AccountCreated, None),
        ] {
            assert_eq!(notice_for(&event(t, data.clone())).map(|n| n.kind), kind);
        }
        assert_eq!(
            notice_for(&event(EventType::PaymentSucceeded, serde_json::json!({}))),
            None,
            "no account, no email"
        );
    }

    /// One price change email per subscription and plan version: the key is theirs, not
    /// the event's.
    #[test]
    fn a_price_change_notice_is_keyed_by_subscription_and_version() {
        let data = serde_json::json!({"account_id": account(), "id": "sub_1",
                                      "price_notice": {"plan_version": 2}});
        let notice = notice_for(&event(EventType::SubscriptionPriceChangeNotice, data)).unwrap();
        assert_eq!(
            (notice.kind, notice.key.as_str()),
            (NoticeKind::PriceChange, "price_change-sub_1-v2")
        );
        let old: EmailSettings = serde_json::from_value(serde_json::json!({
            "invoice_issued": true, "receipt": true, "payment_failed": true,
            "action_required": true, "trial_ending": true, "credit_note_issued": true,
            "reply_to": null, "version": 3, "updated_at": null
        }))
        .unwrap();
        assert!(
            old.sends(NoticeKind::PriceChange),
            "stored before the switch: on"
        );
    }

    #[test]
    fn switches_and_reply_to_patch_and_version() {
        let now = Timestamp::UNIX_EPOCH;
        let patch: EmailSettingsPatch = serde_json::from_value(
            serde_json::json!({"receipt": false, "reply_to": " billing@acme.test "}),
        )
        .unwrap();
        let s = EmailSettings::default().patched(patch, now).unwrap();
        assert!(!s.sends(NoticeKind::Receipt) && s.sends(NoticeKind::InvoiceIssued));
        assert!(s.sends(NoticeKind::Reminder), "dunning follows its policy");
        assert_eq!(
            (s.reply_to.as_deref(), s.version),
            (Some("billing@acme.test"), 1)
        );
        let cleared = s
            .patched(
                serde_json::from_value(serde_json::json!({"reply_to": null})).unwrap(),
                now,
            )
            .unwrap();
        assert_eq!(
            (cleared.reply_to, cleared.receipt, cleared.version),
            (None, false, 2)
        );
        let err = s
            .patched(
                serde_json::from_value(serde_json::json!({"reply_to": "nope"})).unwrap(),
                now,
            )
            .unwrap_err();
        assert_eq!(err.param, "reply_to");
    }

    fn message(text: &str) -> Message {
        Message {
            subject: format!("Invoice {text}"),
            heading: text.into(),
            paragraphs: vec![text.into()],
            facts: vec![("Amount due".into(), text.into())],
            actions: vec![Action {
                label: "Pay".into(),
                url: format!("https://pay.test/i/{text}"),
            }],
        }
    }

    #[test]
    fn a_message_has_both_parts_in_the_brand_with_its_links() {
        let branding = Branding {
            support_email: Some("help@acme.test".into()),
            footer: Some("Acme GmbH · HRB 1".into()),
            ..Branding::default()
        };
        let email = render(&message("INV-1"), &branding, "Acme GmbH");
        assert!(email.text.contains("Amount due: INV-1"));
        assert!(email.text.contains("Pay: https://pay.test/i/INV-1"));
        assert!(email.text.contains("Questions? help@acme.test"));
        assert!(email.html.contains("href=\"https://pay.test/i/INV-1\""));
        assert!(email.html.contains("#2563eb"), "the accent colour");
        assert!(email.html.contains("#1f2937"), "the primary colour");
        assert!(email.html.contains("Acme GmbH · HRB 1"));
        assert!(!email.html.contains("src="), "no external asset");
    }

    proptest! {
        /// Whatever a customer or tenant typed, the HTML part carries it as text: no tag,
        /// attribute or link of its own.
        #[test]
        fn any_text_is_escaped(text in "\\PC{0,40}") {
            let email = render(&message(&text), &Branding::default(), &text);
            let tags = |html: &str| html.matches('<').count();
            let clean = render(&message("x"), &Branding::default(), "x");
            prop_assert_eq!(tags(&email.html), tags(&clean.html));
            prop_assert_eq!(email.html.matches("href=").count(), 1);
            prop_assert!(email.text.contains(&text));
        }
    }
}
