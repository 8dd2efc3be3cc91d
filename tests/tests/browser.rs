//! The hosted invoice page in a real browser: Debian's Chromium, headless, driven over
//! WebDriver (chromedriver, `make browser` installs both) against the router on the local
//! stand-in. A customer pays an open sandbox invoice with a test card and sees it paid; a
//! card that asks for 3-D Secure shows the action-required step, which completes. The
//! screenshots of each state are written to `docs/`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use billing_aws::SandboxGateway;
use billing_tests::api::Api;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// chromedriver on a free port, stopped when dropped.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn start_driver() -> Driver {
    for program in ["chromium", "chromedriver"] {
        assert!(
            installed(program),
            "`{program}` is missing: run `make browser` (apt-get install chromium chromium-driver) \
             before the browser test"
        );
    }
    let port = billing_infra::moto::free_port().expect("a free port");
    let mut child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    // It says so on stdout once it listens.
    let stdout = child.stdout.take().expect("chromedriver's stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("chromedriver exited before it started")
            .expect("chromedriver's output");
        if line.contains("started successfully") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Driver(child, port)
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=820,1400", "--hide-scrollbars"]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a Chromium session")
}

fn docs(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name)
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(docs(name), png).expect("write the screenshot");
}

async fn open_invoice(api: &Api, description: &str, amount: i64) -> (Value, String) {
    let account = api
        .created(
            "/v1/accounts",
            json!({"email": "ada@analytical.test", "name": "Ada Lovelace", "currency": "usd",
                   "billing_address": {"line1": "12 St James's Square", "city": "London",
                                       "postal_code": "SW1Y 4JH", "country": "GB"}}),
        )
        .await;
    let draft = api
        .created(
            "/v1/invoices",
            json!({"account": account["id"], "collection_method": "send_invoice",
            "lines": [
                {"description": description, "amount": amount},
                {"description": "Support plan", "amount": 2_500}
            ]}),
        )
        .await;
    let invoice = api
        .post(
            &format!("/v1/invoices/{}/finalize", draft["id"].as_str().unwrap()),
            json!({"days_until_due": 30}),
        )
        .await;
    let minted = api
        .created(
            &format!(
                "/v1/invoices/{}/hosted-link",
                invoice["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    (invoice, minted["url"].as_str().unwrap().to_owned())
}

async fn status_of(client: &Client) -> String {
    client
        .find(Locator::Id("status"))
        .await
        .expect("the status badge")
        .text()
        .await
        .unwrap()
}

/// Types `card` into the sandbox's form and sends it; answers once the next page is there.
async fn pay_with(client: &Client, card: &str) {
    let field = client
        .find(Locator::Id("card"))
        .await
        .expect("the card field");
    field.send_keys(card).await.unwrap();
    client
        .find(Locator::Id("pay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_pays_from_the_page_and_completes_3d_secure() {
    let driver = start_driver();
    let gateway = Arc::new(SandboxGateway::new());
    let store = Arc::new(billing_tests::dynamo_store().await);
    let app = billing_tests::app(store).with_gateway(gateway.clone());
    let (api, _) = Api::start(app, "Analytical Engines Ltd").await;
    let client = browser(&driver).await;

    // An open invoice, paid with a card that pays.
    let (invoice, url) = open_invoice(&api, "Difference engine, 1 unit", 120_000).await;
    client.goto(&url).await.unwrap();
    assert_eq!(status_of(&client).await, "OPEN");
    let number = invoice["number"].as_str().unwrap();
    let body = client.source().await.unwrap();
    assert!(
        body.contains(number) && body.contains("$1,225.00"),
        "{body}"
    );
    client
        .find(Locator::Id("card"))
        .await
        .unwrap()
        .send_keys("4242 4242 4242 4242")
        .await
        .unwrap();
    screenshot(&client, "hosted-invoice-open.png").await;
    client
        .find(Locator::Id("pay"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css(".status-paid"))
        .await
        .expect("the page shows the invoice paid");
    assert_eq!(status_of(&client).await, "PAID");
    assert!(client.find(Locator::Id("pay-form")).await.is_err());
    screenshot(&client, "hosted-invoice-paid.png").await;
    let stored = api
        .get(&format!("/v1/invoices/{}", invoice["id"].as_str().unwrap()))
        .await;
    assert_eq!(stored["status"], "paid");

    // A card that asks for 3-D Secure: the page asks the customer to confirm, then it is paid.
    let (invoice, url) = open_invoice(&api, "Analytical engine, design", 50_000).await;
    client.goto(&url).await.unwrap();
    pay_with(&client, "4000002500003155").await;
    client
        .wait()
        .for_element(Locator::Id("authenticate"))
        .await
        .expect("the action-required step");
    assert_eq!(status_of(&client).await, "ACTION REQUIRED");
    screenshot(&client, "hosted-invoice-action-required.png").await;
    let id = invoice["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/v1/invoices/{id}")).await["payment_status"],
        "requires_action"
    );
    client
        .find(Locator::Id("authenticate"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css(".status-paid"))
        .await
        .expect("paid once authenticated");
    assert_eq!(
        api.get(&format!("/v1/invoices/{id}")).await["status"],
        "paid"
    );
    assert_eq!(gateway.charge_count(), 2, "one charge per invoice");
    client.close().await.unwrap();
}
