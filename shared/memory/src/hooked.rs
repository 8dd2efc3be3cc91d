//! A decorator over every port (the store's, the gateway, the notifier, the queues and the
//! dispatch) that runs a [`Hook`] before and after each operation: the one place tests
//! make operations race ([`Racing`]) and the fault campaign injects faults ([`Faults`]).
//!
//! The simulation (`billing-infra`'s `sim`) keeps its own decorator: it prices each call by
//! its arguments (item sizes, keys, index shards), which a hook that sees only the
//! operation's name cannot know.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use billing_app::ports::*;
use billing_domain::billing::invoice::Invoice;
use billing_domain::billing::simulation::{SimulationChunk, SimulationRun};
use billing_domain::billing::subscription::Subscription;
use billing_domain::billing::test_clock::TestClock;
use billing_domain::catalog::metric::Metric;
use billing_domain::catalog::plan::{Plan, PlanVersion};
use billing_domain::collection::connect::StripeAccount;
use billing_domain::collection::credit_note::CreditNote;
use billing_domain::collection::dunning::{DunningCase, DunningPolicy};
use billing_domain::collection::payment::Payment;
use billing_domain::collection::retry::PaymentSettings;
use billing_domain::coupons::account::AccountDiscounts;
use billing_domain::coupons::coupon::Coupon;
use billing_domain::credits::balance::{Balance, BalanceChange, BalanceTransaction, CreditGrant};
use billing_domain::customers::access::ApiKey;
use billing_domain::customers::account::Account;
use billing_domain::customers::limits::LimitSettings;
use billing_domain::customers::payment_method::PaymentProfile;
use billing_domain::customers::staff::{IdentityProvider, IssuerTrust};
use billing_domain::customers::tenant::Tenant;
use billing_domain::documents::branding::Branding;
use billing_domain::documents::email::EmailSettings;
use billing_domain::documents::stored::StoredDocument;
use billing_domain::events::record::{AuditRecord, DomainEvent};
use billing_domain::events::webhook::{WebhookDelivery, WebhookEndpoint};
use billing_domain::hosted::link::HostedLink;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{
    AccountId, ApiKeyId, CouponId, CreditGrantId, CreditNoteId, DeliveryId, EventId, InvoiceId,
    MetricId, PaymentId, PlanId, SimulationId, SubscriptionId, TaxRateId, TenantId, TestClockId,
    WalletId, WebhookEndpointId,
};
use billing_domain::tax::rates::{TaxRate, TaxSettings};
use billing_domain::wallets::wallet::{Wallet, WalletChange, WalletTransaction};
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One operation of a port: `port` is the trait's name, `method` the call's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Op {
    pub port: &'static str,
    pub method: &'static str,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}::{}", self.port, self.method)
    }
}

/// What an operation answered, as far as races and faults care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Done,
    /// A conditional write refused: the item exists already, or its version moved. This is
    /// the path a worker takes when it loses a race.
    Refused,
    Failed,
}

/// An injected failure; each port answers it with its own transient error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault(pub String);

/// Called around every operation of a [`Hooked`] adapter.
#[async_trait]
pub trait Hook: Send + Sync {
    /// Before `op` runs; a fault fails it without running it.
    async fn before(&self, _op: Op) -> Option<Fault> {
        None
    }
    /// After `op` answered `seen`; a fault replaces the answer, the effect stays (a crash
    /// after the commit, a lost response).
    async fn after(&self, _op: Op, _seen: Seen) -> Option<Fault> {
        None
    }
}

/// An adapter whose every operation runs between its hook's `before` and `after`.
pub struct Hooked<T: ?Sized> {
    inner: Arc<T>,
    hook: Arc<dyn Hook>,
}

impl<T: ?Sized> Hooked<T> {
    pub fn new(inner: Arc<T>, hook: Arc<dyn Hook>) -> Self {
        Self { inner, hook }
    }

    async fn around<R: Answer>(&self, op: Op, call: impl std::future::Future<Output = R>) -> R {
        if let Some(fault) = self.hook.before(op).await {
            return R::failed(fault);
        }
        let answer = call.await;
        match self.hook.after(op, answer.seen()).await {
            Some(fault) => R::failed(fault),
            None => answer,
        }
    }
}

