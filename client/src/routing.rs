//! Where a call goes: the shard of a SKU, and the client's view of the
//! cluster (its nodes and the cached leader of each shard).
//!
//! Unit of work: one *pick*, the node the next attempt of a call is sent
//! to. A call for a known shard whose leader is cached goes straight to
//! that leader; anything else goes to the next node in turn, which forwards
//! it (design §2). The cache is filled from `Admin.ClusterStatus` (every
//! node reports the leader it knows of each shard, by node id, and its own
//! id, which maps ids to the addresses the client dials) and from the
//! `leader_hint` of `UNAVAILABLE` answers. It is only a guess: a stale
//! entry costs one failed or forwarded attempt, never a wrong answer.
//!
//! The topology sits behind one mutex, held only to pick or to learn,
//! never across an await.

use crate::error::Error;
use crate::pb::internal::ClusterStatusResponse;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use xxhash_rust::xxh3::xxh3_64;

/// Nodes the client will know at most: the caller's list plus addresses
/// learned from leader hints. Bounds what a confused or hostile node can
/// make the client dial.
pub const NODES_MAX: usize = 64;

/// Shards the client accepts from a status report (the server's own limit
/// is far lower); bounds the leader table.
pub const SHARDS_MAX: u32 = 4_096;

/// The shard (0-based) of `sku` among `shards` shards: `xxh3_64(sku) mod
/// shards`, exactly the server's `holdfast_engine::shard_of` (a test pins
/// the two together). Reimplemented rather than imported so that the client
/// does not depend on the engine. `shards` must be at least 1.
pub fn shard_of(sku: &str, shards: u32) -> u32 {
    assert!(shards > 0, "a cluster has at least one shard");
    (xxh3_64(sku.as_bytes()) % u64::from(shards)) as u32
}

/// An address as the client compares them: `host:port`, without scheme.
pub(crate) fn normalise(address: &str) -> &str {
    address
        .strip_prefix("http://")
        .unwrap_or(address)
        .trim_end_matches('/')
}

/// One node the client can dial.
pub(crate) struct Node {
    /// `host:port`.
    pub address: String,
    endpoint: Endpoint,
    /// Made on first use (making one needs a Tokio runtime), then shared:
    /// cheap to clone, reconnects by itself.
    channel: Option<Channel>,
    /// The node's id, once it answered `ClusterStatus`.
    pub node_id: Option<u64>,
}

/// The client's view of the cluster.
pub(crate) struct Topology {
    nodes: Vec<Node>,
    /// Shards of the cluster, when known (from the options or a report).
    shards: Option<u32>,
    /// Per shard: index into `nodes` of the cached leader.
    leaders: Vec<Option<usize>>,
    /// Next node for calls that go to any node.
    cursor: usize,
    connect_timeout: Duration,
}

fn endpoint(address: &str, connect_timeout: Duration) -> Result<Endpoint, Error> {
    let endpoint =
        Endpoint::from_shared(format!("http://{address}")).map_err(|e| Error::InvalidEndpoint {
            endpoint: address.to_string(),
            message: e.to_string(),
        })?;
    Ok(endpoint.connect_timeout(connect_timeout).tcp_nodelay(true))
}

impl Topology {
    /// A view of `addresses` (`host:port` or `http://host:port`), with no
    /// leader known yet.
    pub fn new(
        addresses: &[String],
        shards: Option<u32>,
        connect_timeout: Duration,
    ) -> Result<Topology, Error> {
        if addresses.is_empty() {
            return Err(Error::InvalidEndpoint {
                endpoint: String::new(),
                message: "no node addresses given".into(),
            });
        }
        let mut t = Topology {
            nodes: Vec::new(),
            shards: None,
            leaders: Vec::new(),
            cursor: 0,
            connect_timeout,
        };
        if let Some(n) = shards {
            t.set_shards(n)?;
        }
        for a in addresses {
            t.node_index(a)?;
        }
        Ok(t)
    }

    fn set_shards(&mut self, n: u32) -> Result<(), Error> {
        if n == 0 || n > SHARDS_MAX {
            return Err(Error::InvalidEndpoint {
                endpoint: String::new(),
                message: format!("{n} shards: a cluster has 1 to {SHARDS_MAX}"),
            });
        }
        if self.shards != Some(n) {
            self.shards = Some(n);
            self.leaders = vec![None; n as usize];
        }
        Ok(())
    }

