//! One contract, two stores: the in-memory store used by fast tests and benchmarks must
//! behave exactly like the DynamoDB store on the local stand-in. Each clause is a test of
//! its own on each store (`memory::<clause>`, `dynamo::<clause>`), on a fresh store.

use std::sync::Arc;

use billing_app::ports::*;
use billing_app::{App, Caller};
use billing_domain::customers::access::{NewApiKey, Role};
use billing_domain::customers::account::{Account, AccountPatch, AccountStatus, NewAccount};
use billing_domain::customers::tenant::TenantMode;
use billing_domain::kernel::error::ErrorCode;
use jiff::{SignedDuration, Timestamp};

/// A store under contract, the app over it, and two tenants of it.
struct Contract {
    app: App,
    store: Arc<dyn Store>,
    caller: Caller,
    other: Caller,
}

impl Contract {
    async fn on(store: Arc<dyn Store>) -> Self {
        let app = billing_tests::app(store.clone());
        let caller = tenant(&app).await;
        let other = tenant(&app).await;
        Self {
            app,
            store,
            caller,
            other,
        }
    }

    async fn account(&self, email: &str, external_id: Option<&str>) -> Account {
        self.app
            .customers
            .create_account(&self.caller, new_account(email, external_id))
            .await
            .unwrap()
    }

    /// The caller's accounts, audit records and events.
    async fn counts(&self) -> (usize, usize, usize) {
        counts(&*self.store, &self.caller).await
    }

    async fn change(&self) -> Change {
        events_change(&self.app, &self.caller).await
    }
}

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
        rate_limit_per_hour: None,
        request_id: Some("req_contract".into()),
        user: None,
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
    let all = PageRequest::first(100);
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

fn is_duplicate_value(err: &billing_app::AppError) -> bool {
    matches!(
        err,
        billing_app::AppError::Conflict {
            code: ErrorCode::DuplicateValue,
            ..
        }
    )
}

async fn a_create_writes_the_item_its_audit_record_and_its_event_together(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let ada = c.account("ada@example.com", Some("u-1")).await;
    assert_eq!(c.counts().await, (1, 1, 1));
    let events = c
        .store
        .list_events(
            c.caller.tenant_id,
            &EventFilter::default(),
            &PageRequest::first(10),
        )
        .await
        .unwrap();
    assert_eq!(events.items[0].event_type, "account.created");
    assert_eq!(events.items[0].data["id"], ada.id.to_string());
}

