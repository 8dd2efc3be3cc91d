//! Test kit: the local AWS stand-in (one moto server per test process, on a free port,
//! stopped when the process ends), fresh tables, and the router served on 127.0.0.1.

pub mod api;
pub mod clock;
pub mod fake_stripe;
pub mod fake_vies;
pub mod webhooks;

use std::sync::{mpsc, Arc, OnceLock};

use billing_app::ports::{Clock, Store, SystemClock};
use billing_app::App;
use billing_aws::{Config, DynamoStore, SandboxGateway};
use billing_domain::kernel::deployment::Deployment;
use billing_http::{router, EmitMetrics};
use billing_infra::moto;
use billing_infra::request_count::{counted_client, Counter};
use billing_memory::hooked::{Hooked, Racing};
use billing_memory::MemoryStore;

/// An admin key of the tenant the files in `events/` authenticate as.
pub const EVENTS_KEY: &str = billing_infra::invoke::SAMPLE_EVENTS_KEY;

/// The stand-in's endpoint: `BILLING_TEST_AWS_ENDPOINT` when set, else a moto server
/// this process starts once and that dies with it.
pub fn aws_endpoint() -> String {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            if let Ok(endpoint) = std::env::var("BILLING_TEST_AWS_ENDPOINT") {
                return endpoint;
            }
            let port = moto::free_port().expect("a free port");
            let (ready, started) = mpsc::channel();
            // moto is bound to this thread's life (parent-death signal), so the thread
            // lives as long as the process.
            std::thread::spawn(move || match moto::start(port) {
                Ok(_child) => {
                    let _ = ready.send(Ok(()));
                    loop {
                        std::thread::park();
                    }
                }
                Err(err) => {
                    let _ = ready.send(Err(err.to_string()));
                }
            });
            started
                .recv()
                .expect("the moto thread reports")
                .unwrap_or_else(|e| panic!("{e}"));
            format!("http://127.0.0.1:{port}")
        })
        .clone()
}

/// A DynamoDB store on a table of its own, so tests never see each other's data.
pub async fn dynamo_store() -> DynamoStore {
    dynamo_store_with(aws_sdk_dynamodb::Client::new).await
}

/// A DynamoDB store on a table of its own whose requests (and writes refused on their
/// condition) `counter` counts once started.
pub async fn counted_dynamo_store(counter: Arc<Counter>) -> DynamoStore {
    dynamo_store_with(|sdk| counted_client(sdk, counter)).await
}

async fn dynamo_store_with(
    client: impl FnOnce(&aws_config::SdkConfig) -> aws_sdk_dynamodb::Client,
) -> DynamoStore {
    let table = format!("test-{}", ulid::Ulid::new().to_string().to_lowercase());
    let config = Config::local(&table, aws_endpoint());
    let client = client(&config.sdk_config().await);
    billing_aws::table::ensure_table(&client, &table)
        .await
        .expect("create the test table");
    DynamoStore::new(client, table)
}

pub fn app(store: Arc<dyn Store>) -> App {
    app_with_clock(store, Arc::new(SystemClock))
}

