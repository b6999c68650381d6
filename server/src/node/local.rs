//! An in-process network for multi-node tests (raft-rs's test harness
//! style): nodes of one process exchange Raft messages through a hub that
//! can cut links, so failover and catch-up are ordinary tests.
//!
//! Snapshots travel whole (no chunking: nothing is serialised), and their
//! fate is reported to the sender's driver like the gRPC transport does, so
//! tests through this network exercise the driver's `report_snapshot` path.

use super::messages::Inbound;
use super::{NodeHandle, SubmitError, Transport, TransportReporter};
use parking_lot::RwLock;
use raft::eraftpb::{Message, MessageType};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The hub: which nodes are attached and which links are cut.
#[derive(Default)]
pub struct LocalNetwork {
    nodes: RwLock<BTreeMap<u64, NodeHandle>>,
    /// Ordered pairs `(from, to)` whose messages are dropped.
    cut: RwLock<BTreeSet<(u64, u64)>>,
}

impl LocalNetwork {
    /// An empty network.
    pub fn new() -> Arc<Self> {
        Arc::new(LocalNetwork::default())
    }

    /// The transport node `id` sends through.
    pub fn transport(self: &Arc<Self>, id: u64) -> Box<dyn Transport> {
        Box::new(LocalTransport {
            from: id,
            network: self.clone(),
            reporter: None,
        })
    }

    /// Delivers to node `id` from now on.
    pub fn attach(&self, id: u64, handle: NodeHandle) {
        self.nodes.write().insert(id, handle);
    }

    /// Stops delivering to node `id` (it crashed or was stopped).
    pub fn detach(&self, id: u64) {
        self.nodes.write().remove(&id);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&self, a: u64, b: u64) {
        let mut cut = self.cut.write();
        cut.insert((a, b));
        cut.insert((b, a));
    }

    /// Isolates `id` from every other node.
    pub fn isolate(&self, id: u64, others: &[u64]) {
        for &o in others {
            if o != id {
                self.cut(id, o);
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.cut.write().clear();
    }
}

struct LocalTransport {
    from: u64,
    network: Arc<LocalNetwork>,
    reporter: Option<TransportReporter>,
}

impl Transport for LocalTransport {
    fn send(&self, shard: u32, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let nodes = self.network.nodes.read();
        let cut = self.network.cut.read();
        for message in messages {
            let to = message.to;
            let snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
            let delivered = !cut.contains(&(self.from, to))
                && nodes.get(&to).is_some_and(|handle| {
                    // A full inbox drops the message, as a real network
                    // would; Raft retransmits.
                    match handle.submit(Inbound::Raft { shard, message }) {
                        Ok(()) => true,
                        Err(SubmitError::Overloaded) | Err(SubmitError::Stopped) => false,
                    }
                });
            if snapshot {
                if let Some(reporter) = &self.reporter {
                    reporter.snapshot_status(shard, to, delivered);
                }
            }
        }
    }

    fn attach(&mut self, reporter: TransportReporter) {
        self.reporter = Some(reporter);
    }
}
