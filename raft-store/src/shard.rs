//! [`ShardStorage`]: raft-rs [`Storage`] for one shard (Raft group), with
//! the staging operations the driver uses to fill a [`LogBatch`].

use std::fmt;
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use protobuf::Message;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use rocksdb::ReadOptions;

use crate::codec::{self, SnapshotRecord};
use crate::db::{DbCore, LogBatch};
use crate::error::StoreError;
use crate::keys::{self, StateKind, CF_LOG, CF_STATE};
use crate::limits::{REPLAY_READ_BYTES_MAX, SNAPSHOT_BYTES_MAX};
use crate::snapfile;

/// The in-memory image of one shard's durable (or staged) state. First and
/// last index live here so raft-rs's frequent bound checks never touch disk.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShardState {
    hard_state: HardState,
    conf_state: ConfState,
    /// Last applied index, as staged.
    applied: u64,
    /// Applied index as of the last completed write: a snapshot taken by
    /// [`ShardStorage::save_snapshot`] may not be newer, so its own synced
    /// record never lands on disk ahead of the applied index it stands for.
    pub(crate) written_applied: u64,
    /// Index of the last compacted entry (first index - 1) and its term,
    /// kept so `term(first_index - 1)` answers after compaction.
    truncated_index: u64,
    truncated_term: u64,
    last_index: u64,
    last_term: u64,
    snapshot: Option<SnapshotRecord>,
    /// First index whose events are kept (see [`crate::events`]).
    pub(crate) event_floor: u64,
    /// Set when memory got ahead of disk (a failed or dropped batch).
    poisoned: bool,
}

impl ShardState {
    fn first_index(&self) -> u64 {
        self.truncated_index + 1
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.metadata.index)
    }
}

pub(crate) struct ShardInner {
    id: u32,
    pub(crate) core: Arc<DbCore>,
    state: RwLock<ShardState>,
}

/// raft-rs [`Storage`] for one shard, backed by the node's [`crate::RaftDb`].
/// Cheap to clone: clones share the same in-memory state, so the handle
/// given to `RawNode` and the one the driver stages with agree.
#[derive(Clone)]
pub struct ShardStorage {
    pub(crate) inner: Arc<ShardInner>,
}

impl fmt::Debug for ShardStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.read();
        f.debug_struct("ShardStorage")
            .field("shard", &self.inner.id)
            .field("first_index", &st.first_index())
            .field("last_index", &st.last_index)
            .field("applied", &st.applied)
            .field("snapshot_index", &st.snapshot_index())
            .field("poisoned", &st.poisoned)
            .finish()
    }
}

impl ShardStorage {
    /// Loads shard `id` from disk and checks that its records agree.
    pub(crate) fn load(core: Arc<DbCore>, id: u32) -> Result<ShardStorage, StoreError> {
        let state = load_state(&core, id)?;
        tracing::debug!(
            shard = id,
            first_index = state.first_index(),
            last_index = state.last_index,
            commit = state.hard_state.commit,
            applied = state.applied,
            snapshot_index = state.snapshot_index(),
            "shard storage loaded"
        );
        Ok(ShardStorage {
            inner: Arc::new(ShardInner {
                id,
                core,
                state: RwLock::new(state),
            }),
        })
    }

