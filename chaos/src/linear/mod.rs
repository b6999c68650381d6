//! Linearizability of each stock row (design §8): is there one order of the
//! row's operations, consistent with real time, in which every answer the
//! clients saw is what the ledger's rules give?
//!
//! Rows are checked independently (P-compositionality, Herlihy & Wing):
//! [`project`] cuts the history into row histories, [`row_model`] is the
//! row's sequential specification, [`search`] the bounded Wing–Gong /
//! Porcupine search.

pub mod bitset;
pub mod pin;
pub mod project;
pub mod row_model;
pub mod search;

use crate::facts::{Facts, RowKey};
use project::{RowHistory, Source};
use search::Verdict;

/// The step budget per row and search phase when none is given: about a
/// second of search and a few hundred MB of memoized states at worst,
/// which a linearizable history of thousands of operations per row needs
/// only a fraction of.
pub const BUDGET_STEPS_PER_ROW_DEFAULT: u64 = 2_000_000;

/// What the search found for one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowResult {
    /// An order exists.
    Linearizable,
    /// No order exists; why, for people.
    NotLinearizable(String),
    /// The budget ran out first.
    BudgetExhausted,
}

/// One row's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowVerdict {
    /// The row.
    pub row: RowKey,
    /// Operations in its history (pseudo-operations included).
    pub ops: usize,
    /// Model steps the search took.
    pub steps: u64,
    /// The verdict.
    pub result: RowResult,
}

fn describe_source(facts: &Facts<'_>, source: Source) -> String {
    match source {
        Source::Op(k) => facts.op(k).describe(),
        Source::Expiry(k) => format!("expiry of the hold made by {}", facts.op(k).describe()),
        Source::Compensation(k) => format!(
            "the coordinator's release of a part held by {}",
            facts.op(k).describe()
        ),
        Source::Final => "the replicas' final state".into(),
    }
}

fn explain(
    facts: &Facts<'_>,
    history: &RowHistory,
    prefix: &[usize],
    state: &row_model::RowState,
    stuck: usize,
) -> String {
    let last = prefix.last().map_or("nothing".into(), |&i| {
        format!(
            "{} [{}]",
            describe_source(facts, history.sources[i]),
            history.ops[i].op
        )
    });
    format!(
        "no order explains {} [{}]. The longest explainable prefix places {} of the row's {} \
         operations, last {last}, leaving {state}",
        describe_source(facts, history.sources[stuck]),
        history.ops[stuck].op,
        prefix.len(),
        history.ops.len(),
    )
}

/// Checks one row history.
pub fn check_row(facts: &Facts<'_>, history: &RowHistory, budget_steps: u64) -> RowVerdict {
    let limits = search::Limits {
        budget_steps,
        // Operations that certainly took effect are due by `end + 1`.
        floating_from_us: facts.timeline.end_us + 1,
    };
    let outcome = search::search(&history.model, &history.ops, limits);
    let result = match outcome.verdict {
        Verdict::Linearizable { .. } => RowResult::Linearizable,
        Verdict::NotLinearizable {
            longest_prefix,
            state,
            stuck,
        } => RowResult::NotLinearizable(explain(facts, history, &longest_prefix, &state, stuck)),
        Verdict::BudgetExhausted => RowResult::BudgetExhausted,
    };
    RowVerdict {
        row: history.row.clone(),
        ops: history.ops.len(),
        steps: outcome.steps,
        result,
    }
}

/// Checks every row the history touches, in row order; with notes about
/// operations that could not be judged.
pub fn check_rows(facts: &Facts<'_>, budget_steps: u64) -> (Vec<RowVerdict>, Vec<String>) {
    let (histories, notes) = project::project(facts);
    let verdicts = histories
        .iter()
        .map(|h| check_row(facts, h, budget_steps))
        .collect();
    (verdicts, notes)
}
