//! In-process multi-node tests: 3 nodes, several shards, an in-memory
//! network that can cut links (raft-rs harness style). Each test names the
//! promise of design §1 it checks. Waiting is always "poll until a condition
//! holds, with a deadline": never a sleep standing in for synchronisation.

use holdfast_engine::{
    AdjustStock, Command, CommandKind, Outcome, Release, RequestId, Reserve, ReserveLine, Success,
    UpsertLocation,
};
use holdfast_server::config::NodeConfig;
use holdfast_server::node::local::LocalNetwork;
use holdfast_server::node::messages::{Inbound, ProposeResult, ShardStatus};
use holdfast_server::node::{Node, NodeHandle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::oneshot;

const DEADLINE: Duration = Duration::from_secs(20);

struct TestCluster {
    network: Arc<LocalNetwork>,
    nodes: BTreeMap<u64, Option<Node>>,
    dirs: BTreeMap<u64, PathBuf>,
    _root: TempDir,
    shards: u32,
    snapshot_every: u64,
    next_request: u128,
    /// UNSAFE `NodeConfig::unsafe_ack_before_commit` on every node.
    unsafe_ack_before_commit: bool,
}

impl TestCluster {
    fn new(n: u64, shards: u32, snapshot_every: u64) -> Self {
        Self::build(n, shards, snapshot_every, false)
    }

    fn build(n: u64, shards: u32, snapshot_every: u64, unsafe_ack_before_commit: bool) -> Self {
        let root = TempDir::new().expect("temp dir");
        let mut c = TestCluster {
            network: LocalNetwork::new(),
            nodes: BTreeMap::new(),
            dirs: (1..=n)
                .map(|id| (id, root.path().join(format!("node-{id}"))))
                .collect(),
            _root: root,
            shards,
            snapshot_every,
            next_request: 1,
            unsafe_ack_before_commit,
        };
        for id in 1..=n {
            c.start(id);
        }
        c
    }

    fn config(&self, id: u64) -> NodeConfig {
        let mut config = NodeConfig::single(id, format!("local-{id}"), self.dirs[&id].clone());
        config.peers = self
            .dirs
            .keys()
            .map(|&i| (i, format!("local-{i}")))
            .collect();
        config.shards = self.shards;
        config.raft.tick_ms = 10;
        config.snapshot_every_entries = self.snapshot_every;
        // Compact close behind each snapshot, so a node that missed more
        // than a few entries really needs the snapshot.
        config.snapshot_log_margin_entries = 10;
        config.unsafe_ack_before_commit = self.unsafe_ack_before_commit;
        config
    }

    fn start(&mut self, id: u64) {
        let node = Node::start(self.config(id), self.network.transport(id)).expect("node starts");
        self.network.attach(id, node.handle.clone());
        self.nodes.insert(id, Some(node));
    }

    /// Stops a node as a crash would look to its peers (its state on disk
    /// stays as the last completed write left it).
    fn stop(&mut self, id: u64) {
        self.network.detach(id);
        if let Some(node) = self.nodes.get_mut(&id).and_then(Option::take) {
            node.stop().expect("driver stops cleanly");
        }
    }

    fn wipe(&mut self, id: u64) {
        self.stop(id);
        std::fs::remove_dir_all(&self.dirs[&id]).expect("wipe data dir");
    }

    fn handle(&self, id: u64) -> NodeHandle {
        self.nodes[&id]
            .as_ref()
            .expect("node running")
            .handle
            .clone()
    }

    fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(&id, _)| id)
            .collect()
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
            std::thread::yield_now();
            std::thread::sleep(Duration::from_millis(5)); // polling interval, not synchronisation
        }
    }

    /// The leader of `shard` that every running node agrees on.
    fn leader(&self, shard: u32) -> u64 {
        self.wait_for("an agreed leader", |c| {
            let running = c.running();
            let leaders: Vec<u64> = running
                .iter()
                .map(|&id| c.status(id, false)[shard as usize].leader)
                .collect();
            let first = leaders[0];
            (first != 0 && running.contains(&first) && leaders.iter().all(|&l| l == first))
                .then_some(first)
        })
    }

    fn propose_on(&self, id: u64, shard: u32, command: Command) -> ProposeResult {
        let (tx, rx) = oneshot::channel();
        self.handle(id)
            .submit(Inbound::Propose {
                shard,
                command,
                reply: tx,
            })
            .expect("submit");
        await_reply(rx)
    }

    /// The leader of shard 0 the two nodes other than `old` (of three)
    /// elect while `old` is cut off.
    fn leader_elected_without(&self, old: u64) -> u64 {
        let others: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
        self.wait_for("a new leader", |c| {
            let s = c.status(others[0], false)[0].leader;
            (s != 0 && s != old && c.status(others[1], false)[0].leader == s).then_some(s)
        })
    }

    /// Proposes `command` on shard 0 of node `id`, which must answer success.
    fn assert_applied_ok(&self, id: u64, command: Command) {
        match self.propose_on(id, 0, command) {
            ProposeResult::Applied { outcome, .. } => assert!(outcome.is_ok(), "{outcome:?}"),
            r => panic!("{r:?}"),
        }
    }

    /// Proposes through the current leader, retrying with the same request
    /// id across leader changes, until applied.
    fn apply(&self, shard: u32, command: Command) -> Outcome {
        self.wait_for("the command to apply", |c| {
            let leader = c.leader(shard);
            match c.propose_on(leader, shard, command.clone()) {
                ProposeResult::Applied { outcome, .. } => Some(outcome),
                ProposeResult::NotLeader { .. } | ProposeResult::Aborted { .. } => None,
            }
        })
    }

    fn request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn setup_stock(&mut self, sku: &str, units: i64) {
        for shard in 0..self.shards {
            let id = self.request();
            let upsert = Command {
                request_id: id,
                kind: CommandKind::UpsertLocation(UpsertLocation {
                    location: "berlin".into(),
                    region: "eu".into(),
                    priority: 1,
                }),
            };
            assert!(self.apply(shard, upsert).is_ok());
        }
        let shard = holdfast_engine::shard_of(sku, self.shards);
        let adjust = Command {
            request_id: self.request(),
            kind: CommandKind::AdjustStock(AdjustStock {
                sku: sku.into(),
                location: "berlin".into(),
                delta: units,
                expected_on_hand: None,
            }),
        };
        assert!(self.apply(shard, adjust).is_ok());
    }

    fn reserve_cmd(&mut self, sku: &str) -> Command {
        Command {
            request_id: self.request(),
            kind: CommandKind::Reserve(Reserve {
                owner: "cart".into(),
                customer: "cust".into(),
                region: None,
                lines: vec![ReserveLine {
                    sku: sku.into(),
                    quantity: 1,
                    location: Some("berlin".into()),
                }],
                ttl_ms: 600_000,
                policy: Default::default(),
                allow_split: false,
            }),
        }
    }

    /// Waits until every running replica applied the same index of every
    /// shard, then returns their digests per shard (design §1.5).
    fn converged_digests(&self) -> Vec<u128> {
        self.wait_for("replicas to converge", |c| {
            let statuses: Vec<Vec<ShardStatus>> =
                c.running().iter().map(|&id| c.status(id, true)).collect();
            let mut digests = Vec::new();
            for shard in 0..c.shards as usize {
                let first = &statuses[0][shard];
                let same = statuses
                    .iter()
                    .all(|s| s[shard].applied == first.applied && s[shard].digest == first.digest);
                if !same || first.applied == 0 {
                    return None;
                }
                digests.push(first.digest.expect("asked for digests"));
            }
            Some(digests)
        })
    }

    fn held(&self, id: u64, shard: u32, sku: &str) -> i64 {
        let (tx, rx) = oneshot::channel();
        self.handle(id)
            .submit(Inbound::Read {
                shard,
                query: holdfast_server::node::messages::ReadQuery::Rows(vec![(
                    sku.into(),
                    Some("berlin".into()),
                )]),
                linearizable: false,
                reply: tx,
            })
            .expect("submit");
        match await_reply(rx) {
            holdfast_server::node::messages::ReadResult::Rows { rows, .. } => {
                rows[0].availability.held
            }
            other => panic!("read failed: {other:?}"),
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

impl Drop for TestCluster {
    fn drop(&mut self) {
        for id in self.running() {
            self.stop(id);
        }
    }
}

#[test]
fn replicas_apply_the_same_log() {
    let mut c = TestCluster::new(3, 4, 1_000);
    c.setup_stock("A", 1_000);
    let shard = holdfast_engine::shard_of("A", 4);
    for _ in 0..50 {
        let cmd = c.reserve_cmd("A");
        assert!(matches!(c.apply(shard, cmd), Ok(Success::Reserved { .. })));
    }
    c.converged_digests();
    for id in 1..=3 {
        assert_eq!(
            c.held(id, shard, "A"),
            50,
            "node {id} applied every reserve once (design §1.3)"
        );
    }
}

#[test]
fn a_follower_refuses_to_propose_and_names_the_leader() {
    let mut c = TestCluster::new(3, 2, 1_000);
    c.setup_stock("A", 10);
    let shard = holdfast_engine::shard_of("A", 2);
    let leader = c.leader(shard);
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let cmd = c.reserve_cmd("A");
    match c.propose_on(follower, shard, cmd) {
        ProposeResult::NotLeader { leader: hint } => assert_eq!(hint, Some(leader)),
        other => panic!("expected NotLeader, got {other:?}"),
    }
}

#[test]
fn killing_the_leader_elects_another_and_nothing_acknowledged_is_lost() {
    let mut c = TestCluster::new(3, 2, 1_000);
    c.setup_stock("A", 100);
    let shard = holdfast_engine::shard_of("A", 2);
    for _ in 0..10 {
        let cmd = c.reserve_cmd("A");
        c.apply(shard, cmd).expect("reserved");
    }
    let old = c.leader(shard);
    c.stop(old);
    let new = c.leader(shard);
    assert_ne!(new, old);
    let cmd = c.reserve_cmd("A");
    c.apply(shard, cmd).expect("reserved on the new leader");
    assert_eq!(
        c.held(new, shard, "A"),
        11,
        "design §1.4: the 10 acknowledged holds survived"
    );
    c.start(old);
    c.converged_digests();
    assert_eq!(c.held(old, shard, "A"), 11, "the restarted node caught up");
}

#[test]
fn a_proposal_lost_to_a_leader_change_fails_and_its_retry_applies_once() {
    let mut c = TestCluster::new(3, 1, 1_000);
    c.setup_stock("A", 100);
    let old = c.leader(0);
    // Cut the leader off, then give it a proposal it cannot commit.
    c.network.isolate(old, &[1, 2, 3]);
    let cmd = c.reserve_cmd("A");
    let (tx, rx) = oneshot::channel();
    c.handle(old)
        .submit(Inbound::Propose {
            shard: 0,
            command: cmd.clone(),
            reply: tx,
        })
        .unwrap();
    // The others elect a new leader among themselves.
    let new = c.leader_elected_without(old);
    // Something commits under the new term, then the old leader rejoins and
    // must drop its uncommitted entry: the proposal fails, never hangs.
    let other = c.reserve_cmd("A");
    c.assert_applied_ok(new, other);
    c.network.heal();
    match await_reply(rx) {
        ProposeResult::Aborted { .. } => {}
        ProposeResult::Applied { .. } => panic!("an isolated leader's entry cannot have committed"),
        r => panic!("unexpected {r:?}"),
    }
    // Retrying with the same request id applies it exactly once (§1.3).
    let first = c.apply(0, cmd.clone());
    let again = c.apply(0, cmd);
    assert_eq!(first, again);
    c.converged_digests();
    assert_eq!(c.held(new, 0, "A"), 2);
}

/// The deliberately broken build (`--unsafe-chaos-bug=ack-before-commit`)
/// breaks design §1.4 the way it claims to: an isolated leader acknowledges
/// a hold it can never commit, and the cluster forgets it. The chaos
/// checker must report this as a lost acknowledgement (docs/reliability.md).
#[test]
fn unsafe_ack_before_commit_acknowledges_what_a_leader_change_then_loses() {
    let mut c = TestCluster::build(3, 1, 1_000, true);
    c.setup_stock("A", 100);
    let old = c.leader(0);
    c.network.isolate(old, &[1, 2, 3]);
    let lost = c.reserve_cmd("A");
    match c.propose_on(old, 0, lost) {
        ProposeResult::Applied { outcome, .. } => assert!(outcome.is_ok(), "{outcome:?}"),
        r => panic!("the broken build answers at once, not {r:?}"),
    }
    let new = c.leader_elected_without(old);
    let other = c.reserve_cmd("A");
    c.assert_applied_ok(new, other);
    c.network.heal();
    c.converged_digests();
    // Only the hold the new leader committed is there: the acknowledged
    // one is gone from every replica.
    for id in 1..=3 {
        assert_eq!(c.held(id, 0, "A"), 1, "node {id}");
    }
    assert_ne!(new, old);
}

#[test]
fn a_wiped_node_catches_up_by_snapshot_after_compaction() {
    let mut c = TestCluster::new(3, 1, 50);
    c.setup_stock("A", 10_000);
    for _ in 0..200 {
        let cmd = c.reserve_cmd("A");
        c.apply(0, cmd).expect("reserved");
    }
    let leader = c.leader(0);
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    c.wipe(victim);
    // More writes while it is gone, so its peers compact past its log.
    for _ in 0..100 {
        let cmd = c.reserve_cmd("A");
        c.apply(0, cmd).expect("reserved");
    }
    c.start(victim);
    let digests = c.converged_digests();
    assert_eq!(digests.len(), 1);
    assert_eq!(c.held(victim, 0, "A"), 300);
}

#[test]
fn a_restarted_node_rebuilds_its_ledger_from_snapshot_and_log() {
    let mut c = TestCluster::new(3, 1, 40);
    c.setup_stock("A", 1_000);
    let mut ids = Vec::new();
    for _ in 0..100 {
        let cmd = c.reserve_cmd("A");
        if let Ok(Success::Reserved { reservation }) = c.apply(0, cmd) {
            ids.push(reservation);
        }
    }
    for &reservation in &ids[..30] {
        let id = c.request();
        let release = Command {
            request_id: id,
            kind: CommandKind::Release(Release { reservation }),
        };
        c.apply(0, release).expect("released");
    }
    c.converged_digests();
    for id in 1..=3 {
        c.stop(id);
    }
    for id in 1..=3 {
        c.start(id);
    }
    c.converged_digests();
    for id in 1..=3 {
        assert_eq!(
            c.held(id, 0, "A"),
            70,
            "design §1.4: node {id} rebuilt the same ledger"
        );
    }
}

#[test]
fn leaders_spread_over_the_nodes_and_return_after_a_restart() {
    let mut c = TestCluster::new(3, 6, 1_000);
    let preferred = |shard: u32| (shard % 3) as u64 + 1;
    let balanced = |c: &TestCluster| {
        (0..6)
            .all(|shard| c.status(1, false)[shard as usize].leader == preferred(shard))
            .then_some(())
    };
    c.wait_for("leaders on their preferred nodes", balanced);
    c.stop(1);
    c.wait_for("shards 0 and 3 led elsewhere", |c| {
        let s = c.status(2, false);
        [0usize, 3]
            .iter()
            .all(|&sh| s[sh].leader != 0 && s[sh].leader != 1)
            .then_some(())
    });
    c.start(1);
    c.wait_for("leadership back on node 1", balanced);
}

/// Durability (design §1.4): every entry reaches disk with an fsync on every
/// node before it is acknowledged, and so does every new term or vote;
/// only commit-index moves are written without one. Read from the driver's
/// own counters: entries applied one at a time must each have cost an
/// fsynced write on each node, and the commit-index writes must not have.
#[test]
fn every_entry_and_vote_is_fsynced_and_commit_moves_are_not() {
    let mut c = TestCluster::new(3, 1, 1_000);
    c.setup_stock("A", 1_000);
    c.converged_digests();
    let before: BTreeMap<u64, _> = c
        .running()
        .iter()
        .map(|&id| (id, c.handle(id).routing.stats.read()))
        .collect();
    for (id, s) in &before {
        assert!(
            s.group_commits >= 1,
            "node {id}: the election's term and vote were fsynced"
        );
    }
    let entries = 30;
    for _ in 0..entries {
        let cmd = c.reserve_cmd("A");
        assert!(c.apply(0, cmd).is_ok());
    }
    c.converged_digests();
    for id in c.running() {
        let after = c.handle(id).routing.stats.read();
        let b = before[&id];
        assert!(
            after.group_commits - b.group_commits >= entries,
            "node {id}: {} fsynced writes for {entries} entries applied one by one",
            after.group_commits - b.group_commits
        );
        assert!(
            after.unsynced_writes > b.unsynced_writes,
            "node {id}: commit-index moves were written without an fsync"
        );
    }
}