/// A port's answer: how it went, and how the port fails.
trait Answer {
    fn seen(&self) -> Seen;
    fn failed(fault: Fault) -> Self;
}

impl<T> Answer for Result<T, StoreError> {
    fn seen(&self) -> Seen {
        match self {
            Ok(_) => Seen::Done,
            Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => {
                Seen::Refused
            }
            Err(_) => Seen::Failed,
        }
    }
    fn failed(fault: Fault) -> Self {
        Err(StoreError::Unavailable(fault.0))
    }
}

impl Answer for Result<(), StepsFailed> {
    fn seen(&self) -> Seen {
        match self {
            Ok(()) => Seen::Done,
            Err(failed) => Err::<(), _>(failed.error.clone()).seen(),
        }
    }
    fn failed(fault: Fault) -> Self {
        // A crash reports nothing written: the caller cannot tell, and must not need to.
        Err(StepsFailed {
            written: 0,
            error: StoreError::Unavailable(fault.0),
        })
    }
}

/// Done or failed: ports without conditional writes.
fn done_or_failed<T, E>(answer: &Result<T, E>) -> Seen {
    if answer.is_ok() {
        Seen::Done
    } else {
        Seen::Failed
    }
}

impl<T> Answer for Result<T, GatewayError> {
    fn seen(&self) -> Seen {
        done_or_failed(self)
    }
    fn failed(fault: Fault) -> Self {
        Err(GatewayError::Unavailable(fault.0))
    }
}

impl Answer for Result<(), NotifyError> {
    fn seen(&self) -> Seen {
        done_or_failed(self)
    }
    fn failed(fault: Fault) -> Self {
        Err(NotifyError::Unavailable(fault.0))
    }
}

impl Answer for SendOutcome {
    fn seen(&self) -> Seen {
        if self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s)) {
            Seen::Done
        } else {
            Seen::Failed
        }
    }
    fn failed(fault: Fault) -> Self {
        SendOutcome {
            status: None,
            error: Some(fault.0),
            latency_ms: 0,
        }
    }
}

/// Implements each port for [`Hooked`] by calling the wrapped adapter inside `around`.
macro_rules! hooked {
    ($($port:ident {
        $(fn $method:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;)*
    })*) => {$(
        #[async_trait]
        impl<T: $port + ?Sized> $port for Hooked<T> {
            $(
                async fn $method(&self, $($arg: $ty),*) -> $ret {
                    let op = Op { port: stringify!($port), method: stringify!($method) };
                    self.around(op, self.inner.$method($($arg),*)).await
                }
            )*
        }
    )*};
}