/// An app whose time is `clock`'s, collecting through the sandbox gateway, running as a
/// local deployment (webhooks may reach receivers on 127.0.0.1).
pub fn app_with_clock(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> App {
    App::new(store, clock, Arc::new(SandboxGateway::new())).with_deployment(Deployment::Local)
}

pub fn memory_app() -> App {
    app(memory_store())
}

pub fn memory_store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

/// The memory store behind [`Racing`] seeded with `seed`: concurrent tasks interleave at
/// every store operation, and the racing hook counts the conditional writes they lose.
/// With `delays` (for tests on tokio's paused clock) each operation also waits up to 5 ms.
pub fn racing_store(seed: u64, delays: bool) -> (Arc<dyn Store>, Arc<Racing>) {
    let mut racing = Racing::new(seed);
    if delays {
        racing = racing.with_delays(std::time::Duration::from_millis(5));
    }
    let racing = Arc::new(racing);
    (
        Arc::new(Hooked::new(memory_store(), racing.clone())),
        racing,
    )
}

/// An app over [`racing_store`].
pub fn racing_app(seed: u64, delays: bool) -> (App, Arc<Racing>) {
    let (store, racing) = racing_store(seed, delays);
    (app(store), racing)
}

/// What a scenario of [`on_both_stores!`] takes: the store itself, or an app over it.
pub trait OnStore {
    fn on(store: Arc<dyn Store>) -> Self;
}

impl OnStore for Arc<dyn Store> {
    fn on(store: Arc<dyn Store>) -> Self {
        store
    }
}

impl OnStore for App {
    fn on(store: Arc<dyn Store>) -> Self {
        app(store)
    }
}

/// Runs each scenario, an `async fn` taking an [`App`] or an `Arc<dyn Store>`, as two tests,
/// `memory::<scenario>` and `dynamo::<scenario>` (a fresh table on the stand-in), so a
/// failure names both the scenario and the store. Use once per test file.
#[macro_export]
macro_rules! on_both_stores {
    ($($scenario:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::OnStore::on($crate::memory_store())).await;
                }
            )+
        }

        mod dynamo {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let store = std::sync::Arc::new($crate::dynamo_store().await);
                    super::$scenario($crate::OnStore::on(store)).await;
                }
            )+
        }
    };
}

/// What a racing scenario is handed with its store: it calls [`Races::begin`] where its
/// concurrent deliveries start (after its set-up), and the runner counts from there the
/// writes the store refused on their condition: each is a delivery that lost a race.
#[derive(Clone, Default)]
pub struct Races(Option<Arc<Counter>>);

impl Races {
    /// Counting the refused writes of a store made with [`counted_dynamo_store`].
    pub fn counted(counter: Arc<Counter>) -> Self {
        Self(Some(counter))
    }

    pub fn begin(&self) {
        if let Some(counter) = &self.0 {
            counter.start();
        }
    }

    /// Writes refused on their condition since [`Races::begin`] (none where uncounted).
    pub fn lost(&self) -> u64 {
        self.0.as_ref().map_or(0, |counter| counter.refused())
    }
}

/// Runs each scenario, an `async fn` taking an [`App`] or an `Arc<dyn Store>` and a
/// [`Races`], that makes the same delivery several times at once (spawned tasks), as a
/// test `stand_in_races::<scenario>` on the stand-in, on a multi-thread runtime so the
/// deliveries really overlap. After the scenario's own assertions of what is stored, the
/// test asserts that DynamoDB refused at least one of the deliveries' writes on its
/// condition: some delivery lost a race and took that path, so a scenario that stops
/// racing fails. Use once per test file.
#[macro_export]
macro_rules! racing_on_the_stand_in {
    ($($scenario:ident),+ $(,)?) => {
        mod stand_in_races {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    let counter = std::sync::Arc::new(Default::default());
                    let store = std::sync::Arc::new(
                        $crate::counted_dynamo_store(std::sync::Arc::clone(&counter)).await,
                    );
                    let races = $crate::Races::counted(counter);
                    super::$scenario($crate::OnStore::on(store), races.clone()).await;
                    assert!(
                        races.lost() > 0,
                        "no write was refused on its condition: the deliveries did not race"
                    );
                }
            )+
        }
    };
}

pub async fn dynamo_app() -> App {
    app(Arc::new(dynamo_store().await))
}

/// Serves the API router on a free port of 127.0.0.1; returns its base URL.
pub async fn serve(app: App) -> String {
    // Server-side errors show up in the failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn")
        .try_init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = billing_http::serve::serve(
            listener,
            router(app, EmitMetrics(false)),
            std::future::pending(),
        )
        .await;
    });
    format!("http://{addr}")
}

