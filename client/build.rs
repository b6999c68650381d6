//! Compiles the public API (`holdfast.inventory.v1`) and the `Admin`
//! service (`holdfast.internal.v1`, for `ClusterStatus`) from `proto/`.
//!
//! The client generates its own code rather than using
//! `holdfast_server::pb`: depending on the server crate would link RocksDB,
//! raft-rs and the whole node into every program that only wants to call a
//! cluster. Both crates compile the same `.proto` files, so the wire format
//! cannot drift. Server stubs are generated too, for the client's tests
//! (in-process fake nodes); they cost no dependency. Needs `protoc`
//! (Debian: protobuf-compiler, installed by scripts/setup.sh).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../proto";
    let protos = [
        "../proto/holdfast/inventory/v1/inventory.proto",
        "../proto/holdfast/internal/v1/raft.proto",
    ];
    tonic_prost_build::configure().compile_protos(&protos, &[root])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
