//! Outgoing webhooks: endpoints and their rules (URL safety, subscribed events, signing
//! secrets with rotation), deliveries with their retry schedule, and the signature.
//! Everything here is a plain function of its inputs; sending and storing live elsewhere.

use crate::events::types::EventType;
use crate::kernel::deployment::Deployment;
use crate::kernel::error::ErrorCode;
use crate::kernel::time::{later, rotation_overlap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

use crate::events::types;
use crate::kernel::error::ValidationError;
use crate::kernel::ids::{DeliveryId, EventId, WebhookEndpointId};

/// The header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
pub const SIGNATURE_HEADER: &str = "Billing-Signature";
pub const SECRET_PREFIX: &str = "whsec_";
/// How long one attempt may take before it counts as failed.
pub const ATTEMPT_TIMEOUT: SignedDuration = SignedDuration::from_secs(10);
/// The wait after attempt `n` fails is `RETRY_DELAYS[n - 1]`: 8 attempts over ~22 hours.
pub const RETRY_DELAYS: [SignedDuration; 7] = [
    SignedDuration::from_secs(30),
    SignedDuration::from_secs(2 * 60),
    SignedDuration::from_secs(10 * 60),
    SignedDuration::from_secs(60 * 60),
    SignedDuration::from_secs(3 * 60 * 60),
    SignedDuration::from_secs(6 * 60 * 60),
    SignedDuration::from_secs(12 * 60 * 60),
];
pub const MAX_ATTEMPTS: u32 = RETRY_DELAYS.len() as u32 + 1;
const _: () = assert!(
    MAX_ATTEMPTS >= 6,
    "at least five retries after the first attempt"
);
/// An endpoint whose deliveries have failed without a single success for this long is
/// disabled, so a dead receiver stops costing the tenant (and us) retries.
pub const DISABLE_AFTER: SignedDuration = SignedDuration::from_secs(3 * 24 * 60 * 60);
pub use crate::kernel::time::DEFAULT_ROTATION_OVERLAP;
pub const MAX_ENDPOINTS: usize = 16;
pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_DESCRIPTION_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    Enabled,
    Disabled,
}

/// A signing secret; the first of an endpoint's secrets is current, the others are
/// rotated-out ones still signing until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: String,
    pub expires_at: Option<Timestamp>,
}

/// A stored endpoint, secrets included. The API shows [`WebhookEndpointView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: WebhookEndpointId,
    pub url: String,
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
    pub status: EndpointStatus,
    pub livemode: bool,
    pub secrets: Vec<SigningSecret>,
    /// The first failed attempt since the last successful one.
    pub failing_since: Option<Timestamp>,
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
}

/// An endpoint as the API and its events show it: never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpointView {
    #[schema(value_type = String, example = "we_01JD3KQ4ZC6W5X2V9T8R7P6N5M")]
    pub id: WebhookEndpointId,
    /// Always `webhook_endpoint`.
    pub object: String,
    pub url: String,
    /// Event types sent here: `*`, `account.*` or exact names from the event catalog.
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
    pub status: EndpointStatus,
    pub livemode: bool,
    /// When a rotated-out secret stops signing, if one still does.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_secret_expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<Timestamp>,
    pub disabled_reason: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// `POST /v1/webhook-endpoints`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookEndpoint {
    /// Live tenants: `https` to a public address. Sandbox tenants may also use
    /// `http://127.0.0.1` or `http://localhost` for local development.
    pub url: String,
    /// `["*"]` for everything; `account.*` for a family; or exact event types.
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
}

