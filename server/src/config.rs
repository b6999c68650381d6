//! Node configuration: membership, storage, Raft tuning, ledger settings.
//!
//! Every default is a named constant with its unit and the reason for its
//! value. raft-rs's own defaults (one entry per message, no pre-vote, a
//! one-second election) are wrong for a ledger that must fail over fast, so
//! each Raft knob is set here explicitly.

use holdfast_engine::EngineConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Shards per cluster by default: enough to spread leaders over 5 nodes and
/// keep each shard's apply thread share small.
pub const SHARDS_DEFAULT: u32 = 8;
/// Driver tick: the unit of Raft's election and heartbeat timers.
pub const TICK_MS_DEFAULT: u64 = 30;
/// Election timeout in ticks (randomised by raft-rs in [n, 2n)): 300–600 ms,
/// so a dead leader is replaced well under a second after its last
/// heartbeat.
pub const ELECTION_TICKS_DEFAULT: usize = 10;
/// Heartbeat interval in ticks (90 ms): several per election timeout.
pub const HEARTBEAT_TICKS_DEFAULT: usize = 3;
/// Bytes of entries per append message: large enough to carry a whole
/// batch, small enough not to stall the stream.
pub const MAX_SIZE_PER_MSG_DEFAULT: u64 = 1 << 20;
/// Append messages in flight per follower before waiting for acks.
pub const MAX_INFLIGHT_MSGS_DEFAULT: usize = 256;
/// Bytes of proposed but uncommitted entries a leader accepts before
/// dropping proposals (clients get `ABORTED` and retry): bounds memory when
/// followers or the disk fall behind.
pub const MAX_UNCOMMITTED_SIZE_DEFAULT: u64 = 32 << 20;
/// How often a shard leader checks for due holds and proposes `ExpireUpTo`.
pub const EXPIRE_TICK_MS_DEFAULT: u64 = 100;
/// Applied entries between snapshots (and log compactions) of a shard.
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 50_000;
/// Log entries kept behind a snapshot when the log is compacted, so a
/// briefly lagging follower catches up from the log rather than by
/// snapshot. Tests set it low to force catch-up by snapshot.
pub const SNAPSHOT_LOG_MARGIN_ENTRIES_DEFAULT: u64 = 5_000;
/// Default of [`NodeConfig::event_retention_entries`]. An entry carries
/// one command when traffic is light and tens under load (batching), so
/// this is at least 100,000 changes; under a full hot-SKU load (about
/// 1,000 entries a second) it is some 100 s of history and ~200 MB.
pub const EVENT_RETENTION_ENTRIES_DEFAULT: u64 = 100_000;
/// Commands gathered into one log entry at most (the rest wait for the next
/// loop iteration).
pub const BATCH_COMMANDS_MAX: usize = 4_096;

/// Raft tuning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftTuning {
    /// Driver tick in ms.
    pub tick_ms: u64,
    /// Election timeout in ticks.
    pub election_ticks: usize,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: usize,
    /// Bytes per append message.
    pub max_size_per_msg: u64,
    /// In-flight append messages per follower.
    pub max_inflight_msgs: usize,
    /// Uncommitted bytes a leader accepts.
    pub max_uncommitted_size: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            tick_ms: TICK_MS_DEFAULT,
            election_ticks: ELECTION_TICKS_DEFAULT,
            heartbeat_ticks: HEARTBEAT_TICKS_DEFAULT,
            max_size_per_msg: MAX_SIZE_PER_MSG_DEFAULT,
            max_inflight_msgs: MAX_INFLIGHT_MSGS_DEFAULT,
            max_uncommitted_size: MAX_UNCOMMITTED_SIZE_DEFAULT,
        }
    }
}

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (1-based, unique in the cluster).
    pub id: u64,
    /// Cluster id, written into the data directory's marker.
    pub cluster_id: u64,
    /// Every member, this node included: id → address (`host:port`).
    pub peers: BTreeMap<u64, String>,
    /// Where RocksDB and snapshots live.
    pub data_dir: PathBuf,
    /// Number of shards (must be equal on every node).
    pub shards: u32,
    /// Raft tuning.
    pub raft: RaftTuning,
    /// Ledger settings (must be equal on every node).
    pub engine: EngineConfig,
    /// How often leaders propose expiry, in ms.
    pub expire_tick_ms: u64,
    /// Applied entries between snapshots.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot at compaction.
    pub snapshot_log_margin_entries: u64,
    /// Applied entries whose change events are kept for `WatchEvents`
    /// (0: none kept, the stream is empty).
    pub event_retention_entries: u64,
    /// fsync every write batch (off only for tests that measure the cost).
    pub sync_writes: bool,
    /// UNSAFE, chaos tests only (`--unsafe-chaos-bug=ack-before-commit`):
    /// a shard leader answers a proposal as soon as its entry is in its own
    /// log, before a quorum has it, breaking design §1.4 on purpose so a
    /// chaos run can prove its checker sees lost acknowledgements
    /// (`node::unsafe_early_ack`). Always `false` outside that test.
    pub unsafe_ack_before_commit: bool,
}

impl NodeConfig {
    /// A one-node cluster with every default: what `holdfast-server`
    /// runs without `--peers`.
    pub fn single(id: u64, address: String, data_dir: PathBuf) -> Self {
        NodeConfig {
            id,
            cluster_id: 1,
            peers: BTreeMap::from([(id, address)]),
            data_dir,
            shards: SHARDS_DEFAULT,
            raft: RaftTuning::default(),
            engine: EngineConfig::default(),
            expire_tick_ms: EXPIRE_TICK_MS_DEFAULT,
            snapshot_every_entries: SNAPSHOT_EVERY_ENTRIES_DEFAULT,
            snapshot_log_margin_entries: SNAPSHOT_LOG_MARGIN_ENTRIES_DEFAULT,
            event_retention_entries: EVENT_RETENTION_ENTRIES_DEFAULT,
            sync_writes: true,
            unsafe_ack_before_commit: false,
        }
    }

    /// Checks the pieces fit together; the message names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !self.peers.contains_key(&self.id) {
            return Err(format!(
                "--peers must include this node's own id {}",
                self.id
            ));
        }
        if self.peers.contains_key(&0) {
            return Err("node ids start at 1".into());
        }
        if ![1, 3, 5].contains(&self.peers.len()) {
            return Err(format!(
                "a cluster has 1, 3 or 5 nodes, not {}",
                self.peers.len()
            ));
        }
        if self.shards == 0 || self.shards > 1024 {
            return Err("--shards must be between 1 and 1024".into());
        }
        if self.raft.heartbeat_ticks == 0 || self.raft.election_ticks <= self.raft.heartbeat_ticks {
            return Err("the election timeout must be longer than the heartbeat".into());
        }
        Ok(())
    }
}
