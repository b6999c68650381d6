//! The report of one run: every row (scenario × system × load), the flash
//! sales, the commit-latency comparison and the aims, as JSON (for
//! scripts) and Markdown (for people). Ratios are taken only between rows
//! of the same run and the same cell, so they hold on a noisy machine.

use crate::bench::flash::FlashResult;
use crate::bench::stats::{Summary, Tally};
use crate::bench::system::SystemId;
use serde::Serialize;
use std::fmt::Write;

/// One cell: a scenario's orders of `lines` lines, one system, one load.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// Lines per order.
    pub lines: usize,
    /// Reservations per call (1: `Reserve`; more: `ReserveBatch`).
    pub batch: usize,
    /// System name.
    pub system: String,
    /// `closed` or `open`.
    pub load: String,
    /// Concurrent callers (closed loop).
    pub callers: Option<usize>,
    /// Arrivals per second (open loop).
    pub rate_per_s: Option<u64>,
    /// Measured window, s.
    pub seconds: f64,
    /// Outcomes, in reservations.
    pub tally: Tally,
    /// Successful reservations (lifecycles, for `lifecycle`) per second.
    pub throughput_per_s: f64,
    /// Latency of successful calls.
    pub latency: Summary,
    /// Latency of refused calls.
    pub refusal_latency: Summary,
    /// Latency CDF of successful calls: (ms, fraction).
    pub cdf: Vec<(f64, f64)>,
    /// Throughput ÷ the `postgres` row of the same cell (Holdfast rows).
    pub vs_postgres: Option<f64>,
    /// Throughput ÷ the `redis-always` row of the same cell.
    pub vs_redis_lua: Option<f64>,
    /// Throughput ÷ the `floor` row of the same cell.
    pub vs_floor: Option<f64>,
    /// The first error, if any.
    pub first_error: Option<String>,
}

impl Row {
    /// Whether `other` measured the same cell (another system).
    fn same_cell(&self, other: &Row) -> bool {
        self.scenario == other.scenario
            && self.lines == other.lines
            && self.batch == other.batch
            && self.load == other.load
            && self.callers == other.callers
            && self.rate_per_s == other.rate_per_s
    }

    /// The load as the tables print it.
    pub fn load_label(&self) -> String {
        match (self.callers, self.rate_per_s) {
            (Some(c), _) => c.to_string(),
            (None, Some(r)) => format!("{r}/s open"),
            (None, None) => "-".into(),
        }
    }
}

/// A system's part in the run.
#[derive(Debug, Clone, Serialize)]
pub struct SystemNote {
    /// System name.
    pub system: String,
    /// Whether it ran.
    pub ran: bool,
    /// How it was set up, or why it was skipped.
    pub note: String,
}

/// Commit latency at one caller against its floor.
#[derive(Debug, Clone, Serialize)]
pub struct CommitLatency {
    /// The Holdfast system.
    pub system: String,
    /// Its `hot` p50 at 1 caller, ms.
    pub commit_p50_ms: f64,
    /// The fsync probe's p50, ms.
    pub fsync_p50_ms: f64,
    /// The floor's `hot` p50 at 1 caller (one loopback gRPC round trip), ms.
    pub rtt_p50_ms: f64,
    /// `commit ÷ (fsync + rtt)` (aim: ≤ 1.5).
    pub ratio: f64,
}

