//! `recovery-time`: how long a node holding 1,000,000 stock rows and
//! 1,000,000 log entries takes to restart (Raft issue).
//!
//! Unit of work: one *run*. A prepared data directory is copied (and
//! fsynced) to a fresh directory, a real `holdfast-server` process is
//! started on it as a one-node cluster, and the run's time is from spawn
//! until a *linearizable* `GetAvailability` of the row written by the last
//! log entry of every shard answers with the values the log implies. That
//! read needs the whole log applied and the shard to have a leader again.
//! After the timed part, the state digest of every shard is compared with
//! the one computed while preparing.
//!
//! Preparing writes the directory directly through the library APIs, as the
//! node's own code would (same storage marker, hard state, conf state,
//! `log_codec` entries, `Engine::snapshot()` through raft-store's
//! `stage_snapshot`), in large synced write batches, because a live server
//! pays one fsync per entry. Every entry is applied to an engine while it is
//! written, so the bench knows the state the node must rebuild. Two layouts:
//!
//! - `replay`: a snapshot of the loaded catalogue, then every log entry
//!   after it committed and applied: a restart replays the whole log (as if
//!   compaction never ran).
//! - `compacted`: the same history, its snapshot at the last entry, the log
//!   not compacted: a restart replays nothing but still opens, and
//!   `verify_log` still reads, the whole log.
//!
//! The server logs, at info level, where its open went (RocksDB open, and
//! per shard: load, `verify_log`, snapshot read, restore, replay); the
//! bench sums those lines over the shards.
//!
//! Build and run: `cargo build --release -p holdfast-server -p holdfast-bench
//! && target/release/recovery-time`.

use clap::Parser;
use holdfast_engine::{
    AdjustStock, Command, CommandKind, Confirm, Engine, EngineConfig, Event, FillPolicy, Outcome,
    Release, RequestId, ReservationId, Reserve, ReserveLine, Stamp, Success, UpsertLocation,
};
use holdfast_raft_store::{LogBatch, RaftDb, ShardStorage, StorageMarker};
use holdfast_server::config::{NodeConfig, BATCH_COMMANDS_MAX};
use holdfast_server::pb::internal::admin_client::AdminClient;
use holdfast_server::pb::internal::ClusterStatusRequest;
use holdfast_server::pb::inventory as pb;
use holdfast_server::pb::inventory::inventory_client::InventoryClient;
use holdfast_server::{ids, log_codec};
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, SnapshotMetadata};
use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::transport::{Channel, Endpoint};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The node the prepared directory belongs to: `holdfast-server`'s defaults
/// for `--id` and `--cluster-id`, so its storage marker matches.
const NODE_ID: u64 = 1;
const CLUSTER_ID: u64 = 1;
/// Every prepared entry is from the first leader's term, as on a one-node
/// cluster that never lost its leader.
const TERM: u64 = 1;
/// Locations of every SKU (one stock row each), as in `engine-demo`.
const LOCATIONS: [(&str, &str, u32); 4] = [
    ("berlin", "eu", 1),
    ("paris", "eu", 2),
    ("newark", "us", 1),
    ("reno", "us", 2),
];
/// Units each row is loaded with: far more than the workload takes.
const ON_HAND_LOADED: i64 = 1_000_000;
/// TTL of the workload's holds (4 h): no hold may come due while the bench
/// runs, because the leader's `ExpireUpTo` would then change the state the
/// bench checks.
const HOLD_TTL_MS: u64 = 4 * 3_600_000;
/// Log time: the node commits one entry per millisecond, spread over its
/// shards (a shard's entries are `shards` ms apart), and the last entry is
/// stamped "now". So 1,000,000 entries span about 17 minutes, within the
/// engine's 1 h idempotency window: every request id in the log is still
/// remembered (up to the table's 1,000,000 ids per shard), the worst case
/// for snapshot size and restore.
const NODE_STAMP_STEP_MS: u64 = 1;
/// Of every 20 workload reserves: 16 are confirmed, 3 released, 1 stays
/// pending (and its slot in the log restocks a row instead).
const CONFIRMED_OF_20: u64 = 16;
const RELEASED_OF_20: u64 = 3;
/// Entries per synced write while preparing (a few MB per write).
const WRITE_BATCH_ENTRIES: usize = 16_384;
/// Give up on a run whose server is not ready after this.
const READY_DEADLINE: Duration = Duration::from_secs(600);
/// Between two attempts to connect or read while the server starts: fine
/// enough for restarts of seconds, rare enough to leave the CPU to it.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Server log lines shown when a run fails.
const LOG_TAIL_LINES: usize = 20;

