//! Staff sign-in over HTTP, on both stores: a tenant trusts an identity provider
//! (`/v1/settings/identity-provider`), whose RS256 and ES256 tokens then act with the role
//! their claim names, and the audit names the user. Every kind of bad token is refused
//! with its own 401 code. The keys are generated here (RSA 2048 and EC P-256) and the
//! issuer's JWKS is served from 127.0.0.1 by the test; nothing leaves the machine. The
//! clock is the test's, so the JWKS refetch rule is checked without waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::routing::get;
use base64::Engine;
use billing_app::ports::Store;
use billing_aws::HttpKeySets;
use billing_domain::kernel::deployment::Deployment;
use billing_tests::api::{problem, Api};
use billing_tests::clock::ManualClock;
use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

const NOW: &str = "2027-03-01T10:00:00Z";
const ISSUER: &str = "https://idp.example/pool-1";
const AUDIENCE: &str = "billing-console";

fn enc(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The issuer's signing keys, made once per test process (an RSA key takes a while).
struct Keys {
    rsa: rsa::RsaPrivateKey,
    ec_pkcs8: Vec<u8>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("an RSA key");
        let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .expect("an EC key")
        .as_ref()
        .to_vec();
        Keys { rsa, ec_pkcs8 }
    })
}

fn ec_pair() -> EcdsaKeyPair {
    EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &keys().ec_pkcs8,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap()
}

fn rsa_jwk(kid: &str) -> Value {
    let public = keys().rsa.to_public_key();
    json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
           "n": enc(&public.n().to_bytes_be()), "e": enc(&public.e().to_bytes_be())})
}

fn ec_jwk(kid: &str) -> Value {
    let pair = ec_pair();
    let point = pair.public_key().as_ref();
    json!({"kty": "EC", "kid": kid, "crv": "P-256", "use": "sig",
           "x": enc(&point[1..33]), "y": enc(&point[33..])})
}

