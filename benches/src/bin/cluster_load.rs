//! `cluster-load`: the simplest honest load on a real cluster.
//!
//! It starts an N-node cluster of `holdfast-server` processes on 127.0.0.1
//! (fsync on, data in a temp dir), stocks it, and runs closed-loop callers
//! that each send one single-line `Reserve` at a time, for a fixed time per
//! concurrency level. Every request goes straight to the leader of its
//! shard (learned from the Admin status RPC), so no forwarding hop is
//! measured. It prints throughput and latency percentiles (HDR histogram)
//! per level, and the command that reproduces them. The full harness with
//! peers and plots is the load-harness issue; this is its first step.
//!
//! Build and run: `cargo build --release -p holdfast-server -p holdfast-bench
//! && target/release/cluster-load --nodes 3 --scenario hot`.

/// mimalloc instead of glibc malloc: the gRPC stack allocates per request,
/// and glibc's malloc showed up at ~15% of its threads' time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use hdrhistogram::Histogram;
use holdfast_bench::local::{channel, free_port, sibling_binary, LocalCluster, START_DEADLINE};
use holdfast_server::pb::internal::DriverCounters;
use holdfast_server::pb::inventory as pb;
use holdfast_server::pb::inventory::inventory_client::InventoryClient;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Shards of the cluster under test (the server's default).
const SHARDS: u32 = 8;
/// SKUs of the `uniform` scenario (each stocked at one location).
const UNIFORM_SKUS: u32 = 10_000;

#[derive(Parser, Debug)]
#[command(about = "Closed-loop reserve load on a local Holdfast cluster")]
struct Args {
    /// Nodes to start (1, 3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// `hot`: one SKU with unlimited stock; `uniform`: 10,000 SKUs.
    #[arg(long, default_value = "hot")]
    scenario: String,
    /// Concurrent callers, comma-separated levels.
    #[arg(long, default_value = "1,16,64,256")]
    concurrency: String,
    /// Seconds per level.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Instead of load: kill -9 the hot shard's leader this many times and
    /// measure the time until the next reserve on that shard succeeds.
    #[arg(long, default_value_t = 0)]
    failover_kills: usize,
    /// What serves the load: `holdfast` (the cluster), `floor` (one
    /// `grpc-floor` process: the same gRPC stack answering at once, no
    /// consensus or storage), or `both` (floor and cluster levels
    /// interleaved, in one run, with their ratio).
    #[arg(long, default_value = "holdfast")]
    system: String,
    /// After each cluster level, print what every node's driver did (loop
    /// turns, group commits and their mean time, commands per entry).
    #[arg(long)]
    driver_work: bool,
    /// Reservations per call: 1 sends `Reserve`, more send `ReserveBatch`
    /// (latency is then per call, throughput per reservation).
    #[arg(long, default_value_t = 1)]
    batch: usize,
}

/// The cluster under test and the temp dir that holds its data.
struct Cluster {
    nodes: LocalCluster,
    dir: tempfile::TempDir,
}

fn start_cluster(n: usize) -> Cluster {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let ports = (0..n).map(|_| free_port()).collect();
    let nodes = LocalCluster::start(ports, SHARDS, dir.path(), None);
    Cluster { nodes, dir }
}

/// The no-op gRPC floor, one process.
struct Floor {
    child: Child,
    port: u16,
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_floor() -> Floor {
    let port = free_port();
    let binary = sibling_binary("grpc-floor");
    let child = Command::new(&binary)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (build it with cargo build --release -p holdfast-bench)",
                binary.display()
            )
        });
    Floor { child, port }
}

/// Waits until the floor answers a reserve.
async fn floor_ready(floor: &Floor) {
    let start = Instant::now();
    let mut client = InventoryClient::new(channel(floor.port));
    while client
        .reserve(reserve_request("ready".into(), 0, "hot-sku".into()))
        .await
        .is_err()
    {
        assert!(start.elapsed() < START_DEADLINE, "the floor did not start");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling interval
    }
}

/// Every node's driver counters (a node that does not answer gives zeros).
async fn driver_counters(cluster: &Cluster) -> Vec<DriverCounters> {
    let mut all = Vec::with_capacity(cluster.nodes.ports.len());
    for i in 0..cluster.nodes.ports.len() {
        let counters = cluster
            .nodes
            .status(i)
            .await
            .and_then(|s| s.driver)
            .unwrap_or_default();
        all.push(counters);
    }
    all
}

