//! Criterion benchmarks of the ledger engine: single-thread applies per
//! second, expiry, snapshot/restore, and memory per row and per hold.
//!
//! Run: `cargo bench -p holdfast-engine --bench ledger -- --warm-up-time 1
//! --measurement-time 3`.
//!
//! Timed loops use the wall clock; `HOLDFAST_BENCH_CLOCK=cpu` makes them use
//! this thread's CPU time instead, for a machine busy with other work.
//!
//! Every bench uses `iter_custom` with its own loop so that setup (building
//! a million rows, refilling holds, untimed expiry) is excluded from the
//! time, and large state is built once per bench rather than per sample.
//! Commands are built once; the timed loop only writes a fresh `RequestId`
//! (a repeated id would be answered from the idempotency table and measure
//! the wrong thing) and, for `spread`, the SKU and location of the line.
//!
//! The engine keeps its default config (idempotency table of up to 1,000,000
//! request ids, oldest evicted first), so the reserve benches
//! run in the same steady state as a busy shard. Holds live 15 minutes and
//! log time advances 1 ms per 1,000 applies, so nothing expires during a
//! timed stretch; when `PENDING_CAP` holds have accumulated, an untimed
//! `ExpireUpTo` clears them so memory stays bounded however many iterations
//! criterion asks for.

