//! `holdfast-server`: the node binary. Lands with the Raft issue; until then it
//! only says so, so that nobody mistakes it for a working node.

fn main() {
    eprintln!("holdfast-server: the replicated node is not built yet (see the Raft issue); run `cargo run --release -p holdfast-bench --bin engine-demo` for the engine demo");
    std::process::exit(2);
}
