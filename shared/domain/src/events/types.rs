//! The event catalog: every event type the platform emits, what its `data` holds, and the
//! envelope every event travels in (the same JSON in `GET /v1/events`, in webhook bodies
//! and, with `tenant_id` added, as EventBridge `detail`).
//!
//! Versioning: the envelope's `api_version` names the shape of `data`
//! ([`crate::events::record::EVENT_API_VERSION`]). Adding a field is not a new version; renaming or
//! removing one, or changing a type, is, and the old shape keeps being sent to endpoints
//! pinned to the old version.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::record::DomainEvent;
use crate::kernel::ids::EventId;

/// Declares the catalog once: the enum, its dotted names, `data` schemas and descriptions.
macro_rules! event_types {
    ($($variant:ident => $name:literal, $schema:literal, $description:literal;)*) => {
        /// Every event type the platform emits. Emitting takes this enum, so an event cannot
        /// be emitted without being in the catalog (and thereby subscribable and documented).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $($variant,)*
        }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            /// The dotted name, e.g. `account.created`: the stored and the wire form.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }

            /// The OpenAPI schema of `data` (the resource as the API returns it); a name the
            /// document does not define is shown as a plain object.
            pub const fn schema(self) -> &'static str {
                match self {
                    $(EventType::$variant => $schema,)*
                }
            }

            pub const fn description(self) -> &'static str {
                match self {
                    $(EventType::$variant => $description,)*
                }
            }
        }
    };
}

