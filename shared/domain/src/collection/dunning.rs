//! Dunning (user story 8): what happens to a customer whose invoices stay unpaid.
//!
//! A tenant's [`DunningPolicy`] is a short list of steps, each a number of days after the
//! account's oldest unpaid invoice became overdue (its first failed payment): by default a
//! reminder on day 3, a warning on day 7 (account `warning`) and a block on day 14 (account
//! `blocked`: no new subscriptions, no plan changes). Paying or voiding every overdue invoice
//! ends the case and unblocks the account.
//!
//! An account's [`DunningCase`] is the record of one such episode. It keeps the policy it
//! started with (a policy change applies to the next case, so a running case never jumps),
//! the overdue invoices, and the steps taken. Every move is a pure function of the case and
//! a time that returns the next case, or `None` when there is nothing to do, so a step runs
//! once however often it is asked for: the store writes the next case only over the version
//! it was computed from.
//!
//! Each step, and the resolution of a case in which the customer heard from us, leaves a
//! [`Notice`] to send, named by a key that is unique within the account.

use crate::events::types::EventType;
use crate::kernel::error::ErrorCode;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::customers::account::{Account, AccountStatus};
use crate::kernel::error::ValidationError;
use crate::kernel::ids::{AccountId, InvoiceId, TestClockId};

use crate::documents::email::Message;
/// Dunning's notices are emails like the others (their kinds are among them).
pub use crate::documents::email::NoticeKind;

/// Most steps a policy may have.
pub const MAX_STEPS: usize = 10;
/// The latest day a step may fall on.
pub const MAX_DAYS: u32 = 365;

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DunningAction {
    /// Tell the customer a payment is overdue.
    Reminder,
    /// Tell the customer the account will be blocked; the account becomes `warning`.
    Warning,
    /// Block the account: no new subscriptions or plan changes until it has paid.
    Block,
}

impl DunningAction {
    pub fn event_type(self) -> EventType {
        match self {
            Self::Reminder => EventType::DunningReminder,
            Self::Warning => EventType::DunningWarning,
            Self::Block => EventType::DunningBlocked,
        }
    }

    /// The account status this step moves to, if it moves one.
    pub fn account_status(self) -> Option<AccountStatus> {
        match self {
            Self::Reminder => None,
            Self::Warning => Some(AccountStatus::Warning),
            Self::Block => Some(AccountStatus::Blocked),
        }
    }

    fn notice(self) -> NoticeKind {
        match self {
            Self::Reminder => NoticeKind::Reminder,
            Self::Warning => NoticeKind::Warning,
            Self::Block => NoticeKind::Blocked,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DunningStep {
    /// Days after the oldest unpaid invoice became overdue.
    pub after_days: u32,
    pub action: DunningAction,
}

/// A tenant's dunning steps, validated: days strictly increasing, at most [`MAX_STEPS`],
/// each within [`MAX_DAYS`], and a block only as the last step. No steps: no dunning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"steps": [
    {"after_days": 3, "action": "reminder"},
    {"after_days": 7, "action": "warning"},
    {"after_days": 14, "action": "block"}
]}))]
pub struct DunningPolicy {
    pub steps: Vec<DunningStep>,
    /// What a block does beyond refusing new subscriptions and plan changes. Read when it
    /// matters (a check, a renewal), so a change applies at once, also to running cases.
    #[serde(default)]
    pub on_block: BlockEffects,
}

impl Default for DunningPolicy {
    fn default() -> Self {
        let step = |after_days, action| DunningStep { after_days, action };
        Self {
            steps: vec![
                step(3, DunningAction::Reminder),
                step(7, DunningAction::Warning),
                step(14, DunningAction::Block),
            ],
            on_block: BlockEffects::default(),
        }
    }
}

/// What a blocked account loses besides new subscriptions and plan changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockEffects {
    /// Entitlement checks answer `allowed: false` with `reason: account_blocked` (default).
    #[serde(default = "deny_by_default")]
    pub deny_entitlements: bool,
    /// Renewals are not billed: a subscription whose period ends while its account is
    /// blocked is paused at that end (`subscription.paused`), checked again daily, and
    /// resumed at the first check after the account is unblocked, with a new period from
    /// then (the blocked gap is never billed). Off by default.
    #[serde(default)]
    pub suspend_subscriptions: bool,
}

