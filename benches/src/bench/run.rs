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

use crate::bench::closed_loop::{self, CallFn};
use crate::bench::flash::{self, FlashResult};
use crate::bench::grpc::{GrpcTarget, HoldfastCluster};
use crate::bench::open_loop;
use crate::bench::peers::floor::Floor;
use crate::bench::peers::postgres::Postgres;
use crate::bench::peers::redis::Redis;
use crate::bench::probe::fsync_probe;
use crate::bench::report::{self, CommitLatency, Report, Row, SystemNote};
use crate::bench::scenario::{Catalogue, Order, Picker, Scenario, SHARDS};
use crate::bench::stats::{cdf, CellStats, Outcome, Summary};
use crate::bench::system::SystemId;
use crate::bench::target::{Reply, Target};
use futures_util::future::BoxFuture;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// TTL of the holds of the reserve-only scenarios: they outlive the run.
const LONG_TTL_MS: u64 = 3_600_000;
/// TTL of the lifecycle's holds that are left to expire (the API's least).
const SHORT_TTL_MS: u64 = 1_000;
/// Reservations per `ReserveBatch` call (the issue's 100).
pub const BATCH_SIZE: usize = 100;
/// Open-loop arrivals that may wait at once before new ones are dropped.
const OPEN_IN_FLIGHT_MAX: usize = 20_000;
/// Pause between two expiry sweeps of a peer during `lifecycle`, the
/// job a service on PostgreSQL or Redis would run (Holdfast's leaders
/// propose their own `ExpireUpTo` on a tick of about this length).
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
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
struct Plan {
    levels_hot: Vec<usize>,
    levels_other: Vec<usize>,
    levels_batch: Vec<usize>,
    warmup: Duration,
    measure: Duration,
    open_rate: u64,
    open_measure: Duration,
    catalogue: Catalogue,
    uses_catalogue: bool,
}

