//! The flows the campaign faults: each sets up its world through the use cases (with the
//! hook quiet), then names the job a worker or the API delivers, which the campaign runs
//! under faults.

use anyhow::Context as _;
use billing_app::billing::StartSubscription;
use billing_app::coupons::CouponRef;
use billing_app::credits::GrantRequest;
use billing_app::ports::*;
use billing_app::wallets::CreateWallet;
use billing_app::AppError;
use billing_domain::billing::subscription::{CollectionMethod, Subscription};
use billing_domain::collection::payment::PaymentStatus;
use billing_domain::customers::account::Account;
use billing_domain::events::record::DomainEvent;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::decimal::parse_decimal;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{
    AccountId, CouponId, PaymentId, PlanId, SubscriptionId, WalletId,
};
use billing_domain::usage::meter::{UsageEventInput, UsageStatus};
use billing_domain::wallets::wallet::Wallet;
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::world::World;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Flow {
    /// A billing worker renews a subscription for two periods and finalizes the invoices.
    BillPeriod,
    /// The finalizer numbers a tenant's drafts and writes their follow-ups.
    Finalize,
    /// The payment worker collects a retry after a decline.
    CollectPayment,
    /// A Stripe event (payment succeeded after authentication) is applied.
    GatewayEvent,
    /// A batch of usage events, some repeated, is ingested.
    UsageBatch,
    /// Usage that arrived after its period was billed goes on a supplemental invoice.
    LateUsage,
    /// The account's due dunning steps run.
    DunningStep,
    /// An event is fanned out and delivered to a webhook endpoint.
    WebhookDelivery,
    /// The finalizer numbers drafts of one account that spend its credit balance.
    CreditApplication,
    /// A coupon's last redemption slot is taken by a subscription.
    CouponRedemption,
    /// A worker drafts the renewals of one account's subscriptions, which take its `once`
    /// discount (exactly one of them) and its `forever` one.
    AccountDiscount,
    /// The finalizer numbers drafts of one account that consume its prepaid wallet.
    WalletConsumption,
    /// The payment worker collects a wallet's top-up invoice: its credits arrive.
    TopUpSettlement,
}

/// A flow's job, as set up for one run.
#[derive(Debug, Clone)]
pub enum Job {
    Renew {
        subscription: SubscriptionId,
        until: Timestamp,
    },
    Finalize,
    Collect {
        payment: PaymentId,
    },
    GatewayEvent {
        event: Box<GatewayEvent>,
        stale: Box<GatewayEvent>,
    },
    Usage {
        subscription: SubscriptionId,
        events: Vec<UsageEventInput>,
    },
    LateUsage {
        subscription: SubscriptionId,
        until: Timestamp,
    },
    Dunning {
        account: AccountId,
        at: Timestamp,
    },
    Webhook {
        event: Box<DomainEvent>,
    },
    SpendCredit {
        account: AccountId,
    },
    Redeem {
        subscription: SubscriptionId,
        coupon: CouponId,
    },
    DraftDiscounted {
        account: AccountId,
        subscriptions: Vec<SubscriptionId>,
        until: Timestamp,
    },
    ConsumeWallet {
        wallet: WalletId,
    },
    SettleTopUp {
        payment: PaymentId,
        wallet: WalletId,
    },
}

