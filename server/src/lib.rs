//! The Holdfast node: Raft-replicated ledger shards, served over gRPC.
//!
//! Layout: `config` (what a node needs) and `config_file` (its TOML form), `node` (the driver thread that runs
//! every shard's Raft group and ledger, and the handle to reach it),
//! `log_codec` (commands in log entries), `event_codec` (kept change
//! events), `proto_write` (their hand-written protobuf), `ids` and `status` (the wire
//! edge: ids and errors), `pb` (generated code), `cross_shard` (the
//! coordinator of reservations whose lines span shards); around the services:
//! `health` (grpc.health.v1), `rpc_layer` (per-RPC metrics and the
//! shutdown drain) and `telemetry` (the Prometheus exporter).
#![deny(missing_docs)]

pub mod admin;
pub mod admission;
pub mod config;
pub mod config_file;
pub mod cross_shard;
pub mod deadline;
pub mod event_codec;
pub mod events;
pub mod faults;
pub mod health;
pub mod ids;
pub mod listing;
pub mod log_codec;
pub mod node;
pub mod pb;
pub mod prefilter_stats;
pub mod proto_write;
pub mod rpc_layer;
pub mod service;
pub mod status;
pub mod telemetry;
pub mod transport;
