//! A node: the driver thread that runs its shards, and the handle the gRPC
//! services use to reach it.
//!
//! Threads: one driver thread owns all shard state (`driver`); the tokio
//! runtime serves gRPC and runs the transport; they meet only at the
//! driver's inbox (a bounded channel) and the `Routing` table the driver
//! publishes (current leaders, stock boards) for lock-free reads.

pub mod driver;
pub mod local;
pub mod messages;
pub mod shard;
pub mod stats;
pub mod unsafe_early_ack;
pub mod waiters;

use crate::config::NodeConfig;
use crate::events::EventLog;
use crossbeam_channel::{bounded, Sender, TrySendError};
use driver::{Driver, DriverError};
use holdfast_engine::StockBoard;
use holdfast_raft_store::{RaftDb, StorageMarker};
use messages::Inbound;
use parking_lot::RwLock;
use raft::eraftpb::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

/// Requests waiting in a driver's inbox at most; beyond it callers get a
/// fast "overloaded" answer instead of queueing without bound.
pub const INBOX_CAPACITY: usize = 65_536;

/// Sends Raft messages to peers. Implementations never block the driver:
/// they queue, and drop when a peer's queue is full (Raft retransmits).
pub trait Transport: Send + 'static {
    /// Queues `messages` of `shard` for their recipients (`Message::to`).
    fn send(&self, shard: u32, messages: Vec<Message>);
    /// Gives the transport the way back to its node's driver, for what only
    /// the transport learns (a snapshot delivered or lost, a peer
    /// unreachable). A transport exists before its node (the node needs it
    /// to start), so [`Node::start`] calls this once, before the driver
    /// runs; reports made before it are dropped.
    fn attach(&mut self, reporter: TransportReporter);
}

/// How a transport reports to the driver, through the driver's inbox
/// ([`Inbound::SnapshotStatus`], [`Inbound::Unreachable`]); never blocks.
///
/// It holds the inbox weakly: the transport is owned by the driver, so a
/// strong sender would keep the driver's own inbox open and the driver
/// could never see it close and stop. Once every [`NodeHandle`] is gone,
/// reports are dropped.
#[derive(Clone, Debug)]
pub struct TransportReporter {
    inbox: Weak<Sender<Inbound>>,
}

impl TransportReporter {
    /// A reporter into the inbox `inbox` (held weakly).
    pub(crate) fn new(inbox: &Arc<Sender<Inbound>>) -> Self {
        TransportReporter {
            inbox: Arc::downgrade(inbox),
        }
    }

    /// Reports how a snapshot of `shard` sent to `to` ended; `ok`: the peer
    /// has it whole. `false` if the report could not be posted.
    pub fn snapshot_status(&self, shard: u32, to: u64, ok: bool) -> bool {
        self.post(Inbound::SnapshotStatus { shard, to, ok })
    }

    /// Reports that messages of `shard` to `to` may have been lost because
    /// the link failed. `false` if the report could not be posted.
    pub fn unreachable(&self, shard: u32, to: u64) -> bool {
        self.post(Inbound::Unreachable { shard, to })
    }

    /// Posts without blocking: a full inbox drops the report (Raft then
    /// recovers by its own timeouts, as it did before reports existed).
    fn post(&self, message: Inbound) -> bool {
        self.inbox
            .upgrade()
            .is_some_and(|inbox| inbox.try_send(message).is_ok())
    }
}

/// What the driver publishes for other threads: leader per shard, the
/// stock board per shard, and its work counters.
pub struct Routing {
    leaders: Vec<AtomicU64>,
    boards: Vec<RwLock<Arc<StockBoard>>>,
    /// The driver's work counters.
    pub stats: stats::DriverStats,
}

impl Routing {
    /// A table for `shards` shards, no leader known yet.
    pub fn new(shards: u32) -> Self {
        Routing {
            leaders: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            boards: (0..shards)
                .map(|_| RwLock::new(Arc::new(StockBoard::new(0))))
                .collect(),
            stats: stats::DriverStats::default(),
        }
    }

    /// The last leader this node heard of for `shard` (`None`: unknown).
    pub fn leader(&self, shard: u32) -> Option<u64> {
        let id = self.leaders.get(shard as usize)?.load(Ordering::Acquire);
        (id != 0).then_some(id)
    }

    pub(crate) fn set_leader(&self, shard: u32, leader: u64) {
        if let Some(slot) = self.leaders.get(shard as usize) {
            slot.store(leader, Ordering::Release);
        }
    }

