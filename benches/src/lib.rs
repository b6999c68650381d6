//! Load generation and measurement for Holdfast: the load harness
//! `holdfast-bench` ([`bench`]: Holdfast beside PostgreSQL, Redis and the
//! no-op gRPC floor), the engine demo, the cluster demo, `cluster-load`
//! (failover and driver diagnostics) and the restart-time bench
//! (`recovery-time`).
#![deny(missing_docs)]

pub mod bench;
pub mod local;
