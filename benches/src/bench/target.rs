//! [`Target`]: one system under load, as the load loops see it. Every
//! system answers the same operations (reserve an [`Order`], confirm or
//! release it, expire due holds) with the same [`Reply`]s, so a loop is
//! written once and run against each.

use crate::bench::grpc::{Attempts, GrpcTarget};
use crate::bench::peers::postgres::PgTarget;
use crate::bench::peers::redis::RedisTarget;
use crate::bench::scenario::Order;

/// The answer to one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Reserved; the id to confirm or release it with.
    Held(String),
    /// Confirmed or released.
    Done,
    /// Refused by the ledger's rules (out of stock, not pending);
    /// `prefilter`: by Holdfast's sold-out pre-filter, without a Raft
    /// round trip.
    Refused {
        /// Whether the node refused it before the log (design §5 layer 1).
        prefilter: bool,
    },
    /// Refused to protect the server (`RESOURCE_EXHAUSTED`, admission):
    /// fast and retryable.
    Shed,
    /// Anything else: transport trouble, timeouts, bugs.
    Error(String),
}

/// Counts of what a batch of items got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReply {
    /// Items reserved.
    pub held: u64,
    /// Items refused by the ledger.
    pub refused: u64,
    /// Items shed (`RESOURCE_EXHAUSTED`).
    pub shed: u64,
    /// Items that failed otherwise.
    pub errors: u64,
}

/// A system the loops can call.
#[derive(Clone)]
pub enum Target {
    /// Holdfast or the gRPC floor.
    Grpc(GrpcTarget),
    /// PostgreSQL.
    Postgres(PgTarget),
    /// Redis with Lua.
    Redis(RedisTarget),
}

impl Target {
    /// Holds `order` under request id `id` for `ttl_ms`; `caller` picks
    /// the peer connection.
    pub async fn reserve(&self, caller: usize, id: &str, order: &Order, ttl_ms: u64) -> Reply {
        match self {
            Target::Grpc(t) => t.reserve(caller, id, order, ttl_ms).await,
            Target::Postgres(t) => t.reserve(caller, id, order, ttl_ms).await,
            Target::Redis(t) => t.reserve(caller, id, order, ttl_ms).await,
        }
    }

    /// [`Target::reserve`] as a buyer's client makes it: Holdfast's
    /// attempts refused by admission, or not answered by the ledger, are
    /// sent again with the same id until `deadline`
    /// ([`GrpcTarget::reserve_until_answered`]); the peers answer in one
    /// call.
    pub async fn reserve_until_answered(
        &self,
        caller: usize,
        id: &str,
        order: &Order,
        ttl_ms: u64,
        deadline: std::time::Instant,
    ) -> Attempts {
        match self {
            Target::Grpc(t) => {
                t.reserve_until_answered(caller, id, order, ttl_ms, deadline)
                    .await
            }
            _ => {
                let sent = std::time::Instant::now();
                let reply = self.reserve(caller, id, order, ttl_ms).await;
                Attempts {
                    reply,
                    last_call: sent.elapsed(),
                    ..Attempts::default()
                }
            }
        }
    }

    /// Many reservations in one call, where the system has such a call
    /// (`None`: it has not).
    pub async fn reserve_batch(
        &self,
        items: &[(String, Order)],
        ttl_ms: u64,
    ) -> Option<BatchReply> {
        match self {
            Target::Grpc(t) => Some(t.reserve_batch(items, ttl_ms).await),
            Target::Postgres(_) | Target::Redis(_) => None,
        }
    }

    /// Confirms reservation `held` (the id a [`Reply::Held`] gave);
    /// `request_id` is the confirm's own idempotency key.
    pub async fn confirm(&self, caller: usize, held: &str, request_id: &str) -> Reply {
        match self {
            Target::Grpc(t) => t.confirm(held, request_id).await,
            Target::Postgres(t) => t.resolve(caller, held, 1).await,
            Target::Redis(t) => t.resolve(caller, held, "confirmed").await,
        }
    }

    /// Releases reservation `held`.
    pub async fn release(&self, caller: usize, held: &str, request_id: &str) -> Reply {
        match self {
            Target::Grpc(t) => t.release(held, request_id).await,
            Target::Postgres(t) => t.resolve(caller, held, 2).await,
            Target::Redis(t) => t.resolve(caller, held, "released").await,
        }
    }

    /// Whether holds lapse by themselves (Holdfast proposes `ExpireUpTo`
    /// on its own); otherwise the harness runs [`Target::sweep`] while
    /// the lifecycle scenario runs, as such a service would run a job.
    pub fn expires_by_itself(&self) -> bool {
        matches!(self, Target::Grpc(_))
    }

    /// Expires some due holds; how many.
    pub async fn sweep(&self) -> Result<u64, String> {
        match self {
            Target::Grpc(_) => Ok(0),
            Target::Postgres(t) => t.sweep().await,
            Target::Redis(t) => t.sweep().await,
        }
    }

    /// Gets the flash row ready (PostgreSQL's two systems share a server,
    /// so the second one's sale needs the row back at 100 units).
    pub async fn reset_flash(&self) -> Result<(), String> {
        match self {
            Target::Postgres(t) => t.reset_flash().await,
            Target::Grpc(_) | Target::Redis(_) => Ok(()),
        }
    }
}
