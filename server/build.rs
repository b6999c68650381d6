//! Compiles the protos under `proto/` into Rust (prost messages and tonic
//! services). Needs `protoc` (Debian: protobuf-compiler, installed by
//! scripts/setup.sh).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../proto";
    let protos = [
        "../proto/holdfast/inventory/v1/inventory.proto",
        "../proto/holdfast/internal/v1/raft.proto",
        "../proto/holdfast/internal/v1/log.proto",
    ];
    let descriptor =
        std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("holdfast_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        .compile_protos(&protos, &[root])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