/// A sandbox tenant and an admin caller of it, made through the use cases.
pub async fn admin(app: &App, name: &str) -> billing_app::Caller {
    let (_, issued) = app
        .customers
        .create_tenant(name, billing_domain::customers::tenant::TenantMode::Sandbox)
        .await
        .expect("create the tenant");
    billing_app::Caller::of_key(&issued.key, None)
}

/// An account (from `account` JSON) subscribed, at the app's now, to a new plan whose only
/// charge is a flat recurring fee of `amount` minor units every `interval` (`day`, `month`).
pub async fn subscribe(
    app: &App,
    caller: &billing_app::Caller,
    account: serde_json::Value,
    interval: &str,
    amount: i64,
) -> billing_domain::billing::subscription::Subscription {
    let account = app
        .customers
        .create_account(caller, serde_json::from_value(account).expect("an account"))
        .await
        .expect("create the account");
    let currency = account.currency.api_code();
    let plan = app.catalog
        .create_plan(
            caller,
            serde_json::from_value(serde_json::json!({
                "code": format!("flat-{interval}-{amount}"), "name": "Flat", "interval": {"unit": interval},
                "charges": {"recurring_fee": {"prices": {currency: {"model": "flat_fee", "amount": amount}}}}
            }))
            .expect("a plan"),
        )
        .await
        .expect("create the plan");
    let start = billing_app::billing::StartSubscription::new(account.id, plan.plan.id);
    app.billing
        .create_subscription(caller, start)
        .await
        .expect("create the subscription")
}

/// A dispatch that publishes nothing: for sweeps whose tests look at billing jobs only.
pub struct NoDispatch;

#[async_trait::async_trait]
impl billing_app::ports::Dispatch for NoDispatch {
    async fn publish(
        &self,
        _: billing_domain::kernel::ids::TenantId,
        _: &[billing_domain::events::record::DomainEvent],
    ) -> Result<(), billing_app::ports::StoreError> {
        Ok(())
    }

    async fn schedule_delivery(
        &self,
        _: &billing_app::ports::DeliveryJob,
        _: jiff::SignedDuration,
    ) -> Result<(), billing_app::ports::StoreError> {
        Ok(())
    }
}

/// What the deployment does every minute: a sweep of what is due (at the app's now), its
/// billing jobs delivered to the billing worker. Answers the jobs and the items the worker
/// reported failed.
pub async fn sweep_and_bill(app: &App) -> (Vec<billing_app::ports::BillingJob>, usize) {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    let queue = Arc::new(billing_memory::MemoryBillingQueue::default());
    // Payment work due meanwhile (the customer emails billing's events left) goes to a
    // queue of its own, which these tests leave unread.
    let sweeping = app
        .clone()
        .with_payment_queue(Arc::new(billing_memory::MemoryPaymentQueue::default()));
    let sweeper = billing_app::jobs::Sweeper::new(sweeping, Arc::new(NoDispatch), queue.clone());
    let report = sweeper.sweep(1000).await.expect("sweep");
    assert!(report.errors.is_empty(), "{report:?}");
    let jobs = queue.take();
    let mut event = SqsEvent::default();
    event.records = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("sweep-{i}"));
            message.body = Some(serde_json::to_string(job).expect("job"));
            message
        })
        .collect();
    let failed = billing_worker::handle(app, event)
        .await
        .batch_item_failures
        .len();
    (jobs, failed)
}

/// What the sweep hands the payment worker and it does with each: every customer notice
/// due now (dunning's, and the emails events left) sent through `app`'s notifier. Answers
/// the jobs run, for a test to deliver again.
pub async fn send_due_notices(app: &App) -> Vec<billing_app::ports::PaymentJob> {
    use billing_app::ports::{DueKind, PaymentJob};
    let due = app
        .store
        .due_items(jiff::Timestamp::now(), 1000)
        .await
        .expect("due items");
    let jobs: Vec<PaymentJob> = due
        .into_iter()
        .filter_map(|item| match item.kind {
            DueKind::Payment(job @ PaymentJob::DunningNotice { .. }) => Some(job),
            _ => None,
        })
        .collect();
    for job in &jobs {
        app.collection
            .handle_payment_job(job)
            .await
            .expect("send a notice");
    }
    jobs
}