fn deny_by_default() -> bool {
    true
}

impl Default for BlockEffects {
    fn default() -> Self {
        Self {
            deny_entitlements: true,
            suspend_subscriptions: false,
        }
    }
}

impl DunningPolicy {
    pub fn new(steps: Vec<DunningStep>) -> Result<Self, ValidationError> {
        if steps.len() > MAX_STEPS {
            return Err(ValidationError::new(
                ErrorCode::TooManyDunningSteps,
                "steps",
                format!("a dunning policy has at most {MAX_STEPS} steps"),
            ));
        }
        for (i, step) in steps.iter().enumerate() {
            if step.after_days > MAX_DAYS {
                return Err(ValidationError::new(
                    ErrorCode::InvalidDunningDay,
                    format!("steps[{i}].after_days"),
                    format!(
                        "a step falls at most {MAX_DAYS} days after the invoice became overdue"
                    ),
                ));
            }
            if i > 0 && step.after_days <= steps[i - 1].after_days {
                return Err(ValidationError::new(
                    ErrorCode::DunningStepsOutOfOrder,
                    format!("steps[{i}].after_days"),
                    "steps run in order: each step's day must be later than the one before",
                ));
            }
            if step.action == DunningAction::Block && i + 1 != steps.len() {
                return Err(ValidationError::new(
                    ErrorCode::DunningBlockNotLast,
                    format!("steps[{i}].action"),
                    "a block ends the policy: nothing can follow it",
                ));
            }
        }
        Ok(Self {
            steps,
            on_block: BlockEffects::default(),
        })
    }

    /// When step `index` of a case overdue since `since` falls due.
    pub fn step_at(&self, since: Timestamp, index: usize) -> Option<Timestamp> {
        let step = self.steps.get(index)?;
        since
            .checked_add(SignedDuration::from_hours(24 * i64::from(step.after_days)))
            .ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DunningStatus {
    /// Invoices are overdue; steps are still to come or the account is blocked.
    Active,
    /// Every overdue invoice was paid or voided.
    Resolved,
}

/// What a move tells the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: NoticeKind,
    /// Names the notice for good within the account (`{case}-{step}-{kind}`): a send
    /// repeated after a crash carries the same key, so a receiver can drop the copy.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TakenStep {
    pub action: DunningAction,
    pub after_days: u32,
    /// When the step fell due (the test clock's time for accounts on one).
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// One account's dunning episode (the latest one; the account's `number`-th).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DunningCase {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// 1 for the account's first case, then counting up.
    pub number: u32,
    pub status: DunningStatus,
    /// The tenant's policy when the case opened.
    pub policy: DunningPolicy,
    /// When the oldest unpaid invoice of the case became overdue; step days count from here.
    #[schema(value_type = String, format = DateTime)]
    pub overdue_since: Timestamp,
    #[schema(value_type = Vec<String>)]
    pub overdue_invoices: Vec<InvoiceId>,
    pub steps_taken: Vec<TakenStep>,
    /// When the next step falls due, while the case is active and one is left.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_step_at: Option<Timestamp>,
    #[schema(value_type = Option<String>)]
    pub test_clock: Option<TestClockId>,
    pub livemode: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resolved_at: Option<Timestamp>,
    pub version: u64,
}

/// Facts of the account a case belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseFacts {
    pub account_id: AccountId,
    pub test_clock: Option<TestClockId>,
    pub livemode: bool,
}

/// One move of a case: the case after it, the event it emits and the notice it leaves.
/// The account's status follows [`DunningCase::account_status`] of `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DunningTransition {
    pub next: DunningCase,
    pub event: Option<EventType>,
    pub notice: Option<Notice>,
}

/// How bad a status is; dunning only ever moves an account further down while a case runs.
pub fn severity(status: AccountStatus) -> u8 {
    match status {
        AccountStatus::Active => 0,
        AccountStatus::Warning => 1,
        AccountStatus::Blocked => 2,
    }
}

