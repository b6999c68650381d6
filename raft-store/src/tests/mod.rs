//! Tests of the store. Each names the promise it checks; helpers here build
//! entries, open databases and damage them behind the store's back.

mod cluster;
mod corruption;
mod crash;
mod durability;
mod events;
mod log;
mod model;
mod snapshots;

use std::path::Path;

use raft::eraftpb::{ConfState, Entry, HardState};
use raft::{GetEntriesContext, Storage, StorageError};

use crate::keys::{self, CF_LOG};
use crate::{LogBatch, RaftDb, ShardStorage, StorageMarker, StoreError};

/// Cluster id used by all tests.
const CLUSTER: u64 = 77;

fn marker(node_id: u64) -> StorageMarker {
    StorageMarker {
        cluster_id: CLUSTER,
        node_id,
    }
}

fn open(dir: &Path) -> RaftDb {
    RaftDb::open(dir, marker(1)).expect("open test database")
}

/// An entry whose data names its index and term, so a misplaced entry shows.
fn ent(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("entry {index} term {term}").into_bytes().into(),
        ..Default::default()
    }
}

fn ents(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| ent(i, term)).collect()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState {
        voters: ids.to_vec(),
        ..Default::default()
    }
}

/// Stages with `f` and writes synced.
fn write_with(db: &RaftDb, f: impl FnOnce(&mut LogBatch)) {
    let mut batch = LogBatch::new();
    f(&mut batch);
    db.write(batch, true).expect("write batch");
}

/// Appends `entries`, commits and applies up to `commit`, in one batch.
fn append_commit(db: &RaftDb, s: &ShardStorage, entries: &[Entry], term: u64, commit: u64) {
    write_with(db, |b| {
        s.stage_append(b, entries).unwrap();
        s.stage_hard_state(b, &hard_state(term, 1, commit)).unwrap();
        s.stage_applied_index(b, commit).unwrap();
    });
}

fn all_entries(s: &ShardStorage) -> raft::Result<Vec<Entry>> {
    let (first, last) = (s.first_index()?, s.last_index()?);
    s.entries(first, last + 1, None, GetEntriesContext::empty(false))
}

fn entries(s: &ShardStorage, low: u64, high: u64) -> raft::Result<Vec<Entry>> {
    s.entries(low, high, None, GetEntriesContext::empty(false))
}

fn is_compacted<T: std::fmt::Debug>(r: raft::Result<T>) -> bool {
    matches!(r, Err(raft::Error::Store(StorageError::Compacted)))
}

fn is_unavailable<T: std::fmt::Debug>(r: raft::Result<T>) -> bool {
    matches!(r, Err(raft::Error::Store(StorageError::Unavailable)))
}

/// The typed store error inside a raft error, cloned out as (shard, index)
/// when it is `Corrupt`.
fn corrupt_at(err: &raft::Error) -> Option<(u32, u64, String)> {
    match StoreError::from_raft(err) {
        Some(StoreError::Corrupt { shard, index, what }) => Some((*shard, *index, what.clone())),
        _ => None,
    }
}

/// The indexes of all of `shard`'s entry keys on disk, read raw.
fn raw_entry_indexes(db: &RaftDb, shard: u32) -> Vec<u64> {
    let core = db.core();
    let mut it = core.db.raw_iterator_cf(core.cf(CF_LOG));
    it.seek(keys::entry_key(shard, 0));
    let mut out = Vec::new();
    while let Some(key) = it.key() {
        match keys::decode_entry_key(key) {
            Some((s, i)) if s == shard => out.push(i),
            _ => break,
        }
        it.next();
    }
    out
}