/// An event is in the outbox (due for the sweep [`OUTBOX_GRACE`] after its creation, read
/// unpublished) until it is marked published; then it is due no more and reads published,
/// and marking it again changes nothing. The DynamoDB store keeps the outbox as a small item
/// beside each event and marks by deleting it; the event itself is not rewritten.
async fn an_event_stays_in_the_outbox_until_it_is_marked_published(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    c.account("ada@example.com", Some("u-1")).await;
    let tenant = c.caller.tenant_id;
    let filter = EventFilter {
        event_type: Some("account.created".into()),
        resource_id: None,
    };
    let event = c
        .store
        .list_events(tenant, &filter, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .remove(0);
    let outboxed = || async {
        let later = Timestamp::now() + OUTBOX_GRACE + SignedDuration::from_secs(1);
        c.store
            .due_items(later, 1000)
            .await
            .unwrap()
            .into_iter()
            .any(|d| {
                d.tenant_id == tenant
                    && matches!(d.kind, DueKind::Outbox { event_id } if event_id == event.id)
            })
    };
    let stored = c.store.get_event(tenant, event.id).await.unwrap().unwrap();
    assert!(!stored.published);
    assert!(outboxed().await, "due for the sweep after the grace");
    let early = Timestamp::now() - SignedDuration::from_secs(1);
    assert!(
        !c.store
            .due_items(early, 1000)
            .await
            .unwrap()
            .iter()
            .any(|d| matches!(d.kind, DueKind::Outbox { event_id } if event_id == event.id)),
        "not before its grace"
    );

    c.store.mark_published(tenant, event.id).await.unwrap();
    assert!(!outboxed().await, "out of the outbox once published");
    let stored = c.store.get_event(tenant, event.id).await.unwrap().unwrap();
    assert!(stored.published);
    assert_eq!(stored.data, event.data, "the event itself unchanged");
    c.store.mark_published(tenant, event.id).await.unwrap();
    assert!(!outboxed().await);
    assert!(
        c.store
            .get_event(tenant, event.id)
            .await
            .unwrap()
            .unwrap()
            .published
    );
}

async fn creating_the_same_item_twice_is_a_conflict(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let ada = c.account("ada@example.com", Some("u-1")).await;
    assert_eq!(
        c.store
            .insert_account(c.caller.tenant_id, &ada, &c.change().await)
            .await,
        Err(StoreError::AlreadyExists { entity: "account" })
    );
}

async fn a_transaction_with_one_failing_condition_writes_nothing(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    c.account("ada@example.com", Some("u-1")).await;
    let before = c.counts().await;
    let err = c
        .app
        .customers
        .create_account(&c.caller, new_account("grace@example.com", Some("u-1")))
        .await
        .unwrap_err();
    assert!(is_duplicate_value(&err), "{err:?}");
    assert_eq!(c.counts().await, before);
}

async fn unique_values_and_items_belong_to_their_tenant(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let ada = c.account("ada@example.com", Some("u-1")).await;
    c.app
        .customers
        .create_account(&c.other, new_account("ada@example.com", Some("u-1")))
        .await
        .unwrap();
    assert!(c
        .store
        .get_account(c.other.tenant_id, ada.id)
        .await
        .unwrap()
        .is_none());
}

async fn a_stale_version_is_a_conflict_and_writes_nothing(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let ada = c.account("ada@example.com", Some("u-1")).await;
    let v2 = c
        .app
        .customers
        .update_account(
            &c.caller,
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
    let before = c.counts().await;
    assert_eq!(
        c.store
            .update_account(c.caller.tenant_id, &ada, &stale_next, &c.change().await)
            .await,
        Err(StoreError::VersionConflict { entity: "account" })
    );
    assert_eq!(c.counts().await, before);
    assert_eq!(
        c.store
            .get_account(c.caller.tenant_id, ada.id)
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("Ada")
    );
}

fn external_id(id: &str) -> AccountPatch {
    AccountPatch {
        external_id: Some(Some(id.into())),
        ..Default::default()
    }
}

async fn moving_a_unique_value_frees_the_old_one(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let ada = c.account("ada@example.com", Some("u-1")).await;
    c.app
        .customers
        .update_account(&c.caller, ada.id, external_id("u-2"))
        .await
        .unwrap();
    c.account("grace@example.com", Some("u-1")).await;
    let taken = c
        .app
        .customers
        .update_account(&c.caller, ada.id, external_id("u-1"))
        .await
        .unwrap_err();
    assert!(is_duplicate_value(&taken), "{taken:?}");
}

async fn lists_page_by_cursor_filter_and_leave_deleted_items_out(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let ada = c.account("ada@example.com", Some("u-2")).await;
    c.account("grace@example.com", Some("u-1")).await;
    for i in 0..3 {
        c.account(&format!("p{i}@example.com"), None).await;
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = c
            .app
            .customers
            .list_accounts(
                &c.caller,
                &AccountFilter::default(),
                &PageRequest {
                    starting_after: cursor.clone(),
                    ..PageRequest::first(2)
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
    let list = |filter: AccountFilter| {
        let c = &c;
        async move {
            c.app
                .customers
                .list_accounts(&c.caller, &filter, &PageRequest::first(100))
                .await
                .unwrap()
                .items
        }
    };
    let by_email = list(AccountFilter {
        email: Some("GRACE@example.com".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_email.len(), 1);
    let by_external = list(AccountFilter {
        external_id: Some("u-2".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        by_external.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![ada.id]
    );
    c.app
        .customers
        .delete_account(&c.caller, ada.id)
        .await
        .unwrap();
    let active = list(AccountFilter {
        status: Some(AccountStatus::Active),
        ..Default::default()
    })
    .await;
    assert_eq!(active.len(), 4);
    assert!(c
        .store
        .get_account(c.caller.tenant_id, ada.id)
        .await
        .unwrap()
        .unwrap()
        .deleted_at
        .is_some());
}

/// Issue 20: a tenant's events and audit records are spread over partitions by id (on
/// DynamoDB); its lists still come newest first, and following the cursors, a page at a
/// time, gives exactly the one long page.
async fn tenant_wide_lists_keep_their_order_and_cursors_across_partitions(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    for n in 0..12 {
        c.account(&format!("spread-{n}@example.com"), None).await;
    }
    let events = |starting_after: Option<String>, limit: usize| {
        let c = &c;
        async move {
            let request = PageRequest {
                starting_after,
                ..PageRequest::first(limit)
            };
            let page = c
                .store
                .list_events(tenant, &EventFilter::default(), &request)
                .await
                .unwrap();
            let ids: Vec<String> = page.items.iter().map(|e| e.id.to_string()).collect();
            (ids, page.has_more)
        }
    };
    let audit = |starting_after: Option<String>, limit: usize| {
        let c = &c;
        async move {
            let request = PageRequest {
                starting_after,
                ..PageRequest::first(limit)
            };
            let page = c.store.list_audit(tenant, None, &request).await.unwrap();
            let ids: Vec<String> = page.items.iter().map(|r| r.id.to_string()).collect();
            (ids, page.has_more)
        }
    };
    let (all_events, more) = events(None, 100).await;
    assert!(!more && all_events.len() >= 12, "{all_events:?}");
    let (all_audit, more) = audit(None, 100).await;
    assert!(!more && all_audit.len() >= 12, "{all_audit:?}");
    for all in [&all_events, &all_audit] {
        assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");
    }

    let (mut paged_events, mut cursor) = (Vec::new(), None);
    loop {
        let (ids, more) = events(cursor, 5).await;
        assert!(ids.len() <= 5);
        cursor = ids.last().cloned();
        paged_events.extend(ids);
        if !more {
            break;
        }
    }
    assert_eq!(paged_events, all_events);
    let (mut paged_audit, mut cursor) = (Vec::new(), None);
    loop {
        let (ids, more) = audit(cursor, 5).await;
        cursor = ids.last().cloned();
        paged_audit.extend(ids);
        if !more {
            break;
        }
    }
    assert_eq!(paged_audit, all_audit);
}

/// Issue 13, item 6: a filter no key serves examines at most the page's scan budget, ends
/// the page where it stopped (`has_more` with a cursor there), and following the cursors
/// finds exactly the matches.
async fn a_filtered_list_examines_at_most_its_budget_and_its_cursors_find_every_match(
    store: Arc<dyn Store>,
) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let ada = c.account("ada@example.com", None).await;
    c.app
        .customers
        .update_account(
            &c.caller,
            ada.id,
            AccountPatch {
                name: Some(Some("Ada".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for n in 0..9 {
        c.account(&format!("later-{n}@example.com"), None).await;
    }
    const BUDGET: usize = 4;
    let request = |starting_after: Option<String>| PageRequest {
        limit: 1,
        starting_after,
        scan_budget: BUDGET,
    };
    // Each page's cursor lies at most BUDGET items past the previous one in list order.
    let advance = |order: &[String], from: usize, cursor: &str| {
        let at = order.iter().position(|id| id == cursor).unwrap() + 1;
        assert!(at > from && at - from <= BUDGET, "{from} -> {at}");
        at
    };

    let everything = c
        .store
        .list_events(tenant, &EventFilter::default(), &PageRequest::first(100))
        .await
        .unwrap();
    let order: Vec<String> = everything.items.iter().map(|e| e.id.to_string()).collect();
    let updated = EventFilter {
        event_type: Some("account.updated".into()),
        ..Default::default()
    };
    let expected: Vec<String> = everything
        .items
        .iter()
        .filter(|e| updated.admits(e))
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(expected.len(), 1);
    let first = c
        .store
        .list_events(tenant, &updated, &request(None))
        .await
        .unwrap();
    assert!(first.items.is_empty() && first.has_more, "{first:?}");
    assert_eq!(
        first.scanned_to.as_deref(),
        Some(order[BUDGET - 1].as_str())
    );
    let (mut found, mut cursor, mut at) = (Vec::new(), None, 0);
    loop {
        let page = c
            .store
            .list_events(tenant, &updated, &request(cursor.clone()))
            .await
            .unwrap();
        found.extend(page.items.iter().map(|e| e.id.to_string()));
        if !page.has_more {
            break;
        }
        let next = page
            .scanned_to
            .or_else(|| page.items.last().map(|e| e.id.to_string()))
            .unwrap();
        at = advance(&order, at, &next);
        cursor = Some(next);
    }
    assert_eq!(found, expected);

    // The same over accounts (oldest first): none is in warning, so every page is empty.
    let accounts: Vec<String> = c
        .store
        .list_accounts(tenant, &AccountFilter::default(), &PageRequest::first(100))
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| a.id.to_string())
        .collect();
    assert_eq!(accounts.len(), 10);
    let warning = AccountFilter {
        status: Some(AccountStatus::Warning),
        ..Default::default()
    };
    let (mut pages, mut cursor, mut at) = (0, None, 0);
    loop {
        let page = c
            .store
            .list_accounts(tenant, &warning, &request(cursor.clone()))
            .await
            .unwrap();
        assert!(page.items.is_empty());
        pages += 1;
        if !page.has_more {
            break;
        }
        let next = page
            .scanned_to
            .expect("an empty page resumes where it stopped");
        at = advance(&accounts, at, &next);
        cursor = Some(next);
    }
    assert_eq!(pages, 3, "10 accounts at 4 a request");
}

async fn the_audit_trail_of_an_entity_pages_newest_first(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let ada = c.account("ada@example.com", Some("u-1")).await;
    c.app
        .customers
        .update_account(
            &c.caller,
            ada.id,
            AccountPatch {
                name: Some(Some("Ada".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c.app
        .customers
        .update_account(&c.caller, ada.id, external_id("u-2"))
        .await
        .unwrap();
    c.app
        .customers
        .delete_account(&c.caller, ada.id)
        .await
        .unwrap();
    let trail = c
        .app
        .events
        .list_audit_log(
            &c.caller,
            Some(&ada.id.to_string()),
            &PageRequest::first(10),
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
    let paged = c
        .app
        .events
        .list_audit_log(
            &c.caller,
            Some(&ada.id.to_string()),
            &PageRequest {
                starting_after: Some(trail.items[1].id.to_string()),
                ..PageRequest::first(2)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        paged.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![trail.items[2].id, trail.items[3].id]
    );
}

async fn revoking_an_api_key_twice_is_a_conflict(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let issued = c
        .app
        .customers
        .create_api_key(&c.caller, &NewApiKey::new(Role::Support, Some("helpdesk")))
        .await
        .unwrap();
    c.app
        .customers
        .revoke_api_key(&c.caller, issued.key.id)
        .await
        .unwrap();
    assert!(c
        .app
        .customers
        .revoke_api_key(&c.caller, issued.key.id)
        .await
        .is_err());
    let mut revoked = issued.key.clone();
    revoked.revoked_at = Some(Timestamp::now());
    assert_eq!(
        c.store.revoke_api_key(&revoked, &c.change().await).await,
        Err(StoreError::VersionConflict { entity: "api_key" })
    );
    assert!(c
        .app
        .customers
        .authenticate(&issued.secret, None)
        .await
        .is_err());
}

/// A rate count grants whole shares while they last, then the remainder, then nothing;
/// counts are apart per subject, window and tenant.
async fn rate_counts_never_pass_their_limit(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let t = c.caller.tenant_id;
    let start: Timestamp = "2027-03-01T10:00:00Z".parse().unwrap();
    let hour = (start, start + SignedDuration::from_hours(1));
    let next = (hour.1, hour.1 + SignedDuration::from_hours(1));
    let claim = |tenant, subject, window, want| {
        let store = c.store.clone();
        async move {
            store
                .claim_rate(tenant, subject, window, want, 10)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        claim(t, "key_a", hour, 4).await,
        RateClaim {
            granted: 4,
            used: 4
        }
    );
    assert_eq!(
        claim(t, "key_a", hour, 4).await,
        RateClaim {
            granted: 4,
            used: 8
        }
    );
    assert_eq!(
        claim(t, "key_a", hour, 4).await,
        RateClaim {
            granted: 2,
            used: 10
        }
    );
    assert_eq!(
        claim(t, "key_a", hour, 4).await,
        RateClaim {
            granted: 0,
            used: 10
        }
    );
    assert_eq!(claim(t, "key_b", hour, 4).await.granted, 4);
    assert_eq!(claim(t, "key_a", next, 4).await.granted, 4);
    assert_eq!(claim(c.other.tenant_id, "key_a", hour, 4).await.granted, 4);
}

/// Concurrent claims on one count share it without passing the limit.
async fn concurrent_rate_claims_share_the_limit(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let start: Timestamp = "2027-03-01T10:00:00Z".parse().unwrap();
    let window = (start, start + SignedDuration::from_hours(1));
    let mut claims = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (store, tenant) = (c.store.clone(), c.caller.tenant_id);
        claims.spawn(async move { store.claim_rate(tenant, "key", window, 3, 25).await });
    }
    let mut granted = 0;
    while let Some(claim) = claims.join_next().await {
        granted += claim.unwrap().unwrap().granted;
    }
    assert_eq!(granted, 25, "12 claims of 3 share 25 exactly");
}

/// A key's use is written when none is, or the one written is at least `stale_since` old.
async fn a_key_use_is_written_only_over_a_stale_one(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let (t, key) = (c.caller.tenant_id, c.caller.key_id.unwrap());
    let used = |at: &str| at.parse::<Timestamp>().unwrap();
    let last_used = || async {
        c.store
            .get_api_key(t, key)
            .await
            .unwrap()
            .unwrap()
            .last_used_at
    };
    let write = |at, stale_since| c.store.record_key_use(t, key, used(at), used(stale_since));
    write("2027-03-01T10:00:00Z", "2027-03-01T09:59:00Z")
        .await
        .unwrap();
    assert_eq!(last_used().await, Some(used("2027-03-01T10:00:00Z")));
    write("2027-03-01T10:00:30Z", "2027-03-01T09:59:30Z")
        .await
        .unwrap();
    assert_eq!(
        last_used().await,
        Some(used("2027-03-01T10:00:00Z")),
        "fresh: kept"
    );
    write("2027-03-01T10:01:00Z", "2027-03-01T10:00:00Z")
        .await
        .unwrap();
    assert_eq!(last_used().await, Some(used("2027-03-01T10:01:00Z")));
}

/// Rolling writes the retired key and its successor together, and never over a revoked key.
async fn rolling_a_revoked_key_writes_nothing(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let issued = c
        .app
        .customers
        .create_api_key(&c.caller, &NewApiKey::new(Role::Support, None))
        .await
        .unwrap();
    let successor = billing_app::customers::issue_key(
        c.caller.tenant_id,
        TenantMode::Sandbox,
        billing_domain::customers::access::KeyTerms {
            role: Role::Support,
            name: None,
            rate_limit_per_hour: None,
            expires_at: None,
        },
        Timestamp::now(),
    );
    c.app
        .customers
        .revoke_api_key(&c.caller, issued.key.id)
        .await
        .unwrap();
    let before = c.counts().await;
    let retired = billing_domain::customers::access::ApiKey {
        expires_at: Some(Timestamp::now()),
        ..issued.key.clone()
    };
    assert_eq!(
        c.store
            .roll_api_key(
                &retired,
                &successor.key,
                &c.change().await,
                &c.change().await
            )
            .await,
        Err(StoreError::VersionConflict { entity: "api_key" })
    );
    assert_eq!(c.counts().await, before);
    assert_eq!(
        c.store
            .get_api_key(c.caller.tenant_id, successor.key.id)
            .await
            .unwrap(),
        None
    );
}

/// Claimed once; the same request in flight, replayed once done; a different request
/// refused; released keys can be claimed again; expiry frees them.
async fn idempotency_keys_are_claimed_once_per_tenant_until_released_or_expired(
    store: Arc<dyn Store>,
) {
    let c = Contract::on(store).await;
    let store = &*c.store;
    let now = Timestamp::now();
    let later = now + SignedDuration::from_hours(24);
    let terms = |fingerprint, owner, now: Timestamp, expires_at| ClaimTerms {
        fingerprint,
        owner,
        now,
        lease_until: now + SignedDuration::from_secs(10),
        expires_at,
    };
    let t = c.caller.tenant_id;
    let claim = |tenant, key, fingerprint, owner| async move {
        store
            .claim_idempotency_key(tenant, key, &terms(fingerprint, owner, now, later))
            .await
    };
    assert_eq!(
        claim(t, "k1", "f1", "o1").await,
        Ok(IdempotencyClaim::Claimed)
    );
    assert_eq!(
        claim(t, "k1", "f1", "o2").await,
        Ok(IdempotencyClaim::InProgress)
    );
    assert_eq!(
        claim(t, "k1", "f2", "o2").await,
        Ok(IdempotencyClaim::Mismatch)
    );
    let response = StoredResponse {
        status: 201,
        body: "{\"id\":1}".into(),
    };
    store
        .complete_idempotency_key(t, "k1", "o1", &response)
        .await
        .unwrap();
    assert_eq!(
        claim(t, "k1", "f1", "o3").await,
        Ok(IdempotencyClaim::Replay(response))
    );
    assert_eq!(
        claim(c.other.tenant_id, "k1", "f2", "o4").await,
        Ok(IdempotencyClaim::Claimed),
        "keys are per tenant"
    );
    claim(t, "k2", "f1", "o5").await.unwrap();
    store.release_idempotency_key(t, "k2", "o5").await.unwrap();
    assert_eq!(
        claim(t, "k2", "f9", "o6").await,
        Ok(IdempotencyClaim::Claimed)
    );
    let after_expiry = later + SignedDuration::from_secs(1);
    assert_eq!(
        store
            .claim_idempotency_key(
                t,
                "k1",
                &terms(
                    "f3",
                    "o7",
                    after_expiry,
                    after_expiry + SignedDuration::from_hours(24)
                )
            )
            .await,
        Ok(IdempotencyClaim::Claimed)
    );
}

/// A claim left unanswered past its lease (its holder timed out or crashed) is taken over
/// by the same request, by one retry only; the old holder can then neither record its
/// answer nor give the key away. A different request is still refused, a live lease still
/// answers in progress, and an answered key is replayed however late.
async fn an_idempotency_claim_whose_lease_ran_out_is_taken_over_once(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let store = &*c.store;
    let t = c.caller.tenant_id;
    let t0 = Timestamp::now();
    let lease = SignedDuration::from_secs(10);
    let at = |now: Timestamp, fingerprint, owner| ClaimTerms {
        fingerprint,
        owner,
        now,
        lease_until: now + lease,
        expires_at: t0 + SignedDuration::from_hours(24),
    };
    let claim = |terms: ClaimTerms<'static>| async move {
        store.claim_idempotency_key(t, "k", &terms).await
    };
    assert_eq!(
        claim(at(t0, "f", "dead")).await,
        Ok(IdempotencyClaim::Claimed)
    );
    let almost = t0 + lease - SignedDuration::from_millis(1);
    assert_eq!(
        claim(at(almost, "f", "early")).await,
        Ok(IdempotencyClaim::InProgress),
        "a live lease is its holder's"
    );
    let after = t0 + lease + SignedDuration::from_secs(1);
    assert_eq!(
        claim(at(after, "other", "stranger")).await,
        Ok(IdempotencyClaim::Mismatch),
        "only the same request takes over"
    );
    let (a, b) = tokio::join!(claim(at(after, "f", "a")), claim(at(after, "f", "b")));
    let won: Vec<_> = [(&a, "a"), (&b, "b")]
        .into_iter()
        .filter(|(r, _)| **r == Ok(IdempotencyClaim::Claimed))
        .map(|(_, owner)| owner)
        .collect();
    assert_eq!(won.len(), 1, "one of two retries takes over: {a:?} {b:?}");
    assert!([&a, &b].contains(&&Ok(IdempotencyClaim::InProgress)));
    let winner = won[0];

    // The dead holder wakes up: it may not overwrite or free the winner's claim.
    let stale = StoredResponse {
        status: 201,
        body: "stale".into(),
    };
    store
        .complete_idempotency_key(t, "k", "dead", &stale)
        .await
        .unwrap();
    store.release_idempotency_key(t, "k", "dead").await.unwrap();
    assert_eq!(
        claim(at(after, "f", "c")).await,
        Ok(IdempotencyClaim::InProgress)
    );

    let answer = StoredResponse {
        status: 201,
        body: "fresh".into(),
    };
    store
        .complete_idempotency_key(t, "k", winner, &answer)
        .await
        .unwrap();
    let much_later = after + SignedDuration::from_hours(1);
    assert_eq!(
        claim(at(much_later, "f", "d")).await,
        Ok(IdempotencyClaim::Replay(answer)),
        "an answered key is replayed, not taken over"
    );
}

async fn a_reachable_store_is_ready(store: Arc<dyn Store>) {
    assert_eq!(store.ready().await, Ok(()));
}

fn calls_metric() -> billing_domain::catalog::metric::NewMetric {
    serde_json::from_value(
        serde_json::json!({"code": "calls", "name": "Calls", "aggregation": "count"}),
    )
    .unwrap()
}

/// The `calls` metric and a `pro` plan charging for it.
async fn pro_plan(
    c: &Contract,
) -> (
    billing_domain::catalog::plan::NewPlan,
    billing_domain::catalog::plan::Plan,
) {
    c.app
        .catalog
        .create_metric(&c.caller, calls_metric())
        .await
        .unwrap();
    let plan: billing_domain::catalog::plan::NewPlan = serde_json::from_value(serde_json::json!({
        "code": "pro", "name": "Pro", "interval": {"unit": "month"},
        "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 100}}},
                    "usage_charges": [{"metric": "calls", "prices": {"usd": {"model": "per_unit", "unit_price": "0.01"}}}]}
    }))
    .unwrap();
    let pro = c
        .app
        .catalog
        .create_plan(&c.caller, plan.clone())
        .await
        .unwrap()
        .plan;
    (plan, pro)
}

async fn metric_codes_are_unique_and_found_by_code(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let created = c
        .app
        .catalog
        .create_metric(&c.caller, calls_metric())
        .await
        .unwrap();
    assert!(
        c.app
            .catalog
            .create_metric(&c.caller, calls_metric())
            .await
            .is_err(),
        "codes are unique"
    );
    assert_eq!(
        c.store
            .get_metric_by_code(c.caller.tenant_id, "calls")
            .await
            .unwrap()
            .map(|m| m.id),
        Some(created.id)
    );
    assert_eq!(
        c.store
            .get_metric_by_code(c.caller.tenant_id, "nope")
            .await
            .unwrap(),
        None
    );
}

async fn plan_codes_are_unique(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let (plan, _) = pro_plan(&c).await;
    assert!(
        c.app.catalog.create_plan(&c.caller, plan).await.is_err(),
        "codes are unique"
    );
}

/// A write based on the stale plan is refused without writing its price version, and
/// versions read back in order.
async fn a_stale_plan_write_is_refused_without_writing_its_version(store: Arc<dyn Store>) {
    use billing_domain::catalog::plan::{NewPlanVersion, PlanPatch};

    let c = Contract::on(store).await;
    let (_, pro) = pro_plan(&c).await;
    let version: NewPlanVersion = serde_json::from_value(serde_json::json!({
        "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 200}}}}
    }))
    .unwrap();
    let v2 = c
        .app
        .catalog
        .create_plan_version(&c.caller, pro.id, version)
        .await
        .unwrap();
    assert_eq!(v2.number, 2);
    let renamed = c
        .app
        .catalog
        .update_plan(
            &c.caller,
            pro.id,
            PlanPatch {
                name: Some("Pro 2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Based on version 1 of the plan: no version 3 may be written.
    let stale_next = pro
        .add_version(&v2, None, Default::default(), app_terms(), Timestamp::now())
        .unwrap();
    let tenant = c.caller.tenant_id;
    assert_eq!(
        c.store
            .update_plan(
                tenant,
                &pro,
                &stale_next.0,
                Some(&stale_next.1),
                &c.change().await
            )
            .await,
        Err(StoreError::VersionConflict { entity: "plan" })
    );
    let versions = c.store.list_plan_versions(tenant, pro.id).await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.number).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        c.store.get_plan(tenant, pro.id).await.unwrap().unwrap(),
        renamed
    );
    assert_eq!(
        c.store
            .plan_subscription_counts(tenant, pro.id)
            .await
            .unwrap(),
        [(1, 0), (2, 0)]
    );
}

async fn a_deactivated_plan_leaves_the_active_list(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let (_, pro) = pro_plan(&c).await;
    c.app
        .catalog
        .deactivate_plan(&c.caller, pro.id)
        .await
        .unwrap();
    let active = c
        .store
        .list_plans(
            c.caller.tenant_id,
            PlanFilter { active: Some(true) },
            &PageRequest::first(10),
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
        amount: 1234.into(),
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
        amount_refunded: 0.into(),
        dispute: None,
        sent_to: None,
        created_at: due_at,
        updated_at: due_at,
        version: 1,
    }
}

const CARD: &str = "pm_contract_1";

/// A payment of a new account, pending since a second ago, as the store holds it; and what
/// collecting it writes.
struct Pending {
    account: Account,
    reference: GatewayRef,
    payment: billing_domain::collection::payment::Payment,
    succeeded: billing_domain::collection::payment::Payment,
    note: billing_domain::collection::credit_note::CreditNote,
    /// The due index keeps milliseconds.
    now: Timestamp,
}

impl Pending {
    async fn on(c: &Contract) -> Self {
        use billing_domain::collection::credit_note::{CreditNote, CreditNoteReason};
        use billing_domain::collection::payment::ChargeResult;
        use billing_domain::kernel::ids::CreditNoteId;

        let account = c.account("payer@example.com", None).await;
        let reference = GatewayRef {
            tenant_id: c.caller.tenant_id,
            account_id: account.id,
            payment_id: None,
        };
        let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
        let payment = payment_on(account.id, None, now - SignedDuration::from_secs(1));
        c.store
            .save_collection(
                c.caller.tenant_id,
                &Self::create(&payment),
                &c.change().await,
            )
            .await
            .unwrap();
        let succeeded = payment
            .record(
                "sandbox",
                Some(CARD.into()),
                ChargeResult::Succeeded {
                    payment_intent: "pi_contract".into(),
                    charge: None,
                },
                now,
            )
            .unwrap();
        let note = CreditNote {
            id: CreditNoteId::from_ulid(billing_app::new_ulid()),
            invoice_id: payment.invoice_id,
            account_id: account.id,
            payment_id: Some(payment.id),
            amount: 100.into(),
            currency: payment.currency,
            reason: CreditNoteReason::Refund,
            refund: None,
            credited_to_balance: false,
            memo: None,
            tax_amount: 0.into(),
            created_at: now,
        };
        Self {
            account,
            reference,
            payment,
            succeeded,
            note,
            now,
        }
    }

    fn create(payment: &billing_domain::collection::payment::Payment) -> CollectionWrite {
        CollectionWrite {
            payments: vec![(None, payment.clone())],
            ..Default::default()
        }
    }

    /// The payment succeeded, refunded in part, on the gateway's event.
    fn collect(&self) -> CollectionWrite {
        CollectionWrite {
            payments: vec![(Some(self.payment.version), self.succeeded.clone())],
            credit_note: Some(self.note.clone()),
            gateway_refs: vec![(
                "pi_contract".into(),
                GatewayRef {
                    payment_id: Some(self.payment.id),
                    ..self.reference.clone()
                },
            )],
            gateway_event: Some("evt_contract_1".into()),
            ..Default::default()
        }
    }

    fn is_due(&self, due: &[DueItem]) -> bool {
        let job = DueKind::Payment(PaymentJob::Attempt {
            tenant: self.reference.tenant_id,
            id: self.payment.id,
        });
        due.iter().any(|d| d.kind == job)
    }
}

async fn payment_profiles_are_versioned_consecutively_from_one(store: Arc<dyn Store>) {
    use billing_domain::customers::payment_method::{PaymentMethod, PaymentProfile};

    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let account = c.account("payer@example.com", None).await;
    let reference = GatewayRef {
        tenant_id: tenant,
        account_id: account.id,
        payment_id: None,
    };
    let card = PaymentMethod {
        id: CARD.into(),
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
    // A profile whose previous version is not stored fails.
    assert_eq!(
        c.store
            .save_payment_profile(tenant, &first, &[], None)
            .await,
        Err(StoreError::VersionConflict {
            entity: "payment profile"
        })
    );
    let created = first.clone().after(0);
    c.store
        .save_payment_profile(
            tenant,
            &created,
            &[(card.id.clone(), reference.clone())],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        c.store
            .save_payment_profile(tenant, &created, &[], None)
            .await,
        Err(StoreError::VersionConflict {
            entity: "payment profile"
        })
    );
    let second = created.set_default(&card.id).unwrap().after(1);
    c.store
        .save_payment_profile(tenant, &second, &[], Some(&c.change().await))
        .await
        .unwrap();
    assert_eq!(
        c.store
            .get_payment_profile(tenant, account.id)
            .await
            .unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        c.store
            .get_payment_profile(c.other.tenant_id, account.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        c.store.resolve_gateway_ref(&card.id).await.unwrap(),
        Some(reference)
    );
    assert_eq!(
        c.store.resolve_gateway_ref("pm_nobody").await.unwrap(),
        None
    );
}

async fn a_pending_payment_is_created_once_and_waits_in_the_due_index(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let p = Pending::on(&c).await;
    assert_eq!(
        c.store
            .save_collection(tenant, &Pending::create(&p.payment), &c.change().await)
            .await,
        Err(StoreError::AlreadyExists { entity: "payment" })
    );
    let due = c.store.due_items(p.now, 1000).await.unwrap();
    assert!(p.is_due(&due), "a pending payment is due");
    assert_eq!(
        c.store.get_payment(tenant, p.payment.id).await.unwrap(),
        Some(p.payment.clone())
    );
    assert_eq!(
        c.store
            .get_payment(c.other.tenant_id, p.payment.id)
            .await
            .unwrap(),
        None
    );
}

async fn a_stale_collection_write_changes_nothing_not_even_its_credit_note(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let p = Pending::on(&c).await;
    let stale = CollectionWrite {
        payments: vec![(Some(p.payment.version + 7), p.succeeded.clone())],
        credit_note: Some(p.note.clone()),
        gateway_event: Some("evt_contract_1".into()),
        ..Default::default()
    };
    assert_eq!(
        c.store
            .save_collection(tenant, &stale, &c.change().await)
            .await,
        Err(StoreError::VersionConflict { entity: "payment" })
    );
    assert_eq!(
        c.store.get_credit_note(tenant, p.note.id).await.unwrap(),
        None
    );
}

async fn a_collection_write_commits_its_payment_credit_note_refs_and_gateway_event(
    store: Arc<dyn Store>,
) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let p = Pending::on(&c).await;
    c.store
        .save_collection(tenant, &p.collect(), &c.change().await)
        .await
        .unwrap();
    assert_eq!(
        c.store.get_credit_note(tenant, p.note.id).await.unwrap(),
        Some(p.note.clone())
    );
    assert_eq!(
        c.store
            .resolve_gateway_ref("pi_contract")
            .await
            .unwrap()
            .and_then(|r| r.payment_id),
        Some(p.payment.id)
    );
    let due = c.store.due_items(p.now, 1000).await.unwrap();
    assert!(!p.is_due(&due), "a recorded payment is not due");
    // The gateway event was recorded with the write: a second application is refused.
    assert_eq!(
        c.store.record_gateway_event(tenant, "evt_contract_1").await,
        Err(StoreError::AlreadyExists {
            entity: "gateway event"
        })
    );
}

async fn a_gateway_event_is_applied_once_per_tenant(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    c.store
        .record_gateway_event(tenant, "evt_contract_2")
        .await
        .unwrap();
    assert_eq!(
        c.store.record_gateway_event(tenant, "evt_contract_2").await,
        Err(StoreError::AlreadyExists {
            entity: "gateway event"
        })
    );
    c.store
        .record_gateway_event(c.other.tenant_id, "evt_contract_2")
        .await
        .unwrap();
}

async fn payments_list_by_account_and_status_and_credit_notes_by_account(store: Arc<dyn Store>) {
    use billing_domain::collection::payment::PaymentStatus;

    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let p = Pending::on(&c).await;
    c.store
        .save_collection(tenant, &p.collect(), &c.change().await)
        .await
        .unwrap();
    let all = PageRequest::first(10);
    let listed = c
        .store
        .list_payments(
            tenant,
            &PaymentFilter {
                account: Some(p.account.id),
                status: Some(PaymentStatus::Succeeded),
                ..Default::default()
            },
            &all,
        )
        .await
        .unwrap();
    assert_eq!(listed.items, vec![p.succeeded.clone()]);
    let none = c
        .store
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
    let notes = c
        .store
        .list_credit_notes(
            tenant,
            &CreditNoteFilter {
                account: Some(p.account.id),
                ..Default::default()
            },
            &all,
        )
        .await
        .unwrap();
    assert_eq!(notes.items, vec![p.note]);
}

async fn a_payment_on_a_test_clock_waits_on_the_clock_not_in_real_time(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let account = c.account("payer@example.com", None).await;
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    let clock = c
        .app
        .billing
        .create_test_clock(&c.caller, None, now)
        .await
        .unwrap();
    let on_clock = payment_on(account.id, Some(clock.id), now);
    c.store
        .save_collection(tenant, &Pending::create(&on_clock), &c.change().await)
        .await
        .unwrap();
    let clock_due = c
        .store
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
    let later_due = c
        .store
        .due_items(now + SignedDuration::from_hours(1), 1000)
        .await
        .unwrap();
    assert!(!later_due.iter().any(|d| d.kind == clock_due[0].kind));
}

async fn payment_settings_are_the_defaults_until_set_per_tenant(store: Arc<dyn Store>) {
    use billing_domain::collection::retry::{FinalAction, PaymentSettings};

    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    assert_eq!(
        c.store.payment_settings(tenant).await.unwrap(),
        PaymentSettings::default()
    );
    let settings = PaymentSettings {
        retry_days: vec![1, 2],
        final_action: FinalAction::MarkUncollectible,
        stripe_account: Some(
            billing_domain::collection::connect::StripeAccount::parse("acct_1Contract", "p")
                .unwrap(),
        ),
    };
    c.store
        .set_payment_settings(tenant, &settings, &c.change().await)
        .await
        .unwrap();
    assert_eq!(c.store.payment_settings(tenant).await.unwrap(), settings);
    assert_eq!(
        c.store.payment_settings(c.other.tenant_id).await.unwrap(),
        PaymentSettings::default()
    );
}

/// A tenant's identity provider and who trusts an issuer move together: the old issuer
/// stops naming the tenant when the provider changes, two tenants may trust one issuer, and
/// a write based on a stale issuer is refused and writes nothing.
async fn an_identity_provider_moves_its_issuer_trust_with_it(store: Arc<dyn Store>) {
    use billing_domain::customers::staff::{IdentityProviderInput, IssuerTrust};
    use billing_domain::kernel::deployment::Deployment;

    let c = Contract::on(store).await;
    let provider = |issuer: &str| {
        IdentityProviderInput {
            issuer: issuer.into(),
            audience: "billing".into(),
            jwks_url: format!("{issuer}/jwks.json"),
            tenant_claim: None,
            role_claim: None,
            roles: None,
        }
        .validate(Deployment::Deployed)
        .unwrap()
    };
    let trust = |caller: &Caller, issuer: &str| IssuerTrust {
        tenant_id: caller.tenant_id,
        livemode: caller.livemode,
        provider: provider(issuer),
    };
    let tenants = |issuer: &'static str| {
        let store = c.store.clone();
        async move {
            let mut tenants: Vec<_> = store
                .issuer_trusts(issuer)
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.tenant_id)
                .collect();
            tenants.sort();
            tenants
        }
    };
    let (a, b) = ("https://a.example", "https://b.example");
    assert_eq!(
        c.store.identity_provider(c.caller.tenant_id).await.unwrap(),
        None
    );
    c.store
        .set_identity_provider(&trust(&c.caller, a), None, &c.change().await)
        .await
        .unwrap();
    c.store
        .set_identity_provider(&trust(&c.other, a), None, &c.change().await)
        .await
        .unwrap();
    let mut both = vec![c.caller.tenant_id, c.other.tenant_id];
    both.sort();
    assert_eq!(tenants(a).await, both);
    // Based on no provider, while one is stored: refused.
    let stale = c
        .store
        .set_identity_provider(&trust(&c.caller, b), None, &c.change().await)
        .await;
    assert!(
        matches!(stale, Err(StoreError::VersionConflict { .. })),
        "{stale:?}"
    );
    let audit_before = c.counts().await.1;
    c.store
        .set_identity_provider(&trust(&c.caller, b), Some(&provider(a)), &c.change().await)
        .await
        .unwrap();
    assert_eq!(c.counts().await.1, audit_before + 1);
    assert_eq!(tenants(a).await, vec![c.other.tenant_id]);
    assert_eq!(tenants(b).await, vec![c.caller.tenant_id]);
    assert_eq!(
        c.store.identity_provider(c.caller.tenant_id).await.unwrap(),
        Some(provider(b))
    );
    // Based on the issuer it had before: refused, and nothing moved.
    let stale = c
        .store
        .set_identity_provider(&trust(&c.caller, a), Some(&provider(a)), &c.change().await)
        .await;
    assert!(
        matches!(stale, Err(StoreError::VersionConflict { .. })),
        "{stale:?}"
    );
    assert_eq!(tenants(b).await, vec![c.caller.tenant_id]);
    assert_eq!(c.counts().await.1, audit_before + 1);
}

/// Not the default in any part, so that a store keeping only some of it fails.
fn dunning_policy() -> billing_domain::collection::dunning::DunningPolicy {
    use billing_domain::collection::dunning::{
        BlockEffects, DunningAction, DunningPolicy, DunningStep,
    };
    let mut policy = DunningPolicy::new(vec![
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
    policy.on_block = BlockEffects {
        deny_entitlements: false,
        suspend_subscriptions: true,
    };
    policy
}

/// A dunning case (warning on day 2, block on day 9) opened and saved for an account.
struct Dunning {
    account: Account,
    case: billing_domain::collection::dunning::DunningCase,
}

/// When the cases open.
fn dunning_start() -> Timestamp {
    Timestamp::from_second(1_900_000_000).unwrap()
}

impl Dunning {
    async fn open(c: &Contract, account: Account) -> Self {
        use billing_domain::collection::dunning::{CaseFacts, DunningCase};
        use billing_domain::kernel::ids::InvoiceId;

        let facts = CaseFacts {
            account_id: account.id,
            test_clock: None,
            livemode: false,
        };
        let invoice = InvoiceId::from_ulid(billing_app::new_ulid());
        let case =
            DunningCase::open(facts, None, &dunning_policy(), invoice, dunning_start()).unwrap();
        c.store
            .save_dunning_case(
                c.caller.tenant_id,
                None,
                &case,
                None,
                None,
                &c.change().await,
            )
            .await
            .unwrap();
        Self { account, case }
    }

    /// The due jobs of this case's account.
    fn mine(
        &self,
        items: Vec<DueItem>,
        tenant: billing_domain::kernel::ids::TenantId,
    ) -> Vec<DueKind> {
        let account = self.account.id;
        items
            .into_iter()
            .filter(|i| i.tenant_id == tenant)
            .map(|i| i.kind)
            .filter(|k| {
                matches!(k, DueKind::Payment(PaymentJob::Dunning { account: a, .. }
                    | PaymentJob::DunningNotice { account: a, .. }) if *a == account)
            })
            .collect()
    }

    fn step_job(&self, tenant: billing_domain::kernel::ids::TenantId) -> DueKind {
        DueKind::Payment(PaymentJob::Dunning {
            tenant,
            account: self.account.id,
        })
    }

    /// The first step (the warning) and the notice it sends.
    fn warning(
        &self,
    ) -> (
        billing_domain::collection::dunning::DunningTransition,
        PendingNotice,
    ) {
        use billing_domain::collection::dunning::NoticeKind;

        let at = self.case.next_step_at.unwrap();
        let step = self.case.take_due_step(at).unwrap();
        let notice = PendingNotice {
            account_id: self.account.id,
            key: step.notice.clone().unwrap().key,
            kind: NoticeKind::Warning,
            made_at: at,
            retry_at: at + SignedDuration::from_mins(2),
            version: 1,
            about: None,
        };
        (step, notice)
    }

    fn warned(&self) -> Account {
        let mut warned = self.account.clone();
        warned.status = AccountStatus::Warning;
        warned.version += 1;
        warned
    }
}

async fn the_dunning_policy_is_the_tenants(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    assert_eq!(c.store.get_dunning_policy(tenant).await, Ok(None));
    let policy = dunning_policy();
    c.store
        .set_dunning_policy(tenant, &policy, &c.change().await)
        .await
        .unwrap();
    assert_eq!(
        c.store.get_dunning_policy(tenant).await,
        Ok(Some(policy.clone()))
    );
    assert_eq!(
        c.store.get_dunning_policy(c.other.tenant_id).await,
        Ok(None)
    );
}

async fn branding_is_written_over_the_version_it_was_read_at(store: Arc<dyn Store>) {
    use billing_domain::documents::branding::{Branding, BrandingPatch};
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    assert_eq!(c.store.branding(tenant).await, Ok(None));
    let patch = |name: &str| BrandingPatch {
        legal_name: Some(Some(name.to_owned())),
        ..BrandingPatch::default()
    };
    let now = Timestamp::UNIX_EPOCH;
    let first = Branding::default().patched(patch("First"), now).unwrap();
    let conflict = Err(StoreError::VersionConflict { entity: "branding" });
    c.store
        .save_branding(tenant, &first, &c.change().await)
        .await
        .unwrap();
    // A second writer that also read "no branding" loses.
    let rival = Branding::default().patched(patch("Rival"), now).unwrap();
    assert_eq!(
        c.store
            .save_branding(tenant, &rival, &c.change().await)
            .await,
        conflict
    );
    let second = first.patched(patch("Second"), now).unwrap();
    c.store
        .save_branding(tenant, &second, &c.change().await)
        .await
        .unwrap();
    // So does one that read version 1.
    let stale = first.patched(patch("Stale"), now).unwrap();
    assert_eq!(
        c.store
            .save_branding(tenant, &stale, &c.change().await)
            .await,
        conflict
    );
    assert_eq!(c.store.branding(tenant).await, Ok(Some(second)));
    assert_eq!(c.store.branding(c.other.tenant_id).await, Ok(None));
}

async fn a_dunning_case_is_created_once_and_belongs_to_its_tenant(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let account = c.account("debtor@example.com", None).await;
    assert_eq!(c.store.get_dunning_case(tenant, account.id).await, Ok(None));
    let d = Dunning::open(&c, account).await;
    assert_eq!(
        c.store
            .save_dunning_case(tenant, None, &d.case, None, None, &c.change().await)
            .await,
        Err(StoreError::AlreadyExists {
            entity: "dunning case"
        })
    );
    assert_eq!(
        c.store.get_dunning_case(tenant, d.account.id).await,
        Ok(Some(d.case.clone()))
    );
    assert_eq!(
        c.store
            .get_dunning_case(c.other.tenant_id, d.account.id)
            .await,
        Ok(None)
    );
}

async fn a_dunning_case_is_due_at_its_next_step(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let d = Dunning::open(&c, c.account("debtor@example.com", None).await).await;
    let first_step = d.case.next_step_at.unwrap();
    assert_eq!(
        d.mine(
            c.store
                .due_items(first_step - SignedDuration::from_secs(1), 1000)
                .await
                .unwrap(),
            tenant
        ),
        []
    );
    assert_eq!(
        d.mine(c.store.due_items(first_step, 1000).await.unwrap(), tenant),
        [d.step_job(tenant)]
    );
}

async fn a_dunning_step_writes_its_case_status_and_notice_together_or_not_at_all(
    store: Arc<dyn Store>,
) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let d = Dunning::open(&c, c.account("debtor@example.com", None).await).await;
    let (step, notice) = d.warning();
    let warned = d.warned();
    let stale_account = AccountStatusWrite {
        previous: &warned,
        next: &warned,
    };
    assert_eq!(
        c.store
            .save_dunning_case(
                tenant,
                Some(&d.case),
                &step.next,
                Some(stale_account),
                Some(&notice),
                &c.change().await
            )
            .await,
        Err(StoreError::VersionConflict { entity: "account" })
    );
    assert_eq!(
        c.store.get_dunning_case(tenant, d.account.id).await,
        Ok(Some(d.case.clone())),
        "nothing written"
    );
    assert_eq!(
        c.store
            .get_dunning_notice(tenant, d.account.id, &notice.key)
            .await,
        Ok(None)
    );
    let write = AccountStatusWrite {
        previous: &d.account,
        next: &warned,
    };
    c.store
        .save_dunning_case(
            tenant,
            Some(&d.case),
            &step.next,
            Some(write),
            Some(&notice),
            &c.change().await,
        )
        .await
        .unwrap();
    assert_eq!(
        c.store
            .get_account(tenant, d.account.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        AccountStatus::Warning
    );
    assert_eq!(
        c.store
            .save_dunning_case(
                tenant,
                Some(&d.case),
                &step.next,
                None,
                None,
                &c.change().await
            )
            .await,
        Err(StoreError::VersionConflict {
            entity: "dunning case"
        })
    );
}

/// The notice waits until its claim runs out, the case until its next step; a notice is
/// claimed over its version and deleted once sent.
async fn a_notice_waits_out_its_claim_and_is_claimed_over_its_version(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let d = Dunning::open(&c, c.account("debtor@example.com", None).await).await;
    let (step, notice) = d.warning();
    let warned = d.warned();
    c.store
        .save_dunning_case(
            tenant,
            Some(&d.case),
            &step.next,
            Some(AccountStatusWrite {
                previous: &d.account,
                next: &warned,
            }),
            Some(&notice),
            &c.change().await,
        )
        .await
        .unwrap();
    let account = d.account.id;
    let notice_job = DueKind::Payment(PaymentJob::DunningNotice {
        tenant,
        account,
        key: notice.key.clone(),
    });
    let due_at = |at| {
        let (c, d) = (&c, &d);
        async move { d.mine(c.store.due_items(at, 1000).await.unwrap(), tenant) }
    };
    assert_eq!(due_at(d.case.next_step_at.unwrap()).await, []);
    assert_eq!(
        due_at(notice.retry_at).await,
        std::slice::from_ref(&notice_job)
    );
    let mut due = due_at(step.next.next_step_at.unwrap()).await;
    due.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(due, [d.step_job(tenant), notice_job]);
    assert_eq!(
        c.store
            .get_dunning_notice(tenant, account, &notice.key)
            .await,
        Ok(Some(notice.clone()))
    );
    let claimed = notice
        .reclaim(
            notice.retry_at,
            notice.retry_at + SignedDuration::from_mins(2),
        )
        .unwrap();
    c.store
        .claim_dunning_notice(tenant, &notice, &claimed)
        .await
        .unwrap();
    assert_eq!(
        c.store
            .claim_dunning_notice(tenant, &notice, &claimed)
            .await,
        Err(StoreError::VersionConflict {
            entity: "dunning notice"
        })
    );
    assert_eq!(due_at(notice.retry_at).await, []);
    for _ in 0..2 {
        c.store
            .delete_dunning_notice(tenant, account, &notice.key)
            .await
            .unwrap();
    }
    assert_eq!(
        c.store
            .get_dunning_notice(tenant, account, &notice.key)
            .await,
        Ok(None)
    );
    assert_eq!(
        c.store
            .claim_dunning_notice(tenant, &claimed, &claimed)
            .await,
        Err(StoreError::VersionConflict {
            entity: "dunning notice"
        })
    );
}

async fn a_dunning_case_on_a_test_clock_waits_on_the_clock_not_in_real_time(store: Arc<dyn Store>) {
    use billing_domain::collection::dunning::{CaseFacts, DunningCase};
    use billing_domain::kernel::ids::InvoiceId;

    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let t = dunning_start();
    let clock = c
        .app
        .billing
        .create_test_clock(&c.caller, None, t)
        .await
        .unwrap();
    let on_clock = c.account("clocked@example.com", None).await;
    let facts = CaseFacts {
        account_id: on_clock.id,
        test_clock: Some(clock.id),
        livemode: false,
    };
    let invoice = InvoiceId::from_ulid(billing_app::new_ulid());
    let case = DunningCase::open(facts, None, &dunning_policy(), invoice, t).unwrap();
    c.store
        .save_dunning_case(tenant, None, &case, None, None, &c.change().await)
        .await
        .unwrap();
    let far = t + SignedDuration::from_hours(24 * 400);
    assert!(!c
        .store
        .due_items(far, 1000)
        .await
        .unwrap()
        .iter()
        .any(|i| matches!(
            &i.kind,
            DueKind::Payment(PaymentJob::Dunning { account, .. }) if *account == on_clock.id
        )));
    let on_the_clock = c
        .store
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

/// A subscription metering `calls`, and what the store is asked to write for it.
struct Metering {
    sub: billing_domain::billing::subscription::Subscription,
}

impl Metering {
    async fn on(c: &Contract) -> Self {
        let sub = billing_tests::subscribe(
            &c.app,
            &c.caller,
            serde_json::json!({"email": "usage@example.com", "currency": "usd"}),
            "month",
            500,
        )
        .await;
        Self { sub }
    }

    fn event(&self, id: &str, value: billing_domain::usage::meter::Measured) -> StoredUsageEvent {
        use billing_domain::usage::meter::UsageEvent;
        StoredUsageEvent {
            event: UsageEvent {
                transaction_id: id.into(),
                metric: "calls".into(),
                timestamp: self.sub.created_at,
                value,
                properties: Default::default(),
            },
            subscription_id: self.sub.id,
            period_start: Some(self.sub.current_period.start),
            received_at: self.sub.created_at,
        }
    }

    fn occurrence(&self, id: &str) -> StoredUsageEvent {
        self.event(id, billing_domain::usage::meter::Measured::Occurrence)
    }

    fn rollup(&self, events: u64, version: u64) -> Rollup {
        use billing_domain::usage::meter::Aggregate;
        Rollup {
            aggregate: Aggregate {
                events,
                unique: events,
                ..Aggregate::default()
            },
            version,
            ..Rollup::empty(
                &self.sub,
                "calls",
                billing_domain::catalog::metric::Aggregation::Count,
                self.sub.current_period,
            )
        }
    }

    fn key(&self) -> RollupKey {
        self.rollup(0, 0).key()
    }

    fn write(&self, events: Vec<StoredUsageEvent>, expected: u64, next: Rollup) -> UsageWrite {
        UsageWrite {
            events,
            rollups: vec![RollupWrite {
                expected_version: expected,
                next,
            }],
            ..UsageWrite::default()
        }
    }

    /// Events `a` and `b` (distinct value `x`), the rollup at version 1.
    async fn first(&self, c: &Contract) {
        use billing_domain::usage::meter::Measured;
        let mut first = self.write(
            vec![
                self.occurrence("a"),
                self.event("b", Measured::Distinct { value: "x".into() }),
            ],
            0,
            self.rollup(2, 1),
        );
        first.distinct_values = vec![(self.key(), "x".into())];
        c.store
            .record_usage(c.caller.tenant_id, std::slice::from_ref(&first))
            .await
            .unwrap();
    }
}

fn abc() -> [String; 3] {
    ["a".to_owned(), "b".to_owned(), "c".to_owned()]
}

async fn usage_events_and_distinct_values_are_stored_once_per_tenant(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let m = Metering::on(&c).await;
    assert!(c
        .store
        .stored_usage_events(tenant, &abc())
        .await
        .unwrap()
        .is_empty());
    m.first(&c).await;
    assert_eq!(
        c.store.stored_usage_events(tenant, &abc()).await.unwrap(),
        ["a".to_owned(), "b".to_owned()].into()
    );
    assert!(c
        .store
        .stored_usage_events(c.other.tenant_id, &abc())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        c.store
            .seen_distinct_values(tenant, &m.key(), &["x".into(), "y".into()])
            .await
            .unwrap(),
        ["x".to_owned()].into()
    );
}

/// A stored transaction id, a rollup moved since it was read, a distinct value already
/// seen: each refuses the whole write.
async fn a_stored_event_a_moved_rollup_or_a_seen_value_refuses_the_whole_write(
    store: Arc<dyn Store>,
) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let m = Metering::on(&c).await;
    m.first(&c).await;
    let duplicate = m.write(
        vec![m.occurrence("c"), m.occurrence("a")],
        1,
        m.rollup(4, 2),
    );
    assert_eq!(
        c.store
            .record_usage(tenant, std::slice::from_ref(&duplicate))
            .await,
        Err(StepsFailed {
            written: 0,
            error: StoreError::AlreadyExists {
                entity: "usage event"
            }
        })
    );
    let stale = m.write(vec![m.occurrence("c")], 0, m.rollup(3, 1));
    assert_eq!(
        c.store
            .record_usage(tenant, std::slice::from_ref(&stale))
            .await,
        Err(StepsFailed {
            written: 0,
            error: StoreError::VersionConflict {
                entity: "usage rollup"
            }
        })
    );
    let mut seen = m.write(vec![m.occurrence("c")], 1, m.rollup(3, 2));
    seen.distinct_values = vec![(m.key(), "x".into())];
    assert_eq!(
        c.store
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
        c.store
            .stored_usage_events(tenant, &abc())
            .await
            .unwrap()
            .len(),
        2,
        "nothing of a refused write"
    );
    let stored = c
        .store
        .get_rollups(tenant, std::slice::from_ref(&m.key()))
        .await
        .unwrap();
    assert_eq!(stored, vec![m.rollup(2, 1)]);
}

async fn rollups_are_listed_by_period_range(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let m = Metering::on(&c).await;
    m.first(&c).await;
    let start = m.sub.current_period.start;
    let in_range =
        |from: Timestamp, to: Timestamp| c.store.list_rollups(tenant, m.sub.id, from, to);
    assert_eq!(
        in_range(start, start + SignedDuration::from_millis(1))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(in_range(
        start + SignedDuration::from_millis(1),
        m.sub.current_period.end
    )
    .await
    .unwrap()
    .is_empty());
}

async fn a_quota_snapshot_and_its_events_commit_with_the_usage(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let m = Metering::on(&c).await;
    m.first(&c).await;
    let sub = &m.sub;
    assert_eq!(
        c.store.get_quota(tenant, sub.account_id, "calls").await,
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
        recurring: false,
    };
    let (_, _, events_before) = c.counts().await;
    let mut third = m.write(vec![m.occurrence("c")], 1, m.rollup(3, 2));
    third.quotas = vec![quota.clone()];
    third.changes = vec![c.change().await];
    c.store
        .record_usage(tenant, std::slice::from_ref(&third))
        .await
        .unwrap();
    assert_eq!(
        c.store.get_quota(tenant, sub.account_id, "calls").await,
        Ok(Some(quota))
    );
    assert_eq!(c.counts().await.2, events_before + 1);
}

async fn late_usage_waits_in_the_due_index_until_it_is_billed(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let m = Metering::on(&c).await;
    m.first(&c).await;
    let late_at = m.sub.created_at + SignedDuration::from_mins(1);
    let late = Rollup {
        late_due_at: Some(late_at),
        ..m.rollup(3, 2)
    };
    c.store
        .record_usage(tenant, &[m.write(vec![m.occurrence("c")], 1, late)])
        .await
        .unwrap();
    let job = DueKind::Billing(BillingJob::Subscription {
        tenant,
        id: m.sub.id,
    });
    let late_due = || async {
        c.store
            .due_items(late_at, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.kind == job && d.due_at.as_millisecond() == late_at.as_millisecond())
            .count()
    };
    assert_eq!(late_due().await, 1);
    let billed = |expected: u64| {
        [RollupWrite {
            expected_version: expected,
            next: m.rollup(3, expected + 1),
        }]
    };
    assert_eq!(
        c.store
            .bill_late_usage(tenant, None, &billed(1), None)
            .await,
        Err(StoreError::VersionConflict {
            entity: "usage rollup"
        })
    );
    c.store
        .bill_late_usage(tenant, None, &billed(2), None)
        .await
        .unwrap();
    assert_eq!(late_due().await, 0);
}

/// Units are written in order, however many a transaction holds: each moves the rollup on
/// from the one before. After a unit that fails, the units reported written are stored and
/// no others.
async fn usage_units_span_transactions_and_a_failure_reports_what_was_written(
    store: Arc<dyn Store>,
) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let m = Metering::on(&c).await;
    let units = |prefix: &str, from: u64| -> Vec<UsageWrite> {
        (0..150)
            .map(|i| {
                m.write(
                    vec![m.occurrence(&format!("{prefix}{i}"))],
                    from + i,
                    m.rollup(from + i, from + i + 1),
                )
            })
            .collect()
    };
    let ids = |prefix: &str| (0..150).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    c.store.record_usage(tenant, &units("u", 0)).await.unwrap();
    assert_eq!(
        c.store
            .stored_usage_events(tenant, &ids("u"))
            .await
            .unwrap()
            .len(),
        150
    );
    assert_eq!(
        c.store
            .get_rollups(tenant, std::slice::from_ref(&m.key()))
            .await
            .unwrap(),
        vec![m.rollup(149, 150)]
    );
    let mut failing = units("v", 150);
    failing[120].events = vec![m.occurrence("u0")];
    let failed = c.store.record_usage(tenant, &failing).await.unwrap_err();
    assert_eq!(
        failed.error,
        StoreError::AlreadyExists {
            entity: "usage event"
        }
    );
    assert!(failed.written <= 120, "{failed:?}");
    assert_eq!(
        c.store
            .stored_usage_events(tenant, &ids("v"))
            .await
            .unwrap()
            .len(),
        failed.written
    );
}

async fn a_step_and_the_rollups_it_bills_commit_together_or_not_at_all(store: Arc<dyn Store>) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let m = Metering::on(&c).await;
    m.first(&c).await;
    let sub = &m.sub;
    let next = billing_domain::billing::subscription::Subscription {
        version: sub.version + 1,
        ..sub.clone()
    };
    let change = c.change().await;
    let step = |expected: u64| SubscriptionStep {
        previous: sub.clone(),
        next: next.clone(),
        invoice: None,
        rollups: vec![RollupWrite {
            expected_version: expected,
            next: m.rollup(4, expected + 1),
        }],
        change: change.clone(),
    };
    let version = || async {
        c.store
            .get_subscription(tenant, sub.id)
            .await
            .unwrap()
            .map(|s| s.version)
    };
    assert_eq!(
        c.store.save_subscription_steps(tenant, &[step(0)]).await,
        Err(StepsFailed {
            written: 0,
            error: StoreError::VersionConflict {
                entity: "usage rollup"
            }
        })
    );
    assert_eq!(version().await, Some(sub.version));
    c.store
        .save_subscription_steps(tenant, &[step(1)])
        .await
        .unwrap();
    assert_eq!(version().await, Some(next.version));
    assert_eq!(
        c.store.get_rollups(tenant, &[m.key()]).await.unwrap(),
        vec![m.rollup(4, 2)]
    );
}

async fn a_due_pass_reads_each_item_once_page_by_page_and_saves_where_it_stands(
    store: Arc<dyn Store>,
) {
    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    for i in 0..5 {
        c.account(&format!("due{i}@example.com"), None).await;
    }
    let later = c.app.clock.now() + SignedDuration::from_hours(1);
    let mine = |items: Vec<DueItem>| -> Vec<DueItem> {
        items
            .into_iter()
            .filter(|i| i.tenant_id == tenant)
            .collect()
    };
    let mut expected = mine(c.store.due_items(later, 1000).await.unwrap());
    assert!(
        expected.len() >= 5,
        "each account's event waits in the outbox"
    );

    // One item of each shard per page: every item comes once, then the pass is done.
    let mut cursor = DueCursor::default();
    let mut read = Vec::new();
    let mut pages = 0;
    loop {
        let page = c.store.due_page(later, &cursor, 1).await.unwrap();
        read.extend(mine(page.items));
        cursor = page.cursor;
        pages += 1;
        assert!(pages <= 1000, "the pass ends");
        if page.done {
            break;
        }
    }
    let again = c.store.due_page(later, &cursor, 1).await.unwrap();
    assert!(
        again.done && mine(again.items).is_empty(),
        "a done pass reads nothing"
    );
    let key = |i: &DueItem| format!("{:?}", i.kind);
    read.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(read, expected, "each due item once");

    // A pass from a time reads only what fell due after it.
    let first_due = expected.iter().map(|i| i.due_at).min().unwrap();
    let after_all = c
        .store
        .due_page(later, &DueCursor::from(Some(later)), 1000)
        .await
        .unwrap();
    assert!(mine(after_all.items).is_empty() && after_all.done);
    let from_before = c
        .store
        .due_page(
            later,
            &DueCursor::from(Some(first_due - SignedDuration::from_millis(1))),
            1000,
        )
        .await
        .unwrap();
    assert_eq!(mine(from_before.items).len(), expected.len());

    // The checkpoint moves one version at a time: a stale save is a conflict.
    let version = c
        .store
        .sweep_checkpoint()
        .await
        .unwrap()
        .map_or(0, |s| s.version);
    let next = SweepCheckpoint {
        version: version + 1,
        upper: later,
        cursor,
        done: true,
        full_pass_at: later,
    };
    c.store.save_sweep_checkpoint(&next).await.unwrap();
    assert_eq!(
        c.store.sweep_checkpoint().await.unwrap(),
        Some(next.clone())
    );
    assert_eq!(
        c.store.save_sweep_checkpoint(&next).await,
        Err(StoreError::VersionConflict {
            entity: "sweep checkpoint"
        })
    );
}

/// Any valid change record, for calling the store directly.
async fn events_change(app: &App, caller: &Caller) -> Change {
    let scratch = billing_tests::memory_store();
    let probe = billing_tests::app_with_clock(scratch.clone(), app.clock.clone());
    probe
        .customers
        .create_account(caller, new_account("probe@example.com", None))
        .await
        .unwrap();
    let page = PageRequest::first(1);
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

/// Balances: a change commits over the balance's version (grants, ledger entries and its
/// record together) or not at all; grants and ledger list newest first, per account and
/// tenant; several balances are read in one call.
async fn a_balance_change_commits_over_its_version_or_writes_nothing(store: Arc<dyn Store>) {
    use billing_app::credits::GrantRequest;
    use billing_domain::credits::balance::TransactionKind;
    use billing_domain::kernel::currency::Currency;

    let c = Contract::on(store).await;
    let account = c.account("balance@example.com", None).await;
    let usd = Currency::from_code("usd").unwrap();
    let eur = Currency::from_code("eur").unwrap();
    let grant = |amount: i64, expires_at: Option<Timestamp>| GrantRequest {
        account: account.id,
        amount,
        currency: usd,
        reason: "goodwill".into(),
        note: None,
        expires_at,
    };
    let later = c.app.clock.now() + SignedDuration::from_hours(24);
    let first = c
        .app
        .credits
        .grant_credit(&c.caller, grant(1500, None))
        .await
        .unwrap();
    let second = c
        .app
        .credits
        .grant_credit(&c.caller, grant(700, Some(later)))
        .await
        .unwrap();
    let tenant = c.caller.tenant_id;
    let balance = c
        .store
        .get_balance(tenant, account.id, usd)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((balance.available.get(), balance.version), (2200, 2));
    assert_eq!(balance.next_expiry, Some(later));
    assert_eq!(balance.open_grants.len(), 2);
    let page = PageRequest::first(10);
    let grants = c
        .store
        .list_grants(tenant, account.id, &page)
        .await
        .unwrap();
    assert_eq!(
        grants.items.iter().map(|g| g.id).collect::<Vec<_>>(),
        vec![second.id, first.id]
    );
    let ledger = c
        .store
        .list_balance_transactions(tenant, account.id, Some(usd), &page)
        .await
        .unwrap();
    assert_eq!(
        ledger
            .items
            .iter()
            .map(|e| (e.kind, e.amount.get(), e.ending_balance.get()))
            .collect::<Vec<_>>(),
        vec![
            (TransactionKind::Granted, 700, 2200),
            (TransactionKind::Granted, 1500, 1500)
        ]
    );
    let none = c
        .store
        .list_balance_transactions(tenant, account.id, Some(eur), &page)
        .await
        .unwrap();
    assert!(none.items.is_empty());

    // A change made from the first version's read: refused, and nothing of it written.
    let ledger_v1 = billing_domain::credits::balance::Ledger {
        balance: billing_domain::credits::balance::Balance {
            version: 1,
            ..balance.clone()
        },
        grants: c
            .store
            .get_grants(tenant, account.id, &[first.id])
            .await
            .unwrap(),
    };
    let stale = ledger_v1
        .debit(
            100,
            "stale".into(),
            c.app.clock.now(),
            &mut billing_app::new_ulid,
        )
        .unwrap();
    let before = c.counts().await;
    assert_eq!(
        c.store
            .save_balance(tenant, &stale, &c.change().await)
            .await,
        Err(StoreError::VersionConflict { entity: "balance" })
    );
    assert_eq!(c.counts().await, before);
    assert_eq!(
        c.store
            .list_balance_transactions(tenant, account.id, None, &page)
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    // The same change from the current version commits whole.
    let current = billing_domain::credits::balance::Ledger {
        balance: balance.clone(),
        grants: c
            .store
            .get_grants(tenant, account.id, &balance.open_grants)
            .await
            .unwrap(),
    };
    let fresh = current
        .debit(
            100,
            "fix".into(),
            c.app.clock.now(),
            &mut billing_app::new_ulid,
        )
        .unwrap();
    c.store
        .save_balance(tenant, &fresh, &c.change().await)
        .await
        .unwrap();
    let after = c
        .store
        .get_balance(tenant, account.id, usd)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((after.available.get(), after.version), (2100, 3));
    // The soonest-expiring grant gave the 100.
    let spent = c
        .store
        .get_grants(tenant, account.id, &[second.id])
        .await
        .unwrap();
    assert_eq!(spent[0].remaining.get(), 600);

    let found = c
        .store
        .get_balances(
            tenant,
            &[(account.id, usd), (account.id, eur), (account.id, usd)],
        )
        .await
        .unwrap();
    assert_eq!(found, vec![after.clone()]);
    assert_eq!(
        c.store.list_balances(tenant, account.id).await.unwrap(),
        vec![after]
    );
    // Another tenant sees none of it.
    let theirs = c.other.tenant_id;
    assert_eq!(
        c.store.get_balance(theirs, account.id, usd).await.unwrap(),
        None
    );
    assert!(c
        .store
        .list_grants(theirs, account.id, &page)
        .await
        .unwrap()
        .items
        .is_empty());
}

/// A balance on a test clock waits on the clock's due index at its next expiry (never in
/// the real-time index); once the expiry is written it is no longer due, and expiring
/// again finds nothing.
async fn a_balance_waits_on_its_clock_at_its_next_expiry_until_it_expires(store: Arc<dyn Store>) {
    use billing_app::credits::GrantRequest;
    use billing_domain::kernel::currency::Currency;

    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    let clock = c
        .app
        .billing
        .create_test_clock(&c.caller, None, now)
        .await
        .unwrap();
    let account = c
        .app
        .customers
        .create_account(
            &c.caller,
            serde_json::from_value(serde_json::json!({
                "email": "expiry@example.com", "currency": "usd", "test_clock": clock.id
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let usd = Currency::from_code("usd").unwrap();
    let expires = now + SignedDuration::from_hours(1);
    for (amount, expires_at) in [(800, Some(expires)), (200, None)] {
        let grant = GrantRequest {
            account: account.id,
            amount,
            currency: usd,
            reason: "trial credit".into(),
            note: None,
            expires_at,
        };
        c.app.credits.grant_credit(&c.caller, grant).await.unwrap();
    }
    let job = DueKind::Billing(BillingJob::CreditExpiry {
        tenant,
        account: account.id,
        currency: usd,
    });
    let due = c
        .store
        .clock_due_items(tenant, clock.id, expires, 10)
        .await
        .unwrap();
    assert_eq!(
        due.iter()
            .map(|d| (d.kind.clone(), d.due_at))
            .collect::<Vec<_>>(),
        vec![(job.clone(), expires)]
    );
    let early = c
        .store
        .clock_due_items(
            tenant,
            clock.id,
            expires - SignedDuration::from_millis(1),
            10,
        )
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");
    let real_time = c
        .store
        .due_items(expires + SignedDuration::from_hours(1), 1000)
        .await
        .unwrap();
    assert!(!real_time.iter().any(|d| d.kind == job));

    assert!(c
        .app
        .credits
        .expire_credits(tenant, account.id, usd, expires)
        .await
        .unwrap());
    let balance = c
        .store
        .get_balance(tenant, account.id, usd)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((balance.available.get(), balance.next_expiry), (200, None));
    let far = expires + SignedDuration::from_hours(24 * 365);
    let due = c
        .store
        .clock_due_items(tenant, clock.id, far, 10)
        .await
        .unwrap();
    assert!(due.is_empty(), "{due:?}");
    assert!(!c
        .app
        .credits
        .expire_credits(tenant, account.id, usd, far)
        .await
        .unwrap());
}

/// A one-line draft of `amount` for `account`: what a wallet consumes.
fn wallet_draft(
    account: billing_domain::kernel::ids::AccountId,
    amount: i64,
    now: Timestamp,
) -> billing_domain::billing::invoice::Invoice {
    use billing_domain::billing::invoice::{DraftFacts, Invoice};
    use billing_domain::billing::invoice_draft::{
        build_invoice, InvoiceInput, LineInput, LineSource,
    };
    use billing_domain::billing::subscription::{BillingReason, CollectionMethod};
    let built = build_invoice(&InvoiceInput {
        currency: billing_domain::kernel::currency::Currency::from_code("usd").unwrap(),
        lines: vec![LineInput {
            id: None,
            description: "usage".into(),
            period: None,
            source: LineSource::Fixed {
                amount,
                quantity: None,
            },
            tax_rates: Vec::new(),
            tax_behavior: None,
            discountable: true,
        }],
        discounts: Vec::new(),
        credits: Vec::new(),
        minimum_commitment: None,
    })
    .unwrap();
    Invoice::draft(
        DraftFacts {
            id: billing_domain::kernel::ids::InvoiceId::from_ulid(billing_app::new_ulid()),
            account_id: account,
            subscription_id: None,
            test_clock: None,
            billing_reason: BillingReason::Manual,
            period: None,
            collection_method: CollectionMethod::ChargeAutomatically,
        },
        built,
        now,
    )
}

/// A wallet of `credits` USD credits for `account` (expiring at `expires_at`), created
/// through the use case.
async fn wallet_of(
    c: &Contract,
    account: &Account,
    credits: &str,
    expires_at: Option<Timestamp>,
) -> billing_domain::wallets::wallet::Wallet {
    let dec = |s: &str| billing_domain::kernel::decimal::parse_decimal(s, 0).unwrap();
    c.app
        .wallets
        .create_wallet(
            &c.caller,
            billing_app::wallets::CreateWallet {
                account: account.id,
                currency: None,
                name: None,
                rate_amount: dec("1"),
                granted_credits: dec(credits),
                paid_credits: dec("0"),
                expires_at,
                rules: Vec::new(),
            },
        )
        .await
        .unwrap()
}

/// Wallets: an invoice's consumption commits with the invoice, over the wallet's version;
/// a second invoice consuming from the same read is refused whole (neither it nor its
/// consumption is written), and from a fresh read it takes only what is left: the balance
/// never goes below zero. Wallets, their holders and transactions are the tenant's.
async fn a_wallet_is_consumed_over_its_version_with_its_invoice_never_below_zero(
    store: Arc<dyn Store>,
) {
    use billing_domain::wallets::wallet::WalletTransactionKind;

    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let account = c.account("wallet@example.com", None).await;
    let wallet = wallet_of(&c, &account, "25", None).await;
    let now = c.app.clock.now();
    let read = c
        .store
        .get_wallet(tenant, wallet.id)
        .await
        .unwrap()
        .unwrap();
    let with_wallet = |(invoice, change), record| InvoiceWrite {
        invoice,
        number: None,
        payment: None,
        pending: None,
        balance: None,
        wallets: Some(Box::new(WalletSettlement {
            changes: vec![change],
            record,
        })),
        account_discounts: None,
    };
    let first = read
        .consume(
            &wallet_draft(account.id, 2000, now),
            now,
            &mut billing_app::new_ulid,
        )
        .unwrap();
    let first = with_wallet(first, c.change().await);
    c.store
        .insert_invoice(tenant, &first, &c.change().await)
        .await
        .unwrap();

    // The same read consumed again by another invoice: refused, nothing of it written.
    let second = wallet_draft(account.id, 2000, now);
    let stale = read
        .consume(&second, now, &mut billing_app::new_ulid)
        .unwrap();
    assert_eq!(
        stale.0.wallet_total.get(),
        2000,
        "the stale read saw 25 credits"
    );
    let before = c.counts().await;
    assert_eq!(
        c.store
            .insert_invoice(
                tenant,
                &with_wallet(stale, c.change().await),
                &c.change().await
            )
            .await,
        Err(StoreError::VersionConflict { entity: "wallet" })
    );
    assert_eq!(c.counts().await, before);
    assert_eq!(c.store.get_invoice(tenant, second.id).await.unwrap(), None);

    // From a fresh read it takes the $5 left; a third invoice finds nothing to take.
    let fresh = c
        .store
        .get_wallet(tenant, wallet.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((fresh.balance.get(), fresh.version), (500, 2));
    let taken = fresh
        .consume(&second, now, &mut billing_app::new_ulid)
        .unwrap();
    assert_eq!(
        (taken.0.wallet_total.get(), taken.0.amount_due.get()),
        (500, 1500)
    );
    c.store
        .insert_invoice(
            tenant,
            &with_wallet(taken, c.change().await),
            &c.change().await,
        )
        .await
        .unwrap();
    let empty = c
        .store
        .get_wallet(tenant, wallet.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (empty.balance.get(), empty.consumed.get(), empty.version),
        (0, 2500, 3)
    );
    assert!(empty
        .consume(
            &wallet_draft(account.id, 100, now),
            now,
            &mut billing_app::new_ulid
        )
        .is_none());
    let txs = c
        .store
        .list_wallet_transactions(tenant, wallet.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(
        txs.iter()
            .map(|t| (t.kind, t.amount.get()))
            .collect::<Vec<_>>(),
        vec![
            (WalletTransactionKind::Consumed, -500),
            (WalletTransactionKind::Consumed, -2000),
            (WalletTransactionKind::Granted, 2500),
        ]
    );
    assert_eq!(
        c.store
            .get_invoice(tenant, second.id)
            .await
            .unwrap()
            .map(|i| i.wallet_total.get()),
        Some(500)
    );

    // Listed for its account and tenant only.
    let usd = billing_domain::kernel::currency::Currency::from_code("usd").unwrap();
    let eur = billing_domain::kernel::currency::Currency::from_code("eur").unwrap();
    let active = c.store.active_wallets(tenant, account.id).await.unwrap();
    assert_eq!(
        active.iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![wallet.id]
    );
    assert_eq!(
        c.store
            .wallet_holders(tenant, &[(account.id, usd), (account.id, eur)])
            .await
            .unwrap(),
        vec![(account.id, usd)]
    );
    let theirs = c.other.tenant_id;
    assert_eq!(c.store.get_wallet(theirs, wallet.id).await.unwrap(), None);
    assert!(c
        .store
        .wallet_holders(theirs, &[(account.id, usd)])
        .await
        .unwrap()
        .is_empty());
    assert!(c
        .store
        .list_wallet_transactions(theirs, wallet.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
}

/// A paid top-up settles once: two settlements of its purchase over one read, the second
/// is refused and writes nothing; the purchase is one transaction, settled, and a fresh
/// read has nothing left to settle.
async fn a_top_up_purchase_settles_once(store: Arc<dyn Store>) {
    use billing_domain::kernel::ids::{InvoiceId, WalletId};
    use billing_domain::wallets::wallet::{
        NewWallet, Purchase, Wallet, WalletTransactionKind, WalletTransactionStatus,
    };

    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let account = c.account("top-up@example.com", None).await;
    let now = c.app.clock.now();
    let sold = InvoiceId::from_ulid(billing_app::new_ulid());
    let dec = |s: &str| billing_domain::kernel::decimal::parse_decimal(s, 0).unwrap();
    let opened = Wallet::open(
        NewWallet {
            id: WalletId::from_ulid(billing_app::new_ulid()),
            account_id: account.id,
            currency: account.currency,
            name: None,
            rate_amount: dec("1"),
            granted_credits: dec("0"),
            paid: Some(Purchase {
                invoice_id: sold,
                credits: dec("50"),
            }),
            expires_at: None,
            rules: Vec::new(),
            test_clock: None,
        },
        now,
        &mut billing_app::new_ulid,
    )
    .unwrap();
    let id = opened.wallet.id;
    c.store
        .save_wallet(tenant, &opened, &c.change().await)
        .await
        .unwrap();
    // Created once: the same creation again is refused.
    assert_eq!(
        c.store
            .save_wallet(tenant, &opened, &c.change().await)
            .await,
        Err(StoreError::VersionConflict { entity: "wallet" })
    );
    let read = c.store.get_wallet(tenant, id).await.unwrap().unwrap();
    assert_eq!((read.balance.get(), read.pending_top_ups.len()), (0, 1));
    let settle = || {
        read.settle_purchase(sold, now, &mut billing_app::new_ulid)
            .unwrap()
    };
    let (once, twice) = (settle(), settle());
    c.store
        .save_wallet(tenant, &once, &c.change().await)
        .await
        .unwrap();
    let before = c.counts().await;
    assert_eq!(
        c.store.save_wallet(tenant, &twice, &c.change().await).await,
        Err(StoreError::VersionConflict { entity: "wallet" })
    );
    assert_eq!(c.counts().await, before);
    let arrived = c.store.get_wallet(tenant, id).await.unwrap().unwrap();
    assert_eq!(
        (
            arrived.balance.get(),
            arrived.pending_top_ups.len(),
            arrived.version
        ),
        (5000, 0, 2)
    );
    assert!(arrived
        .settle_purchase(sold, now, &mut billing_app::new_ulid)
        .is_none());
    let txs = c
        .store
        .list_wallet_transactions(tenant, id, &PageRequest::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(txs.len(), 1, "{txs:?}");
    assert_eq!(
        (
            txs[0].kind,
            txs[0].status,
            txs[0].amount.get(),
            txs[0].ending_balance.map(|b| b.get())
        ),
        (
            WalletTransactionKind::Purchased,
            WalletTransactionStatus::Settled,
            5000,
            Some(5000)
        )
    );
    assert_eq!(txs[0].invoice_id, Some(sold));
}

/// A wallet on a test clock waits on the clock's due index at its expiry (never in the
/// real-time index); it expires once: a second expiry over the same read is refused and
/// writes nothing, the terminated wallet leaves the due index, and its job run again
/// changes nothing.
async fn a_wallet_waits_on_its_clock_until_it_expires_once(store: Arc<dyn Store>) {
    use billing_domain::wallets::wallet::{WalletStatus, WalletTransactionKind};

    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    let clock = c
        .app
        .billing
        .create_test_clock(&c.caller, None, now)
        .await
        .unwrap();
    let account = c
        .app
        .customers
        .create_account(
            &c.caller,
            serde_json::from_value(serde_json::json!({
                "email": "expiring-wallet@example.com", "currency": "usd", "test_clock": clock.id
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let expires = now + SignedDuration::from_hours(1);
    let wallet = wallet_of(&c, &account, "10", Some(expires)).await;
    let job = DueKind::Billing(BillingJob::Wallet {
        tenant,
        wallet: wallet.id,
    });
    let due = c
        .store
        .clock_due_items(tenant, clock.id, expires, 10)
        .await
        .unwrap();
    assert_eq!(
        due.iter()
            .map(|d| (d.kind.clone(), d.due_at))
            .collect::<Vec<_>>(),
        vec![(job.clone(), expires)]
    );
    let early = c
        .store
        .clock_due_items(
            tenant,
            clock.id,
            expires - SignedDuration::from_millis(1),
            10,
        )
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");
    let real_time = c
        .store
        .due_items(expires + SignedDuration::from_hours(1), 1000)
        .await
        .unwrap();
    assert!(!real_time.iter().any(|d| d.kind == job));

    let read = c
        .store
        .get_wallet(tenant, wallet.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        read.expire(now, &mut billing_app::new_ulid).is_none(),
        "not yet"
    );
    let expire = || read.expire(expires, &mut billing_app::new_ulid).unwrap();
    let (once, twice) = (expire(), expire());
    c.store
        .save_wallet(tenant, &once, &c.change().await)
        .await
        .unwrap();
    let before = c.counts().await;
    assert_eq!(
        c.store.save_wallet(tenant, &twice, &c.change().await).await,
        Err(StoreError::VersionConflict { entity: "wallet" })
    );
    assert_eq!(c.counts().await, before);
    let ended = c
        .store
        .get_wallet(tenant, wallet.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ended.status, ended.balance.get(), ended.version),
        (WalletStatus::Terminated, 0, 2)
    );
    let far = expires + SignedDuration::from_hours(24 * 365);
    let due = c
        .store
        .clock_due_items(tenant, clock.id, far, 10)
        .await
        .unwrap();
    assert!(due.is_empty(), "{due:?}");
    assert!(c
        .store
        .active_wallets(tenant, account.id)
        .await
        .unwrap()
        .is_empty());
    // The job run late (a redelivery) finds nothing to do.
    c.app
        .credits
        .run_wallet_job(tenant, wallet.id, far)
        .await
        .unwrap();
    let still = c
        .store
        .get_wallet(tenant, wallet.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.version, 2);
    let expired: Vec<_> = c
        .store
        .list_wallet_transactions(tenant, wallet.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|t| t.kind == WalletTransactionKind::Expired)
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].amount.get(), -1000);
}

/// An account's discounts are written over the version they were read at, whether alone
/// (a removal), with a redemption's counter, or with the invoice that takes a `once` one:
/// a second write over the same read is refused and writes nothing, its invoice included.
async fn account_discounts_are_written_over_their_version_with_their_invoice(
    store: Arc<dyn Store>,
) {
    use billing_domain::coupons::account::AccountDiscounts;
    use billing_domain::kernel::currency::Currency;
    use billing_domain::kernel::ids::DiscountId;

    let c = Contract::on(store).await;
    let tenant = c.caller.tenant_id;
    let account = c.account("discounts@example.com", None).await;
    let now = c.app.clock.now();
    let coupon = c
        .app
        .coupons
        .create_coupon(
            &c.caller,
            serde_json::from_value(
                serde_json::json!({"code": "ONCE", "amount_off": {"usd": 100}, "duration": "once"}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let usd = Currency::from_code("usd").unwrap();
    let discount = coupon
        .redeem_on_account(
            DiscountId::from_ulid(billing_app::new_ulid()),
            usd,
            &jiff::tz::TimeZone::UTC,
            now,
        )
        .unwrap();
    let first = AccountDiscounts::none(account.id, usd, now).changed(now, |d| d.push(discount));
    c.store
        .redeem_coupon(
            tenant,
            &coupon,
            RedemptionTarget::Account(&first),
            &c.change().await,
        )
        .await
        .unwrap();
    let before = c.counts().await;
    assert_eq!(
        c.store
            .redeem_coupon(
                tenant,
                &coupon,
                RedemptionTarget::Account(&first),
                &c.change().await
            )
            .await,
        Err(StoreError::VersionConflict {
            entity: ACCOUNT_DISCOUNTS
        })
    );
    assert_eq!(c.counts().await, before);
    let stored = c
        .app
        .coupons
        .get_coupon(&c.caller, coupon.id)
        .await
        .unwrap();
    assert_eq!(stored.times_redeemed, 1);
    assert_eq!(
        c.store
            .get_account_discounts(tenant, account.id)
            .await
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        c.store
            .get_account_discounts(c.other.tenant_id, account.id)
            .await
            .unwrap(),
        None
    );

    // Two invoices take the `once` discount over the same read: the second is refused whole.
    let taken = first.changed(now, Vec::clear);
    let with_discounts = |invoice| InvoiceWrite {
        invoice,
        number: None,
        payment: None,
        pending: None,
        balance: None,
        wallets: None,
        account_discounts: Some(Box::new(taken.clone())),
    };
    let won = wallet_draft(account.id, 1000, now);
    c.store
        .insert_invoice(tenant, &with_discounts(won), &c.change().await)
        .await
        .unwrap();
    let lost = wallet_draft(account.id, 1000, now);
    let before = c.counts().await;
    assert_eq!(
        c.store
            .insert_invoice(tenant, &with_discounts(lost.clone()), &c.change().await)
            .await,
        Err(StoreError::VersionConflict {
            entity: ACCOUNT_DISCOUNTS
        })
    );
    assert_eq!(c.counts().await, before);
    assert_eq!(c.store.get_invoice(tenant, lost.id).await.unwrap(), None);

    // A removal over the stale first read is refused too; over the fresh one it is stored.
    assert_eq!(
        c.store
            .save_account_discounts(tenant, &taken, &c.change().await)
            .await,
        Err(StoreError::VersionConflict {
            entity: ACCOUNT_DISCOUNTS
        })
    );
    let stored = c
        .store
        .get_account_discounts(tenant, account.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.version, stored.discounts.len()), (2, 0));
}

/// The store's own condition, whatever the caller read: two redemptions over one read of
/// a coupon with one slot left, the second is refused and writes nothing (its
/// subscription keeps its version and has no discount).
async fn a_redemption_over_a_stale_read_of_the_last_slot_writes_nothing(store: Arc<dyn Store>) {
    use billing_app::kernel::{change, to_json, ChangeSpec};
    use billing_app::ports::{RedemptionTarget, StoreError};
    use billing_domain::events::record::AuditAction;
    use billing_domain::kernel::ids::DiscountId;

    let app = billing_tests::app(store.clone());
    let caller = billing_tests::admin(&app, "Stale Co").await;
    let coupon = app
        .coupons
        .create_coupon(
            &caller,
            serde_json::from_value(
                serde_json::json!({"code": "LAST", "amount_off": {"usd": 100},
                "duration": "once", "max_redemptions": 1}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let now = jiff::Timestamp::now();
    let mut outcomes = Vec::new();
    for i in 0..2 {
        let sub = billing_tests::subscribe(
            &app,
            &caller,
            serde_json::json!({"email": format!("s{i}@stale.test"), "currency": "usd"}),
            "month",
            2000 + i,
        )
        .await;
        let mut next = sub.clone();
        next.discounts.push(
            coupon
                .redeem(
                    DiscountId::from_ulid(billing_app::new_ulid()),
                    sub.terms.plan_id,
                    sub.currency,
                    now,
                )
                .unwrap(),
        );
        next.version += 1;
        let after = to_json(&next).unwrap();
        let record = change(
            &caller,
            now,
            ChangeSpec {
                entity_type: "subscription",
                entity_id: sub.id.to_string(),
                action: AuditAction::Update,
                event_type: None,
                before: None,
                after: &after,
            },
        );
        let outcome = store
            .redeem_coupon(
                caller.tenant_id,
                &coupon,
                RedemptionTarget::Subscription {
                    previous: &sub,
                    next: &next,
                },
                &record,
            )
            .await;
        let stored = app.billing.get_subscription(&caller, sub.id).await.unwrap();
        outcomes.push((outcome, stored.version, stored.discounts.len()));
    }
    assert_eq!(outcomes[0], (Ok(()), 2, 1));
    assert_eq!(
        outcomes[1],
        (Err(StoreError::VersionConflict { entity: "coupon" }), 1, 0)
    );
    let stored = app.coupons.get_coupon(&caller, coupon.id).await.unwrap();
    assert_eq!(stored.times_redeemed, 1);
    // A patch over a count that moved since it was read is refused too.
    let renamed = app
        .coupons
        .update_coupon(
            &caller,
            coupon.id,
            serde_json::from_value(serde_json::json!({"name": "Last one"})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!((renamed.times_redeemed, renamed.version), (1, 2));
}

/// Tax settings and rates belong to their tenant; a batch of rates is created whole or not
/// at all (one already there refuses all of them); a rate is ended over the version it was
/// read at, together with its successor, or nothing is written.
async fn tax_settings_and_rates_are_the_tenants_and_written_whole_or_not_at_all(
    store: Arc<dyn Store>,
) {
    use billing_domain::kernel::ids::TaxRateId;
    use billing_domain::tax::rates::{eu_standard_vat, TaxRateChange, TaxSettings};

    let c = Contract::on(store).await;
    let (tenant, other) = (c.caller.tenant_id, c.other.tenant_id);
    assert_eq!(c.store.tax_settings(tenant).await.unwrap(), None);
    let settings = TaxSettings {
        country: "DE".into(),
        region: None,
        registrations: vec![],
        prices_include_tax: true,
        tax_ids: vec!["DE136695976".into()],
        verify_vat_ids_online: true,
    };
    c.store
        .set_tax_settings(tenant, &settings, &c.change().await)
        .await
        .unwrap();
    assert_eq!(c.store.tax_settings(tenant).await.unwrap(), Some(settings));
    assert_eq!(c.store.tax_settings(other).await.unwrap(), None);

    let now: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
    let rates = eu_standard_vat(now);
    let all = PageRequest::first(100);
    c.store
        .insert_tax_rates(tenant, &rates[..2], &c.change().await)
        .await
        .unwrap();
    let before = c.counts().await;
    let refused = c
        .store
        .insert_tax_rates(tenant, &rates[1..4], &c.change().await)
        .await;
    assert_eq!(
        refused,
        Err(StoreError::AlreadyExists { entity: "tax rate" })
    );
    assert_eq!(c.counts().await, before, "no audit record, no event");
    let listed = c.store.list_tax_rates(tenant, &all).await.unwrap().items;
    let mut first_two = rates[..2].to_vec();
    first_two.sort_by_key(|r| r.id.to_string());
    assert_eq!(
        listed, first_two,
        "oldest first, nothing of the refused batch"
    );
    assert!(c
        .store
        .list_tax_rates(other, &all)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        c.store.get_tax_rate(other, rates[0].id).await.unwrap(),
        None
    );
    // The rates of another tenant may have the same (fixed) ids.
    c.store
        .insert_tax_rates(other, &rates[..2], &c.change().await)
        .await
        .unwrap();

    let current = listed.iter().find(|r| r.effective_to.is_none()).unwrap();
    let stored = c
        .store
        .get_tax_rate(tenant, current.id)
        .await
        .unwrap()
        .unwrap();
    let change: TaxRateChange = serde_json::from_value(
        serde_json::json!({"percentage": "16", "effective_from": "2027-01-01T00:00:00Z"}),
    )
    .unwrap();
    let (next, ended) = stored
        .change(
            TaxRateId::from_ulid(billing_app::new_ulid()),
            change.clone(),
            now,
        )
        .unwrap();
    c.store
        .replace_tax_rate(tenant, &ended, &next, &c.change().await)
        .await
        .unwrap();
    // A second change read before the first was written: refused, its successor not written.
    let (late, stale) = stored
        .change(TaxRateId::from_ulid(billing_app::new_ulid()), change, now)
        .unwrap();
    let before = c.counts().await;
    assert_eq!(
        c.store
            .replace_tax_rate(tenant, &stale, &late, &c.change().await)
            .await,
        Err(StoreError::VersionConflict { entity: "tax rate" })
    );
    assert_eq!(c.counts().await, before);
    assert_eq!(c.store.get_tax_rate(tenant, late.id).await.unwrap(), None);
    assert_eq!(
        c.store.get_tax_rate(tenant, stored.id).await.unwrap(),
        Some(ended)
    );
    assert_eq!(
        c.store.get_tax_rate(tenant, next.id).await.unwrap(),
        Some(next)
    );
}

billing_tests::on_both_stores!(
    a_create_writes_the_item_its_audit_record_and_its_event_together,
    an_event_stays_in_the_outbox_until_it_is_marked_published,
    an_identity_provider_moves_its_issuer_trust_with_it,
    creating_the_same_item_twice_is_a_conflict,
    a_transaction_with_one_failing_condition_writes_nothing,
    unique_values_and_items_belong_to_their_tenant,
    a_stale_version_is_a_conflict_and_writes_nothing,
    moving_a_unique_value_frees_the_old_one,
    lists_page_by_cursor_filter_and_leave_deleted_items_out,
    a_filtered_list_examines_at_most_its_budget_and_its_cursors_find_every_match,
    tenant_wide_lists_keep_their_order_and_cursors_across_partitions,
    the_audit_trail_of_an_entity_pages_newest_first,
    revoking_an_api_key_twice_is_a_conflict,
    rate_counts_never_pass_their_limit,
    concurrent_rate_claims_share_the_limit,
    a_key_use_is_written_only_over_a_stale_one,
    rolling_a_revoked_key_writes_nothing,
    idempotency_keys_are_claimed_once_per_tenant_until_released_or_expired,
    an_idempotency_claim_whose_lease_ran_out_is_taken_over_once,
    a_reachable_store_is_ready,
    metric_codes_are_unique_and_found_by_code,
    plan_codes_are_unique,
    a_stale_plan_write_is_refused_without_writing_its_version,
    a_deactivated_plan_leaves_the_active_list,
    payment_profiles_are_versioned_consecutively_from_one,
    a_pending_payment_is_created_once_and_waits_in_the_due_index,
    a_stale_collection_write_changes_nothing_not_even_its_credit_note,
    a_collection_write_commits_its_payment_credit_note_refs_and_gateway_event,
    a_gateway_event_is_applied_once_per_tenant,
    payments_list_by_account_and_status_and_credit_notes_by_account,
    a_payment_on_a_test_clock_waits_on_the_clock_not_in_real_time,
    payment_settings_are_the_defaults_until_set_per_tenant,
    the_dunning_policy_is_the_tenants,
    a_dunning_case_is_created_once_and_belongs_to_its_tenant,
    a_dunning_case_is_due_at_its_next_step,
    a_dunning_step_writes_its_case_status_and_notice_together_or_not_at_all,
    a_notice_waits_out_its_claim_and_is_claimed_over_its_version,
    a_dunning_case_on_a_test_clock_waits_on_the_clock_not_in_real_time,
    usage_events_and_distinct_values_are_stored_once_per_tenant,
    a_stored_event_a_moved_rollup_or_a_seen_value_refuses_the_whole_write,
    rollups_are_listed_by_period_range,
    a_quota_snapshot_and_its_events_commit_with_the_usage,
    late_usage_waits_in_the_due_index_until_it_is_billed,
    usage_units_span_transactions_and_a_failure_reports_what_was_written,
    a_step_and_the_rollups_it_bills_commit_together_or_not_at_all,
    a_due_pass_reads_each_item_once_page_by_page_and_saves_where_it_stands,
    a_balance_change_commits_over_its_version_or_writes_nothing,
    a_balance_waits_on_its_clock_at_its_next_expiry_until_it_expires,
    a_redemption_over_a_stale_read_of_the_last_slot_writes_nothing,
    account_discounts_are_written_over_their_version_with_their_invoice,
    a_wallet_is_consumed_over_its_version_with_its_invoice_never_below_zero,
    a_top_up_purchase_settles_once,
    a_wallet_waits_on_its_clock_until_it_expires_once,
    tax_settings_and_rates_are_the_tenants_and_written_whole_or_not_at_all,
    branding_is_written_over_the_version_it_was_read_at,
);
