//! One function invoked with one event through `cargo lambda`, as `make invoke` and the
//! test of every sample event do it. `cargo lambda watch --only-lambda-apis` emulates
//! Lambda's runtime API; the function's debug binary, built first with `cargo build`, runs
//! against it with its environment from [`crate::function_env`]; `cargo lambda invoke`
//! sends the event. The function is this process's child, so a function that cannot start
//! fails the invocation with its own error instead of leaving `cargo lambda invoke`
//! waiting, and every wait here is bounded.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::moto::{free_port, workspace_root};

/// The admin key of the tenant the files in `events/` act as
/// (`ten_01JD0000000000000000000000`). It is published in this repository, so it is only
/// ever seeded into a local stack (`make dev`, the tests), never into a deployed one.
pub const SAMPLE_EVENTS_KEY: &str =
    "sk_test_01JD0000000000000000000000_eventsFixtureKeyForSamLocalInvoke0123456789";
/// The name of that tenant on the local stack.
pub const SAMPLE_EVENTS_TENANT: &str = "Sample events (local only)";
/// How long the runtime emulator may take to listen (it runs `cargo metadata` first).
const EMULATOR_READY: Duration = Duration::from_secs(60);
/// How long one invocation may take: above the template's longest `Timeout` (60 s).
const INVOCATION: Duration = Duration::from_secs(90);
/// How often a wait looks at its processes again.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("{0} not found: run `make venv` (it installs cargo-lambda)")]
    NoCargoLambda(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("building {0} failed (cargo's messages are above)")]
    Build(String),
    #[error("the build produced no binary for {0}")]
    NoBinary(String),
    #[error("`cargo lambda watch` stopped or did not listen on port {port} within {EMULATOR_READY:?}:\n{log}")]
    Emulator { port: u16, log: String },
    #[error("{function} exited ({status}) before answering; its output:\n{log}")]
    FunctionExited {
        function: String,
        status: ExitStatus,
        log: String,
    },
    #[error("{function} answered nothing within {INVOCATION:?}; its output:\n{log}")]
    TimedOut { function: String, log: String },
    #[error("`cargo lambda invoke {function}` failed ({status}):\n{output}\n{function}'s output:\n{log}")]
    Invocation {
        function: String,
        status: ExitStatus,
        output: String,
        log: String,
    },
    #[error("the event is not JSON: {0}")]
    Event(#[from] serde_json::Error),
    #[error("the event carries a Stripe-Signature but the local stack has no webhook secret to sign it with")]
    NoWebhookSecret,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InvokeError {
    let what = what.into();
    move |source| InvokeError::Io { what, source }
}

/// The `cargo-lambda` the project installs into `.venv`.
pub fn cargo_lambda() -> Result<PathBuf, InvokeError> {
    let path = workspace_root().join(".venv/bin/cargo-lambda");
    if path.exists() {
        Ok(path)
    } else {
        Err(InvokeError::NoCargoLambda(path))
    }
}

/// The function (one of `binaries`) a sample event file is for: its name starts with the
/// function's (`billing-worker-sqs.json` is `billing-worker`'s).
pub fn function_of<'a>(event_file: &str, binaries: &'a [String]) -> Option<&'a str> {
    binaries
        .iter()
        .filter(|b| {
            event_file
                .strip_prefix(b.as_str())
                .is_some_and(|rest| rest.starts_with('-'))
        })
        .max_by_key(|b| b.len())
        .map(String::as_str)
}

/// The event as it is sent: a request carrying a `stripe-signature` header is signed anew
/// at `now` (unix seconds) with `webhook_secret`, as Stripe would sign it now; a signature
/// captured in a file is stale five minutes after it was made.
pub fn prepare(event: &str, webhook_secret: Option<&str>, now: i64) -> Result<String, InvokeError> {
    let mut event: Value = serde_json::from_str(event)?;
    if event.pointer("/headers/stripe-signature").is_none() {
        return Ok(event.to_string());
    }
    let secret = webhook_secret.ok_or(InvokeError::NoWebhookSecret)?;
    let body = event["body"].as_str().unwrap_or_default().to_owned();
    let header = billing_domain::events::webhook::signature_header(&[secret], now, body.as_bytes());
    event["headers"]["stripe-signature"] = Value::String(header);
    Ok(serde_json::to_string_pretty(&event)?)
}

