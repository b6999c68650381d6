//! Three in-process nodes over the real gRPC transport (`GrpcTransport` and
//! `RaftTransportService` on 127.0.0.1 ports, each node on a runtime of its
//! own, as in the binary): a node whose data directory is wiped catches up
//! by a snapshot streamed in many chunks, to the same state digest as the
//! others (design §1.4 durability, §1.5 determinism). Waiting is always
//! "poll until a condition holds, with a deadline".

use holdfast_engine::{
    AdjustStock, Command, CommandKind, Outcome, RequestId, Reserve, ReserveLine, UpsertLocation,
};
use holdfast_server::config::NodeConfig;
use holdfast_server::node::messages::{Inbound, ProposeResult, ReadResult, ShardStatus};
use holdfast_server::node::{Node, NodeHandle};
use holdfast_server::transport::{
    raft_transport_server, GrpcTransport, RaftTransportService, ServiceCounters, TransportCounters,
};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

const DEADLINE: Duration = Duration::from_secs(60);
const CLUSTER: u64 = 3;
const SHARD: u32 = 0;
/// Small, so that even this test's snapshot takes many chunks.
const CHUNK_BYTES: usize = 1_024;
/// Low, so that the leader snapshots and compacts during the test.
const SNAPSHOT_EVERY_ENTRIES: u64 = 50;
const SNAPSHOT_LOG_MARGIN_ENTRIES: u64 = 10;
const SKU: &str = "A";

/// One running node: its runtime (gRPC server and transport tasks), its
/// driver, and the counters of both transport ends.
struct GrpcNode {
    runtime: tokio::runtime::Runtime,
    node: Node,
    service: Arc<ServiceCounters>,
    transport: Arc<TransportCounters>,
}

struct GrpcCluster {
    addrs: BTreeMap<u64, SocketAddr>,
    dirs: BTreeMap<u64, PathBuf>,
    nodes: BTreeMap<u64, Option<GrpcNode>>,
    _root: TempDir,
    next_request: u128,
}

impl GrpcCluster {
    fn new(n: u64) -> Self {
        let root = TempDir::new().expect("temp dir");
        let listeners: BTreeMap<u64, TcpListener> = (1..=n)
            .map(|id| (id, TcpListener::bind("127.0.0.1:0").expect("bind")))
            .collect();
        let mut c = GrpcCluster {
            addrs: listeners
                .iter()
                .map(|(&id, l)| (id, l.local_addr().expect("local addr")))
                .collect(),
            dirs: (1..=n)
                .map(|id| (id, root.path().join(format!("node-{id}"))))
                .collect(),
            nodes: BTreeMap::new(),
            _root: root,
            next_request: 0,
        };
        for (id, listener) in listeners {
            c.start_on(id, listener);
        }
        c
    }

    fn config(&self, id: u64) -> NodeConfig {
        let mut config =
            NodeConfig::single(id, self.addrs[&id].to_string(), self.dirs[&id].clone());
        config.cluster_id = CLUSTER;
        config.peers = self
            .addrs
            .iter()
            .map(|(&i, a)| (i, a.to_string()))
            .collect();
        config.shards = 1;
        config.snapshot_every_entries = SNAPSHOT_EVERY_ENTRIES;
        config.snapshot_log_margin_entries = SNAPSHOT_LOG_MARGIN_ENTRIES;
        config
    }

