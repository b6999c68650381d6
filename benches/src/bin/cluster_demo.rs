//! `cluster-demo`: the README's main job.
//!
//! Starts a local 3-node Holdfast cluster (real `holdfast-server` processes
//! on 127.0.0.1, fsync on, 8 shards), loads sample stock, and runs a short
//! demo that prints what it did: a flash sale where many buyers race for a
//! few units (exactly that many must sell), then a reservation lifecycle
//! load (reserve, then confirm 80%, release 15%, let 5% expire) with a
//! progress line, and finally a check of the books: every hold resolved and
//! `on_hand` down by exactly the units confirmed. The cluster then stays
//! reachable until Ctrl-C.
//!
//! Run: `bash scripts/demo.sh` (or `target/release/cluster-demo --help`).

use clap::Parser;
use holdfast_bench::local::{channel, free_port, LocalCluster};
use holdfast_server::pb::inventory as pb;
use holdfast_server::pb::inventory::inventory_client::InventoryClient;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// mimalloc, as in the server: the gRPC stack allocates per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Shards of the demo cluster (the server's default).
const SHARDS: u32 = 8;
/// Nodes of the demo cluster.
const NODES: usize = 3;
/// Sample catalogue: SKUs, each stocked at both locations.
const CATALOGUE_SKUS: usize = 1_000;
/// Units of each catalogue row.
const CATALOGUE_UNITS: i64 = 500;
/// The two sample locations: (name, region, priority).
const LOCATIONS: [(&str, &str, u32); 2] = [("berlin", "eu", 1), ("newark", "us", 2)];
/// The flash sale's SKU.
const FLASH_SKU: &str = "sneaker-limited";
/// Concurrent callers of the lifecycle phase.
const LIFECYCLE_CALLERS: usize = 64;
/// TTL of holds the lifecycle lets expire (the shortest the API allows).
const SHORT_TTL_MS: u64 = 1_000;
/// TTL of holds the lifecycle resolves itself.
const LONG_TTL_MS: u64 = 600_000;
/// Rows per availability read (the API's maximum is 1,000).
const READ_ROWS_MAX: usize = 1_000;

#[derive(Parser, Debug)]
#[command(about = "Start a local 3-node Holdfast cluster and run a short demo on it")]
struct Args {
    /// Data directory of the cluster (`n1`, `n2`, `n3` below it); a fresh
    /// temporary directory, removed at exit, when not given.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Port of node 1; nodes 2 and 3 take the next two (0: any free ports).
    #[arg(long, default_value_t = 7401)]
    base_port: u16,
    /// Buyers racing in the flash sale, all at once.
    #[arg(long, default_value_t = 1_000)]
    buyers: usize,
    /// Units on sale in the flash sale.
    #[arg(long, default_value_t = 50)]
    units: i64,
    /// Seconds of lifecycle load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Stop the cluster when the demo ends instead of waiting for Ctrl-C.
    #[arg(long)]
    no_wait: bool,
}

/// One client per shard, each connected to that shard's leader.
#[derive(Clone)]
struct Router {
    by_shard: Vec<InventoryClient<Channel>>,
}

impl Router {
    fn new(leader_ports: &[u16]) -> Self {
        Router {
            by_shard: leader_ports
                .iter()
                .map(|&p| InventoryClient::new(channel(p)))
                .collect(),
        }
    }

    fn for_sku(&self, sku: &str) -> InventoryClient<Channel> {
        self.by_shard[holdfast_engine::shard_of(sku, SHARDS) as usize].clone()
    }

    fn any(&self) -> InventoryClient<Channel> {
        self.by_shard[0].clone()
    }
}

fn catalogue_sku(i: usize) -> String {
    format!("sku-{i:04}")
}

/// Rewrites the progress line in place, on a terminal only (a log file
/// gets the summary lines alone).
fn progress(line: &str) {
    let mut out = std::io::stdout();
    if out.is_terminal() {
        print!("\r\x1b[2K{line}");
        let _ = out.flush();
    }
}

