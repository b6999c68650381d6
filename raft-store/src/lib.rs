//! Raft log, state and snapshots for many Raft groups (shards) in one
//! RocksDB per node, with group commit (design §2, `raft-store/`).
//!
//! # Unit of work
//! A [`LogBatch`] is everything one iteration of the server's Raft driver
//! loop must make durable, for *all* shards: new entries (with conflicting
//! tails removed), hard states, conf states, applied indexes, compactions
//! and received snapshots. [`RaftDb::write`] writes it as one RocksDB
//! `WriteBatch` with one fsync, so a node pays one fsync per loop iteration,
//! not one per shard, and a crash leaves either all of an iteration's
//! changes on disk or none.
//!
//! # Threads
//! One driver thread owns the [`RaftDb`], every [`ShardStorage`] (given to
//! its shard's `RawNode`) and the batch. The handles are `Send + Sync` and
//! lock internally, but staging and writing assume a single writer and one
//! batch in flight at a time.
//!
//! # Durability contract for the driver
//! 1. For each shard with a `Ready`: apply a received snapshot
//!    ([`ShardStorage::apply_snapshot`]), stage its entries
//!    ([`ShardStorage::stage_append`]) and its hard state
//!    ([`ShardStorage::stage_hard_state`]), the applied index of what the
//!    engine applied ([`ShardStorage::stage_applied_index`]; `write` refuses
//!    a batch whose applied index passes its commit index, so
//!    `applied <= commit` holds on disk), a local snapshot
//!    ([`ShardStorage::stage_snapshot`]) and compaction
//!    ([`ShardStorage::compact`]). Apart from a received snapshot (first)
//!    and a local snapshot (before the compaction it allows), order within
//!    the batch doesn't matter.
//!    A `LightReady`'s commit index is staged as a hard state too.
//! 2. Call [`RaftDb::write`] with `sync = true` once for all shards.
//! 3. Only then send the `Ready`'s persisted messages, acknowledge clients
//!    and call `advance`. Staging updates the in-memory state at once (first
//!    and last index, hard state...), but raft-rs keeps staged entries in
//!    its unstable log until `advance`, so it never reads them from storage
//!    before they are written. A batch that fails to write, or is dropped
//!    unwritten, poisons the shards it touched ([`StoreError::Poisoned`]):
//!    memory is then ahead of disk and the node must restart.
//!
//! After `kill -9` (or a power cut), [`RaftDb::open`] and [`RaftDb::shard`]
//! see exactly the batches whose `write(.., sync = true)` returned.
//! Recovery: [`ShardStorage::verify_log`], restore the engine from
//! [`ShardStorage::latest_snapshot`], replay
//! `snapshot.index + 1 ..= applied_index()` with
//! [`ShardStorage::read_entries`], and start the `RawNode` with
//! `Config::applied = applied_index()`.
//!
//! # Integrity
//! Every value carries a checksum bound to its key; a torn, bit-flipped or
//! misfiled record, a missing entry between first and last index, or a
//! snapshot file that fails its hash is a typed error naming the shard and
//! index ([`StoreError::Corrupt`]), never skipped and never a panic. Note
//! that raft-rs itself panics on any `Storage::term`/`entries` error other
//! than `Compacted`/`Unavailable`: the server should treat such a panic, or
//! a [`StoreError::is_corruption`] error, as "this replica's log is bad".
#![deny(missing_docs)]

mod codec;
mod db;
mod error;
mod events;
mod keys;
pub mod limits;
mod shard;
mod snapfile;

#[cfg(test)]
mod tests;

/// The driver may move storages and batches between threads (e.g. a
/// `RawNode` per shard built on one thread and driven on another).
#[allow(dead_code)]
fn assert_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<RaftDb>();
    send_sync::<ShardStorage>();
    fn send<T: Send>() {}
    send::<LogBatch>();
}

pub use db::{LogBatch, RaftDb, StorageMarker, WriteReport};
pub use error::StoreError;
pub use events::{EventRead, StoredEvent};
pub use limits::{ENTRY_BYTES_MAX, FORMAT_VERSION, REPLAY_READ_BYTES_MAX, SNAPSHOT_BYTES_MAX};
pub use shard::ShardStorage;