use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use holdfast_engine::{
    AdjustStock, Command, CommandKind, Confirm, Engine, EngineConfig, Event, ExpireUpTo,
    FillPolicy, Outcome, Release, RequestId, ReservationId, Reserve, ReserveLine, Stamp, Success,
    UpsertLocation,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

// ----- counting allocator ----------------------------------------------------

/// `System`, plus a count of live bytes requested while `COUNTING` is on.
/// Off during the timed benches (one relaxed load per allocation).
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() && COUNTING.load(Relaxed) {
            LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() && COUNTING.load(Relaxed) {
            LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        if COUNTING.load(Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size() as isize, Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() && COUNTING.load(Relaxed) {
            LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Relaxed)
}

// ----- timing --------------------------------------------------------------------

/// The timed loops' clock: wall time by default; with
/// `HOLDFAST_BENCH_CLOCK=cpu`, this thread's CPU time (user + kernel, so page
/// faults count) instead, which a machine busy with other work does not
/// inflate. Criterion reports whichever is chosen.
#[derive(Clone, Copy)]
enum Clock {
    Wall(Instant),
    Cpu(Duration),
}

fn use_cpu_clock() -> bool {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CPU.get_or_init(|| std::env::var("HOLDFAST_BENCH_CLOCK").is_ok_and(|v| v == "cpu"))
}

#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `struct timespec` (64-bit Linux).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Duration {
    panic!("HOLDFAST_BENCH_CLOCK=cpu needs Linux");
}

impl Clock {
    #[inline]
    fn start() -> Clock {
        if use_cpu_clock() {
            Clock::Cpu(thread_cpu_time())
        } else {
            Clock::Wall(Instant::now())
        }
    }

    #[inline]
    fn elapsed(self) -> Duration {
        match self {
            Clock::Wall(t) => t.elapsed(),
            Clock::Cpu(t) => thread_cpu_time() - t,
        }
    }
}

// ----- a ledger with its own log position and clock --------------------------

/// 2026-01-01T00:00:00Z.
const T0_MS: u64 = 1_767_225_600_000;
/// Hold duration of every reserve (15 minutes).
const TTL_MS: u64 = 15 * 60 * 1_000;
/// Log time advances 1 ms every this many applies.
const APPLIES_PER_MS: u32 = 1_000;
/// Pending holds allowed to accumulate before an untimed expiry clears them.
const PENDING_CAP: u64 = 2_000_000;
/// The idempotency window of the default config (one hour).
const DEDUP_WINDOW_MS: u64 = 60 * 60 * 1_000;
/// Units of the hot row: effectively unlimited (the engine's bound, 10^12).
const HOT_UNITS: i64 = 1_000_000_000_000;

const SPREAD_SKUS: u64 = 250_000;
const SPREAD_LOCATIONS: u64 = 4;
const SPREAD_ROWS: u64 = SPREAD_SKUS * SPREAD_LOCATIONS;
const SPREAD_UNITS_PER_ROW: i64 = 1_000_000;
const EXPIRE_HOLDS: u64 = 100_000;

struct Ledger {
    engine: Engine,
    index: u64,
    now_ms: u64,
    until_tick: u32,
    request_seq: u64,
    events: Vec<Event>,
}

impl Ledger {
    fn new() -> Self {
        Ledger::with_config(EngineConfig::default())
    }

    fn with_config(config: EngineConfig) -> Self {
        Ledger {
            engine: Engine::new(config),
            index: 0,
            now_ms: T0_MS,
            until_tick: APPLIES_PER_MS,
            request_seq: 0,
            events: Vec::with_capacity(64),
        }
    }

    /// A fresh, well-mixed 128-bit request id (unique: the sequence number
    /// is the high half).
    #[inline]
    fn next_request(&mut self) -> RequestId {
        self.request_seq += 1;
        let s = self.request_seq;
        RequestId((s as u128) << 64 | s.wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128)
    }

    #[inline]
    fn apply(&mut self, cmd: &Command) -> Outcome {
        self.index += 1;
        self.until_tick -= 1;
        if self.until_tick == 0 {
            self.until_tick = APPLIES_PER_MS;
            self.now_ms += 1;
        }
        self.events.clear();
        let stamp = Stamp {
            index: self.index,
            now_ms: self.now_ms,
        };
        self.engine.apply(stamp, cmd, &mut self.events)
    }

    /// Setup only: applies `kind` under a fresh request id and insists it
    /// succeeds.
    fn must(&mut self, kind: CommandKind) -> Success {
        let cmd = Command {
            request_id: self.next_request(),
            kind,
        };
        match self.apply(&cmd) {
            Ok(s) => s,
            Err(e) => panic!("setup command {cmd:?} refused: {e:?}"),
        }
    }

    fn upsert_location(&mut self, name: &str) {
        self.must(CommandKind::UpsertLocation(UpsertLocation {
            location: name.to_string(),
            region: "eu-central".to_string(),
            priority: 1,
        }));
    }

    fn stock(&mut self, sku: &str, location: &str, units: i64) {
        self.must(CommandKind::AdjustStock(AdjustStock {
            sku: sku.to_string(),
            location: location.to_string(),
            delta: units,
            expected_on_hand: None,
        }));
    }

    /// Moves log time to `now_ms + ms` and expires everything due then.
    /// Returns the number of holds expired.
    fn expire_after(&mut self, ms: u64) -> u64 {
        self.now_ms += ms;
        let up_to_ms = self.now_ms;
        match self.must(CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms })) {
            Success::Expired { reservations, .. } => reservations,
            other => panic!("ExpireUpTo answered {other:?}"),
        }
    }

    /// Expires every pending hold (untimed housekeeping).
    fn expire_all(&mut self) -> u64 {
        self.expire_after(TTL_MS + 1)
    }

    /// Lets three idempotency windows pass (with a remembered command in
    /// each), so every remembered id is evicted and the table has shrunk
    /// back: what remains is the state that outlives request retention.
    /// Pending holds must have a TTL longer than three hours to survive this.
    fn forget_requests(&mut self) {
        for _ in 0..3 {
            self.now_ms += DEDUP_WINDOW_MS + 1;
            let cmd = Command {
                request_id: self.next_request(),
                kind: CommandKind::Release(Release {
                    reservation: ReservationId(u64::MAX),
                }),
            };
            // An unknown reservation: refused, but remembered (rotating).
            assert!(self.apply(&cmd).is_err());
        }
        assert!(self.engine.dedup_len() <= 2, "dedup not flushed");
    }
}

fn sku_name(i: u64) -> String {
    format!("sku-{i:07}")
}

fn location_name(i: u64) -> String {
    format!("dc-{i:02}")
}

fn reserve_cmd(sku: &str, location: &str, ttl_ms: u64) -> Command {
    Command {
        request_id: RequestId(0),
        kind: CommandKind::Reserve(Reserve {
            owner: "cart-00001234".to_string(),
            customer: "cust-000567".to_string(),
            region: Some("eu-central".to_string()),
            lines: vec![ReserveLine {
                sku: sku.to_string(),
                quantity: 1,
                location: Some(location.to_string()),
            }],
            ttl_ms,
            policy: FillPolicy::AllOrNothing,
            allow_split: false,
        }),
    }
}

/// One SKU at one location with 10^12 units.
fn hot_ledger() -> Ledger {
    hot_ledger_with(EngineConfig::default())
}

fn hot_ledger_with(config: EngineConfig) -> Ledger {
    let mut l = Ledger::with_config(config);
    l.upsert_location(&location_name(1));
    l.stock(&sku_name(42), &location_name(1), HOT_UNITS);
    l
}

fn hot_reserve_cmd(ttl_ms: u64) -> Command {
    reserve_cmd(&sku_name(42), &location_name(1), ttl_ms)
}