impl Plan {
    fn of(o: &Options) -> Plan {
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
        plan.uses_catalogue = o.scenarios.iter().any(|s| {
            matches!(
                s.popularity(),
                crate::bench::scenario::Popularity::Uniform
                    | crate::bench::scenario::Popularity::Zipf
            )
        });
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
    fn stocked(&self) -> Catalogue {
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

/// A system that started, and how to call it.
struct Live {
    id: SystemId,
    target: Target,
    /// Index into `Owned::clusters` for Holdfast (leaders are looked up
    /// again before each cell).
    cluster: Option<usize>,
}

/// Every process the run started; dropping it stops them all.
#[derive(Default)]
struct Owned {
    clusters: Vec<HoldfastCluster>,
    floor: Option<Floor>,
    postgres: Option<Postgres>,
    redis: Vec<Redis>,
}

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

/// Starts the wanted systems; notes say what ran and what was skipped.
async fn start_systems(
    o: &Options,
    plan: &Plan,
    log_dir: &Path,
    owned: &mut Owned,
    notes: &mut Vec<SystemNote>,
    errors: &mut Vec<String>,
) -> Vec<Live> {
    let mut live = Vec::new();
    let mut note = |system: SystemId, ran: bool, note: String| {
        eprintln!(
            "holdfast-bench: {}: {}{note}",
            system.name(),
            if ran { "" } else { "skipped: " }
        );
        notes.push(SystemNote {
            system: system.name().into(),
            ran,
            note,
        });
    };
    let wants = |s: SystemId| o.systems.contains(&s);
    if wants(SystemId::Floor) {
        match Floor::start(log_dir) {
            Ok(floor) => {
                let target = Target::Grpc(GrpcTarget::new(&vec![floor.port; SHARDS as usize], 1));
                live.push(Live {
                    id: SystemId::Floor,
                    target,
                    cluster: None,
                });
                owned.floor = Some(floor);
                note(
                    SystemId::Floor,
                    true,
                    "grpc-floor: the same tonic stack answering at once".into(),
                );
            }
            Err(e) => {
                errors.push(format!("floor: {e}"));
                note(SystemId::Floor, false, e);
            }
        }
    }
    // Start both clusters before stocking either, so their elections overlap.
    let mut starting = Vec::new();
    for (id, size) in [(SystemId::Holdfast1, 1), (SystemId::Holdfast3, 3)] {
        if wants(id) {
            match HoldfastCluster::start(size, log_dir) {
                Ok(c) => starting.push((id, c)),
                Err(e) => {
                    errors.push(format!("{}: {e}", id.name()));
                    note(id, false, e);
                }
            }
        }
    }
    for (id, cluster) in starting {
        let t = Instant::now();
        match cluster.stock(plan.stocked()).await {
            Ok(()) => {
                let target = Target::Grpc(cluster.target(1).await);
                note(
                    id,
                    true,
                    format!(
                        "{} real holdfast-server process(es), fsync on, {SHARDS} shards; {} rows stocked in {:.1} s",
                        cluster.size,
                        plan.stocked().rows() + 2,
                        t.elapsed().as_secs_f64()
                    ),
                );
                live.push(Live {
                    id,
                    target,
                    cluster: Some(owned.clusters.len()),
                });
                owned.clusters.push(cluster);
            }
            Err(e) => {
                errors.push(format!("{}: {e}", id.name()));
                note(id, false, e);
            }
        }
    }
    if wants(SystemId::Postgres) || wants(SystemId::PostgresAsync) {
        match start_postgres(o, plan, log_dir).await {
            Ok((pg, sync, no_sync)) => {
                for (id, target, how) in [
                    (SystemId::Postgres, sync, "synchronous_commit=on"),
                    (SystemId::PostgresAsync, no_sync, "synchronous_commit=off"),
                ] {
                    if wants(id) {
                        note(id, true, format!("PostgreSQL, fsync=on, {how}, {} connections, one PL/pgSQL call per operation", crate::bench::peers::postgres::CONNECTIONS));
                        live.push(Live {
                            id,
                            target: Target::Postgres(target),
                            cluster: None,
                        });
                    }
                }
                owned.postgres = Some(pg);
            }
            Err(e) => {
                for id in [SystemId::Postgres, SystemId::PostgresAsync] {
                    if wants(id) {
                        note(id, false, e.clone());
                    }
                }
            }
        }
    }
    for (id, fsync) in [
        (SystemId::RedisAlways, "always"),
        (SystemId::RedisEverysec, "everysec"),
    ] {
        if !wants(id) {
            continue;
        }
        match start_redis(fsync, o, plan, log_dir).await {
            Ok((redis, target)) => {
                note(id, true, format!("redis-server, appendonly yes, appendfsync {fsync}, {} multiplexed connections, one Lua script call per operation", crate::bench::peers::redis::CONNECTIONS));
                live.push(Live {
                    id,
                    target: Target::Redis(target),
                    cluster: None,
                });
                owned.redis.push(redis);
            }
            Err(e) => note(id, false, e),
        }
    }
    // Each level runs its systems in this order.
    live.sort_by_key(|l| SystemId::ALL.iter().position(|s| *s == l.id));
    live
}

async fn start_postgres(
    o: &Options,
    plan: &Plan,
    log_dir: &Path,
) -> Result<
    (
        Postgres,
        crate::bench::peers::postgres::PgTarget,
        crate::bench::peers::postgres::PgTarget,
    ),
    String,
> {
    let pg = Postgres::start(o.install, log_dir).await?;
    pg.stock(plan.stocked()).await?;
    let sync = pg.target(true).await?;
    let no_sync = pg.target(false).await?;
    Ok((pg, sync, no_sync))
}

async fn start_redis(
    fsync: &str,
    o: &Options,
    plan: &Plan,
    log_dir: &Path,
) -> Result<(Redis, crate::bench::peers::redis::RedisTarget), String> {
    let redis = Redis::start(fsync, o.install, log_dir)?;
    redis.stock(plan.stocked()).await?;
    let target = redis.target().await?;
    Ok((redis, target))
}

/// A cell's load.
#[derive(Debug, Clone, Copy)]
enum Load {
    Closed(usize),
    Open(u64),
    Flash,
}

/// One planned cell, without its system (every live system runs it).
#[derive(Debug, Clone, Copy)]
struct Cell {
    scenario: Scenario,
    lines: usize,
    load: Load,
}

fn cells(o: &Options, plan: &Plan) -> Vec<Cell> {
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

/// Whether `system` takes part in `scenario`.
fn runs(system: SystemId, target: &Target, scenario: Scenario) -> bool {
    match scenario {
        // No stock behind the floor's answers.
        Scenario::Flash => system != SystemId::Floor,
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
    let cells = cells(o, &plan);
    let total: usize = cells
        .iter()
        .map(|c| {
            live.iter()
                .filter(|l| runs(l.id, &l.target, c.scenario))
                .count()
        })
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
            if !runs(l.id, &l.target, cell.scenario) {
                continue;
            }
            if let Some(i) = l.cluster {
                l.target = Target::Grpc(owned.clusters[i].target(1).await);
            }
            done += 1;
            let tag = format!("k{cell_no}-{}", l.id.name());
            match cell.load {
                Load::Flash => {
                    let f = run_flash(l, o.buyers, &tag, &owned).await;
                    eprintln!(
                        "[{done}/{total}] flash {}: {} buyers, {} sold, {} refused ({} by the pre-filter), {} shed, {} errors, refusal p99 {:.2} ms",
                        l.id.name(), f.buyers, f.sold, f.refused, f.refused_by_prefilter, f.shed, f.errors, f.refusal_latency.p99_ms
                    );
                    flashes.push(f);
                }
                load => {
                    let (stats, batch) = run_cell(l, cell, load, &plan, cell_no).await;
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
    report::fill_ratios(&mut rows);
    let commit_latency = commit_latency(&rows, fsync.as_ref());
    let mut notes = vec![
        "Load generator and servers share the machine's cores; every figure of this report comes from this one run, systems interleaved at each level.".to_string(),
        "Holdfast and the floor are called through plain tonic stubs to each shard's leader, one HTTP/2 connection per node (flash: 16), marked as first attempts like the Rust client's; setup goes through holdfast-client.".to_string(),
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
    drop(live);
    drop(owned);
    let mut report = Report {
        command: o.command.clone(),
        commit: commit(),
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

async fn run_flash(l: &Live, buyers: usize, tag: &str, owned: &Owned) -> FlashResult {
    if let Err(e) = l.target.reset_flash().await {
        let mut f = flash::run(l.id.name(), &l.target, 0, tag).await;
        f.first_error = Some(format!("flash reset: {e}"));
        return f;
    }
    // Many buyers at once: several HTTP/2 connections to the leader, so
    // the sale is not one connection's stream limit.
    let target = match l.cluster {
        Some(i) => Target::Grpc(owned.clusters[i].target(FLASH_CONNECTIONS).await),
        None => l.target.clone(),
    };
    flash::run(l.id.name(), &target, buyers, tag).await
}

/// HTTP/2 connections per node for the flash sale's buyers.
const FLASH_CONNECTIONS: usize = 16;

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

/// What each call of a closed-loop caller does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// One `Reserve` of one order.
    Reserve,
    /// One `ReserveBatch` of this many orders.
    Batch(usize),
    /// Reserve, then by the call's number: confirm 16 in 20 (80%),
    /// release 3 in 20 (15%), walk away from 1 in 20 (5%, with a short TTL
    /// so it expires).
    Lifecycle,
}

/// A closed-loop caller making `kind` calls of `picker`'s orders; `seed`
/// and `caller` fix its orders (the same for every system), and `cell_no`
/// keeps its request ids apart from other cells'.
pub fn caller_fn(
    kind: CallKind,
    target: &Target,
    picker: &Picker,
    seed: u64,
    caller: usize,
    cell_no: usize,
) -> CallFn {
    let target = target.clone();
    let picker = picker.clone();
    let mut rng = SmallRng::seed_from_u64(seed | caller as u64);
    let mut n = 0u64;
    Box::new(move || {
        n += 1;
        let id = format!("k{cell_no}-{caller}-{n}");
        let target = target.clone();
        match kind {
            CallKind::Reserve => {
                let order = picker.order(&mut rng);
                Box::pin(async move {
                    Outcome::of(&target.reserve(caller, &id, &order, LONG_TTL_MS).await)
                })
            }
            CallKind::Batch(batch) => {
                let items: Vec<_> = (0..batch)
                    .map(|k| (format!("{id}-{k}"), picker.order(&mut rng)))
                    .collect();
                Box::pin(async move {
                    match target.reserve_batch(&items, LONG_TTL_MS).await {
                        Some(reply) => Outcome::of_batch(&reply),
                        None => Outcome::of(&Reply::Error("no batch call".into())),
                    }
                })
            }
            CallKind::Lifecycle => {
                let order = picker.order(&mut rng);
                let fate = (n + caller as u64) % 20;
                Box::pin(lifecycle(target, caller, id, order, fate))
            }
        }
    })
}

/// One lifecycle of fate `fate` (0..20, see [`CallKind::Lifecycle`]).
async fn lifecycle(target: Target, caller: usize, id: String, order: Order, fate: u64) -> Outcome {
    let ttl = if fate == 19 {
        SHORT_TTL_MS
    } else {
        LONG_TTL_MS
    };
    let held = match target.reserve(caller, &id, &order, ttl).await {
        Reply::Held(h) => h,
        other => return Outcome::of(&other),
    };
    let resolved = match fate {
        0..=15 => target.confirm(caller, &held, &format!("{id}-c")).await,
        16..=18 => target.release(caller, &held, &format!("{id}-r")).await,
        _ => Reply::Done,
    };
    Outcome::of(&resolved)
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
