//! Every function invoked with every file in `events/` through `cargo lambda`, as `make
//! invoke` does it, against a local stack of its own on free ports; and the environment
//! `make dev` writes for the functions holds every variable their code reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use billing_infra::function_env::{self, ENV_FILE, SAM_ENV_FILE};
use billing_infra::invoke::{self, Emulator};
use billing_infra::moto::{free_port, workspace_root};
use serde_json::Value;

/// What a sample event must get back from its function.
enum Expect {
    /// An API Gateway request: the response's status code.
    Status(u16),
    /// An SQS batch: exactly these records reported failed (by message id).
    BatchItemFailures(&'static [&'static str]),
    /// The scheduled `billing-run`: a run that completed without errors.
    CompletedRun,
}

use Expect::*;

const EXPECTED: &[(&str, Expect)] = &[
    ("api-health.json", Status(200)),
    ("api-openapi.json", Status(200)),
    ("api-create-account.json", Status(201)),
    ("api-list-accounts.json", Status(200)),
    ("api-get-account-missing.json", Status(404)),
    ("api-create-account-malformed.json", Status(400)),
    ("api-list-accounts-no-key.json", Status(401)),
    // Signed at invoke time with the local secret: a payment of the sample tenant that
    // the stack has never seen is acknowledged (Stripe would stop retrying).
    ("stripe-webhook-request.json", Status(200)),
    // Each batch has one unreadable record, reported alone; its other records name work
    // the stack does not have, which is done.
    (
        "billing-worker-sqs.json",
        BatchItemFailures(&["c2e8a0f4-1b3d-4e6f-9a7c-5d8b0e2f4a62"]),
    ),
    (
        "payment-worker-sqs.json",
        BatchItemFailures(&["e7a3c5f1-9d2b-4c6e-8a0f-1b3d5e7f9a24"]),
    ),
    (
        "webhook-fanout-sqs.json",
        BatchItemFailures(&["5d21f0c4-2b7a-4c9e-8f63-91a0e4d6b222"]),
    ),
    // An invoice this table does not hold is acknowledged; the unreadable record is not.
    (
        "document-renderer-sqs.json",
        BatchItemFailures(&["9b1d3f5a-7c9e-4b0d-8f2a-4c6e8a0b2d46"]),
    ),
    ("billing-run-schedule.json", CompletedRun),
];

/// Variables the functions read that the template leaves unset on purpose, each with a
/// default: Lambda sets the first four itself; the idempotency lease defaults to the
/// `api` function's Timeout; the Stripe API base exists for the tests' fake Stripe.
const UNDECLARED: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_LAMBDA_LOG_LEVEL",
    "AWS_LAMBDA_LOG_FORMAT",
    "IDEMPOTENCY_LEASE_SECONDS",
    "STRIPE_API_BASE",
    // Set by Lambda itself: the function's name, the Runtime API's address, and under
    // active tracing the X-Ray daemon's address and each invocation's trace header.
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_XRAY_DAEMON_ADDRESS",
    "_X_AMZN_TRACE_ID",
    // Three years unless set (shared/aws/src/config.rs).
    "AUDIT_RETENTION_DAYS",
    // 500 unless set (shared/aws/src/config.rs): a tuning knob, not a resource.
    "SIMULATION_PER_REQUEST",
];

/// The names of the environment variables the functions' code reads: string literals
/// given to `var(…)`, `env::var(…)`, `MissingVar(…)` and `SqsQueue::from_env(&sdk, …)`,
/// or named by a `…_VAR` constant, in the functions and the AWS adapters they link
/// (test modules left out).
fn variables_read() -> BTreeSet<String> {
    let root = workspace_root();
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("functions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        // `functions/` also holds the functions' shared build script.
        .filter(|path| path.is_dir())
        .map(|path| path.join("src"))
        .collect();
    dirs.push(root.join("shared/aws/src"));
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (at, _) in code.match_indices('"') {
            let rest = &code[at + 1..];
            let Some(end) = rest.find('"') else { continue };
            let literal = &rest[..end];
            let is_name = literal.contains('_')
                && literal
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            let before = code[..at].trim_end();
            let read = ["var(", "MissingVar(", "from_env(&sdk,"]
                .iter()
                .any(|call| before.ends_with(call))
                || (before.ends_with(": &str =")
                    && before.lines().last().is_some_and(|l| l.contains("_VAR:")));
            if is_name && read {
                names.insert(literal.to_owned());
            }
        }
    }
    names
}

#[test]
fn every_variable_the_functions_read_is_declared_in_the_template() {
    let read = variables_read();
    // The scan finds what it must: a sample of each way of reading.
    for name in [
        "TABLE_NAME",
        "EVENT_BUS_NAME",
        "PAYMENT_QUEUE_URL",
        "NOTICE_FROM_ADDRESS",
        "STRIPE_SECRET_ID",
        "IDEMPOTENCY_LEASE_SECONDS",
    ] {
        assert!(read.contains(name), "{name} not found in {read:?}");
    }
    let declared: BTreeSet<String> = function_env::functions(function_env::TEMPLATE)
        .unwrap()
        .into_iter()
        .flat_map(|f| f.variables.into_keys())
        .collect();
    for name in &read {
        assert!(
            declared.contains(name) || UNDECLARED.contains(&name.as_str()),
            "the functions read {name}, which template.yaml declares for none of them: \
             declare it (make dev then writes it for the local functions) or list it here \
             with its default"
        );
    }
}

