//! The driver: one thread that runs every shard's Raft group of this node.
//!
//! Unit of work: one *loop iteration*. It takes everything waiting in the
//! inbox (proposals, peer messages, reads), ticks the Raft timers when due,
//! proposes each shard's gathered commands as one log entry, then handles
//! the `Ready` of every shard in the order raft-rs documents:
//!
//! 1. send the leader's messages (they need not wait for the disk);
//! 2. install an incoming snapshot;
//! 3. apply committed entries (answering their proposers);
//! 4. stage new entries and hard state (and the applied index) into one
//!    write batch *for all shards*;
//! 5. write that batch with one fsync (group commit);
//! 6. send the messages that had to wait for persistence;
//! 7. advance, and handle the light ready (commit index, more committed
//!    entries) the same way.
//!
//! The driver is the only owner of shard state, so apply needs no locks.

use super::messages::{
    BatchProposeResult, Inbound, ProposeResult, ReadQuery, ReadResult, ShardStatus,
};
use super::shard::{PendingEntry, PendingRead, Shard};
use super::stats::{DriverStats, ENTRY_COMMANDS_METRIC, FSYNC_SECONDS_METRIC};
use super::waiters::{self, Reply};
use super::{Routing, Transport};
use crate::config::{NodeConfig, BATCH_COMMANDS_MAX};
use crate::event_codec::EncodedEvents;
use crate::events::EventLog;
use crate::log_codec;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use holdfast_engine::{Command, CommandKind, Engine, ExpireUpTo, RequestId};
use holdfast_raft_store::{LogBatch, RaftDb};
use raft::eraftpb::{
    ConfState, Entry, EntryType, Message, MessageType, Snapshot, SnapshotMetadata,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::oneshot;
use tracing::{debug, info, info_span, warn};

/// Inbox messages handled per loop iteration at most, so that Ready
/// handling (and fsync) is never starved by a flood of requests.
const INBOX_PER_ITERATION_MAX: usize = 16_384;
/// How long a linearizable read waits for its read index.
const READ_INDEX_TIMEOUT: Duration = Duration::from_millis(2_000);
/// A read index request unanswered this long is asked again (raft-rs may
/// drop one silently); reads still fail after `READ_INDEX_TIMEOUT`.
const READ_INDEX_RETRY: Duration = Duration::from_millis(300);
/// How often (in ticks) a leader checks whether its shard should be led
/// by its preferred node instead (leader balance).
const BALANCE_EVERY_TICKS: u64 = 33;
/// How long leader balance leaves a shard with the node it was handed to
/// before giving it back to the node that handed it over, at least: that
/// node may be shutting down (it then refuses transfers), and a leader
/// keeps thinking a stopped peer active for up to two election timeouts
/// (check quorum). The hold is the larger of this and four election
/// timeouts.
const BALANCE_HOLD: Duration = Duration::from_secs(10);

/// Why a driver stopped. Every variant stops the node: continuing could
/// apply garbage or acknowledge what is not durable.
#[derive(Debug, Error)]
pub enum DriverError {
    /// Storage failed or found corruption.
    #[error("storage: {0}")]
    Storage(#[from] holdfast_raft_store::StoreError),
    /// raft-rs refused an operation that must succeed.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A committed entry did not decode.
    #[error("shard {shard} entry {index}: {error}")]
    Corrupt {
        /// Shard.
        shard: u32,
        /// Log index.
        index: u64,
        /// Decode error.
        error: log_codec::LogDecodeError,
    },
    /// The ledger rebuilt from disk breaks a promise of design §1.
    #[error("shard {shard}: ledger invariant broken after replay: {why}")]
    Invariant {
        /// Shard.
        shard: u32,
        /// What is broken.
        why: String,
    },
    /// A snapshot from the leader did not restore.
    #[error("shard {shard} snapshot at {index}: {error}")]
    Snapshot {
        /// Shard.
        shard: u32,
        /// Snapshot index.
        index: u64,
        /// Restore error.
        error: holdfast_engine::SnapshotError,
    },
}

/// Leader time stamps: the wall clock, never below the last stamp.
struct StampClock {
    last_ms: u64,
}

impl StampClock {
    fn stamp(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_ms = self.last_ms.max(now);
        self.last_ms
    }
}

/// The driver of one node.
pub struct Driver {
    config: NodeConfig,
    db: RaftDb,
    shards: Vec<Shard>,
    inbox: Receiver<Inbound>,
    transport: Box<dyn Transport>,
    routing: Arc<Routing>,
    clock: StampClock,
    events: Vec<holdfast_engine::Event>,
    /// Where the change events of applied entries are kept and announced.
    event_log: Arc<EventLog>,
    /// The current entry's events, encoded (reused buffer).
    kept_events: EncodedEvents,
    ticks: u64,
    /// Where each fsynced write's time goes for Prometheus (a no-op handle
    /// when no recorder was installed before the driver opened).
    fsync_seconds: metrics::Histogram,
    /// Where each proposed entry's command count goes (same handle rule).
    entry_commands: metrics::Histogram,
    /// Set once the node is leaving (`Inbound::Leave`): it hands off every
    /// shard it leads and answers here once it leads none.
    leaving: Option<Leaving>,
}

/// A graceful shutdown under way.
struct Leaving {
    /// Answered (and taken) once this node leads no shard.
    reply: Option<oneshot::Sender<()>>,
}

fn raft_logger() -> slog::Logger {
    slog::Logger::root(tracing_slog::TracingSlogDrain, slog::o!())
}

impl Driver {
    /// Opens (or creates) every shard from `db`, restoring each ledger from
    /// its latest snapshot plus the durable applied log tail.
    pub fn open(
        config: NodeConfig,
        db: RaftDb,
        inbox: Receiver<Inbound>,
        transport: Box<dyn Transport>,
        routing: Arc<Routing>,
        event_log: Arc<EventLog>,
    ) -> Result<Driver, DriverError> {
        let mut shards = Vec::with_capacity(config.shards as usize);
        let mut events = Vec::new();
        for id in 0..config.shards {
            shards.push(open_shard(&config, &db, id, &mut events)?);
            routing.publish_board(id, shards[id as usize].engine.board());
        }
        if config.peers.len() == 1 {
            // The only voter needs no election timeout to learn that it
            // wins: campaigning at once makes a one-node restart serve as
            // soon as its shards are open.
            for s in &mut shards {
                s.raw.campaign()?;
            }
        }
        Ok(Driver {
            config,
            db,
            shards,
            inbox,
            transport,
            routing,
            clock: StampClock { last_ms: 0 },
            events,
            event_log,
            kept_events: EncodedEvents::default(),
            ticks: 0,
            fsync_seconds: metrics::histogram!(FSYNC_SECONDS_METRIC),
            entry_commands: metrics::histogram!(ENTRY_COMMANDS_METRIC),
            leaving: None,
        })
    }

    /// Runs until the inbox closes (clean stop) or an error stops the node.
    pub fn run(mut self) -> Result<(), DriverError> {
        let tick = Duration::from_millis(self.config.raft.tick_ms);
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(wait) {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    for shard in &mut self.shards {
                        shard.fail_all_pending("the node is shutting down");
                    }
                    return Ok(());
                }
            }
            for _ in 0..INBOX_PER_ITERATION_MAX {
                match self.inbox.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + tick;
                self.tick(now);
            }
            DriverStats::add(&self.routing.stats.iterations, 1);
            self.propose_queued();
            let now = Instant::now();
            for shard in &mut self.shards {
                shard.ask_read_index(now, READ_INDEX_RETRY);
            }
            self.handle_readies()?;
            let now = Instant::now();
            for shard in &mut self.shards {
                shard.serve_reads(now);
            }
        }
    }

    fn handle(&mut self, msg: Inbound) {
        match msg {
            Inbound::Propose {
                shard,
                command,
                reply,
            } => match self.shards.get_mut(shard as usize) {
                Some(s) => s.queued.push(command, Reply::One(reply)),
                None => {
                    let _ = reply.send(ProposeResult::Aborted {
                        why: "no such shard",
                    });
                }
            },
            Inbound::ProposeBatch {
                shard,
                commands,
                reply,
            } => match self.shards.get_mut(shard as usize) {
                Some(s) => s.queued.push_batch(commands, reply),
                None => {
                    let _ = reply.send(BatchProposeResult::Aborted {
                        why: "no such shard",
                    });
                }
            },
            Inbound::Raft { shard, mut message } => {
                if let Some(s) = self.shards.get_mut(shard as usize) {
                    if message.get_msg_type() == MessageType::MsgTimeoutNow {
                        if self.leaving.is_some() {
                            // A leaving node takes no leadership; dropping
                            // a message is always safe in Raft.
                            return;
                        }
                        s.handed_over_by = Some((message.from, self.ticks));
                    }
                    guard_heartbeat_commit(&s.raw, &mut message);
                    if let Err(e) = s.raw.step(message) {
                        debug!(shard, error = %e, "raft message refused");
                    }
                }
            }
            Inbound::Read {
                shard,
                query,
                linearizable,
                reply,
            } => self.read(shard, query, linearizable, reply),
            Inbound::Status { with_digest, reply } => {
                let status = self
                    .shards
                    .iter()
                    .map(|s| shard_status(s, with_digest))
                    .collect();
                let _ = reply.send(status);
            }
            Inbound::Dump {
                shard,
                items_max,
                reply,
            } => {
                let dump = self
                    .shards
                    .get(shard as usize)
                    .and_then(|s| s.dump(items_max));
                let _ = reply.send(dump);
            }
            Inbound::Leave { reply } => {
                info!("leaving: handing over the shards this node leads");
                self.leaving = Some(Leaving { reply: Some(reply) });
                self.hand_off_leaders();
            }
            Inbound::SnapshotStatus { shard, to, ok } => {
                if let Some(s) = self.shards.get_mut(shard as usize) {
                    debug!(shard, to, ok, "snapshot send ended");
                    let status = if ok {
                        SnapshotStatus::Finish
                    } else {
                        SnapshotStatus::Failure
                    };
                    s.raw.report_snapshot(to, status);
                }
            }
            Inbound::Unreachable { shard, to } => {
                if let Some(s) = self.shards.get_mut(shard as usize) {
                    s.raw.report_unreachable(to);
                }
            }
        }
    }

    fn read(
        &mut self,
        shard: u32,
        query: ReadQuery,
        linearizable: bool,
        reply: tokio::sync::oneshot::Sender<ReadResult>,
    ) {
        let Some(s) = self.shards.get_mut(shard as usize) else {
            let _ = reply.send(ReadResult::TimedOut);
            return;
        };
        if !linearizable {
            let _ = reply.send(s.answer_read(&query));
            return;
        }
        if s.raw.raft.state != StateRole::Leader {
            let leader = Some(s.raw.raft.leader_id).filter(|&l| l != 0);
            let _ = reply.send(ReadResult::NotLeader { leader });
            return;
        }
        let ctx = s.next_read_ctx;
        s.next_read_ctx += 1;
        // Asked for at the end of this loop turn, together with the other
        // reads of the turn (`Shard::ask_read_index`).
        s.read_index_asked = None;
        s.reads.insert(
            ctx,
            PendingRead {
                query,
                reply,
                index: None,
                deadline: Instant::now() + READ_INDEX_TIMEOUT,
            },
        );
    }

    fn tick(&mut self, now: Instant) {
        self.ticks += 1;
        if self.leaving.is_some() {
            self.hand_off_leaders();
        } else if self.ticks % BALANCE_EVERY_TICKS == 0 {
            self.balance_leaders();
        }
        let expire_every = Duration::from_millis(self.config.expire_tick_ms);
        for s in &mut self.shards {
            s.raw.tick();
            if s.raw.raft.state == StateRole::Leader
                && now.duration_since(s.last_expire_check) >= expire_every
            {
                s.last_expire_check = now;
                let up_to_ms = self.clock.stamp();
                if s.engine.next_expiry_ms().is_some_and(|t| t <= up_to_ms) {
                    let command = Command {
                        request_id: RequestId(0),
                        kind: CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms }),
                    };
                    s.queued.push(command, Reply::Nobody);
                }
            }
        }
    }

    /// Leader balance: shard `s` prefers the `s mod n`-th node (by id). A
    /// leader hands its shard to the preferred node once that node is
    /// active and has every entry, so leaders spread over the nodes at start
    /// and move back to a node that rejoined and caught up.
    fn balance_leaders(&mut self) {
        let members: Vec<u64> = self.config.peers.keys().copied().collect();
        let hold_ticks = (BALANCE_HOLD.as_millis() as u64 / self.config.raft.tick_ms.max(1))
            .max(4 * self.config.raft.election_ticks as u64);
        for s in &mut self.shards {
            if s.raw.raft.state != StateRole::Leader {
                continue;
            }
            let preferred = members[s.id as usize % members.len()];
            if preferred == self.config.id {
                continue;
            }
            let held_for = |by: u64| {
                s.handed_over_by
                    .is_some_and(|(from, at)| from == by && self.ticks - at < hold_ticks)
            };
            if held_for(preferred) {
                continue;
            }
            let last = s.raw.raft.raft_log.last_index();
            let ready = s
                .raw
                .raft
                .prs()
                .get(preferred)
                .is_some_and(|p| p.recent_active && p.matched == last);
            if ready {
                info!(
                    shard = s.id,
                    to = preferred,
                    "handing leadership to the preferred node"
                );
                s.raw.transfer_leader(preferred);
            }
        }
    }

    /// While leaving: hands each shard this node leads to the follower that
    /// has the most of the log (lowest id on a tie) among those recently
    /// active, unless a transfer is under way; answers the leave request
    /// once this node leads no shard it could hand over (a shard without an
    /// active follower has nobody to go to). Raft sends `MsgTimeoutNow` once the
    /// target has every entry, so nothing acknowledged is left behind, and
    /// proposals arriving meanwhile are refused (retryable) by raft-rs.
    fn hand_off_leaders(&mut self) {
        let me = self.config.id;
        let mut leading = 0;
        for s in &mut self.shards {
            if s.raw.raft.state != StateRole::Leader {
                continue;
            }
            if s.raw.raft.lead_transferee.is_some() {
                leading += 1;
                continue;
            }
            let target = s
                .raw
                .raft
                .prs()
                .iter()
                .filter(|&(&id, p)| id != me && p.recent_active)
                .max_by_key(|&(&id, p)| (p.matched, std::cmp::Reverse(id)))
                .map(|(&id, _)| id);
            // No active follower (a one-node cluster, or the others are
            // down): nobody to hand to, so nothing to wait for.
            if let Some(to) = target {
                leading += 1;
                info!(shard = s.id, to, "leaving: handing leadership over");
                s.raw.transfer_leader(to);
            }
        }
        if leading == 0 {
            if let Some(reply) = self.leaving.as_mut().and_then(|l| l.reply.take()) {
                info!("leaving: this node leads no shard");
                let _ = reply.send(());
            }
        }
    }

    /// Proposes each shard's gathered commands as one entry (design §5
    /// batching), or answers `NotLeader` if this node does not lead it.
    fn propose_queued(&mut self) {
        for s in &mut self.shards {
            while !s.queued.is_empty() {
                let (commands, waiters) = s.queued.take(BATCH_COMMANDS_MAX);
                if s.raw.raft.state != StateRole::Leader {
                    let leader = Some(s.raw.raft.leader_id).filter(|&l| l != 0);
                    waiters::not_leader(waiters, commands, leader);
                    continue;
                }
                let stamp_ms = self.clock.stamp();
                let data = log_codec::encode(stamp_ms, &commands);
                let _span =
                    info_span!("propose", shard = s.id, commands = commands.len()).entered();
                match s.raw.propose(vec![], data) {
                    Ok(()) => {
                        DriverStats::add(&self.routing.stats.entries_proposed, 1);
                        DriverStats::add(
                            &self.routing.stats.commands_proposed,
                            commands.len() as u64,
                        );
                        self.entry_commands.record(commands.len() as f64);
                        let index = s.raw.raft.raft_log.last_index();
                        let term = s.raw.raft.term;
                        // UNSAFE, chaos tests only: predict the answers, to
                        // send them before the entry commits.
                        let early = if self.config.unsafe_ack_before_commit {
                            s.speculate(self.config.engine, term, index, stamp_ms, &commands)
                        } else {
                            None
                        };
                        s.pending.insert(
                            index,
                            PendingEntry {
                                term,
                                waiters,
                                early,
                            },
                        );
                    }
                    Err(e) => {
                        debug!(shard = s.id, error = %e, "proposal dropped");
                        waiters::abort(waiters, "proposal dropped by raft");
                    }
                }
            }
        }
    }

    /// Hands shard `i`'s messages to the transport.
    fn send_messages(&self, i: usize, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        DriverStats::add(&self.routing.stats.messages_sent, messages.len() as u64);
        self.transport.send(i as u32, messages);
    }

    fn handle_readies(&mut self) -> Result<(), DriverError> {
        let mut batch = LogBatch::new();
        let mut readies = Vec::new();
        // Only new entries, a snapshot, or a new term or vote must be on
        // disk before the messages that follow them go out; a ready that
        // only moves the commit index is written without an fsync (a later
        // synced write makes it durable too, RocksDB's log being ordered).
        let mut must_sync = false;
        for i in 0..self.shards.len() {
            if !self.shards[i].raw.has_ready() {
                continue;
            }
            let _span = info_span!("ready", shard = i).entered();
            let mut rd = self.shards[i].raw.ready();
            if let Some(ss) = rd.ss() {
                self.routing.set_leader(i as u32, ss.leader_id);
            }
            self.send_messages(i, rd.take_messages());
            if !rd.snapshot().is_empty() {
                must_sync = true;
                self.install_snapshot(i, rd.snapshot().clone(), &mut batch)?;
            }
            for rs in rd.take_read_states() {
                if let Ok(ctx) = rs.request_ctx.as_slice().try_into() {
                    self.shards[i].read_index_confirmed(u64::from_le_bytes(ctx), rs.index);
                }
            }
            self.apply_committed(i, rd.take_committed_entries(), &mut batch)?;
            let storage = self.shards[i].storage.clone();
            if !rd.entries().is_empty() {
                must_sync = true;
                storage.stage_append(&mut batch, rd.entries())?;
            }
            if let Some(hs) = rd.hs() {
                let term_vote = (hs.term, hs.vote);
                if term_vote != self.shards[i].synced_term_vote {
                    must_sync = true;
                    self.shards[i].synced_term_vote = term_vote;
                }
                storage.stage_hard_state(&mut batch, hs)?;
            }
            readies.push((i, rd));
        }
        if readies.is_empty() {
            return Ok(());
        }
        let report = self.db.write(batch, self.config.sync_writes && must_sync)?;
        if report.synced {
            DriverStats::add(&self.routing.stats.group_commits, 1);
            DriverStats::add(
                &self.routing.stats.group_commit_us,
                report.elapsed.as_micros() as u64,
            );
            self.fsync_seconds.record(report.elapsed.as_secs_f64());
        } else {
            DriverStats::add(&self.routing.stats.unsynced_writes, 1);
        }
        debug!(
            shards = report.shards,
            ops = report.ops,
            write_us = report.elapsed.as_micros() as u64,
            "group commit"
        );
        let mut light_batch = LogBatch::new();
        let mut light_writes = false;
        for (i, mut rd) in readies {
            self.send_messages(i, rd.take_persisted_messages());
            let mut light = self.shards[i].raw.advance(rd);
            if self.config.unsafe_ack_before_commit {
                // UNSAFE, chaos tests only: answer what this node's own
                // log now holds, committed or not.
                let persisted = self.shards[i].raw.raft.raft_log.persisted;
                self.shards[i].ack_persisted_early(persisted);
            }
            if let Some(commit) = light.commit_index() {
                let storage = self.shards[i].storage.clone();
                let mut hs = self.shards[i].raw.raft.hard_state();
                hs.commit = commit;
                storage.stage_hard_state(&mut light_batch, &hs)?;
                light_writes = true;
            }
            self.send_messages(i, light.take_messages());
            let committed = light.take_committed_entries();
            light_writes |= !committed.is_empty();
            self.apply_committed(i, committed, &mut light_batch)?;
            self.shards[i].raw.advance_apply();
        }
        if light_writes {
            // Commit index and applied index travel together, so on disk
            // `applied <= commit` always holds; no fsync is needed: losing
            // this write only means replaying a few entries after a crash.
            self.db.write(light_batch, false)?;
        }
        for shard in &self.shards {
            self.event_log.published(shard.id, shard.applied);
        }
        Ok(())
    }

    fn install_snapshot(
        &mut self,
        i: usize,
        snapshot: Snapshot,
        batch: &mut LogBatch,
    ) -> Result<(), DriverError> {
        let index = snapshot.get_metadata().index;
        let shard = &mut self.shards[i];
        info!(
            shard = shard.id,
            index, "installing snapshot from the leader"
        );
        let engine = Engine::restore(self.config.engine, snapshot.get_data()).map_err(|error| {
            DriverError::Snapshot {
                shard: shard.id,
                index,
                error,
            }
        })?;
        shard.storage.apply_snapshot(batch, &snapshot)?;
        shard.engine = engine;
        shard.snapshot_index = index;
        shard.applied = index;
        shard.applied_term = snapshot.get_metadata().term;
        shard.fail_all_pending("a snapshot replaced this node's log");
        self.routing.publish_board(shard.id, shard.engine.board());
        Ok(())
    }

    fn apply_committed(
        &mut self,
        i: usize,
        entries: Vec<Entry>,
        batch: &mut LogBatch,
    ) -> Result<(), DriverError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let last_index = last.index;
        DriverStats::add(&self.routing.stats.entries_applied, entries.len() as u64);
        let shard = &mut self.shards[i];
        let retention = self.config.event_retention_entries;
        for entry in entries {
            match entry.get_entry_type() {
                EntryType::EntryNormal if !entry.data.is_empty() => {
                    self.kept_events.clear();
                    let keep = (retention > 0).then_some(&mut self.kept_events);
                    let outcomes = shard
                        .apply_payload(
                            entry.index,
                            Some(entry.term),
                            &entry.data,
                            &mut self.events,
                            keep,
                        )
                        .map_err(|error| DriverError::Corrupt {
                            shard: shard.id,
                            index: entry.index,
                            error,
                        })?;
                    shard
                        .storage
                        .stage_events(batch, entry.index, self.kept_events.iter())?;
                    shard.answer(entry.index, entry.term, outcomes);
                }
                EntryType::EntryNormal => shard.answer(entry.index, entry.term, Vec::new()),
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    // Membership is static; a conf change in the log means a
                    // node of another configuration wrote it.
                    warn!(
                        shard = shard.id,
                        index = entry.index,
                        "ignoring a membership change entry"
                    );
                }
            }
            shard.applied = entry.index;
            shard.applied_term = entry.term;
        }
        shard.storage.stage_applied_index(batch, last_index)?;
        // Events older than the retention go, a tenth of it at a time (a
        // range deletion per entry would cost more than it frees).
        let floor = shard.storage.event_floor()?;
        if retention > 0 && last_index >= floor + retention + retention / 10 {
            shard
                .storage
                .stage_event_floor(batch, last_index + 1 - retention)?;
        }
        self.maybe_snapshot(i, last_index, batch)
    }

    /// Every `snapshot_every_entries` applied entries: snapshot the ledger
    /// and compact the log behind it (keeping a margin).
    fn maybe_snapshot(
        &mut self,
        i: usize,
        applied: u64,
        batch: &mut LogBatch,
    ) -> Result<(), DriverError> {
        let shard = &mut self.shards[i];
        if applied < shard.snapshot_index + self.config.snapshot_every_entries {
            return Ok(());
        }
        let _span = info_span!("snapshot", shard = shard.id, index = applied).entered();
        let term = raft::Storage::term(&shard.storage, applied)?;
        let data = shard.engine.snapshot();
        let mut metadata = SnapshotMetadata {
            index: applied,
            term,
            ..Default::default()
        };
        metadata.set_conf_state(shard.storage.conf_state()?);
        // Staged with the applied index and the compaction it allows, so the
        // snapshot never gets ahead of the durable commit.
        shard.storage.stage_snapshot(batch, metadata, &data)?;
        let compact_to = applied.saturating_sub(self.config.snapshot_log_margin_entries);
        if compact_to > raft::Storage::first_index(&shard.storage)? {
            shard.storage.compact(batch, compact_to)?;
        }
        shard.snapshot_index = applied;
        info!(
            shard = shard.id,
            index = applied,
            bytes = data.len(),
            "snapshot taken"
        );
        Ok(())
    }
}

