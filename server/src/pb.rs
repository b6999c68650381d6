//! Generated protobuf and gRPC code (see `build.rs`).
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The public API, `holdfast.inventory.v1`.
pub mod inventory {
    tonic::include_proto!("holdfast.inventory.v1");
}

/// Node-to-node messages and the log entry format, `holdfast.internal.v1`.
pub mod internal {
    tonic::include_proto!("holdfast.internal.v1");
}

/// Encoded `FileDescriptorSet` of every proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("holdfast_descriptor");
