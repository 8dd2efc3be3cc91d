//! The sandbox payment gateway: Stripe's test-card behaviour without a network, used
//! whenever no Stripe secret is configured (the default for `make dev` and for tests).
//!
//! | token (any of)                                                              | attach | charge                          |
//! |-----------------------------------------------------------------------------|--------|---------------------------------|
//! | `4242424242424242`, `tok_visa`, `pm_card_visa`                               | ok     | succeeds                        |
//! | `5555555555554444`, `tok_mastercard`, `pm_card_mastercard`                   | ok     | succeeds                        |
//! | `4000000000000002`, `tok_chargeDeclined`, `pm_card_chargeDeclined`           | ok     | `card_declined`/`generic_decline` |
//! | `4000000000009995`, `tok_chargeDeclinedInsufficientFunds`, `pm_card_…`       | ok     | `card_declined`/`insufficient_funds` |
//! | `4000000000000341`, `tok_chargeCustomerFail`, `pm_card_chargeCustomerFail`   | ok     | `card_declined`/`generic_decline` |
//! | `4000002500003155`, `tok_authenticationRequired`, `pm_card_authenticationRequired` | ok | requires action (3-D Secure) |
//! | `4000000000009979`, `tok_chargeDeclinedStolenCard`, `pm_card_…`              | ok     | `card_declined`/`stolen_card`   |
//! | `4000000000009987`, `tok_chargeDeclinedLostCard`, `pm_card_…`                | ok     | `card_declined`/`lost_card`     |
//! | `4100000000000019`, `tok_chargeDeclinedFraudulent`, `pm_card_…`              | ok     | `card_declined`/`fraudulent`    |
//!
//! (Stripe itself refuses to attach the generic-decline and insufficient-funds cards; the
//! sandbox attaches them so that a declining card can be made the default and a retry
//! schedule watched.) Anything else is refused as `invalid_token`.
//!
//! Every id it hands out is derived from its inputs (the payment method id carries the
//! test card), so separate processes (the API and the payment worker) agree without shared
//! state, and the same idempotency key always gives the same outcome. Within a process it
//! also remembers each key's first outcome, as Stripe does, and counts both the charges made
//! (distinct keys: what a card would show) and the charge calls (every request, replays
//! included: what Stripe would have been asked).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use billing_domain::kernel::money::Money;
use sha2::{Digest, Sha256};

use billing_app::ports::*;

/// Ids of sandbox payment methods: `pm_sb_{card number}_{random}`.
const METHOD_PREFIX: &str = "pm_sb_";

struct TestCard {
    number: &'static str,
    aliases: &'static [&'static str],
    brand: &'static str,
    behaviour: Behaviour,
}

#[derive(Clone, Copy)]
enum Behaviour {
    Succeed,
    Decline(&'static str),
    RequireAction,
}

const CARDS: &[TestCard] = &[
    TestCard {
        number: "4242424242424242",
        aliases: &["tok_visa", "pm_card_visa"],
        brand: "visa",
        behaviour: Behaviour::Succeed,
    },
    TestCard {
        number: "5555555555554444",
        aliases: &["tok_mastercard", "pm_card_mastercard"],
        brand: "mastercard",
        behaviour: Behaviour::Succeed,
    },
    TestCard {
        number: "4000000000000002",
        aliases: &["tok_chargeDeclined", "pm_card_chargeDeclined"],
        brand: "visa",
        behaviour: Behaviour::Decline("generic_decline"),
    },
    TestCard {
        number: "4000000000009995",
        aliases: &[
            "tok_chargeDeclinedInsufficientFunds",
            "pm_card_chargeDeclinedInsufficientFunds",
        ],
        brand: "visa",
        behaviour: Behaviour::Decline("insufficient_funds"),
    },
    TestCard {
        number: "4000000000000341",
        aliases: &["tok_chargeCustomerFail", "pm_card_chargeCustomerFail"],
        brand: "visa",
        behaviour: Behaviour::Decline("generic_decline"),
    },
    TestCard {
        number: "4000002500003155",
        aliases: &[
            "tok_authenticationRequired",
            "pm_card_authenticationRequired",
        ],
        brand: "visa",
        behaviour: Behaviour::RequireAction,
    },
    TestCard {
        number: "4000000000009979",
        aliases: &[
            "tok_chargeDeclinedStolenCard",
            "pm_card_chargeDeclinedStolenCard",
        ],
        brand: "visa",
        behaviour: Behaviour::Decline("stolen_card"),
    },
    TestCard {
        number: "4000000000009987",
        aliases: &[
            "tok_chargeDeclinedLostCard",
            "pm_card_chargeDeclinedLostCard",
        ],
        brand: "visa",
        behaviour: Behaviour::Decline("lost_card"),
    },
    TestCard {
        number: "4100000000000019",
        aliases: &[
            "tok_chargeDeclinedFraudulent",
            "pm_card_chargeDeclinedFraudulent",
        ],
        brand: "visa",
        behaviour: Behaviour::Decline("fraudulent"),
    },
];

fn card_for_token(token: &str) -> Option<&'static TestCard> {
    CARDS
        .iter()
        .find(|c| c.number == token || c.aliases.contains(&token))
}

