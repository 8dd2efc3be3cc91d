//! `billing-local` from the outside: it starts the stand-in, seeds the sandbox tenant with
//! the configured key, serves the API, saves its data on Ctrl-C and has it back next run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use billing_infra::moto::free_port;
use serde_json::{json, Value};

const KEY: &str = "sk_test_01JD00000000000000000000RC_localRunnerTestKey0123456789abcdefghijkmnop";

fn start(state: &Path, port: u16, aws_port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_billing-local"))
        .args([
            "--port",
            &port.to_string(),
            "--aws-port",
            &aws_port.to_string(),
        ])
        .arg("--state-dir")
        .arg(state)
        .env("BILLING_DEV_API_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(state.with_extension("log")).expect("log file"))
        .spawn()
        .expect("start billing-local")
}

/// Polls /health until the runner answers (bounded: 300 tries, 100 ms apart).
async fn wait_healthy(http: &reqwest::Client, base: &str, runner: &mut Child) {
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/health")).send().await {
            assert_eq!(r.status(), 200);
            return;
        }
        if runner.try_wait().unwrap().is_some() {
            panic!("billing-local exited early: see its log next to the state directory");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("billing-local never became healthy");
}

fn interrupt(mut runner: Child) {
    let status = Command::new("kill")
        .args(["-INT", &runner.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        runner.wait().unwrap().success(),
        "a clean shutdown on Ctrl-C"
    );
}

#[tokio::test]
async fn serves_the_api_and_keeps_data_across_runs() {
    let state = std::env::temp_dir().join(format!("billing-local-test-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let (port, aws_port) = (free_port().unwrap(), free_port().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut runner = start(&state, port, aws_port);
    wait_healthy(&http, &base, &mut runner).await;
    let created = http
        .post(format!("{base}/v1/accounts"))
        .bearer_auth(KEY)
        .json(&json!({"email": "dev@example.com", "currency": "usd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    interrupt(runner);
    assert!(state.join("table-snapshot.jsonl").exists());

    let mut runner = start(&state, port, aws_port);
    wait_healthy(&http, &base, &mut runner).await;
    let fetched = http
        .get(format!("{base}/v1/accounts/{id}"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        fetched.status(),
        200,
        "the previous run's account is still there"
    );
    interrupt(runner);
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_file(state.with_extension("log"));
}