/// `PATCH /v1/webhook-endpoints/{id}`; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointPatch {
    pub url: Option<String>,
    pub enabled_events: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// `disabled` stops deliveries; `enabled` resumes them and forgets past failures.
    pub status: Option<EndpointStatus>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl WebhookEndpoint {
    /// A new endpoint with its first secret (`secret_bytes` come from the OS RNG).
    pub fn create(
        id: WebhookEndpointId,
        input: NewWebhookEndpoint,
        livemode: bool,
        deployment: Deployment,
        secret_bytes: &[u8; 24],
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            id,
            url: validate_url(&input.url, deployment)?,
            enabled_events: validate_events(input.enabled_events)?,
            description: validate_description(input.description)?,
            status: EndpointStatus::Enabled,
            livemode,
            secrets: vec![SigningSecret {
                secret: format_secret(secret_bytes),
                expires_at: None,
            }],
            failing_since: None,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
            version: 1,
        })
    }

    pub fn apply(
        &self,
        patch: WebhookEndpointPatch,
        deployment: Deployment,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        let mut next = self.clone();
        if let Some(url) = patch.url {
            next.url = validate_url(&url, deployment)?;
        }
        if let Some(events) = patch.enabled_events {
            next.enabled_events = validate_events(events)?;
        }
        if let Some(description) = patch.description {
            next.description = validate_description(description)?;
        }
        if let Some(status) = patch.status {
            if status == EndpointStatus::Enabled && self.status == EndpointStatus::Disabled {
                next.failing_since = None;
                next.disabled_reason = None;
            }
            if status == EndpointStatus::Disabled && self.status == EndpointStatus::Enabled {
                next.disabled_reason = Some("disabled through the API".into());
            }
            next.status = status;
        }
        Ok(next.touched(now))
    }

    /// A new current secret; the old current one keeps signing for `overlap` (expired
    /// ones are dropped), so receivers can switch without missing a delivery.
    pub fn rotate(
        &self,
        secret_bytes: &[u8; 24],
        overlap: SignedDuration,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        let overlap = rotation_overlap(overlap)?;
        let mut next = self.clone();
        let mut secrets = vec![SigningSecret {
            secret: format_secret(secret_bytes),
            expires_at: None,
        }];
        if let Some(current) = self.secrets.first() {
            if overlap.is_positive() {
                secrets.push(SigningSecret {
                    secret: current.secret.clone(),
                    expires_at: Some(later(now, overlap)),
                });
            }
        }
        next.secrets = secrets;
        Ok(next.touched(now))
    }

    /// The secrets that sign a delivery made at `now`, current first.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        self.secrets
            .iter()
            .filter(|s| s.expires_at.is_none_or(|at| at > now))
            .map(|s| s.secret.as_str())
            .collect()
    }

    pub fn wants(&self, event_type: EventType) -> bool {
        self.status == EndpointStatus::Enabled
            && types::subscribed(&self.enabled_events, event_type)
    }

    /// The endpoint after an attempt's outcome, if its health record changes: a success
    /// clears `failing_since`; the first failure sets it; a failure after
    /// [`DISABLE_AFTER`] of failing disables the endpoint. Most attempts change nothing,
    /// so most attempts cost no write to the endpoint.
    pub fn after_attempt(&self, delivered: bool, now: Timestamp) -> Option<HealthChange> {
        match (delivered, self.failing_since) {
            (true, Some(_)) => Some(HealthChange::Recovered(Self {
                failing_since: None,
                ..self.clone()
            }
            .touched(now))),
            (false, None) => Some(HealthChange::Failing(Self {
                failing_since: Some(now),
                ..self.clone()
            }
            .touched(now))),
            (false, Some(since))
                if self.status == EndpointStatus::Enabled && now.duration_since(since) >= DISABLE_AFTER =>
            {
                Some(HealthChange::Disabled(Self {
                    status: EndpointStatus::Disabled,
                    disabled_reason: Some(format!(
                        "every delivery has failed since {since}; re-enable it once the receiver works"
                    )),
                    ..self.clone()
                }
                .touched(now)))
            }
            _ => None,
        }
    }

    fn touched(mut self, now: Timestamp) -> Self {
        self.updated_at = now;
        self.version += 1;
        self
    }

    pub fn view(&self) -> WebhookEndpointView {
        WebhookEndpointView {
            id: self.id,
            object: "webhook_endpoint".into(),
            url: self.url.clone(),
            enabled_events: self.enabled_events.clone(),
            description: self.description.clone(),
            status: self.status,
            livemode: self.livemode,
            previous_secret_expires_at: self
                .secrets
                .iter()
                .skip(1)
                .filter_map(|s| s.expires_at)
                .max(),
            failing_since: self.failing_since,
            disabled_reason: self.disabled_reason.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// What an attempt did to the endpoint's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthChange {
    Recovered(WebhookEndpoint),
    Failing(WebhookEndpoint),
    /// Disabled for failing too long: emits `webhook_endpoint.disabled`.
    Disabled(WebhookEndpoint),
}

pub fn format_secret(bytes: &[u8; 24]) -> String {
    format!("{SECRET_PREFIX}{}", hex::encode(bytes))
}

fn validate_events(events: Vec<String>) -> Result<Vec<String>, ValidationError> {
    if events.is_empty() || events.len() > 100 {
        return Err(ValidationError::new(
            ErrorCode::InvalidEnabledEvents,
            "enabled_events",
            "list 1 to 100 event types, or [\"*\"] for all",
        ));
    }
    if let Some((i, bad)) = events
        .iter()
        .enumerate()
        .find(|(_, e)| !types::is_valid_pattern(e))
    {
        return Err(ValidationError::new(
            ErrorCode::UnknownEventType,
            format!("enabled_events[{i}]"),
            format!("`{bad}` is not an event type of the catalog (see GET /v1/openapi.json, `x-event-types`)"),
        ));
    }
    let mut events = events;
    events.sort();
    events.dedup();
    Ok(events)
}

fn validate_description(d: Option<String>) -> Result<Option<String>, ValidationError> {
    match d {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_CHARS => Err(ValidationError::new(
            ErrorCode::InvalidDescription,
            "description",
            format!("at most {MAX_DESCRIPTION_CHARS} characters"),
        )),
        Some(d) if d.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// Host names that name the machine itself or a cloud's metadata service.
const FORBIDDEN_HOSTS: &[&str] = &[
    "localhost",
    "metadata",
    "metadata.google.internal",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Checks a webhook URL against the SSRF rules and returns it normalised.
///
/// `https` only, no credentials in the URL, and the host must not be a loopback, private,
/// link-local, shared, multicast or metadata address or a name for one, whatever the
/// tenant's mode. A local deployment (`make dev`, tests) additionally allows `http` or
/// `https` to the loopback host, for a receiver on the developer's machine. Host names are checked again after DNS
/// resolution at delivery time ([`is_forbidden_address`]), so a name that resolves to a
/// private address is refused there.
pub fn validate_url(raw: &str, deployment: Deployment) -> Result<String, ValidationError> {
    let invalid = |code: ErrorCode, message: String| ValidationError::new(code, "url", message);
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(invalid(
            ErrorCode::InvalidUrl,
            format!("at most {MAX_URL_CHARS} characters"),
        ));
    }
    let url = url::Url::parse(raw.trim()).map_err(|e| {
        invalid(
            ErrorCode::InvalidUrl,
            format!("`{raw}` is not an absolute URL: {e}"),
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            ErrorCode::InvalidUrl,
            "credentials in the URL are not allowed; verify the signature instead".into(),
        ));
    }
    if url.fragment().is_some() {
        return Err(invalid(
            ErrorCode::InvalidUrl,
            "a webhook URL has no #fragment".into(),
        ));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    let local_loopback = deployment.allows_loopback() && loopback;
    match url.scheme() {
        "https" => {}
        "http" if local_loopback => {}
        "http" => {
            return Err(invalid(
                ErrorCode::InsecureUrl,
                "webhook endpoints must use https".into(),
            ))
        }
        other => {
            return Err(invalid(
                ErrorCode::InvalidUrl,
                format!("the scheme `{other}` is not http(s)"),
            ))
        }
    }
    if local_loopback {
        return Ok(url.to_string());
    }
    let refused = |what: String| {
        invalid(
            ErrorCode::ForbiddenUrl,
            format!("{what} is not reachable from outside your network; use a public https URL"),
        )
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) if is_forbidden_address(IpAddr::V4(ip)) => {
            Err(refused(format!("the address {ip}")))
        }
        Some(url::Host::Ipv6(ip)) if is_forbidden_address(IpAddr::V6(ip)) => {
            Err(refused(format!("the address {ip}")))
        }
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            let internal = FORBIDDEN_HOSTS.contains(&d.as_str())
                || [".localhost", ".internal", ".local"]
                    .iter()
                    .any(|s| d.ends_with(s))
                || !d.contains('.');
            if internal {
                Err(refused(format!("the host `{d}`")))
            } else {
                Ok(url.to_string())
            }
        }
        Some(_) => Ok(url.to_string()),
        None => Err(invalid(ErrorCode::InvalidUrl, "the URL has no host".into())),
    }
}

/// Addresses a webhook must never reach: this machine, private networks, link-local
/// (including the cloud metadata service at 169.254.169.254 and fd00:ec2::254), shared
/// carrier NAT, multicast, broadcast and reserved ranges. IPv4-mapped and NAT64 IPv6
/// addresses are judged by the IPv4 address inside them.
pub fn is_forbidden_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return forbidden_v4(Ipv4Addr::new(a, b, c, d));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local, incl. fd00:ec2::254
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
}

/// The `Billing-Signature` value for `body` sent at `t` (unix seconds): one `v1` per
/// signing secret, so receivers holding either side of a rotation accept it.
pub fn signature_header(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&sign(secret, t, body));
    }
    header
}

