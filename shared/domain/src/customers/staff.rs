//! Staff sign-in: a tenant trusts one identity provider (Cognito, or any OIDC issuer), and
//! its staff call the API with `Authorization: Bearer <JWT>` issued by it.
//!
//! A token is accepted only when it is signed RS256 or ES256 by a key of the provider's
//! JWKS (any other `alg`, `none` and the HMAC family included, is refused before a key is
//! looked at, so a public key can never serve as an HMAC secret), its `iss` is the
//! provider's issuer, its `aud` names the provider's audience, and `exp` (required) and
//! `nbf` (when present) hold at `now` give or take [`CLOCK_SKEW`]. The provider's tenant
//! claim must name the tenant (its id) and its role claim must map to one of the four
//! roles. Everything here is pure: fetching and caching the JWKS is the app's.

use std::collections::BTreeMap;

use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::customers::access::Role;
use crate::events::webhook;
use crate::kernel::deployment::Deployment;
use crate::kernel::error::{ErrorCode, ValidationError};
use crate::kernel::ids::TenantId;
use crate::kernel::time::later;

/// How far `exp` and `nbf` may be off our clock: the issuer's clock and ours drift.
pub const CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(60);

/// The claims Cognito puts the tenant attribute and the groups in; the defaults.
pub const DEFAULT_TENANT_CLAIM: &str = "custom:tenant_id";
pub const DEFAULT_ROLE_CLAIM: &str = "cognito:groups";

const MAX_TEXT: usize = 500;
const MAX_ROLE_VALUES: usize = 20;

/// The identity provider a tenant trusts for staff sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "issuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
    "audience": "4example5clientid6",
    "jwks_url": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123/.well-known/jwks.json",
    "tenant_claim": "custom:tenant_id",
    "role_claim": "cognito:groups",
    "roles": {"admin": "admin", "billing_admin": "billing_admin", "support": "support", "finance_viewer": "finance_viewer"}
}))]
pub struct IdentityProvider {
    /// The token's `iss`, exactly.
    pub issuer: String,
    /// What the token's `aud` must name (Cognito: the app client id).
    pub audience: String,
    /// Where the issuer's signing keys are published (https).
    pub jwks_url: String,
    /// The claim whose value is this tenant's id (`ten_…`).
    pub tenant_claim: String,
    /// The claim naming the user's role: a string, or an array of strings (Cognito groups).
    pub role_claim: String,
    /// Role claim value → role.
    pub roles: BTreeMap<String, Role>,
}

/// A tenant's identity provider as a client sets it. Claims and role values default to
/// Cognito's: `custom:tenant_id`, `cognito:groups`, and groups named after the roles.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "issuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
    "audience": "4example5clientid6",
    "jwks_url": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123/.well-known/jwks.json"
}))]
pub struct IdentityProviderInput {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    pub tenant_claim: Option<String>,
    pub role_claim: Option<String>,
    /// Role claim value → role; at most 20. Default: each role's own name.
    pub roles: Option<BTreeMap<String, Role>>,
}

impl IdentityProviderInput {
    pub fn validate(&self, deployment: Deployment) -> Result<IdentityProvider, ValidationError> {
        let jwks_url = webhook::validate_url(&self.jwks_url, deployment).map_err(|e| {
            ValidationError::new(e.code, "jwks_url", format!("the JWKS URL: {}", e.message))
        })?;
        let roles = match &self.roles {
            None => [
                Role::Admin,
                Role::BillingAdmin,
                Role::Support,
                Role::FinanceViewer,
            ]
            .into_iter()
            .map(|r| (r.as_str().to_owned(), r))
            .collect(),
            Some(roles) if roles.is_empty() || roles.len() > MAX_ROLE_VALUES => {
                return Err(ValidationError::new(
                    ErrorCode::InvalidValue,
                    "roles",
                    format!("map 1 to {MAX_ROLE_VALUES} role claim values to roles"),
                ))
            }
            Some(roles) => {
                for value in roles.keys() {
                    text(value, "roles")?;
                }
                roles.clone()
            }
        };
        Ok(IdentityProvider {
            issuer: text(&self.issuer, "issuer")?,
            audience: text(&self.audience, "audience")?,
            jwks_url,
            tenant_claim: text(
                self.tenant_claim.as_deref().unwrap_or(DEFAULT_TENANT_CLAIM),
                "tenant_claim",
            )?,
            role_claim: text(
                self.role_claim.as_deref().unwrap_or(DEFAULT_ROLE_CLAIM),
                "role_claim",
            )?,
            roles,
        })
    }
}

