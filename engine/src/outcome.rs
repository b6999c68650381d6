//! What applying a command answers: a success or a precise refusal.
//!
//! Outcomes are small `Copy` values so the idempotency table can store them
//! without allocation and replay them byte for byte. Detail that a reply
//! needs beyond them (a reservation's allocations, names of SKUs and
//! locations) is read from the engine by id: rows, locations and retained
//! reservations never change identity, so the same outcome always describes
//! the same thing.

use crate::ids::{LocationId, ReservationId, RowId, SkuId};
use crate::reservation::ReservationState;
use std::fmt;

/// The answer to one command.
pub type Outcome = Result<Success, Refusal>;

/// A command that was applied and changed the state as described.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Success {
    /// The reservation now holds stock; its lines say what was held where
    /// (`Engine::reservation`).
    Reserved {
        /// The new reservation.
        reservation: ReservationId,
    },
    /// The reservation is confirmed; unconfirmed units went back to stock.
    Confirmed {
        /// The reservation.
        reservation: ReservationId,
        /// Units turned into sales (left `on_hand`).
        units_confirmed: u64,
        /// Units given back to availability in the same step.
        units_released: u64,
    },
    /// The reservation was released.
    Released {
        /// The reservation.
        reservation: ReservationId,
        /// Units given back.
        units_released: u64,
    },
    /// The reservation's expiry moved.
    Extended {
        /// The reservation.
        reservation: ReservationId,
        /// The new expiry, ms since the Unix epoch.
        expires_at_ms: u64,
    },
    /// A row's stock changed.
    Adjusted {
        /// The row (created if it was new).
        row: RowId,
        /// `on_hand` after the change.
        on_hand: i64,
        /// Units promisable after the change.
        available: i64,
    },
    /// A location was created or changed.
    LocationUpserted {
        /// Its id.
        location: LocationId,
        /// Whether it is new.
        created: bool,
    },
    /// Policy applied.
    PolicySet {
        /// The SKU the policy belongs to.
        sku: SkuId,
    },
    /// Expiry ran.
    Expired {
        /// Reservations that expired.
        reservations: u64,
        /// Units returned to availability.
        units_released: u64,
    },
}

/// Why a command changed nothing. Each maps to one gRPC status (design §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not enough promisable stock for a line (`FAILED_PRECONDITION`).
    OutOfStock {
        /// Index of the request line that could not be held.
        line: u16,
        /// The location asked for or, with automatic allocation, the best
        /// candidate; `None` when the SKU is stocked nowhere.
        location: Option<LocationId>,
        /// Units asked for.
        requested: u64,
        /// Units promisable there (all candidate locations if split was
        /// allowed); may be negative after a stock write-off.
        available: i64,
    },
    /// A per-customer limit would be exceeded (`FAILED_PRECONDITION`).
    LimitExceeded {
        /// Index of the request line.
        line: u16,
        /// The limit.
        limit: u64,
        /// Units the customer already holds or bought in this campaign.
        used: u64,
        /// Units this request adds.
        requested: u64,
    },
    /// The reservation is no longer pending (`FAILED_PRECONDITION`).
    NotPending {
        /// Its final state.
        state: ReservationState,
    },
    /// No such reservation, or it was resolved so long ago that it has been
    /// forgotten (`NOT_FOUND`).
    UnknownReservation,
    /// A location name that was never created (`NOT_FOUND`).
    UnknownLocation {
        /// Index of the request line, if the name came from a line.
        line: Option<u16>,
    },
    /// The request id was used before with a different body (`ALREADY_EXISTS`).
    DuplicateRequestMismatch,
    /// `expected_on_hand` did not match (`FAILED_PRECONDITION`; ERP sync
    /// re-reads and retries).
    ExpectedOnHandMismatch {
        /// What the caller expected.
        expected: i64,
        /// What the row has.
        actual: i64,
    },
    /// The change would leave more units held than the row can ever supply
    /// (`held > on_hand + backorder_allowance`), breaking design §1.1
    /// (`FAILED_PRECONDITION`).
    HeldExceedsStock {
        /// Units held on the row.
        held: i64,
        /// `on_hand + backorder_allowance` after the change.
        supply: i64,
    },
    /// A field is outside its bounds (`INVALID_ARGUMENT`).
    InvalidArgument(InvalidArgument),
}

/// A field that failed validation, named as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidArgument {
    /// API field name (`quantity`, `ttl_ms`, ...).
    pub field: &'static str,
    /// Index of the request line (or confirm quantity) it belongs to.
    pub line: Option<u16>,
    /// What is wrong with it.
    pub why: &'static str,
}

impl fmt::Display for InvalidArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "lines[{line}].{} {}", self.field, self.why),
            None => write!(f, "{} {}", self.field, self.why),
        }
    }
}

impl From<InvalidArgument> for Refusal {
    fn from(e: InvalidArgument) -> Self {
        Refusal::InvalidArgument(e)
    }
}
