//! Real `holdfast-server` processes on 127.0.0.1: reserve, `kill -9` the
//! leader of the shard, reserve again, restart the killed node, and compare
//! the state digests of all three replicas (design §1.4, §1.5). Every wait
//! polls with a deadline; child processes are killed and reaped on drop.

use holdfast_server::pb::internal::admin_client::AdminClient;
use holdfast_server::pb::internal::ClusterStatusRequest;
use holdfast_server::pb::inventory as pb;
use holdfast_server::pb::inventory::inventory_client::InventoryClient;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(30);
const SHARDS: u32 = 2;

struct Cluster {
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    _dir: TempDir,
    dirs: Vec<PathBuf>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        let dir = TempDir::new().expect("temp dir");
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let dirs = (0..n)
            .map(|i| dir.path().join(format!("n{}", i + 1)))
            .collect();
        let mut c = Cluster {
            ports,
            children: (0..n).map(|_| None).collect(),
            _dir: dir,
            dirs,
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

    fn spawn(&mut self, i: usize) {
        let child = Command::new(env!("CARGO_BIN_EXE_holdfast-server"))
            .args(["--id", &(i + 1).to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", self.ports[i])])
            .args(["--peers", &self.peers()])
            .args(["--shards", &SHARDS.to_string()])
            .arg("--data-dir")
            .arg(&self.dirs[i])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn holdfast-server");
        self.children[i] = Some(child);
    }

    /// SIGKILL, as a crash.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn addr(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    async fn inventory(&self, i: usize) -> InventoryClient<Channel> {
        let channel = Channel::from_shared(self.addr(i)).unwrap().connect_lazy();
        InventoryClient::new(channel)
    }

    async fn status(
        &self,
        i: usize,
        with_digest: bool,
    ) -> Option<holdfast_server::pb::internal::ClusterStatusResponse> {
        let channel = Channel::from_shared(self.addr(i))
            .unwrap()
            .connect()
            .await
            .ok()?;
        AdminClient::new(channel)
            .cluster_status(ClusterStatusRequest { with_digest })
            .await
            .ok()
            .map(|r| r.into_inner())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// Retries `f` on UNAVAILABLE/ABORTED/DEADLINE_EXCEEDED (the same request,
/// hence the same request id) until it succeeds or the deadline passes.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, tonic::Status>
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

fn reserve_request(id: &str) -> pb::ReserveRequest {
    pb::ReserveRequest {
        request_id: id.into(),
        owner_id: "cart-1".into(),
        customer_id: "cust-1".into(),
        lines: vec![pb::ReserveLine {
            sku: "SKU-1".into(),
            quantity: 1,
            location: Some("berlin".into()),
        }],
        ttl_ms: 600_000,
        policy: 0,
        allow_split: false,
        region: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_leader_reserve_again_restart_and_replicas_agree() {
    let mut c = Cluster::start(3);
    let n2 = c.inventory(1).await;
    retry("upsert location", || {
        let mut n2 = n2.clone();
        async move {
            n2.upsert_location(pb::UpsertLocationRequest {
                request_id: "loc-1".into(),
                location: "berlin".into(),
                region: "eu".into(),
                priority: 1,
            })
            .await
        }
    })
    .await
    .expect("location created");
    retry("stock", || {
        let mut n2 = n2.clone();
        async move {
            n2.adjust_stock(pb::AdjustStockRequest {
                request_id: "stock-1".into(),
                sku: "SKU-1".into(),
                location: "berlin".into(),
                delta: 100,
                expected_on_hand: None,
            })
            .await
        }
    })
    .await
    .expect("stocked");
    // Reserve through node 2, whatever its role (followers forward).
    let first = retry("first reserve", || {
        let mut n2 = n2.clone();
        async move { n2.reserve(reserve_request("r-1")).await }
    })
    .await
    .expect("reserved")
    .into_inner();
    assert_eq!(first.allocations.len(), 1);
    assert_eq!(first.allocations[0].available_after, 99);

    // Kill -9 the leader of the SKU's shard.
    let shard = holdfast_engine::shard_of("SKU-1", SHARDS) as usize;
    let status = c.status(1, false).await.expect("status");
    let leader = status.shards[shard].leader as usize;
    assert!(leader >= 1, "shard {shard} has a leader");
    c.kill(leader - 1);
    let survivor = if leader == 1 { 1 } else { 0 };
    let mut s = c.inventory(survivor).await;
    let second = retry("reserve after the kill", || {
        let mut s = s.clone();
        async move { s.reserve(reserve_request("r-2")).await }
    })
    .await
    .expect("reserved on the new leader")
    .into_inner();
    assert_eq!(
        second.allocations[0].available_after, 98,
        "the first hold survived the kill (§1.4)"
    );
    // The retried first request is answered, not applied again (§1.3).
    let again = s
        .reserve(reserve_request("r-1"))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again.reservation_id, first.reservation_id);

    // Restart the killed node; all three converge to equal digests.
    c.spawn(leader - 1);
    let start = Instant::now();
    loop {
        let mut statuses = Vec::new();
        for i in 0..3 {
            if let Some(st) = c.status(i, true).await {
                statuses.push(st);
            }
        }
        let converged = statuses.len() == 3
            && (0..SHARDS as usize).all(|sh| {
                let first = &statuses[0].shards[sh];
                first.applied > 0
                    && statuses.iter().all(|st| {
                        st.shards[sh].applied == first.applied
                            && st.shards[sh].digest == first.digest
                    })
            });
        if converged {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "replicas did not converge: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // polling interval
    }
    // A refusal reaches the client with its code and reason.
    let err = s
        .reserve(pb::ReserveRequest {
            lines: vec![pb::ReserveLine {
                sku: "SKU-1".into(),
                quantity: 1_000,
                location: Some("berlin".into()),
            }],
            ..reserve_request("r-3")
        })
        .await
        .expect_err("more than the stock");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("available"), "{}", err.message());
}