/// 1 to 500 characters, no surrounding spaces (compared exactly with a token's claims).
fn text(value: &str, param: &'static str) -> Result<String, ValidationError> {
    if value.is_empty() || value.chars().count() > MAX_TEXT || value.trim() != value {
        return Err(ValidationError::new(
            ErrorCode::InvalidValue,
            param,
            format!("1 to {MAX_TEXT} characters without surrounding spaces"),
        ));
    }
    Ok(value.to_owned())
}

/// That `tenant` trusts `provider`: what authentication finds by a token's issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerTrust {
    pub tenant_id: TenantId,
    pub livemode: bool,
    pub provider: IdentityProvider,
}

/// Who signed in: the token's `sub` and, when it has one, `email`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffUser {
    pub subject: String,
    pub email: Option<String>,
}

/// Why a token is refused: a stable 401 code and what to tell the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRefusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> TokenRefusal {
    TokenRefusal {
        code,
        message: message.into(),
    }
}

/// The only signature algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Es256,
}

/// A token split and decoded, its signature not checked yet.
#[derive(Debug, Clone)]
pub struct Unverified {
    pub algorithm: Algorithm,
    pub kid: String,
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

/// Whether a bearer credential is shaped like a JWT (three base64url parts) rather than
/// an API key.
pub fn looks_like_jwt(bearer: &str) -> bool {
    bearer.split('.').count() == 3 && !bearer.starts_with("sk_")
}

fn b64(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}

impl Unverified {
    /// Splits and decodes `token`, refusing any `alg` but RS256 and ES256.
    pub fn parse(token: &str) -> Result<Self, TokenRefusal> {
        let malformed = |what: &str| refuse(ErrorCode::JwtMalformed, format!("the token {what}"));
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("is not three base64url parts"));
        };
        let json =
            |part: &str| -> Option<Map<String, Value>> { serde_json::from_slice(&b64(part)?).ok() };
        let head = json(header).ok_or_else(|| malformed("header is not a JSON object"))?;
        let claims = json(payload).ok_or_else(|| malformed("payload is not a JSON object"))?;
        let algorithm = match head.get("alg").and_then(Value::as_str) {
            Some("RS256") => Algorithm::Rs256,
            Some("ES256") => Algorithm::Es256,
            other => {
                return Err(refuse(
                    ErrorCode::JwtAlgorithmRefused,
                    format!(
                        "the token's alg {} is not accepted; only RS256 and ES256 are",
                        other.unwrap_or("(none)")
                    ),
                ))
            }
        };
        let kid = head
            .get("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("header has no kid"))?
            .to_owned();
        let signature = b64(signature).ok_or_else(|| malformed("signature is not base64url"))?;
        Ok(Self {
            algorithm,
            kid,
            claims,
            signing_input: format!("{header}.{payload}"),
            signature,
        })
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    pub fn issuer(&self) -> Result<&str, TokenRefusal> {
        self.claim_str("iss")
            .ok_or_else(|| refuse(ErrorCode::JwtMalformed, "the token has no iss"))
    }

    /// Checks the signature with `key`, which must be of the token's algorithm.
    pub fn verify_signature(&self, key: &Jwk) -> Result<(), TokenRefusal> {
        let mismatch = || {
            refuse(
                ErrorCode::JwtAlgorithmRefused,
                format!("the key {} is not a key for {:?}", key.kid, self.algorithm),
            )
        };
        if key.alg.as_deref().is_some_and(|alg| alg != self.alg_name()) {
            return Err(mismatch());
        }
        let message = self.signing_input.as_bytes();
        let verified = match (self.algorithm, key.kty.as_str()) {
            (Algorithm::Rs256, "RSA") => {
                let (Some(n), Some(e)) = (key.n.as_deref(), key.e.as_deref()) else {
                    return Err(mismatch());
                };
                let (Some(n), Some(e)) = (b64(n), b64(e)) else {
                    return Err(mismatch());
                };
                RsaPublicKeyComponents { n, e }
                    .verify(
                        &signature::RSA_PKCS1_2048_8192_SHA256,
                        message,
                        &self.signature,
                    )
                    .is_ok()
            }
            (Algorithm::Es256, "EC") if key.crv.as_deref() == Some("P-256") => {
                let (Some(x), Some(y)) = (
                    key.x.as_deref().and_then(b64),
                    key.y.as_deref().and_then(b64),
                ) else {
                    return Err(mismatch());
                };
                let point = [&[4u8][..], &x, &y].concat();
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, &self.signature)
                    .is_ok()
            }
            _ => return Err(mismatch()),
        };
        if verified {
            Ok(())
        } else {
            Err(refuse(
                ErrorCode::JwtSignatureInvalid,
                "the token's signature does not verify",
            ))
        }
    }