/// Hex HMAC-SHA256, keyed with the whole secret text (`whsec_…`), of `"{t}.{body}"`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, t, body).finalize().into_bytes())
}

fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// What a receiver does: parse the header, refuse stale timestamps (replays), and compare
/// every `v1` against the expected HMAC in constant time.
pub fn verify(
    header: &str,
    body: &[u8],
    secret: &str,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => {
                signatures.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?)
            }
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if (now_unix - t).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    // `verify_slice` compares in constant time.
    if signatures
        .iter()
        .any(|s| mac(secret, t, body).verify_slice(s).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; another attempt is scheduled.
    Pending,
    Succeeded,
    /// Every attempt failed (or the endpoint went away).
    Failed,
}

/// The result of one POST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAttempt {
    pub number: u32,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The receiver's HTTP status, if it answered.
    pub response_status: Option<u16>,
    pub latency_ms: u64,
    /// Why there was no answer (timeout, connection refused, refused address…).
    pub error: Option<String>,
}

impl DeliveryAttempt {
    pub fn succeeded(&self) -> bool {
        self.response_status
            .is_some_and(|s| (200..300).contains(&s))
    }
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    #[schema(value_type = String, example = "whd_01JD3KQ4ZC6W5X2V9T8R7P6N5M")]
    pub id: DeliveryId,
    /// Always `webhook_delivery`.
    pub object: String,
    #[schema(value_type = String)]
    pub endpoint_id: WebhookEndpointId,
    #[schema(value_type = String)]
    pub event_id: EventId,
    #[schema(value_type = String)]
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub attempts: Vec<DeliveryAttempt>,
    /// When the next attempt is due, while pending.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    /// True for deliveries made by `POST /v1/events/{id}/resend`.
    pub resend: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub version: u64,
}