#[derive(Parser, Debug)]
#[command(about = "Restart time of a one-node Holdfast server with a large state and log")]
struct Args {
    /// Stock rows in the node (SKUs x 4 locations), over all shards.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Log entries on disk, over all shards.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Shards of the node (the server's default).
    #[arg(long, default_value_t = holdfast_server::config::SHARDS_DEFAULT)]
    shards: u32,
    /// Layouts to measure, comma-separated: replay, compacted.
    #[arg(long, default_value = "replay,compacted")]
    layouts: String,
    /// Restarts measured per layout.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Drop the data directory's files from the page cache before each
    /// start (a restart after a reboot); by default they stay cached (a
    /// process restart).
    #[arg(long)]
    cold: bool,
    /// Parent of the bench's temporary directory (default: the system's).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Only prepare each layout into DIR/<layout> and keep it (to start or
    /// profile a server on it by hand); nothing is measured.
    #[arg(long, value_name = "DIR")]
    prepare_only: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Replay,
    Compacted,
}

impl Layout {
    fn parse(name: &str) -> Result<Layout> {
        match name.trim() {
            "replay" => Ok(Layout::Replay),
            "compacted" => Ok(Layout::Compacted),
            other => Err(format!("unknown layout {other:?} (replay, compacted)").into()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Layout::Replay => "replay",
            Layout::Compacted => "compacted",
        }
    }
}

/// xorshift64*: a fixed-seed sequence, so every preparation writes the same
/// log.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The row the last entry of a shard wrote, and what a read of it must show.
#[derive(Clone, Debug)]
struct Probe {
    shard: u32,
    sku: String,
    location: String,
    last_index: u64,
    on_hand: i64,
    held: i64,
    available: i64,
}

/// A prepared data directory and what the node must rebuild from it.
struct Prepared {
    probes: Vec<Probe>,
    digests: Vec<u128>,
    rows: u64,
    log_entries: u64,
    replayed_entries: u64,
    snapshot_bytes: u64,
    elapsed: Duration,
}

/// Builds one shard's log entry by entry, applying each to an engine as the
/// node will, and writes it in large synced batches.
struct ShardWriter<'a> {
    db: &'a RaftDb,
    storage: ShardStorage,
    shard: u32,
    engine: Engine,
    events: Vec<Event>,
    /// Index of the last entry built.
    last_index: u64,
    /// Stamp of entry 0 (entry `i` is stamped `first_stamp_ms + i * step`).
    first_stamp_ms: u64,
    /// Log time between two entries of this shard.
    stamp_step_ms: u64,
    /// Built, not yet written.
    unwritten: Vec<Entry>,
    requests: u64,
}

impl<'a> ShardWriter<'a> {
    /// A writer for a new shard whose log will end at `last_index`, stamped
    /// `now_ms`; stages the bootstrap conf state as `open_shard` does.
    fn new(db: &'a RaftDb, shard: u32, shards: u32, last_index: u64, now_ms: u64) -> Result<Self> {
        let storage = db.shard(shard)?;
        let mut batch = LogBatch::new();
        let conf = ConfState {
            voters: vec![NODE_ID],
            ..ConfState::default()
        };
        storage.stage_conf_state(&mut batch, &conf)?;
        db.write(batch, true)?;
        let stamp_step_ms = NODE_STAMP_STEP_MS * u64::from(shards);
        Ok(ShardWriter {
            db,
            storage,
            shard,
            engine: Engine::new(engine_config()),
            events: Vec::new(),
            last_index: 0,
            first_stamp_ms: now_ms - last_index * stamp_step_ms,
            stamp_step_ms,
            unwritten: Vec::new(),
            requests: 0,
        })
    }

    fn request_id(&mut self) -> RequestId {
        self.requests += 1;
        let wire = format!("recovery-{}-{}", self.shard, self.requests);
        ids::request_id(&wire).expect("a short non-empty request id")
    }