impl DunningCase {
    /// Opens a case for `invoice`, overdue since `at`. `previous` is the account's last case
    /// (resolved), whose version and number this one continues. `None` while `previous` is
    /// still active (the invoice is noted there instead) or when the policy has no steps.
    pub fn open(
        facts: CaseFacts,
        previous: Option<&DunningCase>,
        policy: &DunningPolicy,
        invoice: InvoiceId,
        at: Timestamp,
    ) -> Option<DunningCase> {
        if previous.is_some_and(|p| p.status == DunningStatus::Active) || policy.steps.is_empty() {
            return None;
        }
        // Whole milliseconds, as the due index keeps them: a step falls due exactly when
        // its index entry says it does.
        let at = Timestamp::from_millisecond(at.as_millisecond()).unwrap_or(at);
        let mut case = DunningCase {
            account_id: facts.account_id,
            number: previous.map_or(1, |p| p.number + 1),
            status: DunningStatus::Active,
            policy: policy.clone(),
            overdue_since: at,
            overdue_invoices: vec![invoice],
            steps_taken: Vec::new(),
            next_step_at: None,
            test_clock: facts.test_clock,
            livemode: facts.livemode,
            created_at: at,
            updated_at: at,
            resolved_at: None,
            version: previous.map_or(1, |p| p.version + 1),
        };
        case.next_step_at = case.policy.step_at(at, 0);
        Some(case)
    }

    /// Adds another overdue invoice to an active case; `None` if it is already there (or
    /// the case is over). The step days keep counting from the oldest invoice.
    pub fn note_overdue(&self, invoice: InvoiceId, at: Timestamp) -> Option<DunningCase> {
        if self.status != DunningStatus::Active || self.overdue_invoices.contains(&invoice) {
            return None;
        }
        let mut next = self.bumped(at);
        next.overdue_invoices.push(invoice);
        Some(next)
    }

    /// Takes the next step if it is due at or before `until`, at the time it fell due.
    pub fn take_due_step(&self, until: Timestamp) -> Option<DunningTransition> {
        let due = self.next_step_at.filter(|at| *at <= until)?;
        if self.status != DunningStatus::Active {
            return None;
        }
        let index = self.steps_taken.len();
        let step = *self.policy.steps.get(index)?;
        let mut next = self.bumped(due);
        next.steps_taken.push(TakenStep {
            action: step.action,
            after_days: step.after_days,
            at: due,
        });
        next.next_step_at = self.policy.step_at(self.overdue_since, index + 1);
        Some(DunningTransition {
            next,
            event: Some(step.action.event_type()),
            notice: Some(self.notice(step.action.notice(), index)),
        })
    }

    /// Takes `settled` invoices out of the case. When none is left the case is resolved:
    /// the account is active again and, if the customer had heard from us, is told so.
    /// `None` when none of them was in an active case.
    pub fn settle(&self, settled: &[InvoiceId], at: Timestamp) -> Option<DunningTransition> {
        if self.status != DunningStatus::Active
            || !self.overdue_invoices.iter().any(|i| settled.contains(i))
        {
            return None;
        }
        let mut next = self.bumped(at);
        next.overdue_invoices.retain(|i| !settled.contains(i));
        if !next.overdue_invoices.is_empty() {
            return Some(DunningTransition {
                next,
                event: None,
                notice: None,
            });
        }
        next.status = DunningStatus::Resolved;
        next.resolved_at = Some(at);
        next.next_step_at = None;
        let heard_from_us = !self.steps_taken.is_empty();
        Some(DunningTransition {
            next,
            event: heard_from_us.then_some(EventType::DunningUnblocked),
            notice: heard_from_us
                .then(|| self.notice(NoticeKind::Unblocked, self.steps_taken.len())),
        })
    }

    /// The status dunning leaves an account in: the worst status of the steps taken while
    /// the case is active, active once it is resolved.
    pub fn account_status(&self) -> AccountStatus {
        if self.status == DunningStatus::Resolved {
            return AccountStatus::Active;
        }
        self.steps_taken
            .iter()
            .filter_map(|s| s.action.account_status())
            .max_by_key(|s| severity(*s))
            .unwrap_or(AccountStatus::Active)
    }

    fn notice(&self, kind: NoticeKind, index: usize) -> Notice {
        Notice {
            kind,
            key: format!("{}-{}-{}", self.number, index + 1, kind.as_str()),
        }
    }

    fn bumped(&self, at: Timestamp) -> DunningCase {
        let mut next = self.clone();
        next.updated_at = at;
        next.version += 1;
        next
    }
}