/// 250,000 SKUs x 4 locations = 1,000,000 rows, loaded one location's feed
/// after another (so a SKU's four rows are 250,000 rows apart, as when each
/// warehouse syncs its own stock). Request ids of the load are forgotten.
fn spread_ledger() -> Ledger {
    let mut l = Ledger::new();
    for loc in 0..SPREAD_LOCATIONS {
        l.upsert_location(&location_name(loc));
    }
    for loc in 0..SPREAD_LOCATIONS {
        let location = location_name(loc);
        for sku in 0..SPREAD_SKUS {
            l.stock(&sku_name(sku), &location, SPREAD_UNITS_PER_ROW);
        }
    }
    l.forget_requests();
    assert_eq!(l.engine.row_count() as u64, SPREAD_ROWS);
    l
}

/// Cheap deterministic pseudo-random rows (64-bit LCG, high bits).
struct Lcg(u64);

impl Lcg {
    #[inline]
    fn next_below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 32) * n) >> 32
    }
}

/// Writes `sku_name(sku)` into `name` in place (no allocation, and no read
/// of a table of a million names, which would add a cache miss the server
/// does not have: its names arrive in the request).
#[inline]
fn write_sku_name(name: &mut String, sku: u64) {
    let mut digits = [b'0'; 7];
    let mut n = sku;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    name.clear();
    name.push_str("sku-");
    name.push_str(std::str::from_utf8(&digits).expect("ASCII digits"));
}

/// Reserve templates for the spread benches, one per location; the timed
/// loop writes the SKU name into the line.
struct SpreadCommands {
    by_location: Vec<Command>,
    rng: Lcg,
}

impl SpreadCommands {
    fn new() -> Self {
        let mut name = String::new();
        for sku in [0, 7, 42, 123_456, SPREAD_SKUS - 1] {
            write_sku_name(&mut name, sku);
            assert_eq!(name, sku_name(sku));
        }
        SpreadCommands {
            by_location: (0..SPREAD_LOCATIONS)
                .map(|loc| reserve_cmd(&sku_name(0), &location_name(loc), TTL_MS))
                .collect(),
            rng: Lcg(0x2545_F491_4F6C_DD1D),
        }
    }

    /// A reserve of one unit on a pseudo-random row, with a fresh id.
    #[inline]
    fn next(&mut self, request_id: RequestId) -> &Command {
        let row = self.rng.next_below(SPREAD_ROWS);
        let cmd = &mut self.by_location[(row % SPREAD_LOCATIONS) as usize];
        cmd.request_id = request_id;
        if let CommandKind::Reserve(r) = &mut cmd.kind {
            write_sku_name(&mut r.lines[0].sku, row / SPREAD_LOCATIONS);
        }
        cmd
    }
}

#[inline]
fn expect_reserved(out: Outcome) -> ReservationId {
    match out {
        Ok(Success::Reserved { reservation }) => reservation,
        other => panic!("reserve answered {other:?}"),
    }
}

// ----- memory ------------------------------------------------------------------

fn per(bytes: isize, n: u64) -> f64 {
    bytes as f64 / n as f64
}