/// The binaries of every function of the template: built together, always, so their
/// dependencies are compiled with one set of features whichever function is invoked.
pub fn template_functions() -> Vec<&'static str> {
    static BINARIES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    BINARIES
        .get_or_init(|| {
            crate::function_env::functions(crate::function_env::TEMPLATE)
                .map(|functions| functions.into_iter().map(|f| f.binary).collect())
                .unwrap_or_default()
        })
        .iter()
        .map(String::as_str)
        .collect()
}

/// Builds the functions' debug binaries with `cargo build`, in one run; the binary of
/// each, by name.
pub fn build(functions: &[&str]) -> Result<BTreeMap<String, PathBuf>, InvokeError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "--message-format=json-render-diagnostics"]);
    for function in functions {
        command.args(["-p", function]);
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(io("running cargo build"))?;
    if !output.status.success() {
        return Err(InvokeError::Build(functions.join(", ")));
    }
    let mut binaries = BTreeMap::new();
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let name = message["target"]["name"].as_str().unwrap_or_default();
        if let (true, Some(executable)) =
            (functions.contains(&name), message["executable"].as_str())
        {
            binaries.insert(name.to_owned(), PathBuf::from(executable));
        }
    }
    match functions.iter().find(|f| !binaries.contains_key(**f)) {
        Some(missing) => Err(InvokeError::NoBinary(missing.to_string())),
        None => Ok(binaries),
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `cargo lambda watch --only-lambda-apis` on a free port of 127.0.0.1. Stopped on drop.
pub struct Emulator {
    watcher: Child,
    port: u16,
    logs: PathBuf,
}

impl Emulator {
    /// Starts the emulator, its output and the functions' in `logs`, and waits (bounded)
    /// until it listens.
    pub fn start(logs: &Path) -> Result<Self, InvokeError> {
        std::fs::create_dir_all(logs).map_err(io(format!("creating {}", logs.display())))?;
        let port = free_port().map_err(io("finding a free port"))?;
        let log = logs.join("cargo-lambda-watch.log");
        let output = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let watcher = Command::new(cargo_lambda()?)
            .current_dir(workspace_root())
            .args(["lambda", "watch", "--only-lambda-apis", "--ignore-changes"])
            .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(output.try_clone().map_err(io("log file"))?)
            .stderr(output)
            .spawn()
            .map_err(io("starting cargo lambda watch"))?;
        let mut emulator = Self {
            watcher,
            port,
            logs: logs.to_owned(),
        };
        let deadline = Instant::now() + EMULATOR_READY;
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(emulator);
            }
            if let Ok(Some(_)) = emulator.watcher.try_wait() {
                break;
            }
            std::thread::sleep(POLL);
        }
        kill(&mut emulator.watcher);
        Err(InvokeError::Emulator {
            port,
            log: tail(&log),
        })
    }

    /// Starts `binary` as the function `name` with `env`, what the runtime API needs and
    /// nothing else of this process's environment, as Lambda starts it.
    pub fn run(
        &self,
        name: &str,
        binary: &Path,
        env: &[(String, String)],
    ) -> Result<Function<'_>, InvokeError> {
        let log = self.logs.join(format!("{name}.log"));
        let output = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let process = Command::new(binary)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", self.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .stdin(Stdio::null())
            .stdout(output.try_clone().map_err(io("log file"))?)
            .stderr(output)
            .spawn()
            .map_err(io(format!("starting {}", binary.display())))?;
        Ok(Function {
            emulator: self,
            name: name.to_owned(),
            process,
            log,
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        kill(&mut self.watcher);
    }
}