impl Flow {
    pub const ALL: [Flow; 13] = [
        Flow::BillPeriod,
        Flow::Finalize,
        Flow::CollectPayment,
        Flow::GatewayEvent,
        Flow::UsageBatch,
        Flow::LateUsage,
        Flow::DunningStep,
        Flow::WebhookDelivery,
        Flow::CreditApplication,
        Flow::CouponRedemption,
        Flow::AccountDiscount,
        Flow::WalletConsumption,
        Flow::TopUpSettlement,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Flow::BillPeriod => "billing a period",
            Flow::Finalize => "finalizing and numbering",
            Flow::CollectPayment => "collecting a payment (retry)",
            Flow::GatewayEvent => "applying a Stripe event",
            Flow::UsageBatch => "ingesting a usage batch",
            Flow::LateUsage => "late usage",
            Flow::DunningStep => "a dunning step",
            Flow::WebhookDelivery => "a webhook delivery",
            Flow::CreditApplication => "applying account credit",
            Flow::CouponRedemption => "redeeming a coupon",
            Flow::AccountDiscount => "drafting with an account's discounts",
            Flow::WalletConsumption => "consuming a prepaid wallet",
            Flow::TopUpSettlement => "settling a wallet top-up",
        }
    }

    /// Whether the job charges at the gateway (so its answer can be lost).
    pub fn charges(self) -> bool {
        matches!(
            self,
            Flow::BillPeriod
                | Flow::Finalize
                | Flow::CollectPayment
                | Flow::CreditApplication
                | Flow::WalletConsumption
                | Flow::TopUpSettlement
        )
    }

    /// Whether the job is a gateway event (so an older one can arrive after it).
    pub fn has_gateway_event(self) -> bool {
        self == Flow::GatewayEvent
    }

    /// Sets the world up for the job (the hook is quiet) and names the job.
    pub async fn set_up(self, w: &World, seed: u64) -> anyhow::Result<Job> {
        let mut rng = StdRng::seed_from_u64(seed ^ ((self as u64) << 32));
        let amount = rng.gen_range(100..10_000);
        let t0 = w.clock.now();
        let job = match self {
            Flow::BillPeriod => {
                let sub = subscribe(w, Some("4242424242424242"), flat_plan(amount)).await?;
                w.settle().await;
                // The worker runs when the renewals fall due.
                let until = t0 + SignedDuration::from_hours(24 * 62);
                w.clock.set(until);
                return Ok(Job::Renew {
                    subscription: sub.id,
                    until,
                });
            }
            Flow::Finalize => {
                let mut ids = Vec::new();
                for n in 0..3 {
                    let sub = subscribe(w, Some("4242424242424242"), flat_plan(amount + n)).await?;
                    ids.push(sub.id);
                }
                w.settle().await;
                draft_renewals(w, &ids, t0).await?;
                return Ok(Job::Finalize);
            }
            Flow::CreditApplication => {
                let account = account(w, Some("4242424242424242")).await?;
                let plan = plan(w, flat_plan(amount)).await?;
                let mut ids = Vec::new();
                for _ in 0..3 {
                    let start = StartSubscription::new(account.id, plan);
                    ids.push(
                        w.app
                            .billing
                            .create_subscription(&w.caller, start)
                            .await?
                            .id,
                    );
                }
                w.settle().await;
                // Enough for one renewal and a half: the drafts spend it in turn, the last
                // one not at all.
                let grant = GrantRequest {
                    account: account.id,
                    amount: i64::try_from(amount * 3 / 2)?,
                    currency: Currency::from_code("usd")?,
                    reason: "campaign".into(),
                    note: None,
                    expires_at: None,
                };
                w.app.credits.grant_credit(&w.caller, grant).await?;
                draft_renewals(w, &ids, t0).await?;
                return Ok(Job::SpendCredit {
                    account: account.id,
                });
            }
            Flow::WalletConsumption => {
                let account = account(w, Some("4242424242424242")).await?;
                let plan = plan(w, flat_plan(amount)).await?;
                let mut ids = Vec::new();
                for _ in 0..3 {
                    let start = StartSubscription::new(account.id, plan);
                    ids.push(
                        w.app
                            .billing
                            .create_subscription(&w.caller, start)
                            .await?
                            .id,
                    );
                }
                w.settle().await;
                // A wallet worth one renewal and a half (credits of $1): the drafts consume
                // it in turn, the last one not at all.
                let wallet = wallet(w, &account, i64::try_from(amount * 3 / 2)?, 0).await?;
                draft_renewals(w, &ids, t0).await?;
                return Ok(Job::ConsumeWallet { wallet: wallet.id });
            }
            Flow::TopUpSettlement => {
                let account = account(w, Some("4242424242424242")).await?;
                // Paid credits: the top-up invoice is finalized with its first attempt
                // waiting; the worker's attempt is the job.
                let wallet = wallet(w, &account, 0, i64::try_from(amount)?).await?;
                let attempt = pending_payment(w, |p| p.status == PaymentStatus::Pending).await?;
                w.clock.set(attempt.due_at);
                return Ok(Job::SettleTopUp {
                    payment: attempt.id,
                    wallet: wallet.id,
                });
            }
            Flow::CouponRedemption => {
                let sub = subscribe(w, None, flat_plan(amount)).await?;
                let coupon = json!({"code": format!("LAST{seed}"), "percent_off": "20",
                    "duration": "repeating", "duration_in_periods": 2, "max_redemptions": 1});
                let coupon = w
                    .app
                    .coupons
                    .create_coupon(&w.caller, serde_json::from_value(coupon)?)
                    .await?;
                Job::Redeem {
                    subscription: sub.id,
                    coupon: coupon.id,
                }
            }
            Flow::AccountDiscount => {
                let account = account(w, None).await?;
                let plan = plan(w, flat_plan(amount)).await?;
                let mut subscriptions = Vec::new();
                for _ in 0..3 {
                    let start = StartSubscription::new(account.id, plan);
                    let sub = w.app.billing.create_subscription(&w.caller, start).await?;
                    subscriptions.push(sub.id);
                }
                for coupon in [
                    json!({"code": format!("ONCE{seed}"), "amount_off": {"usd": amount / 2},
                        "duration": "once"}),
                    json!({"code": format!("TENTH{seed}"), "percent_off": "10",
                        "duration": "forever"}),
                ] {
                    let coupon = w
                        .app
                        .coupons
                        .create_coupon(&w.caller, serde_json::from_value(coupon)?)
                        .await?;
                    w.app
                        .coupons
                        .redeem_on_account(&w.caller, account.id, &CouponRef::Id(coupon.id))
                        .await?;
                }
                w.settle().await;
                // The worker runs when the renewals fall due.
                let until = t0 + SignedDuration::from_hours(24 * 32);
                w.clock.set(until);
                return Ok(Job::DraftDiscounted {
                    account: account.id,
                    subscriptions,
                    until,
                });
            }
            Flow::CollectPayment => {
                let sub = subscribe(w, Some("4000000000009995"), flat_plan(amount)).await?;
                w.settle().await;
                w.app
                    .customers
                    .add_payment_method(&w.caller, sub.account_id, "4242424242424242", true)
                    .await?;
                let retry = pending_payment(w, |p| p.status == PaymentStatus::Pending).await?;
                w.clock.set(retry.due_at);
                return Ok(Job::Collect { payment: retry.id });
            }
            Flow::GatewayEvent => {
                subscribe(w, Some("4000002500003155"), flat_plan(amount)).await?;
                w.settle().await;
                let waiting = pending_payment(w, |p| p.payment_intent.is_some()).await?;
                let intent = waiting.payment_intent.clone().context("an intent")?;
                let metadata = GatewayMetadata::from([
                    ("tenant_id".to_owned(), w.tenant().to_string()),
                    ("attempt_id".to_owned(), waiting.id.to_string()),
                ]);
                let now = w.clock.now();
                let event = GatewayEvent {
                    id: format!("evt_ok_{seed}"),
                    created: now,
                    livemode: false,
                    account: None,
                    kind: GatewayEventKind::PaymentSucceeded {
                        payment_intent: intent.clone(),
                        charge: Some(format!("ch_{seed}")),
                        amount: waiting.amount.get(),
                        currency: "usd".into(),
                        metadata: metadata.clone(),
                    },
                };
                let stale = GatewayEvent {
                    id: format!("evt_failed_{seed}"),
                    created: now - SignedDuration::from_mins(1),
                    livemode: false,
                    account: None,
                    kind: GatewayEventKind::PaymentFailed {
                        payment_intent: intent,
                        code: "card_declined".into(),
                        decline_code: Some("generic_decline".into()),
                        message: "declined".into(),
                        metadata,
                    },
                };
                return Ok(Job::GatewayEvent {
                    event: Box::new(event),
                    stale: Box::new(stale),
                });
            }
            Flow::UsageBatch => {
                let sub = metered(w, "sum").await?;
                let count = rng.gen_range(10..40);
                let mut events: Vec<UsageEventInput> = (0..count)
                    .map(|i| usage_event(&sub, &format!("e{i}"), rng.gen_range(1..100), None))
                    .collect::<Result<_, _>>()?;
                // The client's batch repeats some events.
                events.extend(events[..3].to_vec());
                Job::Usage {
                    subscription: sub.id,
                    events,
                }
            }
            Flow::LateUsage => {
                let sub = metered(w, "sum").await?;
                let january: Vec<UsageEventInput> = (0..3)
                    .map(|i| usage_event(&sub, &format!("jan{i}"), rng.gen_range(1..100), None))
                    .collect::<Result<_, _>>()?;
                w.app.usage.record_usage(&w.caller, january).await?;
                let end = sub.current_period.end;
                w.app
                    .billing
                    .run_due_subscription(w.tenant(), sub.id, end)
                    .await?;
                w.clock.set(end);
                w.settle().await;
                let late_at = end - SignedDuration::from_hours(12);
                let late = usage_event(&sub, "late", rng.gen_range(1..100), Some(late_at))?;
                w.app.usage.record_usage(&w.caller, vec![late]).await?;
                return Ok(Job::LateUsage {
                    subscription: sub.id,
                    until: w.clock.now(),
                });
            }
            Flow::DunningStep => {
                let account = account(w, None).await?;
                let lines = serde_json::from_value(json!([
                    {"description": "Services", "source": {"type": "fixed", "amount": amount}}
                ]))?;
                let draft = w
                    .app
                    .billing
                    .create_manual_invoice(
                        &w.caller,
                        account.id,
                        lines,
                        CollectionMethod::SendInvoice,
                    )
                    .await?;
                let invoice = w
                    .app
                    .billing
                    .finalize_invoice(&w.caller, draft.id, None)
                    .await?;
                w.app
                    .collection
                    .invoice_past_due(&w.caller, account.id, invoice.id, t0)
                    .await?;
                w.settle().await;
                let at = t0 + SignedDuration::from_hours(24 * 15);
                w.clock.set(at);
                return Ok(Job::Dunning {
                    account: account.id,
                    at,
                });
            }
            Flow::WebhookDelivery => {
                let endpoint = serde_json::from_value(
                    json!({"url": "http://127.0.0.1:9/hooks", "enabled_events": ["account.*"]}),
                )?;
                w.app
                    .events
                    .create_webhook_endpoint(&w.caller, endpoint)
                    .await?;
                account(w, None).await?;
                let filter = EventFilter {
                    event_type: Some("account.created".into()),
                    ..Default::default()
                };
                let event = w
                    .memory
                    .list_events(w.tenant(), &filter, &PageRequest::first(10))
                    .await?
                    .items
                    .pop()
                    .context("the account.created event")?;
                // Delivered by the job, not by the sweep of the setup.
                return Ok(Job::Webhook {
                    event: Box::new(event),
                });
            }
        };
        w.settle().await;
        Ok(job)
    }

    /// One delivery of the job, as its worker (or the API) runs it. An error means the
    /// message (or request) comes again.
    pub async fn deliver(self, w: &World, job: &Job) -> anyhow::Result<()> {
        let tenant = w.tenant();
        match job {
            Job::Renew {
                subscription,
                until,
            } => {
                w.app
                    .billing
                    .run_due_subscription(tenant, *subscription, *until)
                    .await?;
            }
            Job::Finalize | Job::SpendCredit { .. } | Job::ConsumeWallet { .. } => {
                w.app.billing.finalize_pending_invoices(tenant).await?;
            }
            Job::Redeem {
                subscription,
                coupon,
            } => {
                let redeemed = w
                    .app
                    .coupons
                    .redeem_on_subscription(&w.caller, *subscription, &CouponRef::Id(*coupon))
                    .await;
                match redeemed {
                    // A repeated request whose first delivery took the slot is answered
                    // that the subscription has the discount: the client is done.
                    Err(AppError::Invalid(e)) if e.code == ErrorCode::AlreadyDiscounted => {}
                    other => {
                        other?;
                    }
                }
            }
            Job::DraftDiscounted {
                subscriptions,
                until,
                ..
            } => {
                for drafted in w
                    .app
                    .billing
                    .run_due_subscriptions(tenant, subscriptions, *until)
                    .await
                {
                    drafted?;
                }
            }
            Job::Collect { payment } | Job::SettleTopUp { payment, .. } => {
                let job = PaymentJob::Attempt {
                    tenant,
                    id: *payment,
                };
                w.app.collection.handle_payment_job(&job).await?;
            }
            Job::GatewayEvent { event, .. } => {
                w.app.collection.apply_gateway_event(event).await?;
            }
            Job::Usage { events, .. } => {
                let outcomes = w.app.usage.record_usage(&w.caller, events.clone()).await?;
                if let Some(refused) = outcomes.iter().find(|o| o.status == UsageStatus::Rejected) {
                    anyhow::bail!(
                        "{} refused: the client sends it again",
                        refused.transaction_id
                    );
                }
            }
            Job::LateUsage {
                subscription,
                until,
            } => {
                w.app
                    .billing
                    .bill_late_usage(tenant, *subscription, *until)
                    .await?;
            }
            Job::Dunning { account, at } => {
                w.app
                    .collection
                    .run_due_dunning(tenant, *account, *at)
                    .await?;
            }
            Job::Webhook { event } => {
                let message = WebhookMessage::Event {
                    tenant_id: tenant,
                    event: event.as_ref().clone(),
                };
                w.fanout.handle(message).await?;
            }
        }
        Ok(())
    }

    /// Delivers the job's older gateway event (after the newer one).
    pub async fn deliver_stale(self, w: &World, job: &Job) -> anyhow::Result<()> {
        if let Job::GatewayEvent { stale, .. } = job {
            w.app.collection.apply_gateway_event(stale).await?;
        }
        Ok(())
    }
}