    /// Appends one entry carrying `commands` (none: the empty entry of a
    /// new leader) and applies it exactly as the node's replay will: the
    /// decoded `log_codec` batch, stamped with the entry's index.
    fn push(&mut self, commands: &[Command]) -> Result<Vec<Outcome>> {
        self.last_index += 1;
        let index = self.last_index;
        let mut entry = Entry {
            term: TERM,
            index,
            ..Entry::default()
        };
        entry.set_entry_type(EntryType::EntryNormal);
        let mut outcomes = Vec::with_capacity(commands.len());
        if !commands.is_empty() {
            let data =
                log_codec::encode(self.first_stamp_ms + index * self.stamp_step_ms, commands);
            let batch = log_codec::decode(&data)?;
            let stamp = Stamp {
                index,
                now_ms: batch.stamp_ms,
            };
            for cmd in &batch.commands {
                self.events.clear();
                outcomes.push(self.engine.apply(stamp, cmd, &mut self.events));
            }
            entry.data = data.into();
        }
        self.unwritten.push(entry);
        if self.unwritten.len() >= WRITE_BATCH_ENTRIES {
            self.flush()?;
        }
        Ok(outcomes)
    }

    /// Writes the unwritten entries, committed and applied, in one synced
    /// batch (entries, hard state, applied index: what the driver stages).
    fn flush(&mut self) -> Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let mut batch = LogBatch::new();
        self.storage.stage_append(&mut batch, &self.unwritten)?;
        let hs = HardState {
            term: TERM,
            vote: NODE_ID,
            commit: self.last_index,
            ..HardState::default()
        };
        self.storage.stage_hard_state(&mut batch, &hs)?;
        self.storage
            .stage_applied_index(&mut batch, self.last_index)?;
        self.db.write(batch, true)?;
        self.unwritten.clear();
        Ok(())
    }

    /// Snapshots the engine at the last entry as the driver's
    /// `maybe_snapshot` does; with `compact`, the log up to it is dropped.
    /// Returns the snapshot's size.
    fn snapshot(&mut self, compact: bool) -> Result<u64> {
        self.flush()?;
        let data = self.engine.snapshot();
        let mut metadata = SnapshotMetadata {
            index: self.last_index,
            term: TERM,
            ..SnapshotMetadata::default()
        };
        metadata.set_conf_state(self.storage.conf_state()?);
        let mut batch = LogBatch::new();
        self.storage.stage_snapshot(&mut batch, metadata, &data)?;
        if compact {
            self.storage.compact(&mut batch, self.last_index + 1)?;
        }
        self.db.write(batch, true)?;
        Ok(data.len() as u64)
    }

    /// The new leader's empty entry, the locations (one entry, as
    /// `UpsertLocation` fans out to every shard) and every row of `skus`
    /// stocked by `AdjustStock`, batched as a leader batches a bulk load.
    fn load_catalogue(&mut self, skus: &[String]) -> Result<()> {
        self.push(&[])?;
        let locations: Vec<Command> = LOCATIONS
            .iter()
            .map(|&(name, region, priority)| {
                let base = ids::request_id(&format!("recovery-location-{name}"))
                    .expect("a short non-empty request id");
                Command {
                    request_id: ids::request_id_for_shard(base, self.shard),
                    kind: CommandKind::UpsertLocation(UpsertLocation {
                        location: name.into(),
                        region: region.into(),
                        priority,
                    }),
                }
            })
            .collect();
        expect_success(self.push(&locations)?)?;
        let mut load = Vec::with_capacity(BATCH_COMMANDS_MAX);
        for sku in skus {
            for &(location, _, _) in &LOCATIONS {
                let kind = CommandKind::AdjustStock(AdjustStock {
                    sku: sku.clone(),
                    location: location.into(),
                    delta: ON_HAND_LOADED,
                    expected_on_hand: None,
                });
                load.push(Command {
                    request_id: self.request_id(),
                    kind,
                });
                if load.len() == BATCH_COMMANDS_MAX {
                    expect_success(self.push(&load)?)?;
                    load.clear();
                }
            }
        }
        if !load.is_empty() {
            expect_success(self.push(&load)?)?;
        }
        Ok(())
    }

    /// `entries` single-command entries of a reservation lifecycle on
    /// random rows (reserve, then confirm, release or leave pending), the
    /// last one a compare-and-set `AdjustStock` of a random row: the probe.
    fn run_workload(&mut self, skus: &[String], entries: u64) -> Result<Probe> {
        let mut rng = Sequence(0x9e37_79b9_7f4a_7c15 ^ (u64::from(self.shard) + 1));
        let mut pending: Option<ReservationId> = None;
        for j in 0..entries.saturating_sub(1) {
            let (sku, location) = pick_row(&mut rng, skus);
            let kind = match pending.take() {
                None => CommandKind::Reserve(Reserve {
                    owner: format!("cart-{}", self.requests),
                    customer: format!("cust-{}", rng.next() % 50_000),
                    region: None,
                    lines: vec![ReserveLine {
                        sku,
                        quantity: 1 + (rng.next() % 3) as i64,
                        location: Some(location),
                    }],
                    ttl_ms: HOLD_TTL_MS,
                    policy: FillPolicy::AllOrNothing,
                    allow_split: false,
                }),
                Some(reservation) => match (j / 2) % 20 {
                    k if k < CONFIRMED_OF_20 => CommandKind::Confirm(Confirm {
                        reservation,
                        quantities: None,
                    }),
                    k if k < CONFIRMED_OF_20 + RELEASED_OF_20 => {
                        CommandKind::Release(Release { reservation })
                    }
                    _ => restock(sku, location, 10, None),
                },
            };
            let command = Command {
                request_id: self.request_id(),
                kind,
            };
            let outcome = expect_success(self.push(&[command])?)?;
            if let Some(Success::Reserved { reservation }) = outcome.first() {
                pending = Some(*reservation);
            }
        }
        self.push_probe(&mut rng, skus)
    }

    fn push_probe(&mut self, rng: &mut Sequence, skus: &[String]) -> Result<Probe> {
        let (sku, location) = pick_row(rng, skus);
        let before = self
            .engine
            .availability(&sku, &location)
            .ok_or("the probe row does not exist")?;
        let kind = restock(sku.clone(), location.clone(), 1, Some(before.on_hand));
        let command = Command {
            request_id: self.request_id(),
            kind,
        };
        expect_success(self.push(&[command])?)?;
        let after = self
            .engine
            .availability(&sku, &location)
            .ok_or("the probe row does not exist")?;
        Ok(Probe {
            shard: self.shard,
            sku,
            location,
            last_index: self.last_index,
            on_hand: after.on_hand,
            held: after.held,
            available: after.available,
        })
    }
}

