//! Typed events: every unit that moves, and every change of a reservation,
//! produces one. They feed the change stream (design §3 "Events"): the server
//! numbers them `(shard, log_index, seq)` in the order the engine emits them.

use crate::ids::{LocationId, ReservationId, RowId, SkuId};

/// Why units returned from a hold to availability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseCause {
    /// The client released the reservation.
    Released,
    /// A partial confirm gave back the unconfirmed rest.
    ConfirmRemainder,
    /// The hold's TTL ran out.
    Expired,
}

/// One state change, in apply order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Units held on a row for a reservation.
    Held {
        /// The reservation.
        reservation: ReservationId,
        /// The row.
        row: RowId,
        /// Units.
        quantity: u64,
        /// Promisable units left on the row.
        available_after: i64,
    },
    /// Held units became a sale (left `on_hand`).
    Confirmed {
        /// The reservation.
        reservation: ReservationId,
        /// The row.
        row: RowId,
        /// Units.
        quantity: u64,
    },
    /// Held units returned to availability.
    Released {
        /// The reservation.
        reservation: ReservationId,
        /// The row.
        row: RowId,
        /// Units.
        quantity: u64,
        /// Why.
        cause: ReleaseCause,
        /// Promisable units on the row afterwards.
        available_after: i64,
    },
    /// A pending reservation's expiry moved.
    Extended {
        /// The reservation.
        reservation: ReservationId,
        /// New expiry, ms since the Unix epoch.
        expires_at_ms: u64,
    },
    /// `on_hand` of a row changed.
    Adjusted {
        /// The row.
        row: RowId,
        /// Signed change.
        delta: i64,
        /// `on_hand` afterwards.
        on_hand: i64,
    },
    /// A location was created or changed.
    LocationUpserted {
        /// The location.
        location: LocationId,
    },
    /// A row's safety stock or backorder allowance changed.
    RowPolicySet {
        /// The row.
        row: RowId,
        /// New safety stock.
        safety_stock: i64,
        /// New backorder allowance.
        backorder_allowance: i64,
    },
    /// A SKU's per-customer limit changed (`None`: removed).
    CustomerLimitSet {
        /// The SKU.
        sku: SkuId,
        /// New limit in units, if any.
        max_units: Option<u64>,
        /// Campaign number.
        campaign: u32,
    },
}