impl WebhookDelivery {
    pub fn new(
        id: DeliveryId,
        endpoint_id: WebhookEndpointId,
        event_id: EventId,
        event_type: EventType,
        resend: bool,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            object: "webhook_delivery".into(),
            endpoint_id,
            event_id,
            event_type,
            status: DeliveryStatus::Pending,
            attempts: Vec::new(),
            next_attempt_at: Some(now),
            resend,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    /// Whether attempt number `attempts.len() + 1` may run at `now`.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.status == DeliveryStatus::Pending && self.next_attempt_at.is_some_and(|at| at <= now)
    }

    /// The delivery after `attempt`: succeeded on 2xx; otherwise pending with the next
    /// attempt on the backoff schedule, or failed after [`MAX_ATTEMPTS`].
    pub fn record(&self, attempt: DeliveryAttempt) -> Self {
        let at = attempt.at;
        let mut next = self.clone();
        let succeeded = attempt.succeeded();
        next.attempts.push(attempt);
        let made = next.attempts.len() as u32;
        (next.status, next.next_attempt_at) = if succeeded {
            (DeliveryStatus::Succeeded, None)
        } else {
            match retry_delay(made) {
                Some(wait) => (DeliveryStatus::Pending, Some(at + wait)),
                None => (DeliveryStatus::Failed, None),
            }
        };
        next.updated_at = at;
        next.version += 1;
        next
    }