/// What each node's driver did during a level, from two readings: the
/// numbers that say what bounds the level's throughput.
fn print_driver_work(before: &[DriverCounters], after: &[DriverCounters], seconds: f64) {
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        let d = |f: fn(&DriverCounters) -> u64| f(a).saturating_sub(f(b));
        let commits = d(|c| c.group_commits);
        let entries = d(|c| c.entries_proposed);
        println!(
            "  node {}: {:.0} loop turns/s, {:.0} fsynced writes/s (mean {:.2} ms each), {:.0} unsynced writes/s, {:.0} entries proposed/s ({:.1} commands each), {:.0} entries applied/s, {:.0} raft messages sent/s",
            i + 1,
            d(|c| c.iterations) as f64 / seconds,
            commits as f64 / seconds,
            d(|c| c.group_commit_us) as f64 / 1e3 / commits.max(1) as f64,
            d(|c| c.unsynced_writes) as f64 / seconds,
            entries as f64 / seconds,
            d(|c| c.commands_proposed) as f64 / entries.max(1) as f64,
            d(|c| c.entries_applied) as f64 / seconds,
            d(|c| c.messages_sent) as f64 / seconds,
        );
    }
}

fn sku(scenario: &str, i: u64) -> String {
    match scenario {
        "hot" => "hot-sku".to_string(),
        _ => format!("sku-{:06}", i % UNIFORM_SKUS as u64),
    }
}

/// Creates the location and stocks the scenario's SKUs. Each load level
/// waits for settled leaders itself (`LocalCluster::balanced_leaders`).
async fn setup(cluster: &Cluster, scenario: &str) {
    let mut client = InventoryClient::new(channel(cluster.nodes.ports[0]));
    let start = Instant::now();
    while client
        .upsert_location(pb::UpsertLocationRequest {
            request_id: "setup-location".into(),
            location: "dc-1".into(),
            region: "eu".into(),
            priority: 1,
        })
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < START_DEADLINE,
            "cannot create the location"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // retry backoff
    }
    let skus = if scenario == "hot" {
        1
    } else {
        UNIFORM_SKUS as u64
    };
    for i in 0..skus {
        let sku = sku(scenario, i);
        loop {
            let r = client
                .adjust_stock(pb::AdjustStockRequest {
                    request_id: format!("setup-stock-{sku}"),
                    sku: sku.clone(),
                    location: "dc-1".into(),
                    delta: 1_000_000_000_000,
                    expected_on_hand: None,
                })
                .await;
            if r.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // retry backoff
        }
    }
}

/// Appends of this size, each followed by `fdatasync`, measure the disk's
/// commit cost the way a group commit pays it.
const FSYNC_PROBE_BYTES: usize = 4_096;
/// Appends the fsync probe times.
const FSYNC_PROBE_WRITES: usize = 400;

/// Times `FSYNC_PROBE_WRITES` appends + `fdatasync` in `dir` (the cluster's
/// own file system): the cost one group commit cannot avoid.
fn fsync_probe(dir: &std::path::Path) -> Histogram<u64> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("probe file");
    let block = vec![0x5au8; FSYNC_PROBE_BYTES];
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..FSYNC_PROBE_WRITES {
        let t = Instant::now();
        file.write_all(&block).expect("probe write");
        file.sync_data().expect("probe fdatasync");
        let _ = hist.record((t.elapsed().as_micros() as u64).max(1));
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    hist
}

/// One single-line reserve of 1 unit at `dc-1`.
fn reserve_request(request_id: String, caller: usize, sku: String) -> pb::ReserveRequest {
    pb::ReserveRequest {
        request_id,
        owner_id: format!("cart-{caller}"),
        customer_id: format!("cust-{caller}"),
        lines: vec![pb::ReserveLine {
            sku,
            quantity: 1,
            location: Some("dc-1".into()),
        }],
        ttl_ms: 3_600_000,
        policy: 0,
        allow_split: false,
        region: None,
    }
}

struct LevelResult {
    ok: u64,
    errors: u64,
    latency_us: Histogram<u64>,
    elapsed: Duration,
}