    /// The index of the node at `address`, added if new.
    fn node_index(&mut self, address: &str) -> Result<usize, Error> {
        let address = normalise(address.trim());
        if let Some(i) = self.nodes.iter().position(|n| n.address == address) {
            return Ok(i);
        }
        if address.is_empty() || self.nodes.len() >= NODES_MAX {
            return Err(Error::InvalidEndpoint {
                endpoint: address.to_string(),
                message: format!("empty, or more than {NODES_MAX} nodes"),
            });
        }
        self.nodes.push(Node {
            address: address.to_string(),
            endpoint: endpoint(address, self.connect_timeout)?,
            channel: None,
            node_id: None,
        });
        Ok(self.nodes.len() - 1)
    }

    /// The shards of the cluster, when known.
    pub fn shards(&self) -> Option<u32> {
        self.shards
    }

    /// Every node: index and node.
    pub fn nodes(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes.iter().enumerate()
    }

    /// Nodes known.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The channel to node `index` (made now if it is the first use; must
    /// run inside a Tokio runtime).
    pub fn channel(&mut self, index: usize) -> Channel {
        let node = &mut self.nodes[index];
        node.channel
            .get_or_insert_with(|| node.endpoint.connect_lazy())
            .clone()
    }

    /// The node at `index`.
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// The cached leader of `shard`.
    pub fn leader(&self, shard: u32) -> Option<usize> {
        self.leaders.get(shard as usize).copied().flatten()
    }

    /// The node the next attempt goes to: the cached leader of `shard`, or
    /// else the next node in turn other than `avoid` (the node that just
    /// failed), when there is another.
    pub fn pick(&mut self, shard: Option<u32>, avoid: Option<usize>) -> usize {
        if let Some(leader) = shard.and_then(|s| self.leader(s)) {
            if Some(leader) != avoid {
                return leader;
            }
        }
        let n = self.nodes.len();
        let mut i = self.cursor % n;
        if Some(i) == avoid && n > 1 {
            i = (i + 1) % n;
        }
        self.cursor = (i + 1) % n;
        i
    }

    /// Records `address` (a `leader_hint`) as the leader of `shard` and
    /// returns its index. An address the client did not know is added.
    pub fn learn_leader(&mut self, shard: Option<u32>, address: &str) -> Result<usize, Error> {
        let i = self.node_index(address)?;
        if let Some(slot) = shard.and_then(|s| self.leaders.get_mut(s as usize)) {
            *slot = Some(i);
        }
        Ok(i)
    }

    /// Forgets the cached leader of `shard`.
    pub fn forget_leader(&mut self, shard: u32) {
        if let Some(slot) = self.leaders.get_mut(shard as usize) {
            *slot = None;
        }
    }

    /// Forgets every shard led by node `index` (it did not answer).
    pub fn forget_node(&mut self, index: usize) {
        for slot in &mut self.leaders {
            if *slot == Some(index) {
                *slot = None;
            }
        }
    }