fn reserve(
    request_id: String,
    owner: String,
    sku: String,
    quantity: i64,
    ttl_ms: u64,
) -> pb::ReserveRequest {
    pb::ReserveRequest {
        request_id,
        owner_id: owner.clone(),
        customer_id: owner,
        lines: vec![pb::ReserveLine {
            sku,
            quantity,
            location: None,
        }],
        ttl_ms,
        policy: pb::FillPolicy::AllOrNothing as i32,
        allow_split: false,
        region: Some("eu".into()),
    }
}

/// Creates the locations and stocks the catalogue and the flash SKU.
async fn load_stock(router: &Router, flash_units: i64) -> Result<(), tonic::Status> {
    for (name, region, priority) in LOCATIONS {
        router
            .any()
            .upsert_location(pb::UpsertLocationRequest {
                request_id: format!("demo-location-{name}"),
                location: name.into(),
                region: region.into(),
                priority,
            })
            .await?;
    }
    let rows: Vec<(String, &str, i64)> = (0..CATALOGUE_SKUS)
        .flat_map(|i| {
            LOCATIONS
                .iter()
                .map(move |l| (catalogue_sku(i), l.0, CATALOGUE_UNITS))
        })
        .chain(std::iter::once((
            FLASH_SKU.to_string(),
            "berlin",
            flash_units,
        )))
        .collect();
    let total = rows.len();
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for chunk in rows.chunks(total.div_ceil(LIFECYCLE_CALLERS)) {
        let chunk = chunk.to_vec();
        let router = router.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            for (sku, location, units) in chunk {
                router
                    .for_sku(&sku)
                    .adjust_stock(pb::AdjustStockRequest {
                        request_id: format!("demo-stock-{sku}-{location}"),
                        sku,
                        location: location.into(),
                        delta: units,
                        expected_on_hand: None,
                    })
                    .await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), tonic::Status>(())
        }));
    }
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    for task in tasks {
        let mut task = task;
        loop {
            tokio::select! {
                r = &mut task => { r.expect("stock task")?; break; }
                _ = ticker.tick() => progress(&format!(
                    "  stocking: {}/{total} rows", done.load(Ordering::Relaxed))),
            }
        }
    }
    progress("");
    println!(
        "  stocked {total} rows ({} SKUs × {} locations at {CATALOGUE_UNITS} units, and {flash_units} units of {FLASH_SKU}) in {:.1} s",
        CATALOGUE_SKUS,
        LOCATIONS.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `buyers` concurrent reserves of one unit each for `units` units.
async fn flash_sale(router: &Router, buyers: usize, units: i64) -> Result<(), String> {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(buyers);
    for b in 0..buyers {
        let mut client = router.for_sku(FLASH_SKU);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client
                .reserve(reserve(
                    format!("demo-flash-{b}"),
                    format!("buyer-{b}"),
                    FLASH_SKU.into(),
                    1,
                    LONG_TTL_MS,
                ))
                .await;
            (r.map(|_| ()).map_err(|s| s.code()), t.elapsed())
        }));
    }
    let (mut sold, mut out_of_stock, mut other) = (0i64, 0u64, 0u64);
    let mut slowest_refusal = Duration::ZERO;
    for t in tasks {
        match t.await.map_err(|e| e.to_string())? {
            (Ok(()), _) => sold += 1,
            (Err(tonic::Code::FailedPrecondition), took) => {
                out_of_stock += 1;
                slowest_refusal = slowest_refusal.max(took);
            }
            (Err(_), _) => other += 1,
        }
    }
    println!(
        "  {buyers} buyers raced for {units} units: {sold} sold, {out_of_stock} refused OUT_OF_STOCK, {other} other errors, in {:.2} s (slowest refusal {:.1} ms)",
        started.elapsed().as_secs_f64(),
        slowest_refusal.as_secs_f64() * 1e3
    );
    if sold != units {
        return Err(format!(
            "sold {sold} units of {units}: the ledger oversold or undersold"
        ));
    }
    Ok(())
}

/// What the lifecycle phase did.
#[derive(Default)]
struct Lifecycle {
    reserves: AtomicU64,
    refused: AtomicU64,
    confirmed_units: AtomicU64,
    released: AtomicU64,
    left_to_expire: AtomicU64,
    errors: AtomicU64,
}

