//! What every replica holds after a run: the ground truth the history's
//! acknowledgements are checked against.
//!
//! The harness heals every fault, waits until no proposal is in flight and
//! every replica has applied the same log index, then dumps each replica's
//! ledger as one [`ReplicaState`] per JSON line. The checker assumes the
//! dump is complete: every row the run touched and every reservation it
//! created (resolved ones included), which holds while the run is shorter
//! than the engine's idempotency window (one hour, design §1.3), since a
//! resolved reservation is retained as long as its reserve is remembered.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every replica's state after the run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalState {
    /// One entry per replica, in the order the harness collected them.
    pub replicas: Vec<ReplicaState>,
}

/// One replica's ledger, as far as the checker needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    /// The node the state was read from.
    pub node: String,
    /// Every stock row.
    pub rows: Vec<FinalRow>,
    /// Every retained reservation.
    pub reservations: Vec<FinalReservation>,
    /// Per-shard applied index and state digest (`Engine::state_digest`).
    #[serde(default)]
    pub shards: Vec<ShardDigest>,
    /// Request ids in the replica's idempotency tables, if the harness
    /// could read them; each id must appear at most once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_request_ids: Option<Vec<String>>,
}

/// One stock row `(sku, location)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRow {
    /// Product code.
    pub sku: String,
    /// Location.
    pub location: String,
    /// Physical units.
    pub on_hand: i64,
    /// Units held by pending reservations.
    pub held: i64,
    /// Units never promised (assumed constant during the run).
    #[serde(default)]
    pub safety_stock: i64,
    /// Units promisable beyond `on_hand` (assumed constant during the run).
    #[serde(default)]
    pub backorder_allowance: i64,
}

/// A reservation and where it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalReservation {
    /// Wire id (`"<shard>-<engine id>"`), as the reserve answered it.
    pub id: String,
    /// Where it is in its life.
    pub state: ReservationStatus,
    /// Its owner (cart or order) id, if the harness read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Its allocations, in order.
    pub lines: Vec<FinalLine>,
}

/// One allocation of a reservation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FinalLine {
    /// Product code.
    pub sku: String,
    /// Location.
    pub location: String,
    /// Units held (fixed at reserve time).
    pub quantity: i64,
    /// Units confirmed (0 unless the reservation is confirmed).
    #[serde(default)]
    pub confirmed: i64,
}

/// A reservation's state (design §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Holding stock.
    Pending,
    /// Turned into a sale.
    Confirmed,
    /// Given back by a client.
    Released,
    /// Given back by its TTL.
    Expired,
}

/// A shard's applied index and digest on one replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDigest {
    /// Shard number.
    pub shard: u32,
    /// Last applied log index.
    pub applied_index: u64,
    /// `Engine::state_digest`, hex.
    pub digest: String,
}

/// Units of one row in a replica's reservations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineTotals {
    /// Units held by pending reservations (what `held` must equal).
    pub pending: i64,
    /// Units sold by confirmed reservations (they left `on_hand`).
    pub sold: i64,
}

impl ReplicaState {
    /// Pending and sold units per row `(sku, location)`.
    pub fn line_totals(&self) -> BTreeMap<(String, String), LineTotals> {
        let mut totals: BTreeMap<(String, String), LineTotals> = BTreeMap::new();
        for r in &self.reservations {
            for l in &r.lines {
                let t = totals
                    .entry((l.sku.clone(), l.location.clone()))
                    .or_default();
                match r.state {
                    ReservationStatus::Pending => t.pending += l.quantity,
                    ReservationStatus::Confirmed => t.sold += l.confirmed,
                    ReservationStatus::Released | ReservationStatus::Expired => {}
                }
            }
        }
        totals
    }
}