/// One caller's next call: `batch` reservations (1: a plain `Reserve`)
/// on SKUs of one shard. Returns (reserved, failed) item counts.
async fn one_call(
    clients: &[InventoryClient<Channel>],
    scenario: &str,
    batch: usize,
    caller: usize,
    n: u64,
    tag: &str,
) -> (u64, u64) {
    let id = |k: usize| format!("{tag}-c{caller}-{n}-{k}");
    let pick = |k: usize| {
        sku(
            scenario,
            (caller as u64) * 7_919 + (n * batch as u64 + k as u64) * 104_729,
        )
    };
    let first = pick(0);
    let shard = holdfast_engine::shard_of(&first, SHARDS) as usize;
    let mut client = clients[shard].clone();
    if batch == 1 {
        return match client.reserve(reserve_request(id(0), caller, first)).await {
            Ok(_) => (1, 0),
            Err(_) => (0, 1),
        };
    }
    // Keep every item on the first item's shard, so the batch goes to one
    // leader and is not split and forwarded.
    let reservations: Vec<pb::ReserveRequest> = (0..)
        .map(pick)
        .filter(|s| holdfast_engine::shard_of(s, SHARDS) as usize == shard)
        .take(batch)
        .enumerate()
        .map(|(k, s)| reserve_request(id(k), caller, s))
        .collect();
    match client
        .reserve_batch(pb::ReserveBatchRequest { reservations })
        .await
    {
        Ok(r) => {
            let ok = r
                .get_ref()
                .results
                .iter()
                .filter(|i| {
                    matches!(
                        i.result,
                        Some(pb::reserve_batch_result::Result::Reserved(_))
                    )
                })
                .count() as u64;
            (ok, batch as u64 - ok)
        }
        Err(_) => (0, batch as u64),
    }
}

#[allow(clippy::too_many_arguments)] // one level's knobs, named at the call
async fn run_level(
    leader_ports: &[u16],
    scenario: &str,
    callers: usize,
    seconds: u64,
    level: usize,
    tag: &'static str,
    batch: usize,
) -> LevelResult {
    let clients: Vec<InventoryClient<Channel>> = leader_ports
        .iter()
        .map(|&p| InventoryClient::new(channel(p)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let clients = clients.clone();
        let scenario = scenario.to_string();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut n = 0u64;
            let tag = format!("{tag}-l{level}");
            while Instant::now() < deadline {
                n += 1;
                let t = Instant::now();
                let (reserved, failed) =
                    one_call(&clients, &scenario, batch, caller, n, &tag).await;
                let us = t.elapsed().as_micros() as u64;
                ok += reserved;
                errors += failed;
                if failed == 0 {
                    let _ = hist.record(us.max(1));
                }
            }
            (ok, errors, hist)
        }));
    }
    let mut result = LevelResult {
        ok: 0,
        errors: 0,
        latency_us: Histogram::<u64>::new(3).expect("histogram"),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (ok, errors, hist) = t.await.expect("caller task");
        result.ok += ok;
        result.errors += errors;
        result.latency_us.add(&hist).expect("same histogram bounds");
    }
    result.elapsed = started.elapsed();
    result
}

