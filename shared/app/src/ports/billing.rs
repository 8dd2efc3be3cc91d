//! Persistence of subscriptions, invoices, test clocks and simulation jobs.

use async_trait::async_trait;
use billing_domain::billing::invoice::{Invoice, InvoiceStatus};
use billing_domain::billing::simulation::{SimulationChunk, SimulationRun};
use billing_domain::billing::subscription::{Subscription, SubscriptionStatus};
use billing_domain::billing::test_clock::TestClock;
use billing_domain::coupons::account::AccountDiscounts;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{
    AccountId, InvoiceId, PlanId, SimulationId, SubscriptionId, TenantId, TestClockId,
};
use jiff::Timestamp;

use super::{Change, Page, PageRequest, StoreError};

/// An invoice to write. `number` is the tenant sequence number it consumes, when it is
/// finalized in this write: the store advances the sequence from `number - 1` to `number`
/// in the same transaction, so a failed write consumes no number.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceWrite {
    pub invoice: Invoice,
    pub number: Option<u64>,
    /// The first payment attempt of an invoice finalized in this write (outbox style: the
    /// attempt waits in the due index until the payment worker has made it).
    pub payment: Option<billing_domain::collection::payment::Payment>,
    /// For a draft a lifecycle step wrote: it waits for the finalizer to number it (it is
    /// listed by [`InvoiceStore::pending_invoices`]). Any later write of the invoice that
    /// does not name it again takes the invoice off that list.
    pub pending: Option<Finalization>,
    /// The account's balance settling this invoice (credit applied, a negative total moved
    /// in), committed in the same transaction on the balance's version.
    pub balance: Option<Box<super::BalanceSettlement>>,
    /// Prepaid wallets this invoice consumes (or, for a top-up invoice being created, the
    /// purchase waiting on it), each on its wallet's version, in the same transaction.
    pub wallets: Option<Box<super::WalletSettlement>>,
    /// The account's discounts after this invoice took a `once` one, written in the same
    /// transaction on their version (see [`super::AccountDiscountStore`]).
    pub account_discounts: Option<Box<AccountDiscounts>>,
}

/// What the finalizer needs to open a draft besides the draft itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finalization {
    /// The subscription's payment terms, for the due date.
    pub days_until_due: Option<u32>,
    /// The subscription's mode, for the first payment attempt.
    pub livemode: bool,
    /// When the sweep hands the invoice to a finalizer if it is still waiting then (the
    /// backstop for a lost finalize job).
    pub hand_over_at: Timestamp,
}

/// Where an invoice waits in the finalizer's two stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PendingStage {
    /// A draft waiting for its number.
    Number,
    /// Numbered, waiting for its follow-ups (event, first payment attempt).
    FollowUps,
}

/// An invoice waiting in one of the finalizer's stages, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingInvoice {
    pub stage: PendingStage,
    pub invoice: Invoice,
    pub finalization: Finalization,
}

/// A draft opened under `number`, replacing the draft at `previous_version`; it keeps
/// its `finalization` while it waits for its follow-ups.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberedInvoice {
    pub previous_version: u64,
    pub invoice: Invoice,
    pub number: u64,
    pub finalization: Finalization,
}

/// Most drafts one [`InvoiceStore::number_invoices`] numbers: with the sequence, a
/// DynamoDB transaction's 100 items.
pub const MAX_NUMBERED_PER_WRITE: usize = 99;

/// The default prefix of invoice numbers (`INV-000123`).
pub const DEFAULT_INVOICE_PREFIX: &str = "INV";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextInvoiceNumber {
    pub number: u64,
    pub prefix: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    pub account: Option<AccountId>,
    pub status: Option<SubscriptionStatus>,
    pub plan: Option<PlanId>,
}