/// A leader sends `commit = min(match, committed)` in heartbeats; after this
/// node lost its log (a wiped data directory) the leader's `match` for it is
/// stale, and raft-rs would abort on a commit beyond the local log. Such a
/// commit is lowered to what this node already committed: never an advance,
/// so always safe; the leader then finds the gap from the rejected append
/// that follows and sends a snapshot.
fn guard_heartbeat_commit(raw: &RawNode<holdfast_raft_store::ShardStorage>, message: &mut Message) {
    if message.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat
        && message.commit > raw.raft.raft_log.last_index()
    {
        debug!(
            from = message.from,
            commit = message.commit,
            "heartbeat commit beyond the local log"
        );
        message.commit = raw.raft.raft_log.committed;
    }
}

fn shard_status(s: &Shard, with_digest: bool) -> ShardStatus {
    ShardStatus {
        shard: s.id,
        leader: s.raw.raft.leader_id,
        term: s.raw.raft.term,
        commit: s.raw.raft.raft_log.committed,
        applied: s.applied,
        applied_term: s.applied_term,
        digest: with_digest.then(|| s.engine.state_digest()),
        reservations: s.engine.reservation_count(),
        pending: s.engine.pending_count(),
    }
}

/// raft-rs configuration of one shard's group.
fn raft_config(config: &NodeConfig, applied: u64) -> raft::Config {
    raft::Config {
        id: config.id,
        election_tick: config.raft.election_ticks,
        heartbeat_tick: config.raft.heartbeat_ticks,
        applied,
        max_size_per_msg: config.raft.max_size_per_msg,
        max_inflight_msgs: config.raft.max_inflight_msgs,
        max_uncommitted_size: config.raft.max_uncommitted_size,
        check_quorum: true,
        pre_vote: true,
        ..raft::Config::default()
    }
}

