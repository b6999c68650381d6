//! Closed loop: `callers` tasks, each with one call in flight, calling
//! again as soon as the last answer arrives, for a warm-up and then a
//! measured window. Throughput is what the system sustains with that many
//! callers; latency here hides queueing a real arrival process would see
//! (coordinated omission), which is what [`open_loop`](super::open_loop)
//! measures instead.
//!
//! A call counts if it *ends* inside the measured window, wherever it
//! started: throughput is then completions per second of the window, even
//! where a call takes longer than the window (PostgreSQL's hot row at 256
//! callers).
//!
//! Unit of work: one *call* made by a [`CallFn`], a caller's own closure
//! (it keeps that caller's random state and counter) returning the call's
//! future. Every call is bounded by [`CALL_TIMEOUT`], so a level ends at
//! most that long after its window.

use crate::bench::stats::{CellStats, Outcome};
use futures_util::future::BoxFuture;
use std::time::{Duration, Instant};

/// Longest a single call may take before it counts as an error.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One caller's next call.
pub type CallFn = Box<dyn FnMut() -> BoxFuture<'static, Outcome> + Send>;

/// Runs `callers` callers (caller `i`'s calls come from `make(i)`) for
/// `warmup` unrecorded, then `measure` recorded.
pub async fn run(
    callers: usize,
    warmup: Duration,
    measure: Duration,
    make: &dyn Fn(usize) -> CallFn,
) -> CellStats {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let mut call = make(i);
            tokio::spawn(async move {
                let mut cell = CellStats::default();
                while Instant::now() < end {
                    let t = Instant::now();
                    let outcome = tokio::time::timeout(CALL_TIMEOUT, call())
                        .await
                        .unwrap_or_else(|_| Outcome::timed_out(CALL_TIMEOUT));
                    let done = Instant::now();
                    if done >= measure_from && done <= end {
                        cell.record(outcome, done - t);
                    }
                }
                cell
            })
        })
        .collect();
    let mut total = CellStats::default();
    for task in tasks {
        match task.await {
            Ok(cell) => total.merge(cell),
            Err(e) => {
                total.tally.errors += 1;
                total
                    .first_error
                    .get_or_insert_with(|| format!("caller task: {e}"));
            }
        }
    }
    total.elapsed = measure;
    total
}
