//! One shard on one node: its Raft group member, its ledger, the commands
//! waiting to be proposed, and the proposals waiting to be applied.
//!
//! A proposal is tracked by the `(term, index)` its entry got when proposed.
//! When the entry at that index is applied, the waiters are answered with
//! the outcomes if the applied entry has that term, and failed with
//! `Aborted` if it has another (the proposal was lost to a leader change;
//! a retry with the same request id is safe because the engine deduplicates).

use super::messages::{
    AllocationView, AppliedDetail, DumpReservation, DumpRow, ListQuery, Party, ReadQuery,
    ReadResult, RowRead, ShardDump,
};
use super::waiters::{self, Queue, Waiter};
use crate::event_codec::EncodedEvents;
use crate::log_codec;
use holdfast_engine::{
    Command, CommandKind, Engine, Outcome, Refusal, ReservationState, Stamp, Success,
};
use holdfast_raft_store::ShardStorage;
use raft::RawNode;
use std::collections::BTreeMap;
use std::time::Instant;
use tokio::sync::oneshot;

/// Most reservation slots one listing step scans: a bound on the time a
/// listing holds the driver loop (about a millisecond), whatever the
/// ledger's size.
pub const LIST_SCAN_SLOTS: u32 = 65_536;

/// An entry proposed by this node, waiting to be applied.
pub struct PendingEntry {
    /// Term the entry was proposed in.
    pub term: u64,
    /// The proposers of the entry's commands, in order, covering them all.
    pub waiters: Vec<Waiter>,
    /// UNSAFE (`--unsafe-chaos-bug=ack-before-commit` only, else `None`):
    /// the outcomes predicted at proposal, sent once the entry is in this
    /// node's log ([`crate::node::unsafe_early_ack`]).
    pub early: Option<Vec<(Outcome, AppliedDetail)>>,
}

/// A read waiting for its read index, then for apply to reach it.
pub struct PendingRead {
    /// What to read.
    pub query: ReadQuery,
    /// Where the answer goes.
    pub reply: oneshot::Sender<ReadResult>,
    /// The read index once Raft confirmed it.
    pub index: Option<u64>,
    /// Give up (answer `TimedOut`) after this.
    pub deadline: Instant,
}

/// A shard's state on this node.
pub struct Shard {
    /// Shard id.
    pub id: u32,
    /// The Raft group member.
    pub raw: RawNode<ShardStorage>,
    /// Durable storage of the group (shared with `raw`).
    pub storage: ShardStorage,
    /// The ledger.
    pub engine: Engine,
    /// Commands gathered this loop iteration, proposed as one entry.
    pub queued: Queue,
    /// Proposed entries by log index.
    pub pending: BTreeMap<u64, PendingEntry>,
    /// Reads by request context.
    pub reads: BTreeMap<u64, PendingRead>,
    /// Next read context number.
    pub next_read_ctx: u64,
    /// When this shard last asked Raft for a read index (`None`: reads
    /// arrived since that wait for the next ask). One ask serves every read
    /// registered before it: its context is the newest read's.
    pub read_index_asked: Option<Instant>,
    /// Index of the latest snapshot taken or installed.
    pub snapshot_index: u64,
    /// Raft index of the last applied entry (empty and membership entries
    /// included, unlike the engine's own applied index).
    pub applied: u64,
    /// Term of the entry at `applied` (of the snapshot, when `applied` is a
    /// snapshot's index). Equal to the current term once this node has
    /// applied the leader's first entry of its term: it then holds every
    /// entry the leader committed before (health's "caught up").
    pub applied_term: u64,
    /// When the leader last checked for due holds.
    pub last_expire_check: Instant,
    /// Term and vote of the hard state last written with an fsync. A
    /// hard-state change that leaves them alone (only the commit index
    /// moved) needs no fsync of its own: the commit index can be learned
    /// again from the leader after a crash.
    pub synced_term_vote: (u64, u64),
    /// UNSAFE (`--unsafe-chaos-bug=ack-before-commit` only, else `None`):
    /// the ledger as it will be once every entry this leader proposed is
    /// applied ([`crate::node::unsafe_early_ack`]).
    pub speculation: Option<super::unsafe_early_ack::Speculation>,
    /// The node that handed this shard's leadership here (its
    /// `MsgTimeoutNow`) and the driver tick it came at. Leader balance does
    /// not hand the shard back to it for a while: a node that hands off
    /// because it is leaving would refuse the transfer, and a refused
    /// transfer stalls proposals until it times out.
    pub handed_over_by: Option<(u64, u64)>,
}

