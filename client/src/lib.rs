//! The Rust client of Holdfast, and the `holdfast` CLI built on it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), holdfast_client::Error> {
//! use holdfast_client::{Client, ClientOptions, Confirm, Reserve};
//! let nodes = vec!["127.0.0.1:7401".to_string(), "127.0.0.1:7402".to_string()];
//! let client = Client::connect(&nodes, ClientOptions::default()).await?;
//! let held = client
//!     .reserve(Reserve::new("cart-1", "customer-1").line_at("SKU-1", 2, "berlin"))
//!     .await?;
//! client.confirm(Confirm::all(&held.reservation_id)).await?;
//! # Ok(()) }
//! ```
//!
//! What the client adds to plain gRPC stubs:
//! - **Routing** (`routing`): each call goes straight to the leader of its
//!   shard (`shard_of(sku, shards)`, the server's function), learned from
//!   `Admin.ClusterStatus` and from `leader_hint`s, or to any node, which
//!   forwards.
//! - **Retries** (`retry`, `client`): `UNAVAILABLE`, `ABORTED`,
//!   `RESOURCE_EXHAUSTED` and lost or timed-out attempts are retried with
//!   capped exponential backoff and jitter, within the call's deadline,
//!   always with the **same request id**, so a retried mutation applies at
//!   most once (design §1.3).
//! - **Typed errors** (`error`): every refusal of the ledger as its own
//!   variant with its figures ([`Error::OutOfStock`] has the SKU, location,
//!   available units and log index).
//!
//! Dependencies: the generated code comes from `proto/` by this crate's
//! `build.rs` rather than from `holdfast-server`, so a program that calls
//! a cluster links neither RocksDB nor raft-rs. The engine's `shard_of` is
//! reimplemented (one line of XXH3) and pinned to it by a test.
//!
//! Growing the API: a new unary RPC (`GetReservation`, `ReserveBatch`) is
//! one method that builds its message, names its route and hands an
//! attempt closure to the shared retry loop. A paginated list returns its
//! page token to the caller. A server stream (`WatchEvents`) will be a
//! `Stream` that remembers the last `(shard, index, seq)` it yielded and,
//! when the stream breaks, re-opens it from there through the same routing
//! and backoff, so the caller sees one gap-free stream.
#![deny(missing_docs)]

mod client;
pub mod error;
pub mod ids;
pub mod pb;
pub mod retry;
pub mod routing;
mod types;
pub mod watch;

pub use client::{Client, ClientOptions, ClientStats};
pub use error::Error;
pub use ids::new_request_id;
pub use retry::RetryPolicy;
pub use types::*;
pub use watch::{Event, EventKind, EventStream, WatchEvents};