fn report_memory() {
    COUNTING.store(true, Relaxed);

    // Stock rows: 250,000 SKUs x 4 locations, request ids forgotten.
    let before = live_bytes();
    let rows = spread_ledger();
    let delta = live_bytes() - before;
    println!(
        "memory: {:.1} bytes per stock row ({} rows: {} SKUs x {} locations; allocator, live bytes)",
        per(delta, SPREAD_ROWS),
        SPREAD_ROWS,
        SPREAD_SKUS,
        SPREAD_LOCATIONS
    );
    println!(
        "memory: {:.1} bytes per stock row by Engine::heap_bytes() ({} bytes)",
        per(rows.engine.heap_bytes() as isize, SPREAD_ROWS),
        rows.engine.heap_bytes()
    );
    drop(rows);

    // Pending single-line holds on one row, TTL 24 h (the maximum) so the
    // holds outlive three idempotency windows. Measured after their request
    // ids rotated out; the idempotency table is measured on the way, when it
    // first holds its maximum of ids (its peak).
    const HOLDS: u64 = 1_000_000;
    let dedup_max = EngineConfig::default().dedup.entries_max;
    let mut l = hot_ledger();
    l.forget_requests();
    let mut cmd = hot_reserve_cmd(24 * 60 * 60 * 1_000);
    let base_heap = l.engine.heap_bytes() as isize;
    let before = live_bytes();
    let mut fullest = None;
    for n in 1..=HOLDS {
        cmd.request_id = l.next_request();
        expect_reserved(l.apply(&cmd));
        if fullest.is_none() && l.engine.dedup_len() >= dedup_max {
            let heap = l.engine.heap_bytes() as isize - base_heap;
            fullest = Some((n, live_bytes() - before, heap));
        }
    }
    let (fullest_holds, fullest_live, fullest_heap) =
        fullest.expect("the idempotency table fills up within the run");
    l.forget_requests();
    assert_eq!(l.engine.reservation_count() as u64, HOLDS);
    let per_hold = per(live_bytes() - before, HOLDS);
    let per_hold_heap = per(l.engine.heap_bytes() as isize - base_heap, HOLDS);
    let per_id = (fullest_live as f64 - per_hold * fullest_holds as f64) / dedup_max as f64;
    let per_id_heap =
        (fullest_heap as f64 - per_hold_heap * fullest_holds as f64) / dedup_max as f64;
    println!(
        "memory: {per_hold:.1} bytes per pending single-line reservation ({HOLDS} reservations, \
         request ids forgotten; allocator, live bytes)"
    );
    println!(
        "memory: {per_hold_heap:.1} bytes per pending single-line reservation by Engine::heap_bytes()"
    );
    println!(
        "memory: {per_id:.1} bytes per idempotency entry, table at its fullest ({dedup_max} request \
         ids; Engine::heap_bytes() says {per_id_heap:.1}); a hold whose id is still remembered \
         costs {:.1}",
        per_hold + per_id
    );
    drop(l);

    COUNTING.store(false, Relaxed);
}

// ----- benches -------------------------------------------------------------------

/// Times `iters` applies of `one` in stretches of at most `PENDING_CAP`
/// new holds, expiring them (untimed) between stretches.
fn timed_holds(
    l: &mut Ledger,
    pending: &mut u64,
    iters: u64,
    mut one: impl FnMut(&mut Ledger),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        if *pending >= PENDING_CAP {
            l.expire_all();
            *pending = 0;
        }
        let n = left.min(PENDING_CAP - *pending);
        let start = Clock::start();
        for _ in 0..n {
            one(l);
        }
        total += start.elapsed();
        *pending += n;
        left -= n;
    }
    total
}

fn bench_reserve(c: &mut Criterion) {
    let mut group = c.benchmark_group("reserve");
    group.throughput(Throughput::Elements(1));

    // State is built on first use (criterion calls the closure once per
    // sample, and not at all when the bench is filtered out) and kept.

    // (1) One hot row, fixed location.
    let mut hot: Option<(Ledger, Command, u64)> = None;
    group.bench_function("hot", |b| {
        let (l, cmd, pending) =
            hot.get_or_insert_with(|| (hot_ledger(), hot_reserve_cmd(TTL_MS), 0));
        b.iter_custom(|iters| {
            timed_holds(l, pending, iters, |l| {
                cmd.request_id = l.next_request();
                black_box(expect_reserved(l.apply(cmd)));
            })
        })
    });
    drop(hot);

    // (1b) The same with an idempotency table of 10,000 ids instead of
    // 1,000,000: side by side with (1), the ratio is what remembering a
    // million request ids (cache misses in its index) costs per reserve.
    let mut small: Option<(Ledger, Command, u64)> = None;
    group.bench_function("hot_dedup_10k", |b| {
        let (l, cmd, pending) = small.get_or_insert_with(|| {
            let config = EngineConfig {
                dedup: holdfast_engine::DedupConfig {
                    entries_max: 10_000,
                    ..Default::default()
                },
                ..Default::default()
            };
            (hot_ledger_with(config), hot_reserve_cmd(TTL_MS), 0)
        });
        b.iter_custom(|iters| {
            timed_holds(l, pending, iters, |l| {
                cmd.request_id = l.next_request();
                black_box(expect_reserved(l.apply(cmd)));
            })
        })
    });
    drop(small);

    // (2) Pseudo-random rows among 250,000 SKUs x 4 locations.
    let mut spread: Option<(Ledger, SpreadCommands, u64)> = None;
    group.bench_function("spread", |b| {
        let (l, cmds, pending) =
            spread.get_or_insert_with(|| (spread_ledger(), SpreadCommands::new(), 0));
        b.iter_custom(|iters| {
            timed_holds(l, pending, iters, |l| {
                let id = l.next_request();
                black_box(expect_reserved(l.apply(cmds.next(id))));
            })
        })
    });
    drop(spread);
    group.finish();
}