/// One caller: reserve 1–3 units of a pseudo-random catalogue SKU (the
/// allocation policy picks the location), then confirm, release or walk
/// away, in the proportions 16 : 3 : 1.
async fn lifecycle_caller(router: Router, caller: usize, until: Instant, stats: Arc<Lifecycle>) {
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let pick = (caller as u64)
            .wrapping_mul(7_919)
            .wrapping_add(n.wrapping_mul(104_729));
        let sku = catalogue_sku((pick % CATALOGUE_SKUS as u64) as usize);
        let quantity = (pick % 3 + 1) as i64;
        let fate = pick % 20;
        let ttl = if fate == 19 {
            SHORT_TTL_MS
        } else {
            LONG_TTL_MS
        };
        let mut client = router.for_sku(&sku);
        let held = client
            .reserve(reserve(
                format!("demo-life-{caller}-{n}"),
                format!("cart-{caller}"),
                sku,
                quantity,
                ttl,
            ))
            .await;
        let reservation_id = match held {
            Ok(r) => r.into_inner().reservation_id,
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        stats.reserves.fetch_add(1, Ordering::Relaxed);
        let outcome = match fate {
            0..=15 => client
                .confirm(pb::ConfirmRequest {
                    request_id: format!("demo-life-{caller}-{n}-confirm"),
                    reservation_id,
                    quantities: Vec::new(),
                })
                .await
                .map(|r| {
                    let units = r.into_inner().units_confirmed as u64;
                    stats.confirmed_units.fetch_add(units, Ordering::Relaxed);
                }),
            16..=18 => client
                .release(pb::ReleaseRequest {
                    request_id: format!("demo-life-{caller}-{n}-release"),
                    reservation_id,
                })
                .await
                .map(|_| {
                    stats.released.fetch_add(1, Ordering::Relaxed);
                }),
            _ => {
                stats.left_to_expire.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        };
        if outcome.is_err() {
            stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn lifecycle(router: &Router, seconds: u64) -> Arc<Lifecycle> {
    let stats = Arc::new(Lifecycle::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..LIFECYCLE_CALLERS)
        .map(|c| tokio::spawn(lifecycle_caller(router.clone(), c, until, stats.clone())))
        .collect();
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    while Instant::now() < until {
        ticker.tick().await;
        let r = stats.reserves.load(Ordering::Relaxed);
        progress(&format!(
            "  lifecycle: {:>4.1} s, {r} reserved ({:.0}/s), {} units confirmed, {} released, {} left to expire, {} errors",
            started.elapsed().as_secs_f64(),
            r as f64 / started.elapsed().as_secs_f64(),
            stats.confirmed_units.load(Ordering::Relaxed),
            stats.released.load(Ordering::Relaxed),
            stats.left_to_expire.load(Ordering::Relaxed),
            stats.errors.load(Ordering::Relaxed),
        ));
    }
    for t in tasks {
        let _ = t.await;
    }
    progress("");
    let r = stats.reserves.load(Ordering::Relaxed);
    println!(
        "  {LIFECYCLE_CALLERS} callers, {seconds} s: {r} reservations ({:.0}/s; each a reserve then a confirm or release through Raft), {} units confirmed, {} released, {} left to expire, {} refused out of stock, {} errors",
        r as f64 / started.elapsed().as_secs_f64(),
        stats.confirmed_units.load(Ordering::Relaxed),
        stats.released.load(Ordering::Relaxed),
        stats.left_to_expire.load(Ordering::Relaxed),
        stats.refused.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
    );
    stats
}

/// Sums (on_hand, held) over every catalogue row, read linearizably.
async fn catalogue_totals(router: &Router) -> Result<(i64, i64), tonic::Status> {
    let mut by_shard: Vec<Vec<pb::RowKey>> = vec![Vec::new(); SHARDS as usize];
    for i in 0..CATALOGUE_SKUS {
        let sku = catalogue_sku(i);
        by_shard[holdfast_engine::shard_of(&sku, SHARDS) as usize].push(pb::RowKey {
            sku,
            location: None,
        });
    }
    let (mut on_hand, mut held) = (0, 0);
    for (shard, keys) in by_shard.into_iter().enumerate() {
        for chunk in keys.chunks(READ_ROWS_MAX / LOCATIONS.len()) {
            let rows = router.by_shard[shard]
                .clone()
                .get_availability(pb::GetAvailabilityRequest {
                    rows: chunk.to_vec(),
                    consistency: pb::Consistency::Linearizable as i32,
                })
                .await?
                .into_inner()
                .rows;
            for row in rows {
                on_hand += row.on_hand;
                held += row.held;
            }
        }
    }
    Ok((on_hand, held))
}

/// Waits for the walked-away holds to expire, then checks the books.
async fn check_books(router: &Router, stats: &Lifecycle) -> Result<(), String> {
    let expected_on_hand = (CATALOGUE_SKUS * LOCATIONS.len()) as i64 * CATALOGUE_UNITS
        - stats.confirmed_units.load(Ordering::Relaxed) as i64;
    let started = Instant::now();
    loop {
        let (on_hand, held) = catalogue_totals(router).await.map_err(|s| s.to_string())?;
        if held == 0 {
            println!(
                "  after {:.1} s every hold is resolved or expired: held 0, on_hand {on_hand} = {} stocked − {} confirmed",
                started.elapsed().as_secs_f64(),
                (CATALOGUE_SKUS * LOCATIONS.len()) as i64 * CATALOGUE_UNITS,
                stats.confirmed_units.load(Ordering::Relaxed),
            );
            return if on_hand == expected_on_hand {
                Ok(())
            } else {
                Err(format!("on_hand {on_hand}, expected {expected_on_hand}"))
            };
        }
        progress(&format!(
            "  waiting for {held} held units to expire (TTL {SHORT_TTL_MS} ms)"
        ));
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("{held} units still held 30 s after the load"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await; // polling interval
    }
}

async fn run_demo(cluster: &LocalCluster, args: &Args) -> Result<(), String> {
    let leaders = cluster.balanced_leaders().await;
    let router = Router::new(&leaders);
    println!("1. sample stock");
    load_stock(&router, args.units)
        .await
        .map_err(|s| s.to_string())?;
    println!("2. flash sale");
    flash_sale(&router, args.buyers, args.units).await?;
    println!("3. reservation lifecycle");
    let stats = lifecycle(&router, args.seconds).await;
    println!("4. the books");
    check_books(&router, &stats).await
}

async fn wait_for_ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let temp = match &args.data_dir {
        Some(_) => None,
        None => Some(tempfile::TempDir::new().expect("temp dir")),
    };
    let root = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.as_ref().expect("temp").path().to_path_buf());
    if let Err(e) = std::fs::create_dir_all(&root) {
        eprintln!("cluster-demo: cannot create {}: {e}", root.display());
        return std::process::ExitCode::from(2);
    }
    // The demo's checks assume the stock it loads itself.
    if std::fs::read_dir(&root).is_ok_and(|mut d| d.next().is_some()) {
        eprintln!(
            "cluster-demo: {} is not empty; give a new or empty --data-dir",
            root.display()
        );
        return std::process::ExitCode::from(2);
    }
    let ports: Vec<u16> = match args.base_port {
        0 => (0..NODES).map(|_| free_port()).collect(),
        base => (0..NODES as u16).map(|i| base + i).collect(),
    };
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "cluster-demo: starting {NODES} holdfast-server nodes ({peers}), {SHARDS} shards, fsync on, data and logs under {}",
        root.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut cluster = LocalCluster::start(ports, SHARDS, &root, Some(&root));
    let result = runtime.block_on(run_demo(&cluster, &args));
    match &result {
        Ok(()) => println!("demo: passed: no unit oversold, none lost, the books balance"),
        Err(e) => println!("demo: FAILED: {e}"),
    }
    if result.is_ok() && !args.no_wait {
        println!(
            "the cluster stays up: any node answers, e.g. 127.0.0.1:{}; Ctrl-C stops it",
            cluster.ports[0]
        );
        runtime.block_on(wait_for_ctrl_c());
        println!();
    }
    cluster.stop(Duration::from_secs(5));
    println!("cluster stopped");
    if result.is_ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