hooked! {
    TenantStore {
        fn create_tenant(tenant: &Tenant, first_key: &ApiKey) -> Result<(), StoreError>;
        fn get_tenant(id: TenantId) -> Result<Option<Tenant>, StoreError>;
    }
    ApiKeyStore {
        fn get_api_key(tenant: TenantId, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError>;
        fn insert_api_key(key: &ApiKey, change: &Change) -> Result<(), StoreError>;
        fn revoke_api_key(key: &ApiKey, change: &Change) -> Result<(), StoreError>;
        fn roll_api_key(retired: &ApiKey, successor: &ApiKey, retirement: &Change, creation: &Change) -> Result<(), StoreError>;
        fn record_key_use(tenant: TenantId, id: ApiKeyId, at: Timestamp, stale_since: Timestamp) -> Result<(), StoreError>;
        fn list_api_keys(tenant: TenantId, page: &PageRequest) -> Result<Page<ApiKey>, StoreError>;
    }
    RateLimitStore {
        fn claim_rate(tenant: TenantId, subject: &str, window: (Timestamp, Timestamp), want: u32, limit: u32) -> Result<RateClaim, StoreError>;
        fn limit_settings(tenant: TenantId) -> Result<LimitSettings, StoreError>;
        fn set_limit_settings(tenant: TenantId, settings: &LimitSettings, change: &Change) -> Result<(), StoreError>;
    }
    IdentityProviderStore {
        fn identity_provider(tenant: TenantId) -> Result<Option<IdentityProvider>, StoreError>;
        fn set_identity_provider(trust: &IssuerTrust, previous: Option<&IdentityProvider>, change: &Change) -> Result<(), StoreError>;
        fn issuer_trusts(issuer: &str) -> Result<Vec<IssuerTrust>, StoreError>;
    }
    AccountStore {
        fn insert_account(tenant: TenantId, account: &Account, change: &Change) -> Result<(), StoreError>;
        fn update_account(tenant: TenantId, previous: &Account, next: &Account, change: &Change) -> Result<(), StoreError>;
        fn get_account(tenant: TenantId, id: AccountId) -> Result<Option<Account>, StoreError>;
        fn list_accounts(tenant: TenantId, filter: &AccountFilter, page: &PageRequest) -> Result<Page<Account>, StoreError>;
        fn get_accounts(tenant: TenantId, ids: &[AccountId]) -> Result<Vec<Account>, StoreError>;
    }
    ErasureStore {
        fn erase_account_records(tenant: TenantId, account: AccountId, entities: &[String]) -> Result<(), StoreError>;
    }
    AuditStore {
        fn list_audit(tenant: TenantId, entity_id: Option<&str>, page: &PageRequest) -> Result<Page<AuditRecord>, StoreError>;
    }
    IdempotencyStore {
        fn claim_idempotency_key(tenant: TenantId, key: &str, terms: &ClaimTerms<'_>) -> Result<IdempotencyClaim, StoreError>;
        fn complete_idempotency_key(tenant: TenantId, key: &str, owner: &str, response: &StoredResponse) -> Result<(), StoreError>;
        fn release_idempotency_key(tenant: TenantId, key: &str, owner: &str) -> Result<(), StoreError>;
    }
    HealthProbe {
        fn ready() -> Result<(), StoreError>;
    }
    SubscriptionStore {
        fn insert_subscription(tenant: TenantId, subscription: &Subscription, invoice: Option<&InvoiceWrite>, change: &Change) -> Result<(), StoreError>;
        fn save_subscription(tenant: TenantId, previous: &Subscription, next: &Subscription, invoice: Option<&InvoiceWrite>, change: &Change) -> Result<(), StoreError>;
        fn save_subscription_steps(tenant: TenantId, steps: &[SubscriptionStep]) -> Result<(), StepsFailed>;
        fn get_subscription(tenant: TenantId, id: SubscriptionId) -> Result<Option<Subscription>, StoreError>;
        fn get_subscriptions(tenant: TenantId, ids: &[SubscriptionId]) -> Result<Vec<Subscription>, StoreError>;
        fn list_subscriptions(tenant: TenantId, filter: &SubscriptionFilter, page: &PageRequest) -> Result<Page<Subscription>, StoreError>;
        fn clock_due_items(tenant: TenantId, clock: TestClockId, up_to: Timestamp, limit: usize) -> Result<Vec<super::DueItem>, StoreError>;
    }
    InvoiceStore {
        fn next_invoice_number(tenant: TenantId) -> Result<NextInvoiceNumber, StoreError>;
        fn set_invoice_prefix(tenant: TenantId, prefix: &str, change: &Change) -> Result<(), StoreError>;
        fn insert_invoice(tenant: TenantId, invoice: &InvoiceWrite, change: &Change) -> Result<(), StoreError>;
        fn save_invoice(tenant: TenantId, previous: &Invoice, next: &InvoiceWrite, change: &Change) -> Result<(), StoreError>;
        fn get_invoice(tenant: TenantId, id: InvoiceId) -> Result<Option<Invoice>, StoreError>;
        fn pending_invoices(tenant: TenantId, limit: usize) -> Result<Vec<PendingInvoice>, StoreError>;
        fn number_invoices(tenant: TenantId, prefix: &str, numbered: &[NumberedInvoice]) -> Result<(), StoreError>;
        fn finish_invoice(tenant: TenantId, invoice: &Invoice, payment: Option<&billing_domain::collection::payment::Payment>, change: &Change) -> Result<(), StoreError>;
        fn list_invoices(tenant: TenantId, filter: &InvoiceFilter, page: &PageRequest) -> Result<Page<Invoice>, StoreError>;
    }
    CouponStore {
        fn insert_coupon(tenant: TenantId, coupon: &Coupon, change: &Change) -> Result<(), StoreError>;
        fn save_coupon(tenant: TenantId, previous: &Coupon, next: &Coupon, change: &Change) -> Result<(), StoreError>;
        fn get_coupon(tenant: TenantId, id: CouponId) -> Result<Option<Coupon>, StoreError>;
        fn get_coupon_by_code(tenant: TenantId, code: &str) -> Result<Option<Coupon>, StoreError>;
        fn list_coupons(tenant: TenantId, page: &PageRequest) -> Result<Page<Coupon>, StoreError>;
    }
    TaxStore {
        fn tax_settings(tenant: TenantId) -> Result<Option<TaxSettings>, StoreError>;
        fn set_tax_settings(tenant: TenantId, settings: &TaxSettings, change: &Change) -> Result<(), StoreError>;
        fn insert_tax_rates(tenant: TenantId, rates: &[TaxRate], change: &Change) -> Result<(), StoreError>;
        fn replace_tax_rate(tenant: TenantId, ended: &TaxRate, next: &TaxRate, change: &Change) -> Result<(), StoreError>;
        fn get_tax_rate(tenant: TenantId, id: TaxRateId) -> Result<Option<TaxRate>, StoreError>;
        fn list_tax_rates(tenant: TenantId, page: &PageRequest) -> Result<Page<TaxRate>, StoreError>;
    }
    BrandingStore {
        fn branding(tenant: TenantId) -> Result<Option<Branding>, StoreError>;
        fn save_branding(tenant: TenantId, branding: &Branding, change: &Change) -> Result<(), StoreError>;
    }
    EmailSettingsStore {
        fn email_settings(tenant: TenantId) -> Result<Option<EmailSettings>, StoreError>;
        fn save_email_settings(tenant: TenantId, settings: &EmailSettings, change: &Change) -> Result<(), StoreError>;
    }
    DocumentStore {
        fn document(tenant: TenantId, of: &str) -> Result<Option<StoredDocument>, StoreError>;
        fn record_document(tenant: TenantId, document: &StoredDocument) -> Result<(), StoreError>;
    }
    HostedLinkStore {
        fn insert_hosted_link(link: &HostedLink) -> Result<(), StoreError>;
        fn get_hosted_link(token_hash: &str) -> Result<Option<HostedLink>, StoreError>;
        fn hosted_link_epoch(tenant: TenantId, invoice: InvoiceId) -> Result<u32, StoreError>;
        fn revoke_hosted_links(tenant: TenantId, invoice: InvoiceId, current: u32, change: &Change) -> Result<(), StoreError>;
    }
    RedemptionStore {
        fn redeem_coupon(tenant: TenantId, coupon: &Coupon, target: RedemptionTarget<'_>, change: &Change) -> Result<(), StoreError>;
    }
    AccountDiscountStore {
        fn get_account_discounts(tenant: TenantId, account: AccountId) -> Result<Option<AccountDiscounts>, StoreError>;
        fn save_account_discounts(tenant: TenantId, next: &AccountDiscounts, change: &Change) -> Result<(), StoreError>;
    }
    SimulationStore {
        fn insert_simulation(tenant: TenantId, run: &SimulationRun) -> Result<(), StoreError>;
        fn save_simulation(tenant: TenantId, previous: &SimulationRun, next: &SimulationRun, chunk: Option<&SimulationChunk>) -> Result<(), StoreError>;
        fn get_simulation(tenant: TenantId, id: SimulationId) -> Result<Option<SimulationRun>, StoreError>;
        fn simulation_chunks(tenant: TenantId, id: SimulationId) -> Result<Vec<SimulationChunk>, StoreError>;
    }
    TestClockStore {
        fn insert_test_clock(tenant: TenantId, clock: &TestClock, change: &Change) -> Result<(), StoreError>;
        fn save_test_clock(tenant: TenantId, previous: &TestClock, next: &TestClock) -> Result<(), StoreError>;
        fn get_test_clock(tenant: TenantId, id: TestClockId) -> Result<Option<TestClock>, StoreError>;
    }
    MetricStore {
        fn insert_metric(tenant: TenantId, metric: &Metric, change: &Change) -> Result<(), StoreError>;
        fn update_metric(tenant: TenantId, previous: &Metric, next: &Metric, change: &Change) -> Result<(), StoreError>;
        fn get_metric(tenant: TenantId, id: MetricId) -> Result<Option<Metric>, StoreError>;
        fn get_metric_by_code(tenant: TenantId, code: &str) -> Result<Option<Metric>, StoreError>;
        fn list_metrics(tenant: TenantId, page: &PageRequest) -> Result<Page<Metric>, StoreError>;
    }
    PlanStore {
        fn insert_plan(tenant: TenantId, plan: &Plan, first: &PlanVersion, change: &Change) -> Result<(), StoreError>;
        fn update_plan(tenant: TenantId, previous: &Plan, next: &Plan, new_version: Option<&PlanVersion>, change: &Change) -> Result<(), StoreError>;
        fn get_plan(tenant: TenantId, id: PlanId) -> Result<Option<Plan>, StoreError>;
        fn list_plans(tenant: TenantId, filter: PlanFilter, page: &PageRequest) -> Result<Page<Plan>, StoreError>;
        fn list_plan_versions(tenant: TenantId, plan: PlanId) -> Result<Vec<PlanVersion>, StoreError>;
        fn plan_subscription_counts(tenant: TenantId, plan: PlanId) -> Result<Vec<(u32, u64)>, StoreError>;
    }
    DunningStore {
        fn get_dunning_policy(tenant: TenantId) -> Result<Option<DunningPolicy>, StoreError>;
        fn set_dunning_policy(tenant: TenantId, policy: &DunningPolicy, change: &Change) -> Result<(), StoreError>;
        fn get_dunning_case(tenant: TenantId, account: AccountId) -> Result<Option<DunningCase>, StoreError>;
        fn save_dunning_case(tenant: TenantId, previous: Option<&DunningCase>, next: &DunningCase, account: Option<AccountStatusWrite<'_>>, notice: Option<&PendingNotice>, change: &Change) -> Result<(), StoreError>;
        fn get_dunning_notice(tenant: TenantId, account: AccountId, key: &str) -> Result<Option<PendingNotice>, StoreError>;
        fn claim_dunning_notice(tenant: TenantId, previous: &PendingNotice, next: &PendingNotice) -> Result<(), StoreError>;
        fn delete_dunning_notice(tenant: TenantId, account: AccountId, key: &str) -> Result<(), StoreError>;
    }
    EventStore {
        fn list_events(tenant: TenantId, filter: &EventFilter, page: &PageRequest) -> Result<Page<DomainEvent>, StoreError>;
        fn get_event(tenant: TenantId, id: EventId) -> Result<Option<DomainEvent>, StoreError>;
        fn mark_published(tenant: TenantId, id: EventId) -> Result<(), StoreError>;
        fn due_items(now: Timestamp, limit: usize) -> Result<Vec<DueItem>, StoreError>;
        fn due_page(now: Timestamp, cursor: &DueCursor, per_shard: usize) -> Result<DuePage, StoreError>;
        fn sweep_checkpoint() -> Result<Option<SweepCheckpoint>, StoreError>;
        fn save_sweep_checkpoint(next: &SweepCheckpoint) -> Result<(), StoreError>;
    }
    WebhookStore {
        fn insert_webhook_endpoint(tenant: TenantId, endpoint: &WebhookEndpoint, change: &Change) -> Result<(), StoreError>;
        fn update_webhook_endpoint(tenant: TenantId, previous: &WebhookEndpoint, next: &WebhookEndpoint, change: Option<&Change>) -> Result<(), StoreError>;
        fn delete_webhook_endpoint(tenant: TenantId, endpoint: &WebhookEndpoint, change: &Change) -> Result<(), StoreError>;
        fn get_webhook_endpoint(tenant: TenantId, id: WebhookEndpointId) -> Result<Option<WebhookEndpoint>, StoreError>;
        fn list_webhook_endpoints(tenant: TenantId, page: &PageRequest) -> Result<Page<WebhookEndpoint>, StoreError>;
        fn insert_delivery(tenant: TenantId, delivery: &WebhookDelivery, due_at: Timestamp) -> Result<bool, StoreError>;
        fn insert_due_deliveries(tenant: TenantId, deliveries: &[WebhookDelivery], due_at: Timestamp) -> Result<(), StoreError>;
        fn update_delivery(tenant: TenantId, expected_version: u64, next: &WebhookDelivery, due_at: Option<Timestamp>) -> Result<(), StoreError>;
        fn get_delivery(tenant: TenantId, endpoint: WebhookEndpointId, id: DeliveryId) -> Result<Option<WebhookDelivery>, StoreError>;
        fn list_deliveries(tenant: TenantId, endpoint: WebhookEndpointId, page: &PageRequest) -> Result<Page<WebhookDelivery>, StoreError>;
    }
    PaymentStore {
        fn get_payment_profile(tenant: TenantId, account: AccountId) -> Result<Option<PaymentProfile>, StoreError>;
        fn save_payment_profile(tenant: TenantId, next: &PaymentProfile, refs: &[(String, GatewayRef)], change: Option<&Change>) -> Result<(), StoreError>;
        fn get_payment(tenant: TenantId, id: PaymentId) -> Result<Option<Payment>, StoreError>;
        fn list_payments(tenant: TenantId, filter: &PaymentFilter, page: &PageRequest) -> Result<Page<Payment>, StoreError>;
        fn save_collection(tenant: TenantId, write: &CollectionWrite, change: &Change) -> Result<(), StoreError>;
        fn get_credit_note(tenant: TenantId, id: CreditNoteId) -> Result<Option<CreditNote>, StoreError>;
        fn list_credit_notes(tenant: TenantId, filter: &CreditNoteFilter, page: &PageRequest) -> Result<Page<CreditNote>, StoreError>;
        fn payment_settings(tenant: TenantId) -> Result<PaymentSettings, StoreError>;
        fn set_payment_settings(tenant: TenantId, settings: &PaymentSettings, change: &Change) -> Result<(), StoreError>;
        fn resolve_gateway_ref(gateway_id: &str) -> Result<Option<GatewayRef>, StoreError>;
        fn record_gateway_event(tenant: TenantId, event_id: &str) -> Result<(), StoreError>;
    }
    UsageStore {
        fn stored_usage_events(tenant: TenantId, transaction_ids: &[String]) -> Result<BTreeSet<String>, StoreError>;
        fn get_rollups(tenant: TenantId, keys: &[RollupKey]) -> Result<Vec<Rollup>, StoreError>;
        fn seen_distinct_values(tenant: TenantId, key: &RollupKey, values: &[String]) -> Result<BTreeSet<String>, StoreError>;
        fn record_usage(tenant: TenantId, units: &[UsageWrite]) -> Result<(), StepsFailed>;
        fn list_rollups(tenant: TenantId, subscription: SubscriptionId, from: Timestamp, to: Timestamp) -> Result<Vec<Rollup>, StoreError>;
        fn get_quota(tenant: TenantId, account: AccountId, metric: &str) -> Result<Option<QuotaSnapshot>, StoreError>;
        fn bill_late_usage(tenant: TenantId, invoice: Option<&InvoiceWrite>, rollups: &[RollupWrite], change: Option<&Change>) -> Result<(), StoreError>;
    }
    CreditStore {
        fn get_balance(tenant: TenantId, account: AccountId, currency: Currency) -> Result<Option<Balance>, StoreError>;
        fn get_balances(tenant: TenantId, wanted: &[(AccountId, Currency)]) -> Result<Vec<Balance>, StoreError>;
        fn list_balances(tenant: TenantId, account: AccountId) -> Result<Vec<Balance>, StoreError>;
        fn get_grants(tenant: TenantId, account: AccountId, ids: &[CreditGrantId]) -> Result<Vec<CreditGrant>, StoreError>;
        fn list_grants(tenant: TenantId, account: AccountId, page: &PageRequest) -> Result<Page<CreditGrant>, StoreError>;
        fn list_balance_transactions(tenant: TenantId, account: AccountId, currency: Option<Currency>, page: &PageRequest) -> Result<Page<BalanceTransaction>, StoreError>;
        fn save_balance(tenant: TenantId, change: &BalanceChange, record: &Change) -> Result<(), StoreError>;
    }
    WalletStore {
        fn get_wallet(tenant: TenantId, id: WalletId) -> Result<Option<Wallet>, StoreError>;
        fn list_wallets(tenant: TenantId, account: AccountId, page: &PageRequest) -> Result<Page<Wallet>, StoreError>;
        fn active_wallets(tenant: TenantId, account: AccountId) -> Result<Vec<Wallet>, StoreError>;
        fn wallet_holders(tenant: TenantId, wanted: &[(AccountId, Currency)]) -> Result<Vec<(AccountId, Currency)>, StoreError>;
        fn list_wallet_transactions(tenant: TenantId, wallet: WalletId, page: &PageRequest) -> Result<Page<WalletTransaction>, StoreError>;
        fn save_wallet(tenant: TenantId, change: &WalletChange, record: &Change) -> Result<(), StoreError>;
    }
    BillingQueue {
        fn enqueue(jobs: &[BillingJob]) -> Result<(), StoreError>;
    }
    PaymentQueue {
        fn enqueue(jobs: &[PaymentJob]) -> Result<(), StoreError>;
    }
    Notifier {
        fn send(notification: &Notification) -> Result<(), NotifyError>;
    }
    Dispatch {
        fn publish(tenant: TenantId, events: &[DomainEvent]) -> Result<(), StoreError>;
        fn schedule_delivery(job: &DeliveryJob, delay: SignedDuration) -> Result<(), StoreError>;
    }
    WebhookSender {
        fn send(request: &WebhookRequest) -> SendOutcome;
    }
}

#[async_trait]
impl<T: PaymentGateway + ?Sized + 'static> PaymentGateway for Hooked<T> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn connected(&self, account: &StripeAccount) -> Option<Arc<dyn PaymentGateway>> {
        let connected = self.inner.connected(account)?;
        Some(Arc::new(Hooked::new(connected, self.hook.clone())))
    }
    async fn create_customer(&self, customer: &NewGatewayCustomer) -> Result<String, GatewayError> {
        let op = Op {
            port: "PaymentGateway",
            method: "create_customer",
        };
        self.around(op, self.inner.create_customer(customer)).await
    }
    async fn attach_payment_method(
        &self,
        customer: &str,
        payment_method: &str,
    ) -> Result<CardDetails, GatewayError> {
        let op = Op {
            port: "PaymentGateway",
            method: "attach_payment_method",
        };
        self.around(
            op,
            self.inner.attach_payment_method(customer, payment_method),
        )
        .await
    }
    async fn detach_payment_method(&self, gateway_id: &str) -> Result<(), GatewayError> {
        let op = Op {
            port: "PaymentGateway",
            method: "detach_payment_method",
        };
        self.around(op, self.inner.detach_payment_method(gateway_id))
            .await
    }
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        let op = Op {
            port: "PaymentGateway",
            method: "charge",
        };
        self.around(op, self.inner.charge(request)).await
    }
    async fn refund(&self, request: &RefundRequest) -> Result<RefundOutcome, GatewayError> {
        let op = Op {
            port: "PaymentGateway",
            method: "refund",
        };
        self.around(op, self.inner.refund(request)).await
    }
    async fn action_outcome(&self, payment_intent: &str) -> Result<ChargeOutcome, GatewayError> {
        let op = Op {
            port: "PaymentGateway",
            method: "action_outcome",
        };
        self.around(op, self.inner.action_outcome(payment_intent))
            .await
    }
    async fn action_secret(&self, payment_intent: &str) -> Result<Option<String>, GatewayError> {
        let op = Op {
            port: "PaymentGateway",
            method: "action_secret",
        };
        self.around(op, self.inner.action_secret(payment_intent))
            .await
    }
    fn publishable_key(&self) -> Option<&str> {
        self.inner.publishable_key()
    }
}

/// Makes concurrent tasks interleave at every operation: before each one it yields a
/// seeded-random number of times and, when asked, sleeps a seeded-random delay (on tokio's
/// paused clock a sleep moves time on instead of waiting, so one seed is one interleaving).
/// It counts the conditional writes refused, so a test can show its tasks really raced.
pub struct Racing {
    rng: Mutex<StdRng>,
    max_yields: u32,
    max_delay: Duration,
    refused: Mutex<BTreeMap<Op, u64>>,
}

impl Racing {
    /// Up to four yields before each operation, no delays.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            max_yields: 4,
            max_delay: Duration::ZERO,
            refused: Mutex::default(),
        }
    }

    /// Also sleeps up to `max` before each operation: for tests on the paused clock.
    pub fn with_delays(self, max: Duration) -> Self {
        Self {
            max_delay: max,
            ..self
        }
    }

    /// The conditional writes refused so far, by operation.
    pub fn refused(&self) -> BTreeMap<Op, u64> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many times `port::method` was refused.
    pub fn refused_of(&self, port: &str, method: &str) -> u64 {
        self.refused_where(|op| op.port == port && op.method == method)
    }

    /// How many of `port`'s conditional writes were refused.
    pub fn refused_on(&self, port: &str) -> u64 {
        self.refused_where(|op| op.port == port)
    }

    fn refused_where(&self, pick: impl Fn(&Op) -> bool) -> u64 {
        self.refused()
            .into_iter()
            .filter(|(op, _)| pick(op))
            .map(|(_, n)| n)
            .sum()
    }
}

