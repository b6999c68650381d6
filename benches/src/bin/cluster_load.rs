//! `cluster-load`: one cluster, looked at from the inside, and its
//! failover.
//!
//! `holdfast-bench` is the load harness (every system side by side, the
//! report). This tool keeps what that one does not: per level, what every
//! node's driver did (`--driver-work`: loop turns, group commits, commands
//! per entry), and the failover measurement (`--failover-kills`). Its load
//! levels are the harness's own closed loop, Holdfast cluster and floor
//! (`bench::{closed_loop, grpc, peers::floor}`), so the two tools measure
//! the same way.
//!
//! Build and run: `cargo build --release -p holdfast-server -p holdfast-bench
//! && target/release/cluster-load --system both --driver-work --nodes 3`.

/// mimalloc instead of glibc malloc: the gRPC stack allocates per request,
/// and glibc's malloc showed up at ~15% of its threads' time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use holdfast_bench::bench::callers::{caller_fn, CallKind};
use holdfast_bench::bench::closed_loop;
use holdfast_bench::bench::grpc::{GrpcTarget, HoldfastCluster};
use holdfast_bench::bench::peers::floor::Floor;
use holdfast_bench::bench::probe::{fsync_probe, FSYNC_PROBE_BYTES, FSYNC_PROBE_WRITES};
use holdfast_bench::bench::scenario::{Catalogue, Picker, Scenario, HOT_SKU, SHARDS};
use holdfast_bench::bench::stats::{CellStats, Summary};
use holdfast_bench::bench::target::{Reply, Target};
use holdfast_bench::local::START_DEADLINE;
use holdfast_server::pb::internal::DriverCounters;
use std::time::{Duration, Instant};

/// SKUs of the `uniform` scenario (each stocked at 4 locations).
const UNIFORM_SKUS: u32 = 10_000;

#[derive(Parser, Debug)]
#[command(
    about = "Closed-loop reserve load on a local Holdfast cluster, with driver counters, or its failover"
)]
struct Args {
    /// Nodes to start (1, 3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// `hot`: one SKU with unlimited stock; `uniform`: 10,000 SKUs.
    #[arg(long, default_value = "hot")]
    scenario: String,
    /// Concurrent callers, comma-separated levels.
    #[arg(long, default_value = "1,16,64,256", value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Seconds per level.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Instead of load: kill -9 the hot shard's leader this many times and
    /// measure the time until the next reserve on that shard succeeds.
    #[arg(long, default_value_t = 0)]
    failover_kills: usize,
    /// What serves the load: `holdfast` (the cluster), `floor` (one
    /// `grpc-floor` process), or `both` (levels interleaved, with ratios).
    #[arg(long, default_value = "holdfast")]
    system: String,
    /// After each cluster level, print what every node's driver did.
    #[arg(long)]
    driver_work: bool,
    /// Reservations per call: 1 sends `Reserve`, more send `ReserveBatch`
    /// (latency is then per call, throughput per reservation).
    #[arg(long, default_value_t = 1)]
    batch: usize,
}