    /// Starts node `id` serving on `listener`, wired as `main.rs` wires it.
    fn start_on(&mut self, id: u64, listener: TcpListener) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("node-{id}-rt"))
            .enable_all()
            .build()
            .expect("runtime");
        let config = self.config(id);
        let transport =
            GrpcTransport::start(id, CLUSTER, config.peers.clone(), runtime.handle().clone())
                .with_snapshot_chunk_bytes(CHUNK_BYTES);
        let transport_counters = transport.counters();
        let node = Node::start(config, Box::new(transport)).expect("node starts");
        let svc = RaftTransportService::new(id, CLUSTER, node.handle.clone());
        let service = svc.counters();
        listener.set_nonblocking(true).expect("nonblocking");
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            // No Nagle delay on accepted connections, as `main.rs` serves.
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            let served = tonic::transport::Server::builder()
                .add_service(raft_transport_server(svc))
                .serve_with_incoming(incoming)
                .await;
            if let Err(error) = served {
                panic!("node {id}: gRPC server failed: {error}");
            }
        });
        let running = GrpcNode {
            runtime,
            node,
            service,
            transport: transport_counters,
        };
        self.nodes.insert(id, Some(running));
    }

    /// Starts node `id` again on its old address.
    fn start(&mut self, id: u64) {
        let listener = TcpListener::bind(self.addrs[&id]).expect("rebind the node's port");
        self.start_on(id, listener);
    }

    /// Stops node `id` as the binary does: the runtime first (its server,
    /// streams and transport tasks end, dropping their node handles), then
    /// the driver.
    fn stop(&mut self, id: u64) {
        if let Some(running) = self.nodes.get_mut(&id).and_then(Option::take) {
            running.runtime.shutdown_timeout(Duration::from_secs(5));
            running.node.stop().expect("driver stops cleanly");
        }
    }

    fn wipe(&mut self, id: u64) {
        self.stop(id);
        std::fs::remove_dir_all(&self.dirs[&id]).expect("wipe data dir");
    }

    fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    fn node(&self, id: u64) -> &GrpcNode {
        self.nodes[&id].as_ref().expect("node running")
    }

    fn handle(&self, id: u64) -> NodeHandle {
        self.node(id).node.handle.clone()
    }

    fn status(&self, id: u64, with_digest: bool) -> Vec<ShardStatus> {
        let (tx, rx) = oneshot::channel();
        self.handle(id)
            .submit(Inbound::Status {
                with_digest,
                reply: tx,
            })
            .expect("submit");
        await_reply(rx)
    }

    /// Polls `f` until it returns `Some`, or panics after the deadline.
    fn wait_for<T>(&self, what: &str, mut f: impl FnMut(&Self) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5)); // polling interval, not synchronisation
        }
    }

    /// The leader every running node agrees on.
    fn leader(&self) -> u64 {
        self.wait_for("an agreed leader", |c| {
            let running = c.running();
            let leaders: Vec<u64> = running
                .iter()
                .map(|&id| c.status(id, false)[SHARD as usize].leader)
                .collect();
            let first = leaders[0];
            (first != 0 && running.contains(&first) && leaders.iter().all(|&l| l == first))
                .then_some(first)
        })
    }

    /// Proposes through the current leader, retrying with the same request
    /// id across leader changes, until applied.
    fn apply(&self, command: Command) -> Outcome {
        self.wait_for("the command to apply", |c| {
            let (tx, rx) = oneshot::channel();
            c.handle(c.leader())
                .submit(Inbound::Propose {
                    shard: SHARD,
                    command: command.clone(),
                    reply: tx,
                })
                .expect("submit");
            match await_reply(rx) {
                ProposeResult::Applied { outcome, .. } => Some(outcome),
                ProposeResult::NotLeader { .. } | ProposeResult::Aborted { .. } => None,
            }
        })
    }

    fn request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn setup_stock(&mut self, units: i64) {
        let upsert = Command {
            request_id: self.request(),
            kind: CommandKind::UpsertLocation(UpsertLocation {
                location: "berlin".into(),
                region: "eu".into(),
                priority: 1,
            }),
        };
        assert!(self.apply(upsert).is_ok());
        let adjust = Command {
            request_id: self.request(),
            kind: CommandKind::AdjustStock(AdjustStock {
                sku: SKU.into(),
                location: "berlin".into(),
                delta: units,
                expected_on_hand: None,
            }),
        };
        assert!(self.apply(adjust).is_ok());
    }

    fn reserve(&mut self, times: usize) {
        for _ in 0..times {
            let command = Command {
                request_id: self.request(),
                kind: CommandKind::Reserve(Reserve {
                    owner: "cart".into(),
                    customer: "cust".into(),
                    region: None,
                    lines: vec![ReserveLine {
                        sku: SKU.into(),
                        quantity: 1,
                        location: Some("berlin".into()),
                    }],
                    ttl_ms: 600_000,
                    policy: Default::default(),
                    allow_split: false,
                }),
            };
            assert!(self.apply(command).is_ok());
        }
    }

    /// Waits until every running replica applied the same index with the
    /// same digest (design §1.5), and returns that digest.
    fn converged_digest(&self) -> u128 {
        self.wait_for("replicas to converge", |c| {
            let statuses: Vec<ShardStatus> = c
                .running()
                .iter()
                .map(|&id| c.status(id, true)[SHARD as usize].clone())
                .collect();
            let first = &statuses[0];
            let same = statuses
                .iter()
                .all(|s| s.applied == first.applied && s.digest == first.digest);
            (same && first.applied > 0).then(|| first.digest.expect("asked for digests"))
        })
    }

    fn held(&self, id: u64) -> i64 {
        let (tx, rx) = oneshot::channel();
        self.handle(id)
            .submit(Inbound::Read {
                shard: SHARD,
                query: holdfast_server::node::messages::ReadQuery::Rows(vec![(
                    SKU.into(),
                    Some("berlin".into()),
                )]),
                linearizable: false,
                reply: tx,
            })
            .expect("submit");
        match await_reply(rx) {
            ReadResult::Rows { rows, .. } => rows[0].availability.held,
            other => panic!("read failed: {other:?}"),
        }
    }
}