#[async_trait]
impl Hook for Racing {
    async fn before(&self, _op: Op) -> Option<Fault> {
        let (yields, delay) = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            let delay = if self.max_delay.is_zero() {
                Duration::ZERO
            } else {
                rng.gen_range(Duration::ZERO..=self.max_delay)
            };
            (rng.gen_range(0..=self.max_yields), delay)
        };
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        None
    }

    async fn after(&self, op: Op, seen: Seen) -> Option<Fault> {
        if seen == Seen::Refused {
            *self
                .refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(op)
                .or_default() += 1;
        }
        None
    }
}

/// When an injected fault strikes: before the operation (it fails, nothing happens) or
/// after it (its effect stays and the caller sees an error: a crash after the commit, an
/// answer lost on the way back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Before,
    After,
}

/// Which operations a fault counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Any,
    Op(Op),
}

impl Target {
    fn matches(&self, op: Op) -> bool {
        match self {
            Target::Any => true,
            Target::Op(target) => *target == op,
        }
    }
}

/// Injects one fault, once: at the `nth` operation (counting from 1) its target matches.
/// Without a fault it counts the operations, so a clean run tells how many places a fault
/// can strike.
pub struct Faults {
    fault: Option<(When, Target, u64)>,
    seen: AtomicU64,
    fired: AtomicU64,
}

