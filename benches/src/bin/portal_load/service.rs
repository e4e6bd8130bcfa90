//! The portal service as a child process: spawned on a temporary data directory with a
//! chosen admin, found by the `listening on http://ADDR` line it prints, and stopped
//! with SIGTERM (SIGKILL after a grace period) when the guard is stopped or dropped,
//! including while a panic unwinds.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::BoxError;

/// How long the service may take to print its `listening on` line.
const START_WAIT_MS_MAX: u64 = 30_000;
/// How long SIGTERM may take (draining requests, closing the ledger) before SIGKILL.
const STOP_WAIT_MS_MAX: u64 = 20_000;
/// Lines of the service's log shown when it fails.
const LOG_TAIL_LINES: usize = 20;

/// The release binary next to this one (`target/release/portal-svc`).
pub(crate) fn default_binary() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("the current executable has no parent directory")?;
    Ok(dir.join(format!("portal-svc{}", std::env::consts::EXE_SUFFIX)))
}

/// A running `portal-svc` that is stopped when this is dropped.
#[derive(Debug)]
pub(crate) struct Service {
    child: Child,
    /// `HOST:PORT` it listens on.
    pub(crate) authority: String,
    log: PathBuf,
    /// Removed after the child has stopped (fields drop after `Drop::drop`).
    _data: tempfile::TempDir,
}

impl Service {
    /// Starts `binary` on a fresh temporary data directory, listening on a free port of
    /// 127.0.0.1, with the platform admin `email`/`password`.
    pub(crate) fn spawn(binary: &Path, email: &str, password: &str, extra: &[&str]) -> Result<Service, BoxError> {
        let data = tempfile::Builder::new().prefix("portal-load-").tempdir()?;
        let log = data.path().join("portal-svc.log");
        let mut child = Command::new(binary)
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("PORTAL_ADMIN_EMAIL", email)
            .env("PORTAL_ADMIN_PASSWORD", password)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("the service's stdout was not captured")?;
        let mut service = Service { child, authority: String::new(), log, _data: data };
        let (tx, rx) = mpsc::channel();
        // Reads stdout to its end, so the service never blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_millis(START_WAIT_MS_MAX)) {
            Ok(authority) => service.authority = authority,
            Err(_) => {
                let status = service.child.try_wait().ok().flatten();
                return Err(format!(
                    "portal-svc did not print `listening on http://ADDR` within {START_WAIT_MS_MAX} ms \
                     (exit status: {status:?}); its log:\n{}",
                    service.log_tail()
                )
                .into());
            }
        }
        Ok(service)
    }

    /// The service's process id (for `perf record -p`).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of what the service wrote on stderr.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Sends SIGTERM and waits for the exit (SIGKILL after the grace period).
    pub(crate) fn stop(mut self) -> Result<ExitStatus, BoxError> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<ExitStatus, BoxError> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        // std cannot send SIGTERM; the `kill` utility can.
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        if sent.is_ok_and(|s| s.success()) {
            let deadline = Instant::now() + Duration::from_millis(STOP_WAIT_MS_MAX);
            while Instant::now() < deadline {
                if let Some(status) = self.child.try_wait()? {
                    return Ok(status);
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        self.child.kill()?;
        self.child.wait()?;
        Err(format!("portal-svc did not stop on SIGTERM within {STOP_WAIT_MS_MAX} ms; killed it").into())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Err(e) = self.terminate() {
            eprintln!("portal_load: stopping portal-svc: {e}");
        }
    }
}
