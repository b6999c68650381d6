//! Real `holdfast-server` processes on 127.0.0.1 for integration tests:
//! start, kill, restart, and reach them. Every wait polls with a deadline;
//! child processes are killed and reaped on drop.
#![allow(dead_code)] // each test file uses its own part

use holdfast_server::pb::internal::admin_client::AdminClient;
use holdfast_server::pb::internal::{
    ClusterStatusRequest, ClusterStatusResponse, SetPartitionRequest,
};
use holdfast_server::pb::inventory as pb;
use holdfast_server::pb::inventory::inventory_client::InventoryClient;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::Code;

/// How long any wait of these tests may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A cluster of server processes.
pub struct ProcessCluster {
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    _dir: TempDir,
    dirs: Vec<PathBuf>,
    shards: u32,
    extra_args: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl ProcessCluster {
    /// `n` nodes of `shards` shards, each started with `extra_args`.
    pub fn start(n: usize, shards: u32, extra_args: &[&str]) -> ProcessCluster {
        let dir = TempDir::new().expect("temp dir");
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let dirs = (0..n)
            .map(|i| dir.path().join(format!("n{}", i + 1)))
            .collect();
        let mut c = ProcessCluster {
            ports,
            children: (0..n).map(|_| None).collect(),
            _dir: dir,
            dirs,
            shards,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    fn peers(&self) -> String {
        self.ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts node `i` (0-based) on its data directory.
    pub fn spawn(&mut self, i: usize) {
        let child = Command::new(env!("CARGO_BIN_EXE_holdfast-server"))
            .args(["--id", &(i + 1).to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", self.ports[i])])
            .args(["--peers", &self.peers()])
            .args(["--shards", &self.shards.to_string()])
            .arg("--data-dir")
            .arg(&self.dirs[i])
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn holdfast-server");
        self.children[i] = Some(child);
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn addr(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    /// The public API of node `i`.
    pub fn inventory(&self, i: usize) -> InventoryClient<Channel> {
        let channel = Channel::from_shared(self.addr(i)).unwrap().connect_lazy();
        InventoryClient::new(channel)
    }

    /// The internal Admin API of node `i`.
    pub fn admin(&self, i: usize) -> AdminClient<Channel> {
        let channel = Channel::from_shared(self.addr(i)).unwrap().connect_lazy();
        AdminClient::new(channel)
    }

    /// Node `i`'s view of the cluster, if it answers.
    pub async fn status(&self, i: usize, with_digest: bool) -> Option<ClusterStatusResponse> {
        self.admin(i)
            .cluster_status(ClusterStatusRequest { with_digest })
            .await
            .ok()
            .map(|r| r.into_inner())
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// Retries `f` on UNAVAILABLE/ABORTED/DEADLINE_EXCEEDED (the same request,
/// hence the same request id) until it succeeds or the deadline passes.
pub async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::Aborted | Code::DeadlineExceeded | Code::Unknown
                ) =>
            {
                assert!(
                    start.elapsed() < DEADLINE,
                    "{what}: still failing after the deadline: {s:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await; // retry backoff
            }
            Err(s) => return Err(s),
        }
    }
}

/// A single-line reserve of one unit of `sku` at berlin.
pub fn reserve_request(id: &str, sku: &str) -> pb::ReserveRequest {
    pb::ReserveRequest {
        request_id: id.into(),
        owner_id: "cart-1".into(),
        customer_id: "cust-1".into(),
        lines: vec![pb::ReserveLine {
            sku: sku.into(),
            quantity: 1,
            location: Some("berlin".into()),
        }],
        ttl_ms: 600_000,
        policy: 0,
        allow_split: false,
        region: None,
    }
}

/// Creates location berlin and stocks `units` of `sku` there, through
/// node `i`, retrying until a leader answers.
pub async fn stock(c: &ProcessCluster, i: usize, sku: &str, units: i64) {
    let node = c.inventory(i);
    retry("upsert location", || {
        let mut node = node.clone();
        async move {
            node.upsert_location(pb::UpsertLocationRequest {
                request_id: "loc-berlin".into(),
                location: "berlin".into(),
                region: "eu".into(),
                priority: 1,
            })
            .await
        }
    })
    .await
    .expect("location created");
    let sku = sku.to_string();
    retry("stock", || {
        let mut node = node.clone();
        let sku = sku.clone();
        async move {
            node.adjust_stock(pb::AdjustStockRequest {
                request_id: format!("stock-{sku}"),
                sku,
                location: "berlin".into(),
                delta: units,
                expected_on_hand: None,
            })
            .await
        }
    })
    .await
    .expect("stocked");
}

/// Sets node `node`'s fault-injected partition: it drops Raft traffic to
/// and from `blocked` (1-based ids). Needs `--chaos-faults`.
pub async fn partition(c: &ProcessCluster, node: usize, blocked: &[u64]) {
    c.admin(node)
        .set_partition(SetPartitionRequest {
            blocked_nodes: blocked.to_vec(),
        })
        .await
        .expect("set partition");
}

/// The 0-based index of the node every live node names as the leader of
/// `shard`, once they agree (among `nodes`).
pub async fn agreed_leader(
    c: &ProcessCluster,
    shard: u32,
    nodes: &[usize],
    not: Option<usize>,
) -> usize {
    let start = Instant::now();
    loop {
        let mut seen = Vec::new();
        for &i in nodes {
            if let Some(s) = c.status(i, false).await {
                seen.push(s.shards[shard as usize].leader);
            }
        }
        if seen.len() == nodes.len()
            && seen[0] != 0
            && seen.iter().all(|&l| l == seen[0])
            && not != Some(seen[0] as usize - 1)
        {
            return seen[0] as usize - 1;
        }
        assert!(start.elapsed() < DEADLINE, "no agreed leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await; // polling interval
    }
}

/// The 0-based index of `shard`'s preferred node (the `shard mod n`-th by
/// id, where leader balance moves the lead) once every one of the `n`
/// nodes names it leader. A test that cuts a leader off needs this one: a
/// leader that is not the preferred node may start a balance transfer
/// (and drop proposals until it times out) at any moment.
pub async fn settled_leader(c: &ProcessCluster, shard: u32, n: usize) -> usize {
    let preferred = shard as usize % n;
    let nodes: Vec<usize> = (0..n).collect();
    let start = Instant::now();
    loop {
        let leader = agreed_leader(c, shard, &nodes, None).await;
        if leader == preferred {
            return leader;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "shard {shard}: node {} leads, not the preferred node {}",
            leader + 1,
            preferred + 1
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // polling interval
    }
}