impl Job {
    /// What the flow came to beyond invoices, payments and events.
    pub async fn observe(&self, w: &World) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Job::Usage { subscription, .. } | Job::LateUsage { subscription, .. } => {
                let usage = w
                    .app
                    .usage
                    .subscription_usage(&w.caller, *subscription, None)
                    .await?;
                usage
                    .periods
                    .iter()
                    .flat_map(|p| &p.metrics)
                    .map(|m| format!("{} {} events, {}", m.metric, m.events, m.quantity))
                    .collect()
            }
            Job::Dunning { account, .. } => {
                let case = w
                    .app
                    .collection
                    .get_dunning_case(&w.caller, *account)
                    .await?;
                let status = w
                    .app
                    .customers
                    .get_account(&w.caller, *account)
                    .await?
                    .status;
                vec![format!(
                    "{:?} {:?} {:?}",
                    case.status, case.steps_taken, status
                )]
            }
            Job::SpendCredit { account } => {
                let page = PageRequest::first(100);
                let view = w
                    .app
                    .credits
                    .balance(&w.caller, *account, None, &page)
                    .await?;
                let mut seen: Vec<String> = view
                    .balances
                    .iter()
                    .map(|b| format!("balance {} {}", b.currency.api_code(), b.available.get()))
                    .collect();
                let mut settled: Vec<String> = view
                    .transactions
                    .items
                    .iter()
                    .map(|t| format!("ledger {:?} {}", t.kind, t.amount.get()))
                    .collect();
                let invoices = w
                    .memory
                    .list_invoices(w.tenant(), &InvoiceFilter::default(), &page)
                    .await?
                    .items;
                settled.extend(invoices.iter().map(|i| {
                    format!("credit {} due {}", i.credit_total.get(), i.amount_due.get())
                }));
                // Which draft spends first is the finalizer's order; what is spent is not.
                settled.sort();
                seen.extend(settled);
                seen
            }
            Job::Redeem {
                subscription,
                coupon,
            } => {
                let coupon = w.app.coupons.get_coupon(&w.caller, *coupon).await?;
                let sub = w
                    .app
                    .billing
                    .get_subscription(&w.caller, *subscription)
                    .await?;
                let mut seen = vec![format!("redeemed {}", coupon.times_redeemed)];
                seen.extend(
                    sub.discounts
                        .iter()
                        .map(|d| format!("{} {:?}", d.coupon_code, d.periods_remaining)),
                );
                seen
            }
            Job::DraftDiscounted { account, .. } => {
                let left = w.app.coupons.account_discounts(&w.caller, *account).await?;
                let mut seen: Vec<String> = left
                    .discounts
                    .iter()
                    .map(|d| format!("account discount {}", d.coupon_code))
                    .collect();
                let page = PageRequest::first(100);
                let invoices = w
                    .memory
                    .list_invoices(w.tenant(), &InvoiceFilter::default(), &page)
                    .await?
                    .items;
                // Which renewal takes the `once` discount is the drafting order; that one does is not.
                let mut billed: Vec<String> = invoices
                    .iter()
                    .map(|i| {
                        format!(
                            "{:?} discount {} total {}",
                            i.billing_reason,
                            i.discount_total.get(),
                            i.total.get()
                        )
                    })
                    .collect();
                billed.sort();
                seen.extend(billed);
                seen
            }
            Job::ConsumeWallet { wallet } | Job::SettleTopUp { wallet, .. } => {
                let page = PageRequest::first(100);
                let view = w.app.wallets.get_wallet(&w.caller, *wallet, &page).await?;
                let mut seen = vec![format!(
                    "wallet {} consumed {} pending {}",
                    view.wallet.balance.get(),
                    view.wallet.consumed.get(),
                    view.wallet.pending_top_ups.len()
                )];
                let mut settled: Vec<String> = view
                    .transactions
                    .items
                    .iter()
                    .map(|t| format!("{:?} {:?} {}", t.kind, t.status, t.amount.get()))
                    .collect();
                let invoices = w
                    .memory
                    .list_invoices(w.tenant(), &InvoiceFilter::default(), &page)
                    .await?
                    .items;
                settled.extend(invoices.iter().map(|i| {
                    format!(
                        "{:?} wallet {} due {}",
                        i.billing_reason,
                        i.wallet_total.get(),
                        i.amount_due.get()
                    )
                }));
                // Which draft consumes first is the finalizer's order; what is spent is not.
                settled.sort();
                seen.extend(settled);
                seen
            }
            _ => Vec::new(),
        })
    }
}

