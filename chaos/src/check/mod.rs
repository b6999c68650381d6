//! The checks of a chaos run (design §1, §8), each in its own module, and
//! [`check`], which runs them all into one [`Report`].
//!
//! | module | promise |
//! |---|---|
//! | [`oversell`] | §1.1 no oversell, §1.2 conservation |
//! | [`lost`] | §1.4 no acknowledged change lost |
//! | [`duplicate`] | §1.3 at most once |
//! | [`convergence`] | §1.5 replicas equal |
//! | [`crate::linear`] | per-row linearizability |
//! | [`availability`] | how long shards refused service after faults |
//!
//! The exact rules are in `docs/chaos-checker.md`.

pub mod availability;
pub mod convergence;
pub mod duplicate;
pub mod lost;
pub mod oversell;
pub mod report;

use crate::facts::Facts;
use crate::final_state::FinalState;
use crate::history::{Entry, FaultPhase};
use crate::linear::{self, BUDGET_STEPS_PER_ROW_DEFAULT};
use crate::timeline::{self, Timeline, TimelineError};
pub use report::{Class, Linearizable, Report, Violation};
use std::collections::BTreeMap;

/// Knobs of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckConfig {
    /// Model steps the linearizability search may take per row before it
    /// answers "unknown".
    pub budget_steps_per_row: u64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            budget_steps_per_row: BUDGET_STEPS_PER_ROW_DEFAULT,
        }
    }
}

/// Runs every check.
pub fn check(timeline: &Timeline, final_state: &FinalState, config: CheckConfig) -> Report {
    let facts = Facts::gather(timeline, final_state);
    let mut violations = oversell::check(&facts);
    violations.extend(lost::check(&facts));
    violations.extend(duplicate::check(&facts));
    violations.extend(convergence::check(&facts));
    let (rows, mut notes) = linear::check_rows(&facts, config.budget_steps_per_row);
    if final_state.replicas.is_empty() {
        notes.push(
            "no replica state given: the final-state rules were skipped and every reservation may have expired"
                .into(),
        );
    }
    Report {
        ops: timeline.invocations,
        faults: timeline
            .faults
            .iter()
            .filter(|f| f.phase == FaultPhase::Start)
            .count(),
        replicas: final_state.replicas.len(),
        violations,
        rows,
        availability: availability::check(timeline),
        notes,
    }
}

/// Interprets recorded entries and runs every check.
pub fn check_entries(
    entries: &[Entry],
    final_state: &FinalState,
    config: CheckConfig,
) -> Result<Report, TimelineError> {
    Ok(check(&timeline::build(entries)?, final_state, config))
}

/// Findings about items (a row, a reservation) gathered over replicas, so
/// one broken item counts once however many replicas show it.
pub(crate) struct PerItem {
    class: Class,
    items: BTreeMap<String, Vec<String>>,
}

impl PerItem {
    pub(crate) fn new(class: Class) -> Self {
        PerItem {
            class,
            items: BTreeMap::new(),
        }
    }

    /// Records that `item` is wrong, as `how` says (usually naming a
    /// replica).
    pub(crate) fn add(&mut self, item: String, how: String) {
        self.items.entry(item).or_default().push(how);
    }

    pub(crate) fn into_violations(self) -> impl Iterator<Item = Violation> {
        let class = self.class;
        self.items
            .into_iter()
            .map(move |(item, hows)| Violation::new(class, format!("{item}: {}", hows.join("; "))))
    }
}