fn engine_config() -> EngineConfig {
    NodeConfig::single(NODE_ID, String::new(), PathBuf::new()).engine
}

fn pick_row(rng: &mut Sequence, skus: &[String]) -> (String, String) {
    let sku = skus[(rng.next() % skus.len() as u64) as usize].clone();
    let location = LOCATIONS[(rng.next() % LOCATIONS.len() as u64) as usize].0;
    (sku, location.to_string())
}

fn restock(sku: String, location: String, delta: i64, expected: Option<i64>) -> CommandKind {
    CommandKind::AdjustStock(AdjustStock {
        sku,
        location,
        delta,
        expected_on_hand: expected,
    })
}

/// A prepared log holds what a healthy node would: commands that succeeded.
fn expect_success(outcomes: Vec<Outcome>) -> Result<Vec<Success>> {
    outcomes
        .into_iter()
        .map(|o| o.map_err(|r| format!("a prepared command was refused: {r:?}").into()))
        .collect()
}

/// SKU names by shard (`shard_of`, as the server routes them).
fn skus_by_shard(rows: u64, shards: u32) -> Vec<Vec<String>> {
    let mut by_shard = vec![Vec::new(); shards as usize];
    for i in 0..rows.div_ceil(LOCATIONS.len() as u64) {
        let sku = format!("sku-{i:07}");
        by_shard[holdfast_engine::shard_of(&sku, shards) as usize].push(sku);
    }
    by_shard
}

/// Entries of the catalogue load: the empty entry, the locations, then the
/// stock rows in leader-sized batches.
fn catalogue_entries(skus: usize) -> u64 {
    2 + (skus * LOCATIONS.len()).div_ceil(BATCH_COMMANDS_MAX) as u64
}

