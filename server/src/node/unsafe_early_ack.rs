//! UNSAFE, chaos tests only (`--unsafe-chaos-bug=ack-before-commit`): a
//! deliberately broken build whose shard leaders acknowledge a write as
//! soon as its entry is in their *own* log (appended and fsynced locally),
//! before a quorum has it. That breaks design §1.4 (a reply of success
//! means the change is committed on a quorum): a leader cut off or killed
//! right after answering takes the write with it, and the new leader never
//! saw it. It exists only so that a chaos run can prove the checker reports
//! such lost acknowledgements (`docs/reliability.md`). Nothing here runs
//! unless `NodeConfig::unsafe_ack_before_commit` is set.
//!
//! To answer before apply, the leader needs the answer apply *will* give.
//! A [`Speculation`] is a second copy of the shard's ledger that runs ahead
//! of the real one: built from the applied ledger (through a snapshot, so
//! it shares nothing with it) plus every entry in the log past the applied
//! index, then fed each entry this leader proposes, with the same stamp
//! (index and time) the real apply will use. While the leader keeps its
//! term and its entries commit, the prediction is exactly the later
//! outcome; when an entry is lost or the term changes, the speculation is
//! dropped and rebuilt at the next proposal. Replies sent early stay sent:
//! that is the bug.

use super::messages::AppliedDetail;
use super::shard::{detail_of, Shard};
use crate::log_codec;
use holdfast_engine::{Command, Engine, EngineConfig, Outcome, Stamp};
use raft::eraftpb::EntryType;
use raft::GetEntriesContext;
use tracing::warn;

/// The shard's ledger as it will be once every entry up to (not
/// including) `next_index` is applied, for a leader of `term`.
pub struct Speculation {
    engine: Engine,
    term: u64,
    next_index: u64,
}

impl Speculation {
    /// The applied ledger of `shard` carried forward through every entry of
    /// its log below `index`; `None` if the log cannot be read or decoded
    /// (the proposal is then answered the safe way, after apply).
    fn build(shard: &Shard, config: EngineConfig, term: u64, index: u64) -> Option<Speculation> {
        let mut engine = Engine::restore(config, &shard.engine.snapshot()).ok()?;
        let log = &shard.raw.raft.raft_log;
        let entries = log
            .entries(shard.applied + 1, None, GetEntriesContext::empty(false))
            .ok()?;
        let mut events = Vec::new();
        for entry in entries.iter().filter(|e| e.index < index) {
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            let batch = log_codec::decode(&entry.data).ok()?;
            let stamp = Stamp {
                index: entry.index,
                now_ms: batch.stamp_ms,
            };
            for cmd in &batch.commands {
                events.clear();
                // A refusal changes nothing; only the state matters here.
                let _ = engine.apply(stamp, cmd, &mut events);
            }
        }
        Some(Speculation {
            engine,
            term,
            next_index: index,
        })
    }
}

impl Shard {
    /// UNSAFE: predicts the outcomes of `commands`, just proposed by this
    /// leader of `term` as the entry at `index` stamped `stamp_ms`, so they
    /// can be sent before the entry commits. Rebuilds the speculation when
    /// the term or the index is not the one it expects.
    pub fn speculate(
        &mut self,
        config: EngineConfig,
        term: u64,
        index: u64,
        stamp_ms: u64,
        commands: &[Command],
    ) -> Option<Vec<(Outcome, AppliedDetail)>> {
        let current = self
            .speculation
            .as_ref()
            .is_some_and(|s| s.term == term && s.next_index == index);
        if !current {
            self.speculation = Speculation::build(self, config, term, index);
            if self.speculation.is_none() {
                warn!(
                    shard = self.id,
                    index, "cannot speculate; answering after apply"
                );
            }
        }
        let speculation = self.speculation.as_mut()?;
        let stamp = Stamp {
            index,
            now_ms: stamp_ms,
        };
        let mut events = Vec::new();
        let outcomes = commands
            .iter()
            .map(|cmd| {
                events.clear();
                let outcome = speculation.engine.apply(stamp, cmd, &mut events);
                let detail = detail_of(&speculation.engine, index, cmd, &outcome);
                (outcome, detail)
            })
            .collect();
        speculation.next_index = index + 1;
        Some(outcomes)
    }

    /// UNSAFE: sends the predicted outcomes of every pending entry up to
    /// `persisted` (this node's own log has them; no quorum need). Their
    /// waiters are used up, so the answer after apply finds none, and an
    /// entry later lost to a leader change has no one left to tell.
    pub fn ack_persisted_early(&mut self, persisted: u64) {
        for (_, entry) in self.pending.range_mut(..=persisted) {
            let Some(early) = entry.early.take() else {
                continue;
            };
            if super::waiters::covered(&entry.waiters) == early.len() {
                super::waiters::send_applied(&mut entry.waiters, early);
            }
        }
    }
}
