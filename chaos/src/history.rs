//! The recorded history of a chaos run: one [`Entry`] per JSON line.
//!
//! The unit of recording is an *attempt*: a client process invokes one
//! operation ([`Entry::Invoke`]) and later records how it ended
//! ([`Entry::Ok`], [`Entry::Refused`] or [`Entry::Unknown`]). A process has
//! at most one attempt outstanding, so a completion belongs to the latest
//! invoke of its process (as in Jepsen). A retry is a new attempt with the
//! same `request_id`; the checker merges attempts by request id
//! ([`crate::timeline`]). Faults the harness injects are entries too, so
//! one file tells the whole run in time order.
//!
//! Times are client-side monotonic microseconds from one clock shared by
//! every process of the harness (`time_us`); they only need to be
//! comparable with each other, not with the servers' clocks.
//!
//! The format is described for people in `docs/chaos-checker.md`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One line of a history file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Entry {
    /// A client process sent a request.
    Invoke {
        /// The client process (one outstanding attempt at a time).
        process: u64,
        /// When the request was sent.
        time_us: u64,
        /// What was asked.
        op: Op,
    },
    /// The request succeeded with `result`.
    Ok {
        /// The process whose outstanding attempt this completes.
        process: u64,
        /// When the answer arrived.
        time_us: u64,
        /// What the server answered.
        result: OpResult,
    },
    /// The server answered with a gRPC error status.
    Refused {
        /// The process whose outstanding attempt this completes.
        process: u64,
        /// When the answer arrived.
        time_us: u64,
        /// gRPC status code name as in the gRPC spec (`FAILED_PRECONDITION`).
        code: String,
        /// `google.rpc.ErrorInfo.reason` (`OUT_OF_STOCK`), empty if none.
        #[serde(default)]
        reason: String,
        /// `google.rpc.ErrorInfo.metadata` (for example `line` of an
        /// `OUT_OF_STOCK`), which lets the checker use the refusal.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        metadata: BTreeMap<String, String>,
    },
    /// No answer: a timeout or a broken connection. The request may or may
    /// not have been applied, now or later.
    Unknown {
        /// The process whose outstanding attempt this completes.
        process: u64,
        /// When the client gave up.
        time_us: u64,
        /// What the client saw, for people.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        error: String,
    },
    /// The harness injected or healed a fault.
    Fault {
        /// When.
        time_us: u64,
        /// What (`kill`, `pause`, `partition`, `wipe`, ...).
        kind: String,
        /// Which node(s).
        target: String,
        /// Whether the fault starts or ends here.
        #[serde(default)]
        phase: FaultPhase,
    },
}

/// Start or end of a fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultPhase {
    /// The fault begins (the default; instantaneous faults such as `kill`
    /// have only this).
    #[default]
    Start,
    /// The fault is healed.
    End,
}

/// An operation a client asked for. Mutating operations carry the
/// idempotency key the client reuses on retries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// Hold stock (all-or-nothing, every line at a fixed location).
    Reserve {
        /// Idempotency key.
        request_id: String,
        /// Requested lines.
        lines: Vec<ReserveLine>,
        /// The owner (cart or order) id sent, if the harness makes it
        /// unique per request: a reservation of unknown origin in the final
        /// state is then matched to its reserve exactly.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        /// The shard the request's SKUs hash to, if the harness knows it
        /// and they hash to one (used to group availability windows; a
        /// cross-shard reserve records the shard of each line instead).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<u32>,
        /// Hold duration asked for, for people (expiry is judged from the
        /// final state, not from clocks).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
    },
    /// Turn a pending hold into a sale, wholly or partly.
    Confirm {
        /// Idempotency key.
        request_id: String,
        /// From the reserve's answer.
        reservation_id: String,
        /// Units to confirm per allocation (in the order of the reserve's
        /// allocations); `None` confirms everything.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quantities: Option<Vec<i64>>,
    },
    /// Give a pending hold back.
    Release {
        /// Idempotency key.
        request_id: String,
        /// From the reserve's answer.
        reservation_id: String,
    },
    /// Move a pending hold's expiry.
    Extend {
        /// Idempotency key.
        request_id: String,
        /// From the reserve's answer.
        reservation_id: String,
        /// New hold duration from the entry's time.
        ttl_ms: u64,
    },
    /// Change a row's `on_hand` by `delta`.
    AdjustStock {
        /// Idempotency key.
        request_id: String,
        /// Product code.
        sku: String,
        /// Location.
        location: String,
        /// Units added (positive) or removed (negative).
        delta: i64,
        /// Compare-and-set: apply only if `on_hand` equals this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_on_hand: Option<i64>,
    },
    /// Read one row.
    ReadAvailability {
        /// Product code.
        sku: String,
        /// Location.
        location: String,
        /// A `STALE` read (served from a node's applied state): not
        /// linearizable by design, so the checker does not judge it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stale: bool,
    },
}

