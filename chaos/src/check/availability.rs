//! How long each shard could not take a reservation after each fault.
//!
//! For every fault start `f` and every shard `s` that ever took a reserve,
//! the *window* is the longest interval inside `[f, end]` that contains no
//! `Ok` answer to a reserve on `s`, where `end` is the next fault start or,
//! if earlier, the last reserve invoke of the history (after it nobody
//! asked, so silence proves nothing). The window counts from the fault, so
//! a shard that never answered again gets `end - f`.
//!
//! A reserve belongs to the shard the harness recorded in its `shard`
//! field or, failing that, the shard in its reservation id
//! (`"<shard>-<engine id>"`). An acknowledged cross-shard reserve was
//! served by every shard its joined id names (`"0-4+5-17"`: shards 0 and
//! 5), so it counts for each. Percentiles are nearest-rank over all
//! (fault, shard) windows.

use crate::history::{FaultPhase, Op, OpResult};
use crate::parts;
use crate::timeline::{Outcome, Timeline};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The longest gap without a successful reserve on one shard after one
/// fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// When the fault started.
    pub fault_us: u64,
    /// The fault, for people (`kill node-2`).
    pub fault: String,
    /// The shard.
    pub shard: String,
    /// The longest gap, µs.
    pub longest_us: u64,
}

/// All windows and their percentiles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Availability {
    /// One per (fault, shard), in time then shard order.
    pub windows: Vec<Window>,
    /// Median window, µs (0 without windows).
    pub p50_us: u64,
    /// 99th percentile window, µs (0 without windows).
    pub p99_us: u64,
}

impl Availability {
    /// The 99th percentile in whole milliseconds, rounded to nearest.
    pub fn p99_ms(&self) -> u64 {
        self.p99_us.saturating_add(500) / 1000
    }

    /// Appends a section for people.
    pub fn render(&self, out: &mut String) {
        if self.windows.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nunavailability after faults: {} windows, p50={:.1} ms p99={:.1} ms",
            self.windows.len(),
            self.p50_us as f64 / 1000.0,
            self.p99_us as f64 / 1000.0
        );
        for w in &self.windows {
            let _ = writeln!(
                out,
                "  - {} at {} us, shard {}: {:.1} ms",
                w.fault,
                w.fault_us,
                w.shard,
                w.longest_us as f64 / 1000.0
            );
        }
    }
}

/// The value at percentile `p` (0..=100) of sorted `values`, nearest rank.
pub fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as u64).div_ceil(100).max(1);
    sorted[rank as usize - 1]
}

fn shards_of(op: &Op, outcome: &Outcome) -> Vec<String> {
    if let Op::Reserve { shard: Some(s), .. } = op {
        return vec![s.to_string()];
    }
    match outcome {
        Outcome::Ok {
            result: OpResult::Reserved { reservation_id, .. },
            ..
        } => parts::part_ids(reservation_id)
            .into_iter()
            .filter_map(|p| p.split_once('-').map(|(s, _)| s.to_string()))
            .collect(),
        _ => Vec::new(),
    }
}

/// The longest gap in `[from, to]` between the sorted `oks`.
fn longest_gap(from: u64, to: u64, oks: &[u64]) -> u64 {
    let mut last = from;
    let mut longest = 0;
    for &t in oks.iter().filter(|&&t| t >= from && t <= to) {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(to - last)
}

/// Computes the windows of a timeline.
pub fn check(timeline: &Timeline) -> Availability {
    let mut oks: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut last_invoke = None;
    for op in &timeline.ops {
        if !matches!(op.op, Op::Reserve { .. }) {
            continue;
        }
        let invoked = op.attempts.iter().map(|a| a.invoke_us).max();
        last_invoke = last_invoke.max(invoked);
        if let Outcome::Ok { at_us, .. } = &op.outcome {
            for shard in shards_of(&op.op, &op.outcome) {
                oks.entry(shard).or_default().push(*at_us);
            }
        }
    }
    oks.values_mut().for_each(|v| v.sort_unstable());
    let starts: Vec<_> = timeline
        .faults
        .iter()
        .filter(|f| f.phase == FaultPhase::Start)
        .collect();
    let mut windows = Vec::new();
    for (i, fault) in starts.iter().enumerate() {
        let next = starts.get(i + 1).map_or(u64::MAX, |f| f.time_us);
        let end = next.min(last_invoke.unwrap_or(0));
        if end < fault.time_us {
            continue;
        }
        for (shard, times) in &oks {
            windows.push(Window {
                fault_us: fault.time_us,
                fault: format!("{} {}", fault.kind, fault.target),
                shard: shard.clone(),
                longest_us: longest_gap(fault.time_us, end, times),
            });
        }
    }
    let mut sorted: Vec<u64> = windows.iter().map(|w| w.longest_us).collect();
    sorted.sort_unstable();
    Availability {
        p50_us: percentile(&sorted, 50),
        p99_us: percentile(&sorted, 99),
        windows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 99), 0);
        assert_eq!(percentile(&[7], 50), 7);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[1, 2, 3], 99), 3);
    }

    #[test]
    fn gaps_count_from_the_fault_to_the_end() {
        assert_eq!(longest_gap(100, 1_000, &[50, 150, 900]), 750);
        assert_eq!(longest_gap(100, 1_000, &[]), 900);
        assert_eq!(longest_gap(100, 1_000, &[120, 130]), 870);
    }
}
