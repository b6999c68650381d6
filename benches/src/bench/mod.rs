//! `holdfast-bench`, the load harness: Holdfast beside PostgreSQL, Redis
//! and the gRPC floor, in one run (design §8, "How we know").
//!
//! One job per module:
//! - [`scenario`]: the scenarios, the catalogue and the orders they draw;
//! - [`system`]: the systems' names;
//! - [`target`]: one interface the loops call every system through;
//! - [`grpc`]: Holdfast clusters (and the floor's stubs);
//! - [`peers`]: PostgreSQL, Redis and the floor as child processes;
//! - [`closed_loop`], [`open_loop`], [`flash`]: the loads;
//! - [`stats`]: outcome counts and HDR histograms;
//! - [`probe`]: the fsync probe;
//! - [`plan`]: the options, a mode's numbers and the cells;
//! - [`setup`]: starting and stocking the systems;
//! - [`callers`]: what a closed-loop caller sends;
//! - [`run`]: the interleaved run;
//! - [`report`], [`plot`]: JSON, Markdown and SVG.

pub mod callers;
pub mod closed_loop;
pub mod flash;
pub mod grpc;
pub mod open_loop;
pub mod peers;
pub mod plan;
pub mod plot;
pub mod probe;
pub mod report;
pub mod run;
pub mod scenario;
pub mod setup;
pub mod stats;
pub mod system;
pub mod target;

/// The item of `all` whose `name` is `wanted`, or an error listing the
/// names (`what`: "scenario", "system"): command-line names of a fixed set.
pub fn by_name<T: Copy>(
    all: &[T],
    name: impl Fn(T) -> &'static str,
    what: &str,
    wanted: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|&t| name(t) == wanted)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|&t| name(t)).collect();
            format!("unknown {what} {wanted:?}; one of {}", names.join(", "))
        })
}
