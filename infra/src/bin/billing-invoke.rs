//! `make invoke FN=<function> EVENT=<file>`: one function invoked once with one event through
//! `cargo lambda` (see `billing_infra::invoke`), against the running `make dev` stack, or
//! against one started for this invocation and stopped after it (its data saved as
//! `make dev` saves it). Prints the function's answer; fails with the function's own error.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use billing_infra::{function_env, invoke};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Invoke one function with one event through cargo lambda")]
struct Args {
    /// The function: a `Binary` of template.yaml (api, billing-run, billing-worker, …).
    function: String,
    /// The event file, e.g. events/api-health.json.
    event: PathBuf,
    /// The state directory of `make dev` (where it writes functions.env).
    #[arg(long, default_value = ".local")]
    state_dir: PathBuf,
}

/// How long a local stack started here may take to come up (restoring a large snapshot
/// included).
const STACK_READY: Duration = Duration::from_secs(120);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binaries = invoke::template_functions();
    if !binaries.contains(&args.function.as_str()) {
        bail!(
            "{} is not a function of template.yaml; these are: {}",
            args.function,
            binaries.join(", ")
        );
    }
    let event = std::fs::read_to_string(&args.event)
        .with_context(|| format!("reading {}", args.event.display()))?;

    let env_file = args.state_dir.join(function_env::ENV_FILE);
    let started = match running_stack(&env_file) {
        Some(endpoint) => {
            eprintln!("Using the running local stack at {endpoint}");
            None
        }
        None => Some(start_stack(&args.state_dir, &env_file)?),
    };
    let result = invoke_once(&args, &event, &env_file);
    if let Some(stack) = started {
        stop_stack(stack);
    }
    let answer = result?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

fn invoke_once(args: &Args, event: &str, env_file: &Path) -> anyhow::Result<serde_json::Value> {
    let env = function_env::read_env_file(env_file)
        .with_context(|| format!("reading {}", env_file.display()))?;
    let secret = webhook_secret(&env)?;
    let now = jiff::Timestamp::now().as_second();
    let prepared = invoke::prepare(event, secret.as_deref(), now)?;
    let events = args.state_dir.join("events");
    std::fs::create_dir_all(&events)?;
    let sent = events.join(args.event.file_name().context("the event is not a file")?);
    std::fs::write(&sent, prepared)?;

    let binary = invoke::build(&invoke::template_functions())?
        .remove(&args.function)
        .context("no binary")?;
    let emulator = invoke::Emulator::start(&args.state_dir.join("logs"))?;
    let mut function = emulator.run(&args.function, &binary, &env)?;
    let answer = function.invoke(&sent);
    eprint!("{}", function.log());
    Ok(answer?)
}

/// The signing secret of Stripe webhooks on the local stack: the first of the local
/// Stripe secret's `webhook_secrets`, if any.
fn webhook_secret(env: &[(String, String)]) -> anyhow::Result<Option<String>> {
    let var = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .with_context(|| format!("{name} is not in the functions' environment"))
    };
    let config = billing_aws::Config::local(var("TABLE_NAME")?, var(function_env::ENDPOINT_VAR)?);
    let secret_id = var(billing_aws::payment_gateway::SECRET_ID_VAR)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let text = runtime.block_on(async {
        let sdk = config.sdk_config().await;
        aws_sdk_secretsmanager::Client::new(&sdk)
            .get_secret_value()
            .secret_id(&secret_id)
            .send()
            .await
            .with_context(|| format!("reading the local secret {secret_id}"))
    })?;
    let value: serde_json::Value = serde_json::from_str(text.secret_string().unwrap_or("{}"))
        .with_context(|| format!("the local secret {secret_id} is not JSON"))?;
    Ok(value["webhook_secrets"][0].as_str().map(str::to_owned))
}

/// The stand-in's endpoint when the stack that wrote `env_file` still answers there.
fn running_stack(env_file: &Path) -> Option<String> {
    let env = function_env::read_env_file(env_file).ok()?;
    let endpoint = env
        .into_iter()
        .find(|(k, _)| k == function_env::ENDPOINT_VAR)?
        .1;
    let address = endpoint.strip_prefix("http://")?.trim_end_matches('/');
    TcpStream::connect(address).is_ok().then_some(endpoint)
}

/// Starts `billing-local` (built next to this binary) and waits, bounded, until it has
/// written the functions' environment.
fn start_stack(state_dir: &Path, env_file: &Path) -> anyhow::Result<Child> {
    let runner = std::env::current_exe()?.with_file_name("billing-local");
    std::fs::create_dir_all(state_dir)?;
    let log_path = state_dir.join("dev.log");
    let log = std::fs::File::create(&log_path)?;
    // Whatever is there was written by a stack that is gone.
    let _ = std::fs::remove_file(env_file);
    eprintln!(
        "No local stack is running: starting one for this invocation (log: {})",
        log_path.display()
    );
    let mut child = Command::new(&runner)
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", runner.display()))?;
    let deadline = Instant::now() + STACK_READY;
    while Instant::now() < deadline {
        if running_stack(env_file).is_some() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("the local stack exited ({status}):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    bail!(
        "the local stack did not come up within {STACK_READY:?}; see {}",
        log_path.display()
    )
}

/// Stops it as Ctrl-C stops `make dev`: its table is saved for the next run.
fn stop_stack(mut child: Child) {
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if !interrupted {
        let _ = child.kill();
    }
    let _ = child.wait();
}
