//! One contract, two stores: the in-memory store used by fast tests and benchmarks must
//! behave exactly like the DynamoDB store on the local stand-in.

use std::sync::Arc;

use billing_app::ports::*;
use billing_app::{App, Caller};
use billing_domain::customers::access::Role;
use billing_domain::customers::account::{AccountPatch, AccountStatus, NewAccount};
use billing_domain::customers::tenant::TenantMode;
use billing_memory::MemoryStore;
use jiff::{SignedDuration, Timestamp};

async fn tenant(app: &App) -> Caller {
    let (tenant, issued) = app
        .customers
        .create_tenant("Contract Co", TenantMode::Sandbox)
        .await
        .unwrap();
    Caller {
        tenant_id: tenant.id,
        livemode: false,
        key_id: Some(issued.key.id),
        role: Role::Admin,
        request_id: Some("req_contract".into()),
    }
}

fn new_account(email: &str, external_id: Option<&str>) -> NewAccount {
    NewAccount {
        email: email.into(),
        currency: "usd".into(),
        external_id: external_id.map(Into::into),
        ..Default::default()
    }
}

async fn counts(store: &dyn Store, caller: &Caller) -> (usize, usize, usize) {
    let all = PageRequest {
        limit: 100,
        starting_after: None,
    };
    let accounts = store
        .list_accounts(caller.tenant_id, &AccountFilter::default(), &all)
        .await
        .unwrap()
        .items
        .len();
    let audit = store
        .list_audit(caller.tenant_id, None, &all)
        .await
        .unwrap()
        .items
        .len();
    let events = store
        .list_events(caller.tenant_id, &EventFilter::default(), &all)
        .await
        .unwrap()
        .items
        .len();
    (accounts, audit, events)
}

