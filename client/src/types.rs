//! The typed requests and answers of the API (`proto/holdfast/inventory/v1`
//! and `Admin.ClusterStatus`), independent of the generated code.
//!
//! Every mutating request has `request_id: Option<String>`: `None` lets the
//! client make one (and the answer reports it), `Some` uses the caller's
//! own, for retries across process restarts. Bounds (lines per reserve,
//! TTL range, name lengths) are the server's, in the proto comments; the
//! server checks them and answers `InvalidArgument` naming the field.

use crate::pb::inventory as pb;
use serde::Serialize;

/// Hold duration of a reservation when the caller does not choose one, ms.
pub const RESERVE_TTL_MS_DEFAULT: u64 = 10 * 60 * 1_000;

macro_rules! request_id_setter {
    ($($t:ty),*) => {$(
        impl $t {
            /// Uses `id` as the request id (the idempotency key) instead of
            /// a generated one.
            pub fn request_id(mut self, id: impl Into<String>) -> Self {
                self.request_id = Some(id.into());
                self
            }
        }
    )*};
}

request_id_setter!(
    Reserve,
    Confirm,
    Release,
    Extend,
    AdjustStock,
    UpsertLocation,
    SetPolicy
);

/// How a multi-line reservation is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Fill {
    /// Every line in full, or nothing.
    #[default]
    AllOrNothing,
    /// As much of each line as is available; refused only if nothing can
    /// be held.
    Partial,
}

/// One requested line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// Product code.
    pub sku: String,
    /// Units wanted.
    pub quantity: i64,
    /// A fixed location, or `None` to let the allocation policy choose.
    pub location: Option<String>,
}

/// `Reserve`: hold stock for a cart or order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserve {
    /// Idempotency key; generated when `None`.
    pub request_id: Option<String>,
    /// Cart or order that owns the hold.
    pub owner_id: String,
    /// Customer, for per-customer limits.
    pub customer_id: String,
    /// The lines (all of one shard in this server version).
    pub lines: Vec<Line>,
    /// Hold duration, ms.
    pub ttl_ms: u64,
    /// All or nothing (default), or partial.
    pub fill: Fill,
    /// Whether a line may be taken from several locations.
    pub allow_split: bool,
    /// Ship-to region, preferred by the allocation.
    pub region: Option<String>,
}

impl Reserve {
    /// A reservation for `owner_id` and `customer_id` with no lines yet and
    /// the default TTL.
    pub fn new(owner_id: impl Into<String>, customer_id: impl Into<String>) -> Reserve {
        Reserve {
            request_id: None,
            owner_id: owner_id.into(),
            customer_id: customer_id.into(),
            lines: Vec::new(),
            ttl_ms: RESERVE_TTL_MS_DEFAULT,
            fill: Fill::AllOrNothing,
            allow_split: false,
            region: None,
        }
    }

    /// Adds a line whose location the allocation policy chooses.
    pub fn line(mut self, sku: impl Into<String>, quantity: i64) -> Reserve {
        self.lines.push(Line {
            sku: sku.into(),
            quantity,
            location: None,
        });
        self
    }

    /// Adds a line taken from `location`.
    pub fn line_at(
        mut self,
        sku: impl Into<String>,
        quantity: i64,
        location: impl Into<String>,
    ) -> Reserve {
        self.lines.push(Line {
            sku: sku.into(),
            quantity,
            location: Some(location.into()),
        });
        self
    }

    /// Sets the hold duration, ms.
    pub fn ttl_ms(mut self, ttl_ms: u64) -> Reserve {
        self.ttl_ms = ttl_ms;
        self
    }

    /// Sets the fill policy.
    pub fn fill(mut self, fill: Fill) -> Reserve {
        self.fill = fill;
        self
    }

    pub(crate) fn to_pb(&self, request_id: String) -> pb::ReserveRequest {
        pb::ReserveRequest {
            request_id,
            owner_id: self.owner_id.clone(),
            customer_id: self.customer_id.clone(),
            lines: self
                .lines
                .iter()
                .map(|l| pb::ReserveLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    location: l.location.clone(),
                })
                .collect(),
            ttl_ms: self.ttl_ms,
            policy: match self.fill {
                Fill::AllOrNothing => pb::FillPolicy::AllOrNothing,
                Fill::Partial => pb::FillPolicy::Partial,
            } as i32,
            allow_split: self.allow_split,
            region: self.region.clone(),
        }
    }
}

