//! What flows into a node's driver thread, and what comes back.
//!
//! The driver owns every shard (its `RawNode` and `Engine`); other threads
//! talk to it only through `Inbound` messages on one bounded channel, and get
//! answers on one-shot channels. Nothing else touches a shard's state.

use holdfast_engine::{Availability, Command, Outcome, ReservationId, ReservationState};
use raft::eraftpb::Message;
use tokio::sync::oneshot;

/// A request to the driver.
pub enum Inbound {
    /// Propose a command on a shard this node leads; answered after apply.
    Propose {
        /// The shard.
        shard: u32,
        /// The command.
        command: Command,
        /// Where the answer goes.
        reply: oneshot::Sender<ProposeResult>,
    },
    /// Propose several commands on a shard this node leads, in this order
    /// and in one entry; answered once, after apply, with one outcome per
    /// command. One `ReserveBatch` sends one per shard it touches, instead
    /// of one `Propose` per item.
    ProposeBatch {
        /// The shard.
        shard: u32,
        /// The commands, in order.
        commands: Vec<Command>,
        /// Where the answer goes.
        reply: oneshot::Sender<BatchProposeResult>,
    },
    /// A Raft message from a peer.
    Raft {
        /// The shard.
        shard: u32,
        /// The message.
        message: Message,
    },
    /// Read rows from this node's applied state (stale read), or, with
    /// `linearizable`, after a ReadIndex round confirms this node leads and
    /// has applied every acknowledged write.
    Read {
        /// The shard.
        shard: u32,
        /// What to read.
        query: ReadQuery,
        /// Confirm leadership and wait for the read index first.
        linearizable: bool,
        /// Where the answer goes.
        reply: oneshot::Sender<ReadResult>,
    },
    /// Report per-shard status (leader, term, applied index, digest).
    Status {
        /// Include each shard's state digest (O(state); for tests and tools).
        with_digest: bool,
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<ShardStatus>>,
    },
    /// Dump a shard's whole applied state (rows and retained reservations),
    /// for chaos checks. Answered `None` for a shard that does not exist or
    /// whose state has more than `items_max` rows plus reservations.
    Dump {
        /// The shard.
        shard: u32,
        /// Largest state (rows + reservations) worth dumping.
        items_max: usize,
        /// Where the answer goes.
        reply: oneshot::Sender<Option<ShardDump>>,
    },
    /// The node is shutting down: hand every shard it leads to a caught-up
    /// follower, take no leadership back by transfer, and answer once it
    /// leads no shard (design §6 graceful shutdown: the others need not
    /// wait an election timeout). Dropping `reply` unanswered means the
    /// driver stopped first.
    Leave {
        /// Answered once this node leads no shard.
        reply: oneshot::Sender<()>,
    },
    /// From the transport: how a snapshot this node sent ended. The driver
    /// tells Raft (`report_snapshot`), so a leader's progress for `to`
    /// leaves the Snapshot state now instead of staying paused until Raft
    /// hears from the follower some other way.
    SnapshotStatus {
        /// The shard the snapshot was of.
        shard: u32,
        /// The peer it was for.
        to: u64,
        /// `true`: the peer received it whole and handed it to its driver;
        /// `false`: it was lost (Raft sends another when still needed).
        ok: bool,
    },
    /// From the transport: messages of `shard` to `to` may have been lost
    /// because the link to `to` failed. The driver tells Raft
    /// (`report_unreachable`), so a leader stops streaming appends to `to`
    /// optimistically and probes it instead.
    Unreachable {
        /// The shard.
        shard: u32,
        /// The unreachable peer.
        to: u64,
    },
}

/// Allocation of a reservation line, with names resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationView {
    /// Product code.
    pub sku: String,
    /// Location name.
    pub location: String,
    /// Units held.
    pub quantity: i64,
    /// Promisable units right after the hold.
    pub available_after: i64,
}

/// What a reply needs beyond the outcome, read from the engine right after
/// apply (on the driver thread, so it is consistent with the outcome).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AppliedDetail {
    /// For a successful reserve: its allocations and expiry.
    pub allocations: Vec<AllocationView>,
    /// Expiry of the reservation the outcome names, if retained.
    pub expires_at_ms: Option<u64>,
    /// Names of locations an outcome mentions, by id.
    pub location_names: Vec<(u16, String)>,
    /// Log index the command was applied at.
    pub index: u64,
    /// For a refusal that names a request line (out of stock, over a
    /// customer limit): that line and its SKU as the command carried it, so
    /// the reply can name the SKU without the caller keeping the request.
    pub line_sku: Option<(u16, String)>,
}

