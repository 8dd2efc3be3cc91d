//! Customers: tenants and their API keys, customer accounts, and the accounts' payment
//! methods (kept at the gateway; only brand, last four digits, expiry and country here).

mod accounts;
mod api_keys;
mod limits;
mod payment_methods;
mod staff;
mod tenants;

use std::sync::Arc;

use billing_domain::customers::access::ApiKey;
use billing_domain::customers::account::{Account, AccountStatus};
use billing_domain::kernel::deployment::Deployment;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{ApiKeyId, TenantId};

pub use api_keys::{issue_key, IssuedKey, KEY_TTL};
pub use limits::{Admission, RateLimitStatus, LIMITS_TTL};
pub use staff::{KeySets, KEY_SET_MAX_AGE, KEY_SET_REFETCH_INTERVAL, TRUST_TTL};

use crate::kernel::{AppError, Clocks, TtlCache};
use crate::ports::{
    AccountStore, ApiKeyStore, Gateways, IdentityProviderStore, KeySetFetcher, PaymentStore,
    RateLimitStore, TenantStore, TestClockStore,
};
use crate::tax::TaxService;

/// What the customers service reads and writes.
pub trait CustomersPorts:
    TenantStore
    + ApiKeyStore
    + RateLimitStore
    + IdentityProviderStore
    + AccountStore
    + PaymentStore
    + TestClockStore
{
}

impl<T> CustomersPorts for T where
    T: TenantStore
        + ApiKeyStore
        + RateLimitStore
        + IdentityProviderStore
        + AccountStore
        + PaymentStore
        + TestClockStore
{
}

/// The customers use cases. Depends on the kernel only.
#[derive(Clone)]
pub struct CustomersService {
    store: Arc<dyn CustomersPorts>,
    clocks: Clocks,
    /// Where cards are kept, by tenant mode.
    gateways: Gateways,
    /// Keys as last read, by tenant and id ([`KEY_TTL`]).
    keys: Arc<TtlCache<(TenantId, ApiKeyId), ApiKey>>,
    /// This instance's shares of the hourly counts, its burst counts, and the tenants'
    /// limits as last read.
    limiter: Arc<limits::RateLimiter>,
    /// Staff sign-in: who trusts an issuer ([`TRUST_TTL`]) and the issuers' keys.
    staff: Arc<staff::StaffSignIn>,
    /// Where a JWKS URL may point (the loopback host only in a local deployment).
    deployment: Deployment,
    /// Checks a VAT id with the registry when the tenant asks for it.
    tax: TaxService,
}

impl CustomersService {
    pub(crate) fn new(
        store: Arc<dyn CustomersPorts>,
        clocks: Clocks,
        gateways: Gateways,
        key_sets: Option<Arc<dyn KeySetFetcher>>,
        deployment: Deployment,
        tax: TaxService,
    ) -> Self {
        Self {
            store,
            clocks,
            gateways,
            keys: Arc::new(TtlCache::new(KEY_TTL)),
            limiter: Arc::new(limits::RateLimiter::default()),
            staff: Arc::new(staff::StaffSignIn::new(key_sets)),
            deployment,
            tax,
        }
    }
}

/// Blocked accounts take no new subscriptions and no plan changes until they have paid.
pub fn refuse_blocked(account: &Account) -> Result<(), AppError> {
    if account.status != AccountStatus::Blocked {
        return Ok(());
    }
    Err(AppError::Conflict {
        code: ErrorCode::AccountBlocked,
        message: format!(
            "account {} is blocked by dunning: pay its overdue invoices to unblock it",
            account.id
        ),
        param: Some("account"),
    })
}
