//! What one cell of the report measured: counts of outcomes and HDR
//! histograms of latency, and the summaries the report prints.
//!
//! Unit of work: an [`Outcome`], what one call got (one reservation, or a
//! batch's items, or one lifecycle). Latency is recorded per call in
//! microseconds: successes in one histogram, refusals in another, so a
//! fast "no" never flatters the latency of a "yes".

use crate::bench::target::{BatchReply, Reply};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Largest latency a histogram records, µs (longer ones are clamped): a
/// minute is far beyond any call's timeout.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Significant figures of the histograms (0.1% resolution).
const SIGNIFICANT_FIGURES: u8 = 3;
/// Quantiles of the latency CDF kept in the report for the plots.
pub const CDF_QUANTILES: [f64; 21] = [
    0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999,
    0.9995, 0.9999, 0.99999, 1.0,
];

/// An empty latency histogram, µs, 1 µs to [`LATENCY_US_MAX`].
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_FIGURES)
        .expect("constant histogram bounds are valid")
}

/// Records `latency` in `h`, clamped to the histogram's range.
pub fn record(h: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(LATENCY_US_MAX);
    let _ = h.record(us.clamp(1, LATENCY_US_MAX));
}

/// Counts of outcomes, in items (reservations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Done as asked (reserved; for a lifecycle, reserved and resolved).
    pub ok: u64,
    /// Refused by the ledger's rules (out of stock, not pending).
    pub refused: u64,
    /// Of `refused`: by Holdfast's pre-filter, before the log.
    pub prefiltered: u64,
    /// Shed with `RESOURCE_EXHAUSTED` (admission).
    pub shed: u64,
    /// Failed otherwise (transport, timeout, bug).
    pub errors: u64,
}

impl Tally {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.prefiltered += other.prefiltered;
        self.shed += other.shed;
        self.errors += other.errors;
    }
}

/// What one call got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Its items' outcomes.
    pub tally: Tally,
    /// The first error's text, for the report's notes.
    pub error: Option<String>,
}

impl Outcome {
    /// The outcome of a single-item call answered `reply`.
    pub fn of(reply: &Reply) -> Outcome {
        let mut tally = Tally::default();
        let mut error = None;
        match reply {
            Reply::Held(_) | Reply::Done => tally.ok = 1,
            Reply::Refused { prefilter } => {
                tally.refused = 1;
                tally.prefiltered = u64::from(*prefilter);
            }
            Reply::Shed => tally.shed = 1,
            Reply::Error(e) => {
                tally.errors = 1;
                error = Some(e.clone());
            }
        }
        Outcome { tally, error }
    }

    /// The outcome of a batch call.
    pub fn of_batch(reply: &BatchReply) -> Outcome {
        Outcome {
            tally: Tally {
                ok: reply.held,
                refused: reply.refused,
                prefiltered: 0,
                shed: reply.shed,
                errors: reply.errors,
            },
            error: (reply.errors > 0).then(|| "batch items failed".to_string()),
        }
    }

    /// A call that did not answer within `timeout`.
    pub fn timed_out(timeout: Duration) -> Outcome {
        Outcome::of(&Reply::Error(format!(
            "no answer within {} s",
            timeout.as_secs()
        )))
    }
}

/// What one cell (scenario × system × load) measured.
#[derive(Debug, Clone)]
pub struct CellStats {
    /// Outcomes of the calls started in the measured window.
    pub tally: Tally,
    /// Latency of fully successful calls, µs.
    pub latency_us: Histogram<u64>,
    /// Latency of refused calls, µs.
    pub refusal_us: Histogram<u64>,
    /// The measured window.
    pub elapsed: Duration,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

impl Default for CellStats {
    fn default() -> Self {
        CellStats {
            tally: Tally::default(),
            latency_us: histogram(),
            refusal_us: histogram(),
            elapsed: Duration::ZERO,
            first_error: None,
        }
    }
}

impl CellStats {
    /// Counts `outcome` of a call that took `latency`.
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        let t = &outcome.tally;
        if t.errors == 0 && t.shed == 0 && t.refused == 0 {
            record(&mut self.latency_us, latency);
        } else if t.refused > 0 {
            record(&mut self.refusal_us, latency);
        }
        self.tally.add(t);
        if self.first_error.is_none() {
            self.first_error = outcome.error;
        }
    }

    /// Adds another caller's figures (same window).
    pub fn merge(&mut self, other: CellStats) {
        self.tally.add(&other.tally);
        // Same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.refusal_us.add(&other.refusal_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Successful items per second of the window.
    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.tally.ok as f64 / s
        } else {
            0.0
        }
    }
}

/// Latency percentiles of one histogram, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Calls recorded.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Summary {
    /// The percentiles of `h` (µs).
    pub fn of(h: &Histogram<u64>) -> Summary {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
        Summary {
            count: h.len(),
            p50_ms: ms(0.5),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1_000.0,
        }
    }
}

/// `(latency ms, fraction of calls at or below it)` at [`CDF_QUANTILES`].
pub fn cdf(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    CDF_QUANTILES
        .iter()
        .map(|&q| (h.value_at_quantile(q) as f64 / 1_000.0, q))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_do_not_enter_the_success_latency() {
        let mut cell = CellStats::default();
        cell.record(
            Outcome::of(&Reply::Held("1-1".into())),
            Duration::from_millis(8),
        );
        cell.record(
            Outcome::of(&Reply::Refused { prefilter: true }),
            Duration::from_micros(100),
        );
        cell.record(
            Outcome::of(&Reply::Error("boom".into())),
            Duration::from_secs(1),
        );
        assert_eq!(cell.latency_us.len(), 1);
        assert_eq!(cell.refusal_us.len(), 1);
        assert_eq!(cell.tally.prefiltered, 1);
        assert_eq!(cell.tally.errors, 1);
        assert_eq!(cell.first_error.as_deref(), Some("boom"));
        cell.elapsed = Duration::from_secs(2);
        assert_eq!(cell.throughput(), 0.5);
        let s = Summary::of(&cell.latency_us);
        assert!((s.p50_ms - 8.0).abs() < 0.01, "{s:?}");
    }
}