event_types! {
    AccountCreated => "account.created", "Account", "A customer account was created.";
    AccountUpdated => "account.updated", "Account",
        "A customer account changed; `previous_attributes` holds the old values.";
    AccountDeleted => "account.deleted", "Account", "A customer account was soft-deleted.";
    AccountPurged => "account.purged", "Account",
        "A deleted account's personal data was erased 30 days after deletion; `data` is the tombstone.";
    AccountPurgePostponed => "account.purge_postponed", "AccountPurgePostponed",
        "A due purge was postponed a week: the account still has an open invoice or a live subscription (`blockers`).";
    ApiKeyCreated => "api_key.created", "ApiKey",
        "An API key was created (without its secret or hash).";
    ApiKeyRevoked => "api_key.revoked", "ApiKey", "An API key was revoked.";
    ApiKeyRolled => "api_key.rolled", "ApiKey",
        "An API key was rolled: `expires_at` is when it stops working; its successor comes \
         with `api_key.created`.";
    WebhookEndpointCreated => "webhook_endpoint.created", "WebhookEndpointView",
        "A webhook endpoint was added.";
    WebhookEndpointUpdated => "webhook_endpoint.updated", "WebhookEndpointView",
        "A webhook endpoint changed (URL, events, status or its signing secret was rotated).";
    WebhookEndpointDeleted => "webhook_endpoint.deleted", "WebhookEndpointView",
        "A webhook endpoint was deleted.";
    WebhookEndpointDisabled => "webhook_endpoint.disabled", "WebhookEndpointView",
        "A webhook endpoint was disabled automatically after failing continuously for days.";
    DunningReminder => "dunning.reminder", "DunningCase",
        "A payment reminder step of an account's dunning was taken (resource: the account).";
    DunningWarning => "dunning.warning", "DunningCase",
        "A warning step of an account's dunning was taken; the account's status is `warning`.";
    DunningBlocked => "dunning.blocked", "DunningCase",
        "An account was blocked by dunning: no new subscriptions or plan changes until it pays.";
    DunningUnblocked => "dunning.unblocked", "DunningCase",
        "Every overdue invoice of an account in dunning was paid or voided; the account is \
         active again.";
    DunningSettingsUpdated => "dunning_settings.updated", "DunningPolicy",
        "The tenant's dunning policy changed.";
    PaymentCreated => "payment.created", "Payment",
        "A payment attempt was made by hand (pay now, a manual retry); it is charged at once.";
    PaymentSucceeded => "payment.succeeded", "Payment",
        "A payment attempt was charged; its invoice is paid.";
    PaymentFailed => "payment.failed", "Payment",
        "A payment attempt was declined (`failure.kind`: `hard`, no retry, or `soft`, retried on \
         the schedule).";
    PaymentRequiresAction => "payment.requires_action", "Payment",
        "The customer must authenticate the payment (3-D Secure); the invoice stays open.";
    PaymentCanceled => "payment.canceled", "Payment",
        "A scheduled attempt was not made: its invoice was paid, voided or written off first.";
    PaymentRefunded => "payment.refunded", "Payment",
        "Part or all of a payment was refunded; `amount_refunded` is the total so far.";
    PaymentDisputed => "payment.disputed", "Payment",
        "The customer disputed the charge at their bank.";
    PaymentMethodAttached => "payment_method.attached", "PaymentMethodView",
        "A card was attached to an account.";
    PaymentMethodUpdated => "payment_method.updated", "PaymentMethodView",
        "A card became the account's default.";
    LimitSettingsUpdated => "limit_settings.updated", "LimitSettings",
        "The tenant's rate limits changed.";
    IdentityProviderUpdated => "identity_provider.updated", "IdentityProvider",
        "The identity provider the tenant trusts for staff sign-in was set or changed.";
    PaymentMethodDetached => "payment_method.detached", "PaymentMethodView",
        "A card was detached (through the API or at the gateway).";
    PaymentSettingsUpdated => "payment_settings.updated", "PaymentSettings",
        "The tenant's retry schedule or final action changed.";
    EmailSettingsUpdated => "email_settings.updated", "EmailSettings",
        "The tenant's customer email switches or reply-to address changed.";
    CreditNoteCreated => "credit_note.created", "CreditNote",
        "Money was given back on an invoice: a refund, or the void of a paid or credited invoice.";
    CreditGranted => "credit.granted", "CreditGrant",
        "Credit was added to an account's balance: a grant, an upward adjustment, an \
         invoice's negative total, or a voided invoice's credit note (`source`).";
    CreditApplied => "credit.applied", "BalanceTransaction",
        "Balance credit was spent on an invoice when it was finalized (resource: the invoice).";
    CreditExpired => "credit.expired", "BalanceTransaction",
        "What remained of a credit grant left the balance at its `expires_at`.";
    BalanceUpdated => "balance.updated", "Balance",
        "An account's balance in one currency changed; the ledger entry says why.";
    WalletCreated => "wallet.created", "Wallet",
        "A prepaid wallet was created for an account and currency.";
    WalletToppedUp => "wallet.topped_up", "WalletTransaction",
        "Credits arrived in a wallet: granted, or bought and paid for (resource: the wallet).";
    WalletLowBalance => "wallet.low_balance", "Wallet",
        "A wallet's ongoing balance fell under a threshold rule's level (once per crossing).";
    WalletDepleted => "wallet.depleted", "Wallet",
        "A wallet's balance reached zero.";
    TaxSettingsUpdated => "tax_settings.updated", "TaxSettings",
        "The tenant's tax settings were set or changed.";
    TaxRateCreated => "tax_rate.created", "TaxRate",
        "A tax rate was created, loaded, or replaced another from a date.";
    CouponCreated => "coupon.created", "Coupon", "A coupon was created.";
    CouponUpdated => "coupon.updated", "Coupon",
        "A coupon's name or metadata changed; `previous_attributes` holds the old values.";
    CouponDeleted => "coupon.deleted", "Coupon",
        "A coupon was deleted: it takes no new redemptions; discounts already made run their \
         course.";
    CouponRedeemed => "coupon.redeemed", "Subscription",
        "A coupon was redeemed onto a subscription (resource: the subscription, its new \
         discount in `discounts`); the coupon's `times_redeemed` went up by one.";
    DiscountDeleted => "discount.deleted", "Subscription",
        "A discount was taken off a subscription before it ended (resource: the subscription).";
    DiscountEnded => "discount.ended", "Subscription",
        "A `once` or `repeating` discount was applied to its last invoice and left the \
         subscription (resource: the subscription).";
    AccountDiscountApplied => "account.discount_applied", "AccountDiscounts",
        "A coupon was redeemed onto an account (resource: the account, its new discount in \
         `discounts`): its subscriptions' period invoices take it unless they carry a \
         discount of their own; the coupon's `times_redeemed` went up by one.";
    AccountDiscountRemoved => "account.discount_removed", "AccountDiscounts",
        "A discount was taken off an account before it ended (resource: the account).";
    AccountDiscountEnded => "account.discount_ended", "AccountDiscounts",
        "An account's `once` discount was taken by one of its subscriptions' invoices and \
         left the account (resource: the account).";
    InvoiceCreated => "invoice.created", "Invoice",
        "An invoice was issued (by a subscription's period, a usage bill or by hand).";
    InvoiceFinalized => "invoice.finalized", "Invoice",
        "An invoice got its number and can no longer change; it is open for payment (or paid \
         when nothing is due).";
    InvoicePaid => "invoice.paid", "Invoice",
        "An invoice was paid (by a payment, or marked paid out of band).";
    InvoicePaymentFailed => "invoice.payment_failed", "Invoice",
        "A payment attempt on the invoice failed; `next_payment_attempt` says when the next is \
         due.";
    InvoicePaymentActionRequired => "invoice.payment_action_required", "Invoice",
        "The invoice's payment waits for the customer to authenticate (3-D Secure).";
    InvoiceOverdue => "invoice.overdue", "Invoice",
        "An invoice the customer pays by themselves (`send_invoice`) passed its due date unpaid.";
    InvoiceMarkedUncollectible => "invoice.marked_uncollectible", "Invoice",
        "The last payment attempt failed and the tenant writes such invoices off.";
    InvoiceVoided => "invoice.voided", "Invoice",
        "An invoice was voided; nothing is owed on it any more.";
    InvoiceSettingsUpdated => "invoice_settings.updated", "InvoiceSettings",
        "The tenant's invoice settings (number prefix, payment terms) changed.";
    SubscriptionCreated => "subscription.created", "Subscription",
        "A subscription was created (in trial or active).";
    SubscriptionActivated => "subscription.activated", "Subscription",
        "A subscription started its first paid period (at creation or when its trial ended).";
    SubscriptionTrialWillEnd => "subscription.trial_will_end", "Subscription",
        "A subscription's trial ends in three days.";
    SubscriptionTrialEnded => "subscription.trial_ended", "Subscription",
        "A subscription's trial ended.";
    SubscriptionRenewed => "subscription.renewed", "Subscription",
        "A subscription entered its next period; the period's invoice is created with it.";
    SubscriptionPriceMigrated => "subscription.price_migrated", "Subscription",
        "A subscription moved to a newer price version of its plan (one published with \
         `migrate_existing`) at its renewal; the renewal's invoice bills the new prices.";
    SubscriptionPriceChangeNotice => "subscription.price_change_notice", "Subscription",
        "A subscription's customer is told that a newer price version (one published with \
         `migrate_existing` and `migration_notice_days`) applies from a coming renewal: \
         `price_notice` has the old and new recurring fee and `effective_at`, the first \
         renewal at the new prices. Sent once per subscription and version.";
    SubscriptionUpdated => "subscription.updated", "Subscription",
        "A subscription changed (quantity, metadata, a payment's effect on its status).";
    SubscriptionPlanChanged => "subscription.plan_changed", "Subscription",
        "A subscription moved to other terms (plan or quantity) without being an upgrade or a \
         downgrade, or a scheduled change took effect.";
    SubscriptionUpgraded => "subscription.upgraded", "Subscription",
        "A subscription moved to dearer terms, at once, with prorations.";
    SubscriptionDowngraded => "subscription.downgraded", "Subscription",
        "A subscription moved to cheaper terms.";
    SubscriptionChangeScheduled => "subscription.change_scheduled", "Subscription",
        "A change of terms was scheduled for the period end.";
    SubscriptionChangeCancelled => "subscription.change_cancelled", "Subscription",
        "A change of terms scheduled for the period end was withdrawn.";
    SubscriptionCancelScheduled => "subscription.cancel_scheduled", "Subscription",
        "A subscription will be cancelled at the end of its period.";
    SubscriptionReactivated => "subscription.reactivated", "Subscription",
        "A cancellation scheduled for the period end was withdrawn.";
    SubscriptionCancelled => "subscription.cancelled", "Subscription", "A subscription ended.";
    SubscriptionPaused => "subscription.paused", "Subscription",
        "A subscription was paused; nothing is billed while paused.";
    SubscriptionResumed => "subscription.resumed", "Subscription",
        "A paused subscription was resumed.";
    SubscriptionPastDue => "subscription.past_due", "Subscription",
        "The last payment attempt on one of the subscription's invoices failed.";
    SubscriptionBillingFailed => "subscription.billing_failed", "Subscription",
        "A period of the subscription could not be priced (an amount does not fit in 64-bit \
         minor units): its billing is parked, shown in `billing_failure`, until an operator \
         retries it (`POST /v1/subscriptions/{id}/retry-billing`).";
    PlanCreated => "plan.created", "Plan", "A plan was created, with its first version.";
    PlanUpdated => "plan.updated", "Plan", "A plan's name, description or metadata changed.";
    PlanDeactivated => "plan.deactivated", "Plan",
        "A plan was deactivated: no new subscriptions to it.";
    PlanVersionCreated => "plan.version_created", "PlanVersion",
        "A plan got a new version of its prices (resource: the plan).";
    MetricCreated => "metric.created", "Metric", "A usage metric was created.";
    MetricUpdated => "metric.updated", "Metric",
        "A usage metric's name, description or settings changed.";
    UsageThresholdReached => "usage.threshold_reached", "UsageThreshold",
        "A subscription's usage of a metric reached 80 % or 100 % of its plan's limit for the \
         period (`threshold`); each threshold fires once per period.";
    TestClockCreated => "test_clock.created", "TestClock", "A test clock was created.";
}