async fn contract(store: Arc<dyn Store>) {
    let app = App::new(
        store.clone(),
        Arc::new(SystemClock),
        std::sync::Arc::new(billing_aws::SandboxGateway::new()),
    );
    let caller = tenant(&app).await;
    let other = tenant(&app).await;

    // Create writes the account, its audit record and its event together.
    let ada = app
        .customers
        .create_account(&caller, new_account("ada@example.com", Some("u-1")))
        .await
        .unwrap();
    assert_eq!(counts(&*store, &caller).await, (1, 1, 1));
    let events = store
        .list_events(
            caller.tenant_id,
            &EventFilter::default(),
            &PageRequest {
                limit: 10,
                starting_after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(events.items[0].event_type, "account.created");
    assert_eq!(events.items[0].data["id"], ada.id.to_string());

    // Creating the same item twice is a conflict.
    let change = events_change(&app, &caller).await;
    assert_eq!(
        store.insert_account(caller.tenant_id, &ada, &change).await,
        Err(StoreError::AlreadyExists { entity: "account" })
    );

    // A transaction with one failing condition (external_id taken) writes nothing.
    let before = counts(&*store, &caller).await;
    let err = app
        .customers
        .create_account(&caller, new_account("grace@example.com", Some("u-1")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            billing_app::AppError::Conflict {
                code: "duplicate_value",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(counts(&*store, &caller).await, before);

    // The same external_id is free in another tenant.
    app.customers
        .create_account(&other, new_account("ada@example.com", Some("u-1")))
        .await
        .unwrap();
    assert!(store
        .get_account(other.tenant_id, ada.id)
        .await
        .unwrap()
        .is_none());

    // A stale version is a conflict, and nothing is written.
    let v2 = app
        .customers
        .update_account(
            &caller,
            ada.id,
            AccountPatch {
                name: Some(Some("Ada".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    let mut stale_next = ada.clone();
    stale_next.name = Some("Stale".into());
    stale_next.version = 2;
    let before = counts(&*store, &caller).await;
    assert_eq!(
        store
            .update_account(caller.tenant_id, &ada, &stale_next, &change)
            .await,
        Err(StoreError::VersionConflict { entity: "account" })
    );
    assert_eq!(counts(&*store, &caller).await, before);
    assert_eq!(
        store
            .get_account(caller.tenant_id, ada.id)
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("Ada")
    );

    // Moving external_id frees the old value for another account.
    app.customers
        .update_account(
            &caller,
            ada.id,
            AccountPatch {
                external_id: Some(Some("u-2".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    app.customers
        .create_account(&caller, new_account("grace@example.com", Some("u-1")))
        .await
        .unwrap();
    let taken = app
        .customers
        .update_account(
            &caller,
            ada.id,
            AccountPatch {
                external_id: Some(Some("u-1".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(
        taken,
        billing_app::AppError::Conflict {
            code: "duplicate_value",
            ..
        }
    ));

    // Listing: cursor pages, filters, and deleted accounts left out.
    for i in 0..3 {
        app.customers
            .create_account(&caller, new_account(&format!("p{i}@example.com"), None))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = app
            .customers
            .list_accounts(
                &caller,
                &AccountFilter::default(),
                &PageRequest {
                    limit: 2,
                    starting_after: cursor.clone(),
                },
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|a| a.id));
        if !page.has_more {
            break;
        }
        cursor = page.items.last().map(|a| a.id.to_string());
    }
    assert_eq!(seen.len(), 5);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "oldest first, no repeats"
    );
    let by_email = app
        .customers
        .list_accounts(
            &caller,
            &AccountFilter {
                email: Some("GRACE@example.com".into()),
                ..Default::default()
            },
            &PageRequest {
                limit: 10,
                starting_after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(by_email.items.len(), 1);
    let by_external = app
        .customers
        .list_accounts(
            &caller,
            &AccountFilter {
                external_id: Some("u-2".into()),
                ..Default::default()
            },
            &PageRequest {
                limit: 10,
                starting_after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        by_external.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![ada.id]
    );
    app.customers.delete_account(&caller, ada.id).await.unwrap();
    let active = app
        .customers
        .list_accounts(
            &caller,
            &AccountFilter {
                status: Some(AccountStatus::Active),
                ..Default::default()
            },
            &PageRequest {
                limit: 100,
                starting_after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(active.items.len(), 4);
    assert!(store
        .get_account(caller.tenant_id, ada.id)
        .await
        .unwrap()
        .unwrap()
        .deleted_at
        .is_some());

    // The audit trail of one entity, newest first.
    let trail = app
        .events
        .list_audit_log(
            &caller,
            Some(&ada.id.to_string()),
            &PageRequest {
                limit: 10,
                starting_after: None,
            },
        )
        .await
        .unwrap();
    let actions: Vec<_> = trail
        .items
        .iter()
        .map(|r| serde_json::to_value(r.action).unwrap())
        .collect();
    assert_eq!(actions, ["delete", "update", "update", "create"]);
    assert_eq!(trail.items[2].changes["name"]["after"], "Ada");
    let paged = app
        .events
        .list_audit_log(
            &caller,
            Some(&ada.id.to_string()),
            &PageRequest {
                limit: 2,
                starting_after: Some(trail.items[1].id.to_string()),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        paged.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![trail.items[2].id, trail.items[3].id]
    );

    // API keys: revoking twice is a conflict.
    let issued = app
        .customers
        .create_api_key(&caller, Role::Support, Some("helpdesk"))
        .await
        .unwrap();
    app.customers
        .revoke_api_key(&caller, issued.key.id)
        .await
        .unwrap();
    assert!(app
        .customers
        .revoke_api_key(&caller, issued.key.id)
        .await
        .is_err());
    let mut revoked = issued.key.clone();
    revoked.revoked_at = Some(Timestamp::now());
    assert_eq!(
        store.revoke_api_key(&revoked, &change).await,
        Err(StoreError::VersionConflict { entity: "api_key" })
    );
    assert!(app
        .customers
        .authenticate(&issued.secret, None)
        .await
        .is_err());

    // Idempotency keys: claimed once; same request in flight, replayed once done;
    // a different request refused; released keys can be claimed again; expiry frees them.
    let now = Timestamp::now();
    let later = now + SignedDuration::from_hours(24);
    let t = caller.tenant_id;
    assert_eq!(
        store.claim_idempotency_key(t, "k1", "f1", now, later).await,
        Ok(IdempotencyClaim::Claimed)
    );
    assert_eq!(
        store.claim_idempotency_key(t, "k1", "f1", now, later).await,
        Ok(IdempotencyClaim::InProgress)
    );
    assert_eq!(
        store.claim_idempotency_key(t, "k1", "f2", now, later).await,
        Ok(IdempotencyClaim::Mismatch)
    );
    let response = StoredResponse {
        status: 201,
        body: "{\"id\":1}".into(),
    };
    store
        .complete_idempotency_key(t, "k1", &response)
        .await
        .unwrap();
    assert_eq!(
        store.claim_idempotency_key(t, "k1", "f1", now, later).await,
        Ok(IdempotencyClaim::Replay(response))
    );
    assert_eq!(
        store
            .claim_idempotency_key(other.tenant_id, "k1", "f2", now, later)
            .await,
        Ok(IdempotencyClaim::Claimed),
        "keys are per tenant"
    );
    store
        .claim_idempotency_key(t, "k2", "f1", now, later)
        .await
        .unwrap();
    store.release_idempotency_key(t, "k2").await.unwrap();
    assert_eq!(
        store.claim_idempotency_key(t, "k2", "f9", now, later).await,
        Ok(IdempotencyClaim::Claimed)
    );
    let after_expiry = later + SignedDuration::from_secs(1);
    assert_eq!(
        store
            .claim_idempotency_key(
                t,
                "k1",
                "f3",
                after_expiry,
                after_expiry + SignedDuration::from_hours(24)
            )
            .await,
        Ok(IdempotencyClaim::Claimed)
    );

    assert_eq!(store.ready().await, Ok(()));
    catalog_contract(&app, &*store, &caller).await;
    payments_contract(&app, &*store, &caller, &other).await;
    dunning_contract(&app, &*store, &caller, &other).await;
    usage_contract(&app, &*store, &caller, &other).await;
}

/// Usage: events created once per transaction id, rollups moved only from the version
/// read, distinct-value markers created once, all of a write or nothing; rollups by
/// period range; quota snapshots; late usage in the due index until it is billed; a
/// lifecycle step and its billed rollups together or not at all.
async fn usage_contract(app: &App, store: &dyn Store, caller: &Caller, other: &Caller) {
    use billing_domain::usage::meter::{Aggregate, Measured, UsageEvent};
    let sub = billing_tests::subscribe(
        app,
        caller,
        serde_json::json!({"email": "usage@example.com", "currency": "usd"}),
        "month",
        500,
    )
    .await;
    let tenant = caller.tenant_id;
    let now = sub.created_at;
    let event = |id: &str, value: Measured| StoredUsageEvent {
        event: UsageEvent {
            transaction_id: id.into(),
            metric: "calls".into(),
            timestamp: now,
            value,
            properties: Default::default(),
        },
        subscription_id: sub.id,
        period_start: Some(sub.current_period.start),
        received_at: now,
    };
    let rollup = |events: u64, version: u64| Rollup {
        aggregate: Aggregate {
            events,
            unique: events,
            ..Aggregate::default()
        },
        version,
        ..Rollup::empty(
            &sub,
            "calls",
            billing_domain::catalog::metric::Aggregation::Count,
            sub.current_period,
        )
    };
    let key = rollup(0, 0).key();
    let write = |events: Vec<StoredUsageEvent>, expected: u64, next: Rollup| UsageWrite {
        events,
        rollups: vec![RollupWrite {
            expected_version: expected,
            next,
        }],
        ..UsageWrite::default()
    };
    let ids = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
    assert!(store
        .stored_usage_events(tenant, &ids)
        .await
        .unwrap()
        .is_empty());
    let mut first = write(
        vec![
            event("a", Measured::Occurrence),
            event("b", Measured::Distinct { value: "x".into() }),
        ],
        0,
        rollup(2, 1),
    );
    first.distinct_values = vec![(key.clone(), "x".into())];
    store
        .record_usage(tenant, std::slice::from_ref(&first))
        .await
        .unwrap();
    assert_eq!(
        store.stored_usage_events(tenant, &ids).await.unwrap(),
        ["a".to_owned(), "b".to_owned()].into()
    );
    assert!(store
        .stored_usage_events(other.tenant_id, &ids)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .seen_distinct_values(tenant, &key, &["x".into(), "y".into()])
            .await
            .unwrap(),
        ["x".to_owned()].into()
    );

    // A stored transaction id, a rollup moved since it was read, a distinct value already
    // seen: each refuses the whole write.
    let duplicate = write(
        vec![
            event("c", Measured::Occurrence),
            event("a", Measured::Occurrence),
        ],
        1,
        rollup(4, 2),
    );
    assert_eq!(
        store
            .record_usage(tenant, std::slice::from_ref(&duplicate))
            .await,
        Err(StepsFailed {
            written: 0,
            error: StoreError::AlreadyExists {
                entity: "usage event"
            }
        })
    );
    let stale = write(vec![event("c", Measured::Occurrence)], 0, rollup(3, 1));
    assert_eq!(
        store
            .record_usage(tenant, std::slice::from_ref(&stale))
            .await,
        Err(StepsFailed {
            written: 0,
            error: StoreError::VersionConflict {
                entity: "usage rollup"
            }
        })
    );
    let mut seen = write(vec![event("c", Measured::Occurrence)], 1, rollup(3, 2));
    seen.distinct_values = vec![(key.clone(), "x".into())];
    assert_eq!(
        store
            .record_usage(tenant, std::slice::from_ref(&seen))
            .await,
        Err(StepsFailed {
            written: 0,
            error: StoreError::VersionConflict {
                entity: "usage rollup"
            }
        })
    );
    assert_eq!(
        store.stored_usage_events(tenant, &ids).await.unwrap().len(),
        2,
        "nothing of a refused write"
    );
    let stored = store
        .get_rollups(tenant, std::slice::from_ref(&key))
        .await
        .unwrap();
    assert_eq!(stored, vec![rollup(2, 1)]);

    // Ranges, quotas and threshold events.
    let start = sub.current_period.start;
    let in_range = |from: Timestamp, to: Timestamp| store.list_rollups(tenant, sub.id, from, to);
    assert_eq!(
        in_range(start, start + SignedDuration::from_millis(1))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(in_range(
        start + SignedDuration::from_millis(1),
        sub.current_period.end
    )
    .await
    .unwrap()
    .is_empty());
    assert_eq!(
        store.get_quota(tenant, sub.account_id, "calls").await,
        Ok(None)
    );
    let quota = QuotaSnapshot {
        account_id: sub.account_id,
        subscription_id: sub.id,
        metric: "calls".into(),
        period: sub.current_period,
        used: 3.into(),
        test_clock: None,
        entitlement: serde_json::from_value(
            serde_json::json!({"metric": "calls", "limit": "4", "enforcement": "hard"}),
        )
        .unwrap(),
    };
    let (_, _, events_before) = counts(store, caller).await;
    let mut third = write(vec![event("c", Measured::Occurrence)], 1, rollup(3, 2));
    third.quotas = vec![quota.clone()];
    third.changes = vec![events_change(app, caller).await];
    store
        .record_usage(tenant, std::slice::from_ref(&third))
        .await
        .unwrap();
    assert_eq!(
        store.get_quota(tenant, sub.account_id, "calls").await,
        Ok(Some(quota))
    );
    assert_eq!(counts(store, caller).await.2, events_before + 1);

    // Late usage waits in the due index until it is billed.
    let late_at = now + SignedDuration::from_mins(1);
    let late = Rollup {
        late_due_at: Some(late_at),
        ..rollup(4, 3)
    };
    store
        .record_usage(
            tenant,
            &[write(vec![event("d", Measured::Occurrence)], 2, late)],
        )
        .await
        .unwrap();
    let late_due = |now| async move {
        store
            .due_items(now, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|d| {
                d.kind == DueKind::Billing(BillingJob::Subscription { tenant, id: sub.id })
                    && d.due_at.as_millisecond() == late_at.as_millisecond()
            })
            .count()
    };
    assert_eq!(late_due(late_at).await, 1);
    assert_eq!(
        store
            .bill_late_usage(
                tenant,
                None,
                &[RollupWrite {
                    expected_version: 2,
                    next: rollup(4, 3)
                }],
                None
            )
            .await,
        Err(StoreError::VersionConflict {
            entity: "usage rollup"
        })
    );
    store
        .bill_late_usage(
            tenant,
            None,
            &[RollupWrite {
                expected_version: 3,
                next: rollup(4, 4),
            }],
            None,
        )
        .await
        .unwrap();
    assert_eq!(late_due(late_at).await, 0);

    // A lifecycle step and the rollups it bills: together or not at all.
    let next = billing_domain::billing::subscription::Subscription {
        version: sub.version + 1,
        ..sub.clone()
    };
    let change = events_change(app, caller).await;
    let billed = |expected: u64| {
        [RollupWrite {
            expected_version: expected,
            next: rollup(4, expected + 1),
        }]
    };
    let step = |expected: u64| SubscriptionStep {
        previous: sub.clone(),
        next: next.clone(),
        invoice: None,
        rollups: billed(expected).to_vec(),
        change: change.clone(),
    };
    assert_eq!(
        store.save_subscription_steps(tenant, &[step(3)]).await,
        Err(StepsFailed {
            written: 0,
            error: StoreError::VersionConflict {
                entity: "usage rollup"
            }
        })
    );
    assert_eq!(
        store
            .get_subscription(tenant, sub.id)
            .await
            .unwrap()
            .map(|s| s.version),
        Some(sub.version)
    );
    store
        .save_subscription_steps(tenant, &[step(4)])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_subscription(tenant, sub.id)
            .await
            .unwrap()
            .map(|s| s.version),
        Some(next.version)
    );
    assert_eq!(
        store
            .get_rollups(tenant, std::slice::from_ref(&key))
            .await
            .unwrap(),
        vec![rollup(4, 5)]
    );

    // Units are written in order, however many a transaction holds: each moves the
    // rollup on from the one before. After a unit that fails, the units reported written
    // are stored and no others.
    let units = |prefix: &str, from: u64| -> Vec<UsageWrite> {
        (0..150)
            .map(|i| {
                write(
                    vec![event(&format!("{prefix}{i}"), Measured::Occurrence)],
                    from + i,
                    rollup(from + i, from + i + 1),
                )
            })
            .collect()
    };
    let ids = |prefix: &str| (0..150).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    store.record_usage(tenant, &units("u", 5)).await.unwrap();
    assert_eq!(
        store
            .stored_usage_events(tenant, &ids("u"))
            .await
            .unwrap()
            .len(),
        150
    );
    assert_eq!(
        store
            .get_rollups(tenant, std::slice::from_ref(&key))
            .await
            .unwrap(),
        vec![rollup(154, 155)]
    );
    let mut failing = units("v", 155);
    failing[120].events = vec![event("u0", Measured::Occurrence)];
    let failed = store.record_usage(tenant, &failing).await.unwrap_err();
    assert_eq!(
        failed.error,
        StoreError::AlreadyExists {
            entity: "usage event"
        }
    );
    assert!(failed.written <= 120, "{failed:?}");
    assert_eq!(
        store
            .stored_usage_events(tenant, &ids("v"))
            .await
            .unwrap()
            .len(),
        failed.written
    );
}

/// Dunning: the tenant's policy; a case created once and replaced over its version together
/// with the account's status and a notice (all or nothing); cases in the due index at their
/// next step (in real time or on their test clock), notices at their claim's end, claimed
/// over their version, deleted once sent.
async fn dunning_contract(app: &App, store: &dyn Store, caller: &Caller, other: &Caller) {
    use billing_domain::collection::dunning::{
        CaseFacts, DunningAction, DunningCase, DunningPolicy, DunningStep, NoticeKind,
    };
    use billing_domain::kernel::ids::InvoiceId;

    let tenant = caller.tenant_id;
    assert_eq!(store.get_dunning_policy(tenant).await, Ok(None));
    let policy = DunningPolicy::new(vec![
        DunningStep {
            after_days: 2,
            action: DunningAction::Warning,
        },
        DunningStep {
            after_days: 9,
            action: DunningAction::Block,
        },
    ])
    .unwrap();
    store
        .set_dunning_policy(tenant, &policy, &events_change(app, caller).await)
        .await
        .unwrap();
    assert_eq!(
        store.get_dunning_policy(tenant).await,
        Ok(Some(policy.clone()))
    );
    assert_eq!(store.get_dunning_policy(other.tenant_id).await, Ok(None));

    let account = app
        .customers
        .create_account(caller, new_account("debtor@example.com", None))
        .await
        .unwrap();
    let t = Timestamp::from_second(1_900_000_000).unwrap();
    let facts = CaseFacts {
        account_id: account.id,
        test_clock: None,
        livemode: false,
    };
    let invoice = InvoiceId::from_ulid(billing_app::new_ulid());
    let case = DunningCase::open(facts, None, &policy, invoice, t).unwrap();
    assert_eq!(store.get_dunning_case(tenant, account.id).await, Ok(None));
    store
        .save_dunning_case(
            tenant,
            None,
            &case,
            None,
            None,
            &events_change(app, caller).await,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .save_dunning_case(
                tenant,
                None,
                &case,
                None,
                None,
                &events_change(app, caller).await
            )
            .await,
        Err(StoreError::AlreadyExists {
            entity: "dunning case"
        })
    );
    assert_eq!(
        store.get_dunning_case(tenant, account.id).await,
        Ok(Some(case.clone()))
    );
    assert_eq!(
        store.get_dunning_case(other.tenant_id, account.id).await,
        Ok(None)
    );

    let mine = |items: Vec<DueItem>| -> Vec<DueKind> {
        items
            .into_iter()
            .filter(|i| i.tenant_id == tenant)
            .map(|i| i.kind)
            .filter(|k| {
                matches!(k, DueKind::Payment(PaymentJob::Dunning { account: a, .. }
                    | PaymentJob::DunningNotice { account: a, .. }) if *a == account.id)
            })
            .collect()
    };
    let step_job = DueKind::Payment(PaymentJob::Dunning {
        tenant,
        account: account.id,
    });
    let first_step = case.next_step_at.unwrap();
    assert_eq!(
        mine(
            store
                .due_items(first_step - SignedDuration::from_secs(1), 1000)
                .await
                .unwrap()
        ),
        []
    );
    assert_eq!(
        mine(store.due_items(first_step, 1000).await.unwrap()),
        std::slice::from_ref(&step_job)
    );

    // The warning: the case, the account's status and the notice, together.
    let step = case.take_due_step(first_step).unwrap();
    let mut warned = account.clone();
    warned.status = AccountStatus::Warning;
    warned.version += 1;
    let notice = PendingNotice {
        account_id: account.id,
        key: step.notice.clone().unwrap().key,
        kind: NoticeKind::Warning,
        made_at: first_step,
        retry_at: first_step + SignedDuration::from_mins(2),
        version: 1,
    };
    let stale_account = AccountStatusWrite {
        previous: &warned,
        next: &warned,
    };
    assert_eq!(
        store
            .save_dunning_case(
                tenant,
                Some(&case),
                &step.next,
                Some(stale_account),
                Some(&notice),
                &events_change(app, caller).await
            )
            .await,
        Err(StoreError::VersionConflict { entity: "account" })
    );
    assert_eq!(
        store.get_dunning_case(tenant, account.id).await,
        Ok(Some(case.clone())),
        "nothing written"
    );
    assert_eq!(
        store
            .get_dunning_notice(tenant, account.id, &notice.key)
            .await,
        Ok(None)
    );
    let write = AccountStatusWrite {
        previous: &account,
        next: &warned,
    };
    store
        .save_dunning_case(
            tenant,
            Some(&case),
            &step.next,
            Some(write),
            Some(&notice),
            &events_change(app, caller).await,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_account(tenant, account.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        AccountStatus::Warning
    );
    assert_eq!(
        store
            .save_dunning_case(
                tenant,
                Some(&case),
                &step.next,
                None,
                None,
                &events_change(app, caller).await
            )
            .await,
        Err(StoreError::VersionConflict {
            entity: "dunning case"
        })
    );

    // The notice waits until its claim runs out; the case until its next step.
    let notice_job = DueKind::Payment(PaymentJob::DunningNotice {
        tenant,
        account: account.id,
        key: notice.key.clone(),
    });
    assert_eq!(mine(store.due_items(first_step, 1000).await.unwrap()), []);
    assert_eq!(
        mine(store.due_items(notice.retry_at, 1000).await.unwrap()),
        std::slice::from_ref(&notice_job)
    );
    let mut due = mine(
        store
            .due_items(step.next.next_step_at.unwrap(), 1000)
            .await
            .unwrap(),
    );
    due.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(due, [step_job, notice_job]);
    assert_eq!(
        store
            .get_dunning_notice(tenant, account.id, &notice.key)
            .await,
        Ok(Some(notice.clone()))
    );
    let claimed = notice
        .reclaim(
            notice.retry_at,
            notice.retry_at + SignedDuration::from_mins(2),
        )
        .unwrap();
    store
        .claim_dunning_notice(tenant, &notice, &claimed)
        .await
        .unwrap();
    assert_eq!(
        store.claim_dunning_notice(tenant, &notice, &claimed).await,
        Err(StoreError::VersionConflict {
            entity: "dunning notice"
        })
    );
    assert_eq!(
        mine(store.due_items(notice.retry_at, 1000).await.unwrap()),
        []
    );
    store
        .delete_dunning_notice(tenant, account.id, &notice.key)
        .await
        .unwrap();
    store
        .delete_dunning_notice(tenant, account.id, &notice.key)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_dunning_notice(tenant, account.id, &notice.key)
            .await,
        Ok(None)
    );
    assert_eq!(
        store.claim_dunning_notice(tenant, &claimed, &claimed).await,
        Err(StoreError::VersionConflict {
            entity: "dunning notice"
        })
    );

    // A case on a test clock waits on the clock, not in real time.
    let clock = app
        .billing
        .create_test_clock(caller, None, t)
        .await
        .unwrap();
    let on_clock = app
        .customers
        .create_account(caller, new_account("clocked@example.com", None))
        .await
        .unwrap();
    let facts = CaseFacts {
        account_id: on_clock.id,
        test_clock: Some(clock.id),
        livemode: false,
    };
    let case = DunningCase::open(facts, None, &policy, invoice, t).unwrap();
    store
        .save_dunning_case(
            tenant,
            None,
            &case,
            None,
            None,
            &events_change(app, caller).await,
        )
        .await
        .unwrap();
    let far = t + SignedDuration::from_hours(24 * 400);
    assert!(!store
        .due_items(far, 1000)
        .await
        .unwrap()
        .iter()
        .any(|i| matches!(
            &i.kind,
            DueKind::Payment(PaymentJob::Dunning { account, .. }) if *account == on_clock.id
        )));
    let on_the_clock = store
        .clock_due_items(tenant, clock.id, far, 10)
        .await
        .unwrap();
    assert_eq!(on_the_clock.len(), 1);
    assert_eq!(on_the_clock[0].due_at, case.next_step_at.unwrap());
    assert_eq!(
        on_the_clock[0].kind,
        DueKind::Payment(PaymentJob::Dunning {
            tenant,
            account: on_clock.id
        })
    );
}

fn payment_on(
    account: billing_domain::kernel::ids::AccountId,
    clock: Option<billing_domain::kernel::ids::TestClockId>,
    due_at: Timestamp,
) -> billing_domain::collection::payment::Payment {
    use billing_domain::collection::payment::{payment_id, Payment, PaymentStatus};
    use billing_domain::kernel::ids::InvoiceId;
    let invoice = InvoiceId::from_ulid(billing_app::new_ulid());
    Payment {
        id: payment_id(invoice, 1, due_at),
        invoice_id: invoice,
        account_id: account,
        subscription_id: None,
        test_clock: clock,
        livemode: false,
        amount: 1234,
        currency: billing_domain::kernel::currency::Currency::from_code("usd").unwrap(),
        attempt: 1,
        manual: false,
        status: PaymentStatus::Pending,
        due_at,
        first_failed_at: None,
        gateway: None,
        payment_method: None,
        payment_intent: None,
        charge: None,
        failure: None,
        amount_refunded: 0,
        dispute: None,
        created_at: due_at,
        updated_at: due_at,
        version: 1,
    }
}

/// Payment profiles (versioned), payments (created once, replaced over their version, in
/// the due index while pending), atomic collection writes, gateway refs and applied
/// gateway events, settings.
async fn payments_contract(app: &App, store: &dyn Store, caller: &Caller, other: &Caller) {
    use billing_domain::collection::credit_note::{CreditNote, CreditNoteReason};
    use billing_domain::collection::payment::{ChargeResult, PaymentStatus};
    use billing_domain::collection::retry::{FinalAction, PaymentSettings};
    use billing_domain::customers::payment_method::{PaymentMethod, PaymentProfile};
    use billing_domain::kernel::ids::CreditNoteId;

    let tenant = caller.tenant_id;
    let account = app
        .customers
        .create_account(caller, new_account("payer@example.com", None))
        .await
        .unwrap();
    let reference = GatewayRef {
        tenant_id: tenant,
        account_id: account.id,
        payment_id: None,
    };
    let card = PaymentMethod {
        id: "pm_contract_1".into(),
        brand: "visa".into(),
        last4: "4242".into(),
        exp_month: 12,
        exp_year: 2034,
        country: Some("US".into()),
        created_at: Timestamp::now(),
    };
    let first = PaymentProfile::new(account.id, "sandbox")
        .with_customer("cus_contract".into())
        .add(card.clone(), false)
        .unwrap()
        .after(1);
    // Versions are consecutive from 1: a profile whose previous version is not stored fails.
    assert_eq!(
        store.save_payment_profile(tenant, &first, &[], None).await,
        Err(StoreError::VersionConflict {
            entity: "payment profile"
        })
    );
    let created = first.clone().after(0);
    store
        .save_payment_profile(
            tenant,
            &created,
            &[(card.id.clone(), reference.clone())],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .save_payment_profile(tenant, &created, &[], None)
            .await,
        Err(StoreError::VersionConflict {
            entity: "payment profile"
        })
    );
    let second = created.set_default(&card.id).unwrap().after(1);
    store
        .save_payment_profile(
            tenant,
            &second,
            &[],
            Some(&events_change(app, caller).await),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_payment_profile(tenant, account.id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        store
            .get_payment_profile(other.tenant_id, account.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.resolve_gateway_ref(&card.id).await.unwrap(),
        Some(reference.clone())
    );
    assert_eq!(store.resolve_gateway_ref("pm_nobody").await.unwrap(), None);

    // A pending payment is created once and waits in the due index (which keeps
    // milliseconds).
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    let pending = payment_on(account.id, None, now - SignedDuration::from_secs(1));
    let create = CollectionWrite {
        payments: vec![(None, pending.clone())],
        ..Default::default()
    };
    store
        .save_collection(tenant, &create, &events_change(app, caller).await)
        .await
        .unwrap();
    assert_eq!(
        store
            .save_collection(tenant, &create, &events_change(app, caller).await)
            .await,
        Err(StoreError::AlreadyExists { entity: "payment" })
    );
    let due = store.due_items(now, 1000).await.unwrap();
    let is_ours = |d: &DueItem| {
        d.kind
            == DueKind::Payment(PaymentJob::Attempt {
                tenant,
                id: pending.id,
            })
    };
    assert!(due.iter().any(is_ours), "a pending payment is due");
    assert_eq!(
        store.get_payment(tenant, pending.id).await.unwrap(),
        Some(pending.clone())
    );
    assert_eq!(
        store
            .get_payment(other.tenant_id, pending.id)
            .await
            .unwrap(),
        None
    );

    // A stale write changes nothing, not even the credit note written with it.
    let succeeded = pending
        .record(
            "sandbox",
            Some(card.id.clone()),
            ChargeResult::Succeeded {
                payment_intent: "pi_contract".into(),
                charge: None,
            },
            now,
        )
        .unwrap();
    let note = CreditNote {
        id: CreditNoteId::from_ulid(billing_app::new_ulid()),
        invoice_id: pending.invoice_id,
        account_id: account.id,
        payment_id: Some(pending.id),
        amount: 100,
        currency: pending.currency,
        reason: CreditNoteReason::Refund,
        refund: None,
        memo: None,
        created_at: now,
    };
    let stale = CollectionWrite {
        payments: vec![(Some(pending.version + 7), succeeded.clone())],
        credit_note: Some(note.clone()),
        gateway_event: Some("evt_contract_1".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .save_collection(tenant, &stale, &events_change(app, caller).await)
            .await,
        Err(StoreError::VersionConflict { entity: "payment" })
    );
    assert_eq!(store.get_credit_note(tenant, note.id).await.unwrap(), None);
    let fresh = CollectionWrite {
        payments: vec![(Some(pending.version), succeeded.clone())],
        credit_note: Some(note.clone()),
        gateway_refs: vec![(
            "pi_contract".into(),
            GatewayRef {
                payment_id: Some(pending.id),
                ..reference.clone()
            },
        )],
        gateway_event: Some("evt_contract_1".into()),
        ..Default::default()
    };
    store
        .save_collection(tenant, &fresh, &events_change(app, caller).await)
        .await
        .unwrap();
    assert_eq!(
        store.get_credit_note(tenant, note.id).await.unwrap(),
        Some(note.clone())
    );
    assert_eq!(
        store
            .resolve_gateway_ref("pi_contract")
            .await
            .unwrap()
            .and_then(|r| r.payment_id),
        Some(pending.id)
    );
    let due = store.due_items(now, 1000).await.unwrap();
    assert!(!due.iter().any(is_ours), "a recorded payment is not due");
    // The gateway event was recorded with the write: a second application is refused.
    assert_eq!(
        store.record_gateway_event(tenant, "evt_contract_1").await,
        Err(StoreError::AlreadyExists {
            entity: "gateway event"
        })
    );
    store
        .record_gateway_event(tenant, "evt_contract_2")
        .await
        .unwrap();
    assert_eq!(
        store.record_gateway_event(tenant, "evt_contract_2").await,
        Err(StoreError::AlreadyExists {
            entity: "gateway event"
        })
    );
    store
        .record_gateway_event(other.tenant_id, "evt_contract_2")
        .await
        .unwrap();

    // Lists: by account, by status; credit notes by account.
    let all = PageRequest {
        limit: 10,
        starting_after: None,
    };
    let listed = store
        .list_payments(
            tenant,
            &PaymentFilter {
                account: Some(account.id),
                status: Some(PaymentStatus::Succeeded),
                ..Default::default()
            },
            &all,
        )
        .await
        .unwrap();
    assert_eq!(listed.items, vec![succeeded.clone()]);
    let none = store
        .list_payments(
            tenant,
            &PaymentFilter {
                status: Some(PaymentStatus::Failed),
                ..Default::default()
            },
            &all,
        )
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let notes = store
        .list_credit_notes(
            tenant,
            &CreditNoteFilter {
                account: Some(account.id),
                ..Default::default()
            },
            &all,
        )
        .await
        .unwrap();
    assert_eq!(notes.items, vec![note]);

    // A payment on a test clock waits on the clock, not in the real-time index.
    let clock = app
        .billing
        .create_test_clock(caller, None, now)
        .await
        .unwrap();
    let on_clock = payment_on(account.id, Some(clock.id), now);
    store
        .save_collection(
            tenant,
            &CollectionWrite {
                payments: vec![(None, on_clock.clone())],
                ..Default::default()
            },
            &events_change(app, caller).await,
        )
        .await
        .unwrap();
    let clock_due = store
        .clock_due_items(tenant, clock.id, now, 10)
        .await
        .unwrap();
    assert_eq!(
        clock_due.iter().map(|d| d.kind.clone()).collect::<Vec<_>>(),
        vec![DueKind::Payment(PaymentJob::Attempt {
            tenant,
            id: on_clock.id
        })]
    );
    assert_eq!(clock_due[0].due_at, now);
    let later_due = store
        .due_items(now + SignedDuration::from_hours(1), 1000)
        .await
        .unwrap();
    assert!(!later_due.iter().any(|d| d.kind == clock_due[0].kind));

    // Settings: defaults until set.
    assert_eq!(
        store.payment_settings(tenant).await.unwrap(),
        PaymentSettings::default()
    );
    let settings = PaymentSettings {
        retry_days: vec![1, 2],
        final_action: FinalAction::MarkUncollectible,
    };
    store
        .set_payment_settings(tenant, &settings, &events_change(app, caller).await)
        .await
        .unwrap();
    assert_eq!(store.payment_settings(tenant).await.unwrap(), settings);
    assert_eq!(
        store.payment_settings(other.tenant_id).await.unwrap(),
        PaymentSettings::default()
    );
}

/// Metrics and plans: codes are unique, a stale plan version is refused without writing
/// its price version, and versions read back in order.
async fn catalog_contract(app: &App, store: &dyn Store, caller: &Caller) {
    use billing_domain::catalog::metric::NewMetric;
    use billing_domain::catalog::plan::{NewPlan, NewPlanVersion, PlanPatch};

    let metric: NewMetric = serde_json::from_value(
        serde_json::json!({"code": "calls", "name": "Calls", "aggregation": "count"}),
    )
    .unwrap();
    let created = app
        .catalog
        .create_metric(caller, metric.clone())
        .await
        .unwrap();
    assert!(
        app.catalog.create_metric(caller, metric).await.is_err(),
        "codes are unique"
    );
    assert_eq!(
        store
            .get_metric_by_code(caller.tenant_id, "calls")
            .await
            .unwrap()
            .map(|m| m.id),
        Some(created.id)
    );
    assert_eq!(
        store
            .get_metric_by_code(caller.tenant_id, "nope")
            .await
            .unwrap(),
        None
    );

    let plan: NewPlan = serde_json::from_value(serde_json::json!({
        "code": "pro", "name": "Pro", "interval": {"unit": "month"},
        "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 100}}},
                    "usage_charges": [{"metric": "calls", "prices": {"usd": {"model": "per_unit", "unit_price": "0.01"}}}]}
    }))
    .unwrap();
    let pro = app
        .catalog
        .create_plan(caller, plan.clone())
        .await
        .unwrap()
        .plan;
    assert!(
        app.catalog.create_plan(caller, plan).await.is_err(),
        "codes are unique"
    );

    let version: NewPlanVersion = serde_json::from_value(serde_json::json!({
        "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 200}}}}
    }))
    .unwrap();
    let v2 = app
        .catalog
        .create_plan_version(caller, pro.id, version)
        .await
        .unwrap();
    assert_eq!(v2.number, 2);
    let renamed = app
        .catalog
        .update_plan(
            caller,
            pro.id,
            PlanPatch {
                name: Some("Pro 2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // A write based on the stale plan (version 1) is refused and writes no version 3.
    let stale_next = pro
        .add_version(&v2, None, false, app_terms(), Timestamp::now())
        .unwrap();
    let change = events_change(app, caller).await;
    assert_eq!(
        store
            .update_plan(
                caller.tenant_id,
                &pro,
                &stale_next.0,
                Some(&stale_next.1),
                &change
            )
            .await,
        Err(StoreError::VersionConflict { entity: "plan" })
    );
    let versions = store
        .list_plan_versions(caller.tenant_id, pro.id)
        .await
        .unwrap();
    assert_eq!(
        versions.iter().map(|v| v.number).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        store
            .get_plan(caller.tenant_id, pro.id)
            .await
            .unwrap()
            .unwrap(),
        renamed
    );
    assert_eq!(
        store
            .plan_subscription_counts(caller.tenant_id, pro.id)
            .await
            .unwrap(),
        [(1, 0), (2, 0)]
    );

    app.catalog.deactivate_plan(caller, pro.id).await.unwrap();
    let active = store
        .list_plans(
            caller.tenant_id,
            PlanFilter { active: Some(true) },
            &PageRequest {
                limit: 10,
                starting_after: None,
            },
        )
        .await
        .unwrap();
    assert!(active.items.is_empty());
}

fn app_terms() -> billing_domain::catalog::plan::PlanTerms {
    let charges: billing_domain::catalog::plan::PlanCharges =
        serde_json::from_value(serde_json::json!({"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 300}}}})).unwrap();
    charges.validate(&Default::default()).unwrap()
}

/// Any valid change record, for calling the store directly.
async fn events_change(app: &App, caller: &Caller) -> Change {
    let scratch = Arc::new(MemoryStore::new());
    let probe = App::new(
        scratch.clone(),
        app.clock.clone(),
        std::sync::Arc::new(billing_aws::SandboxGateway::new()),
    );
    probe
        .customers
        .create_account(caller, new_account("probe@example.com", None))
        .await
        .unwrap();
    let page = PageRequest {
        limit: 1,
        starting_after: None,
    };
    Change {
        audit: scratch
            .list_audit(caller.tenant_id, None, &page)
            .await
            .unwrap()
            .items
            .remove(0),
        events: scratch
            .list_events(caller.tenant_id, &EventFilter::default(), &page)
            .await
            .unwrap()
            .items,
    }
}

#[tokio::test]
async fn memory_store_honours_the_contract() {
    contract(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn dynamodb_store_honours_the_contract() {
    contract(Arc::new(billing_tests::dynamo_store().await)).await;
}
