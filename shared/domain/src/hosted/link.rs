//! A hosted link is `/i/{token}`: 32 bytes from the OS's CSPRNG, base64url (43 characters).
//! Only the token's SHA-256 is stored, as the key the page looks the link up by, so a
//! reader of the table cannot open any page. Links carry their invoice's link epoch when
//! minted; revoking bumps the epoch, which kills every link minted before at once (one
//! per email, one per API call), without having to know their tokens.

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use ulid::Ulid;

use crate::kernel::ids::{InvoiceId, PaymentId, TenantId};

/// Characters of a token: 32 bytes in unpadded base64url.
pub const TOKEN_LEN: usize = 43;

/// A minted link, stored under the hash of its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedLink {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub tenant_id: TenantId,
    pub invoice_id: InvoiceId,
    /// The invoice's link epoch when minted: the link opens the page while it is current.
    pub epoch: u32,
    pub created_at: Timestamp,
}

impl HostedLink {
    /// Whether the link still opens its page, given the invoice's current epoch.
    pub fn is_live(&self, current_epoch: u32) -> bool {
        self.epoch == current_epoch
    }
}

/// The key a token's link is stored and found under.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `text` has a token's shape: anything else is refused before any read.
pub fn looks_like_token(text: &str) -> bool {
    text.len() == TOKEN_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The form token of the page served under `token` for `purpose` (`pay`, `authenticate`):
/// an HMAC keyed by the link's own secret, so only a page served under the link carries a
/// valid one, and a form of one invoice is refused under another's link.
pub fn form_token(token: &str, purpose: &str) -> String {
    hex::encode(form_mac(token, purpose).finalize().into_bytes())
}

/// Whether `given` is the form token of `token` for `purpose` (compared in constant time).
pub fn form_token_matches(token: &str, purpose: &str, given: &str) -> bool {
    let Ok(given) = hex::decode(given) else {
        return false;
    };
    form_mac(token, purpose).verify_slice(&given).is_ok()
}

/// The payment attempt a hosted page's form makes for an invoice shown at `version`: the
/// same form sent twice (or twice at once) names one attempt, so it charges once; once an
/// attempt is recorded the invoice's version moves and the page's next form makes a new one.
pub fn page_payment_id(invoice: InvoiceId, version: u64) -> PaymentId {
    let digest = Sha256::digest(format!("hosted-pay:{invoice}:{version}").as_bytes());
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    // The invoice's own time part keeps its attempts together in id order.
    PaymentId::from_ulid(Ulid::from_parts(
        invoice.ulid().timestamp_ms(),
        u128::from_be_bytes(random),
    ))
}

fn form_mac(token: &str, purpose: &str) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"hosted-form:");
    mac.update(purpose.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO-_";

    #[test]
    fn a_token_has_one_shape() {
        assert!(looks_like_token(TOKEN));
        assert!(!looks_like_token(&TOKEN[1..]));
        assert!(!looks_like_token(&TOKEN.replace('-', "/")));
        assert!(!looks_like_token(&TOKEN.replace('a', "é")[..TOKEN_LEN]));
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        // printf 'abc' | sha256sum
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_form_token_binds_its_link_and_purpose() {
        let pay = form_token(TOKEN, "pay");
        assert!(form_token_matches(TOKEN, "pay", &pay));
        assert!(!form_token_matches(TOKEN, "authenticate", &pay));
        let other = TOKEN.replace('a', "b");
        assert!(!form_token_matches(&other, "pay", &pay));
        assert!(!form_token_matches(TOKEN, "pay", "not hex"));
        assert!(!form_token_matches(TOKEN, "pay", &pay[..10]));
    }

    #[test]
    fn a_page_form_names_one_attempt_per_invoice_version() {
        let invoice = InvoiceId::from_ulid(Ulid::from_parts(1_700_000_000_000, 7));
        assert_eq!(page_payment_id(invoice, 3), page_payment_id(invoice, 3));
        assert_ne!(page_payment_id(invoice, 3), page_payment_id(invoice, 4));
        let other = InvoiceId::from_ulid(Ulid::from_parts(1_700_000_000_000, 8));
        assert_ne!(page_payment_id(invoice, 3), page_payment_id(other, 3));
    }

    #[test]
    fn only_the_current_epoch_is_live() {
        let link = HostedLink {
            token_hash: hash_token(TOKEN),
            tenant_id: TenantId::from_ulid(ulid::Ulid::nil()),
            invoice_id: InvoiceId::from_ulid(ulid::Ulid::nil()),
            epoch: 2,
            created_at: Timestamp::UNIX_EPOCH,
        };
        assert!(link.is_live(2));
        assert!(!link.is_live(3));
    }
}