impl SubscriptionFilter {
    pub fn admits(&self, s: &Subscription) -> bool {
        self.account.is_none_or(|a| s.account_id == a)
            && self.status.is_none_or(|st| s.status == st)
            && self.plan.is_none_or(|p| s.terms.plan_id == p)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceFilter {
    pub account: Option<AccountId>,
    pub subscription: Option<SubscriptionId>,
    pub status: Option<InvoiceStatus>,
    pub created_from: Option<Timestamp>,
    pub created_to: Option<Timestamp>,
}

impl InvoiceFilter {
    pub fn admits(&self, i: &Invoice) -> bool {
        self.account.is_none_or(|a| i.account_id == a)
            && self
                .subscription
                .is_none_or(|s| i.subscription_id == Some(s))
            && self.status.is_none_or(|st| i.status == st)
            && self.created_from.is_none_or(|t| i.created_at >= t)
            && self.created_to.is_none_or(|t| i.created_at < t)
    }
}

/// One lifecycle step of a subscription to write: the subscription replacing `previous`
/// (version-checked), the invoice the step made, the usage rollups it billed, and its audit
/// record and events.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionStep {
    pub previous: Subscription,
    pub next: Subscription,
    pub invoice: Option<InvoiceWrite>,
    pub rollups: Vec<super::RollupWrite>,
    pub change: Change,
}

/// Units written before one failed (subscription steps, usage units), and that failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepsFailed {
    pub written: usize,
    pub error: StoreError,
}

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Creates the subscription (with its place in the due index and the plan version's
    /// subscription count) and its first invoice, atomically.
    async fn insert_subscription(
        &self,
        tenant: TenantId,
        subscription: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Replaces `previous` with `next` if `previous.version` is still stored, moving its
    /// due-index entry and plan counts, with the invoice the step made (which must not
    /// exist yet), atomically.
    async fn save_subscription(
        &self,
        tenant: TenantId,
        previous: &Subscription,
        next: &Subscription,
        invoice: Option<&InvoiceWrite>,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Writes steps of several of a tenant's subscriptions (consecutive invoice numbers,
    /// at most one step per subscription), in order, each atomically and several per
    /// request where they fit. On a failure the steps before it may be written: the
    /// error says how many.
    async fn save_subscription_steps(
        &self,
        tenant: TenantId,
        steps: &[SubscriptionStep],
    ) -> Result<(), StepsFailed>;
    async fn get_subscription(
        &self,
        tenant: TenantId,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError>;
    /// The ones of `ids` that exist, with as few reads as the store can.
    async fn get_subscriptions(
        &self,
        tenant: TenantId,
        ids: &[SubscriptionId],
    ) -> Result<Vec<Subscription>, StoreError>;
    async fn list_subscriptions(
        &self,
        tenant: TenantId,
        filter: &SubscriptionFilter,
        page: &PageRequest,
    ) -> Result<Page<Subscription>, StoreError>;
    /// Everything waiting on a test clock (subscription steps, payment attempts, …) due at
    /// or before `up_to`, earliest first.
    async fn clock_due_items(
        &self,
        tenant: TenantId,
        clock: TestClockId,
        up_to: Timestamp,
        limit: usize,
    ) -> Result<Vec<super::DueItem>, StoreError>;
}

#[async_trait]
pub trait InvoiceStore: Send + Sync {
    /// The number the tenant's next finalized invoice gets.
    /// The tenant's next invoice number and the prefix it is printed with.
    async fn next_invoice_number(&self, tenant: TenantId) -> Result<NextInvoiceNumber, StoreError>;
    /// Sets the prefix of numbers assigned from now on (the sequence itself goes on).
    async fn set_invoice_prefix(
        &self,
        tenant: TenantId,
        prefix: &str,
        change: &Change,
    ) -> Result<(), StoreError>;
    async fn insert_invoice(
        &self,
        tenant: TenantId,
        invoice: &InvoiceWrite,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Replaces `previous` if its version is still stored (finalize, void, …).
    async fn save_invoice(
        &self,
        tenant: TenantId,
        previous: &Invoice,
        next: &InvoiceWrite,
        change: &Change,
    ) -> Result<(), StoreError>;
    async fn get_invoice(
        &self,
        tenant: TenantId,
        id: InvoiceId,
    ) -> Result<Option<Invoice>, StoreError>;
    /// Up to `limit` of the tenant's pending invoices as stored now: those owing their
    /// follow-ups first, then drafts waiting for their numbers, each stage oldest first (by
    /// `created_at`, then id).
    async fn pending_invoices(
        &self,
        tenant: TenantId,
        limit: usize,
    ) -> Result<Vec<PendingInvoice>, StoreError>;
    /// Numbers drafts in one all-or-nothing write (at most [`MAX_NUMBERED_PER_WRITE`]):
    /// the sequence moves from the first number less one to the last (consecutive numbers,
    /// in order), and each draft, still waiting for its number at `previous_version`, is
    /// replaced by its numbered invoice, which then waits for its follow-ups. The numbers
    /// are printed with `prefix`, which must still be the tenant's (a caller may number
    /// from a sequence it read rounds before). A moved sequence, a changed prefix or a
    /// changed draft is a `VersionConflict` and writes nothing.
    async fn number_invoices(
        &self,
        tenant: TenantId,
        prefix: &str,
        numbered: &[NumberedInvoice],
    ) -> Result<(), StoreError>;
    /// The follow-ups of a numbered invoice, once: its first payment attempt, audit record
    /// and events, written with the invoice taken off the pending list, on the condition
    /// that it still waits for them (else `VersionConflict`, nothing written).
    async fn finish_invoice(
        &self,
        tenant: TenantId,
        invoice: &Invoice,
        payment: Option<&billing_domain::collection::payment::Payment>,
        change: &Change,
    ) -> Result<(), StoreError>;
    /// Newest first.
    async fn list_invoices(
        &self,
        tenant: TenantId,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> Result<Page<Invoice>, StoreError>;
}

#[async_trait]
pub trait TestClockStore: Send + Sync {
    async fn insert_test_clock(
        &self,
        tenant: TenantId,
        clock: &TestClock,
        change: &Change,
    ) -> Result<(), StoreError>;
    async fn save_test_clock(
        &self,
        tenant: TenantId,
        previous: &TestClock,
        next: &TestClock,
    ) -> Result<(), StoreError>;
    async fn get_test_clock(
        &self,
        tenant: TenantId,
        id: TestClockId,
    ) -> Result<Option<TestClock>, StoreError>;
}

/// Catalog change simulations run as jobs: the run, and the impacts of each chunk it saved.
/// Both expire with the run (its `expires_at`).
#[async_trait]
pub trait SimulationStore: Send + Sync {
    async fn insert_simulation(
        &self,
        tenant: TenantId,
        run: &SimulationRun,
    ) -> Result<(), StoreError>;
    /// Replaces the run over `previous`'s version (a conflict when another delivery got
    /// there first), with `chunk` written in the same transaction; a chunk of that number
    /// already written is a conflict too.
    async fn save_simulation(
        &self,
        tenant: TenantId,
        previous: &SimulationRun,
        next: &SimulationRun,
        chunk: Option<&SimulationChunk>,
    ) -> Result<(), StoreError>;
    async fn get_simulation(
        &self,
        tenant: TenantId,
        id: SimulationId,
    ) -> Result<Option<SimulationRun>, StoreError>;
    /// The run's chunks in order.
    async fn simulation_chunks(
        &self,
        tenant: TenantId,
        id: SimulationId,
    ) -> Result<Vec<SimulationChunk>, StoreError>;
}

/// Work for the billing worker, one SQS message each.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BillingJob {
    /// Run whatever of the subscription is due now.
    Subscription {
        tenant: TenantId,
        id: SubscriptionId,
    },
    /// Finish advancing a test clock.
    TestClock { tenant: TenantId, id: TestClockId },
    /// Number the tenant's drafts waiting for their numbers, and make their follow-ups.
    Finalize { tenant: TenantId },
    /// Move the credit that expired out of an account's balance in one currency.
    CreditExpiry {
        tenant: TenantId,
        account: AccountId,
        currency: Currency,
    },
    /// Purge a deleted account whose purge fell due (erase or postpone it).
    AccountPurge {
        tenant: TenantId,
        account: AccountId,
    },
    /// A prepaid wallet's expiry, scheduled top-up or threshold rules fell due.
    Wallet {
        tenant: TenantId,
        wallet: billing_domain::kernel::ids::WalletId,
    },
    /// Price the next chunk of a catalog change simulation's subscriptions.
    Simulation {
        tenant: TenantId,
        simulation: SimulationId,
    },
    /// Arm the price notices of a plan version's next chunk of subscriptions, after
    /// `after` (`None`: from the first).
    PriceNotices {
        tenant: TenantId,
        plan: PlanId,
        version: u32,
        after: Option<String>,
    },
}

impl BillingJob {
    pub fn tenant(&self) -> TenantId {
        match self {
            BillingJob::Subscription { tenant, .. }
            | BillingJob::TestClock { tenant, .. }
            | BillingJob::Finalize { tenant }
            | BillingJob::CreditExpiry { tenant, .. }
            | BillingJob::AccountPurge { tenant, .. }
            | BillingJob::Wallet { tenant, .. }
            | BillingJob::Simulation { tenant, .. }
            | BillingJob::PriceNotices { tenant, .. } => *tenant,
        }
    }

    /// The FIFO message group: jobs of one group run one at a time, groups in parallel.
    /// Drafting touches only its subscription, so each subscription (and test clock) is a
    /// group of its own; the tenant's finalizer is one group, as its sequence is serial.
    pub fn group(&self) -> String {
        match self {
            BillingJob::Subscription { id, .. } => id.to_string(),
            BillingJob::TestClock { id, .. } => id.to_string(),
            BillingJob::Finalize { tenant } => format!("finalize-{tenant}"),
            // A balance has one writer at a time anyway (its version); one group per
            // account keeps its expiries from queueing behind other work.
            BillingJob::CreditExpiry { account, .. } => format!("balance-{account}"),
            BillingJob::AccountPurge { account, .. } => account.to_string(),
            BillingJob::Wallet { wallet, .. } => wallet.to_string(),
            // One chunk at a time: each resumes where the last saved.
            BillingJob::Simulation { simulation, .. } => simulation.to_string(),
            // One chunk at a time: each resumes where the last stopped.
            BillingJob::PriceNotices { plan, version, .. } => {
                format!("price-notices-{plan}-v{version}")
            }
        }
    }
}

/// The billing queue.
#[async_trait]
pub trait BillingQueue: Send + Sync {
    async fn enqueue(&self, jobs: &[BillingJob]) -> Result<(), StoreError>;

    /// Whether the queue drops a tenant's finalize request as a repeat of one sent in the
    /// same wall-clock second (SQS FIFO: their deduplication id is the tenant and the
    /// second). A finalize job from such a queue then reads the drafts once more after
    /// its second has passed: a draft whose own request was dropped is in that read.
    fn coalesces_finalize_jobs_per_second(&self) -> bool {
        false
    }
}

/// Work for the payment worker, one SQS message each. New kinds of payment work (dunning
/// steps, …) are new variants; the worker's `match` names each one's handler.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaymentJob {
    /// Charge one payment attempt that has fallen due (the first one, or a retry).
    Attempt {
        tenant: TenantId,
        id: billing_domain::kernel::ids::PaymentId,
    },
    /// Run the dunning steps of an account that have fallen due.
    Dunning {
        tenant: TenantId,
        account: AccountId,
    },
    /// An invoice the customer pays by themselves passed its due date unpaid.
    Overdue {
        tenant: TenantId,
        invoice: billing_domain::kernel::ids::InvoiceId,
    },
    /// Send a customer notice: a dunning notice whose sender did not confirm it, or the
    /// email an event left (due at once). The name is dunning's, from before emails.
    DunningNotice {
        tenant: TenantId,
        account: AccountId,
        key: String,
    },
}

impl PaymentJob {
    pub fn tenant(&self) -> TenantId {
        match self {
            PaymentJob::Attempt { tenant, .. }
            | PaymentJob::Overdue { tenant, .. }
            | PaymentJob::Dunning { tenant, .. }
            | PaymentJob::DunningNotice { tenant, .. } => *tenant,
        }
    }

    /// What the job writes: jobs of one key in a worker's batch run one after the other
    /// (an attempt delivered twice, an account's dunning step and its notice), others at
    /// once.
    pub fn batch_key(&self) -> String {
        match self {
            PaymentJob::Attempt { id, .. } => id.to_string(),
            PaymentJob::Overdue { invoice, .. } => invoice.to_string(),
            PaymentJob::Dunning { account, .. } | PaymentJob::DunningNotice { account, .. } => {
                account.to_string()
            }
        }
    }
}

/// The payments queue (`billing-payments`), consumed by `payment-worker`.
#[async_trait]
pub trait PaymentQueue: Send + Sync {
    async fn enqueue(&self, jobs: &[PaymentJob]) -> Result<(), StoreError>;
}
