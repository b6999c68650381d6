//! Chaos runs of Holdfast clusters: the history format and the checker.
//!
//! The harness (built later) runs a real cluster, drives clients, injects
//! faults and records every operation as JSON lines ([`history`],
//! [`jsonl`]); after the run it dumps every replica's ledger
//! ([`final_state`]). This crate judges such a run against the promises of
//! design §1:
//!
//! 1. [`timeline`] pairs invokes with completions and merges retries of a
//!    request id into one logical operation;
//! 2. [`facts`] indexes what several checks share, and [`parts`] maps
//!    cross-shard reservations onto the per-shard parts the replicas hold;
//! 3. [`check`] runs the rules (no oversell, no lost acknowledgement, at
//!    most once, convergence, availability) and [`linear`] the per-row
//!    linearizability search, into one [`check::Report`].
//!
//! Every map the checker iterates is ordered, so the same input gives the
//! same report, byte for byte. The rules are stated exactly in
//! `docs/chaos-checker.md`.
#![deny(missing_docs)]

pub mod chart;
pub mod check;
pub mod codes;
pub mod facts;
pub mod final_state;
pub mod history;
pub mod jsonl;
pub mod linear;
pub mod parts;
pub mod timeline;

pub use check::{check, check_entries, CheckConfig, Report};