/// Units held at one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allocation {
    /// Product code.
    pub sku: String,
    /// Where the units are held.
    pub location: String,
    /// Units held.
    pub quantity: i64,
    /// Units still promisable there right after this hold.
    pub available_after: i64,
}

/// The answer to `Reserve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    /// The request id the call used (a retry with it returns this answer).
    pub request_id: String,
    /// Id for Confirm, Release and Extend.
    pub reservation_id: String,
    /// What was held where.
    pub allocations: Vec<Allocation>,
    /// When the hold lapses, ms since the Unix epoch.
    pub expires_at_ms: u64,
}

impl Reservation {
    pub(crate) fn from_pb(request_id: String, r: pb::ReserveResponse) -> Reservation {
        Reservation {
            request_id,
            reservation_id: r.reservation_id,
            allocations: r
                .allocations
                .into_iter()
                .map(|a| Allocation {
                    sku: a.sku,
                    location: a.location,
                    quantity: a.quantity,
                    available_after: a.available_after,
                })
                .collect(),
            expires_at_ms: r.expires_at_ms,
        }
    }
}

/// `Confirm`: turn a pending reservation into a sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// Idempotency key; generated when `None`.
    pub request_id: Option<String>,
    /// From [`Reservation::reservation_id`].
    pub reservation_id: String,
    /// Units per allocation, in order; empty confirms everything.
    pub quantities: Vec<i64>,
}

impl Confirm {
    /// Confirms every held unit.
    pub fn all(reservation_id: impl Into<String>) -> Confirm {
        Confirm {
            request_id: None,
            reservation_id: reservation_id.into(),
            quantities: Vec::new(),
        }
    }

    /// Confirms `quantities[i]` units of allocation `i`, releasing the rest.
    pub fn partly(reservation_id: impl Into<String>, quantities: Vec<i64>) -> Confirm {
        Confirm {
            quantities,
            ..Confirm::all(reservation_id)
        }
    }
}

/// The answer to `Confirm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confirmed {
    /// The request id the call used.
    pub request_id: String,
    /// The reservation.
    pub reservation_id: String,
    /// Units turned into sales.
    pub units_confirmed: i64,
    /// Units given back in the same step.
    pub units_released: i64,
}

/// `Release`: give a pending reservation's units back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Idempotency key; generated when `None`.
    pub request_id: Option<String>,
    /// The reservation.
    pub reservation_id: String,
}

impl Release {
    /// Releases `reservation_id`.
    pub fn new(reservation_id: impl Into<String>) -> Release {
        Release {
            request_id: None,
            reservation_id: reservation_id.into(),
        }
    }
}

/// The answer to `Release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Released {
    /// The request id the call used.
    pub request_id: String,
    /// The reservation.
    pub reservation_id: String,
    /// Units given back.
    pub units_released: i64,
}

/// `Extend`: move a pending reservation's expiry to now + `ttl_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extend {
    /// Idempotency key; generated when `None`.
    pub request_id: Option<String>,
    /// The reservation.
    pub reservation_id: String,
    /// New hold duration from now, ms.
    pub ttl_ms: u64,
}

impl Extend {
    /// Extends `reservation_id` to now + `ttl_ms`.
    pub fn new(reservation_id: impl Into<String>, ttl_ms: u64) -> Extend {
        Extend {
            request_id: None,
            reservation_id: reservation_id.into(),
            ttl_ms,
        }
    }
}

/// The answer to `Extend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extended {
    /// The request id the call used.
    pub request_id: String,
    /// The reservation.
    pub reservation_id: String,
    /// New expiry, ms since the Unix epoch.
    pub expires_at_ms: u64,
}

/// `AdjustStock`: receive, count or write off stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustStock {
    /// Idempotency key; generated when `None`.
    pub request_id: Option<String>,
    /// Product code.
    pub sku: String,
    /// An existing location.
    pub location: String,
    /// Units added (positive) or removed (negative).
    pub delta: i64,
    /// Apply only if on hand is exactly this now (compare-and-set).
    pub expected_on_hand: Option<i64>,
}