impl Drop for GrpcCluster {
    fn drop(&mut self) {
        for id in self.running() {
            self.stop(id);
        }
    }
}

/// Waits for a driver's answer, failing the test (instead of hanging) if
/// none comes within the deadline.
fn await_reply<T>(mut rx: oneshot::Receiver<T>) -> T {
    let start = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(v) => return v,
            Err(oneshot::error::TryRecvError::Closed) => panic!("the driver dropped the request"),
            Err(oneshot::error::TryRecvError::Empty) => {
                assert!(start.elapsed() < DEADLINE, "no answer from the driver");
                std::thread::sleep(Duration::from_millis(2)); // polling interval
            }
        }
    }
}

fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[test]
fn a_wiped_node_catches_up_by_a_chunked_snapshot_over_grpc() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,raft=warn")
        .try_init();
    let mut c = GrpcCluster::new(3);
    c.setup_stock(10_000);
    c.reserve(200);
    let leader = c.leader();
    let victim = (1..=3).find(|&id| id != leader).expect("a follower");
    c.wipe(victim);
    // More writes while it is gone: the others snapshot and compact their
    // logs past everything the victim could be sent as entries.
    c.reserve(100);
    c.start(victim);
    let digest = c.converged_digest();
    assert_eq!(
        c.held(victim),
        300,
        "design §1.4: the wiped node has every acknowledged hold"
    );
    let others: Vec<u64> = (1..=3).filter(|&id| id != victim).collect();
    for id in others.iter().copied() {
        assert_eq!(c.status(id, true)[0].digest, Some(digest));
    }

    let victim_in = &c.node(victim).service;
    let snapshots = load(&victim_in.snapshots_received);
    let chunks = load(&victim_in.snapshot_chunks_received);
    let bytes = load(&victim_in.snapshot_bytes_received);
    assert!(snapshots >= 1, "the wiped node received a snapshot");
    assert!(
        chunks >= 3 * snapshots && chunks as usize * CHUNK_BYTES >= bytes as usize,
        "{snapshots} snapshots of {bytes} bytes came in {chunks} chunks of at most {CHUNK_BYTES}"
    );
    assert_eq!(load(&victim_in.snapshots_refused), 0);
    // The sender learns of success after the receiver delivered it.
    c.wait_for("the sender to count the snapshot sent", |c| {
        let sent: u64 = others
            .iter()
            .map(|&id| load(&c.node(id).transport.snapshots_sent))
            .sum();
        (sent >= 1).then_some(())
    });
}
