//! Typed identifiers: a short prefix that says what the id names, then a ULID
//! (`acct_01JD3…`). ULIDs sort by creation time, which is what cursor pagination walks.

use crate::kernel::error::ErrorCode;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

use crate::kernel::error::ValidationError;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn from_ulid(ulid: Ulid) -> Self {
                Self(ulid)
            }

            pub fn ulid(&self) -> Ulid {
                self.0
            }

            /// Parses `prefix_ULID`; `param` names the field for the error.
            pub fn parse(text: &str, param: &'static str) -> Result<Self, ValidationError> {
                text.strip_prefix(concat!($prefix, "_"))
                    .and_then(|rest| Ulid::from_string(rest).ok())
                    .map(Self)
                    .ok_or_else(|| {
                        ValidationError::new(
                            ErrorCode::InvalidId,
                            param,
                            format!("`{text}` is not a valid id: expected `{}_` followed by 26 characters", $prefix),
                        )
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text, "id").map_err(|e| serde::de::Error::custom(e.message))
            }
        }
    };
}

typed_id!(
    /// A tenant: one company using the platform, sandbox or live.
    TenantId,
    "ten"
);
typed_id!(
    /// A customer account of a tenant.
    AccountId,
    "acct"
);
typed_id!(
    /// An API key (the id, never the secret).
    ApiKeyId,
    "key"
);
typed_id!(
    /// A domain event in the outbox and event log.
    EventId,
    "evt"
);
typed_id!(
    /// One audit-log record.
    AuditId,
    "aud"
);
typed_id!(
    /// A webhook endpoint: a URL of the tenant's that receives signed events.
    WebhookEndpointId,
    "we"
);
typed_id!(
    /// One event's delivery to one webhook endpoint, with its attempts.
    DeliveryId,
    "whd"
);
typed_id!(
    /// A billable metric: what usage is measured and how it aggregates.
    MetricId,
    "bm"
);
typed_id!(
    /// A plan of the catalog.
    PlanId,
    "plan"
);
typed_id!(
    /// A subscription of an account to a plan.
    SubscriptionId,
    "sub"
);
typed_id!(
    /// An invoice.
    InvoiceId,
    "in"
);
typed_id!(
    /// A sandbox test clock.
    TestClockId,
    "clock"
);
typed_id!(
    /// One attempt to collect an invoice: one charge at the gateway, whose idempotency key
    /// it is.
    PaymentId,
    "pay"
);
typed_id!(
    /// A credit note: money given back on an invoice (a refund, or a void of what was paid).
    CreditNoteId,
    "cn"
);
typed_id!(
    /// A lot of credit in an account's balance: granted, adjusted in, or left over from an
    /// invoice.
    CreditGrantId,
    "cg"
);
typed_id!(
    /// One entry of an account's balance ledger.
    BalanceTransactionId,
    "btx"
);
typed_id!(
    /// A coupon: the terms of a discount, redeemed onto subscriptions by its code.
    CouponId,
    "coupon"
);
typed_id!(
    /// A discount: one redemption of a coupon on a subscription, running its course.
    DiscountId,
    "di"
);
typed_id!(
    /// A tax rate of a jurisdiction, effective over a span of dates.
    TaxRateId,
    "txr"
);
typed_id!(
    /// A prepaid wallet: credits an account buys or is granted, spent by its invoices.
    WalletId,
    "wal"
);
typed_id!(
    /// A catalog change simulation run as a job (a plan with many subscriptions).
    SimulationId,
    "sim"
);
typed_id!(
    /// One movement of a wallet's credits (a grant, a purchase, a consumption, …).
    WalletTransactionId,
    "wtx"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = AccountId::from_ulid(Ulid::from_parts(1_700_000_000_000, 42));
        let text = id.to_string();
        assert!(text.starts_with("acct_"));
        assert_eq!(AccountId::parse(&text, "id").unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<AccountId>(&json).unwrap(), id);
    }

    #[test]
    fn wrong_prefix_or_garbage_is_rejected_with_the_param() {
        let id = AccountId::from_ulid(Ulid::from_parts(1, 1)).to_string();
        let as_tenant = id.replacen("acct_", "ten_", 1);
        let err = AccountId::parse(&as_tenant, "account").unwrap_err();
        assert_eq!(err.param, "account");
        assert!(AccountId::parse("acct_nope", "id").is_err());
        assert!(TenantId::parse(&as_tenant, "id").is_ok());
    }
}
