//! One run of the harness: start the systems, plan the cells, run them
//! interleaved, and gather the [`Report`].
//!
//! Unit of work: a *cell*, one scenario × line count × load × system. The
//! plan orders cells so that, at each load level, every system runs one
//! after another before the next level starts: whatever else the machine
//! does drifts over all systems alike, and the ratios of a report hold.
//!
//! Threads: everything runs on the caller's Tokio runtime, driven from the
//! main thread, which is also the thread that spawns every server process
//! (their parent-death signal is tied to it).

use crate::bench::callers::{caller_fn, CallKind, BATCH_SIZE, LONG_TTL_MS};
use crate::bench::closed_loop;
use crate::bench::flash::{self, FlashResult};
use crate::bench::grpc::GrpcTarget;
use crate::bench::open_loop;
use crate::bench::plan::{cells, Cell, Load, Options, Plan, OPEN_RATE_AIM};
use crate::bench::probe::fsync_probe;
use crate::bench::report::{self, CommitLatency, Report, Row};
use crate::bench::scenario::{Picker, Scenario, SHARDS};
use crate::bench::setup::{start_systems, Live, Owned};
use crate::bench::stats::{cdf, CellStats, Outcome, Summary};
use crate::bench::system::SystemId;
use crate::bench::target::Target;
use futures_util::future::BoxFuture;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Open-loop arrivals that may wait at once before new ones are dropped.
const OPEN_IN_FLIGHT_MAX: usize = 20_000;
/// Pause between two expiry sweeps of a peer during `lifecycle`, the
/// job a service on PostgreSQL or Redis would run (Holdfast's leaders
/// propose their own `ExpireUpTo` on a tick of about this length).
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// What the run produced, and whether it went wrong.
pub struct Outcomes {
    /// The report.
    pub report: Report,
    /// Harness errors (a Holdfast system or the floor did not start).
    pub errors: Vec<String>,
}

fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn commit() -> Option<String> {
    // The source tree this binary was built from, wherever it runs.
    let out = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether a system called through `target` takes part in `scenario`.
/// Every system runs the flash sale: the floor sells every buyer (no stock
/// behind its answers), so its row is the transport's cost of the burst.
fn runs(target: &Target, scenario: Scenario) -> bool {
    match scenario {
        // Only gRPC systems have a batch call here.
        Scenario::Batch => matches!(target, Target::Grpc(_)),
        _ => true,
    }
}

/// Runs everything `o` asks for.
pub async fn run(o: &Options) -> Result<Outcomes, String> {
    let started = Instant::now();
    let started_at_unix_s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let load_start = load_avg();
    // Read now: the tree may move on while a long run goes.
    let commit = commit();
    let plan = Plan::of(o);
    let log_dir = tempfile::Builder::new()
        .prefix("holdfast-bench-logs")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let mut owned = Owned::default();
    let mut system_notes = Vec::new();
    let mut errors = Vec::new();
    let mut live = start_systems(
        o,
        &plan,
        log_dir.path(),
        &mut owned,
        &mut system_notes,
        &mut errors,
    )
    .await;
    let probe_dir = owned
        .clusters
        .first()
        .map_or_else(std::env::temp_dir, |c| c.dir.path().to_path_buf());
    let fsync = fsync_probe(&probe_dir).ok().map(|h| Summary::of(&h));
    let (mut rows, flashes) = run_cells(o, &plan, &mut live, &owned).await;
    report::fill_ratios(&mut rows);
    let commit_latency = commit_latency(&rows, fsync.as_ref());
    let notes = notes(o, &plan, &rows);
    drop(live);
    drop(owned);
    let mut report = Report {
        command: o.command.clone(),
        commit,
        started_at_unix_s,
        wall_s: started.elapsed().as_secs_f64(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_avg: (load_start, load_avg()),
        quick: o.quick,
        catalogue_skus: plan.catalogue.skus,
        cell_seconds: plan.measure.as_secs_f64(),
        flash_buyers: o.buyers,
        systems: system_notes,
        rows,
        flash: flashes,
        fsync_probe: fsync,
        commit_latency,
        aims: vec![],
        notes,
    };
    report.aims = report::aims(&report, OPEN_RATE_AIM);
    Ok(Outcomes { report, errors })
}

/// Runs every cell of the plan on every live system that takes part, one
/// level at a time, printing a progress line per cell.
async fn run_cells(
    o: &Options,
    plan: &Plan,
    live: &mut [Live],
    owned: &Owned,
) -> (Vec<Row>, Vec<FlashResult>) {
    let cells = cells(o, plan);
    let total: usize = cells
        .iter()
        .map(|c| live.iter().filter(|l| runs(&l.target, c.scenario)).count())
        .sum();
    eprintln!(
        "holdfast-bench: {} cells on {} systems ({} mode)",
        total,
        live.len(),
        if o.quick { "quick" } else { "full" }
    );
    let mut rows = Vec::new();
    let mut flashes = Vec::new();
    let mut done = 0;
    for (cell_no, cell) in cells.iter().enumerate() {
        for l in live.iter_mut() {
            if !runs(&l.target, cell.scenario) {
                continue;
            }
            // Leaders looked up again (a level must not run through a
            // forwarding hop), and the connections the load needs.
            let connections = match cell.load {
                Load::Flash | Load::Open(_) => WIDE_CONNECTIONS,
                Load::Closed(_) => 1,
            };
            l.target = grpc_target(l, owned, connections).await;
            done += 1;
            let tag = format!("k{cell_no}-{}", l.id.name());
            match cell.load {
                Load::Flash => {
                    let f = run_flash(l, o.buyers, &tag).await;
                    eprintln!(
                        "[{done}/{total}] flash {}: {} buyers, {} sold, {} refused ({} by the pre-filter), {} shed, {} errors, refusal p99 {:.2} ms",
                        l.id.name(), f.buyers, f.sold, f.refused, f.refused_by_prefilter, f.shed, f.errors, f.refusal_latency.p99_ms
                    );
                    flashes.push(f);
                }
                load => {
                    let (stats, batch) = run_cell(l, cell, load, plan, cell_no).await;
                    let row = row_of(cell, load, l.id, batch, &stats);
                    eprintln!(
                        "[{done}/{total}] {} {}-line {} {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} refused, {} errors",
                        row.scenario, row.lines, row.system, row.load_label(), row.throughput_per_s,
                        row.latency.p50_ms, row.latency.p99_ms, row.tally.refused, row.tally.errors
                    );
                    rows.push(row);
                }
            }
        }
    }
    (rows, flashes)
}

/// What a reader of the report should know about this run.
fn notes(o: &Options, plan: &Plan, rows: &[Row]) -> Vec<String> {
    let mut notes = vec![
        "Load generator and servers share the machine's cores; every figure of this report comes from this one run, systems interleaved at each level.".to_string(),
        "Holdfast and the floor are called through plain tonic stubs to each shard's leader, one HTTP/2 connection per node (flash and open loop: 16), marked as first attempts like the Rust client's; setup goes through holdfast-client.".to_string(),
        "lifecycle: PostgreSQL and Redis run an expiry sweep every 100 ms during the cell (Holdfast expires holds itself).".to_string(),
    ];
    if o.quick {
        notes.push(format!(
            "quick mode: {} SKUs, {:.2} s per cell after {:.2} s warm-up, levels hot {:?} / others {:?} / batch {:?}, open loop {}/s; not for figures to quote.",
            plan.catalogue.skus, plan.measure.as_secs_f64(), plan.warmup.as_secs_f64(),
            plan.levels_hot, plan.levels_other, plan.levels_batch, plan.open_rate
        ));
    }
    for r in rows.iter().filter(|r| r.first_error.is_some()) {
        notes.push(format!(
            "{} {}-line {} at {}: {} errors, first: {}",
            r.scenario,
            r.lines,
            r.system,
            r.load_label(),
            r.tally.errors,
            r.first_error.as_deref().unwrap_or("")
        ));
    }
    notes
}

async fn run_flash(l: &Live, buyers: usize, tag: &str) -> FlashResult {
    if let Err(e) = l.target.reset_flash().await {
        let mut f = flash::run(l.id.name(), &l.target, 0, tag).await;
        f.first_error = Some(format!("flash reset: {e}"));
        return f;
    }
    flash::run(l.id.name(), &l.target, buyers, tag).await
}

/// HTTP/2 connections per node for loads with thousands of calls in
/// flight (the flash sale, the open loop): one connection's stream limit
/// and its one reader task would otherwise be what is measured.
const WIDE_CONNECTIONS: usize = 16;

/// `l`'s target with `connections` HTTP/2 connections per node, to each
/// shard's current leader (gRPC systems; the peers' targets as they are).
async fn grpc_target(l: &Live, owned: &Owned, connections: usize) -> Target {
    match (l.cluster, l.id, &owned.floor) {
        (Some(i), _, _) => Target::Grpc(owned.clusters[i].target(connections).await),
        (None, SystemId::Floor, Some(floor)) => {
            Target::Grpc(GrpcTarget::new(&[floor.port; SHARDS as usize], connections))
        }
        _ => l.target.clone(),
    }
}

/// Runs one non-flash cell on one system; the batch size it used.
async fn run_cell(
    l: &Live,
    cell: &Cell,
    load: Load,
    plan: &Plan,
    cell_no: usize,
) -> (CellStats, usize) {
    let popularity = cell.scenario.popularity();
    // Pickers are built from checked constants and options.
    let picker = match Picker::new(popularity, plan.catalogue, cell.lines) {
        Ok(p) => p,
        Err(e) => {
            let mut stats = CellStats::default();
            stats.tally.errors = 1;
            stats.first_error = Some(e);
            return (stats, 1);
        }
    };
    // The same orders for every system; request ids of their own, since
    // the two PostgreSQL systems share one table of reservations.
    let seed = (cell_no as u64) << 32;
    let system_no = SystemId::ALL.iter().position(|s| *s == l.id).unwrap_or(0);
    let cell_no = cell_no * SystemId::ALL.len() + system_no;
    match load {
        Load::Closed(callers) => {
            let (kind, batch) = match cell.scenario {
                Scenario::Batch => (CallKind::Batch(BATCH_SIZE), BATCH_SIZE),
                Scenario::Lifecycle => (CallKind::Lifecycle, 1),
                _ => (CallKind::Reserve, 1),
            };
            let stop = Arc::new(AtomicBool::new(false));
            let sweeper =
                (kind == CallKind::Lifecycle && !l.target.expires_by_itself()).then(|| {
                    let target = l.target.clone();
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            let _ = target.sweep().await;
                            tokio::time::sleep(SWEEP_INTERVAL).await;
                        }
                    })
                });
            let make = |caller: usize| caller_fn(kind, &l.target, &picker, seed, caller, cell_no);
            let stats = closed_loop::run(callers, plan.warmup, plan.measure, &make).await;
            stop.store(true, Ordering::Relaxed);
            if let Some(s) = sweeper {
                let _ = s.await;
            }
            (stats, batch)
        }
        Load::Open(rate) => {
            let target = l.target.clone();
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut make = move |n: u64| -> BoxFuture<'static, Outcome> {
                let order = picker.order(&mut rng);
                let target = target.clone();
                let id = format!("k{cell_no}-o{n}");
                Box::pin(async move {
                    Outcome::of(&target.reserve(n as usize, &id, &order, LONG_TTL_MS).await)
                })
            };
            let stats = open_loop::run(
                rate,
                plan.warmup,
                plan.open_measure,
                OPEN_IN_FLIGHT_MAX,
                &mut make,
            )
            .await;
            (stats, 1)
        }
        Load::Flash => (CellStats::default(), 1),
    }
}