    /// The shard (Raft group) id.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    pub(crate) fn poison(&self) {
        self.inner.state.write().poisoned = true;
    }

    /// The check [`crate::RaftDb::write`] makes before writing a batch that
    /// touched this shard: the staged applied index is within the staged
    /// commit index.
    pub(crate) fn check_staged(&self) -> Result<(), StoreError> {
        let st = self.read_state()?;
        if st.applied > st.hard_state.commit {
            return Err(StoreError::InvalidApplied {
                shard: self.id(),
                applied: st.applied,
                why: format!("above the commit index {}", st.hard_state.commit),
            });
        }
        Ok(())
    }

    pub(crate) fn mark_written(&self) {
        let mut st = self.inner.state.write();
        st.written_applied = st.applied;
    }

    pub(crate) fn read_state(&self) -> Result<RwLockReadGuard<'_, ShardState>, StoreError> {
        let st = self.inner.state.read();
        if st.poisoned {
            return Err(StoreError::Poisoned { shard: self.id() });
        }
        Ok(st)
    }

    pub(crate) fn write_state(&self) -> Result<RwLockWriteGuard<'_, ShardState>, StoreError> {
        let st = self.inner.state.write();
        if st.poisoned {
            return Err(StoreError::Poisoned { shard: self.id() });
        }
        Ok(st)
    }

    /// The current hard state (as staged), e.g. to update its commit index
    /// from a raft-rs `LightReady`.
    pub fn hard_state(&self) -> Result<HardState, StoreError> {
        Ok(self.read_state()?.hard_state.clone())
    }

    /// The current conf state (as staged).
    pub fn conf_state(&self) -> Result<ConfState, StoreError> {
        Ok(self.read_state()?.conf_state.clone())
    }

    /// The index of the last entry the engine applied, as persisted with
    /// [`ShardStorage::stage_applied_index`] (or set by a received
    /// snapshot). On restart: `RawNode`'s `Config::applied`, and the end of
    /// the replay `snapshot.index + 1 ..= applied`. Always `<= commit`.
    pub fn applied_index(&self) -> Result<u64, StoreError> {
        Ok(self.read_state()?.applied)
    }

    /// Metadata of the latest durable snapshot, without reading its data.
    pub fn latest_snapshot_metadata(&self) -> Result<Option<SnapshotMetadata>, StoreError> {
        Ok(self
            .read_state()?
            .snapshot
            .as_ref()
            .map(|s| s.metadata.clone()))
    }

    /// The latest durable snapshot, metadata and data (read from its file and
    /// checked against its recorded length and hash), for the server to
    /// restore the engine from on restart. `None` if no snapshot was taken.
    pub fn latest_snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let rec = self.read_state()?.snapshot.clone();
        let Some(rec) = rec else { return Ok(None) };
        let data = snapfile::read(
            &self.inner.core.snap_dir,
            self.id(),
            rec.metadata.index,
            rec.data_len,
            rec.data_hash,
        )?;
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        snap.set_metadata(rec.metadata);
        Ok(Some(snap))
    }

    /// Entries `[low, high)` read from disk, at most `max_bytes` of them
    /// (protobuf size; always at least one entry if the range is not empty,
    /// as raft-rs's `limit_size`). For the server's replay at start-up, with
    /// [`crate::REPLAY_READ_BYTES_MAX`]. The range must lie within
    /// `[first_index, last_index + 1]`.
    pub fn read_entries(
        &self,
        low: u64,
        high: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, StoreError> {
        let (first, last) = {
            let st = self.read_state()?;
            (st.first_index(), st.last_index)
        };
        if low < first || high > last + 1 || low > high {
            return Err(StoreError::OutOfRange {
                shard: self.id(),
                low,
                high,
                first,
                last,
            });
        }
        self.entries_from_disk(low, high, max_bytes)
    }

    /// Reads and checks every entry in `[first_index, last_index]`, in
    /// chunks of [`crate::REPLAY_READ_BYTES_MAX`], and returns how many there
    /// are. raft-rs panics on any storage error other than `Compacted` or
    /// `Unavailable`, so the server calls this at start-up to report a
    /// damaged log as a typed error before a `RawNode` ever reads it.
    pub fn verify_log(&self) -> Result<u64, StoreError> {
        let (first, last) = {
            let st = self.read_state()?;
            (st.first_index(), st.last_index)
        };
        let mut next = first;
        while next <= last {
            let chunk = self.entries_from_disk(next, last + 1, Some(REPLAY_READ_BYTES_MAX))?;
            next += chunk.len() as u64;
        }
        Ok(last + 1 - first)
    }

    /// Reads `[low, high)` (already bounds-checked) in one iterator pass,
    /// stopping where raft-rs's `limit_size` would cut. Every index in the
    /// range must be present: a missing one is a hole, i.e. corruption.
    fn entries_from_disk(
        &self,
        low: u64,
        high: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, StoreError> {
        let shard = self.id();
        let max_bytes = max_bytes.filter(|&m| m != raft::NO_LIMIT);
        let core = &self.inner.core;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(keys::entry_key(shard, high).to_vec());
        let mut it = core.db.raw_iterator_cf_opt(core.cf(CF_LOG), opts);
        it.seek(keys::entry_key(shard, low));
        let wanted = usize::try_from(high - low).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(wanted.min(1024));
        let mut size = 0u64;
        let mut next = low;
        while next < high {
            let (Some(key), Some(value)) = (it.key(), it.value()) else {
                break;
            };
            if keys::decode_entry_key(key) != Some((shard, next)) {
                break; // a hole at `next`, reported below
            }
            let entry = codec::decode_entry(shard, next, key, value)?;
            size += u64::from(entry.compute_size());
            if !out.is_empty() && max_bytes.is_some_and(|m| size > m) {
                return Ok(out);
            }
            out.push(entry);
            next += 1;
            it.next();
        }
        it.status()?;
        if next < high {
            return Err(hole(shard, next));
        }
        Ok(out)
    }

    /// The term of entry `index`, read from disk (checksum and index checked,
    /// protobuf not decoded). The caller has checked `index` is in the log.
    fn term_from_disk(&self, index: u64) -> Result<u64, StoreError> {
        let shard = self.id();
        let core = &self.inner.core;
        let key = keys::entry_key(shard, index);
        match core.db.get_pinned_cf(core.cf(CF_LOG), key)? {
            Some(value) => codec::decode_entry_term(shard, index, &key, &value),
            None => Err(hole(shard, index)),
        }
    }

    /// The term of `index` from memory when it is a bound, else from disk.
    fn term_of(&self, st: &ShardState, index: u64) -> Result<u64, StoreError> {
        if index == st.truncated_index {
            Ok(st.truncated_term)
        } else if index == st.last_index {
            Ok(st.last_term)
        } else {
            self.term_from_disk(index)
        }
    }
}

/// The corruption error for an index that should be in the log but is not.
fn hole(shard: u32, index: u64) -> StoreError {
    StoreError::Corrupt {
        shard,
        index,
        what: "entry missing from the log (hole between first and last index)".to_string(),
    }
}

impl Storage for ShardStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let st = self.read_state()?;
        Ok(RaftState::new(st.hard_state.clone(), st.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let (first, last) = {
            let st = self.read_state()?;
            (st.first_index(), st.last_index)
        };
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > last + 1 || low > high {
            return Err(StoreError::OutOfRange {
                shard: self.id(),
                low,
                high,
                first,
                last,
            }
            .into());
        }
        Ok(self.entries_from_disk(low, high, max_size.into())?)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let st = self.read_state()?;
        if idx < st.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > st.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.term_of(&st, idx)?)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.read_state()?.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.read_state()?.last_index)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let index = self.read_state()?.snapshot_index();
        // No snapshot yet (index 0; raft-rs refuses to send an empty one) or
        // one older than the follower asked for: the server takes a newer
        // one and raft-rs retries later.
        if index == 0 || index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        match self.latest_snapshot()? {
            Some(snap) => Ok(snap),
            None => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}

// ---- staging: the driver's writes, all into one LogBatch per iteration ----

impl ShardStorage {
    /// Stages `entries` (contiguous indexes, as in a raft-rs `Ready`). An
    /// append that starts at or below the last index replaces the
    /// conflicting tail: entries above the new last index are deleted in the
    /// same batch. The cached last index moves at once.
    pub fn stage_append(&self, batch: &mut LogBatch, entries: &[Entry]) -> Result<(), StoreError> {
        let (Some(first_new), Some(last_new)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let shard = self.id();
        let mut st = self.write_state()?;
        let invalid = |what: String| StoreError::InvalidAppend { shard, what };
        if let Some(w) = entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
            return Err(invalid(format!(
                "index {} follows {}",
                w[1].index, w[0].index
            )));
        }
        if first_new.index < st.first_index() {
            return Err(invalid(format!(
                "append from {} overwrites compacted entries (first index {})",
                first_new.index,
                st.first_index()
            )));
        }
        if first_new.index > st.last_index + 1 {
            return Err(invalid(format!(
                "append from {} leaves a gap after last index {}",
                first_new.index, st.last_index
            )));
        }
        // Encode everything before staging anything: a refused entry must
        // leave the batch untouched.
        let mut encoded = Vec::with_capacity(entries.len());
        for e in entries {
            let key = keys::entry_key(shard, e.index);
            encoded.push((key, codec::encode_entry(shard, &key, e)?));
        }
        let cf = self.inner.core.cf(CF_LOG);
        for (key, value) in &encoded {
            batch.wb.put_cf(cf, key, value);
        }
        if last_new.index < st.last_index {
            let from = keys::entry_key(shard, last_new.index + 1);
            batch
                .wb
                .delete_range_cf(cf, &from[..], &keys::entry_keys_end(shard)[..]);
        }
        st.last_index = last_new.index;
        st.last_term = last_new.term;
        drop(st);
        batch.touch(self);
        Ok(())
    }

    /// Stages the hard state (term, vote, commit) from a `Ready` or a
    /// `LightReady`'s commit index.
    pub fn stage_hard_state(&self, batch: &mut LogBatch, hs: &HardState) -> Result<(), StoreError> {
        self.stage_pb_state(batch, StateKind::HardState, hs, |st| {
            st.hard_state = hs.clone()
        })
    }

    /// Stages the conf state: at bootstrap (the initial voters, the same on
    /// every node) and after each applied conf change.
    pub fn stage_conf_state(&self, batch: &mut LogBatch, cs: &ConfState) -> Result<(), StoreError> {
        self.stage_pb_state(batch, StateKind::ConfState, cs, |st| {
            st.conf_state = cs.clone()
        })
    }

    /// Stages one protobuf state record and mirrors it in memory.
    fn stage_pb_state<M: Message>(
        &self,
        batch: &mut LogBatch,
        kind: StateKind,
        msg: &M,
        mirror: impl FnOnce(&mut ShardState),
    ) -> Result<(), StoreError> {
        let mut st = self.write_state()?;
        self.put_state(batch, kind, codec_pb(kind, self.id(), msg));
        mirror(&mut st);
        drop(st);
        batch.touch(self);
        Ok(())
    }

    /// Stages the engine's applied index. An index below the current applied
    /// index is refused here; one above the commit index is refused when the
    /// batch is written ([`crate::RaftDb::write`] checks `applied <= commit`
    /// for every shard it touched, so the hard state that commits these
    /// entries may be staged before or after, but must be in the same or an
    /// earlier batch). Thus `applied <= commit` always holds on disk.
    pub fn stage_applied_index(&self, batch: &mut LogBatch, index: u64) -> Result<(), StoreError> {
        let shard = self.id();
        let mut st = self.write_state()?;
        let refuse = |why: String| StoreError::InvalidApplied {
            shard,
            applied: index,
            why,
        };
        if index < st.applied {
            return Err(refuse(format!("below the applied index {}", st.applied)));
        }
        let key = keys::state_key(shard, StateKind::Applied);
        self.put_state(
            batch,
            StateKind::Applied,
            codec::encode_u64s(&key, &[index]),
        );
        st.applied = index;
        drop(st);
        batch.touch(self);
        Ok(())
    }

    pub(crate) fn put_state(&self, batch: &mut LogBatch, kind: StateKind, value: Vec<u8>) {
        let key = keys::state_key(self.id(), kind);
        batch.wb.put_cf(self.inner.core.cf(CF_STATE), key, value);
    }
}

fn codec_pb<M: Message>(kind: StateKind, shard: u32, msg: &M) -> Vec<u8> {
    codec::encode_pb(&keys::state_key(shard, kind), msg)
}

// ---- compaction and snapshots ----

impl ShardStorage {
    /// Stages the deletion of all entries below `up_to_index` and remembers
    /// the term of `up_to_index - 1`, so `term(first_index - 1)` still
    /// answers. A no-op if `up_to_index <= first_index`. Refused past
    /// `last_index + 1`, past the latest snapshot's index + 1 (recovery
    /// replays from there) and past the applied index + 1.
    pub fn compact(&self, batch: &mut LogBatch, up_to_index: u64) -> Result<(), StoreError> {
        let shard = self.id();
        let mut st = self.write_state()?;
        if up_to_index <= st.first_index() {
            return Ok(());
        }
        let bounds = [
            (st.last_index + 1, "past the last index"),
            (st.snapshot_index() + 1, "past the latest snapshot"),
            (st.applied + 1, "past the applied index"),
        ];
        for (limit, why) in bounds {
            if up_to_index > limit {
                return Err(StoreError::CompactTooFar {
                    shard,
                    up_to: up_to_index,
                    limit,
                    why,
                });
            }
        }
        let truncated_index = up_to_index - 1;
        let truncated_term = self.term_of(&st, truncated_index)?;
        let cf = self.inner.core.cf(CF_LOG);
        let from = keys::entry_key(shard, 0);
        let to = keys::entry_key(shard, up_to_index);
        batch.wb.delete_range_cf(cf, &from[..], &to[..]);
        let key = keys::state_key(shard, StateKind::Truncated);
        let value = codec::encode_u64s(&key, &[truncated_index, truncated_term]);
        self.put_state(batch, StateKind::Truncated, value);
        st.truncated_index = truncated_index;
        st.truncated_term = truncated_term;
        drop(st);
        batch.touch(self);
        Ok(())
    }

    /// Saves a snapshot the engine took at `metadata.index`, outside the
    /// group commit: the data goes to a fsynced file, then the record to
    /// RocksDB in its own synced write, then the previous snapshot's file is
    /// deleted. The index must be newer than the latest snapshot, within the
    /// applied index *as written by a completed [`crate::RaftDb::write`]*
    /// (so the record never lands on disk ahead of the applied index it
    /// stands for), and its term must match the log's. Does not compact.
    /// Inside a driver iteration, prefer [`ShardStorage::stage_snapshot`].
    pub fn save_snapshot(&self, metadata: SnapshotMetadata, data: &[u8]) -> Result<(), StoreError> {
        let shard = self.id();
        let mut st = self.write_state()?;
        let written_applied = st.written_applied;
        let rec = self.write_local_snapshot(&st, metadata, data, written_applied)?;
        let core = &self.inner.core;
        let key = keys::state_key(shard, StateKind::Snapshot);
        let mut wb = rocksdb::WriteBatch::default();
        let value = codec::encode_snapshot_record(&key, &rec);
        wb.put_cf(core.cf(CF_STATE), key, value);
        core.write_synced(wb)?;
        if let Some(old) = st.snapshot.replace(rec) {
            snapfile::delete_all(&[self.snapshot_path(old.metadata.index)]);
        }
        Ok(())
    }

    /// Saves a snapshot the engine took at `metadata.index` as part of
    /// `batch` (group commit): the data file is written and fsynced now, its
    /// record is staged, so it becomes durable atomically with the applied
    /// index (staged in any order in the same batch) and with a
    /// [`ShardStorage::compact`] staged after it. The previous snapshot's
    /// file is deleted after the batch's synced write. The index must be
    /// newer than the latest snapshot and within the staged applied index;
    /// its term must match the log's.
    pub fn stage_snapshot(
        &self,
        batch: &mut LogBatch,
        metadata: SnapshotMetadata,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let shard = self.id();
        let mut st = self.write_state()?;
        let applied = st.applied;
        let rec = self.write_local_snapshot(&st, metadata, data, applied)?;
        let key = keys::state_key(shard, StateKind::Snapshot);
        let value = codec::encode_snapshot_record(&key, &rec);
        self.put_state(batch, StateKind::Snapshot, value);
        if let Some(old) = st.snapshot.replace(rec) {
            batch
                .obsolete_files
                .push(self.snapshot_path(old.metadata.index));
        }
        drop(st);
        batch.touch(self);
        Ok(())
    }

    /// Checks a locally taken snapshot against the log and writes its data
    /// file durably; returns the record to store.
    fn write_local_snapshot(
        &self,
        st: &ShardState,
        metadata: SnapshotMetadata,
        data: &[u8],
        applied_bound: u64,
    ) -> Result<SnapshotRecord, StoreError> {
        let shard = self.id();
        let index = metadata.index;
        let refuse = |why: String| StoreError::InvalidSnapshot { shard, index, why };
        check_newer(st, index, data.len()).map_err(refuse)?;
        if index > applied_bound {
            return Err(refuse(format!("beyond the applied index {applied_bound}")));
        }
        if index < st.truncated_index || index > st.last_index {
            return Err(refuse(format!(
                "outside the log [{}, {}]",
                st.truncated_index, st.last_index
            )));
        }
        let log_term = self.term_of(st, index)?;
        if log_term != metadata.term {
            return Err(refuse(format!(
                "term {} but the log has term {log_term} at that index",
                metadata.term
            )));
        }
        let (_, data_hash) = snapfile::write(&self.inner.core.snap_dir, shard, index, data)?;
        tracing::info!(shard, index, bytes = data.len(), "snapshot saved");
        Ok(SnapshotRecord {
            metadata,
            data_len: data.len() as u64,
            data_hash,
        })
    }

    fn snapshot_path(&self, index: u64) -> std::path::PathBuf {
        self.inner
            .core
            .snap_dir
            .join(snapfile::file_name(self.id(), index))
    }

    /// Installs a snapshot received from the leader (a `Ready`'s snapshot):
    /// writes its data file now, and stages into `batch` the replacement of
    /// the whole log (first index = snapshot index + 1, last = snapshot
    /// index), the hard state's commit (= snapshot index) and term (max of
    /// both, as raft-rs's `MemStorage`), the conf state from the metadata,
    /// and the applied index (= snapshot index: the snapshot *is* the engine
    /// state at that index). The previous snapshot's file is deleted after
    /// the batch's synced write.
    pub fn apply_snapshot(
        &self,
        batch: &mut LogBatch,
        snapshot: &Snapshot,
    ) -> Result<(), StoreError> {
        let shard = self.id();
        let meta = snapshot.get_metadata();
        let index = meta.index;
        let mut st = self.write_state()?;
        let refuse = |why: String| StoreError::InvalidSnapshot { shard, index, why };
        check_newer(&st, index, snapshot.data.len()).map_err(refuse)?;
        if index < st.first_index() || index < st.applied {
            return Err(refuse(format!(
                "out of date: first index {}, applied {}",
                st.first_index(),
                st.applied
            )));
        }
        let core = &self.inner.core;
        let (_, data_hash) = snapfile::write(&core.snap_dir, shard, index, &snapshot.data)?;
        let rec = SnapshotRecord {
            metadata: meta.clone(),
            data_len: snapshot.data.len() as u64,
            data_hash,
        };
        let mut next = st.clone();
        next.hard_state.term = next.hard_state.term.max(meta.term);
        next.hard_state.commit = index;
        next.conf_state = meta.get_conf_state().clone();
        (next.truncated_index, next.truncated_term) = (index, meta.term);
        (next.last_index, next.last_term) = (index, meta.term);
        next.applied = index;
        let old = next.snapshot.replace(rec);
        self.stage_snapshot_state(batch, &next);
        // The events of the entries the snapshot stands for never reached
        // this node; the ones it kept before may end short of them.
        self.stage_event_floor_locked(batch, &mut next, index + 1);
        if let Some(old) = old {
            batch
                .obsolete_files
                .push(self.snapshot_path(old.metadata.index));
        }
        *st = next;
        drop(st);
        batch.touch(self);
        tracing::info!(shard, index, term = meta.term, "snapshot installed");
        Ok(())
    }

    /// Stages every record an installed snapshot replaces.
    fn stage_snapshot_state(&self, batch: &mut LogBatch, next: &ShardState) {
        let shard = self.id();
        let log = self.inner.core.cf(CF_LOG);
        let from = keys::entry_key(shard, 0);
        batch
            .wb
            .delete_range_cf(log, &from[..], &keys::entry_keys_end(shard)[..]);
        let key = |kind| keys::state_key(shard, kind);
        let hs = codec_pb(StateKind::HardState, shard, &next.hard_state);
        self.put_state(batch, StateKind::HardState, hs);
        let cs = codec_pb(StateKind::ConfState, shard, &next.conf_state);
        self.put_state(batch, StateKind::ConfState, cs);
        let truncated = [next.truncated_index, next.truncated_term];
        let value = codec::encode_u64s(&key(StateKind::Truncated), &truncated);
        self.put_state(batch, StateKind::Truncated, value);
        let value = codec::encode_u64s(&key(StateKind::Applied), &[next.applied]);
        self.put_state(batch, StateKind::Applied, value);
        if let Some(rec) = &next.snapshot {
            let value = codec::encode_snapshot_record(&key(StateKind::Snapshot), rec);
            self.put_state(batch, StateKind::Snapshot, value);
        }
    }
}

/// A snapshot must be non-empty, within [`SNAPSHOT_BYTES_MAX`] (so it can
/// be read back), and newer than the latest one (file names are per index,
/// and raft-rs never goes back).
fn check_newer(st: &ShardState, index: u64, data_len: usize) -> Result<(), String> {
    if index == 0 {
        return Err("empty snapshot (index 0)".to_string());
    }
    if data_len as u64 > SNAPSHOT_BYTES_MAX {
        return Err(format!(
            "{data_len} bytes of data exceed the snapshot limit {SNAPSHOT_BYTES_MAX}"
        ));
    }
    if index <= st.snapshot_index() {
        return Err(format!(
            "not newer than the latest snapshot at {}",
            st.snapshot_index()
        ));
    }
    Ok(())
}

// ---- loading from disk ----

fn get_state<T>(
    core: &DbCore,
    shard: u32,
    kind: StateKind,
    decode: impl FnOnce(&[u8], &[u8]) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let key = keys::state_key(shard, kind);
    match core.db.get_pinned_cf(core.cf(CF_STATE), key)? {
        Some(value) => decode(&key, &value).map(Some),
        None => Ok(None),
    }
}

/// Reads one shard's records and log bounds and checks they agree.
fn load_state(core: &DbCore, shard: u32) -> Result<ShardState, StoreError> {
    let hard_state = get_state(core, shard, StateKind::HardState, |k, v| {
        codec::decode_pb::<HardState>(shard, StateKind::HardState, k, v)
    })?
    .unwrap_or_default();
    let conf_state = get_state(core, shard, StateKind::ConfState, |k, v| {
        codec::decode_pb::<ConfState>(shard, StateKind::ConfState, k, v)
    })?
    .unwrap_or_default();
    let [applied] = get_state(core, shard, StateKind::Applied, |k, v| {
        codec::decode_u64s::<1>(shard, StateKind::Applied, k, v)
    })?
    .unwrap_or([0]);
    let [truncated_index, truncated_term] =
        get_state(core, shard, StateKind::Truncated, |k, v| {
            codec::decode_u64s::<2>(shard, StateKind::Truncated, k, v)
        })?
        .unwrap_or([0, 0]);
    let snapshot = get_state(core, shard, StateKind::Snapshot, |k, v| {
        codec::decode_snapshot_record(shard, k, v)
    })?;
    let (last_index, last_term) = load_log_bounds(core, shard, truncated_index, truncated_term)?;
    // A store written before events were kept has none up to its applied
    // index.
    let [event_floor] = get_state(core, shard, StateKind::EventFloor, |k, v| {
        codec::decode_u64s::<1>(shard, StateKind::EventFloor, k, v)
    })?
    .unwrap_or([applied + 1]);
    let state = ShardState {
        hard_state,
        conf_state,
        applied,
        written_applied: applied,
        truncated_index,
        truncated_term,
        last_index,
        last_term,
        snapshot,
        event_floor,
        poisoned: false,
    };
    check_loaded(core, shard, &state)?;
    Ok(state)
}

/// The last index and term on disk; also checks the first entry on disk is
/// the one right after the truncated index.
fn load_log_bounds(
    core: &DbCore,
    shard: u32,
    truncated_index: u64,
    truncated_term: u64,
) -> Result<(u64, u64), StoreError> {
    let mut opts = ReadOptions::default();
    opts.set_iterate_lower_bound(keys::entry_key(shard, 0).to_vec());
    opts.set_iterate_upper_bound(keys::entry_keys_end(shard).to_vec());
    let mut it = core.db.raw_iterator_cf_opt(core.cf(CF_LOG), opts);
    it.seek_to_first();
    let Some(first_key) = it.key() else {
        it.status()?;
        return Ok((truncated_index, truncated_term));
    };
    let expected_first = truncated_index + 1;
    match keys::decode_entry_key(first_key) {
        Some((s, i)) if s == shard && i == expected_first => {}
        Some((_, i)) if i > expected_first => return Err(hole(shard, expected_first)),
        other => {
            return Err(StoreError::Corrupt {
                shard,
                index: expected_first,
                what: format!("log should start at {expected_first}, found key {other:?}"),
            })
        }
    }
    it.seek_to_last();
    let (Some(key), Some(value)) = (it.key(), it.value()) else {
        it.status()?;
        return Err(hole(shard, expected_first));
    };
    let Some((_, last_index)) = keys::decode_entry_key(key) else {
        return Err(StoreError::Corrupt {
            shard,
            index: expected_first,
            what: format!("malformed entry key {key:?}"),
        });
    };
    let last_term = codec::decode_entry_term(shard, last_index, key, value)?;
    Ok((last_index, last_term))
}

/// The cross-record invariants every completed write leaves on disk.
fn check_loaded(core: &DbCore, shard: u32, st: &ShardState) -> Result<(), StoreError> {
    let bad = |record: StateKind, what: String| StoreError::CorruptState {
        shard,
        record: record.name(),
        what,
    };
    let commit = st.hard_state.commit;
    if commit > st.last_index {
        return Err(bad(
            StateKind::HardState,
            format!("commit {commit} beyond the last index {}", st.last_index),
        ));
    }
    if st.applied > commit {
        return Err(bad(
            StateKind::Applied,
            format!("applied {} beyond the commit index {commit}", st.applied),
        ));
    }
    match &st.snapshot {
        None if st.truncated_index != 0 => Err(bad(
            StateKind::Truncated,
            format!("log compacted to {} without a snapshot", st.truncated_index),
        )),
        None => Ok(()),
        Some(rec) => {
            let index = rec.metadata.index;
            if st.truncated_index > index || index > st.applied {
                return Err(bad(
                    StateKind::Snapshot,
                    format!(
                        "snapshot index {index} outside [truncated {}, applied {}]",
                        st.truncated_index, st.applied
                    ),
                ));
            }
            snapfile::check_present(&core.snap_dir, shard, index, rec.data_len)
        }
    }
}