impl Faults {
    /// Counts operations, injects nothing.
    pub fn none() -> Self {
        Self {
            fault: None,
            seen: AtomicU64::new(0),
            fired: AtomicU64::new(0),
        }
    }

    pub fn at(when: When, target: Target, nth: u64) -> Self {
        Self {
            fault: Some((when, target, nth)),
            ..Self::none()
        }
    }

    /// Operations seen (those the target matches, or all without a fault).
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }

    /// Whether the fault struck.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst) > 0
    }

    /// Counts `op`; whether the fault strikes it at `now`.
    fn strikes(&self, op: Op, now: When) -> bool {
        let Some((when, target, nth)) = self.fault else {
            if now == When::Before {
                self.seen.fetch_add(1, Ordering::SeqCst);
            }
            return false;
        };
        if !target.matches(op) {
            return false;
        }
        let n = if now == When::Before {
            self.seen.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            self.seen.load(Ordering::SeqCst)
        };
        // Each operation's `after` follows its own `before` directly only when nothing runs
        // concurrently; the campaign's faulty runs are single workers.
        now == when && n == nth && self.fired.fetch_add(1, Ordering::SeqCst) == 0
    }
}

#[async_trait]
impl Hook for Faults {
    async fn before(&self, op: Op) -> Option<Fault> {
        self.strikes(op, When::Before)
            .then(|| Fault(format!("injected: {op} failed")))
    }

    async fn after(&self, op: Op, _seen: Seen) -> Option<Fault> {
        self.strikes(op, When::After)
            .then(|| Fault(format!("injected: crashed after {op}")))
    }
}
