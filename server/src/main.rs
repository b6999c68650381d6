//! `holdfast-server`: one node of a Holdfast cluster.
//!
//! Flags outside tools rely on: `--id N`, `--listen HOST:PORT` (one gRPC
//! port for clients and peers), `--peers 1=HOST:PORT,2=...` (every member,
//! this node included), `--data-dir DIR`, `--shards N`. Without `--peers`
//! it is a one-node cluster on embedded defaults.
//!
//! Besides the Holdfast services the gRPC port serves `grpc.health.v1`
//! (`health`) and server reflection (v1 and v1alpha); `--metrics-listen`
//! adds a Prometheus endpoint (`telemetry`). SIGTERM or SIGINT stops the
//! node gracefully: see [`serve`].

/// mimalloc instead of glibc malloc: the gRPC stack allocates per request,
/// and glibc's malloc showed up at ~15% of its threads' time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use holdfast_server::admin::AdminService;
use holdfast_server::config_file::{resolve, FileConfig, LogFormat, Overrides, Settings};
use holdfast_server::faults::Faults;
use holdfast_server::health;
use holdfast_server::node::{Node, NodeHandle};
use holdfast_server::pb;
use holdfast_server::pb::internal::admin_server::AdminServer;
use holdfast_server::pb::inventory::inventory_server::InventoryServer;
use holdfast_server::prefilter_stats::PrefilterStats;
use holdfast_server::rpc_layer::{Drain, RpcMetricsLayer};
use holdfast_server::service::InventoryService;
use holdfast_server::telemetry::{self, NodeTelemetry};
use holdfast_server::transport::{
    raft_transport_server, GrpcTransport, RaftTransportService, TransportCounters,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Largest gRPC message a client may send (a 100-line reserve is ~20 KiB).
const CLIENT_MESSAGE_BYTES_MAX: usize = 4 << 20;
/// Log filter when `RUST_LOG` is unset or invalid: our events at info,
/// raft-rs's chatter (every vote and append rejection) only from warn up.
const LOG_FILTER_DEFAULT: &str = "info,raft=warn";
/// How long a graceful shutdown waits for in-flight unary RPCs, ms: past
/// the clients' default 5 s deadline a call's answer is no longer awaited.
const SHUTDOWN_DRAIN_MS: u64 = 5_000;
/// How long a graceful shutdown waits for the shards this node leads to be
/// handed over, ms: a transfer takes a round trip or two once the target
/// has the log, so this only runs out when no follower is reachable (the
/// others then elect a leader after an election timeout, as after a crash).
const HANDOFF_MS: u64 = 3_000;
/// How long shutdown waits for the health task to report NOT_SERVING, ms.
const HEALTH_STOP_MS: u64 = 1_000;
/// How long the runtime is given to end its tasks after serving stopped.
const RUNTIME_STOP_MS: u64 = 2_000;

#[derive(Parser, Debug)]
#[command(
    name = "holdfast-server",
    version,
    about = "A node of a Holdfast inventory reservation cluster",
    after_help = "Precedence: flags, then HOLDFAST_* environment variables, then the --config \
file, then the defaults shown. Raft and ledger tuning live in the config file \
(see docs/operations.md).

Logs go to stderr; RUST_LOG sets the level per target [default: info,raft=warn].

The gRPC port also serves grpc.health.v1.Health (SERVING once every shard has a \
leader and this node has applied what it knows committed) and server reflection.

SIGTERM or SIGINT: health turns NOT_SERVING, new client RPCs are refused with \
UNAVAILABLE (Raft, health and reflection still answer), in-flight RPCs get up to 5 s \
to finish, every shard this node leads is handed to a caught-up follower (up to 3 s; \
a second signal skips either wait), then the driver stops and the process exits 0."
)]
struct Args {
    /// TOML configuration file (membership, storage, Raft and ledger tuning).
    #[arg(long, env = "HOLDFAST_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id (1-based, unique in the cluster) [default: 1].
    #[arg(long, env = "HOLDFAST_ID")]
    id: Option<u64>,
    /// Address to serve gRPC on, for clients and peers alike
    /// [default: 127.0.0.1:7400].
    #[arg(long, env = "HOLDFAST_LISTEN")]
    listen: Option<SocketAddr>,
    /// Every member as id=host:port, comma-separated, this node included
    /// [default: a one-node cluster of this node alone].
    #[arg(long, env = "HOLDFAST_PEERS")]
    peers: Option<String>,
    /// Data directory (RocksDB and snapshots) [default: ./holdfast-data].
    #[arg(long, env = "HOLDFAST_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Number of shards; must be equal on every node [default: 8].
    #[arg(long, env = "HOLDFAST_SHARDS")]
    shards: Option<u32>,
    /// Cluster id, written into the data directory (a node refuses another
    /// cluster's data) [default: 1].
    #[arg(long, env = "HOLDFAST_CLUSTER_ID")]
    cluster_id: Option<u64>,
    /// Address to serve Prometheus metrics on over HTTP (any path, e.g.
    /// /metrics) [default: off].
    #[arg(long, env = "HOLDFAST_METRICS_LISTEN", value_name = "HOST:PORT")]
    metrics_listen: Option<SocketAddr>,
    /// Log line format on stderr: human-readable lines or one JSON object
    /// per line [default: pretty].
    #[arg(long, env = "HOLDFAST_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Allow fault injection (network partitions through Admin.SetPartition)
    /// for chaos tests. Never on a production node [default: off].
    #[arg(long, env = "HOLDFAST_CHAOS_FAULTS")]
    chaos_faults: bool,
    /// UNSAFE, chaos tests only: break a promise on purpose so a chaos run
    /// can prove its checker sees it. `skip-dedup` treats every request as
    /// new (a retry applies twice, design §1.3); `ack-before-commit`
    /// answers a write once the leader's own log has it, before a quorum
    /// does (an acknowledged write can be lost, design §1.4). Give it to
    /// every node of the cluster [default: off].
    #[arg(long, value_enum, value_name = "BUG")]
    unsafe_chaos_bug: Option<ChaosBug>,
}

