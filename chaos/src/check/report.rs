//! The checker's answer: counts per violation class, the details behind
//! them, each row's linearizability verdict and the availability figures.

use super::availability::Availability;
use crate::linear::{RowResult, RowVerdict};
use std::fmt::Write as _;

/// Details shown per class in [`Report::render`]; the counts are always
/// complete.
pub const DETAILS_SHOWN_PER_CLASS_MAX: usize = 50;

/// Which promise a violation breaks (design §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// §1.1/§1.2: more promised or sold than the stock, or `held` not the
    /// sum of pending holds.
    Oversell,
    /// §1.4: an acknowledged change is missing from a replica.
    Lost,
    /// §1.3: a request applied or answered twice, a reservation resolved
    /// twice.
    Duplicate,
    /// §1.5: replicas hold different states.
    Diverged,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 4] = [
        Class::Oversell,
        Class::Lost,
        Class::Duplicate,
        Class::Diverged,
    ];

    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Class::Oversell => "oversell",
            Class::Lost => "lost",
            Class::Duplicate => "duplicate",
            Class::Diverged => "diverged",
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The promise broken.
    pub class: Class,
    /// What was found, naming rows, ids, history lines and replicas.
    pub detail: String,
}

impl Violation {
    /// A finding of `class`.
    pub fn new(class: Class, detail: String) -> Self {
        Violation { class, detail }
    }
}

/// The linearizability verdict over all rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linearizable {
    /// Every row has a linearization.
    Yes,
    /// Some row has none.
    No,
    /// No row failed, but some search ran out of budget.
    Unknown,
}

impl Linearizable {
    /// Name used in the summary line.
    pub fn name(self) -> &'static str {
        match self {
            Linearizable::Yes => "yes",
            Linearizable::No => "no",
            Linearizable::Unknown => "unknown",
        }
    }
}

/// Everything the checker found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Invocations recorded (attempts, retries included).
    pub ops: usize,
    /// Faults started.
    pub faults: usize,
    /// Replica states given.
    pub replicas: usize,
    /// Findings, in check order.
    pub violations: Vec<Violation>,
    /// Per-row linearizability, in row order.
    pub rows: Vec<RowVerdict>,
    /// Unavailability windows after faults.
    pub availability: Availability,
    /// Operations not judged and assumptions used, for people.
    pub notes: Vec<String>,
}

impl Report {
    /// Findings of one class.
    pub fn count(&self, class: Class) -> usize {
        self.violations.iter().filter(|v| v.class == class).count()
    }

    /// `No` if a row is not linearizable, else `Unknown` if a search ran
    /// out of budget, else `Yes`.
    pub fn linearizable(&self) -> Linearizable {
        let results = || self.rows.iter().map(|r| &r.result);
        if results().any(|r| matches!(r, RowResult::NotLinearizable(_))) {
            Linearizable::No
        } else if results().any(|r| *r == RowResult::BudgetExhausted) {
            Linearizable::Unknown
        } else {
            Linearizable::Yes
        }
    }

    /// Whether all replicas are equal (vacuously with fewer than two).
    pub fn converged(&self) -> bool {
        self.count(Class::Diverged) == 0
    }

    /// No violation of any kind and every row decided linearizable.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.linearizable() == Linearizable::Yes
    }

    /// The one-line summary, exactly:
    /// `chaos: <ops> ops, <faults> faults, oversell=<n> lost=<n>
    /// duplicate=<n> linearizable=yes|no|unknown converged=yes|no,
    /// unavailable p99=<ms>` (on one line; p99 in whole milliseconds, 0
    /// without faults).
    pub fn summary_line(&self) -> String {
        format!(
            "chaos: {} ops, {} faults, oversell={} lost={} duplicate={} linearizable={} converged={}, unavailable p99={}",
            self.ops,
            self.faults,
            self.count(Class::Oversell),
            self.count(Class::Lost),
            self.count(Class::Duplicate),
            self.linearizable().name(),
            if self.converged() { "yes" } else { "no" },
            self.availability.p99_ms(),
        )
    }

    /// The summary line followed by every finding, the rows that are not
    /// linearizable or undecided, availability and notes.
    pub fn render(&self) -> String {
        let mut out = self.summary_line();
        out.push('\n');
        for class in Class::ALL {
            let found: Vec<&Violation> = self
                .violations
                .iter()
                .filter(|v| v.class == class)
                .collect();
            if found.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{} ({}):", class.name(), found.len());
            for v in found.iter().take(DETAILS_SHOWN_PER_CLASS_MAX) {
                let _ = writeln!(out, "  - {}", v.detail);
            }
            if found.len() > DETAILS_SHOWN_PER_CLASS_MAX {
                let more = found.len() - DETAILS_SHOWN_PER_CLASS_MAX;
                let _ = writeln!(out, "  ... and {more} more");
            }
        }
        self.render_rows(&mut out);
        self.availability.render(&mut out);
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nnotes ({}):", self.notes.len());
            for note in &self.notes {
                let _ = writeln!(out, "  - {note}");
            }
        }
        out
    }

    fn render_rows(&self, out: &mut String) {
        let steps: u64 = self.rows.iter().map(|r| r.steps).sum();
        let _ = writeln!(
            out,
            "\nlinearizability: {} rows checked, {steps} search steps",
            self.rows.len()
        );
        for r in &self.rows {
            let (sku, location) = &r.row;
            match &r.result {
                RowResult::Linearizable => {}
                RowResult::NotLinearizable(why) => {
                    let _ = writeln!(out, "  - row {sku}/{location}: NOT linearizable: {why}");
                }
                RowResult::BudgetExhausted => {
                    let _ = writeln!(
                        out,
                        "  - row {sku}/{location}: unknown (budget exhausted after {} steps, {} operations)",
                        r.steps, r.ops
                    );
                }
            }
        }
    }
}
