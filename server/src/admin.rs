//! The internal `Admin` service: per-shard status of this node, for
//! operators, the CLI and the multi-process tests (which compare digests).

use crate::faults::Faults;
use crate::ids::reservation_to_wire;
use crate::node::messages::{Inbound, ShardDump};
use crate::node::NodeHandle;
use crate::pb::internal as pb;
use std::sync::Arc;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// Largest shard state (rows plus reservations) `DumpShard` returns.
pub const DUMP_ITEMS_MAX: usize = 1_000_000;

/// Serves `holdfast.internal.v1.Admin` for one node.
pub struct AdminService {
    node: NodeHandle,
    faults: Arc<Faults>,
}

impl AdminService {
    /// The service over `node`, with fault injection off.
    pub fn new(node: NodeHandle) -> Self {
        AdminService {
            node,
            faults: Arc::default(),
        }
    }

    /// Lets `SetPartition` change `faults` (effective only if they were
    /// created enabled, see [`Faults::new`]).
    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = faults;
        self
    }
}

fn dump_to_proto(shard: u32, dump: ShardDump) -> pb::DumpShardResponse {
    pb::DumpShardResponse {
        shard,
        applied: dump.applied,
        digest: dump.digest.to_le_bytes().to_vec(),
        rows: dump
            .rows
            .into_iter()
            .map(|r| pb::DumpRow {
                sku: r.sku,
                location: r.location,
                on_hand: r.on_hand,
                held: r.held,
                safety_stock: r.safety_stock,
                backorder_allowance: r.backorder_allowance,
            })
            .collect(),
        reservations: dump
            .reservations
            .into_iter()
            .map(|r| pb::DumpReservation {
                id: reservation_to_wire(shard, r.id),
                state: r.state.into(),
                owner: r.owner,
                customer: r.customer,
                expires_at_ms: r.expires_at_ms,
                lines: r
                    .lines
                    .into_iter()
                    .map(|(sku, location, quantity, confirmed)| pb::DumpLine {
                        sku,
                        location,
                        quantity,
                        confirmed,
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn cluster_status(
        &self,
        request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let (tx, rx) = oneshot::channel();
        self.node
            .submit(Inbound::Status {
                with_digest: request.get_ref().with_digest,
                reply: tx,
            })
            .map_err(|_| Status::unavailable("node overloaded or stopping"))?;
        let shards = rx.await.map_err(|_| Status::unavailable("node stopped"))?;
        let d = self.node.routing.stats.read();
        Ok(Response::new(pb::ClusterStatusResponse {
            node_id: self.node.id,
            driver: Some(pb::DriverCounters {
                iterations: d.iterations,
                group_commits: d.group_commits,
                group_commit_us: d.group_commit_us,
                unsynced_writes: d.unsynced_writes,
                entries_proposed: d.entries_proposed,
                commands_proposed: d.commands_proposed,
                entries_applied: d.entries_applied,
                messages_sent: d.messages_sent,
            }),
            shards: shards
                .into_iter()
                .map(|s| pb::ShardStatusInfo {
                    shard: s.shard,
                    leader: s.leader,
                    term: s.term,
                    commit: s.commit,
                    applied: s.applied,
                    digest: s
                        .digest
                        .map(|d| d.to_le_bytes().to_vec())
                        .unwrap_or_default(),
                    reservations: s.reservations as u64,
                })
                .collect(),
        }))
    }

    async fn dump_shard(
        &self,
        request: Request<pb::DumpShardRequest>,
    ) -> Result<Response<pb::DumpShardResponse>, Status> {
        let shard = request.get_ref().shard;
        if shard >= self.node.shards {
            return Err(Status::invalid_argument(format!(
                "shard: {shard} is not below the cluster's {} shards",
                self.node.shards
            )));
        }
        let (tx, rx) = oneshot::channel();
        self.node
            .submit(Inbound::Dump {
                shard,
                items_max: DUMP_ITEMS_MAX,
                reply: tx,
            })
            .map_err(|_| Status::unavailable("node overloaded or stopping"))?;
        match rx.await.map_err(|_| Status::unavailable("node stopped"))? {
            Some(dump) => Ok(Response::new(dump_to_proto(shard, dump))),
            None => Err(Status::resource_exhausted(format!(
                "shard {shard} holds more than {DUMP_ITEMS_MAX} rows plus reservations"
            ))),
        }
    }

    async fn set_partition(
        &self,
        request: Request<pb::SetPartitionRequest>,
    ) -> Result<Response<pb::SetPartitionResponse>, Status> {
        let blocked = request.into_inner().blocked_nodes.into_iter().collect();
        self.faults
            .set_blocked(blocked)
            .map_err(Status::failed_precondition)?;
        tracing::warn!(blocked = ?self.faults.blocked(), "partition set by fault injection");
        Ok(Response::new(pb::SetPartitionResponse {
            blocked_nodes: self.faults.blocked(),
        }))
    }
}
