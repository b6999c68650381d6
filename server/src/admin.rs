//! The internal `Admin` service: per-shard status of this node, for
//! operators, the CLI and the multi-process tests (which compare digests).

use crate::node::messages::Inbound;
use crate::node::NodeHandle;
use crate::pb::internal as pb;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// Serves `holdfast.internal.v1.Admin` for one node.
pub struct AdminService {
    node: NodeHandle,
}

impl AdminService {
    /// The service over `node`.
    pub fn new(node: NodeHandle) -> Self {
        AdminService { node }
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
}