/// Every node's driver counters (a node that does not answer gives zeros).
async fn driver_counters(cluster: &HoldfastCluster) -> Vec<DriverCounters> {
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

/// One level against `target`: the harness's closed loop, no warm-up.
async fn level(
    target: &Target,
    picker: &Picker,
    callers: usize,
    args: &Args,
    level: usize,
) -> CellStats {
    let seed = (level as u64) << 32;
    let kind = if args.batch > 1 {
        CallKind::Batch(args.batch)
    } else {
        CallKind::Reserve
    };
    let make = |caller: usize| caller_fn(kind, target, picker, seed, caller, level);
    let seconds = Duration::from_secs(args.seconds);
    closed_loop::run(callers, Duration::ZERO, seconds, &make).await
}

/// Kills the hot shard's leader `kills` times; each time measures how long
/// until a reserve on that shard succeeds again (through a surviving node,
/// retrying the same request id), then restarts the killed node and waits
/// until every shard has a leader again.
async fn failover(cluster: &mut HoldfastCluster, kills: usize) {
    let shard = holdfast_engine::shard_of(HOT_SKU, SHARDS) as usize;
    let picker =
        Picker::new(Scenario::Hot.popularity(), Catalogue { skus: 1 }, 1).expect("hot picker");
    let order = picker.order(&mut <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(0));
    let mut windows_ms = Vec::with_capacity(kills);
    for k in 0..kills {
        let nodes = &mut cluster.nodes;
        let leader_port = nodes.leaders().await[shard];
        let Some(victim) = nodes.ports.iter().position(|&p| p == leader_port) else {
            eprintln!("cluster-load: the leader is not a node of the cluster");
            return;
        };
        let survivor = GrpcTarget::new(
            &vec![nodes.ports[(victim + 1) % nodes.ports.len()]; SHARDS as usize],
            1,
        );
        let killed_at = Instant::now();
        nodes.kill(victim);
        let id = format!("failover-{k}");
        loop {
            if let Reply::Held(_) = survivor.reserve(0, &id, &order, 3_600_000).await {
                break;
            }
            if killed_at.elapsed() > START_DEADLINE {
                eprintln!("cluster-load: no reserve succeeded after kill {k}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await; // retry backoff
        }
        windows_ms.push(killed_at.elapsed().as_secs_f64() * 1e3);
        nodes.restart(victim);
        nodes.leaders().await;
    }
    windows_ms.sort_by(f64::total_cmp);
    let q = |p: f64| {
        windows_ms[((windows_ms.len() as f64 * p).ceil() as usize).clamp(1, windows_ms.len()) - 1]
    };
    if !windows_ms.is_empty() {
        println!(
            "failover: {} kills of the hot shard's leader; time until the next reserve succeeded: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            windows_ms.len(),
            q(0.5),
            q(0.99),
            windows_ms.last().copied().unwrap_or(0.0)
        );
    }
}

fn print_row(system: &str, callers: usize, r: &CellStats, ratio: Option<f64>) {
    let s = Summary::of(&r.latency_us);
    let ratio = ratio.map_or(String::new(), |x| format!(" {x:.2} |"));
    println!(
        "| {system} | {callers} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |{ratio}",
        r.throughput(),
        s.p50_ms,
        s.p99_ms,
        s.p999_ms,
        s.max_ms,
        r.tally.errors
    );
}

fn main() {
    let args = Args::parse();
    let (with_floor, with_cluster) = match args.system.as_str() {
        "holdfast" => (false, true),
        "floor" => (true, false),
        "both" => (true, true),
        other => {
            eprintln!("cluster-load: --system takes holdfast, floor or both, not {other:?}");
            std::process::exit(2);
        }
    };
    let scenario = match args.scenario.as_str() {
        "hot" => Scenario::Hot,
        "uniform" => Scenario::Uniform,
        other => {
            eprintln!("cluster-load: --scenario takes hot or uniform, not {other:?}");
            std::process::exit(2);
        }
    };
    let catalogue = Catalogue {
        skus: if scenario == Scenario::Hot {
            1
        } else {
            UNIFORM_SKUS
        },
    };
    let picker = Picker::new(scenario.popularity(), catalogue, 1).expect("constant picker shape");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let logs = tempfile::TempDir::new().expect("temp dir");
    let floor = with_floor.then(|| Floor::start(logs.path()).expect("grpc-floor starts"));
    let mut cluster = with_cluster
        .then(|| HoldfastCluster::start(args.nodes, logs.path()).expect("holdfast-server starts"));
    runtime.block_on(async {
        if let Some(c) = &cluster {
            c.stock(catalogue).await.expect("stocked");
        }
    });
    if args.failover_kills > 0 {
        let Some(cluster) = cluster.as_mut() else {
            eprintln!("cluster-load: --failover-kills needs --system holdfast");
            std::process::exit(2);
        };
        runtime.block_on(failover(cluster, args.failover_kills));
        println!(
            "reproduce: cargo build --release -p holdfast-server -p holdfast-bench && target/release/cluster-load --nodes {} --failover-kills {}",
            args.nodes, args.failover_kills
        );
        return;
    }
    runtime.block_on(async {
        let probe_dir = cluster
            .as_ref()
            .map_or_else(std::env::temp_dir, |c| c.dir.path().to_path_buf());
        let fsync = fsync_probe(&probe_dir).map(|h| Summary::of(&h)).unwrap_or_default();
        println!(
            "fsync probe: {FSYNC_PROBE_WRITES} appends of {FSYNC_PROBE_BYTES} B + fdatasync in the cluster's directory: p50 {:.2} ms, p99 {:.2} ms",
            fsync.p50_ms, fsync.p99_ms
        );
        println!(
            "cluster-load: {} node(s), {SHARDS} shards, fsync on, scenario {}, {} s per level, single-line reserves to the shard leader, {} per call, one HTTP/2 connection per target",
            args.nodes, args.scenario, args.seconds, args.batch
        );
        let both = with_floor && with_cluster;
        println!("| system | callers | reserves/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |{}", if both { " ÷ floor |" } else { "" });
        println!("|---|---|---|---|---|---|---|---|{}", if both { "---|" } else { "" });
        let mut commit_vs_floor = None;
        for (i, &callers) in args.concurrency.iter().enumerate() {
            let floor_result = match &floor {
                Some(f) => {
                    let target = Target::Grpc(GrpcTarget::new(&[f.port; SHARDS as usize], 1));
                    let r = level(&target, &picker, callers, &args, 2 * i).await;
                    print_row("floor", callers, &r, None);
                    Some(r)
                }
                None => None,
            };
            if let Some(c) = &cluster {
                let target = Target::Grpc(c.target(1).await);
                let before = driver_counters(c).await;
                let r = level(&target, &picker, callers, &args, 2 * i + 1).await;
                let after = driver_counters(c).await;
                let ratio = floor_result.as_ref().map(|f| r.throughput() / f.throughput());
                print_row(&format!("holdfast-{}n", args.nodes), callers, &r, ratio);
                if let (1, Some(f)) = (callers, &floor_result) {
                    let rtt_ms = Summary::of(&f.latency_us).p50_ms;
                    let commit_ms = Summary::of(&r.latency_us).p50_ms;
                    commit_vs_floor = Some(format!(
                        "commit latency at 1 caller: p50 {commit_ms:.2} ms = {:.2} × (fsync p50 {:.2} ms + gRPC round trip p50 {rtt_ms:.2} ms)",
                        commit_ms / (fsync.p50_ms + rtt_ms),
                        fsync.p50_ms
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
        args.system,
        args.nodes,
        args.scenario,
        args.concurrency.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
        args.seconds,
        args.batch
    );
}
