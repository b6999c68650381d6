//! What a run measures: the [`Options`] from the command line, the
//! [`Plan`] of a mode (levels, cell lengths, catalogue), and the list of
//! cells (scenario × line count × load) in the order they run.

use crate::bench::scenario::{Catalogue, Popularity, Scenario};
use crate::bench::system::SystemId;
use std::time::Duration;

/// The open-loop rate of the issue's aim, per second.
pub const OPEN_RATE_AIM: u64 = 10_000;

/// What to run, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Systems to start.
    pub systems: Vec<SystemId>,
    /// CI's short run.
    pub quick: bool,
    /// Closed-loop levels instead of the mode's.
    pub levels: Option<Vec<usize>>,
    /// Measured seconds per cell instead of the mode's.
    pub seconds: Option<f64>,
    /// Open-loop arrivals per second instead of the mode's.
    pub open_rate: Option<u64>,
    /// Flash buyers.
    pub buyers: usize,
    /// Catalogue SKUs instead of the mode's.
    pub skus: Option<u32>,
    /// Whether missing peers may be installed with apt.
    pub install: bool,
    /// The command line, for the report.
    pub command: String,
}

/// The numbers of one mode.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) levels_hot: Vec<usize>,
    pub(crate) levels_other: Vec<usize>,
    pub(crate) levels_batch: Vec<usize>,
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
    pub(crate) open_rate: u64,
    pub(crate) open_measure: Duration,
    pub(crate) catalogue: Catalogue,
    pub(crate) uses_catalogue: bool,
}

impl Plan {
    pub(crate) fn of(o: &Options) -> Plan {
        let mut plan = if o.quick {
            Plan {
                levels_hot: vec![1, 64, 256],
                levels_other: vec![64],
                levels_batch: vec![16],
                warmup: Duration::from_millis(250),
                measure: Duration::from_secs(1),
                open_rate: 2_000,
                open_measure: Duration::from_secs(2),
                catalogue: Catalogue { skus: 2_000 },
                uses_catalogue: true,
            }
        } else {
            Plan {
                levels_hot: vec![1, 16, 64, 256, 1024],
                levels_other: vec![1, 16, 64, 256, 1024],
                levels_batch: vec![1, 4, 16, 64],
                warmup: Duration::from_secs(1),
                measure: Duration::from_secs(5),
                open_rate: OPEN_RATE_AIM,
                open_measure: Duration::from_secs(10),
                catalogue: Catalogue { skus: 100_000 },
                uses_catalogue: true,
            }
        };
        plan.uses_catalogue = o
            .scenarios
            .iter()
            .any(|s| matches!(s.popularity(), Popularity::Uniform | Popularity::Zipf));
        if let Some(levels) = &o.levels {
            plan.levels_hot = levels.clone();
            plan.levels_other = levels.clone();
            plan.levels_batch = levels.clone();
        }
        if let Some(s) = o.seconds {
            plan.measure = Duration::from_secs_f64(s);
            plan.open_measure = Duration::from_secs_f64(s);
        }
        if let Some(r) = o.open_rate {
            plan.open_rate = r;
        }
        if let Some(skus) = o.skus {
            plan.catalogue = Catalogue { skus };
        }
        plan
    }

    /// The catalogue to stock: none when no scenario of the run draws from
    /// it (`hot`, `flash` and `batch` use their own rows), which saves
    /// stocking 400,000 rows one `AdjustStock` at a time.
    pub(crate) fn stocked(&self) -> Catalogue {
        if self.uses_catalogue {
            self.catalogue
        } else {
            Catalogue { skus: 0 }
        }
    }

    fn levels(&self, s: Scenario) -> &[usize] {
        match s {
            Scenario::Hot => &self.levels_hot,
            Scenario::Batch => &self.levels_batch,
            _ => &self.levels_other,
        }
    }
}

/// A cell's load.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Load {
    Closed(usize),
    Open(u64),
    Flash,
}

/// One planned cell, without its system (every live system runs it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cell {
    pub(crate) scenario: Scenario,
    pub(crate) lines: usize,
    pub(crate) load: Load,
}

pub(crate) fn cells(o: &Options, plan: &Plan) -> Vec<Cell> {
    let mut out = Vec::new();
    for &scenario in &o.scenarios {
        for &lines in scenario.line_counts() {
            match scenario {
                Scenario::Flash => out.push(Cell {
                    scenario,
                    lines,
                    load: Load::Flash,
                }),
                Scenario::Open => out.push(Cell {
                    scenario,
                    lines,
                    load: Load::Open(plan.open_rate),
                }),
                _ => {
                    for &c in plan.levels(scenario) {
                        out.push(Cell {
                            scenario,
                            lines,
                            load: Load::Closed(c),
                        });
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(quick: bool) -> Options {
        Options {
            scenarios: Scenario::ALL.to_vec(),
            systems: SystemId::ALL.to_vec(),
            quick,
            levels: None,
            seconds: None,
            open_rate: None,
            buyers: 10_000,
            skus: None,
            install: false,
            command: String::new(),
        }
    }

    #[test]
    fn the_full_plan_has_the_issues_levels_and_catalogue() {
        let o = options(false);
        let plan = Plan::of(&o);
        assert_eq!(plan.levels_hot, vec![1, 16, 64, 256, 1024]);
        assert_eq!(plan.catalogue.skus, 100_000);
        assert_eq!(plan.open_rate, OPEN_RATE_AIM);
        let cells = cells(&o, &plan);
        // hot 5, uniform 2×5, zipf 2×5, flash 1, lifecycle 5, batch 4, open 1.
        assert_eq!(cells.len(), 5 + 10 + 10 + 1 + 5 + 4 + 1);
    }

    #[test]
    fn quick_mode_is_small() {
        let o = options(true);
        let plan = Plan::of(&o);
        let cells = cells(&o, &plan);
        assert!(cells.len() <= 12, "{} cells", cells.len());
        assert!(plan.measure <= Duration::from_secs(1));
    }
}
