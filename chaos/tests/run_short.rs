//! The CI chaos runs, on real server processes, each bounded by a hard
//! timeout (past it the harness is killed; its nodes die with it,
//! PR_SET_PDEATHSIG):
//!
//! - `holdfast-chaos run` for 75 s on 3 nodes with kill, pause and
//!   partition faults, seeded: every promise of design §1 must hold
//!   (exit 0), and the run leaves its timeline next to the history;
//! - 20 s against the deliberately broken build
//!   `--unsafe-chaos-bug=ack-before-commit` with partitions: the checker
//!   must flag lost acknowledgements (exit 1), proving it can fail.
//!
//! The two run one after the other (a lock), not side by side on the same
//! two cores.
//!
//! The server binary: `$HOLDFAST_SERVER_BIN` if set, else this test builds
//! it with the cargo that built the test, into the same target directory
//! and profile (as `client/tests/e2e.rs` does).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest the 75 s run may take: the faults plus set-up, healing,
/// convergence, the check and the timeline (about 85 s on two shared
/// cores; up to 120 s more is the harness's own bound).
const HARD_TIMEOUT: Duration = Duration::from_secs(240);
/// Longest the 20 s broken-build run may take.
const HARD_TIMEOUT_BROKEN: Duration = Duration::from_secs(160);
/// Longest the 3-minute regression run may take.
const HARD_TIMEOUT_LONG: Duration = Duration::from_secs(480);

/// One chaos run at a time.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

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

/// What a run left: its output directory (removed on drop), exit status
/// and `report.txt`.
struct Ran {
    out: tempfile::TempDir,
    status: ExitStatus,
    report: String,
}

/// Runs `holdfast-chaos run ARGS --out <temp dir> --server-bin SERVER`
/// (`args` split at spaces), killing it past `timeout`.
fn run_chaos(args: &str, timeout: Duration) -> Ran {
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = tempfile::TempDir::new().expect("temp dir");
    let server = server_binary();
    let mut child = Command::new(env!("CARGO_BIN_EXE_holdfast-chaos"))
        .arg("run")
        .args(args.split_whitespace())
        .arg("--out")
        .arg(out.path())
        .arg("--server-bin")
        .arg(&server)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start holdfast-chaos");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("holdfast-chaos run took longer than {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200)); // polling interval
    };
    let report = std::fs::read_to_string(out.path().join("report.txt")).unwrap_or_default();
    Ran {
        out,
        status,
        report,
    }
}

/// Design §1 (all promises) under kill -9, SIGSTOP and partitions.
#[test]
fn a_seeded_chaos_run_keeps_every_promise() {
    let Ran {
        out,
        status,
        report,
    } = run_chaos(
        "--nodes 3 --duration 75s --seed 7 --faults kill,pause,partition --workload flash --clients 16",
        HARD_TIMEOUT,
    );
    assert!(
        status.success(),
        "holdfast-chaos run failed ({status}):\n{report}"
    );
    let summary = report.lines().next().unwrap_or_default();
    assert!(
        summary.contains("oversell=0 lost=0 duplicate=0 linearizable=yes converged=yes"),
        "{summary}"
    );
    for file in [
        "history.jsonl",
        "final.jsonl",
        "faults.json",
        "leaders.jsonl",
    ] {
        assert!(out.path().join(file).exists(), "{file} is written");
    }
    let svg = std::fs::read_to_string(out.path().join("timeline.svg")).expect("timeline.svg");
    assert!(svg.contains(r#"<rect class="fault"#), "fault windows drawn");
    assert!(svg.contains(r#"<rect class="leader""#), "leaders drawn");
}

/// Design §1.4, the other way round: a build whose leaders acknowledge
/// before a quorum has the entry loses acknowledged writes when a leader
/// is cut off, and the checker says so.
#[test]
fn a_build_that_acknowledges_before_commit_is_caught() {
    let ran = run_chaos(
        "--nodes 3 --duration 20s --seed 3 --faults partition --workload mixed --clients 16 --server-arg=--unsafe-chaos-bug=ack-before-commit",
        HARD_TIMEOUT_BROKEN,
    );
    let summary = ran.report.lines().next().unwrap_or_default();
    assert_eq!(
        ran.status.code(),
        Some(1),
        "a violation is found:\n{}",
        ran.report
    );
    assert!(!summary.contains(" lost=0 "), "{summary}");
}

/// Regression (seeded, too long for CI: `cargo test -p holdfast-chaos
/// --test run_short -- --ignored`). This run, on the nemesis before the
/// fix, wiped n3, then n2 half a second after n3 came back empty, then n1
/// 0.7 s after n2: no node held the data any more, and the checker
/// reported 56,862 lost acknowledgements. A wipe now counts as healed only
/// once the wiped node holds everything the others had committed.
#[test]
#[ignore = "3 minutes; run before a release or after touching the nemesis"]
fn wipes_in_a_row_lose_nothing_once_each_wiped_node_catches_up() {
    let ran = run_chaos(
        "--nodes 3 --duration 3m --seed 32 --faults kill,pause,partition,restart,wipe --workload mixed --clients 32",
        HARD_TIMEOUT_LONG,
    );
    assert!(ran.status.success(), "{}", ran.report);
}
