//! The nemesis: a fault schedule drawn from the seed before the run (same
//! seed, nodes, duration and fault list → same schedule), then carried out
//! one fault at a time, each healed before the next starts, so a majority
//! of every shard is always reachable outside the fault windows.
//!
//! A fault that names "the leader of shard s" is resolved when it starts
//! (leaders move), so the schedule is deterministic but the node it hits
//! may differ between two runs of one seed; the history records the node.

use super::cluster::{status_at, Cluster, ADMIN_TIMEOUT};
use super::recorder::Recorder;
use holdfast_chaos::history::FaultPhase;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Quiet time before the first fault, ms (leaders settle, stock lands).
const WARMUP_MS: u64 = 2_000;
/// Quiet time after the last fault's end before the run ends, ms.
const COOLDOWN_MS: u64 = 2_000;
/// How long a fault lasts, ms.
const HOLD_MS: std::ops::Range<u64> = 1_000..4_000;
/// Quiet time between two faults, ms.
const GAP_MS: std::ops::Range<u64> = 1_000..3_000;
/// Longest wait for a wiped node to catch up before the wipe counts as
/// healed anyway (the run goes on; the checker judges what follows).
const CATCH_UP_MAX: Duration = Duration::from_secs(30);
/// How often a wiped node's progress is polled.
const CATCH_UP_POLL: Duration = Duration::from_millis(100);

/// The kinds of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// `kill -9`, restarted after the hold.
    Kill,
    /// SIGSTOP, SIGCONT after the hold.
    Pause,
    /// Links cut with `Admin.SetPartition` on both sides, healed after.
    Partition,
    /// SIGTERM (clean stop), started again after the hold.
    Restart,
    /// `kill -9`, data directory removed, started empty after the hold.
    Wipe,
}

impl FaultKind {
    fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Restart => "restart",
            FaultKind::Wipe => "wipe",
        }
    }
}

/// Whom a fault hits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Node `i` (0-based).
    Node(usize),
    /// Whichever node leads shard `s` when the fault starts.
    LeaderOf(u32),
    /// These nodes (0-based) cut off from all others.
    Minority(Vec<usize>),
    /// Two sides that cannot reach each other and one node reaching both.
    Bridge {
        left: Vec<usize>,
        bridge: usize,
        right: Vec<usize>,
    },
}

/// One planned fault.
#[derive(Clone, Debug, Serialize)]
pub struct Planned {
    pub at_ms: u64,
    pub kind: FaultKind,
    pub target: Target,
    pub hold_ms: u64,
}

/// Draws the schedule.
pub fn plan(
    seed: u64,
    nodes: usize,
    shards: u32,
    duration_ms: u64,
    kinds: &[FaultKind],
) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    let mut t = WARMUP_MS;
    let minority_max = (nodes - 1) / 2;
    while !kinds.is_empty() {
        let hold_ms = rng.u64(HOLD_MS);
        if t + hold_ms + COOLDOWN_MS > duration_ms {
            break;
        }
        let kind = kinds[rng.usize(..kinds.len())];
        let target = match kind {
            FaultKind::Partition => match rng.u32(..3) {
                0 => Target::LeaderOf(rng.u32(..shards)),
                1 if nodes >= 3 => {
                    let mut order: Vec<usize> = (0..nodes).collect();
                    rng.shuffle(&mut order);
                    let bridge = order[0];
                    let rest = &order[1..];
                    let half = rest.len() / 2;
                    Target::Bridge {
                        left: rest[..half].to_vec(),
                        bridge,
                        right: rest[half..].to_vec(),
                    }
                }
                _ => {
                    let mut order: Vec<usize> = (0..nodes).collect();
                    rng.shuffle(&mut order);
                    let size = rng.usize(1..=minority_max.max(1));
                    Target::Minority(order[..size].to_vec())
                }
            },
            _ if rng.bool() => Target::LeaderOf(rng.u32(..shards)),
            _ => Target::Node(rng.usize(..nodes)),
        };
        out.push(Planned {
            at_ms: t,
            kind,
            target,
            hold_ms,
        });
        t += hold_ms + rng.u64(GAP_MS);
    }
    out
}

fn ids(nodes: &[usize]) -> Vec<u64> {
    nodes.iter().map(|&i| i as u64 + 1).collect()
}