fn prepare(layout: Layout, args: &Args, dir: &Path) -> Result<Prepared> {
    let started = Instant::now();
    let db = RaftDb::open(
        dir,
        StorageMarker {
            cluster_id: CLUSTER_ID,
            node_id: NODE_ID,
        },
    )?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let mut prepared = Prepared {
        probes: Vec::new(),
        digests: Vec::new(),
        rows: 0,
        log_entries: 0,
        replayed_entries: 0,
        snapshot_bytes: 0,
        elapsed: Duration::ZERO,
    };
    for (shard, skus) in skus_by_shard(args.rows, args.shards).iter().enumerate() {
        if skus.is_empty() {
            return Err(format!("shard {shard} got no SKU: use more --rows").into());
        }
        let shard = shard as u32;
        let entries = args.entries / u64::from(args.shards)
            + u64::from(u64::from(shard) < args.entries % u64::from(args.shards));
        let catalogue = catalogue_entries(skus.len());
        let (last_index, workload) = match layout {
            Layout::Replay => (catalogue + entries, entries),
            Layout::Compacted => (entries, entries.saturating_sub(catalogue)),
        };
        if workload == 0 {
            return Err(format!(
                "shard {shard}: {entries} log entries leave none for the workload (its catalogue takes {catalogue}): use more --entries"
            )
            .into());
        }
        let mut w = ShardWriter::new(&db, shard, args.shards, last_index, now_ms)?;
        w.load_catalogue(skus)?;
        if layout == Layout::Replay {
            prepared.snapshot_bytes += w.snapshot(true)?;
        }
        prepared.probes.push(w.run_workload(skus, workload)?);
        w.flush()?;
        if layout == Layout::Compacted {
            prepared.snapshot_bytes += w.snapshot(false)?;
        }
        assert_eq!(w.last_index, last_index, "the plan and the log agree");
        prepared.rows += w.engine.row_count() as u64;
        prepared.log_entries += entries;
        prepared.replayed_entries += if layout == Layout::Replay { entries } else { 0 };
        prepared.digests.push(w.engine.state_digest());
    }
    drop(db);
    prepared.elapsed = started.elapsed();
    Ok(prepared)
}

// ---- the server process ----

/// A running `holdfast-server`; killed when dropped, whatever happened.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn spawn(data_dir: &Path, port: u16, shards: u32, log: &Path) -> Result<Server> {
        let binary = server_binary();
        let mut cmd = std::process::Command::new(&binary);
        cmd.args(["--id", &NODE_ID.to_string()])
            .args(["--cluster-id", &CLUSTER_ID.to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--shards", &shards.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("HOLDFAST_PEERS")
            .env("RUST_LOG", "info,raft=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(File::create(log)?);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        // A server outlives no bench: it gets SIGKILL if the bench dies.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start {}: {e} (build it with cargo build --release -p holdfast-server)",
                binary.display()
            )
        })?;
        Ok(Server {
            child,
            log: log.to_path_buf(),
        })
    }

    /// An error if the server exited (with the end of its log).
    fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!(
                "holdfast-server exited ({status}); its log ends with:\n{}",
                log_tail(&self.log)
            )
            .into()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_binary() -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    me.with_file_name("holdfast-server")
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

// ---- one timed restart ----

/// What one restart took.
struct RunResult {
    /// Spawn until a stale read answered with the final state: the node
    /// opened (everything replayed) and serves.
    serving: Duration,
    /// Spawn until a linearizable read did: every shard also has a leader.
    ready: Duration,
    /// CPU time (user + system, all threads) the server had used by then:
    /// far below `ready` means it waited (disk, timers, or other processes
    /// on the machine's cores).
    cpu_at_ready: Option<Duration>,
    open: Option<OpenTimings>,
}

fn measure_once(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    template: &Path,
    run_dir: &Path,
    prepared: &Prepared,
) -> Result<RunResult> {
    let data_dir = run_dir.join("data");
    copy_dir(template, &data_dir)?;
    if args.cold {
        evict_from_page_cache(&data_dir)?;
    }
    let log = run_dir.join("server.log");
    let port = free_port()?;
    let started = Instant::now();
    let mut server = Server::spawn(&data_dir, port, args.shards, &log)?;
    let (serving, ready) = rt.block_on(wait_ready(&mut server, port, prepared, started))?;
    let cpu_at_ready = cpu_time(server.child.id());
    rt.block_on(check_digests(port, prepared))?;
    drop(server);
    let open = parse_open_timings(&fs::read_to_string(&log)?);
    fs::remove_dir_all(run_dir)?;
    Ok(RunResult {
        serving,
        ready,
        cpu_at_ready,
        open,
    })
}