impl Shard {
    /// Applies one committed normal entry's payload at `index`. When a
    /// caller on this node waits for the entry (it was proposed here in
    /// `term`), returns the outcomes with what the replies need, one per
    /// command; otherwise (followers, replay at restart, `term` `None`)
    /// returns nothing and skips reading reply details. A payload that does
    /// not decode is fatal.
    pub fn apply_payload(
        &mut self,
        index: u64,
        term: Option<u64>,
        data: &[u8],
        events: &mut Vec<holdfast_engine::Event>,
        mut keep: Option<&mut EncodedEvents>,
    ) -> Result<Vec<(Outcome, AppliedDetail)>, log_codec::LogDecodeError> {
        let batch = log_codec::decode(data)?;
        let stamp = Stamp {
            index,
            now_ms: batch.stamp_ms,
        };
        let answering = term.is_some_and(|t| self.pending.get(&index).is_some_and(|e| e.term == t));
        let mut out = Vec::with_capacity(if answering { batch.commands.len() } else { 0 });
        for cmd in &batch.commands {
            events.clear();
            let outcome = self.engine.apply(stamp, cmd, events);
            if let Some(kept) = keep.as_deref_mut() {
                for event in events.iter() {
                    kept.push(&self.engine, self.id, index, stamp.now_ms, event);
                }
            }
            if answering {
                let detail = detail_of(&self.engine, index, cmd, &outcome);
                out.push((outcome, detail));
            }
        }
        Ok(out)
    }

    /// Answers the waiters of the entry at `index` (term `term`) with
    /// `outcomes`, or fails them if the entry is not theirs.
    pub fn answer(&mut self, index: u64, term: u64, outcomes: Vec<(Outcome, AppliedDetail)>) {
        // Entries proposed at lower indexes that never appeared were
        // overwritten by a new leader before this index: fail them.
        while let Some((&i, _)) = self.pending.first_key_value() {
            if i >= index {
                break;
            }
            let (_, lost) = self.pending.pop_first().expect("first exists");
            waiters::abort(lost.waiters, "the entry was replaced after a leader change");
            self.speculation = None;
        }
        let Some(mut entry) = self.pending.remove(&index) else {
            return;
        };
        if entry.term != term || waiters::covered(&entry.waiters) != outcomes.len() {
            waiters::abort(
                entry.waiters,
                "the entry was replaced after a leader change",
            );
            self.speculation = None;
            return;
        }
        waiters::send_applied(&mut entry.waiters, outcomes);
    }

    /// Fails every pending proposal (snapshot installed, or shutting down).
    pub fn fail_all_pending(&mut self, why: &'static str) {
        self.speculation = None;
        for (_, entry) in std::mem::take(&mut self.pending) {
            waiters::abort(entry.waiters, why);
        }
        let (_, queued) = self.queued.take_all();
        waiters::abort(queued, why);
    }

    /// Answers `query` from the applied state.
    pub fn answer_read(&self, query: &ReadQuery) -> ReadResult {
        match query {
            ReadQuery::Rows(keys) => ReadResult::Rows {
                rows: self.read_rows(keys),
                index: self.applied,
            },
            ReadQuery::Reservation(id) => ReadResult::Reservation {
                reservation: self
                    .engine
                    .reservation(*id)
                    .map(|r| self.dump_reservation(*id, r)),
                index: self.applied,
            },
            ReadQuery::Reservations(list) => {
                let (found, next_slot) = self.list_reservations(list);
                ReadResult::Reservations {
                    found,
                    next_slot,
                    index: self.applied,
                }
            }
        }
    }