fn flat_plan(amount: u64) -> Value {
    json!({"code": format!("flat-{amount}"), "name": "Flat", "interval": {"unit": "month"},
           "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": amount}}}}})
}

async fn account(w: &World, card: Option<&str>) -> anyhow::Result<Account> {
    let account = w
        .app
        .customers
        .create_account(
            &w.caller,
            serde_json::from_value(json!({"email": "ap@campaign.test", "currency": "usd"}))?,
        )
        .await?;
    if let Some(card) = card {
        w.app
            .customers
            .add_payment_method(&w.caller, account.id, card, true)
            .await?;
    }
    Ok(account)
}

async fn plan(w: &World, plan: Value) -> anyhow::Result<PlanId> {
    let plan = w
        .app
        .catalog
        .create_plan(&w.caller, serde_json::from_value(plan)?)
        .await?;
    Ok(plan.plan.id)
}

async fn subscribe(w: &World, card: Option<&str>, plan: Value) -> anyhow::Result<Subscription> {
    let account = account(w, card).await?;
    let plan = self::plan(w, plan).await?;
    Ok(w.app
        .billing
        .create_subscription(&w.caller, StartSubscription::new(account.id, plan))
        .await?)
}

/// A wallet of `granted_cents` free and `paid_cents` bought credits ($1 each) for
/// `account`.
async fn wallet(
    w: &World,
    account: &Account,
    granted_cents: i64,
    paid_cents: i64,
) -> anyhow::Result<Wallet> {
    let credits = |cents: i64| parse_decimal(&format!("{}.{:02}", cents / 100, cents % 100), 2);
    Ok(w.app
        .wallets
        .create_wallet(
            &w.caller,
            CreateWallet {
                account: account.id,
                currency: None,
                name: None,
                rate_amount: parse_decimal("1", 0)?,
                granted_credits: credits(granted_cents)?,
                paid_credits: credits(paid_cents)?,
                expires_at: None,
                rules: Vec::new(),
            },
        )
        .await?)
}

