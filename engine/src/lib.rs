//! The Holdfast reservation ledger: a pure, deterministic state machine.
//!
//! One [`Engine`] holds one shard's stock rows, reservations, idempotency
//! records and customer limits in memory. [`Engine::apply`] takes a
//! [`Command`] and the [`Stamp`] of its log entry and returns an
//! [`Outcome`] plus typed [`Event`]s. Nothing here does I/O, reads a clock,
//! draws a random number or depends on hash-map iteration order, so replicas
//! applying the same log reach the same bytes ([`Engine::state_digest`]).
//!
//! The promises (design §1) this crate keeps, and checks in release builds
//! where a breach would be silent:
//! 1. no oversell: a row never holds more than `on_hand + backorder_allowance`;
//! 2. conservation: a row's `held` is the sum of its pending lines;
//! 3. at most once: a request id is applied once; a reservation resolves once;
//! 5. determinism: same log, same state.
#![deny(missing_docs)]

mod apply_reserve;
mod apply_resolve;
mod apply_stock;
pub mod board;
mod catalog;
mod chunked;
mod codec;
pub mod command;
mod customer_limits;
mod dedup;
mod engine;
pub mod event;
mod expiry;
pub mod ids;
pub mod limits;
pub mod outcome;
pub mod reservation;
mod shard;
pub mod snapshot;
pub mod stock;

pub use board::{Scarcity, StockBoard};
pub use catalog::Location;
pub use codec::DecodeError;
pub use command::{
    AdjustStock, Command, CommandKind, Confirm, CustomerLimit, ExpireUpTo, Extend, FillPolicy,
    LimitChange, Release, Reserve, ReserveLine, SetPolicy, UpsertLocation,
};
pub use dedup::DedupConfig;
pub use engine::{Availability, Engine, EngineConfig};
pub use event::{Event, ReleaseCause};
pub use ids::{LocationId, RequestId, ReservationId, RowId, SkuId, Stamp};
pub use outcome::{InvalidArgument, Outcome, Refusal, Success};
pub use reservation::{Line, Reservation, ReservationState};
pub use shard::shard_of;
pub use snapshot::SnapshotError;
pub use stock::Row;
