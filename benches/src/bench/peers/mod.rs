//! The systems Holdfast is measured beside, each started by the harness as
//! its own child process on a free 127.0.0.1 port with its data in a temp
//! dir, and stopped at the end: PostgreSQL ([`postgres`]), Redis
//! ([`redis`]) and the no-op gRPC floor ([`floor`]).
//!
//! This module holds what they share: a [`PeerProcess`] that is stopped
//! when dropped (and killed by the kernel if the harness dies first), a
//! bounded wait for a port, and installing a missing server with apt.
//!
//! Peer processes must be spawned from a thread that lives as long as
//! they should (the main thread): the kernel's parent-death signal fires
//! when the *thread* that forked them exits.

pub mod floor;
pub mod postgres;
pub mod redis;

use crate::local::die_with_parent;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a peer may take to accept connections after it is spawned.
pub const PEER_START_DEADLINE: Duration = Duration::from_secs(60);
/// How long one `apt-get` command may run: a download on a slow mirror,
/// not a lock held forever by another apt.
const APT_DEADLINE: Duration = Duration::from_secs(300);
/// How long a peer gets to stop cleanly before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Pause between two polls of a child or a port.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A peer's server process: sent `stop_signal` when dropped, then killed
/// after [`STOP_GRACE`] if it has not exited.
pub struct PeerProcess {
    child: Child,
    stop_signal: libc::c_int,
}

impl PeerProcess {
    /// Spawns `command` (stdin closed, stdout and stderr to `log`), dying
    /// with the harness; `stop_signal` is what asks it to stop cleanly.
    pub fn spawn(
        command: &mut Command,
        log: &Path,
        stop_signal: libc::c_int,
    ) -> Result<PeerProcess, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        die_with_parent(command);
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
        Ok(PeerProcess { child, stop_signal })
    }

    /// Whether the process has exited already (a failed start).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid this process spawned and has not reaped,
        // so it cannot name another process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, self.stop_signal);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`, or
/// `process` exits, or [`PEER_START_DEADLINE`] passes.
pub fn wait_for_port(port: u16, process: &mut PeerProcess, what: &str) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < PEER_START_DEADLINE {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if process.exited() {
            return Err(format!("{what} exited during start"));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Err(format!(
        "{what} did not listen on port {port} within {} s",
        PEER_START_DEADLINE.as_secs()
    ))
}

/// Runs `command` to its end, killed after `deadline`; its output goes to
/// `log` (or is discarded).
pub fn run_bounded(
    command: &mut Command,
    deadline: Duration,
    log: Option<&Path>,
) -> Result<ExitStatus, String> {
    let (out, err) = match log {
        Some(path) => {
            let f = std::fs::File::create(path).map_err(|e| e.to_string())?;
            let g = f.try_clone().map_err(|e| e.to_string())?;
            (Stdio::from(f), Stdio::from(g))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    die_with_parent(command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if start.elapsed() < deadline => std::thread::sleep(POLL_INTERVAL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{:?} did not finish within {} s",
                    command.get_program(),
                    deadline.as_secs()
                ));
            }
        }
    }
}

/// The first of `candidates` that exists, else, if `install` allows it,
/// the first after `apt-get install -y package` (and, if that fails,
/// `apt-get update` and a second try).
pub fn find_or_install(
    candidates: &dyn Fn() -> Option<PathBuf>,
    package: &str,
    install: bool,
    log_dir: &Path,
) -> Result<PathBuf, String> {
    if let Some(found) = candidates() {
        return Ok(found);
    }
    if !install {
        return Err(format!(
            "{package} is not installed and --no-install was given"
        ));
    }
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "{package} is not installed and apt needs root (apt-get install {package})"
        ));
    }
    let log = log_dir.join(format!("apt-{package}.log"));
    let apt = |args: &[&str]| {
        run_bounded(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            APT_DEADLINE,
            Some(&log),
        )
    };
    let installed = |r: Result<ExitStatus, String>| r.is_ok_and(|s| s.success());
    if !installed(apt(&["install", "-y", "--no-install-recommends", package])) {
        let _ = apt(&["update"]);
        if !installed(apt(&["install", "-y", "--no-install-recommends", package])) {
            return Err(format!(
                "apt-get install {package} failed (see {})",
                log.display()
            ));
        }
    }
    candidates().ok_or_else(|| format!("{package} installed, but its binary was not found"))
}

/// A program on `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