    /// Learns node ids and leaders from the status reports of some nodes
    /// (`(node index, report)`), asked of all at once; `down` lists the
    /// nodes that did not answer. Per shard, the report with the highest
    /// term that names a leader wins. A leader is left uncached if its
    /// address is not known (it never answered) or it is in `down`: the
    /// others may not have noticed yet that it is gone.
    pub fn apply_reports(&mut self, reports: &[(usize, ClusterStatusResponse)], down: &[usize]) {
        for (i, r) in reports {
            if let Some(node) = self.nodes.get_mut(*i) {
                node.node_id = Some(r.node_id);
            }
        }
        let Some(first) = reports.first() else {
            return;
        };
        if self.set_shards(first.1.shards.len() as u32).is_err() {
            return;
        }
        let mut best: Vec<Option<(u64, u64)>> = vec![None; self.leaders.len()];
        for (_, r) in reports {
            for s in &r.shards {
                let Some(slot) = best.get_mut(s.shard as usize) else {
                    continue;
                };
                if s.leader != 0 && slot.is_none_or(|(term, _)| s.term > term) {
                    *slot = Some((s.term, s.leader));
                }
            }
        }
        for (shard, b) in best.into_iter().enumerate() {
            if let Some((_, leader_id)) = b {
                self.leaders[shard] = self
                    .nodes
                    .iter()
                    .position(|n| n.node_id == Some(leader_id))
                    .filter(|i| !down.contains(i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::internal::ShardStatusInfo;

    /// Pinned against the server's function: a client that computed
    /// another shard would send every request through a forwarding hop
    /// (design §2, "shard = hash(sku) mod N").
    #[test]
    fn shard_of_is_the_engines() {
        for n in [1, 2, 3, 8, 16, 255, 4_096] {
            for i in 0..2_000 {
                let sku = format!("sku-{i:06}");
                assert_eq!(
                    shard_of(&sku, n),
                    holdfast_engine::shard_of(&sku, n),
                    "{sku} among {n}"
                );
            }
            for sku in ["", "SKU-1", "☃", &"x".repeat(256)] {
                assert_eq!(shard_of(sku, n), holdfast_engine::shard_of(sku, n));
            }
        }
        // The engine's own pinned values (engine/src/shard.rs).
        let pinned: Vec<u32> = ["SKU-1", "SKU-2", "sku-000042", "☃"]
            .iter()
            .map(|s| shard_of(s, 8))
            .collect();
        assert_eq!(pinned, [0, 5, 5, 0]);
    }

    fn report(node_id: u64, leaders: &[(u64, u64)]) -> ClusterStatusResponse {
        ClusterStatusResponse {
            node_id,
            shards: leaders
                .iter()
                .enumerate()
                .map(|(s, &(leader, term))| ShardStatusInfo {
                    shard: s as u32,
                    leader,
                    term,
                    ..Default::default()
                })
                .collect(),
            driver: None,
        }
    }

    fn topology() -> Topology {
        let addrs: Vec<String> = ["127.0.0.1:1", "http://127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Topology::new(&addrs, None, Duration::from_millis(100)).expect("topology")
    }

    #[test]
    fn reports_fill_the_leader_cache_newest_term_wins() {
        let mut t = topology();
        assert_eq!(t.shards(), None);
        // Node 1 still believes in an old leader of shard 1; node 2 knows
        // the newer term.
        t.apply_reports(
            &[
                (0, report(11, &[(12, 3), (11, 3)])),
                (1, report(12, &[(12, 3), (12, 4)])),
            ],
            &[],
        );
        assert_eq!(t.shards(), Some(2));
        assert_eq!(t.leader(0), Some(1));
        assert_eq!(t.leader(1), Some(1));
        assert_eq!(t.pick(Some(0), None), 1);
        // The leader failed: the next pick avoids it.
        t.forget_node(1);
        assert_eq!(t.leader(0), None);
        assert_ne!(t.pick(Some(0), Some(1)), 1);
        // Node 2 was reported leader but did not answer this refresh.
        t.apply_reports(&[(0, report(11, &[(12, 5), (11, 5)]))], &[1]);
        assert_eq!(t.leader(0), None, "a leader that did not answer");
        assert_eq!(t.leader(1), Some(0));
    }

    #[test]
    fn hints_add_nodes_and_picks_rotate() {
        let mut t = topology();
        t.set_shards(4).expect("shards");
        let i = t.learn_leader(Some(2), "127.0.0.1:9").expect("hint");
        assert_eq!(i, 3);
        assert_eq!(t.node(3).address, "127.0.0.1:9");
        assert_eq!(t.pick(Some(2), None), 3);
        // Same address with a scheme is the same node.
        assert_eq!(
            t.learn_leader(Some(1), "http://127.0.0.1:2").expect("hint"),
            1
        );
        let picks: Vec<usize> = (0..8).map(|_| t.pick(None, None)).collect();
        assert_eq!(picks, [0, 1, 2, 3, 0, 1, 2, 3]);
        t.forget_leader(2);
        assert_eq!(t.leader(2), None);
    }

    #[test]
    fn no_addresses_is_an_error() {
        assert!(Topology::new(&[], None, Duration::from_millis(1)).is_err());
    }
}