/// Promises `--unsafe-chaos-bug` can break.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ChaosBug {
    /// Every request is new to the ledger: retries apply twice.
    SkipDedup,
    /// Leaders answer writes before they are committed on a quorum.
    AckBeforeCommit,
}

fn parse_peers(spec: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("--peers entry {part:?} is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("--peers entry {part:?}: {id:?} is not a node id"))?;
        if peers.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("--peers names node {id} twice"));
        }
    }
    Ok(peers)
}

/// Merges flags and environment (already merged by clap) over the file over
/// the defaults.
fn settings(args: &Args) -> Result<Settings, String> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let overrides = Overrides {
        id: args.id,
        listen: args.listen,
        peers: args.peers.as_deref().map(parse_peers).transpose()?,
        data_dir: args.data_dir.clone(),
        shards: args.shards,
        cluster_id: args.cluster_id,
        metrics_listen: args.metrics_listen,
        log_format: args.log_format,
    };
    resolve(&overrides, &file)
}

/// Logs to stderr in `format`, filtered by `RUST_LOG`.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(LOG_FILTER_DEFAULT));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// SIGTERM and SIGINT, caught from the moment they are created (inside the
/// runtime) instead of killing the process.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match settings(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("holdfast-server: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(settings.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Signals and the metrics recorder first: the driver takes its metric
    // handles when it starts, and a signal from here on stops gracefully.
    let started = {
        let _inside = runtime.enter();
        let signals = Signals::new().map_err(|e| format!("cannot catch signals: {e}"));
        let metrics = settings.metrics_listen.map(telemetry::install).transpose();
        signals.and_then(|s| metrics.map(|_| s))
    };
    let signals = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("holdfast-server: {e}");
            return ExitCode::from(1);
        }
    };
    let mut config = settings.node.clone();
    match args.unsafe_chaos_bug {
        Some(ChaosBug::SkipDedup) => {
            tracing::error!("--unsafe-chaos-bug=skip-dedup: retries apply twice; chaos tests only");
            config.engine.unsafe_skip_dedup = true;
        }
        Some(ChaosBug::AckBeforeCommit) => {
            tracing::error!(
                "--unsafe-chaos-bug=ack-before-commit: writes are acknowledged before a quorum has them; chaos tests only"
            );
            config.unsafe_ack_before_commit = true;
        }
        None => {}
    }
    let faults = Arc::new(Faults::new(args.chaos_faults));
    if args.chaos_faults {
        tracing::warn!("fault injection is on (--chaos-faults): for chaos tests only");
    }
    let transport = GrpcTransport::start(
        config.id,
        config.cluster_id,
        config.peers.clone(),
        runtime.handle().clone(),
    )
    .with_faults(faults.clone());
    let sent = transport.counters();
    let node = match Node::start(config, Box::new(transport)) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("holdfast-server: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let served = runtime.block_on(serve(&settings, node.handle.clone(), sent, faults, signals));
    // Dropping the runtime ends every connection task (peers' Raft streams
    // included) and with them the handles they hold, so the driver's inbox
    // closes.
    runtime.shutdown_timeout(Duration::from_millis(RUNTIME_STOP_MS));
    if let Err(e) = served {
        eprintln!("holdfast-server: gRPC server failed: {e}");
        return ExitCode::from(1);
    }
    match node.stop() {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("holdfast-server: driver stopped with an error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Every descriptor set the node serves: ours, health's and reflection's.
const DESCRIPTOR_SETS: [&[u8]; 4] = [
    pb::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

/// Services a closing node still serves: peers' Raft traffic (in-flight
/// proposals need their acks, and a peer whose stream broke must be able
/// to reconnect), health (which then says NOT_SERVING) and reflection.
const KEPT_WHILE_CLOSING: [&str; 4] = [
    pb::internal::raft_transport_server::SERVICE_NAME,
    tonic_health::pb::health_server::SERVICE_NAME,
    tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
    tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
];

/// Serves gRPC until a signal, then shuts down gracefully:
///
/// 1. health turns NOT_SERVING (load balancers and clients move away) and
///    every new RPC but those of [`KEPT_WHILE_CLOSING`] is refused with
///    `UNAVAILABLE` (clients retry on another node);
/// 2. wait until no unary RPC is in flight, at most [`SHUTDOWN_DRAIN_MS`]
///    (a second signal cuts it short). The driver and peers' Raft streams
///    keep running meanwhile, so proposals under way can still commit.
///    Those streams never end by themselves, which is why the drain waits
///    for the unary RPCs (`rpc_layer::Drain`) and not for every connection
///    to close, and why the listener stays open: closing it (tonic's
///    `serve_with_shutdown`) would keep a peer whose stream broke from
///    reconnecting, and an in-flight proposal needing its ack would stall;
/// 3. hand every shard this node leads to a caught-up follower, at most
///    [`HANDOFF_MS`], so the others go on at once instead of after an
///    election timeout (peers' Raft streams are still served);
/// 4. stop accepting connections and return; the caller drops the runtime
///    (ending the remaining streams) and stops the driver.
async fn serve(
    settings: &Settings,
    handle: NodeHandle,
    sent: Arc<TransportCounters>,
    faults: Arc<Faults>,
    mut signals: Signals,
) -> Result<(), String> {
    let (id, cluster_id) = (settings.node.id, settings.node.cluster_id);
    let (reporter, health_service) = health::reporter().await;
    let reflection = || {
        DESCRIPTOR_SETS[..2]
            .iter()
            .fold(tonic_reflection::server::Builder::configure(), |b, set| {
                b.register_encoded_file_descriptor_set(set)
            })
    };
    let reflection_v1 = reflection().build_v1().map_err(|e| e.to_string())?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(|e| e.to_string())?;
    let drain = Arc::new(Drain::default());
    let raft =
        RaftTransportService::new(id, cluster_id, handle.clone()).with_faults(faults.clone());
    let prefilter = Arc::new(PrefilterStats::default());
    let telemetry = settings.metrics_listen.map(|_| {
        NodeTelemetry::new(
            handle.shards,
            &handle.routing,
            &sent,
            &raft.counters(),
            &prefilter,
        )
    });
    let (stop_health, stop_rx) = tokio::sync::watch::channel(false);
    let health_task = tokio::spawn(health::run(handle.clone(), reporter, telemetry, stop_rx));
    let inventory = InventoryServer::new(
        InventoryService::new(handle.clone(), settings.node.peers.clone())
            .with_faults(faults.clone())
            .with_prefilter_stats(prefilter),
    )
    .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX);
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .layer(RpcMetricsLayer::new(
            &DESCRIPTOR_SETS,
            &KEPT_WHILE_CLOSING,
            drain.clone(),
        ))
        .add_service(inventory)
        .add_service(AdminServer::new(
            AdminService::new(handle.clone()).with_faults(faults),
        ))
        .add_service(raft_transport_server(raft))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve(settings.listen);
    let mut server = tokio::spawn(server);
    tracing::info!(listen = %settings.listen, id, "serving");
    let signal = tokio::select! {
        result = &mut server => {
            let _ = stop_health.send(true);
            return match result {
                Ok(Ok(())) => Err("the server stopped by itself".into()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("the server task failed: {e}")),
            };
        }
        signal = signals.recv() => signal,
    };
    tracing::info!(
        signal,
        "shutting down: health NOT_SERVING, refusing new client RPCs"
    );
    drain.close();
    let _ = stop_health.send(true);
    let _ = tokio::time::timeout(Duration::from_millis(HEALTH_STOP_MS), health_task).await;
    let in_flight = drain.active();
    let drained = tokio::select! {
        done = tokio::time::timeout(Duration::from_millis(SHUTDOWN_DRAIN_MS), drain.idle()) => {
            if done.is_ok() { "every in-flight RPC finished" } else { "drain time ran out" }
        }
        _ = signals.recv() => "a second signal cut the drain short",
    };
    tracing::info!(in_flight, left = drain.active(), "{drained}");
    let handed = tokio::select! {
        done = tokio::time::timeout(Duration::from_millis(HANDOFF_MS), handle.leave()) => match done {
            Ok(Ok(())) => "this node leads no shard",
            Ok(Err(_)) => "the driver stopped before the hand-off",
            Err(_) => "the hand-off of leadership ran out of time",
        },
        _ = signals.recv() => "a second signal cut the hand-off short",
    };
    tracing::info!("{handed}; stopping");
    server.abort();
    Ok(())
}
