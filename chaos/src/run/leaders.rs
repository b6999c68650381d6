//! Who leads each shard during a run, for the timeline picture: every
//! `POLL_INTERVAL` the harness asks every node's `Admin.ClusterStatus` at
//! once and, per shard, takes the leader with the highest term any node
//! reports (an isolated old leader still believes in its lower term). A
//! line goes to `leaders.jsonl` only when a shard's (leader, term) changes,
//! stamped on the history's clock.
//!
//! It talks to the nodes directly (not through the cluster lock the
//! nemesis holds while it injects), with a short timeout, since a paused
//! node never answers.

use super::cluster::status_at;
use super::recorder::Recorder;
use holdfast_chaos::chart::LeaderSample;
use holdfast_chaos::jsonl::JsonlWriter;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// How often leaders are polled: finer than a fault's shortest hold (1 s)
/// and than a typical election, coarse enough to cost nothing.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Timeout of one status call while polling (a paused node never answers;
/// the next poll must not wait for it).
const POLL_TIMEOUT: Duration = Duration::from_millis(400);
/// Lines written at most (a 30-minute run with leaders flapping on every
/// poll of 8 shards stays below it); past it polling stops.
const SAMPLES_MAX: u64 = 100_000;

/// (leader, term) per shard from every node that answered: the highest
/// term reported, and the leader a node names in it (0 if none does, as
/// while the majority elects and only the isolated old leader still
/// believes in itself, in a lower term).
async fn poll(ports: &[u16]) -> BTreeMap<u32, (u64, u64)> {
    let mut calls = JoinSet::new();
    for &port in ports {
        calls.spawn(status_at(port, POLL_TIMEOUT));
    }
    let mut seen: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    while let Some(answer) = calls.join_next().await {
        let Ok(Some(status)) = answer else { continue };
        for s in status.shards {
            let best = seen.entry(s.shard).or_insert((0, 0));
            if s.term > best.1 || (s.term == best.1 && best.0 == 0) {
                *best = (s.leader, s.term);
            }
        }
    }
    seen
}

/// Polls until `stop` fires (or is dropped), writing changes to `path`.
/// Returns the number of lines written.
pub async fn watch(
    ports: Vec<u16>,
    recorder: Arc<Recorder>,
    path: &Path,
    mut stop: oneshot::Receiver<()>,
) -> std::io::Result<u64> {
    let mut out = JsonlWriter::new(BufWriter::new(File::create(path)?));
    let mut last: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut written = 0;
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while written < SAMPLES_MAX {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticks.tick() => {}
        }
        let seen = poll(&ports).await;
        let time_us = recorder.now_us();
        for (shard, (leader, term)) in seen {
            if last.get(&shard) == Some(&(leader, term)) {
                continue;
            }
            last.insert(shard, (leader, term));
            out.append(&LeaderSample {
                time_us,
                shard,
                leader,
                term,
            })?;
            written += 1;
        }
    }
    out.flush()?;
    Ok(written)
}