/// Kills the hot shard's leader `kills` times; each time measures how long
/// until a reserve on that shard succeeds again (through any live node,
/// retrying the same request id), then restarts the killed node and waits
/// until the shard has a leader again.
async fn failover(cluster: &mut Cluster, kills: usize) {
    let shard = holdfast_engine::shard_of("hot-sku", SHARDS) as usize;
    let mut windows_ms = Vec::with_capacity(kills);
    for k in 0..kills {
        let nodes = &mut cluster.nodes;
        let leader_port = nodes.leaders().await[shard];
        let victim = nodes
            .ports
            .iter()
            .position(|&p| p == leader_port)
            .expect("leader is a node");
        let survivor = (victim + 1) % nodes.ports.len();
        let mut client = InventoryClient::new(channel(nodes.ports[survivor]));
        let killed_at = Instant::now();
        nodes.kill(victim);
        loop {
            let r = client
                .reserve(reserve_request(
                    format!("failover-{k}"),
                    0,
                    "hot-sku".into(),
                ))
                .await;
            if r.is_ok() {
                break;
            }
            assert!(
                killed_at.elapsed() < START_DEADLINE,
                "no reserve succeeded after kill {k}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await; // retry backoff
        }
        windows_ms.push(killed_at.elapsed().as_secs_f64() * 1e3);
        nodes.restart(victim);
        // Wait for every shard to have a leader among live nodes again.
        nodes.leaders().await;
    }
    windows_ms.sort_by(f64::total_cmp);
    let q = |p: f64| {
        windows_ms[((windows_ms.len() as f64 * p).ceil() as usize).clamp(1, windows_ms.len()) - 1]
    };
    println!(
        "failover: {} kills of the hot shard's leader; time until the next reserve succeeded: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        windows_ms.len(),
        q(0.5),
        q(0.99),
        windows_ms.last().copied().unwrap_or(0.0)
    );
}

fn print_row(system: &str, callers: usize, r: &LevelResult, ratio: Option<f64>) {
    let h = &r.latency_us;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
    let ratio = ratio.map_or(String::new(), |x| format!(" {x:.2} |"));
    println!(
        "| {system} | {callers} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |{ratio}",
        r.throughput(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1_000.0,
        r.errors
    );
}

impl LevelResult {
    fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

fn main() {
    let args = Args::parse();
    let levels: Vec<usize> = args
        .concurrency
        .split(',')
        .map(|c| c.trim().parse().expect("--concurrency takes numbers"))
        .collect();
    let (with_floor, with_cluster) = match args.system.as_str() {
        "holdfast" => (false, true),
        "floor" => (true, false),
        "both" => (true, true),
        other => panic!("--system takes holdfast, floor or both, not {other:?}"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let floor = with_floor.then(start_floor);
    let mut cluster = with_cluster.then(|| start_cluster(args.nodes));
    if args.failover_kills > 0 {
        let cluster = cluster
            .as_mut()
            .expect("--failover-kills needs --system holdfast");
        runtime.block_on(async {
            setup(cluster, "hot").await;
            failover(cluster, args.failover_kills).await;
        });
        println!(
            "reproduce: cargo build --release -p holdfast-server -p holdfast-bench && target/release/cluster-load --nodes {} --failover-kills {}",
            args.nodes, args.failover_kills
        );
        return;
    }
    runtime.block_on(async {
        if let Some(c) = &cluster {
            setup(c, &args.scenario).await;
        }
        if let Some(f) = &floor {
            floor_ready(f).await;
        }
        let probe_dir = cluster
            .as_ref()
            .map_or_else(std::env::temp_dir, |c| c.dir.path().to_path_buf());
        let fsync = fsync_probe(&probe_dir);
        let fsync_p50_ms = fsync.value_at_quantile(0.5) as f64 / 1e3;
        println!(
            "fsync probe: {FSYNC_PROBE_WRITES} appends of {FSYNC_PROBE_BYTES} B + fdatasync in the cluster's directory: p50 {fsync_p50_ms:.2} ms, p99 {:.2} ms",
            fsync.value_at_quantile(0.99) as f64 / 1e3
        );
        println!(
            "cluster-load: {} node(s), {} shards, fsync on, scenario {}, {} s per level, single-line reserves to the shard leader, {} per call, one HTTP/2 connection per target",
            args.nodes, SHARDS, args.scenario, args.seconds, args.batch
        );
        let both = with_floor && with_cluster;
        let mut commit_vs_floor = None;
        if both {
            println!("| system | callers | reserves/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | ÷ floor |");
            println!("|---|---|---|---|---|---|---|---|---|");
        } else {
            println!("| system | callers | reserves/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |");
            println!("|---|---|---|---|---|---|---|---|");
        }
        for (i, &callers) in levels.iter().enumerate() {
            let floor_result = match &floor {
                Some(f) => {
                    let ports = vec![f.port; SHARDS as usize];
                    let r = run_level(&ports, &args.scenario, callers, args.seconds, i, "floor", args.batch).await;
                    print_row("floor", callers, &r, None);
                    Some(r)
                }
                None => None,
            };
            if let Some(c) = &cluster {
                let leader_ports = c.nodes.balanced_leaders().await;
                let before = driver_counters(c).await;
                let r = run_level(&leader_ports, &args.scenario, callers, args.seconds, i, "hf", args.batch).await;
                let after = driver_counters(c).await;
                let ratio = floor_result.as_ref().map(|f| r.throughput() / f.throughput());
                let name = format!("holdfast-{}n", args.nodes);
                print_row(&name, callers, &r, ratio);
                if let (1, Some(f)) = (callers, &floor_result) {
                    let rtt_ms = f.latency_us.value_at_quantile(0.5) as f64 / 1e3;
                    let commit_ms = r.latency_us.value_at_quantile(0.5) as f64 / 1e3;
                    commit_vs_floor = Some(format!(
                        "commit latency at 1 caller: p50 {commit_ms:.2} ms = {:.2} × (fsync p50 {fsync_p50_ms:.2} ms + gRPC round trip p50 {rtt_ms:.2} ms)",
                        commit_ms / (fsync_p50_ms + rtt_ms)
                    ));
                }
                if args.driver_work {
                    print_driver_work(&before, &after, r.elapsed.as_secs_f64());
                }
            }
        }
        if let Some(line) = commit_vs_floor {
            println!("{line}");
        }
    });
    drop(cluster);
    drop(floor);
    println!(
        "reproduce: cargo build --release -p holdfast-server -p holdfast-bench && target/release/cluster-load --system {} --nodes {} --scenario {} --concurrency {} --seconds {} --batch {}",
        args.system, args.nodes, args.scenario, args.concurrency, args.seconds, args.batch
    );
}
