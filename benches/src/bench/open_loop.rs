//! Open loop: calls arrive at a fixed rate whatever the system does, and
//! each call's latency counts from when it was *due*, not from when it was
//! sent, so a system that falls behind shows it in its latency instead of
//! quietly receiving fewer calls (no coordinated omission).
//!
//! Unit of work: one arrival, made by the `make` closure (given the
//! arrival's number) and run as its own task. At most `in_flight_max`
//! arrivals wait at once; an arrival beyond that is not sent and counts as
//! an error (the system is too slow for the rate). Every call is bounded
//! by [`CALL_TIMEOUT`](super::closed_loop::CALL_TIMEOUT).

use crate::bench::closed_loop::CALL_TIMEOUT;
use crate::bench::stats::{CellStats, Outcome};
use futures_util::future::BoxFuture;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How often the dispatcher wakes to send what is due: arrivals due in
/// between go out together, so a burst is at most this long.
const TICK: Duration = Duration::from_millis(1);

/// Sends `rate_per_s` arrivals a second for `warmup` (unrecorded) and
/// `measure` (recorded), then waits for the last answers.
pub async fn run(
    rate_per_s: u64,
    warmup: Duration,
    measure: Duration,
    in_flight_max: usize,
    make: &mut dyn FnMut(u64) -> BoxFuture<'static, Outcome>,
) -> CellStats {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let total_arrivals = ((warmup + measure).as_secs_f64() * rate_per_s as f64) as u64;
    let mut tasks: JoinSet<(Instant, Outcome, Duration)> = JoinSet::new();
    let mut cell = CellStats::default();
    let mut sent = 0u64;
    let absorb = |cell: &mut CellStats, (due, outcome, latency): (Instant, Outcome, Duration)| {
        if due >= measure_from {
            cell.record(outcome, latency);
        }
    };
    while Instant::now() < end && sent < total_arrivals {
        let now = Instant::now();
        let due_count = ((now - start).as_secs_f64() * rate_per_s as f64) as u64;
        while sent < due_count.min(total_arrivals) {
            let due = start + Duration::from_secs_f64(sent as f64 / rate_per_s as f64);
            while let Some(done) = tasks.try_join_next() {
                if let Ok(r) = done {
                    absorb(&mut cell, r);
                }
            }
            if tasks.len() >= in_flight_max {
                if due >= measure_from {
                    cell.record(
                        Outcome::of(&crate::bench::target::Reply::Error(format!(
                            "not sent: {in_flight_max} calls already waiting"
                        ))),
                        Duration::ZERO,
                    );
                }
            } else {
                let call = make(sent);
                tasks.spawn(async move {
                    let outcome = tokio::time::timeout(CALL_TIMEOUT, call)
                        .await
                        .unwrap_or_else(|_| Outcome::timed_out(CALL_TIMEOUT));
                    (due, outcome, due.elapsed())
                });
            }
            sent += 1;
        }
        tokio::time::sleep(TICK).await;
    }
    // Every task ends within CALL_TIMEOUT of its start.
    while let Some(done) = tasks.join_next().await {
        if let Ok(r) = done {
            absorb(&mut cell, r);
        }
    }
    cell.elapsed = end.saturating_duration_since(measure_from);
    cell
}
