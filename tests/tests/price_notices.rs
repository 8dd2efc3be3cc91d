//! Issue 18, the price migration notice, over HTTP on a test clock, on both stores: a
//! version published with `migrate_existing` and `migration_notice_days` emails each
//! subscriber that many days before the first renewal at the new prices
//! (`subscription.price_change_notice` and a `price_change` email, once each, also when
//! the work is delivered again), and a subscription migrates only at a renewal at least
//! that long after its email. The API runs without a notifier, as in AWS; a second app
//! over the same store plays the payment worker, which sends what the sweep hands it.

use std::sync::Arc;

use billing_app::billing::SimulationJobs;
use billing_app::ports::{BillingJob, Notification};
use billing_app::App;
use billing_domain::kernel::ids::SubscriptionId;
use billing_memory::{MemoryBillingQueue, MemoryNotifier};
use billing_tests::api::Api;
use billing_tests::send_due_notices;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A $50 a month plan on a clock at 1 Jan 2027 with one subscriber: the plan, the
/// clock and the subscription.
async fn fifty_a_month(api: &Api) -> (String, String, String) {
    let plan = api
        .created(
            "/v1/plans",
            json!({"code": "basic", "name": "Basic", "interval": {"unit": "month"},
                   "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 5000}}}}}),
        )
        .await;
    let plan = plan["id"].as_str().unwrap().to_owned();
    let (clock, account) = api.clock_account("2027-01-01T00:00:00Z").await;
    let sub = api
        .created(
            "/v1/subscriptions",
            json!({"account": account, "plan": plan}),
        )
        .await;
    (plan, clock, sub["id"].as_str().unwrap().to_owned())
}

/// Publishes $60 with `notice_days` of notice, moving existing subscribers.
async fn sixty_with_notice(api: &Api, plan: &str, notice_days: u32) -> Value {
    api.created(
        &format!("/v1/plans/{plan}/versions"),
        json!({"migrate_existing": true, "migration_notice_days": notice_days,
               "charges": {"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 6000}}}}}),
    )
    .await
}

async fn notices(api: &Api, sub: &str) -> Vec<Value> {
    api.list(&format!(
        "/v1/events?type=subscription.price_change_notice&resource={sub}"
    ))
    .await
}

fn price_change_emails(notifier: &MemoryNotifier) -> Vec<Notification> {
    notifier
        .sent()
        .into_iter()
        .filter(|n| n.key.contains("/email/price_change-"))
        .collect()
}

async fn totals(api: &Api, sub: &str) -> Vec<Value> {
    let mut invoices = api.invoices(sub).await;
    invoices.sort_by_key(|i| i["period"]["start"].as_str().map(str::to_owned));
    invoices.iter().map(|i| i["total"].clone()).collect()
}

/// $50 → $60 with 7 days' notice, published on 10 Jan, mid-period: nothing is said until
/// 25 Jan, 7 days before the renewal on 1 Feb; then the event and the email, once, even
/// when the subscription's job, the sweep and the email sending run again; the renewal
/// bills $60.
async fn the_notice_goes_out_seven_days_before_the_renewal_at_the_new_price(app: App) {
    let notifier = Arc::new(MemoryNotifier::default());
    let worker = app.clone().with_notifier(notifier.clone());
    let (api, tenant) = Api::start(app, "Notice Co").await;
    let (plan, clock, sub) = fifty_a_month(&api).await;
    api.advance_clock(&clock, "2027-01-10T00:00:00Z").await;
    let v2 = sixty_with_notice(&api, &plan, 7).await;
    assert_eq!(
        (v2["number"].clone(), v2["migration_notice_days"].clone()),
        (json!(2), json!(7))
    );
    let armed = api.get(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(
        armed["price_notice"]["send_at"], "2027-01-25T00:00:00Z",
        "{armed}"
    );
    let preview = api
        .post("/v1/invoices/preview", json!({"subscription": sub}))
        .await;
    assert_eq!(preview["invoice"]["total"], 6000, "{preview}");

    api.advance_clock(&clock, "2027-01-24T23:00:00Z").await;
    send_due_notices(&worker).await;
    assert!(notices(&api, &sub).await.is_empty());
    assert!(price_change_emails(&notifier).is_empty());

    api.advance_clock(&clock, "2027-01-25T01:00:00Z").await;
    send_due_notices(&worker).await;
    let told = notices(&api, &sub).await;
    assert_eq!(told.len(), 1, "{told:?}");
    let notice = &told[0]["data"]["price_notice"];
    assert_eq!(notice["sent_at"], "2027-01-25T00:00:00Z", "{notice}");
    assert_eq!(notice["effective_at"], "2027-02-01T00:00:00Z");
    assert_eq!(
        (
            notice["old_amount"]["amount"].clone(),
            notice["new_amount"]["amount"].clone()
        ),
        (json!(5000), json!(6000)),
        "{notice}"
    );
    let emails = price_change_emails(&notifier);
    assert_eq!(emails.len(), 1, "{:#?}", notifier.sent());
    assert!(
        emails[0].subject.contains("changes on Feb 1, 2027"),
        "{}",
        emails[0].subject
    );
    assert!(emails[0].body.contains("$60.00"), "{}", emails[0].body);
    assert!(emails[0].body.contains("$50.00"), "{}", emails[0].body);

    // Everything again: the subscription's job redelivered, the sweep, the sending.
    let id = SubscriptionId::parse(&sub, "id").unwrap();
    let job = BillingJob::Subscription {
        tenant: tenant.id,
        id,
    };
    for result in worker
        .billing
        .run_billing_jobs(tenant.id, &[job.clone(), job])
        .await
    {
        result.unwrap();
    }
    billing_tests::sweep_and_bill(&worker).await;
    send_due_notices(&worker).await;
    api.advance_clock(&clock, "2027-01-26T00:00:00Z").await;
    send_due_notices(&worker).await;
    assert_eq!(notices(&api, &sub).await.len(), 1);
    assert_eq!(price_change_emails(&notifier).len(), 1);

    api.advance_clock(&clock, "2027-02-01T01:00:00Z").await;
    assert_eq!(totals(&api, &sub).await, [json!(5000), json!(6000)]);
    let moved = api.get(&format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(moved["terms"]["plan_version"], 2);
}

/// Published on 29 Jan, 3 days before the renewal, with 7 days' notice: the notice goes
/// out at once and announces 1 Mar; the renewal on 1 Feb bills $50, the one on 1 Mar $60.
/// With the tenant's `price_change` switch off the email is not sent (the event and the
/// rule stand). A notice period beyond 90 days, or without `migrate_existing`, is refused.
async fn a_version_three_days_before_the_renewal_migrates_a_period_later(app: App) {
    let notifier = Arc::new(MemoryNotifier::default());
    let worker = app.clone().with_notifier(notifier.clone());
    let (api, _) = Api::start(app, "Late Notice Co").await;
    let (plan, clock, sub) = fifty_a_month(&api).await;
    for (body, hint) in [
        (
            json!({"migrate_existing": true, "migration_notice_days": 91}),
            "0 to 90",
        ),
        (json!({"migration_notice_days": 7}), "migrate_existing"),
    ] {
        let mut body = body;
        body["charges"] =
            json!({"recurring_fee": {"prices": {"usd": {"model": "flat_fee", "amount": 6000}}}});
        let refused = api
            .send(
                Method::POST,
                &format!("/v1/plans/{plan}/versions"),
                Some(&body),
            )
            .await;
        let problem = billing_tests::api::problem(
            refused,
            StatusCode::BAD_REQUEST,
            "invalid_migration_notice",
        )
        .await;
        assert_eq!(problem["param"], "migration_notice_days");
        assert!(
            problem["detail"].as_str().unwrap().contains(hint),
            "{problem}"
        );
    }
    let settings = api
        .patch("/v1/settings/emails", json!({"price_change": false}))
        .await;
    assert_eq!(settings["price_change"], false);

    api.advance_clock(&clock, "2027-01-29T00:00:00Z").await;
    sixty_with_notice(&api, &plan, 7).await;
    api.advance_clock(&clock, "2027-01-29T01:00:00Z").await;
    send_due_notices(&worker).await;
    let told = notices(&api, &sub).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        told[0]["data"]["price_notice"]["effective_at"],
        "2027-03-01T00:00:00Z"
    );
    assert!(price_change_emails(&notifier).is_empty(), "switched off");

    api.advance_clock(&clock, "2027-02-01T01:00:00Z").await;
    assert_eq!(totals(&api, &sub).await, [json!(5000), json!(5000)]);
    api.advance_clock(&clock, "2027-03-01T01:00:00Z").await;
    assert_eq!(
        totals(&api, &sub).await,
        [json!(5000), json!(5000), json!(6000)]
    );
    assert_eq!(notices(&api, &sub).await.len(), 1);
}

/// A plan with more subscriptions than a request arms (two, here): the request arms the
/// first two and queues a `price_notices` job; the jobs (each delivered twice) arm the
/// rest, each once; every subscriber is told once, on the same day.
async fn a_big_plan_is_armed_by_jobs_on_the_billing_queue(app: App) {
    let (api, tenant) = Api::start(app.clone(), "Many Co").await;
    let (plan, clock, first) = fifty_a_month(&api).await;
    let mut subs = vec![first];
    for n in 0..4 {
        let account = api
            .post(
                "/v1/accounts",
                json!({"email": format!("c{n}@acme.test"), "currency": "usd", "test_clock": clock}),
            )
            .await;
        let sub = api
            .created(
                "/v1/subscriptions",
                json!({"account": account["id"], "plan": plan}),
            )
            .await;
        subs.push(sub["id"].as_str().unwrap().to_owned());
    }
    api.advance_clock(&clock, "2027-01-10T00:00:00Z").await;
    let queue = Arc::new(MemoryBillingQueue::default());
    let jobs = app.clone().with_simulation_jobs(SimulationJobs {
        queue: Some(queue.clone()),
        per_request: 2,
    });
    let served = Api::new(billing_tests::serve(jobs.clone()).await, api.key().unwrap());
    sixty_with_notice(&served, &plan, 7).await;
    let armed = |subs: Vec<Value>| {
        subs.iter()
            .filter(|s| s["price_notice"]["send_at"] == "2027-01-25T00:00:00Z")
            .count()
    };
    let mut stored = Vec::new();
    for sub in &subs {
        stored.push(api.get(&format!("/v1/subscriptions/{sub}")).await);
    }
    assert_eq!(armed(stored), 2, "the request arms one chunk");
    let mut delivered = 0;
    loop {
        let queued = queue.take();
        if queued.is_empty() {
            break;
        }
        for job in queued {
            assert!(matches!(job, BillingJob::PriceNotices { .. }), "{job:?}");
            for _ in 0..2 {
                for result in jobs
                    .billing
                    .run_billing_jobs(tenant.id, std::slice::from_ref(&job))
                    .await
                {
                    result.unwrap();
                }
            }
            delivered += 1;
        }
    }
    assert!(delivered >= 2, "one job a chunk: {delivered}");
    let mut stored = Vec::new();
    for sub in &subs {
        stored.push(api.get(&format!("/v1/subscriptions/{sub}")).await);
    }
    assert_eq!(armed(stored), 5);
    api.advance_clock(&clock, "2027-01-25T01:00:00Z").await;
    for sub in &subs {
        assert_eq!(notices(&api, sub).await.len(), 1, "{sub}");
    }
}

billing_tests::on_both_stores!(
    the_notice_goes_out_seven_days_before_the_renewal_at_the_new_price,
    a_version_three_days_before_the_renewal_migrates_a_period_later,
    a_big_plan_is_armed_by_jobs_on_the_billing_queue,
);