/// A function process answering the emulator's invocations. Stopped on drop.
pub struct Function<'a> {
    emulator: &'a Emulator,
    name: String,
    process: Child,
    log: PathBuf,
}

impl Function<'_> {
    /// Sends the event in `event_file` with `cargo lambda invoke` and returns the function's
    /// answer; fails with the function's output when it exits or answers nothing in time.
    pub fn invoke(&mut self, event_file: &Path) -> Result<Value, InvokeError> {
        let answer = self.log.with_extension("answer");
        let output = File::create(&answer).map_err(io(format!("creating {}", answer.display())))?;
        let mut invoke = Command::new(cargo_lambda()?)
            .current_dir(workspace_root())
            .args(["lambda", "invoke", "_", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &self.emulator.port.to_string()])
            .arg("--data-file")
            .arg(event_file)
            .args(["--output-format", "json"])
            .stdin(Stdio::null())
            .stdout(output.try_clone().map_err(io("answer file"))?)
            .stderr(output)
            .spawn()
            .map_err(io("starting cargo lambda invoke"))?;
        let deadline = Instant::now() + INVOCATION;
        loop {
            if let Some(status) = invoke.try_wait().map_err(io("cargo lambda invoke"))? {
                let text = std::fs::read_to_string(&answer).unwrap_or_default();
                return match serde_json::from_str(&text) {
                    Ok(value) if status.success() => Ok(value),
                    _ => Err(InvokeError::Invocation {
                        function: self.name.clone(),
                        status,
                        output: text,
                        log: tail(&self.log),
                    }),
                };
            }
            if let Some(status) = self.process.try_wait().map_err(io("the function"))? {
                kill(&mut invoke);
                return Err(InvokeError::FunctionExited {
                    function: self.name.clone(),
                    status,
                    log: tail(&self.log),
                });
            }
            if Instant::now() > deadline {
                kill(&mut invoke);
                return Err(InvokeError::TimedOut {
                    function: self.name.clone(),
                    log: tail(&self.log),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// What the function has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Function<'_> {
    fn drop(&mut self) {
        kill(&mut self.process);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_file_belongs_to_the_function_its_name_starts_with() {
        let binaries: Vec<String> = ["api", "billing-run", "billing-worker"]
            .map(String::from)
            .to_vec();
        assert_eq!(function_of("api-health.json", &binaries), Some("api"));
        assert_eq!(
            function_of("billing-worker-sqs.json", &binaries),
            Some("billing-worker")
        );
        assert_eq!(
            function_of("billing-run-schedule.json", &binaries),
            Some("billing-run")
        );
        assert_eq!(function_of("apiary.json", &binaries), None);
        assert_eq!(function_of("stripe-webhook-request.json", &binaries), None);
    }

    #[test]
    fn a_stripe_request_is_signed_now_and_other_events_pass_unchanged() {
        let secret = "whsec_test";
        let body = r#"{"id":"evt_1"}"#;
        let stripe = serde_json::json!({
            "headers": {"stripe-signature": "t=1,v1=00"},
            "body": body,
        })
        .to_string();
        let now = 1_800_000_000;
        let signed: Value =
            serde_json::from_str(&prepare(&stripe, Some(secret), now).unwrap()).unwrap();
        let header = signed["headers"]["stripe-signature"].as_str().unwrap();
        let secrets = billing_domain::collection::stripe_signature::WebhookSecrets::new([secret]);
        assert_eq!(
            secrets.verify(
                header,
                body.as_bytes(),
                jiff::Timestamp::from_second(now).unwrap()
            ),
            Ok(())
        );
        assert!(matches!(
            prepare(&stripe, None, now),
            Err(InvokeError::NoWebhookSecret)
        ));
        let other = r#"{"headers":{"authorization":"Bearer k"},"body":"{}"}"#;
        let unchanged: Value = serde_json::from_str(&prepare(other, None, now).unwrap()).unwrap();
        assert_eq!(unchanged, serde_json::from_str::<Value>(other).unwrap());
    }
}
