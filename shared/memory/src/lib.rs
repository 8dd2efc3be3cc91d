//! An in-memory store with the same conditional semantics as the DynamoDB adapter, for
//! fast use-case tests, in-process benchmarks and load tools. The store contract suite runs against
//! both, so it cannot drift from the real one. [`hooked`] wraps any port (this store, or a
//! gateway, notifier, queue) in a hook that makes tests race and the fault campaign fail.

mod accounts;
mod audit;
mod billing;
mod catalog;
mod coupons;
mod credits;
mod documents;
mod dunning;
mod erasure;
mod events;
mod hosted;
mod idempotency;
mod notifier;
mod payments;
mod tax;
mod tenants;
mod usage;
mod wallets;

pub mod hooked;

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use billing_domain::customers::access::ApiKey;
use billing_domain::customers::account::Account;
use billing_domain::customers::tenant::Tenant;
use billing_domain::events::record::{AuditRecord, DomainEvent};
use billing_domain::kernel::ids::{AccountId, ApiKeyId, TenantId};
use jiff::Timestamp;

use billing_app::ports::*;

pub use documents::MemoryObjects;
pub use notifier::MemoryNotifier;

#[derive(Default)]
pub(crate) struct State {
    pub(crate) tenants: BTreeMap<TenantId, Tenant>,
    pub(crate) api_keys: BTreeMap<(TenantId, ApiKeyId), ApiKey>,
    pub(crate) limits: tenants::LimitState,
    pub(crate) identity: tenants::IdentityState,
    pub(crate) accounts: BTreeMap<(TenantId, AccountId), Account>,
    pub(crate) external_ids: BTreeMap<(TenantId, String), AccountId>,
    pub(crate) audit: BTreeMap<(TenantId, String), AuditRecord>,
    pub(crate) events: BTreeMap<(TenantId, String), DomainEvent>,
    pub(crate) idempotency: BTreeMap<(TenantId, String), Idempotency>,
    pub(crate) catalog: catalog::CatalogState,
    pub(crate) coupons: coupons::CouponState,
    pub(crate) tax: tax::TaxState,
    pub(crate) documents: documents::DocumentState,
    pub(crate) hosted: hosted::HostedState,
    pub(crate) billing: billing::BillingState,
    pub(crate) payments: payments::PaymentState,
    pub(crate) dunning: dunning::DunningState,
    pub(crate) credits: credits::CreditState,
    pub(crate) webhooks: events::WebhookState,
    pub(crate) usage: usage::UsageState,
    pub(crate) wallets: wallets::WalletState,
    pub(crate) sweep: Option<SweepCheckpoint>,
}

pub(crate) struct Idempotency {
    pub(crate) fingerprint: String,
    pub(crate) owner: String,
    pub(crate) lease_until: Timestamp,
    pub(crate) response: Option<StoredResponse>,
    pub(crate) expires_at: Timestamp,
}

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    pub(crate) fn record(&mut self, tenant: TenantId, change: &Change) {
        self.audit
            .insert((tenant, change.audit.id.to_string()), change.audit.clone());
        for event in &change.events {
            self.events
                .insert((tenant, event.id.to_string()), event.clone());
            // The customer email the event asks for, written with it.
            if let Some(notice) = billing_app::ports::PendingNotice::for_event(event) {
                self.dunning.add_notice(tenant, notice);
            }
        }
    }
}

/// One page of `items` (already in order) after the `starting_after` id, keeping those
/// `admit` accepts and examining at most the page's scan budget of items, as the DynamoDB
/// store does: `items` are what its key or index reads, `admit` the rest of the filter.
pub(crate) fn paginate<T: Clone>(
    items: impl Iterator<Item = (String, T)>,
    page: &PageRequest,
    admit: impl Fn(&T) -> bool,
) -> Page<T> {
    let mut after = page.starting_after.is_none();
    let mut taken: Vec<T> = Vec::with_capacity(page.limit + 1);
    let mut examined = 0;
    for (id, item) in items {
        if !after {
            after = page.starting_after.as_deref() == Some(id.as_str());
            continue;
        }
        examined += 1;
        if admit(&item) {
            taken.push(item);
        }
        if taken.len() > page.limit {
            break;
        }
        if examined >= page.scan_budget.max(1) {
            return Page {
                items: taken,
                has_more: true,
                scanned_to: Some(id),
            };
        }
    }
    let has_more = taken.len() > page.limit;
    taken.truncate(page.limit);
    Page::new(taken, has_more)
}

#[async_trait]
impl HealthProbe for MemoryStore {
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A job queue that keeps what it is given, for tests of the sweep and of post-commit
/// hand-offs (the billing queue and the payments queue).
pub struct MemoryQueue<J> {
    jobs: Mutex<Vec<J>>,
}

pub type MemoryBillingQueue = MemoryQueue<BillingJob>;
pub type MemoryPaymentQueue = MemoryQueue<PaymentJob>;

impl<J> Default for MemoryQueue<J> {
    fn default() -> Self {
        Self {
            jobs: Mutex::new(Vec::new()),
        }
    }
}

impl<J: Clone> MemoryQueue<J> {
    /// Takes the jobs queued so far.
    pub fn take(&self) -> Vec<J> {
        std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push(&self, jobs: &[J]) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(jobs);
    }
}

#[async_trait]
impl BillingQueue for MemoryQueue<BillingJob> {
    async fn enqueue(&self, jobs: &[BillingJob]) -> Result<(), StoreError> {
        self.push(jobs);
        Ok(())
    }
}

#[async_trait]
impl PaymentQueue for MemoryQueue<PaymentJob> {
    async fn enqueue(&self, jobs: &[PaymentJob]) -> Result<(), StoreError> {
        self.push(jobs);
        Ok(())
    }
}
