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
    // Ends once every arrival is sent, the last being due just before
    // `end`: bounded in time.
    while sent < total_arrivals {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Summary;
    use crate::bench::target::Reply;
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    /// A server that does one call at a time, 5 ms each (200/s), sent
    /// 400 arrivals a second: the queue grows by 200 a second, and the
    /// latency counted from each arrival's due time must show it, where a
    /// closed loop would see 5 ms calls (coordinated omission).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn latency_counts_from_the_due_time_when_the_server_falls_behind() {
        let server = Arc::new(Semaphore::new(1));
        let mut make = |_n: u64| -> BoxFuture<'static, Outcome> {
            let server = server.clone();
            Box::pin(async move {
                let _turn = server.acquire().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                Outcome::of(&Reply::Held("0-1".into()))
            })
        };
        let cell = run(
            400,
            Duration::ZERO,
            Duration::from_millis(500),
            1_000,
            &mut make,
        )
        .await;
        let s = Summary::of(&cell.latency_us);
        assert_eq!(cell.tally.ok, 200, "every arrival of the window answered");
        assert!(s.p99_ms > 100.0, "the queue is in the latency: {s:?}");
        assert!(s.p50_ms > 5.0 * 10.0, "{s:?}");
    }
}