/// Every function's debug binary, built once for the tests of this file.
fn built() -> &'static BTreeMap<String, PathBuf> {
    static BUILT: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    BUILT.get_or_init(|| invoke::build(&invoke::template_functions()).unwrap())
}

/// `billing-local` on free ports with a state directory of its own.
struct Stack {
    runner: Child,
    state: PathBuf,
}

impl Stack {
    fn start() -> Self {
        let state =
            std::env::temp_dir().join(format!("billing-invoke-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        let runner = Command::new(env!("CARGO_BIN_EXE_billing-local"))
            .args(["--port", &free_port().unwrap().to_string()])
            .args(["--aws-port", &free_port().unwrap().to_string()])
            .arg("--state-dir")
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(state.join("runner.log")).unwrap())
            .spawn()
            .expect("start billing-local");
        let mut stack = Self { runner, state };
        // Bounded: 1200 looks, 100 ms apart. The environment files are written last.
        for _ in 0..1200 {
            if stack.state.join(ENV_FILE).exists() {
                return stack;
            }
            if let Some(status) = stack.runner.try_wait().unwrap() {
                panic!(
                    "billing-local exited ({status}): {}",
                    std::fs::read_to_string(stack.state.join("runner.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("billing-local wrote no {ENV_FILE}");
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.runner.kill();
        let _ = self.runner.wait();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn check(file: &str, expect: &Expect, answer: &Value) {
    match expect {
        Status(code) => assert_eq!(answer["statusCode"], *code, "{file}: {answer}"),
        BatchItemFailures(ids) => {
            let failed: Vec<&str> = answer["batchItemFailures"]
                .as_array()
                .unwrap_or_else(|| panic!("{file}: {answer}"))
                .iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap())
                .collect();
            assert_eq!(failed, *ids, "{file}");
        }
        CompletedRun => {
            assert_eq!(answer["errors"], 0, "{file}: {answer}");
            assert!(answer["republished"].is_u64(), "{file}: {answer}");
        }
    }
}

#[test]
fn every_function_answers_every_sample_event_through_cargo_lambda() {
    let functions = function_env::functions(function_env::TEMPLATE).unwrap();
    let binaries: Vec<String> = functions.iter().map(|f| f.binary.clone()).collect();
    let events_dir = workspace_root().join("events");
    let mut by_function: BTreeMap<&str, Vec<(&str, &Expect)>> = BTreeMap::new();
    for entry in std::fs::read_dir(&events_dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            EXPECTED.iter().any(|(file, _)| *file == name),
            "{name} has no expected answer here"
        );
    }
    for (file, expect) in EXPECTED {
        let function = invoke::function_of(file, &binaries)
            .unwrap_or_else(|| panic!("{file} names no function of the template"));
        by_function
            .entry(function)
            .or_default()
            .push((*file, expect));
    }
    for binary in &binaries {
        assert!(
            by_function.contains_key(binary.as_str()),
            "no sample event for {binary}"
        );
    }

    let stack = Stack::start();
    let env = function_env::read_env_file(&stack.state.join(ENV_FILE)).unwrap();
    let env_names: BTreeSet<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    let sam: Value =
        serde_json::from_str(&std::fs::read_to_string(stack.state.join(SAM_ENV_FILE)).unwrap())
            .unwrap();
    for name in variables_read() {
        assert!(
            env_names.contains(name.as_str()) || UNDECLARED.contains(&name.as_str()),
            "{ENV_FILE} lacks {name}"
        );
    }
    for function in &functions {
        let declared = &sam[&function.logical_id];
        for name in function.variables.keys() {
            let value = declared[name].as_str().unwrap_or_else(|| {
                panic!("{SAM_ENV_FILE} lacks {name} for {}", function.logical_id)
            });
            assert!(
                env.iter().any(|(k, v)| k == name && v == value),
                "{ENV_FILE} and {SAM_ENV_FILE} disagree on {name}"
            );
        }
    }
    let webhook_secret = billing_infra::stack::LOCAL_WEBHOOK_SECRET;

    let built = built();
    let emulator = Emulator::start(&stack.state.join("logs")).unwrap();
    let sent = stack.state.join("events");
    std::fs::create_dir_all(&sent).unwrap();
    let now = jiff::Timestamp::now().as_second();
    for (function, events) in &by_function {
        let mut running = emulator.run(function, &built[*function], &env).unwrap();
        for (file, expect) in events {
            let text = std::fs::read_to_string(events_dir.join(file)).unwrap();
            let path = sent.join(file);
            std::fs::write(
                &path,
                invoke::prepare(&text, Some(webhook_secret), now).unwrap(),
            )
            .unwrap();
            let answer = running
                .invoke(&path)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            check(file, expect, &answer);
        }
    }
}

/// A function that cannot start fails the invocation with its own error, at once, instead
/// of leaving `cargo lambda invoke` waiting for it.
#[test]
fn a_function_that_cannot_start_fails_with_its_own_error() {
    let built = built();
    let logs = std::env::temp_dir().join(format!("billing-invoke-fail-{}", std::process::id()));
    let emulator = Emulator::start(&logs).unwrap();
    let mut running = emulator
        .run("billing-run", &built["billing-run"], &[])
        .unwrap();
    let event = workspace_root().join("events/billing-run-schedule.json");
    let error = running.invoke(Path::new(&event)).unwrap_err();
    assert!(
        matches!(error, invoke::InvokeError::FunctionExited { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("TABLE_NAME"), "{error}");
    drop(running);
    drop(emulator);
    let _ = std::fs::remove_dir_all(&logs);
}