/// One of the aims, measured.
#[derive(Debug, Clone, Serialize)]
pub struct Aim {
    /// The aim.
    pub aim: String,
    /// What this run measured.
    pub measured: String,
    /// Met, not met, or not measured in this run (`None`).
    pub met: Option<bool>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command line.
    pub command: String,
    /// `git describe --dirty` of the source tree the binary was built
    /// from, read when the run started (where that tree still exists).
    pub commit: Option<String>,
    /// When the run started, Unix seconds.
    pub started_at_unix_s: u64,
    /// Wall time of the run, s.
    pub wall_s: f64,
    /// CPUs the machine shows.
    pub cpus: usize,
    /// 1-minute load average at the start and the end.
    pub load_avg: (f64, f64),
    /// `--quick`.
    pub quick: bool,
    /// SKUs of the catalogue (each at 4 locations).
    pub catalogue_skus: u32,
    /// Measured seconds per closed-loop cell (after warm-up).
    pub cell_seconds: f64,
    /// Flash buyers.
    pub flash_buyers: usize,
    /// Each system: ran or skipped, and why.
    pub systems: Vec<SystemNote>,
    /// The cells.
    pub rows: Vec<Row>,
    /// The flash sales.
    pub flash: Vec<FlashResult>,
    /// The fsync probe in the clusters' directory.
    pub fsync_probe: Option<Summary>,
    /// Commit latency at 1 caller.
    pub commit_latency: Vec<CommitLatency>,
    /// The aims.
    pub aims: Vec<Aim>,
    /// Anything a reader should know.
    pub notes: Vec<String>,
}

/// Fills every Holdfast row's ratios from the rows of the same cell.
pub fn fill_ratios(rows: &mut [Row]) {
    let snapshot = rows.to_vec();
    let ratio = |row: &Row, peer: SystemId| {
        snapshot
            .iter()
            .find(|r| r.system == peer.name() && r.same_cell(row))
            .filter(|r| r.throughput_per_s > 0.0)
            .map(|r| row.throughput_per_s / r.throughput_per_s)
    };
    for row in rows.iter_mut() {
        let holdfast = SystemId::parse(&row.system).is_ok_and(SystemId::is_holdfast);
        if holdfast {
            row.vs_postgres = ratio(row, SystemId::Postgres);
            row.vs_redis_lua = ratio(row, SystemId::RedisAlways);
            row.vs_floor = ratio(row, SystemId::Floor);
        }
    }
}

fn find<'a>(
    rows: &'a [Row],
    scenario: &str,
    lines: usize,
    system: SystemId,
    callers: usize,
) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.scenario == scenario
            && r.lines == lines
            && r.system == system.name()
            && r.callers == Some(callers)
            && r.batch == 1
    })
}

fn aim(aim: &str, parts: Vec<(String, bool)>) -> Aim {
    Aim {
        aim: aim.to_string(),
        met: (!parts.is_empty()).then(|| parts.iter().all(|(_, ok)| *ok)),
        measured: if parts.is_empty() {
            "not measured in this run".into()
        } else {
            parts
                .into_iter()
                .map(|(s, _)| s)
                .collect::<Vec<_>>()
                .join("; ")
        },
    }
}

