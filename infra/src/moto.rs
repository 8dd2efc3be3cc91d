//! Starting the local AWS stand-in (moto's server, with the transaction repairs of
//! `infra/stand_in.py`) from the project's `.venv` on 127.0.0.1.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The default port of the local AWS stand-in.
pub const DEFAULT_PORT: u16 = 4599;

/// The workspace root (where `.venv` lives), found from this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The Python that has moto installed: `.venv/bin/python`, or `BILLING_PYTHON` when set.
pub fn python() -> PathBuf {
    std::env::var_os("BILLING_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"))
}

/// moto's server with DynamoDB transactions that roll back only what they touched and
/// never undo each other (see the script's doc).
fn stand_in_script() -> PathBuf {
    workspace_root().join("infra/stand_in.py")
}

/// A port nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("{0} not found: run `make venv` (or `make dev` / `make test`, which do it)")]
    Missing(PathBuf),
    #[error("could not start the stand-in: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("the stand-in did not answer on port {0} within 30 s")]
    NotReady(u16),
}

/// Starts moto on `port` and waits until it accepts connections. The server is tied to
/// the calling thread: it is killed when that thread ends (Linux parent-death signal),
/// so neither a crash nor Ctrl-C leaves it running.
pub fn start(port: u16) -> Result<Child, MotoError> {
    let python = python();
    if !python.exists() {
        return Err(MotoError::Missing(python));
    }
    let mut command = Command::new(python);
    command
        .arg(stand_in_script())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Its own process group: a terminal's Ctrl-C reaches only the runner, which saves the
    // table before it stops the stand-in.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    die_with_parent(&mut command);
    let mut child = command.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    Err(MotoError::NotReady(port))
}

#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