    fn alg_name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }

    /// `iss`, `aud`, `exp` and `nbf` against `provider` at `now`, with [`CLOCK_SKEW`].
    pub fn check_claims(
        &self,
        provider: &IdentityProvider,
        now: Timestamp,
    ) -> Result<(), TokenRefusal> {
        if self.issuer()? != provider.issuer {
            return Err(refuse(
                ErrorCode::JwtIssuerUntrusted,
                "the token's issuer is not the tenant's identity provider",
            ));
        }
        let audience_named = match self.claims.get("aud") {
            Some(Value::String(aud)) => *aud == provider.audience,
            Some(Value::Array(auds)) => auds
                .iter()
                .any(|a| a.as_str() == Some(provider.audience.as_str())),
            _ => false,
        };
        if !audience_named {
            return Err(refuse(
                ErrorCode::JwtAudienceMismatch,
                format!("the token's aud does not name {}", provider.audience),
            ));
        }
        let time = |name: &str| -> Result<Option<Timestamp>, TokenRefusal> {
            match self.claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_i64()
                    .and_then(|s| Timestamp::from_second(s).ok())
                    .map(Some)
                    .ok_or_else(|| {
                        refuse(
                            ErrorCode::JwtMalformed,
                            format!("the token's {name} is not seconds since the epoch"),
                        )
                    }),
            }
        };
        let expires =
            time("exp")?.ok_or_else(|| refuse(ErrorCode::JwtMalformed, "the token has no exp"))?;
        if now >= later(expires, CLOCK_SKEW) {
            return Err(refuse(
                ErrorCode::JwtExpired,
                format!("the token expired at {expires}"),
            ));
        }
        if let Some(not_before) = time("nbf")? {
            if later(now, CLOCK_SKEW) < not_before {
                return Err(refuse(
                    ErrorCode::JwtNotYetValid,
                    format!("the token is not valid before {not_before}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether the provider's tenant claim names `tenant`.
    pub fn names_tenant(&self, provider: &IdentityProvider, tenant: TenantId) -> bool {
        self.claim_str(&provider.tenant_claim) == Some(tenant.to_string().as_str())
    }

    /// The role the provider's role claim maps to. An array (Cognito's groups) may hold
    /// other values too; if it maps to several roles, the most capable one applies.
    pub fn role(&self, provider: &IdentityProvider) -> Result<Role, TokenRefusal> {
        let values: Vec<&str> = match self.claims.get(&provider.role_claim) {
            Some(Value::String(value)) => vec![value.as_str()],
            Some(Value::Array(values)) => values.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        values
            .iter()
            .filter_map(|v| provider.roles.get(*v).copied())
            .min_by_key(|role| capability_rank(*role))
            .ok_or_else(|| {
                refuse(
                    ErrorCode::JwtRoleInvalid,
                    format!(
                        "the token's {} names none of the roles this tenant maps ({})",
                        provider.role_claim,
                        provider
                            .roles
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    }

    /// The signed-in user: `sub` (required) and `email`.
    pub fn user(&self) -> Result<StaffUser, TokenRefusal> {
        Ok(StaffUser {
            subject: self
                .claim_str("sub")
                .ok_or_else(|| refuse(ErrorCode::JwtMalformed, "the token has no sub"))?
                .to_owned(),
            email: self.claim_str("email").map(str::to_owned),
        })
    }
}

/// Admin first: the order in which several roles of one user are preferred.
fn capability_rank(role: Role) -> u8 {
    match role {
        Role::Admin => 0,
        Role::BillingAdmin => 1,
        Role::Support => 2,
        Role::FinanceViewer => 3,
    }
}

/// One public key of a JWKS (RFC 7517): RSA (`n`, `e`) or EC P-256 (`x`, `y`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: String,
    pub alg: Option<String>,
    pub n: Option<String>,
    pub e: Option<String>,
    pub crv: Option<String>,
    pub x: Option<String>,
    pub y: Option<String>,
}

/// A JWKS document: `{"keys": [...]}`. Keys of other types are kept and never match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
}

impl KeySet {
    pub fn key(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    fn enc(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn provider() -> IdentityProvider {
        IdentityProviderInput {
            issuer: "https://idp.example".into(),
            audience: "client-1".into(),
            jwks_url: "https://idp.example/jwks.json".into(),
            tenant_claim: None,
            role_claim: None,
            roles: None,
        }
        .validate(Deployment::Deployed)
        .unwrap()
    }

    fn es256(claims: Value) -> (String, Jwk) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = Jwk {
            kty: "EC".into(),
            kid: "k1".into(),
            alg: None,
            n: None,
            e: None,
            crv: Some("P-256".into()),
            x: Some(enc(&point[1..33])),
            y: Some(enc(&point[33..])),
        };
        let input = format!(
            "{}.{}",
            enc(br#"{"alg":"ES256","kid":"k1"}"#),
            enc(claims.to_string().as_bytes())
        );
        let sig = pair.sign(&rng, input.as_bytes()).unwrap();
        (format!("{input}.{}", enc(sig.as_ref())), jwk)
    }

    #[test]
    fn a_good_token_passes_and_names_its_user_tenant_and_role() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let tenant = TenantId::from_ulid(ulid::Ulid::from_parts(1, 2));
        let (token, jwk) = es256(json!({
            "iss": "https://idp.example", "aud": ["other", "client-1"], "sub": "u1",
            "email": "a@b.example", "exp": 1_800_000_100, "nbf": 1_800_000_030,
            "custom:tenant_id": tenant.to_string(), "cognito:groups": ["staff", "support", "finance_viewer"]
        }));
        let t = Unverified::parse(&token).unwrap();
        t.verify_signature(&jwk).unwrap();
        t.check_claims(&provider(), now).unwrap();
        assert!(t.names_tenant(&provider(), tenant));
        assert_eq!(t.role(&provider()).unwrap(), Role::Support);
        assert_eq!(t.user().unwrap().email.as_deref(), Some("a@b.example"));
        // The skew, and no further.
        let late = Timestamp::from_second(1_800_000_100 + 59).unwrap();
        t.check_claims(&provider(), late).unwrap();
        let too_late = Timestamp::from_second(1_800_000_100 + 60).unwrap();
        assert_eq!(
            t.check_claims(&provider(), too_late).unwrap_err().code,
            ErrorCode::JwtExpired
        );
        let early = Timestamp::from_second(1_800_000_030 - 61).unwrap();
        assert_eq!(
            t.check_claims(&provider(), early).unwrap_err().code,
            ErrorCode::JwtNotYetValid
        );
    }

    #[test]
    fn a_changed_payload_or_a_key_of_another_type_is_refused() {
        let (token, jwk) = es256(json!({"iss": "https://idp.example", "exp": 1}));
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = enc(br#"{"iss":"https://idp.example","exp":2}"#);
        let forged = Unverified::parse(&parts.join(".")).unwrap();
        assert_eq!(
            forged.verify_signature(&jwk).unwrap_err().code,
            ErrorCode::JwtSignatureInvalid
        );
        let rsa = Jwk {
            kty: "RSA".into(),
            ..jwk
        };
        let t = Unverified::parse(&token).unwrap();
        assert_eq!(
            t.verify_signature(&rsa).unwrap_err().code,
            ErrorCode::JwtAlgorithmRefused
        );
    }

    #[test]
    fn only_the_two_algorithms_parse() {
        for alg in ["none", "HS256", "RS512", "PS256"] {
            let token = format!(
                "{}.{}.",
                enc(format!(r#"{{"alg":"{alg}","kid":"k"}}"#).as_bytes()),
                enc(b"{}")
            );
            assert_eq!(
                Unverified::parse(&token).unwrap_err().code,
                ErrorCode::JwtAlgorithmRefused,
                "{alg}"
            );
        }
        assert!(!looks_like_jwt("sk_test_abc"));
        assert!(looks_like_jwt("a.b.c"));
    }

    #[test]
    fn a_provider_needs_an_https_jwks_url_and_known_roles() {
        let mut input = IdentityProviderInput {
            issuer: "https://idp.example".into(),
            audience: "client-1".into(),
            jwks_url: "http://idp.example/jwks.json".into(),
            tenant_claim: None,
            role_claim: None,
            roles: None,
        };
        let err = input.validate(Deployment::Deployed).unwrap_err();
        assert_eq!(
            (err.code, err.param.as_str()),
            (ErrorCode::InsecureUrl, "jwks_url")
        );
        input.jwks_url = "https://idp.example/jwks.json".into();
        input.roles = Some(BTreeMap::new());
        assert_eq!(
            input.validate(Deployment::Deployed).unwrap_err().param,
            "roles"
        );
        input.roles = None;
        input.audience = " client".into();
        assert_eq!(
            input.validate(Deployment::Deployed).unwrap_err().param,
            "audience"
        );
    }
}
