//! Small, copyable identifiers used inside the ledger.
//!
//! Strings from the network (SKUs, locations) are interned once into dense
//! integer ids, so the apply path compares integers and a stock row costs a
//! few dozen bytes instead of two heap strings. Ids are assigned in log order,
//! so every replica assigns the same ids.

/// A client's idempotency key. The server maps the wire string to 128 bits
/// (the same width TigerBeetle uses for ids): wide enough that a collision
/// among the ids alive in one dedup window is negligible (< 2^-60).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u128);

/// A reservation, unique within one shard for the life of the shard: the low
/// 32 bits name a slot, the high 32 bits count how often that slot was reused,
/// so an id is never handed out twice (until 2^32 reuses of one slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(pub u64);

impl ReservationId {
    pub(crate) fn new(slot: u32, generation: u32) -> Self {
        ReservationId(((generation as u64) << 32) | slot as u64)
    }

    /// The slab slot: the reservation's position in slot order, which is
    /// what a paginated listing resumes from.
    pub fn slot(self) -> u32 {
        self.0 as u32
    }

    pub(crate) fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// An interned SKU of this shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SkuId(pub u32);

/// An interned location (warehouse or store) of this shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocationId(pub u16);

/// A stock row `(sku, location)`; rows are never deleted, so ids stay valid
/// for events and replies for the life of the shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowId(pub u32);

/// Where in the replicated log a command is applied, and the time the leader
/// stamped on that entry. The engine never reads a clock: this is its only
/// notion of time (design §3 "Time").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Raft log index of the entry (0 for tests without a log).
    pub index: u64,
    /// Leader's clock in ms since the Unix epoch when it proposed the entry.
    pub now_ms: u64,
}