/// The test card a sandbox payment method id stands for.
fn card_of_method(id: &str) -> Option<&'static TestCard> {
    let number = id.strip_prefix(METHOD_PREFIX)?.split('_').next()?;
    CARDS.iter().find(|c| c.number == number)
}

fn derived(prefix: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("{prefix}{}", hex_prefix(&digest[..12]))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Default)]
pub struct SandboxGateway {
    /// The first outcome of each charge idempotency key, and the amount charged.
    charges: Mutex<HashMap<String, (ChargeOutcome, Money)>>,
    refunds: Mutex<HashMap<String, RefundOutcome>>,
    /// Every call to `charge`, a replay of a known key included.
    charge_calls: AtomicUsize,
}

impl SandboxGateway {
    pub fn new() -> Self {
        Self::default()
    }

    /// Charges made by this process (one per idempotency key, whatever the outcome): what
    /// the cards were charged. A replay of a known key is not counted; see [`Self::charge_calls`].
    pub fn charge_count(&self) -> usize {
        self.charges.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Charge requests this process received, replays of a known key and rejected ones
    /// included: how often the gateway was asked.
    pub fn charge_calls(&self) -> usize {
        self.charge_calls.load(Ordering::SeqCst)
    }

    /// Successful charges made by this process.
    pub fn succeeded_count(&self) -> usize {
        self.charges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|(o, _)| matches!(o, ChargeOutcome::Succeeded { .. }))
            .count()
    }
}

fn rejected(code: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::Rejected {
        code: code.to_owned(),
        message: message.into(),
    }
}

#[async_trait]
impl PaymentGateway for SandboxGateway {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn create_customer(&self, customer: &NewGatewayCustomer) -> Result<String, GatewayError> {
        Ok(derived("cus_sb_", &customer.idempotency_key))
    }

    async fn attach_payment_method(
        &self,
        customer: &str,
        token: &str,
    ) -> Result<CardDetails, GatewayError> {
        if !customer.starts_with("cus_sb_") {
            return Err(rejected("resource_missing", "no such sandbox customer"));
        }
        let (card, gateway_id) = match card_of_method(token) {
            Some(card) => (card, token.to_owned()),
            None => {
                let card = card_for_token(token).ok_or_else(|| {
                    rejected(
                        "invalid_token",
                        format!("`{token}` is not a sandbox test card or token, such as tok_visa or 4242424242424242"),
                    )
                })?;
                (
                    card,
                    format!("{METHOD_PREFIX}{}_{}", card.number, billing_app::new_ulid()),
                )
            }
        };
        Ok(CardDetails {
            gateway_id,
            brand: card.brand.to_owned(),
            last4: card.number[card.number.len() - 4..].to_owned(),
            exp_month: 12,
            exp_year: 2034,
            country: Some("US".to_owned()),
        })
    }