/// The aims, as far as this run measured them.
pub fn aims(report: &Report, open_rate_aim: u64) -> Vec<Aim> {
    use SystemId::*;
    let rows = &report.rows;
    let mut out = Vec::new();
    let mut parts = Vec::new();
    if let Some(h) = find(rows, "hot", 1, Holdfast3, 64) {
        if let Some(x) = h.vs_postgres {
            parts.push((format!("3-node ÷ PostgreSQL {x:.1}×"), x >= 20.0));
        }
        parts.push((
            format!("3-node p99 {:.2} ms", h.latency.p99_ms),
            h.latency.p99_ms < 10.0,
        ));
    }
    out.push(aim("hot@64: 3-node ≥ 20× PostgreSQL, p99 < 10 ms", parts));
    let mut parts = Vec::new();
    for callers in [64, 256] {
        for (system, need) in [(Holdfast1, 1.0), (Holdfast3, 0.5)] {
            if let Some(x) = find(rows, "hot", 1, system, callers).and_then(|r| r.vs_redis_lua) {
                parts.push((
                    format!("{}@{callers} ÷ Redis-Lua always {x:.2}", system.name()),
                    x >= need,
                ));
            }
        }
    }
    out.push(aim(
        "hot@64/256: 1-node ≥ Redis-Lua (always), 3-node ≥ half of it",
        parts,
    ));
    let mut parts = Vec::new();
    for r in rows.iter().filter(|r| {
        (r.scenario == "hot" || r.scenario == "uniform")
            && r.callers.is_some_and(|c| c >= 256)
            && r.batch == 1
    }) {
        if let Some(x) = r.vs_floor {
            parts.push((
                format!(
                    "{} {}-line {}@{} {x:.2}",
                    r.scenario,
                    r.lines,
                    r.system,
                    r.load_label()
                ),
                x >= 0.6,
            ));
        }
    }
    out.push(aim("hot/uniform @256+: ≥ 60% of the floor", parts));
    let mut parts = Vec::new();
    for f in report
        .flash
        .iter()
        .filter(|f| SystemId::parse(&f.system).is_ok_and(SystemId::is_holdfast))
    {
        parts.push((format!("{}: {} sold", f.system, f.sold), f.exact()));
        parts.push((
            format!(
                "{}: {:.0}% of refusals by the pre-filter",
                f.system,
                100.0 * f.prefilter_share()
            ),
            f.prefilter_share() >= 0.9,
        ));
        // The aim is read on the call that brought the refusal; the
        // buyer's whole wait (resends after admission refusals included)
        // is printed beside it.
        parts.push((
            format!(
                "{}: refusal call p99 {:.2} ms (buyer's wait p99 {:.2} ms)",
                f.system, f.refusal_call_latency.p99_ms, f.refusal_latency.p99_ms
            ),
            f.refusal_call_latency.p99_ms < 5.0,
        ));
    }
    out.push(aim(
        "flash: exactly 100 sold, ≥ 90% of refusals by the pre-filter, refusal p99 < 5 ms",
        parts,
    ));
    let best_batch = rows
        .iter()
        .filter(|r| r.system == Holdfast3.name() && r.batch > 1)
        .map(|r| r.throughput_per_s)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    let parts = best_batch
        .map(|x| vec![(format!("best 3-node {x:.0} reservations/s"), x >= 500_000.0)])
        .unwrap_or_default();
    out.push(aim(
        "ReserveBatch (100 per call) ≥ 500,000 reservations/s on 3 nodes",
        parts,
    ));
    let mut parts = Vec::new();
    for system in [Holdfast3, Postgres] {
        if let Some(r) = rows.iter().find(|r| {
            r.system == system.name() && r.scenario == "open" && r.rate_per_s == Some(open_rate_aim)
        }) {
            let kept_up = r.throughput_per_s >= 0.95 * open_rate_aim as f64 && r.tally.errors == 0;
            parts.push((
                format!(
                    "{}: {:.0}/s done, p95 {:.2} ms, {} errors",
                    r.system, r.throughput_per_s, r.latency.p95_ms, r.tally.errors
                ),
                kept_up && r.latency.p95_ms < 10.0,
            ));
        }
    }
    out.push(aim(
        &format!("open loop {open_rate_aim} three-line reservations/s: p95 < 10 ms on 3 nodes and on PostgreSQL"),
        parts,
    ));
    let parts = report
        .commit_latency
        .iter()
        .map(|c| (format!("{}: {:.2}×", c.system, c.ratio), c.ratio <= 1.5))
        .collect();
    out.push(aim(
        "commit latency at 1 caller ≤ 1.5 × (one fsync + one loopback RTT)",
        parts,
    ));
    out
}

/// Whether a flash row is the floor's: an echo that "sells" every buyer,
/// measured for the latency of the burst, never judged on its sales.
fn floor(f: &FlashResult) -> bool {
    f.system == SystemId::Floor.name()
}

fn ms(x: f64) -> String {
    format!("{x:.2}")
}