/// User + system CPU time of a running process, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is
    // field 3, utime and stime are fields 14 and 15, in clock ticks.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

async fn wait_ready(
    server: &mut Server,
    port: u16,
    prepared: &Prepared,
    started: Instant,
) -> Result<(Duration, Duration)> {
    let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?.tcp_nodelay(true);
    let channel = loop {
        server.check_running()?;
        if started.elapsed() > READY_DEADLINE {
            return Err("the server did not listen in time".into());
        }
        if let Ok(channel) = endpoint.connect().await {
            break channel;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    let mut client = InventoryClient::new(channel);
    let stale = pb::Consistency::Stale;
    let serving = read_until_ok(&mut client, server, prepared, stale, started).await?;
    let linearizable = pb::Consistency::Linearizable;
    let ready = read_until_ok(&mut client, server, prepared, linearizable, started).await?;
    Ok((serving, ready))
}

/// Reads every probe row until the node answers (no leader yet and read
/// timeouts are retried), then checks the answer; returns the time since
/// `started`.
async fn read_until_ok(
    client: &mut InventoryClient<Channel>,
    server: &mut Server,
    prepared: &Prepared,
    consistency: pb::Consistency,
    started: Instant,
) -> Result<Duration> {
    let request = pb::GetAvailabilityRequest {
        rows: prepared
            .probes
            .iter()
            .map(|p| pb::RowKey {
                sku: p.sku.clone(),
                location: Some(p.location.clone()),
            })
            .collect(),
        consistency: consistency as i32,
    };
    loop {
        server.check_running()?;
        match client.get_availability(request.clone()).await {
            Ok(response) => {
                let at = started.elapsed();
                check_probes(&response.into_inner(), &prepared.probes)?;
                return Ok(at);
            }
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ) => {}
            Err(s) => return Err(format!("GetAvailability ({consistency:?}): {s}").into()),
        }
        if started.elapsed() > READY_DEADLINE {
            return Err(format!("no {consistency:?} read succeeded in time").into());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn check_probes(response: &pb::GetAvailabilityResponse, probes: &[Probe]) -> Result<()> {
    for p in probes {
        let row = response
            .rows
            .iter()
            .find(|r| r.sku == p.sku && r.location == p.location)
            .ok_or_else(|| format!("shard {}: row {}@{} missing", p.shard, p.sku, p.location))?;
        let got = (row.on_hand, row.held, row.available);
        let want = (p.on_hand, p.held, p.available);
        if got != want || row.as_of_index < p.last_index {
            return Err(format!(
                "shard {}: row {}@{} reads (on_hand, held, available) {got:?} as of {}, expected {want:?} as of {} or later",
                p.shard, p.sku, p.location, row.as_of_index, p.last_index
            )
            .into());
        }
    }
    Ok(())
}

/// Every shard's ledger digest equals the one computed while preparing:
/// the restart rebuilt exactly the state the log implies.
async fn check_digests(port: u16, prepared: &Prepared) -> Result<()> {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect()
        .await?;
    let status = AdminClient::new(channel)
        .cluster_status(ClusterStatusRequest { with_digest: true })
        .await?
        .into_inner();
    for (shard, want) in prepared.digests.iter().enumerate() {
        let got = status.shards.get(shard).map(|s| s.digest.as_slice());
        if got != Some(&want.to_le_bytes()[..]) {
            return Err(format!("shard {shard}: state digest differs after restart").into());
        }
    }
    Ok(())
}

// ---- files ----

/// Copies a data directory and fsyncs it, so no write-back of the copy runs
/// during the timed restart.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
            File::open(&target)?.sync_all()?;
        }
    }
    File::open(to)?.sync_all()?;
    Ok(())
}

/// Asks the kernel to drop the (clean, fsynced) cached pages of every file.
fn evict_from_page_cache(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            evict_from_page_cache(&entry.path())?;
            continue;
        }
        let file = File::open(entry.path())?;
        // SAFETY: a plain syscall on a descriptor we own.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(format!("posix_fadvise {}: error {rc}", entry.path().display()).into());
        }
    }
    Ok(())
}

