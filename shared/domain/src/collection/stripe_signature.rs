//! Verifying inbound Stripe webhooks.
//!
//! Stripe signs each delivery with `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`
//! where each `v1` is the HMAC-SHA256 of `"<t>." + raw body bytes`, keyed with the whole text
//! of an endpoint signing secret (`whsec_…`); other schemes (`v0=…`) are ignored. That is the
//! scheme our own outgoing webhooks copy, so the arithmetic is [`crate::events::webhook::verify`];
//! this module adds what is Stripe's: the header name, the five-minute tolerance, and more
//! than one secret at a time (while a secret is rolled in Stripe's dashboard both sign, and
//! the two Stripe accounts of a sandbox and a live deployment can share one receiver).

use jiff::Timestamp;

pub use crate::events::webhook::SignatureError;

/// The request header Stripe signs with.
pub const HEADER: &str = "Stripe-Signature";
/// Stripe's default tolerance: a signed timestamp further than this from now is refused,
/// which is what stops a captured delivery from being replayed later.
pub const TOLERANCE_SECS: i64 = 300;

/// The signing secrets of the Stripe webhook endpoints that may call us. Its `Debug` never
/// shows a secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WebhookSecrets(Vec<String>);

impl WebhookSecrets {
    /// Empty secrets are dropped: they would let anyone who knows that sign.
    pub fn new(secrets: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self(
            secrets
                .into_iter()
                .map(Into::into)
                .filter(|s: &String| !s.is_empty())
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Accepts `body` when the header's timestamp is within [`TOLERANCE_SECS`] of `now` and
    /// one of its `v1` signatures is the HMAC of one of these secrets (compared in constant
    /// time). With no secrets nothing verifies.
    pub fn verify(&self, header: &str, body: &[u8], now: Timestamp) -> Result<(), SignatureError> {
        let now = now.as_second();
        for secret in &self.0 {
            match crate::events::webhook::verify(header, body, secret, now, TOLERANCE_SECS) {
                Err(SignatureError::Mismatch) => continue,
                // Ok, and a malformed or stale header, are the same for every secret.
                decided => return decided,
            }
        }
        // Without any secret a malformed header still says so; a well-formed one mismatches.
        crate::events::webhook::verify(header, body, "", now, TOLERANCE_SECS)
            .and(Err(SignatureError::Mismatch))
    }
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecrets({} secrets)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::webhook::{sign, signature_header};
    use proptest::prelude::*;

    const T: i64 = 1_763_800_000;

    fn at(t: i64) -> Timestamp {
        Timestamp::from_second(t).unwrap()
    }

    fn secrets(s: &[&str]) -> WebhookSecrets {
        WebhookSecrets::new(s.iter().copied())
    }

    #[test]
    fn a_stripe_header_with_several_schemes_and_signatures_verifies() {
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let good = sign("whsec_current", T, body);
        // Stripe puts the test-mode `v0` next to `v1`; unknown schemes are ignored.
        let header = format!(
            "t={T},v1={},v1={good},v0={}",
            "ab".repeat(32),
            "cd".repeat(32)
        );
        assert_eq!(
            secrets(&["whsec_current"]).verify(&header, body, at(T + 10)),
            Ok(())
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let body = b"{}";
        let both = secrets(&["whsec_new", "whsec_old"]);
        for secret in ["whsec_new", "whsec_old"] {
            let header = signature_header(&[secret], T, body);
            assert_eq!(both.verify(&header, body, at(T)), Ok(()));
        }
        let header = signature_header(&["whsec_other"], T, body);
        assert_eq!(
            both.verify(&header, body, at(T)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_or_broken_parts_are_malformed() {
        let s = secrets(&["whsec_a"]);
        for header in ["", "v1=00", "t=,v1=00", "t=abc,v1=00", "garbage"] {
            assert_eq!(
                s.verify(header, b"{}", at(T)),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
        assert_eq!(
            secrets(&[]).verify("", b"{}", at(T)),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_timestamp_without_a_v1_signature_verifies_nothing() {
        let header = format!("t={T},v0={}", sign("whsec_a", T, b"{}"));
        assert_eq!(
            secrets(&["whsec_a"]).verify(&header, b"{}", at(T)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn no_secrets_verify_nothing_and_empty_secrets_are_dropped() {
        let header = signature_header(&[""], T, b"{}");
        assert_eq!(
            secrets(&[""]).verify(&header, b"{}", at(T)),
            Err(SignatureError::Mismatch)
        );
        assert!(secrets(&["", ""]).is_empty());
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        assert_eq!(
            format!("{:?}", secrets(&["whsec_a", "whsec_b"])),
            "WebhookSecrets(2 secrets)"
        );
    }

    proptest! {
        #[test]
        fn a_signed_body_verifies_within_the_tolerance_and_only_then(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            secret in "whsec_[A-Za-z0-9]{1,40}",
            skew in -2 * TOLERANCE_SECS..2 * TOLERANCE_SECS,
        ) {
            let header = signature_header(&[secret.as_str()], T, &body);
            let result = secrets(&[&secret]).verify(&header, &body, at(T + skew));
            if skew.abs() <= TOLERANCE_SECS {
                prop_assert_eq!(result, Ok(()));
            } else {
                prop_assert_eq!(result, Err(SignatureError::Stale));
            }
        }

        #[test]
        fn any_change_to_the_body_or_the_timestamp_breaks_the_signature(
            body in proptest::collection::vec(any::<u8>(), 1..256),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
            shift in 1i64..=TOLERANCE_SECS,
        ) {
            let s = secrets(&["whsec_test"]);
            let good = sign("whsec_test", T, &body);
            let mut tampered = body.clone();
            tampered[flip.index(body.len())] ^= 1 << bit;
            let header = format!("t={T},v1={good}");
            prop_assert_eq!(s.verify(&header, &tampered, at(T)), Err(SignatureError::Mismatch));
            // The timestamp is signed too: moving it (still within tolerance) breaks it.
            let moved = format!("t={},v1={good}", T + shift);
            prop_assert_eq!(s.verify(&moved, &body, at(T)), Err(SignatureError::Mismatch));
        }

        #[test]
        fn verification_does_not_depend_on_where_the_signature_sits(
            decoys in proptest::collection::vec("[0-9a-f]{64}", 0..4),
            position in any::<prop::sample::Index>(),
        ) {
            let body = br#"{"id":"evt_2"}"#;
            let mut v1s: Vec<String> = decoys;
            v1s.insert(position.index(v1s.len() + 1), sign("whsec_k", T, body));
            let header = std::iter::once(format!("t={T}"))
                .chain(v1s.iter().map(|s| format!("v1={s}")))
                .collect::<Vec<_>>()
                .join(",");
            prop_assert_eq!(secrets(&["whsec_other", "whsec_k"]).verify(&header, body, at(T)), Ok(()));
        }
    }
}