    /// The stock board of `shard` (scarce and sold-out SKUs).
    pub fn board(&self, shard: u32) -> Option<Arc<StockBoard>> {
        self.boards.get(shard as usize).map(|b| b.read().clone())
    }

    pub(crate) fn publish_board(&self, shard: u32, board: Arc<StockBoard>) {
        if let Some(slot) = self.boards.get(shard as usize) {
            *slot.write() = board;
        }
    }
}

/// Why a request could not be handed to the driver.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The inbox is full: the node is overloaded (`RESOURCE_EXHAUSTED`).
    Overloaded,
    /// The driver has stopped (`UNAVAILABLE`).
    Stopped,
}

/// The handle services use to reach a running node.
#[derive(Clone)]
pub struct NodeHandle {
    /// Shared by every clone, so that a [`TransportReporter`] can hold it
    /// weakly: the inbox closes when the last handle is dropped.
    inbox: Arc<Sender<Inbound>>,
    /// Leaders and boards.
    pub routing: Arc<Routing>,
    /// This node's id.
    pub id: u64,
    /// Number of shards.
    pub shards: u32,
    /// Kept change events, for `WatchEvents`.
    pub events: Arc<EventLog>,
}

impl NodeHandle {
    /// Every shard's status as the driver sees it now (no digests), or why
    /// it could not be asked. Cheap: O(shards) on the driver thread.
    pub async fn status(&self) -> Result<Vec<messages::ShardStatus>, SubmitError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Inbound::Status {
            with_digest: false,
            reply,
        })?;
        answer.await.map_err(|_| SubmitError::Stopped)
    }

    /// Hands every shard this node leads to a caught-up follower (graceful
    /// shutdown, `Inbound::Leave`); resolves once it leads none. Bound the
    /// wait: with no follower reachable the hand-off cannot finish.
    pub async fn leave(&self) -> Result<(), SubmitError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.submit(Inbound::Leave { reply })?;
        answer.await.map_err(|_| SubmitError::Stopped)
    }

    /// Hands a request to the driver without blocking.
    pub fn submit(&self, msg: Inbound) -> Result<(), SubmitError> {
        self.inbox.try_send(msg).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Overloaded,
            TrySendError::Disconnected(_) => SubmitError::Stopped,
        })
    }
}

/// A running node: its driver thread and handle.
pub struct Node {
    /// The handle.
    pub handle: NodeHandle,
    driver: Option<JoinHandle<Result<(), DriverError>>>,
}

impl Node {
    /// Opens the data directory (refusing another node's or cluster's),
    /// opens every shard and starts the driver thread.
    pub fn start(
        config: NodeConfig,
        mut transport: Box<dyn Transport>,
    ) -> Result<Node, DriverError> {
        let db = RaftDb::open(
            &config.data_dir,
            StorageMarker {
                cluster_id: config.cluster_id,
                node_id: config.id,
            },
        )?;
        let (tx, rx) = bounded(INBOX_CAPACITY);
        let inbox = Arc::new(tx);
        transport.attach(TransportReporter::new(&inbox));
        let routing = Arc::new(Routing::new(config.shards));
        let storages = (0..config.shards)
            .map(|id| db.shard(id))
            .collect::<Result<Vec<_>, _>>()?;
        let events = Arc::new(EventLog::new(storages));
        let handle = NodeHandle {
            inbox,
            routing: routing.clone(),
            id: config.id,
            shards: config.shards,
            events: events.clone(),
        };
        let driver = Driver::open(config, db, rx, transport, routing, events)?;
        let thread = std::thread::Builder::new()
            .name(format!("driver-{}", handle.id))
            .spawn(move || {
                let result = driver.run();
                if let Err(e) = &result {
                    tracing::error!(error = %e, "driver stopped");
                }
                result
            })
            .expect("spawn the driver thread");
        Ok(Node {
            handle,
            driver: Some(thread),
        })
    }

    /// Stops the driver: closes the inbox (pending requests are failed) and
    /// waits for the thread. Other clones of the handle keep the inbox open,
    /// so drop them first.
    pub fn stop(mut self) -> Result<(), DriverError> {
        let thread = self.driver.take().expect("running");
        drop(self.handle);
        thread.join().expect("driver thread panicked")
    }

    /// Whether the driver thread has ended (error or stop).
    pub fn is_stopped(&self) -> bool {
        self.driver.as_ref().is_none_or(|t| t.is_finished())
    }
}