fn row_of(cell: &Cell, load: Load, system: SystemId, batch: usize, stats: &CellStats) -> Row {
    let (label, callers, rate) = match load {
        Load::Closed(c) => ("closed", Some(c), None),
        Load::Open(r) => ("open", None, Some(r)),
        Load::Flash => ("flash", None, None),
    };
    Row {
        scenario: cell.scenario.name().into(),
        lines: cell.lines,
        batch,
        system: system.name().into(),
        load: label.into(),
        callers,
        rate_per_s: rate,
        seconds: stats.elapsed.as_secs_f64(),
        tally: stats.tally,
        throughput_per_s: stats.throughput(),
        latency: Summary::of(&stats.latency_us),
        refusal_latency: Summary::of(&stats.refusal_us),
        cdf: cdf(&stats.latency_us),
        vs_postgres: None,
        vs_redis_lua: None,
        vs_floor: None,
        first_error: stats.first_error.clone(),
    }
}

/// Holdfast's `hot` p50 at 1 caller against (fsync p50 + the floor's p50
/// at 1 caller), where the run measured all three.
fn commit_latency(rows: &[Row], fsync: Option<&Summary>) -> Vec<CommitLatency> {
    let at_one = |system: SystemId| {
        rows.iter().find(|r| {
            r.scenario == "hot" && r.system == system.name() && r.callers == Some(1) && r.batch == 1
        })
    };
    let (Some(fsync), Some(floor)) = (fsync, at_one(SystemId::Floor)) else {
        return Vec::new();
    };
    [SystemId::Holdfast1, SystemId::Holdfast3]
        .into_iter()
        .filter_map(at_one)
        .map(|r| {
            let base = fsync.p50_ms + floor.latency.p50_ms;
            CommitLatency {
                system: r.system.clone(),
                commit_p50_ms: r.latency.p50_ms,
                fsync_p50_ms: fsync.p50_ms,
                rtt_p50_ms: floor.latency.p50_ms,
                ratio: if base > 0.0 {
                    r.latency.p50_ms / base
                } else {
                    0.0
                },
            }
        })
        .collect()
}