impl AdjustStock {
    /// Changes on hand of (`sku`, `location`) by `delta`.
    pub fn new(sku: impl Into<String>, location: impl Into<String>, delta: i64) -> AdjustStock {
        AdjustStock {
            request_id: None,
            sku: sku.into(),
            location: location.into(),
            delta,
            expected_on_hand: None,
        }
    }

    /// Applies only if on hand is `expected` now.
    pub fn expect_on_hand(mut self, expected: i64) -> AdjustStock {
        self.expected_on_hand = Some(expected);
        self
    }
}

/// The answer to `AdjustStock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockAdjusted {
    /// The request id the call used.
    pub request_id: String,
    /// On hand after the change.
    pub on_hand: i64,
    /// Units promisable after the change.
    pub available: i64,
}

/// `UpsertLocation`: create or change a location (on every shard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertLocation {
    /// Idempotency key; generated when `None`.
    pub request_id: Option<String>,
    /// Location name.
    pub location: String,
    /// Region.
    pub region: String,
    /// Allocation rank: lower is preferred.
    pub priority: u32,
}

impl UpsertLocation {
    /// Location `location` in `region` with rank `priority`.
    pub fn new(location: impl Into<String>, region: impl Into<String>, priority: u32) -> Self {
        UpsertLocation {
            request_id: None,
            location: location.into(),
            region: region.into(),
            priority,
        }
    }
}

/// The answer to `UpsertLocation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocationUpserted {
    /// The request id the call used.
    pub request_id: String,
    /// Whether the location is new.
    pub created: bool,
}

/// What `SetPolicy` does to a SKU's per-customer limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LimitChange {
    /// Leave it.
    #[default]
    Keep,
    /// Remove it.
    Clear,
    /// Set it: `max_units` per customer under campaign `campaign` (a new
    /// campaign number starts every count afresh).
    Set {
        /// Units a customer may hold plus buy.
        max_units: u64,
        /// Campaign number.
        campaign: u32,
    },
}

/// `SetPolicy`: row safety stock and backorder allowance, and the SKU's
/// per-customer limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetPolicy {
    /// Idempotency key; generated when `None`.
    pub request_id: Option<String>,
    /// Product code.
    pub sku: String,
    /// The row's location; required for the row fields.
    pub location: Option<String>,
    /// Units never promised.
    pub safety_stock: Option<i64>,
    /// Units promisable beyond on hand.
    pub backorder_allowance: Option<i64>,
    /// The per-customer limit.
    pub customer_limit: LimitChange,
}

impl SetPolicy {
    /// Changes nothing yet about `sku`.
    pub fn new(sku: impl Into<String>) -> SetPolicy {
        SetPolicy {
            request_id: None,
            sku: sku.into(),
            location: None,
            safety_stock: None,
            backorder_allowance: None,
            customer_limit: LimitChange::Keep,
        }
    }

    pub(crate) fn to_pb(&self, request_id: String) -> pb::SetPolicyRequest {
        let (customer_limit, clear_customer_limit) = match self.customer_limit {
            LimitChange::Keep => (None, false),
            LimitChange::Clear => (None, true),
            LimitChange::Set {
                max_units,
                campaign,
            } => (
                Some(pb::CustomerLimit {
                    max_units,
                    campaign,
                }),
                false,
            ),
        };
        pb::SetPolicyRequest {
            request_id,
            sku: self.sku.clone(),
            location: self.location.clone(),
            safety_stock: self.safety_stock,
            backorder_allowance: self.backorder_allowance,
            customer_limit,
            clear_customer_limit,
        }
    }
}

/// The answer to `SetPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySet {
    /// The request id the call used.
    pub request_id: String,
}

/// Read consistency of `GetAvailability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Consistency {
    /// Confirmed by the shard leader's quorum: sees every acknowledged
    /// change.
    #[default]
    Linearizable,
    /// The answering node's applied state: cheaper, may lag.
    Stale,
}

/// A row to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowKey {
    /// Product code.
    pub sku: String,
    /// A location, or `None` for every location of the SKU.
    pub location: Option<String>,
}

impl RowKey {
    /// Every location of `sku`.
    pub fn sku(sku: impl Into<String>) -> RowKey {
        RowKey {
            sku: sku.into(),
            location: None,
        }
    }

