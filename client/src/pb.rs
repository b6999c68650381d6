//! Code generated from `proto/` by `build.rs` (prost messages, tonic client
//! and server stubs). Public so that a caller can reach a field or RPC the
//! typed API does not cover yet; the typed API is the stable surface.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The public API, `holdfast.inventory.v1`.
pub mod inventory {
    tonic::include_proto!("holdfast.inventory.v1");
}

/// Node-to-node messages and the `Admin` service, `holdfast.internal.v1`.
pub mod internal {
    tonic::include_proto!("holdfast.internal.v1");
}