impl EventType {
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.iter().copied().find(|t| t.as_str() == name)
    }

    /// `account` for `account.created`: what `family.*` subscribes to.
    pub fn family(self) -> &'static str {
        let name = self.as_str();
        name.split_once('.').map_or(name, |(family, _)| family)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        EventType::parse(name).ok_or_else(|| UnknownEventType(name.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an event type of the catalog")]
pub struct UnknownEventType(pub String);

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

// Comparisons with names keep assertions and filters on the wire form readable.
impl PartialEq<str> for EventType {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EventType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for EventType {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

/// The README's event-type table (between its `event-types` markers), from the catalog.
pub fn markdown_table() -> String {
    let mut table = String::from("| type | data | description |\n|---|---|---|\n");
    for t in EventType::ALL {
        table.push_str(&format!(
            "| `{}` | {} | {} |\n",
            t.as_str(),
            t.schema(),
            t.description().replace('|', "\\|")
        ));
    }
    table
}

/// Whether an endpoint subscribed to `enabled` wants `event_type`: `*` is everything,
/// `account.*` is every account event, anything else is an exact name.
pub fn subscribed(enabled: &[String], event_type: EventType) -> bool {
    enabled.iter().any(|pattern| {
        pattern == "*"
            || event_type == *pattern
            || pattern.strip_suffix(".*") == Some(event_type.family())
    })
}

/// Whether `pattern` may appear in `enabled_events`: `*`, a known type, or `family.*` for a
/// family that has at least one known type.
pub fn is_valid_pattern(pattern: &str) -> bool {
    pattern == "*"
        || EventType::parse(pattern).is_some()
        || pattern
            .strip_suffix(".*")
            .is_some_and(|family| EventType::ALL.iter().any(|t| t.family() == family))
}

/// The event as consumers see it. `published` and other bookkeeping stay inside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventEnvelope {
    #[schema(value_type = String, example = "evt_01JD3KQ4ZC6W5X2V9T8R7P6N5M")]
    pub id: EventId,
    /// Always `event`.
    #[schema(example = "event")]
    pub object: String,
    /// One of the catalog's event types, e.g. `account.created`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub event_type: EventType,
    /// The version of the `data` shape.
    #[schema(example = "2026-11-01")]
    pub api_version: String,
    #[schema(value_type = String, format = DateTime)]
    pub created: Timestamp,
    pub livemode: bool,
    /// The id of the resource the event is about; `GET /v1/events?resource=` filters on it.
    pub resource_id: String,
    /// The resource as the API returns it, after the change.
    #[schema(value_type = Object)]
    pub data: Value,
    /// On updates, the previous values of the fields that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub previous_attributes: Option<Value>,
}

impl From<&DomainEvent> for EventEnvelope {
    fn from(e: &DomainEvent) -> Self {
        Self {
            id: e.id,
            object: "event".into(),
            event_type: e.event_type,
            api_version: e.api_version.clone(),
            created: e.created,
            livemode: e.livemode,
            resource_id: e.resource_id.clone(),
            data: e.data.clone(),
            previous_attributes: e.previous_attributes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_match_all_families_and_exact_names() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(subscribed(&s(&["*"]), EventType::AccountCreated));
        assert!(subscribed(&s(&["account.*"]), EventType::AccountUpdated));
        assert!(!subscribed(&s(&["account.*"]), EventType::ApiKeyCreated));
        assert!(subscribed(
            &s(&["api_key.revoked"]),
            EventType::ApiKeyRevoked
        ));
        assert!(!subscribed(
            &s(&["api_key.revoked"]),
            EventType::ApiKeyCreated
        ));
        assert!(!subscribed(&[], EventType::AccountCreated));
    }

    #[test]
    fn patterns_must_name_something_in_the_catalog() {
        assert!(is_valid_pattern("*"));
        assert!(is_valid_pattern("account.*"));
        assert!(is_valid_pattern("webhook_endpoint.disabled"));
        assert!(!is_valid_pattern("acount.created"));
        assert!(!is_valid_pattern("nothing.*"));
    }

    #[test]
    fn every_type_is_subscribable_and_round_trips_as_its_name() {
        let mut names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len(), "no duplicates");
        for t in EventType::ALL {
            assert!(is_valid_pattern(t.as_str()), "{t}");
            assert!(is_valid_pattern(&format!("{}.*", t.family())), "{t}");
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
            assert_eq!(
                serde_json::from_value::<EventType>(t.as_str().into()).unwrap(),
                *t
            );
            assert!(!t.description().is_empty() && !t.schema().is_empty());
        }
        assert!(is_valid_pattern("invoice.created"));
        assert!(serde_json::from_value::<EventType>("invoice.bogus".into()).is_err());
    }
}
