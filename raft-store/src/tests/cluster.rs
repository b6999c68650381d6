//! Three raft-rs `RawNode`s over `ShardStorage` in one process, with an
//! in-memory message queue that can cut a node off: the store driven the
//! way the server's driver loop drives it (Reference: raft-rs
//! examples/five_mem_node for the Ready handling order).

use std::collections::{BTreeSet, VecDeque};

use raft::eraftpb::{Entry, EntryType, Message, Snapshot, SnapshotMetadata};
use raft::{Config, RawNode, Storage};
use tempfile::TempDir;

use super::*;

/// Shard id the test cluster runs as.
const SHARD: u32 = 11;

/// A toy engine: the list of applied command payloads. Its snapshot is the
/// payloads joined by newlines.
#[derive(Default, Debug, Clone, PartialEq)]
struct Engine {
    applied: u64,
    commands: Vec<Vec<u8>>,
}

impl Engine {
    fn apply(&mut self, e: &Entry) {
        assert_eq!(
            e.index,
            self.applied + 1,
            "entries applied in order, no gaps"
        );
        self.applied = e.index;
        if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
            self.commands.push(e.data.to_vec());
        }
    }

    fn snapshot_data(&self) -> Vec<u8> {
        self.commands.join(&b'\n')
    }

    fn restore(index: u64, data: &[u8]) -> Engine {
        let commands = if data.is_empty() {
            Vec::new()
        } else {
            data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
        };
        Engine {
            applied: index,
            commands,
        }
    }
}

struct Node {
    id: u64,
    dir: TempDir,
    db: RaftDb,
    storage: ShardStorage,
    raw: RawNode<ShardStorage>,
    engine: Engine,
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

fn config(id: u64, applied: u64) -> Config {
    Config {
        id,
        election_tick: 10,
        heartbeat_tick: 2,
        applied,
        ..Default::default()
    }
}

impl Node {
    /// A fresh node bootstrapped with voters 1, 2, 3 (the same on every node).
    fn bootstrap(id: u64) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let db = RaftDb::open(dir.path(), marker(id)).unwrap();
        let storage = db.shard(SHARD).unwrap();
        write_with(&db, |b| {
            storage.stage_conf_state(b, &voters(&[1, 2, 3])).unwrap()
        });
        let raw = RawNode::new(&config(id, 0), storage.clone(), &logger()).unwrap();
        Node {
            id,
            dir,
            db,
            storage,
            raw,
            engine: Engine::default(),
        }
    }

    /// Restart recovery as the server does it: engine from the latest
    /// snapshot, replay up to the applied index, RawNode at that index.
    fn restart(self) -> Node {
        let Node {
            id,
            dir,
            db,
            storage,
            raw,
            ..
        } = self;
        // Everything holding the database must go before it is reopened
        // (RocksDB's LOCK), as in a process restart.
        drop((raw, storage, db));
        let db = RaftDb::open(dir.path(), marker(id)).unwrap();
        let storage = db.shard(SHARD).unwrap();
        let applied = storage.applied_index().unwrap();
        let mut engine = match storage.latest_snapshot().unwrap() {
            Some(s) => Engine::restore(s.get_metadata().index, &s.data),
            None => Engine::default(),
        };
        while engine.applied < applied {
            let batch = storage
                .read_entries(
                    engine.applied + 1,
                    applied + 1,
                    Some(crate::REPLAY_READ_BYTES_MAX),
                )
                .unwrap();
            batch.iter().for_each(|e| engine.apply(e));
        }
        let raw = RawNode::new(&config(id, applied), storage.clone(), &logger()).unwrap();
        Node {
            id,
            dir,
            db,
            storage,
            raw,
            engine,
        }
    }

    fn apply_committed(&mut self, batch: &mut LogBatch, committed: Vec<Entry>) {
        let Some(last) = committed.last().map(|e| e.index) else {
            return;
        };
        committed.iter().for_each(|e| self.engine.apply(e));
        self.storage.stage_applied_index(batch, last).unwrap();
    }

    /// One driver iteration for this node: persist the Ready in one synced
    /// batch, then send what may be sent, then advance.
    fn handle_ready(&mut self, outbox: &mut VecDeque<Message>) {
        if !self.raw.has_ready() {
            return;
        }
        let mut rd = self.raw.ready();
        outbox.extend(rd.take_messages());
        let mut batch = LogBatch::new();
        if !rd.snapshot().is_empty() {
            self.storage
                .apply_snapshot(&mut batch, rd.snapshot())
                .unwrap();
            let snap: &Snapshot = rd.snapshot();
            self.engine = Engine::restore(snap.get_metadata().index, &snap.data);
        }
        self.storage.stage_append(&mut batch, rd.entries()).unwrap();
        if let Some(hs) = rd.hs() {
            self.storage.stage_hard_state(&mut batch, hs).unwrap();
        }
        self.apply_committed(&mut batch, rd.take_committed_entries());
        self.db.write(batch, true).unwrap();
        outbox.extend(rd.take_persisted_messages());

        let mut light = self.raw.advance(rd);
        let mut batch = LogBatch::new();
        if let Some(commit) = light.commit_index() {
            let mut hs = self.storage.hard_state().unwrap();
            hs.commit = commit;
            self.storage.stage_hard_state(&mut batch, &hs).unwrap();
        }
        outbox.extend(light.take_messages());
        self.apply_committed(&mut batch, light.take_committed_entries());
        self.db.write(batch, true).unwrap();
        self.raw.advance_apply();
    }