/// One requested line of a reserve.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReserveLine {
    /// Product code.
    pub sku: String,
    /// Location the units must come from.
    pub location: String,
    /// Units wanted.
    pub quantity: i64,
    /// The shard the SKU hashes to, recorded on the lines of a reserve
    /// whose lines fall in several shards: the server holds such a reserve
    /// as one part per shard ([`crate::parts`]), and the checker maps it
    /// onto those parts by these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
}

/// What a successful operation answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpResult {
    /// Answer to `Reserve`.
    Reserved {
        /// The new reservation's wire id (`"<shard>-<engine id>"`, or for
        /// a cross-shard reserve its parts' ids joined with `+`).
        reservation_id: String,
        /// What was held where, in order (part after part, in shard
        /// order, for a cross-shard reserve).
        allocations: Vec<Allocation>,
        /// When the hold lapses, ms since the Unix epoch (server clock).
        /// Holds expire in `(expires_at_ms, id)` order, which pins down
        /// which hold an expiry took.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at_ms: Option<u64>,
    },
    /// Answer to `Confirm`.
    Confirmed {
        /// Units turned into sales.
        units_confirmed: i64,
        /// Units given back in the same step.
        units_released: i64,
    },
    /// Answer to `Release`.
    Released {
        /// Units given back.
        units_released: i64,
    },
    /// Answer to `Extend`.
    Extended {
        /// New expiry, ms since the Unix epoch (server clock).
        expires_at_ms: u64,
    },
    /// Answer to `AdjustStock`.
    Adjusted {
        /// `on_hand` after the change.
        on_hand: i64,
        /// Units promisable after the change.
        available: i64,
    },
    /// Answer to `ReadAvailability` for an existing row.
    Availability {
        /// Physical units.
        on_hand: i64,
        /// Units held by pending reservations.
        held: i64,
        /// Units a new hold may take.
        available: i64,
        /// Raft log index the figures come from.
        as_of_index: u64,
    },
    /// Answer to `ReadAvailability` when the row does not exist.
    NoRow {},
}

/// Units held at one location by a reserve.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Allocation {
    /// Product code.
    pub sku: String,
    /// Location.
    pub location: String,
    /// Units held.
    pub quantity: i64,
    /// Units still promisable at the row right after this hold, if the
    /// server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_after: Option<i64>,
}

impl Entry {
    /// The entry's time stamp.
    pub fn time_us(&self) -> u64 {
        match self {
            Entry::Invoke { time_us, .. }
            | Entry::Ok { time_us, .. }
            | Entry::Refused { time_us, .. }
            | Entry::Unknown { time_us, .. }
            | Entry::Fault { time_us, .. } => *time_us,
        }
    }
}

impl Op {
    /// The idempotency key of a mutating operation; `None` for reads.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Op::Reserve { request_id, .. }
            | Op::Confirm { request_id, .. }
            | Op::Release { request_id, .. }
            | Op::Extend { request_id, .. }
            | Op::AdjustStock { request_id, .. } => Some(request_id),
            Op::ReadAvailability { .. } => None,
        }
    }

    /// The reservation a confirm, release or extend names.
    pub fn reservation_id(&self) -> Option<&str> {
        match self {
            Op::Confirm { reservation_id, .. }
            | Op::Release { reservation_id, .. }
            | Op::Extend { reservation_id, .. } => Some(reservation_id),
            _ => None,
        }
    }

    /// Short name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Reserve { .. } => "reserve",
            Op::Confirm { .. } => "confirm",
            Op::Release { .. } => "release",
            Op::Extend { .. } => "extend",
            Op::AdjustStock { .. } => "adjust_stock",
            Op::ReadAvailability { .. } => "read_availability",
        }
    }

    /// Whether `result` is an answer this operation can have: a mismatch
    /// means the harness paired a completion with the wrong invoke.
    pub fn accepts(&self, result: &OpResult) -> bool {
        matches!(
            (self, result),
            (Op::Reserve { .. }, OpResult::Reserved { .. })
                | (Op::Confirm { .. }, OpResult::Confirmed { .. })
                | (Op::Release { .. }, OpResult::Released { .. })
                | (Op::Extend { .. }, OpResult::Extended { .. })
                | (Op::AdjustStock { .. }, OpResult::Adjusted { .. })
                | (
                    Op::ReadAvailability { .. },
                    OpResult::Availability { .. } | OpResult::NoRow {}
                )
        )
    }
}
