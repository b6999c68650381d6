//! Whether operations of unknown outcome took effect, where arithmetic on
//! the final state decides it.
//!
//! An open operation stays a candidate of the search until the end, so
//! every one the final state can pin down (to "never" or "certainly")
//! keeps the search smaller. This module holds the verdict type and the
//! one rule that needs more than a lookup: which adjustments of unknown
//! outcome can add up to the stock the replicas show.

use std::collections::BTreeSet;

/// Whether an operation of unknown outcome (or an expiry) took effect, as
/// far as the final state tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// It certainly did not: left out of the row history.
    Never,
    /// It may have: open, any time after its call, or never.
    Maybe,
    /// It certainly did: any time after its call, before the final read.
    Certain,
}

/// Distinct subset sums tracked before the rule gives up (and leaves every
/// adjustment `Maybe`): bounds time and memory to a few MB per row.
pub const SUBSET_SUMS_MAX: usize = 1 << 16;

/// Adds `delta` to the subset sums `sums` (each subset with or without
/// it); `None` past [`SUBSET_SUMS_MAX`].
fn with_delta(sums: &BTreeSet<i64>, delta: i64) -> Option<BTreeSet<i64>> {
    let mut next = sums.clone();
    next.extend(sums.iter().map(|s| s + delta));
    (next.len() <= SUBSET_SUMS_MAX).then_some(next)
}

/// Given the deltas of a row's adjustments of unknown outcome and the net
/// units they must have added (`target`: the replicas' `on_hand + sold`
/// minus the acknowledged deltas), which of them took effect: `Never` if
/// no subset reaching `target` contains it, `Certain` if every one does.
/// `None` if no subset reaches `target` at all (the lost-ack and duplicate
/// rules report that) or the sums grow too many.
pub fn adjustments_by_sum(deltas: &[i64], target: i64) -> Option<Vec<Presence>> {
    // Subset sums of the deltas before (after) each position, so that the
    // sums of "all but i" are prefix[i] + suffix[i + 1].
    let mut prefix = vec![BTreeSet::from([0])];
    for &d in deltas {
        let next = with_delta(prefix.last()?, d)?;
        prefix.push(next);
    }
    let mut suffix = vec![BTreeSet::from([0])];
    for &d in deltas.iter().rev() {
        let next = with_delta(suffix.last()?, d)?;
        suffix.push(next);
    }
    suffix.reverse();
    if !prefix[deltas.len()].contains(&target) {
        return None;
    }
    let reaches = |i: usize, want: i64| {
        prefix[i]
            .iter()
            .any(|a| suffix[i + 1].contains(&(want - a)))
    };
    let pinned = (0..deltas.len())
        .map(
            |i| match (reaches(i, target - deltas[i]), reaches(i, target)) {
                (false, _) => Presence::Never,
                (true, false) => Presence::Certain,
                (true, true) => Presence::Maybe,
            },
        )
        .collect();
    Some(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Presence::*;

    #[test]
    fn sums_pin_what_they_can() {
        assert_eq!(adjustments_by_sum(&[3, 5], 0), Some(vec![Never, Never]));
        assert_eq!(adjustments_by_sum(&[3, 5], 8), Some(vec![Certain, Certain]));
        assert_eq!(adjustments_by_sum(&[3, 5], 5), Some(vec![Never, Certain]));
        assert_eq!(
            adjustments_by_sum(&[3, -3, 4], 4),
            Some(vec![Maybe, Maybe, Certain])
        );
        assert_eq!(adjustments_by_sum(&[3, 5], 4), None);
        assert_eq!(adjustments_by_sum(&[], 0), Some(vec![]));
    }
}