/// Moves the clock past the first renewal of `ids` (started at `t0`) and drafts them.
async fn draft_renewals(w: &World, ids: &[SubscriptionId], t0: Timestamp) -> anyhow::Result<()> {
    let until = t0 + SignedDuration::from_hours(24 * 32);
    w.clock.set(until);
    for drafted in w
        .app
        .billing
        .draft_due_subscriptions(w.tenant(), ids, until)
        .await
    {
        drafted?;
    }
    Ok(())
}

/// A subscription to a plan charging `aggregation` of a metric by the unit.
async fn metered(w: &World, aggregation: &str) -> anyhow::Result<Subscription> {
    let metric =
        json!({"code": "units", "name": "Units", "aggregation": aggregation, "field": "units"});
    w.app
        .catalog
        .create_metric(&w.caller, serde_json::from_value(metric)?)
        .await?;
    let plan = json!({"code": "metered", "name": "Metered", "interval": {"unit": "month"},
    "charges": {
        "recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 1000}}},
        "usage_charges": [{"metric": "units", "prices": {"usd": {"model": "per_unit", "unit_price": "0.5"}}}]
    }});
    subscribe(w, None, plan).await
}

fn usage_event(
    sub: &Subscription,
    id: &str,
    units: u32,
    at: Option<Timestamp>,
) -> anyhow::Result<UsageEventInput> {
    let mut event = json!({"transaction_id": id, "subscription": sub.id, "metric": "units",
                           "value": units.to_string()});
    if let Some(at) = at {
        event["timestamp"] = json!(at);
    }
    Ok(serde_json::from_value(event)?)
}

/// The tenant's payment that `pick` chooses.
async fn pending_payment(
    w: &World,
    pick: impl Fn(&billing_domain::collection::payment::Payment) -> bool,
) -> anyhow::Result<billing_domain::collection::payment::Payment> {
    w.memory
        .list_payments(
            w.tenant(),
            &PaymentFilter::default(),
            &PageRequest::first(100),
        )
        .await?
        .items
        .into_iter()
        .find(|p| pick(p))
        .context("the payment the flow collects")
}