    /// Gives up without another attempt (the endpoint was deleted or disabled).
    pub fn abandon(&self, now: Timestamp) -> Self {
        Self {
            status: DeliveryStatus::Failed,
            next_attempt_at: None,
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        }
    }
}

/// The wait after `attempts_made` failed attempts, or `None` when that was the last.
pub fn retry_delay(attempts_made: u32) -> Option<SignedDuration> {
    let index = usize::try_from(attempts_made.checked_sub(1)?).ok()?;
    RETRY_DELAYS.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN_VECTOR: &str = "7500d5d4be4b3ef07af1fe56f7d522d135cdaa7530de557e67cc1049c52de094";

    fn now() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn endpoint(livemode: bool) -> WebhookEndpoint {
        WebhookEndpoint::create(
            WebhookEndpointId::from_ulid(ulid::Ulid::from_parts(1, 1)),
            NewWebhookEndpoint {
                url: "https://hooks.example.com/billing".into(),
                enabled_events: vec!["*".into()],
                description: None,
            },
            livemode,
            Deployment::Deployed,
            &[7; 24],
            now(),
        )
        .unwrap()
    }

    #[test]
    fn live_tenants_get_https_to_public_hosts_only() {
        let ok = |u: &str| validate_url(u, Deployment::Deployed).is_ok();
        assert!(ok("https://hooks.example.com/x"));
        assert!(ok("https://93.184.216.34:8443/x"));
        for bad in [
            "http://hooks.example.com/x",
            "https://127.0.0.1/x",
            "https://localhost/x",
            "https://10.1.2.3/x",
            "https://172.16.0.1/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[fd00:ec2::254]/x",
            "https://[fe80::1]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://metadata.google.internal/x",
            "https://printer.local/x",
            "https://intranet/x",
            "https://user:pw@hooks.example.com/x",
            "ftp://hooks.example.com/x",
            "not a url",
        ] {
            assert!(!ok(bad), "{bad} must be refused");
        }
        assert_eq!(
            validate_url("http://hooks.example.com", Deployment::Deployed)
                .unwrap_err()
                .code,
            "insecure_url"
        );
        assert_eq!(
            validate_url("https://10.0.0.1", Deployment::Deployed)
                .unwrap_err()
                .code,
            "forbidden_url"
        );
    }

    #[test]
    fn only_a_local_deployment_may_use_the_loopback_host() {
        let local = |u: &str| validate_url(u, Deployment::Local);
        assert!(local("http://127.0.0.1:8080/hook").is_ok());
        assert!(local("http://localhost:8080/hook").is_ok());
        assert!(local("http://[::1]:8080/hook").is_ok());
        assert!(local("http://hooks.example.com").is_err());
        assert!(local("https://10.0.0.1").is_err());
        assert!(local("https://169.254.169.254").is_err());
        for loopback in [
            "http://127.0.0.1:8080/hook",
            "https://127.0.0.1:8080/hook",
            "http://127.9.9.9/hook",
            "http://localhost:8080/hook",
            "https://[::1]/hook",
        ] {
            assert!(
                validate_url(loopback, Deployment::Deployed).is_err(),
                "{loopback} must be refused by a deployed platform"
            );
        }
    }

    #[test]
    fn mapped_and_nat64_addresses_are_judged_by_their_ipv4() {
        assert!(is_forbidden_address(
            "::ffff:169.254.169.254".parse().unwrap()
        ));
        assert!(is_forbidden_address("64:ff9b::a00:1".parse().unwrap()));
        assert!(!is_forbidden_address("64:ff9b::5db8:d822".parse().unwrap()));
        assert!(!is_forbidden_address("2606:4700::1111".parse().unwrap()));
    }

    #[test]
    fn signatures_verify_and_reject_tampering_staleness_and_other_secrets() {
        let body = br#"{"id":"evt_1"}"#;
        let header = signature_header(&["whsec_a"], 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify(&header, body, "whsec_a", 1_700_000_100, 300), Ok(()));
        assert_eq!(
            verify(&header, b"{}", "whsec_a", 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, body, "whsec_b", 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, body, "whsec_a", 1_700_001_000, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("v1=00", body, "whsec_a", 0, 300),
            Err(SignatureError::Malformed)
        );
        // A vector computed independently (Python: hmac.new(b"whsec_test", b"1.{}", sha256)).
        assert_eq!(sign("whsec_test", 1, b"{}"), KNOWN_VECTOR);
    }

    #[test]
    fn rotation_signs_with_both_secrets_until_the_overlap_ends() {
        let e = endpoint(true);
        let old = e.secrets[0].secret.clone();
        let rotated = e
            .rotate(&[9; 24], SignedDuration::from_hours(2), now())
            .unwrap();
        let signing = rotated.signing_secrets(now());
        assert_eq!(signing.len(), 2);
        assert_eq!(signing[1], old);
        assert_ne!(signing[0], old);
        assert_eq!(
            rotated
                .signing_secrets(now() + SignedDuration::from_hours(3))
                .len(),
            1
        );
        assert!(e
            .rotate(&[9; 24], SignedDuration::from_hours(24 * 8), now())
            .is_err());
        assert!(rotated.view().previous_secret_expires_at.is_some());
        assert!(!serde_json::to_string(&rotated.view())
            .unwrap()
            .contains("whsec_"));
    }

    #[test]
    fn backoff_spreads_eight_attempts_over_about_a_day_then_fails() {
        let total: i64 = RETRY_DELAYS.iter().map(|d| d.as_secs()).sum();
        assert!((20 * 3600..=26 * 3600).contains(&total), "{total}");
        let e = endpoint(false);
        let mut d = WebhookDelivery::new(
            DeliveryId::from_ulid(ulid::Ulid::from_parts(2, 2)),
            e.id,
            EventId::from_ulid(ulid::Ulid::from_parts(3, 3)),
            EventType::AccountCreated,
            false,
            now(),
        );
        let mut at = now();
        for n in 1..=MAX_ATTEMPTS {
            assert!(d.is_due(at), "attempt {n} is due");
            d = d.record(DeliveryAttempt {
                number: n,
                at,
                response_status: Some(500),
                latency_ms: 3,
                error: None,
            });
            if n < MAX_ATTEMPTS {
                assert_eq!(d.status, DeliveryStatus::Pending);
                assert_eq!(d.next_attempt_at, Some(at + RETRY_DELAYS[n as usize - 1]));
                at = d.next_attempt_at.unwrap();
            }
        }
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert_eq!(d.next_attempt_at, None);
    }

    #[test]
    fn an_endpoint_failing_for_days_is_disabled_and_a_success_heals_it() {
        let e = endpoint(true);
        let Some(HealthChange::Failing(failing)) = e.after_attempt(false, now()) else {
            panic!()
        };
        assert_eq!(
            failing.after_attempt(false, now() + SignedDuration::from_hours(1)),
            None
        );
        let Some(HealthChange::Disabled(off)) = failing.after_attempt(false, now() + DISABLE_AFTER)
        else {
            panic!()
        };
        assert_eq!(off.status, EndpointStatus::Disabled);
        assert!(!off.wants(EventType::AccountCreated));
        let Some(HealthChange::Recovered(ok)) = failing.after_attempt(true, now()) else {
            panic!()
        };
        assert_eq!(ok.failing_since, None);
        assert_eq!(e.after_attempt(true, now()), None);
        let back = off
            .apply(
                WebhookEndpointPatch {
                    status: Some(EndpointStatus::Enabled),
                    ..Default::default()
                },
                Deployment::Deployed,
                now(),
            )
            .unwrap();
        assert_eq!(
            (back.status, back.failing_since, back.disabled_reason),
            (EndpointStatus::Enabled, None, None)
        );
    }
}
