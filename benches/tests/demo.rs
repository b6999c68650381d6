//! The README's main job, end to end: `cluster-demo` starts a 3-node
//! cluster of real server processes, runs its flash sale and lifecycle
//! load, checks the books and stops the cluster. Its own checks fail the
//! run (exit code 1) when a unit is oversold or lost, so this test passes
//! only if the demo really held its promises.

use std::process::Command;
use std::time::{Duration, Instant};

/// The demo must finish well within this (it runs 2 s of load).
const DEMO_DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn the_demo_runs_on_a_fresh_cluster_and_its_books_balance() {
    let data = tempfile::TempDir::new().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cluster-demo"))
        .args(["--no-wait", "--base-port", "0", "--seconds", "2"])
        .args(["--buyers", "200", "--units", "20"])
        .arg("--data-dir")
        .arg(data.path().join("cluster"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cluster-demo starts (holdfast-server is built next to it by cargo test)");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > DEMO_DEADLINE {
            let _ = child.kill();
            panic!("the demo did not finish within {DEMO_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100)); // polling interval
    };
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(status.success(), "demo failed:\n{text}");
    assert!(
        text.contains("200 buyers raced for 20 units: 20 sold"),
        "exactly the units on sale were sold:\n{text}"
    );
    assert!(text.contains("the books balance"), "{text}");
}