fn names(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|i| format!("n{}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// The leader of `shard` as the live nodes report it (highest term).
async fn leader_of(cluster: &Cluster, shard: u32) -> Option<usize> {
    let mut best: Option<(u64, u64)> = None;
    for i in 0..cluster.len() {
        if let Some(s) = cluster.status(i).await {
            if let Some(info) = s.shards.iter().find(|s| s.shard == shard) {
                if info.leader != 0 && best.is_none_or(|(t, _)| info.term > t) {
                    best = Some((info.term, info.leader));
                }
            }
        }
    }
    best.map(|(_, l)| l as usize - 1)
}

/// Carries out the schedule, its times counted from `start` (when the
/// workload starts, after set-up), until `end`; every fault it starts it
/// heals.
pub async fn run(
    cluster: Arc<Mutex<Cluster>>,
    recorder: Arc<Recorder>,
    schedule: Vec<Planned>,
    start: Instant,
    end: Instant,
) -> u64 {
    let mut injected = 0;
    for planned in schedule {
        let at = start + Duration::from_millis(planned.at_ms);
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let node = match &planned.target {
            Target::Node(i) => Some(*i),
            Target::LeaderOf(s) => leader_of(&*cluster.lock().await, *s).await,
            _ => None,
        };
        let heal = inject(&cluster, &recorder, &planned, node).await;
        injected += 1;
        let until = (Instant::now() + Duration::from_millis(planned.hold_ms)).min(end);
        tokio::time::sleep_until(until.into()).await;
        heal_one(&cluster, &recorder, heal).await;
    }
    injected
}

/// What to undo.
enum Heal {
    Start(usize, &'static str),
    Resume(usize),
    Partition(Vec<usize>, String),
}

async fn inject(
    cluster: &Mutex<Cluster>,
    recorder: &Recorder,
    planned: &Planned,
    node: Option<usize>,
) -> Heal {
    let mut c = cluster.lock().await;
    let kind = planned.kind.name();
    let (cut, target): (Vec<(usize, Vec<usize>)>, String) = match (&planned.target, node) {
        (
            Target::Bridge {
                left,
                bridge,
                right,
            },
            _,
        ) => {
            let mut cut: Vec<(usize, Vec<usize>)> =
                left.iter().map(|&l| (l, right.clone())).collect();
            cut.extend(right.iter().map(|&r| (r, left.clone())));
            (
                cut,
                format!("{}|n{}|{}", names(left), bridge + 1, names(right)),
            )
        }
        (Target::Minority(minority), _) => minority_cut(c.len(), minority),
        (_, Some(i)) if planned.kind == FaultKind::Partition => minority_cut(c.len(), &[i]),
        (_, Some(_)) => (Vec::new(), String::new()),
        (_, None) => minority_cut(c.len(), &[0]),
    };
    match (planned.kind, node) {
        (FaultKind::Partition, _) => {
            recorder.fault(kind, &target, FaultPhase::Start);
            for (i, blocked) in &cut {
                if let Err(e) = c.set_partition(*i, &ids(blocked)).await {
                    eprintln!("holdfast-chaos: partition: {e}");
                }
            }
            Heal::Partition(cut.iter().map(|(i, _)| *i).collect(), target)
        }
        (_, None) => {
            // No leader known: hit node 1 instead.
            inject_node(&mut c, recorder, planned.kind, 0)
        }
        (k, Some(i)) => inject_node(&mut c, recorder, k, i),
    }
}

fn minority_cut(n: usize, minority: &[usize]) -> (Vec<(usize, Vec<usize>)>, String) {
    let majority: Vec<usize> = (0..n).filter(|i| !minority.contains(i)).collect();
    let mut cut: Vec<(usize, Vec<usize>)> =
        minority.iter().map(|&m| (m, majority.clone())).collect();
    cut.extend(majority.iter().map(|&m| (m, minority.to_vec())));
    (cut, format!("{}|{}", names(minority), names(&majority)))
}

fn inject_node(c: &mut Cluster, recorder: &Recorder, kind: FaultKind, i: usize) -> Heal {
    let target = format!("n{}", i + 1);
    recorder.fault(kind.name(), &target, FaultPhase::Start);
    match kind {
        FaultKind::Kill => {
            c.kill(i);
            Heal::Start(i, "kill")
        }
        FaultKind::Restart => {
            c.stop(i);
            Heal::Start(i, "restart")
        }
        FaultKind::Wipe => {
            c.kill(i);
            if let Err(e) = c.wipe(i) {
                eprintln!("holdfast-chaos: wipe n{}: {e}", i + 1);
            }
            Heal::Start(i, "wipe")
        }
        FaultKind::Pause => {
            c.pause(i);
            Heal::Resume(i)
        }
        FaultKind::Partition => unreachable!("partitions are cut above"),
    }
}

async fn heal_one(cluster: &Mutex<Cluster>, recorder: &Recorder, heal: Heal) {
    let mut c = cluster.lock().await;
    match heal {
        Heal::Start(i, kind) => {
            if let Err(e) = c.spawn(i) {
                eprintln!("holdfast-chaos: restart n{}: {e}", i + 1);
            }
            if kind == "wipe" {
                // A wiped node is one replica short until it has caught up:
                // the next fault (another wipe) must not find two.
                let ports = c.ports.clone();
                drop(c);
                if !catch_up(&ports, i).await {
                    eprintln!(
                        "holdfast-chaos: wiped n{} did not catch up within {CATCH_UP_MAX:?}",
                        i + 1
                    );
                }
            }
            recorder.fault(kind, &format!("n{}", i + 1), FaultPhase::End);
        }
        Heal::Resume(i) => {
            c.resume(i);
            recorder.fault("pause", &format!("n{}", i + 1), FaultPhase::End);
        }
        Heal::Partition(nodes, target) => {
            for i in nodes {
                if let Err(e) = c.set_partition(i, &[]).await {
                    eprintln!("holdfast-chaos: heal partition: {e}");
                }
            }
            recorder.fault("partition", &target, FaultPhase::End);
        }
    }
}

/// Per shard, the highest commit index any node but `skip` reports (nodes
/// that do not answer count for nothing).
async fn committed_elsewhere(ports: &[u16], skip: usize) -> Vec<u64> {
    let mut commits: Vec<u64> = Vec::new();
    for (j, &port) in ports.iter().enumerate() {
        if j == skip {
            continue;
        }
        if let Some(status) = status_at(port, ADMIN_TIMEOUT).await {
            for s in status.shards {
                let k = s.shard as usize;
                if commits.len() <= k {
                    commits.resize(k + 1, 0);
                }
                commits[k] = commits[k].max(s.commit);
            }
        }
    }
    commits
}

/// Whether a node that reports `applied` (per shard) holds everything in
/// `committed` (per shard).
fn holds_all(applied: &[u64], committed: &[u64]) -> bool {
    committed
        .iter()
        .enumerate()
        .all(|(k, &c)| applied.get(k).is_some_and(|&a| a >= c))
}

/// Waits (at most `CATCH_UP_MAX`) until node `i` has applied, on every
/// shard, everything the other nodes had committed when it came back: the
/// wipe is healed only once the lost replica is rebuilt. Without this a
/// wipe of a second node could follow before the first has its data back,
/// and two wipes in a row leave one copy of the data (a 3-minute run,
/// `mixed`, seed 32, wiped all three nodes within 7 s and lost everything).
async fn catch_up(ports: &[u16], i: usize) -> bool {
    let until = Instant::now() + CATCH_UP_MAX;
    let committed = committed_elsewhere(ports, i).await;
    while Instant::now() < until {
        if let Some(status) = status_at(ports[i], ADMIN_TIMEOUT).await {
            let applied: Vec<u64> = status.shards.iter().map(|s| s.applied).collect();
            if holds_all(&applied, &committed) {
                return true;
            }
        }
        tokio::time::sleep(CATCH_UP_POLL).await; // polling interval
    }
    false
}

/// Undoes everything: every node running and resumed, every link healed
/// (retried until every node takes it or `until`).
pub async fn heal_all(cluster: &Mutex<Cluster>, until: Instant) -> bool {
    let mut c = cluster.lock().await;
    for i in 0..c.len() {
        c.resume(i);
        if !c.is_up(i) {
            if let Err(e) = c.spawn(i) {
                eprintln!("holdfast-chaos: restart n{}: {e}", i + 1);
            }
        }
    }
    let mut healed = vec![false; c.len()];
    while Instant::now() < until {
        for (i, done) in healed.iter_mut().enumerate() {
            if !*done {
                *done = c.set_partition(i, &[]).await.is_ok();
            }
        }
        if healed.iter().all(|&d| d) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // retry interval
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wiped_node_is_healed_only_when_it_holds_every_commit() {
        assert!(holds_all(&[10, 20], &[10, 19]));
        assert!(!holds_all(&[10, 20], &[11, 19]), "shard 0 behind");
        assert!(!holds_all(&[10], &[10, 5]), "shard 1 not reported");
        assert!(holds_all(&[3, 4], &[]), "nobody else answered");
    }

    #[test]
    fn the_schedule_follows_the_seed() {
        let kinds = [FaultKind::Kill, FaultKind::Wipe, FaultKind::Partition];
        let a = serde_json::to_string(&plan(32, 3, 4, 180_000, &kinds)).unwrap();
        let b = serde_json::to_string(&plan(32, 3, 4, 180_000, &kinds)).unwrap();
        assert_eq!(a, b);
        let c = serde_json::to_string(&plan(33, 3, 4, 180_000, &kinds)).unwrap();
        assert_ne!(a, c);
    }
}