    async fn detach_payment_method(&self, gateway_id: &str) -> Result<(), GatewayError> {
        card_of_method(gateway_id)
            .map(|_| ())
            .ok_or_else(|| rejected("resource_missing", "no such sandbox payment method"))
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        self.charge_calls.fetch_add(1, Ordering::SeqCst);
        if let Some((first, _)) = self
            .charges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&request.idempotency_key)
        {
            return Ok(first.clone());
        }
        let card = card_of_method(&request.payment_method)
            .ok_or_else(|| rejected("resource_missing", "no such sandbox payment method"))?;
        let payment_intent = derived("pi_sb_", &request.idempotency_key);
        let outcome = match card.behaviour {
            Behaviour::Succeed => ChargeOutcome::Succeeded {
                charge: Some(derived("ch_sb_", &request.idempotency_key)),
                payment_intent,
            },
            Behaviour::Decline(decline_code) => ChargeOutcome::Declined {
                payment_intent: Some(payment_intent),
                code: "card_declined".into(),
                decline_code: Some(decline_code.into()),
                message: format!("Your card was declined ({decline_code})."),
            },
            Behaviour::RequireAction => ChargeOutcome::RequiresAction { payment_intent },
        };
        Ok(self
            .charges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(request.idempotency_key.clone())
            .or_insert((outcome, request.amount))
            .0
            .clone())
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundOutcome, GatewayError> {
        if let Some(first) = self
            .refunds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&request.idempotency_key)
        {
            return Ok(first.clone());
        }
        if !request.payment_intent.starts_with("pi_sb_") {
            return Err(rejected("resource_missing", "no such sandbox payment"));
        }
        let amount = request
            .amount
            .ok_or_else(|| rejected("parameter_missing", "the sandbox refunds given amounts"))?;
        let outcome = RefundOutcome {
            gateway_id: derived("re_sb_", &request.idempotency_key),
            amount,
        };
        Ok(self
            .refunds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(request.idempotency_key.clone())
            .or_insert(outcome)
            .clone())
    }

    /// The sandbox's 3-D Secure challenge is a page of ours with one button: once the
    /// customer sends it, the charge succeeds (with ids derived from the intent, so every
    /// process agrees).
    async fn action_outcome(&self, payment_intent: &str) -> Result<ChargeOutcome, GatewayError> {
        let Some(key) = payment_intent.strip_prefix("pi_sb_") else {
            return Err(rejected("resource_missing", "no such sandbox payment"));
        };
        Ok(ChargeOutcome::Succeeded {
            payment_intent: payment_intent.to_owned(),
            charge: Some(derived("ch_sb_", key)),
        })
    }

    async fn action_secret(&self, _payment_intent: &str) -> Result<Option<String>, GatewayError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use billing_domain::kernel::currency::Currency;

    fn charge_of(pm: &str, key: &str) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: key.into(),
            customer: "cus_sb_x".into(),
            payment_method: pm.into(),
            amount: Money {
                minor: 1000,
                currency: Currency::from_code("usd").unwrap(),
            },
            description: "test".into(),
            metadata: Vec::new(),
        }
    }

    #[tokio::test]
    async fn test_cards_behave_like_stripes_and_keys_charge_once() {
        let gateway = SandboxGateway::new();
        let customer = gateway
            .create_customer(&NewGatewayCustomer {
                idempotency_key: "acct_1".into(),
                account_id: "acct_1".into(),
                name: "A".into(),
                email: "a@example.test".into(),
            })
            .await
            .unwrap();
        let visa = gateway
            .attach_payment_method(&customer, "tok_visa")
            .await
            .unwrap();
        assert_eq!((visa.brand.as_str(), visa.last4.as_str()), ("visa", "4242"));
        let poor = gateway
            .attach_payment_method(&customer, "4000000000009995")
            .await
            .unwrap();
        let sca = gateway
            .attach_payment_method(&customer, "pm_card_authenticationRequired")
            .await
            .unwrap();
        assert!(gateway
            .attach_payment_method(&customer, "4111111111111111")
            .await
            .is_err());

        let ok = gateway
            .charge(&charge_of(&visa.gateway_id, "pay_1"))
            .await
            .unwrap();
        assert!(matches!(ok, ChargeOutcome::Succeeded { .. }));
        let again = gateway
            .charge(&charge_of(&visa.gateway_id, "pay_1"))
            .await
            .unwrap();
        assert_eq!(ok, again);
        let declined = gateway
            .charge(&charge_of(&poor.gateway_id, "pay_2"))
            .await
            .unwrap();
        assert!(
            matches!(&declined, ChargeOutcome::Declined { decline_code: Some(c), .. } if c == "insufficient_funds")
        );
        let action = gateway
            .charge(&charge_of(&sca.gateway_id, "pay_3"))
            .await
            .unwrap();
        assert!(matches!(action, ChargeOutcome::RequiresAction { .. }));
        assert_eq!(gateway.charge_count(), 3, "three keys: three charges");
        assert_eq!(gateway.charge_calls(), 4, "the replay of pay_1 was a call");
        assert_eq!(gateway.succeeded_count(), 1);

        // Another process (no shared memory) gives the same outcome for the same key.
        let other = SandboxGateway::new();
        assert_eq!(
            other
                .charge(&charge_of(&visa.gateway_id, "pay_1"))
                .await
                .unwrap(),
            ok
        );
    }
}