fn ratio(x: Option<f64>) -> String {
    x.map_or(String::new(), |x| format!("{x:.2}"))
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# holdfast-bench report\n");
    let _ = writeln!(md, "- command: `{}`", report.command);
    let _ = writeln!(
        md,
        "- commit: {}",
        report.commit.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        md,
        "- machine: {} CPUs, load average {:.1} at the start, {:.1} at the end; wall time {:.0} s",
        report.cpus, report.load_avg.0, report.load_avg.1, report.wall_s
    );
    let _ = writeln!(
        md,
        "- mode: {}; catalogue {} SKUs × 4 locations; {:.1} s measured per closed-loop cell; flash: {} buyers",
        if report.quick { "quick" } else { "full" },
        report.catalogue_skus,
        report.cell_seconds,
        report.flash_buyers
    );
    if let Some(f) = &report.fsync_probe {
        let _ = writeln!(
            md,
            "- fsync probe (4 KiB append + fdatasync, clusters' disk): p50 {} ms, p99 {} ms",
            ms(f.p50_ms),
            ms(f.p99_ms)
        );
    }
    let _ = writeln!(
        md,
        "\n## Systems\n\n| system | ran | setup or reason skipped |\n|---|---|---|"
    );
    for s in &report.systems {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            s.system,
            if s.ran { "yes" } else { "**skipped**" },
            s.note
        );
    }
    let mut sections: Vec<(String, usize, usize, String)> = Vec::new();
    for r in &report.rows {
        let key = (r.scenario.clone(), r.lines, r.batch, r.load.clone());
        if !sections.contains(&key) {
            sections.push(key);
        }
    }
    for (scenario, lines, batch, load) in sections {
        let unit = if scenario == "lifecycle" {
            "lifecycles/s"
        } else {
            "reservations/s"
        };
        let _ = writeln!(
            md,
            "\n## {scenario}: {lines}-line orders, {}, {load} loop\n\n| system | callers | {unit} | p50 ms | p99 ms | p99.9 ms | max ms | refused | shed | errors | ÷ PostgreSQL | ÷ Redis-Lua | ÷ floor |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            if batch > 1 { format!("ReserveBatch of {batch}") } else { "one per call".into() }
        );
        for r in report.rows.iter().filter(|r| {
            r.scenario == scenario && r.lines == lines && r.batch == batch && r.load == load
        }) {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.system,
                r.load_label(),
                r.throughput_per_s,
                ms(r.latency.p50_ms),
                ms(r.latency.p99_ms),
                ms(r.latency.p999_ms),
                ms(r.latency.max_ms),
                r.tally.refused,
                r.tally.shed,
                r.tally.errors,
                ratio(r.vs_postgres),
                ratio(r.vs_redis_lua),
                ratio(r.vs_floor)
            );
        }
    }
    if !report.flash.is_empty() {
        let _ = writeln!(md, "\n## flash: buyers race for the units, each success confirms\n\n| system | buyers | units | sold | refused | by pre-filter | admission refusals resent | shed at deadline | errors | retries | sold out after ms | all answered ms | refusal p50 ms | refusal p99 ms | refusal call p99 ms | pre-filter p99 ms | any answer p99 ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for f in &report.flash {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {}{} | {} | {} ({:.0}%) | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
                f.system,
                f.buyers,
                if floor(f) { "-".to_string() } else { f.units.to_string() },
                f.sold,
                if floor(f) {
                    " (echo)"
                } else if f.exact() {
                    ""
                } else {
                    " **WRONG**"
                },
                f.refused,
                f.refused_by_prefilter,
                100.0 * f.prefilter_share(),
                f.shed_resent,
                f.shed,
                f.errors,
                f.retries,
                f.sold_out_ms.map_or("-".into(), |x| format!("{x:.0}")),
                f.all_answered_ms,
                ms(f.refusal_latency.p50_ms),
                ms(f.refusal_latency.p99_ms),
                ms(f.refusal_call_latency.p99_ms),
                ms(f.prefilter_latency.p99_ms),
                ms(f.answer_latency.p99_ms)
            );
        }
    }
    if !report.commit_latency.is_empty() {
        let _ = writeln!(md, "\n## Commit latency at 1 caller\n\n| system | commit p50 ms | fsync p50 ms | gRPC round trip p50 ms | ratio |\n|---|---|---|---|---|");
        for c in &report.commit_latency {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.2} |",
                c.system,
                ms(c.commit_p50_ms),
                ms(c.fsync_p50_ms),
                ms(c.rtt_p50_ms),
                c.ratio
            );
        }
    }
    let _ = writeln!(md, "\n## Aims\n\n| aim | measured | met |\n|---|---|---|");
    for a in &report.aims {
        let met = match a.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        let _ = writeln!(md, "| {} | {} | {met} |", a.aim, a.measured);
    }
    if !report.notes.is_empty() {
        let _ = writeln!(md, "\n## Notes\n");
        for n in &report.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system: &str, callers: usize, throughput: f64) -> Row {
        Row {
            scenario: "hot".into(),
            lines: 1,
            batch: 1,
            system: system.into(),
            load: "closed".into(),
            callers: Some(callers),
            rate_per_s: None,
            seconds: 1.0,
            tally: Tally::default(),
            throughput_per_s: throughput,
            latency: Summary::default(),
            refusal_latency: Summary::default(),
            cdf: vec![],
            vs_postgres: None,
            vs_redis_lua: None,
            vs_floor: None,
            first_error: None,
        }
    }

    #[test]
    fn ratios_come_from_the_same_cell_only() {
        let mut rows = vec![
            row("floor", 64, 40_000.0),
            row("holdfast-3n", 64, 20_000.0),
            row("postgres", 64, 1_000.0),
            row("postgres", 256, 10.0),
            row("redis-always", 64, 0.0),
            row("holdfast-3n", 256, 30_000.0),
        ];
        fill_ratios(&mut rows);
        assert_eq!(rows[1].vs_floor, Some(0.5));
        assert_eq!(rows[1].vs_postgres, Some(20.0));
        // A peer that did nothing gives no ratio rather than infinity.
        assert_eq!(rows[1].vs_redis_lua, None);
        // No floor row at 256: no ratio.
        assert_eq!(rows[5].vs_floor, None);
        assert_eq!(rows[5].vs_postgres, Some(3_000.0));
        // Peers get no ratios of their own.
        assert_eq!(rows[2].vs_floor, None);
    }

    #[test]
    fn the_json_has_the_fields_scripts_read() {
        let report = Report {
            command: "holdfast-bench --quick".into(),
            commit: None,
            started_at_unix_s: 0,
            wall_s: 1.0,
            cpus: 2,
            load_avg: (0.0, 0.0),
            quick: true,
            catalogue_skus: 10,
            cell_seconds: 1.0,
            flash_buyers: 10,
            systems: vec![],
            rows: vec![row("holdfast-1n", 1, 5.0)],
            flash: vec![],
            fsync_probe: None,
            commit_latency: vec![],
            aims: vec![],
            notes: vec![],
        };
        let json = serde_json::to_value(&report).expect("serialises");
        let r = &json["rows"][0];
        assert_eq!(r["scenario"], "hot");
        assert_eq!(r["system"], "holdfast-1n");
        assert_eq!(r["callers"], 1);
        assert_eq!(r["throughput_per_s"], 5.0);
        assert!(r["latency"]["p99_ms"].is_number());
        assert!(r["tally"]["errors"].is_number());
        assert!(json["flash"].is_array());
        let md = markdown(&report);
        assert!(md.contains("| holdfast-1n | 1 | 5 |"), "{md}");
    }

    #[test]
    fn an_aim_without_figures_is_not_judged() {
        let a = aim("x", vec![]);
        assert_eq!(a.met, None);
        let a = aim("x", vec![("a".into(), true), ("b".into(), false)]);
        assert_eq!(a.met, Some(false));
        assert_eq!(a.measured, "a; b");
    }
}