/// The account as dunning leaves it after `case`'s latest move; `None` when its status
/// already is that.
pub fn account_after(account: &Account, case: &DunningCase, at: Timestamp) -> Option<Account> {
    let status = case.account_status();
    if account.status == status {
        return None;
    }
    let mut next = account.clone();
    next.status = status;
    next.updated_at = at.max(account.updated_at);
    next.version += 1;
    Some(next)
}

/// The words of a dunning notice (`None` for the kinds events trigger). `company` is the
/// seller's name, `owed` the overdue amounts already formatted (one per currency), `days`
/// how long the oldest has been overdue.
pub fn notice_text(kind: NoticeKind, company: &str, owed: &[String], days: i64) -> Option<Message> {
    let owed = if owed.is_empty() {
        "your overdue invoices".to_owned()
    } else {
        owed.join(" and ")
    };
    let (subject, heading, lead) = match kind {
        NoticeKind::Reminder => (
            format!("{company}: your payment is overdue"),
            "Your payment is overdue",
            format!(
                "We could not collect {owed}, overdue for {days} days. Please check your payment method or pay the open invoices."
            ),
        ),
        NoticeKind::Warning => (
            format!("{company}: please pay to keep your account"),
            "Please pay to keep your account",
            format!(
                "{owed} has been overdue for {days} days. If it stays unpaid your account will be blocked: no new subscriptions or plan changes."
            ),
        ),
        NoticeKind::Blocked => (
            format!("{company}: your account is blocked"),
            "Your account is blocked",
            format!(
                "{owed} has been overdue for {days} days, so your account is blocked. It is unblocked as soon as the overdue invoices are paid."
            ),
        ),
        NoticeKind::Unblocked => (
            format!("{company}: thank you, your account is in good standing"),
            "Your account is in good standing",
            "Your overdue invoices are settled and your account is fully active again.".to_owned(),
        ),
        NoticeKind::InvoiceIssued
        | NoticeKind::Receipt
        | NoticeKind::PaymentFailed
        | NoticeKind::ActionRequired
        | NoticeKind::TrialEnding
        | NoticeKind::CreditNoteIssued
        | NoticeKind::PriceChange => return None,
    };
    Some(Message {
        subject,
        heading: heading.to_owned(),
        paragraphs: vec![lead],
        ..Message::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ulid::Ulid;

    fn facts() -> CaseFacts {
        CaseFacts {
            account_id: AccountId::from_ulid(Ulid::from_parts(1, 1)),
            test_clock: None,
            livemode: false,
        }
    }

    fn invoice(n: u128) -> InvoiceId {
        InvoiceId::from_ulid(Ulid::from_parts(2, n))
    }

    fn t0() -> Timestamp {
        "2026-03-01T00:00:00Z".parse().unwrap()
    }

    fn day(d: i64) -> Timestamp {
        t0() + SignedDuration::from_hours(24 * d)
    }

    /// Runs every step due up to `until`, as the worker does.
    fn run_until(mut case: DunningCase, until: Timestamp) -> DunningCase {
        while let Some(t) = case.take_due_step(until) {
            case = t.next;
        }
        case
    }

    #[test]
    fn the_default_policy_reminds_warns_and_blocks() {
        let case =
            DunningCase::open(facts(), None, &DunningPolicy::default(), invoice(1), t0()).unwrap();
        assert_eq!(case.next_step_at, Some(day(3)));
        assert!(case.take_due_step(day(2)).is_none());
        let reminder = case.take_due_step(day(3)).unwrap();
        assert_eq!(reminder.event, Some(EventType::DunningReminder));
        assert_eq!(reminder.next.account_status(), AccountStatus::Active);
        assert_eq!(reminder.next.next_step_at, Some(day(7)));
        let warning = reminder.next.take_due_step(day(30)).unwrap();
        assert_eq!(warning.event, Some(EventType::DunningWarning));
        assert_eq!(warning.next.account_status(), AccountStatus::Warning);
        assert_eq!(
            warning.next.steps_taken[1].at,
            day(7),
            "taken when it fell due"
        );
        let block = warning.next.take_due_step(day(30)).unwrap();
        assert_eq!(block.event, Some(EventType::DunningBlocked));
        assert_eq!(block.next.account_status(), AccountStatus::Blocked);
        assert_eq!(block.next.next_step_at, None);
        assert!(block.next.take_due_step(day(365)).is_none());
    }

    #[test]
    fn paying_every_overdue_invoice_unblocks() {
        let case =
            DunningCase::open(facts(), None, &DunningPolicy::default(), invoice(1), t0()).unwrap();
        let case = case.note_overdue(invoice(2), day(1)).unwrap();
        assert!(
            case.note_overdue(invoice(2), day(1)).is_none(),
            "noted once"
        );
        let case = run_until(case, day(20));
        let partly = case.settle(&[invoice(1)], day(21)).unwrap();
        assert_eq!(partly.event, None);
        assert_eq!(partly.next.status, DunningStatus::Active);
        assert_eq!(partly.next.account_status(), AccountStatus::Blocked);
        let done = partly.next.settle(&[invoice(2)], day(22)).unwrap();
        assert_eq!(done.event, Some(EventType::DunningUnblocked));
        assert_eq!(done.next.account_status(), AccountStatus::Active);
        assert_eq!(done.notice.unwrap().kind, NoticeKind::Unblocked);
        assert!(done.next.settle(&[invoice(2)], day(23)).is_none());
        let again = DunningCase::open(
            facts(),
            Some(&done.next),
            &DunningPolicy::default(),
            invoice(3),
            day(40),
        )
        .unwrap();
        assert_eq!((again.number, again.version), (2, done.next.version + 1));
    }

    #[test]
    fn step_times_are_whole_milliseconds_like_the_due_index() {
        let at: Timestamp = "2026-03-01T00:00:00.123456789Z".parse().unwrap();
        let case =
            DunningCase::open(facts(), None, &DunningPolicy::default(), invoice(1), at).unwrap();
        let due = case.next_step_at.unwrap();
        assert_eq!(due.subsec_nanosecond() % 1_000_000, 0);
        assert!(case.take_due_step(due).is_some());
    }

    #[test]
    fn settling_before_any_step_is_silent() {
        let case =
            DunningCase::open(facts(), None, &DunningPolicy::default(), invoice(1), t0()).unwrap();
        let done = case.settle(&[invoice(1)], day(1)).unwrap();
        assert_eq!(done.event, None);
        assert_eq!(done.notice, None);
        assert_eq!(done.next.status, DunningStatus::Resolved);
    }

    #[test]
    fn notices_are_named_by_case_step_and_kind() {
        let case =
            DunningCase::open(facts(), None, &DunningPolicy::default(), invoice(1), t0()).unwrap();
        let reminder = case.take_due_step(day(3)).unwrap();
        assert_eq!(reminder.notice.as_ref().unwrap().key, "1-1-reminder");
        let warning = reminder.next.take_due_step(day(7)).unwrap();
        assert_eq!(warning.notice.as_ref().unwrap().key, "1-2-warning");
        let done = warning.next.settle(&[invoice(1)], day(8)).unwrap();
        assert_eq!(done.notice.unwrap().key, "1-3-unblocked");
    }

    #[test]
    fn policies_are_validated() {
        let step = |after_days, action| DunningStep { after_days, action };
        use DunningAction::*;
        assert!(DunningPolicy::new(vec![]).is_ok());
        assert!(DunningPolicy::new(vec![step(0, Reminder), step(1, Block)]).is_ok());
        let err = DunningPolicy::new(vec![step(3, Reminder), step(3, Warning)]).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.param.as_str()),
            ("dunning_steps_out_of_order", "steps[1].after_days")
        );
        let err = DunningPolicy::new(vec![step(3, Block), step(7, Reminder)]).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.param.as_str()),
            ("dunning_block_not_last", "steps[0].action")
        );
        let err = DunningPolicy::new(vec![step(400, Reminder)]).unwrap_err();
        assert_eq!(err.code, "invalid_dunning_day");
        let many = (1..=11).map(|d| step(d, Reminder)).collect();
        assert_eq!(
            DunningPolicy::new(many).unwrap_err().code,
            "too_many_dunning_steps"
        );
        assert!(DunningPolicy::new(DunningPolicy::default().steps).is_ok());
    }

    #[test]
    fn notices_say_what_is_owed() {
        let text = notice_text(NoticeKind::Warning, "Acme", &["$49.00".into()], 7).unwrap();
        assert_eq!(text.subject, "Acme: please pay to keep your account");
        assert!(text.paragraphs[0].contains("$49.00 has been overdue for 7 days"));
        assert_eq!(notice_text(NoticeKind::Receipt, "Acme", &[], 0), None);
    }

    fn action() -> impl Strategy<Value = DunningAction> {
        prop_oneof![
            Just(DunningAction::Reminder),
            Just(DunningAction::Warning),
            Just(DunningAction::Block),
        ]
    }

    fn raw_steps() -> impl Strategy<Value = Vec<DunningStep>> {
        prop::collection::vec(
            (0u32..40, action())
                .prop_map(|(after_days, action)| DunningStep { after_days, action }),
            0..8,
        )
    }

    /// Valid policies: increasing days, a block (if any) last.
    fn policy() -> impl Strategy<Value = DunningPolicy> {
        (
            prop::collection::vec((1u32..10, action()), 1..MAX_STEPS),
            any::<bool>(),
        )
            .prop_map(|(gaps, block_last)| {
                let mut day = 0;
                let mut steps: Vec<DunningStep> = gaps
                    .into_iter()
                    .map(|(gap, action)| {
                        day += gap;
                        let action = match action {
                            DunningAction::Block => DunningAction::Warning,
                            other => other,
                        };
                        DunningStep {
                            after_days: day,
                            action,
                        }
                    })
                    .collect();
                if block_last {
                    steps.last_mut().unwrap().action = DunningAction::Block;
                }
                DunningPolicy::new(steps).unwrap()
            })
    }

    proptest! {
        /// Validation accepts exactly the policies that follow the rules.
        #[test]
        fn validation_is_the_rules(steps in raw_steps()) {
            let ordered = steps.windows(2).all(|w| w[0].after_days < w[1].after_days);
            let block_last = steps
                .iter()
                .enumerate()
                .all(|(i, s)| s.action != DunningAction::Block || i + 1 == steps.len());
            prop_assert_eq!(DunningPolicy::new(steps).is_ok(), ordered && block_last);
        }

        /// However the worker's runs are spread over time (duplicates and late runs
        /// included), the steps taken are the policy's, in order, each once, each at the
        /// moment it fell due, and the case ends where one run to the end leaves it.
        #[test]
        fn steps_run_in_order_once_whatever_the_runs(
            policy in policy(),
            mut runs in prop::collection::vec(0i64..120, 0..12),
        ) {
            let case = DunningCase::open(facts(), None, &policy, invoice(1), t0()).unwrap();
            runs.sort();
            let mut stepwise = case.clone();
            for run in &runs {
                stepwise = run_until(stepwise, day(*run));
                let again = run_until(stepwise.clone(), day(*run));
                prop_assert_eq!(&again, &stepwise, "a repeated run changes nothing");
            }
            let last = runs.last().copied().unwrap_or(0);
            let at_once = run_until(case, day(last));
            prop_assert_eq!(&stepwise.steps_taken, &at_once.steps_taken);
            let expected: Vec<TakenStep> = policy
                .steps
                .iter()
                .filter(|s| day(i64::from(s.after_days)) <= day(last))
                .map(|s| TakenStep { action: s.action, after_days: s.after_days, at: day(i64::from(s.after_days)) })
                .collect();
            prop_assert_eq!(&stepwise.steps_taken, &expected);
        }

        /// While a case runs the account only gets worse, and settling everything always
        /// brings it back to active with nothing left to do.
        #[test]
        fn status_only_worsens_until_settled(policy in policy(), settle_on in 0i64..60) {
            let mut case = DunningCase::open(facts(), None, &policy, invoice(1), t0()).unwrap();
            let mut worst = 0;
            while let Some(t) = case.take_due_step(day(settle_on)) {
                let status = severity(t.next.account_status());
                prop_assert!(status >= worst);
                worst = status;
                case = t.next;
            }
            let done = case.settle(&[invoice(1)], day(settle_on)).unwrap();
            prop_assert_eq!(done.next.account_status(), AccountStatus::Active);
            prop_assert_eq!(done.event.is_some(), !case.steps_taken.is_empty());
            prop_assert!(done.next.take_due_step(day(1000)).is_none());
            prop_assert!(done.next.settle(&[invoice(1)], day(1000)).is_none());
        }
    }
}
