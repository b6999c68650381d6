//! The CI chaos run: `holdfast-chaos run` for 30 s on 3 real server
//! processes with kill, pause and partition faults, seeded; every promise
//! of design §1 must hold (exit 0). Bounded by a hard timeout: past it the
//! harness is killed (its nodes die with it, PR_SET_PDEATHSIG).
//!
//! The server binary: `$HOLDFAST_SERVER_BIN` if set, else this test builds
//! it with the cargo that built the test, into the same target directory
//! and profile (as `client/tests/e2e.rs` does).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest the whole run may take: 30 s of faults plus set-up, healing,
/// convergence and the check, on two shared cores.
const HARD_TIMEOUT: Duration = Duration::from_secs(150);

fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HOLDFAST_SERVER_BIN") {
        return PathBuf::from(path);
    }
    // This test runs as <target>/<profile dir>/deps/run_short-<hash>.
    let exe = std::env::current_exe().expect("own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("<target>");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("release") => "release",
        // `cargo test` builds with the `test` profile into `debug/`.
        _ => "test",
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "holdfast-server", "--bin"])
        .arg("holdfast-server")
        .arg("--profile")
        .arg(profile)
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .expect("run cargo build -p holdfast-server");
    assert!(status.success(), "cargo build -p holdfast-server failed");
    let binary = profile_dir.join("holdfast-server");
    assert!(binary.exists(), "{} is missing", binary.display());
    binary
}

/// Design §1 (all promises) under kill -9, SIGSTOP and partitions.
#[test]
fn a_short_seeded_chaos_run_keeps_every_promise() {
    let server = server_binary();
    let out = tempfile::TempDir::new().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_holdfast-chaos"))
        .args(["run", "--nodes", "3", "--duration", "30s", "--seed", "7"])
        .args(["--faults", "kill,pause,partition", "--workload", "flash"])
        .args(["--clients", "16"])
        .arg("--out")
        .arg(out.path())
        .arg("--server-bin")
        .arg(&server)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start holdfast-chaos");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > HARD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("holdfast-chaos run took longer than {HARD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200)); // polling interval
    };
    let report = std::fs::read_to_string(out.path().join("report.txt")).unwrap_or_default();
    assert!(
        status.success(),
        "holdfast-chaos run failed ({status}):\n{report}"
    );
    let summary = report.lines().next().unwrap_or_default();
    assert!(
        summary.contains("oversell=0 lost=0 duplicate=0 linearizable=yes converged=yes"),
        "{summary}"
    );
    for file in ["history.jsonl", "final.jsonl", "faults.json"] {
        assert!(out.path().join(file).exists(), "{file} is written");
    }
}