/// The answer to a proposal.
#[derive(Debug)]
pub enum ProposeResult {
    /// Applied (committed on a quorum, fsynced, applied here).
    Applied {
        /// The engine's answer.
        outcome: Outcome,
        /// Detail for building the reply.
        detail: AppliedDetail,
    },
    /// This node does not lead the shard; the leader's id if known.
    NotLeader {
        /// The leader, if known.
        leader: Option<u64>,
    },
    /// The proposal was dropped or lost to a leader change; the command may
    /// or may not apply later: retrying with the same request id is safe.
    Aborted {
        /// Why.
        why: &'static str,
    },
}

/// The answer to a [`Inbound::ProposeBatch`].
#[derive(Debug)]
pub enum BatchProposeResult {
    /// Applied: one outcome per command, in the order proposed.
    Applied(Vec<(Outcome, AppliedDetail)>),
    /// This node does not lead the shard (the leader's id if known); the
    /// commands come back unproposed, so they can be sent to the leader.
    NotLeader {
        /// The leader, if known.
        leader: Option<u64>,
        /// The commands, as they were sent.
        commands: Vec<Command>,
    },
    /// Dropped or lost to a leader change, as [`ProposeResult::Aborted`]:
    /// the commands may or may not apply later.
    Aborted {
        /// Why.
        why: &'static str,
    },
}

/// One row read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowRead {
    /// Product code.
    pub sku: String,
    /// Location name.
    pub location: String,
    /// The figures.
    pub availability: Availability,
}

/// The answer to a read.
#[derive(Debug)]
pub enum ReadResult {
    /// The rows that exist, as of `index`.
    Rows {
        /// Rows found.
        rows: Vec<RowRead>,
        /// Applied index the rows reflect.
        index: u64,
    },
    /// One reservation (`None`: unknown or no longer retained), as of
    /// `index`.
    Reservation {
        /// The reservation, if the ledger has it.
        reservation: Option<DumpReservation>,
        /// Applied index it reflects.
        index: u64,
    },
    /// One page step of a listing, as of `index`.
    Reservations {
        /// Matching reservations, in slot order.
        found: Vec<DumpReservation>,
        /// The slot to resume from; `None` once the shard is scanned.
        next_slot: Option<u32>,
        /// Applied index the page reflects.
        index: u64,
    },
    /// Not the leader (linearizable reads only).
    NotLeader {
        /// The leader, if known.
        leader: Option<u64>,
    },
    /// The read index did not arrive in time; retry.
    TimedOut,
}

/// What a read asks of a shard's applied state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadQuery {
    /// Stock rows: `(sku, location)`; a `None` location reads every
    /// location of the SKU.
    Rows(Vec<(String, Option<String>)>),
    /// One reservation by the engine's id.
    Reservation(ReservationId),
    /// A step of a listing by owner or customer.
    Reservations(ListQuery),
}

/// Which reservations a listing wants, and where this step starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Whose reservations.
    pub party: Party,
    /// Only this state, if set.
    pub state: Option<ReservationState>,
    /// Slot to start scanning at.
    pub from_slot: u32,
    /// Most reservations to return.
    pub limit: usize,
}

/// The party a listing filters on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    /// Cart or order id.
    Owner(String),
    /// Customer id.
    Customer(String),
}

/// Status of one shard on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStatus {
    /// The shard.
    pub shard: u32,
    /// Leader id (0 if unknown).
    pub leader: u64,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Term of the entry at the applied index.
    pub applied_term: u64,
    /// State digest, if asked for.
    pub digest: Option<u128>,
    /// Reservations retained.
    pub reservations: usize,
    /// Reservations pending (holds neither confirmed, released nor expired).
    pub pending: usize,
}

/// Reservation ids stay engine-local inside the node; this is the pair the
/// wire id encodes.
pub type ShardReservation = (u32, ReservationId);

/// A shard's applied state, as plain values in a deterministic order (rows
/// in creation order, reservations in id order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardDump {
    /// Last applied Raft index.
    pub applied: u64,
    /// State digest at that index.
    pub digest: u128,
    /// Every stock row.
    pub rows: Vec<DumpRow>,
    /// Every reservation the ledger retains.
    pub reservations: Vec<DumpReservation>,
}

/// One stock row of a [`ShardDump`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpRow {
    /// Product code.
    pub sku: String,
    /// Location name.
    pub location: String,
    /// Physical units.
    pub on_hand: i64,
    /// Units held by pending reservations.
    pub held: i64,
    /// Units never promised.
    pub safety_stock: i64,
    /// Units promisable beyond on_hand.
    pub backorder_allowance: i64,
}

/// One reservation of a [`ShardDump`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpReservation {
    /// The engine's id (the wire id is `"<shard>-<id>"`).
    pub id: ReservationId,
    /// `pending`, `confirmed`, `released` or `expired`.
    pub state: &'static str,
    /// Owner (cart or order) id.
    pub owner: String,
    /// Customer id.
    pub customer: String,
    /// Log time of the `Reserve`, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Expiry, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Allocations: sku, location, units held, units confirmed.
    pub lines: Vec<(String, String, i64, i64)>,
}