/// `count` send-invoice drafts of `account`, each one fixed line of `amount` minor units.
pub async fn manual_drafts(
    app: &App,
    caller: &billing_app::Caller,
    account: billing_domain::kernel::ids::AccountId,
    count: usize,
    amount: i64,
) -> Vec<billing_domain::kernel::ids::InvoiceId> {
    let mut drafts = Vec::new();
    for _ in 0..count {
        let lines = serde_json::from_value(serde_json::json!([
            {"description": "Services", "source": {"type": "fixed", "amount": amount}}
        ]))
        .unwrap();
        let draft = app
            .billing
            .create_manual_invoice(
                caller,
                account,
                lines,
                billing_domain::billing::subscription::CollectionMethod::SendInvoice,
            )
            .await
            .unwrap();
        drafts.push(draft.id);
    }
    drafts
}

/// Finalizes `drafts` all at once, a task each (due in 30 days); every one must succeed.
pub async fn finalize_at_once(
    app: &App,
    caller: &billing_app::Caller,
    drafts: Vec<billing_domain::kernel::ids::InvoiceId>,
) -> Vec<billing_domain::billing::invoice::Invoice> {
    let mut tasks = tokio::task::JoinSet::new();
    for id in drafts {
        let (app, caller) = (app.clone(), caller.clone());
        tasks.spawn(async move { app.billing.finalize_invoice(&caller, id, Some(30)).await });
    }
    let mut invoices = Vec::new();
    while let Some(done) = tasks.join_next().await {
        invoices.push(done.unwrap().unwrap());
    }
    invoices
}

/// What a poppler tool (Debian `poppler-utils`; `make poppler` installs it) prints for the
/// PDF, given `args`, then the file, then `after`.
fn poppler(tool: &str, args: &[&str], after: &[&str], pdf: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("billing-{}.pdf", ulid::Ulid::new()));
    std::fs::write(&path, pdf).expect("write the PDF to a temporary file");
    let out = std::process::Command::new(tool)
        .args(args)
        .arg(&path)
        .args(after)
        .output()
        .unwrap_or_else(|e| {
            panic!("{tool} is needed to read the PDF back ({e}): `make poppler` installs it")
        });
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{tool} failed: {out:?}");
    String::from_utf8(out.stdout).expect("poppler writes UTF-8")
}

/// The text of a PDF as `pdftotext -layout` reads it.
pub fn pdf_text(pdf: &[u8]) -> String {
    poppler("pdftotext", &["-layout", "-enc", "UTF-8"], &["-"], pdf)
}

/// The images of a PDF as `pdfimages -list` finds them: (page, width, height) in pixels.
pub fn pdf_images(pdf: &[u8]) -> Vec<(u32, u32, u32)> {
    poppler("pdfimages", &["-list"], &[], pdf)
        .lines()
        .skip(2) // the header and its rule
        .map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let n = |i: usize| cols[i].parse::<u32>().expect("pdfimages -list columns");
            (n(0), n(3), n(4))
        })
        .collect()
}

/// What `tracing` writes while the guard lives (on this thread: a current-thread test
/// runtime's tasks), as JSON lines, for a test to read.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Starts capturing events at `level` and above.
    pub fn start(
        level: tracing_subscriber::filter::LevelFilter,
    ) -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Self::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing_subscriber::util::SubscriberInitExt::set_default(subscriber);
        (captured, guard)
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("the log's lock").clone()).expect("UTF-8 log")
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("the log's lock")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