    /// Takes a snapshot of the engine and compacts the log up to it.
    fn snapshot_and_compact(&mut self) {
        let index = self.engine.applied;
        let mut meta = SnapshotMetadata {
            index,
            term: self.storage.term(index).unwrap(),
            ..Default::default()
        };
        meta.set_conf_state(self.storage.conf_state().unwrap());
        self.storage
            .save_snapshot(meta, &self.engine.snapshot_data())
            .unwrap();
        write_with(&self.db, |b| self.storage.compact(b, index + 1).unwrap());
    }
}

struct Cluster {
    nodes: Vec<Node>,
    isolated: BTreeSet<u64>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            nodes: (1..=3).map(Node::bootstrap).collect(),
            isolated: BTreeSet::new(),
        }
    }

    fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Runs ready handling and message delivery until nothing moves.
    fn settle(&mut self) {
        let mut outbox = VecDeque::new();
        for _ in 0..10_000 {
            for n in &mut self.nodes {
                n.handle_ready(&mut outbox);
            }
            if outbox.is_empty() {
                return;
            }
            while let Some(m) = outbox.pop_front() {
                if self.isolated.contains(&m.from) || self.isolated.contains(&m.to) {
                    continue;
                }
                self.node(m.to).raw.step(m).unwrap();
            }
        }
        panic!("cluster did not settle");
    }

    fn tick(&mut self, times: usize) {
        for _ in 0..times {
            for n in &mut self.nodes {
                if !self.isolated.contains(&n.id) {
                    n.raw.tick();
                }
            }
            self.settle();
        }
    }

    fn elect(&mut self, id: u64) {
        self.node(id).raw.campaign().unwrap();
        self.settle();
        assert_eq!(self.node(id).raw.raft.state, raft::StateRole::Leader);
    }

    fn propose(&mut self, leader: u64, range: std::ops::Range<u64>) {
        for chunk in range.collect::<Vec<_>>().chunks(10) {
            for i in chunk {
                let data = format!("cmd-{i}").into_bytes();
                self.node(leader).raw.propose(vec![], data).unwrap();
            }
            self.settle();
        }
    }
}

fn commands(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(|i| format!("cmd-{i}").into_bytes()).collect()
}

/// End to end: elect a leader, propose 100 entries; all three nodes commit,
/// apply and persist the same log; a restarted node reloads it from disk.
#[test]
fn three_raw_nodes_replicate_and_persist() {
    let mut c = Cluster::new();
    c.elect(1);
    c.propose(1, 0..100);
    let leader_log = all_entries(&c.node(1).storage).unwrap();
    assert_eq!(
        leader_log.len(),
        101,
        "an empty entry for the term, then 100 commands"
    );
    for n in &c.nodes {
        assert_eq!(n.engine.commands, commands(0..100), "node {}", n.id);
        assert_eq!(
            all_entries(&n.storage).unwrap(),
            leader_log,
            "node {}",
            n.id
        );
        assert_eq!(n.storage.hard_state().unwrap().commit, 101);
        assert_eq!(n.storage.applied_index().unwrap(), 101);
    }
    let n3 = c.nodes.pop().unwrap().restart();
    assert_eq!(all_entries(&n3.storage).unwrap(), leader_log);
    assert_eq!(n3.storage.initial_state().unwrap().hard_state.commit, 101);
    assert_eq!(n3.engine.commands, commands(0..100));
    c.nodes.push(n3);
    c.propose(1, 100..110);
    assert_eq!(c.node(3).engine.commands, commands(0..110));
}

/// A follower that fell behind a compacted log catches up through
/// `Storage::snapshot` and `apply_snapshot`, and recovers from that
/// snapshot plus its replayed log after a restart.
#[test]
fn lagging_follower_catches_up_by_snapshot() {
    let mut c = Cluster::new();
    c.elect(1);
    c.propose(1, 0..10);
    c.isolated.insert(3);
    c.propose(1, 10..60);
    c.node(1).snapshot_and_compact();
    c.node(2).snapshot_and_compact();
    assert_eq!(c.node(1).storage.first_index().unwrap(), 62);
    c.isolated.clear();
    c.tick(5);
    c.propose(1, 60..70);
    for n in &c.nodes {
        assert_eq!(n.engine.commands, commands(0..70), "node {}", n.id);
    }
    let n3 = c.node(3);
    assert_eq!(
        n3.storage
            .latest_snapshot_metadata()
            .unwrap()
            .unwrap()
            .index,
        61
    );
    assert_eq!(n3.storage.first_index().unwrap(), 62);
    let n3 = c.nodes.pop().unwrap().restart();
    assert_eq!(n3.engine.commands, commands(0..70));
}