    /// One step of a listing: scans at most [`LIST_SCAN_SLOTS`] slots from
    /// `list.from_slot`, so a listing never stalls the driver loop, and
    /// stops early once `list.limit` reservations match. Returns the matches
    /// and the slot to resume from (`None`: the shard is done).
    fn list_reservations(&self, list: &ListQuery) -> (Vec<DumpReservation>, Option<u32>) {
        let end = self.engine.reservation_slot_end();
        let scan_end = list.from_slot.saturating_add(LIST_SCAN_SLOTS).min(end);
        let mut found = Vec::new();
        for (id, r) in self.engine.reservations_from(list.from_slot) {
            if id.slot() >= scan_end {
                return (found, Some(id.slot()));
            }
            let party = match &list.party {
                Party::Owner(owner) => r.owner() == owner,
                Party::Customer(customer) => r.customer() == customer,
            };
            if party && list.state.is_none_or(|s| s == r.state) {
                found.push(self.dump_reservation(id, r));
                if found.len() >= list.limit {
                    let next = id.slot() + 1;
                    return (found, (next < end).then_some(next));
                }
            }
        }
        (found, None)
    }

    /// One reservation as plain values.
    fn dump_reservation(
        &self,
        id: holdfast_engine::ReservationId,
        r: &holdfast_engine::Reservation,
    ) -> DumpReservation {
        let e = &self.engine;
        DumpReservation {
            id,
            state: match r.state {
                ReservationState::Pending => "pending",
                ReservationState::Confirmed => "confirmed",
                ReservationState::Released => "released",
                ReservationState::Expired => "expired",
            },
            owner: r.owner().to_string(),
            customer: r.customer().to_string(),
            created_at_ms: r.created_at_ms,
            expires_at_ms: r.expires_at_ms,
            lines: r
                .lines
                .iter()
                .map(|l| {
                    let row = e.row(l.row);
                    (
                        e.sku_name(row.sku).to_string(),
                        e.location(row.location).name.to_string(),
                        i64::from(l.quantity),
                        i64::from(l.confirmed),
                    )
                })
                .collect(),
        }
    }

    /// The whole applied state, or `None` when it has more than
    /// `items_max` rows plus reservations (a dump is for test-sized states).
    pub fn dump(&self, items_max: usize) -> Option<ShardDump> {
        let e = &self.engine;
        if e.row_count() + e.reservation_count() > items_max {
            return None;
        }
        let row_key = |row: holdfast_engine::RowId| {
            let r = e.row(row);
            (
                e.sku_name(r.sku).to_string(),
                e.location(r.location).name.to_string(),
            )
        };
        let rows = e
            .row_ids()
            .map(|id| {
                let r = e.row(id);
                let (sku, location) = row_key(id);
                DumpRow {
                    sku,
                    location,
                    on_hand: r.on_hand,
                    held: r.held,
                    safety_stock: r.safety_stock,
                    backorder_allowance: r.backorder_allowance,
                }
            })
            .collect();
        let mut reservations: Vec<DumpReservation> = e
            .reservations()
            .map(|(id, r)| self.dump_reservation(id, r))
            .collect();
        reservations.sort_by_key(|r| r.id);
        Some(ShardDump {
            applied: self.applied,
            digest: e.state_digest(),
            rows,
            reservations,
        })
    }