/// (3) Reserve then confirm on the hot row; one element = one pair (two
/// applies).
fn bench_confirm(c: &mut Criterion) {
    let mut group = c.benchmark_group("confirm");
    group.throughput(Throughput::Elements(1));
    let mut state: Option<(Ledger, Command, Command)> = None;
    group.bench_function("reserve_confirm_pair/hot", |b| {
        let (l, reserve, confirm) = state.get_or_insert_with(|| {
            let confirm = Command {
                request_id: RequestId(0),
                kind: CommandKind::Confirm(Confirm {
                    reservation: ReservationId(0),
                    quantities: None,
                }),
            };
            (hot_ledger(), hot_reserve_cmd(TTL_MS), confirm)
        });
        b.iter_custom(|iters| {
            let start = Clock::start();
            for _ in 0..iters {
                reserve.request_id = l.next_request();
                let reservation = expect_reserved(l.apply(reserve));
                confirm.request_id = l.next_request();
                if let CommandKind::Confirm(c) = &mut confirm.kind {
                    c.reservation = reservation;
                }
                match l.apply(confirm) {
                    Ok(s @ Success::Confirmed { .. }) => black_box(s),
                    other => panic!("confirm answered {other:?}"),
                };
            }
            start.elapsed()
        })
    });
    group.finish();
}

/// (4) One `ExpireUpTo` that expires 100,000 pending holds spread over the
/// million rows (set up untimed before each iteration).
fn bench_expire(c: &mut Criterion) {
    let mut group = c.benchmark_group("expire");
    group.throughput(Throughput::Elements(EXPIRE_HOLDS));
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    let mut state: Option<(Ledger, SpreadCommands)> = None;
    group.bench_function(BenchmarkId::new("holds", EXPIRE_HOLDS), |b| {
        let (l, cmds) = state.get_or_insert_with(|| (spread_ledger(), SpreadCommands::new()));
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for _ in 0..EXPIRE_HOLDS {
                    let id = l.next_request();
                    expect_reserved(l.apply(cmds.next(id)));
                }
                l.now_ms += TTL_MS + 1;
                let expire = Command {
                    request_id: l.next_request(),
                    kind: CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms: l.now_ms }),
                };
                let start = Clock::start();
                let out = l.apply(&expire);
                total += start.elapsed();
                match out {
                    Ok(Success::Expired { reservations, .. }) if reservations == EXPIRE_HOLDS => {}
                    other => panic!("ExpireUpTo answered {other:?}"),
                }
            }
            total
        })
    });
    group.finish();
}

/// A 1,000,000-row ledger (no holds, request ids forgotten) and its
/// snapshot, checked once to restore to the same state.
fn snapshot_world() -> (Ledger, Vec<u8>) {
    let l = spread_ledger();
    let bytes = l.engine.snapshot();
    let restored = Engine::restore(EngineConfig::default(), &bytes).expect("snapshot restores");
    assert_eq!(restored.state_digest(), l.engine.state_digest());
    println!(
        "snapshot: {} bytes for {} rows ({:.1} bytes per row)",
        bytes.len(),
        SPREAD_ROWS,
        bytes.len() as f64 / SPREAD_ROWS as f64
    );
    (l, bytes)
}

/// (5) Snapshot and restore of 1,000,000 rows.
fn bench_snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    group.throughput(Throughput::Elements(SPREAD_ROWS));
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    let mut state: Option<(Ledger, Vec<u8>)> = None;
    group.bench_function(BenchmarkId::new("snapshot", SPREAD_ROWS), |b| {
        let (l, bytes) = state.get_or_insert_with(snapshot_world);
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Clock::start();
                let snap = black_box(l.engine.snapshot());
                total += start.elapsed();
                assert_eq!(snap.len(), bytes.len());
            }
            total
        })
    });
    group.bench_function(BenchmarkId::new("restore", SPREAD_ROWS), |b| {
        let (_, bytes) = state.get_or_insert_with(snapshot_world);
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Clock::start();
                let restored = Engine::restore(EngineConfig::default(), black_box(bytes));
                total += start.elapsed();
                let restored = restored.expect("snapshot restores");
                assert_eq!(restored.row_count() as u64, SPREAD_ROWS);
                drop(restored); // untimed
            }
            total
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_reserve,
    bench_confirm,
    bench_expire,
    bench_snapshot
);

fn main() {
    // Not when listing, or when profiling one bench (`--profile-time`).
    if !std::env::args().any(|a| a == "--list" || a == "--profile-time") {
        report_memory();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
