//! `holdfast-server`: one node of a Holdfast cluster.
//!
//! Flags outside tools rely on: `--id N`, `--listen HOST:PORT` (one gRPC
//! port for clients and peers), `--peers 1=HOST:PORT,2=...` (every member,
//! this node included), `--data-dir DIR`, `--shards N`. Without `--peers`
//! it is a one-node cluster on embedded defaults.

/// mimalloc instead of glibc malloc: the gRPC stack allocates per request,
/// and glibc's malloc showed up at ~15% of its threads' time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use holdfast_server::admin::AdminService;
use holdfast_server::config::NodeConfig;
use holdfast_server::config_file::{resolve, FileConfig, Overrides};
use holdfast_server::faults::Faults;
use holdfast_server::node::Node;
use holdfast_server::pb::internal::admin_server::AdminServer;
use holdfast_server::pb::inventory::inventory_server::InventoryServer;
use holdfast_server::service::InventoryService;
use holdfast_server::transport::{raft_transport_server, GrpcTransport, RaftTransportService};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Largest gRPC message a client may send (a 100-line reserve is ~20 KiB).
const CLIENT_MESSAGE_BYTES_MAX: usize = 4 << 20;

#[derive(Parser, Debug)]
#[command(
    name = "holdfast-server",
    version,
    about = "A node of a Holdfast inventory reservation cluster",
    after_help = "Precedence: flags, then HOLDFAST_* environment variables, then the --config \
file, then the defaults shown. Raft and ledger tuning live in the config file \
(see docs/operations.md)."
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
    /// Allow fault injection (network partitions through Admin.SetPartition)
    /// for chaos tests. Never on a production node [default: off].
    #[arg(long, env = "HOLDFAST_CHAOS_FAULTS")]
    chaos_faults: bool,
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
fn config(args: &Args) -> Result<(NodeConfig, SocketAddr), String> {
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
    };
    resolve(&overrides, &file)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,raft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (config, listen) = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("holdfast-server: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
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
    let peers = config.peers.clone();
    let (id, cluster_id) = (config.id, config.cluster_id);
    let node = match Node::start(config, Box::new(transport)) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("holdfast-server: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let handle = node.handle.clone();
    let served = runtime.block_on(async move {
        let inventory = InventoryServer::new(
            InventoryService::new(handle.clone(), peers).with_faults(faults.clone()),
        )
        .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX);
        let admin = AdminServer::new(AdminService::new(handle.clone()).with_faults(faults.clone()));
        let raft = raft_transport_server(
            RaftTransportService::new(id, cluster_id, handle).with_faults(faults),
        );
        tracing::info!(listen = %listen, id, "serving");
        let server = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(inventory)
            .add_service(admin)
            .add_service(raft)
            .serve(listen);
        // Peers' Raft streams never end by themselves, so a graceful drain
        // would wait forever: on Ctrl-C/SIGTERM stop serving and let the
        // runtime shut down below (full graceful shutdown: the API issue).
        tokio::select! {
            result = server => result.map_err(|e| e.to_string()),
            _ = shutdown_signal() => Ok(()),
        }
    });
    // Dropping the runtime ends every connection task and with them the
    // handles they hold, so the driver's inbox closes.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Err(e) = served {
        eprintln!("holdfast-server: gRPC server failed: {e}");
        return ExitCode::from(1);
    }
    match node.stop() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holdfast-server: driver stopped with an error: {e}");
            ExitCode::from(1)
        }
    }
}