/// Bytes a data directory takes on disk (allocated blocks, like `du`).
#[derive(Debug, Default, Clone, Copy)]
struct DiskUse {
    total: u64,
    /// RocksDB write-ahead log files: what RocksDB replays when it opens.
    wal: u64,
    /// RocksDB table files.
    sst: u64,
}

fn disk_use(dir: &Path, into: &mut DiskUse) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            disk_use(&entry.path(), into)?;
            continue;
        }
        let bytes = meta.blocks() * 512;
        into.total += bytes;
        match entry.path().extension().and_then(|e| e.to_str()) {
            Some("log") => into.wal += bytes,
            Some("sst") => into.sst += bytes,
            _ => {}
        }
    }
    Ok(())
}

// ---- the server's own account of its open ----

/// Sums of the timing fields of the server's "raft storage opened" and
/// "shard opened" info lines (ms; shard fields summed over shards).
#[derive(Debug, Default, Clone, Copy)]
struct OpenTimings {
    rocksdb_open_ms: u64,
    load_ms: u64,
    verify_ms: u64,
    snapshot_read_ms: u64,
    restore_ms: u64,
    replay_ms: u64,
    total_ms: u64,
}

fn parse_open_timings(log: &str) -> Option<OpenTimings> {
    let mut t = OpenTimings::default();
    let mut shards = 0;
    for line in log.lines().map(strip_ansi) {
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .filter_map(|token| token.split_once('='))
                .find(|(key, _)| *key == name)
                .and_then(|(_, value)| value.parse().ok())
                .unwrap_or(0)
        };
        if line.contains("raft storage opened") {
            t.rocksdb_open_ms += field("open_ms");
        } else if line.contains("shard opened") {
            shards += 1;
            t.load_ms += field("load_ms");
            t.verify_ms += field("verify_ms");
            t.snapshot_read_ms += field("snapshot_read_ms");
            t.restore_ms += field("restore_ms");
            t.replay_ms += field("replay_ms");
            t.total_ms += field("total_ms");
        }
    }
    (shards > 0).then_some(t)
}

/// The line without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---- report ----