/// Opens one shard: bootstraps membership on a fresh node, restores the
/// ledger from the latest snapshot, replays the durable applied tail.
fn open_shard(
    config: &NodeConfig,
    db: &RaftDb,
    id: u32,
    events: &mut Vec<holdfast_engine::Event>,
) -> Result<Shard, DriverError> {
    let started = Instant::now();
    let storage = db.shard(id)?;
    let load_ms = ms_since(started);
    // raft-rs panics on storage errors it reads later: check the whole log
    // now, so damage is reported (with shard and index) and stops the node.
    let phase = Instant::now();
    let verified_entries = storage.verify_log()?;
    let verify_ms = ms_since(phase);
    if storage.conf_state()?.voters.is_empty() {
        let mut batch = LogBatch::new();
        let conf = ConfState {
            voters: config.peers.keys().copied().collect(),
            ..ConfState::default()
        };
        storage.stage_conf_state(&mut batch, &conf)?;
        db.write(batch, true)?;
    }
    let phase = Instant::now();
    let snapshot = storage.latest_snapshot()?;
    let snapshot_read_ms = ms_since(phase);
    let phase = Instant::now();
    let (engine, snapshot_index) = match snapshot {
        Some(snapshot) => {
            let index = snapshot.get_metadata().index;
            let engine = Engine::restore(config.engine, snapshot.get_data()).map_err(|error| {
                DriverError::Snapshot {
                    shard: id,
                    index,
                    error,
                }
            })?;
            (engine, index)
        }
        None => (Engine::new(config.engine), 0),
    };
    let restore_ms = ms_since(phase);
    let applied = storage.applied_index()?.max(snapshot_index);
    let logger = raft_logger();
    let raw = RawNode::new(&raft_config(config, applied), storage.clone(), &logger)?;
    let mut shard = Shard {
        id,
        raw,
        storage,
        engine,
        queued: Default::default(),
        pending: Default::default(),
        reads: Default::default(),
        next_read_ctx: 0,
        read_index_asked: None,
        snapshot_index,
        applied,
        applied_term: 0,
        last_expire_check: Instant::now(),
        synced_term_vote: (0, 0),
        speculation: None,
        handed_over_by: None,
    };
    let hs = shard.raw.raft.hard_state();
    shard.synced_term_vote = (hs.term, hs.vote);
    // Unknown only if the log no longer has it, which `verify_log` and the
    // snapshot rule out; 0 would merely read as "not caught up".
    shard.applied_term = shard.raw.raft.raft_log.term(applied).unwrap_or(0);
    let phase = Instant::now();
    replay(&mut shard, snapshot_index + 1, applied, events)?;
    let replay_ms = ms_since(phase);
    // Where restart time goes (the recovery-time bench reads these fields).
    info!(
        shard = id,
        snapshot_index,
        applied,
        verified_entries,
        load_ms,
        verify_ms,
        snapshot_read_ms,
        restore_ms,
        replay_ms,
        total_ms = ms_since(started),
        "shard opened"
    );
    Ok(shard)
}

/// Whole milliseconds since `t`, for timing fields in log lines.
fn ms_since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// Re-applies the durable log between the snapshot and the applied index:
/// the ledger lives in memory, so a restart rebuilds it from disk.
fn replay(
    shard: &mut Shard,
    from: u64,
    to: u64,
    events: &mut Vec<holdfast_engine::Event>,
) -> Result<(), DriverError> {
    let mut next = from;
    while next <= to {
        let entries = shard.storage.read_entries(
            next,
            to + 1,
            Some(holdfast_raft_store::REPLAY_READ_BYTES_MAX),
        )?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
                shard
                    .apply_payload(entry.index, None, &entry.data, events, None)
                    .map_err(|error| DriverError::Corrupt {
                        shard: shard.id,
                        index: entry.index,
                        error,
                    })?;
            }
            next = entry.index + 1;
        }
    }
    shard
        .engine
        .check_invariants()
        .map_err(|why| DriverError::Invariant {
            shard: shard.id,
            why,
        })
}