/// How a test token is signed.
enum Sign {
    Rs256(&'static str),
    Es256(&'static str),
    /// HMAC-SHA256 keyed with the RSA public key's PEM: the algorithm-confusion attack.
    Hs256WithPublicKey,
    /// `alg: none`, no signature.
    Unsigned,
}

fn mint(sign: Sign, claims: &Value) -> String {
    let header = match sign {
        Sign::Rs256(kid) => json!({"alg": "RS256", "kid": kid, "typ": "JWT"}),
        Sign::Es256(kid) => json!({"alg": "ES256", "kid": kid, "typ": "JWT"}),
        Sign::Hs256WithPublicKey => json!({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}),
        Sign::Unsigned => json!({"alg": "none", "kid": "rsa-1", "typ": "JWT"}),
    };
    let input = format!(
        "{}.{}",
        enc(header.to_string().as_bytes()),
        enc(claims.to_string().as_bytes())
    );
    let signature = match sign {
        Sign::Rs256(_) => {
            let signer = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(keys().rsa.clone());
            signer.sign(input.as_bytes()).to_vec()
        }
        Sign::Es256(_) => ec_pair()
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec(),
        Sign::Hs256WithPublicKey => {
            let pem = keys()
                .rsa
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap();
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pem.as_bytes());
            ring::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
        }
        Sign::Unsigned => Vec::new(),
    };
    format!("{input}.{}", enc(&signature))
}

/// The issuer's JWKS endpoint on 127.0.0.1: serves `keys`, counting requests.
#[derive(Clone, Default)]
struct Issuer {
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    async fn serve(keys: Vec<Value>) -> (Self, String) {
        let issuer = Issuer {
            keys: Arc::new(Mutex::new(keys)),
            ..Default::default()
        };
        let state = issuer.clone();
        let app = axum::Router::new().route(
            "/jwks.json",
            get(move || {
                let state = state.clone();
                async move {
                    state.fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"keys": *state.keys.lock().unwrap()}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (issuer, url)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn publish(&self, key: Value) {
        self.keys.lock().unwrap().push(key);
    }
}

/// A served API whose tenant trusts the test's issuer.
struct World {
    admin: Api,
    tenant: String,
    issuer: Issuer,
    clock: Arc<ManualClock>,
    now: Timestamp,
}

impl World {
    async fn start(store: Arc<dyn Store>) -> Self {
        let now: Timestamp = NOW.parse().unwrap();
        let clock = ManualClock::at(now);
        let app = billing_tests::app_with_clock(store, clock.clone())
            .with_key_sets(Arc::new(HttpKeySets::new(Deployment::Local)));
        let (admin, tenant) = Api::start(app, "Staffed").await;
        let (issuer, jwks_url) = Issuer::serve(vec![rsa_jwk("rsa-1"), ec_jwk("ec-1")]).await;
        let provider = admin
            .ok(
                Method::PUT,
                "/v1/settings/identity-provider",
                Some(&json!({"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": jwks_url})),
            )
            .await;
        assert_eq!(provider["tenant_claim"], "custom:tenant_id");
        assert_eq!(provider["role_claim"], "cognito:groups");
        World {
            admin,
            tenant: tenant.id.to_string(),
            issuer,
            clock,
            now,
        }
    }

    /// A staff user's claims, valid for an hour from now, in Cognito's shape.
    fn claims(&self, role: &str) -> Value {
        let now = self.now.as_second();
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "5f1e-staff-ana", "email": "ana@staff.example",
            "iat": now, "nbf": now - 5, "exp": now + 3600, "token_use": "id",
            "custom:tenant_id": self.tenant, "cognito:groups": ["everyone", role]
        })
    }

    fn caller(&self, token: &str) -> Api {
        self.admin.with_key(token)
    }

    /// The token is refused with 401 `code`.
    async fn refused(&self, token: &str, code: &str) {
        let response = self
            .caller(token)
            .send(Method::GET, "/v1/accounts", None)
            .await;
        let problem = problem(response, StatusCode::UNAUTHORIZED, code).await;
        assert!(
            problem["hint"]
                .as_str()
                .unwrap()
                .contains("identity provider"),
            "{problem}"
        );
    }
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

/// A billing admin's RS256 token and a finance viewer's ES256 token each do what their
/// role may and get 403 for what it may not; the audit names the user by subject and
/// email, and keys by key id.
async fn staff_tokens_act_with_their_role_and_the_audit_names_the_user(store: Arc<dyn Store>) {
    let w = World::start(store).await;
    let billing_admin = w.caller(&mint(Sign::Rs256("rsa-1"), &w.claims("billing_admin")));
    let account = billing_admin
        .created(
            "/v1/accounts",
            json!({"email": "customer@example.com", "name": "Customer", "currency": "usd"}),
        )
        .await;
    let account_id = account["id"].as_str().unwrap();
    let (status, body) = billing_admin.call(Method::GET, "/v1/api-keys", None).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );

    let viewer = w.caller(&mint(Sign::Es256("ec-1"), &w.claims("finance_viewer")));
    assert_eq!(viewer.list("/v1/accounts").await.len(), 1);
    let (status, body) = viewer
        .call(
            Method::POST,
            "/v1/accounts",
            Some(&json!({"email": "x@example.com", "currency": "usd"})),
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );

    let audit = w
        .admin
        .get(&format!("/v1/audit-log?entity_id={account_id}"))
        .await;
    let actor = &audit["data"][0]["actor"];
    assert_eq!(actor["subject"], "5f1e-staff-ana", "{audit}");
    assert_eq!(actor["email"], "ana@staff.example");
    assert_eq!(actor["role"], "billing_admin");
    assert_eq!(actor["key_id"], Value::Null);
    assert_eq!(actor["via"], "api");
    // The setting itself was made with the admin key, and its audit says so.
    let audit = w
        .admin
        .get(&format!("/v1/audit-log?entity_id={}", w.tenant))
        .await;
    let setting = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["entity_type"] == "identity_provider")
        .expect("the setting's audit record");
    assert!(setting["actor"]["key_id"].as_str().is_some(), "{setting}");
    assert_eq!(setting["actor"].get("subject"), None);
    let events = w
        .admin
        .get("/v1/events?type=identity_provider.updated")
        .await;
    assert_eq!(events["data"][0]["data"]["audience"], AUDIENCE, "{events}");
    // One fetch of the JWKS served both keys.
    assert_eq!(w.issuer.fetches(), 1);
}

/// Only an admin sets the provider, and only with an https JWKS URL (a local deployment
/// may also use the loopback host, as this test does).
async fn the_setting_is_for_admins_and_wants_https(store: Arc<dyn Store>) {
    let w = World::start(store).await;
    let body =
        json!({"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": "http://idp.example/jwks.json"});
    let response = w
        .admin
        .send(Method::PUT, "/v1/settings/identity-provider", Some(&body))
        .await;
    let problem = problem(response, StatusCode::BAD_REQUEST, "insecure_url").await;
    assert_eq!(problem["param"], "jwks_url");
    let support = w.caller(&mint(Sign::Rs256("rsa-1"), &w.claims("support")));
    let (status, _) = support
        .call(Method::PUT, "/v1/settings/identity-provider", Some(&body))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        support.get("/v1/settings/identity-provider").await["issuer"],
        ISSUER
    );
}

async fn alg_none_is_refused(store: Arc<dyn Store>) {
    let w = World::start(store).await;
    let token = mint(Sign::Unsigned, &w.claims("admin"));
    w.refused(&token, "jwt_algorithm_refused").await;
    assert_eq!(w.issuer.fetches(), 0, "refused before any key is looked at");
}

async fn hs256_signed_with_the_public_key_is_refused(store: Arc<dyn Store>) {
    let w = World::start(store).await;
    let token = mint(Sign::Hs256WithPublicKey, &w.claims("admin"));
    w.refused(&token, "jwt_algorithm_refused").await;
}

async fn a_token_of_another_issuer_is_refused(store: Arc<dyn Store>) {
    let w = World::start(store).await;
    let claims = with(
        w.claims("admin"),
        json!({"iss": "https://evil.example/pool"}),
    );
    w.refused(&mint(Sign::Rs256("rsa-1"), &claims), "jwt_issuer_untrusted")
        .await;
}

async fn a_token_for_another_audience_is_refused(store: Arc<dyn Store>) {
    let w = World::start(store).await;
    let claims = with(w.claims("admin"), json!({"aud": ["another-app"]}));
    w.refused(&mint(Sign::Es256("ec-1"), &claims), "jwt_audience_mismatch")
        .await;
}

/// Expired a minute and a second ago: past the 60 s of skew. A second less still passes.
async fn an_expired_token_is_refused(store: Arc<dyn Store>) {
    let w = World::start(store).await;
    let now = w.now.as_second();
    let within_skew = with(w.claims("admin"), json!({"exp": now - 59}));
    let answer = w
        .caller(&mint(Sign::Rs256("rsa-1"), &within_skew))
        .call(Method::GET, "/v1/accounts", None)
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    let expired = with(w.claims("admin"), json!({"exp": now - 61}));
    w.refused(&mint(Sign::Rs256("rsa-1"), &expired), "jwt_expired")
        .await;
}

async fn a_token_not_valid_yet_is_refused(store: Arc<dyn Store>) {
    let w = World::start(store).await;
    let claims = with(w.claims("admin"), json!({"nbf": w.now.as_second() + 120}));
    w.refused(&mint(Sign::Es256("ec-1"), &claims), "jwt_not_yet_valid")
        .await;
}

/// A `kid` the JWKS lacks is refused after one refetch at most, and tokens with made-up
/// kids cost the issuer one request a minute, whatever their number.
async fn an_unknown_kid_is_refused_after_at_most_one_refetch_a_minute(store: Arc<dyn Store>) {
    let w = World::start(store).await;
    let admin_claims = w.claims("admin");
    let good = mint(Sign::Rs256("rsa-1"), &admin_claims);
    w.caller(&good).get("/v1/accounts").await;
    assert_eq!(w.issuer.fetches(), 1);
    // The issuer rotates: a new kid, signed with a key not yet in the JWKS this instance
    // fetched a moment ago. Refused, and no refetch within the minute, however many tries.
    let rotated = mint(Sign::Es256("ec-2"), &admin_claims);
    for _ in 0..5 {
        w.refused(&rotated, "jwt_key_unknown").await;
    }
    assert_eq!(w.issuer.fetches(), 1);
    // The issuer publishes it; a minute on, the unknown kid fetches once and is found.
    w.issuer.publish(ec_jwk("ec-2"));
    w.clock.advance(SignedDuration::from_secs(60));
    w.caller(&rotated).get("/v1/accounts").await;
    assert_eq!(w.issuer.fetches(), 2);
    // A kid that is nowhere: one refetch at most, then refused.
    let nowhere = mint(Sign::Rs256("never-published"), &admin_claims);
    w.refused(&nowhere, "jwt_key_unknown").await;
    w.clock.advance(SignedDuration::from_secs(59));
    w.refused(&nowhere, "jwt_key_unknown").await;
    assert_eq!(w.issuer.fetches(), 2);
    w.clock.advance(SignedDuration::from_secs(1));
    w.refused(&nowhere, "jwt_key_unknown").await;
    assert_eq!(w.issuer.fetches(), 3);
}

async fn a_role_that_is_not_one_of_the_four_is_refused(store: Arc<dyn Store>) {
    let w = World::start(store).await;
    let groups = with(w.claims("admin"), json!({"cognito:groups": ["superuser"]}));
    w.refused(&mint(Sign::Rs256("rsa-1"), &groups), "jwt_role_invalid")
        .await;
    let text = with(w.claims("admin"), json!({"cognito:groups": "root"}));
    w.refused(&mint(Sign::Es256("ec-1"), &text), "jwt_role_invalid")
        .await;
}

/// The tenant claim names another tenant, one that does not trust this issuer: refused,
/// and nothing of that tenant is reachable.
async fn a_tenant_that_does_not_trust_the_issuer_is_refused(store: Arc<dyn Store>) {
    let w = World::start(store.clone()).await;
    let other = billing_tests::app(store)
        .customers
        .create_tenant(
            "Other",
            billing_domain::customers::tenant::TenantMode::Sandbox,
        )
        .await
        .unwrap()
        .0;
    let claims = with(
        w.claims("admin"),
        json!({"custom:tenant_id": other.id.to_string()}),
    );
    w.refused(&mint(Sign::Rs256("rsa-1"), &claims), "jwt_tenant_untrusted")
        .await;
}

/// A signed token whose payload was changed afterwards.
async fn a_forged_payload_is_refused(store: Arc<dyn Store>) {
    let w = World::start(store).await;
    let token = mint(Sign::Rs256("rsa-1"), &w.claims("finance_viewer"));
    let mut parts: Vec<&str> = token.split('.').collect();
    let admin = enc(w.claims("admin").to_string().as_bytes());
    parts[1] = &admin;
    w.refused(&parts.join("."), "jwt_signature_invalid").await;
}

billing_tests::on_both_stores!(
    staff_tokens_act_with_their_role_and_the_audit_names_the_user,
    the_setting_is_for_admins_and_wants_https,
    alg_none_is_refused,
    hs256_signed_with_the_public_key_is_refused,
    a_token_of_another_issuer_is_refused,
    a_token_for_another_audience_is_refused,
    an_expired_token_is_refused,
    a_token_not_valid_yet_is_refused,
    an_unknown_kid_is_refused_after_at_most_one_refetch_a_minute,
    a_role_that_is_not_one_of_the_four_is_refused,
    a_tenant_that_does_not_trust_the_issuer_is_refused,
    a_forged_payload_is_refused,
);
