//! One contract, two stores: the in-memory store used by fast tests and benchmarks must
//! behave exactly like the DynamoDB store on the local stand-in.

use std::sync::Arc;

use billing_app::memory::MemoryStore;
use billing_app::ports::*;
use billing_app::{App, Caller};
use billing_domain::access::Role;
use billing_domain::account::{AccountPatch, AccountStatus, NewAccount};
use billing_domain::tenant::TenantMode;
use jiff::{SignedDuration, Timestamp};

async fn tenant(app: &App) -> Caller {
    let (tenant, issued) = app
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
    let app = App::new(store.clone(), Arc::new(SystemClock));
    let caller = tenant(&app).await;
    let other = tenant(&app).await;

    // Create writes the account, its audit record and its event together.
    let ada = app
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
    app.create_account(&other, new_account("ada@example.com", Some("u-1")))
        .await
        .unwrap();
    assert!(store
        .get_account(other.tenant_id, ada.id)
        .await
        .unwrap()
        .is_none());

    // A stale version is a conflict, and nothing is written.
    let v2 = app
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
    app.update_account(
        &caller,
        ada.id,
        AccountPatch {
            external_id: Some(Some("u-2".into())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    app.create_account(&caller, new_account("grace@example.com", Some("u-1")))
        .await
        .unwrap();
    let taken = app
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
        app.create_account(&caller, new_account(&format!("p{i}@example.com"), None))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = app
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
    app.delete_account(&caller, ada.id).await.unwrap();
    let active = app
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
        .create_api_key(&caller, Role::Support, Some("helpdesk"))
        .await
        .unwrap();
    app.revoke_api_key(&caller, issued.key.id).await.unwrap();
    assert!(app.revoke_api_key(&caller, issued.key.id).await.is_err());
    let mut revoked = issued.key.clone();
    revoked.revoked_at = Some(Timestamp::now());
    assert_eq!(
        store.revoke_api_key(&revoked, &change).await,
        Err(StoreError::VersionConflict { entity: "api_key" })
    );
    assert!(app.authenticate(&issued.secret, None).await.is_err());

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
}

/// Metrics and plans: codes are unique, a stale plan version is refused without writing
/// its price version, and versions read back in order.
async fn catalog_contract(app: &App, store: &dyn Store, caller: &Caller) {
    use billing_domain::metric::NewMetric;
    use billing_domain::plan::{NewPlan, NewPlanVersion, PlanPatch};

    let metric: NewMetric = serde_json::from_value(
        serde_json::json!({"code": "calls", "name": "Calls", "aggregation": "count"}),
    )
    .unwrap();
    let created = app.create_metric(caller, metric.clone()).await.unwrap();
    assert!(
        app.create_metric(caller, metric).await.is_err(),
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
    let pro = app.create_plan(caller, plan.clone()).await.unwrap().plan;
    assert!(
        app.create_plan(caller, plan).await.is_err(),
        "codes are unique"
    );

    let version: NewPlanVersion = serde_json::from_value(serde_json::json!({
        "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 200}}}}
    }))
    .unwrap();
    let v2 = app
        .create_plan_version(caller, pro.id, version)
        .await
        .unwrap();
    assert_eq!(v2.number, 2);
    let renamed = app
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

    app.deactivate_plan(caller, pro.id).await.unwrap();
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

fn app_terms() -> billing_domain::plan::PlanTerms {
    let charges: billing_domain::plan::PlanCharges =
        serde_json::from_value(serde_json::json!({"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 300}}}})).unwrap();
    charges.validate(&Default::default()).unwrap()
}

/// Any valid change record, for calling the store directly.
async fn events_change(app: &App, caller: &Caller) -> Change {
    let scratch = Arc::new(MemoryStore::new());
    let probe = App::new(scratch.clone(), app.clock.clone());
    probe
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