    /// Reads rows from the applied state.
    pub fn read_rows(&self, keys: &[(String, Option<String>)]) -> Vec<RowRead> {
        let mut rows = Vec::new();
        for (sku, location) in keys {
            let ids = match location {
                Some(loc) => self.engine.row_id(sku, loc).into_iter().collect(),
                None => self.engine.rows_of_sku(sku),
            };
            for id in ids {
                let row = self.engine.row(id);
                rows.push(RowRead {
                    sku: sku.clone(),
                    location: self.engine.location(row.location).name.to_string(),
                    availability: self.engine.availability_of(id),
                });
            }
        }
        rows
    }

    /// Asks Raft for one read index covering every waiting read, when reads
    /// arrived since the last ask, or when the last ask went unanswered for
    /// `retry_after` (raft-rs drops a read index request silently, for
    /// example across a leader change). Called once per driver loop turn:
    /// the reads of one turn share one ReadIndex round.
    pub fn ask_read_index(&mut self, now: Instant, retry_after: std::time::Duration) {
        let waiting = self.reads.iter().rev().find(|(_, r)| r.index.is_none());
        let Some((&newest, _)) = waiting else {
            return;
        };
        let due = match self.read_index_asked {
            None => true,
            Some(at) => now.duration_since(at) >= retry_after,
        };
        if due {
            self.raw.read_index(newest.to_le_bytes().to_vec());
            self.read_index_asked = Some(now);
        }
    }

    /// Records a read index Raft confirmed for context `ctx`: it holds for
    /// every read registered up to that context (they all came before the
    /// ask).
    pub fn read_index_confirmed(&mut self, ctx: u64, index: u64) {
        for (_, read) in self.reads.range_mut(..=ctx) {
            if read.index.is_none() {
                read.index = Some(index);
            }
        }
    }

    /// Serves reads whose read index has been applied, and times out old
    /// ones.
    pub fn serve_reads(&mut self, now: Instant) {
        let applied = self.applied;
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= applied) || r.deadline <= now)
            .map(|(&ctx, _)| ctx)
            .collect();
        for ctx in ready {
            let read = self.reads.remove(&ctx).expect("listed");
            let result = if read.index.is_some_and(|i| i <= applied) {
                self.answer_read(&read.query)
            } else {
                ReadResult::TimedOut
            };
            let _ = read.reply.send(result);
        }
    }
}

/// What a reply needs from `engine`, read right after `outcome` of `cmd`
/// was applied at `index`: the allocations and expiry of a new hold,
/// location names and the SKU of the line a refusal names.
pub(super) fn detail_of(
    engine: &Engine,
    index: u64,
    cmd: &Command,
    outcome: &Outcome,
) -> AppliedDetail {
    let mut detail = AppliedDetail {
        index,
        ..AppliedDetail::default()
    };
    let reservation = match outcome {
        Ok(Success::Reserved { reservation }) | Ok(Success::Extended { reservation, .. }) => {
            Some(*reservation)
        }
        _ => None,
    };
    if let Some(res) = reservation.and_then(|id| engine.reservation(id)) {
        detail.expires_at_ms = Some(res.expires_at_ms);
        if matches!(outcome, Ok(Success::Reserved { .. })) {
            detail.allocations = res
                .lines
                .iter()
                .map(|l| {
                    let row = engine.row(l.row);
                    AllocationView {
                        sku: engine.sku_name(row.sku).to_string(),
                        location: engine.location(row.location).name.to_string(),
                        quantity: l.quantity as i64,
                        available_after: l.available_after,
                    }
                })
                .collect();
        }
    }
    if let Err(Refusal::OutOfStock {
        location: Some(loc),
        ..
    }) = outcome
    {
        detail
            .location_names
            .push((loc.0, engine.location(*loc).name.to_string()));
    }
    let refused_line = match outcome {
        Err(Refusal::OutOfStock { line, .. }) | Err(Refusal::LimitExceeded { line, .. }) => {
            Some(*line)
        }
        _ => None,
    };
    if let (Some(line), CommandKind::Reserve(r)) = (refused_line, &cmd.kind) {
        detail.line_sku = r.lines.get(line as usize).map(|l| (line, l.sku.clone()));
    }
    detail
}