struct LayoutReport {
    layout: Layout,
    prepared: Prepared,
    disk: DiskUse,
    runs: Vec<RunResult>,
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "min / median / max" in seconds.
fn spread(mut times: Vec<Duration>) -> String {
    times.sort();
    let s = |d: Duration| format!("{:.2}", d.as_secs_f64());
    format!(
        "{} / {} / {}",
        s(times[0]),
        s(times[(times.len() - 1) / 2]),
        s(times[times.len() - 1])
    )
}

fn print_report(args: &Args, reports: &[LayoutReport]) {
    let cache = if args.cold { "cold" } else { "warm" };
    println!(
        "recovery-time: one node, {} shards, fsync on, page cache {cache}, {} run(s) per layout; times from spawning holdfast-server",
        args.shards, args.runs
    );
    println!();
    println!("| layout | stock rows | log entries | replayed at start | data dir MB on disk (WAL / SST / other) | snapshots MB | prepare s | to serving s (min / median / max) | to first linearizable read s (min / median / max) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        let p = &r.prepared;
        let mb = |b: u64| b as f64 / 1e6;
        println!(
            "| {} | {} | {} | {} | {:.0} ({:.0} / {:.0} / {:.0}) | {:.1} | {:.1} | {} | {} |",
            r.layout.name(),
            thousands(p.rows),
            thousands(p.log_entries),
            thousands(p.replayed_entries),
            mb(r.disk.total),
            mb(r.disk.wal),
            mb(r.disk.sst),
            mb(r.disk.total - r.disk.wal - r.disk.sst),
            mb(p.snapshot_bytes),
            p.elapsed.as_secs_f64(),
            spread(r.runs.iter().map(|x| x.serving).collect()),
            spread(r.runs.iter().map(|x| x.ready).collect()),
        );
    }
    println!();
    println!("Where the time went, per run (ms; shard phases summed over shards, from the server's info log; CPU: the server's user + system time by the linearizable read):");
    println!();
    println!("| layout | run | RocksDB open | shard load | verify_log | snapshot read | restore | replay | shards total | rest until serving | serving to linearizable | to linearizable | server CPU |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in reports {
        for (i, run) in r.runs.iter().enumerate() {
            println!("| {} | {} | {} |", r.layout.name(), i + 1, breakdown(run));
        }
    }
    println!();
    println!(
        "reproduce: cargo build --release -p holdfast-server -p holdfast-bench && target/release/recovery-time --rows {} --entries {} --shards {} --layouts {} --runs {}{}",
        args.rows,
        args.entries,
        args.shards,
        args.layouts,
        args.runs,
        if args.cold { " --cold" } else { "" }
    );
}

/// One run's breakdown columns (after layout and run number).
fn breakdown(run: &RunResult) -> String {
    let ms = |d: Duration| d.as_millis() as u64;
    let open = match run.open {
        Some(t) => [
            t.rocksdb_open_ms,
            t.load_ms,
            t.verify_ms,
            t.snapshot_read_ms,
            t.restore_ms,
            t.replay_ms,
            t.total_ms,
            ms(run.serving).saturating_sub(t.rocksdb_open_ms + t.total_ms),
        ]
        .map(|v| v.to_string())
        .join(" | "),
        None => ["n/a"; 8].join(" | "),
    };
    let cpu = run
        .cpu_at_ready
        .map_or("n/a".to_string(), |d| ms(d).to_string());
    format!(
        "{open} | {} | {} | {cpu}",
        ms(run.ready.saturating_sub(run.serving)),
        ms(run.ready)
    )
}

fn run(args: &Args) -> Result<()> {
    let layouts = args
        .layouts
        .split(',')
        .map(Layout::parse)
        .collect::<Result<Vec<_>>>()?;
    if args.runs == 0 || args.shards == 0 || args.shards > 1024 {
        return Err("--runs must be at least 1 and --shards within 1..=1024".into());
    }
    if let Some(dir) = &args.prepare_only {
        return prepare_only(args, &layouts, dir);
    }
    if !server_binary().exists() {
        return Err(format!(
            "{} is missing: cargo build --release -p holdfast-server",
            server_binary().display()
        )
        .into());
    }
    let root = match &args.dir {
        Some(dir) => tempfile::TempDir::new_in(dir)?,
        None => tempfile::TempDir::new()?,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut reports = Vec::new();
    for layout in layouts {
        reports.push(measure_layout(&rt, args, layout, root.path())?);
    }
    print_report(args, &reports);
    Ok(())
}

fn measure_layout(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    layout: Layout,
    root: &Path,
) -> Result<LayoutReport> {
    let template = root.join(layout.name()).join("template");
    eprintln!("{}: preparing {}", layout.name(), template.display());
    let prepared = prepare(layout, args, &template)?;
    let mut disk = DiskUse::default();
    disk_use(&template, &mut disk)?;
    eprintln!(
        "{}: prepared in {:.1} s, {:.0} MB on disk",
        layout.name(),
        prepared.elapsed.as_secs_f64(),
        disk.total as f64 / 1e6
    );
    let mut runs = Vec::new();
    for i in 1..=args.runs {
        let run_dir = root.join(layout.name()).join(format!("run-{i}"));
        let result = measure_once(rt, args, &template, &run_dir, &prepared)?;
        eprintln!(
            "{}: run {i}: serving after {:.2} s, first linearizable read after {:.2} s",
            layout.name(),
            result.serving.as_secs_f64(),
            result.ready.as_secs_f64()
        );
        runs.push(result);
    }
    fs::remove_dir_all(&template)?;
    Ok(LayoutReport {
        layout,
        prepared,
        disk,
        runs,
    })
}

/// `--prepare-only`: prepares each layout into `dir/<layout>` and keeps it.
fn prepare_only(args: &Args, layouts: &[Layout], dir: &Path) -> Result<()> {
    for &layout in layouts {
        let target = dir.join(layout.name());
        if target.exists() {
            return Err(format!("{} exists already", target.display()).into());
        }
        let prepared = prepare(layout, args, &target)?;
        println!(
            "{}: prepared in {:.1} s; start it with: holdfast-server --shards {} --data-dir {}",
            layout.name(),
            prepared.elapsed.as_secs_f64(),
            args.shards,
            target.display()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("recovery-time: {e}");
            ExitCode::FAILURE
        }
    }
}