    /// The row (`sku`, `location`).
    pub fn at(sku: impl Into<String>, location: impl Into<String>) -> RowKey {
        RowKey {
            sku: sku.into(),
            location: Some(location.into()),
        }
    }
}

/// Where a reservation stands (`GetReservation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Holding stock.
    Pending,
    /// Turned into a sale (possibly partly).
    Confirmed,
    /// Given back by the client.
    Released,
    /// Given back because its TTL ran out.
    Expired,
    /// A state this version of the client does not know.
    Unknown,
}

/// One allocation of a reservation read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReservedLine {
    /// Product code.
    pub sku: String,
    /// Location the units are held at.
    pub location: String,
    /// Units held at reserve time.
    pub quantity: i64,
    /// Units confirmed.
    pub confirmed: i64,
}

/// A reservation as the ledger has it (`GetReservation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReservationView {
    /// Its id.
    pub reservation_id: String,
    /// Where it stands.
    pub state: ReservationState,
    /// Owner (cart or order) id.
    pub owner_id: String,
    /// Customer id.
    pub customer_id: String,
    /// Allocations, in order.
    pub lines: Vec<ReservedLine>,
    /// Log time of the reserve, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When the hold lapses (or lapsed), ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Raft log index of the shard state the answer comes from.
    pub as_of_index: u64,
}

/// Stock of one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowAvailability {
    /// Product code.
    pub sku: String,
    /// Location.
    pub location: String,
    /// Physical units.
    pub on_hand: i64,
    /// Units held by pending reservations.
    pub held: i64,
    /// Units a new hold may take.
    pub available: i64,
    /// Raft log index of the shard state the figures come from.
    pub as_of_index: u64,
}

/// One shard as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardStatus {
    /// Shard id.
    pub shard: u32,
    /// Leader's node id, if the node knows one.
    pub leader: Option<u64>,
    /// Raft term.
    pub term: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Reservations retained by the ledger.
    pub reservations: u64,
    /// State digest (hex), when asked for.
    pub digest: Option<String>,
}

/// One node's answer to `ClusterStatus`, or why it gave none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// The address the client dialled.
    pub address: String,
    /// The node's id, if it answered.
    pub node_id: Option<u64>,
    /// Its shards, if it answered.
    pub shards: Vec<ShardStatus>,
    /// Why it did not answer.
    pub error: Option<crate::Error>,
}

/// Every known node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// One entry per node the client knows, in the order it learned them.
    pub nodes: Vec<NodeStatus>,
}

impl ClusterStatus {
    /// The leader of `shard` as reported in the highest term, with its
    /// address when a node with that id answered.
    pub fn leader_of(&self, shard: u32) -> Option<(u64, Option<&str>)> {
        let (_, leader) = self
            .nodes
            .iter()
            .flat_map(|n| n.shards.iter())
            .filter(|s| s.shard == shard)
            .filter_map(|s| s.leader.map(|l| (s.term, l)))
            .max()?;
        let address = self
            .nodes
            .iter()
            .find(|n| n.node_id == Some(leader))
            .map(|n| n.address.as_str());
        Some((leader, address))
    }
}

/// Whose reservations a listing wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    /// Cart or order id.
    Owner(String),
    /// Customer id.
    Customer(String),
}

/// A `ListReservations` call: one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListReservations {
    /// Whose reservations.
    pub party: Party,
    /// Only this state (`None`: every state).
    pub state: Option<ReservationState>,
    /// Most reservations in the page, 1..=1,000 (0: the server's 100).
    pub page_size: u32,
    /// `next_page_token` of the previous page (`None`: the first page).
    pub page_token: Option<String>,
    /// Linearizable (default) or stale.
    pub consistency: Consistency,
}

impl ListReservations {
    /// The first page of `party`'s reservations, every state, linearizable.
    pub fn of(party: Party) -> Self {
        ListReservations {
            party,
            state: None,
            page_size: 0,
            page_token: None,
            consistency: Consistency::Linearizable,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReservationPage {
    /// The reservations of this page (maybe fewer than asked, even none,
    /// while more follow).
    pub reservations: Vec<ReservationView>,
    /// Pass back to get the next page; `None` when the listing is done.
    pub next_page_token: Option<String>,
}
