//! [`RaftDb`]: one RocksDB per node holding every shard's Raft log and state,
//! and [`LogBatch`], the group-commit unit written by [`RaftDb::write`].

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

use crate::codec::{self, SnapshotRecord};
use crate::error::StoreError;
use crate::keys::{self, StateKind, CF_EVENTS, CF_LOG, CF_META, CF_STATE, MARKER_KEY};
use crate::limits::{FORMAT_VERSION, ROCKSDB_INFO_LOG_FILES_KEPT, WAL_TOTAL_BYTES_MAX};
use crate::shard::ShardStorage;
use crate::snapfile;

/// Who a data directory belongs to. Written on first open and checked on
/// every later one, so a node started with the wrong `--data-dir` (another
/// node's, or another cluster's) refuses to run instead of impersonating a
/// replica and breaking Raft's safety.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageMarker {
    /// The cluster this node belongs to.
    pub cluster_id: u64,
    /// This node's id within the cluster (also its Raft peer id).
    pub node_id: u64,
}

/// State shared by the database handle and every [`ShardStorage`].
pub(crate) struct DbCore {
    pub(crate) db: DB,
    pub(crate) dir: PathBuf,
    pub(crate) snap_dir: PathBuf,
    /// Snapshot files replaced by a newer snapshot whose record is written
    /// but maybe not fsynced yet; deleted after the next synced write.
    pub(crate) obsolete_files: Mutex<Vec<PathBuf>>,
}

impl DbCore {
    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created when the database is opened")
    }

    /// Writes `batch` (possibly synced). Only once it is written are the
    /// snapshot files it replaced queued for deletion, and only after a
    /// synced write (which also makes every earlier WAL record durable) are
    /// queued files deleted: a file goes only when no record that could
    /// survive a power cut still names it.
    fn write_batch(
        &self,
        batch: WriteBatch,
        replaced_files: Vec<PathBuf>,
        sync: bool,
    ) -> Result<Duration, StoreError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        let started = Instant::now();
        self.db.write_opt(batch, &opts)?;
        let elapsed = started.elapsed();
        let mut queued = self.obsolete_files.lock();
        queued.extend(replaced_files);
        if sync && !queued.is_empty() {
            let files = std::mem::take(&mut *queued);
            drop(queued);
            snapfile::delete_all(&files);
        }
        Ok(elapsed)
    }

    /// Writes one small synced batch outside the driver's group commit
    /// (the marker, a locally taken snapshot's record).
    pub(crate) fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.write_batch(batch, Vec::new(), true).map(|_| ())
    }
}

/// One node's Raft storage: a RocksDB database plus a snapshot directory,
/// holding many Raft groups (shards). Create one per process with
/// [`RaftDb::open`], take a [`ShardStorage`] per shard with [`RaftDb::shard`],
/// and persist each driver loop iteration with one [`RaftDb::write`].
pub struct RaftDb {
    core: Arc<DbCore>,
    marker: StorageMarker,
    shards: Mutex<HashMap<u32, ShardStorage>>,
}

impl std::fmt::Debug for RaftDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftDb")
            .field("dir", &self.core.dir)
            .field("marker", &self.marker)
            .field("shards_loaded", &self.shards.lock().len())
            .finish()
    }
}

/// What one [`RaftDb::write`] did, for the server's fsync-latency histogram
/// and batch-size metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReport {
    /// Wall time of the RocksDB write, including the fsync when synced.
    pub elapsed: Duration,
    /// Number of puts and deletes in the batch.
    pub ops: usize,
    /// Encoded size of the batch in bytes.
    pub bytes: usize,
    /// Number of shards that staged something.
    pub shards: usize,
    /// Whether the write was fsynced.
    pub synced: bool,
}

/// The unit of group commit: everything the driver stages for all shards in
/// one loop iteration (entries, hard states, conf states, applied indexes,
/// compactions, received snapshots), written atomically by one
/// [`RaftDb::write`] with one fsync.
///
/// Staging updates each shard's in-memory state at once; the batch remembers
/// which shards it touched, and if it is dropped unwritten or its write fails
/// those shards are poisoned (every later call returns
/// [`StoreError::Poisoned`]) because memory is then ahead of disk.
#[derive(Default)]
pub struct LogBatch {
    pub(crate) wb: WriteBatch,
    pub(crate) touched: Vec<ShardStorage>,
    pub(crate) obsolete_files: Vec<PathBuf>,
    written: bool,
}

impl LogBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing has been staged.
    pub fn is_empty(&self) -> bool {
        self.wb.is_empty()
    }

    /// Records that `shard` staged into this batch.
    pub(crate) fn touch(&mut self, shard: &ShardStorage) {
        if !self.touched.iter().any(|s| s.id() == shard.id()) {
            self.touched.push(shard.clone());
        }
    }

    fn poison_touched(&self, why: &str) {
        for shard in &self.touched {
            tracing::error!(shard = shard.id(), why, "poisoning shard storage");
            shard.poison();
        }
    }
}

impl Drop for LogBatch {
    fn drop(&mut self) {
        if !self.written && !self.touched.is_empty() {
            self.poison_touched("batch dropped without being written");
        }
    }
}

impl RaftDb {
    /// Opens (or creates) the data directory `dir` for `marker`'s node.
    /// A new directory gets the marker and [`FORMAT_VERSION`]; an existing
    /// one must carry the same cluster id, node id and version, or this
    /// fails naming both. Unreferenced snapshot files are swept.
    pub fn open(dir: impl AsRef<Path>, marker: StorageMarker) -> Result<RaftDb, StoreError> {
        let started = Instant::now();
        let dir = dir.as_ref().to_path_buf();
        let db_dir = dir.join("raftdb");
        let snap_dir = dir.join("snapshots");
        for d in [&dir, &snap_dir] {
            fs::create_dir_all(d).map_err(|e| StoreError::io("create directory", d, e))?;
        }
        snapfile::fsync_dir(&dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            snapfile::fsync_dir(parent)?;
        }
        let db = open_rocksdb(&db_dir)?;
        let core = Arc::new(DbCore {
            db,
            dir: dir.clone(),
            snap_dir,
            obsolete_files: Mutex::new(Vec::new()),
        });
        check_or_write_marker(&core, marker)?;
        sweep_snapshot_dir(&core)?;
        let open_ms = started.elapsed().as_millis() as u64;
        tracing::info!(dir = %dir.display(), cluster_id = marker.cluster_id, node_id = marker.node_id, open_ms, "raft storage opened");
        Ok(RaftDb {
            core,
            marker,
            shards: Mutex::new(HashMap::new()),
        })
    }

    /// Raw access for tests that damage the database behind the store's back.
    #[cfg(test)]
    pub(crate) fn core(&self) -> &DbCore {
        &self.core
    }

    /// The marker this database was opened with.
    pub fn marker(&self) -> StorageMarker {
        self.marker
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.core.dir
    }

    /// The storage of shard `id`, loaded from disk on first use (a shard
    /// never written starts empty: first index 1, last index 0). Every call
    /// for the same id returns a handle to the same in-memory state.
    pub fn shard(&self, id: u32) -> Result<ShardStorage, StoreError> {
        let mut shards = self.shards.lock();
        if let Some(s) = shards.get(&id) {
            return Ok(s.clone());
        }
        let storage = ShardStorage::load(self.core.clone(), id)?;
        shards.insert(id, storage.clone());
        Ok(storage)
    }

    /// The ids of all shards with any state record on disk, ascending: what
    /// a restarting server has to recover.
    pub fn shard_ids_on_disk(&self) -> Result<Vec<u32>, StoreError> {
        let mut ids = BTreeSet::new();
        let mut it = self.core.db.raw_iterator_cf(self.core.cf(CF_STATE));
        it.seek_to_first();
        while let Some(key) = it.key() {
            if let Some((shard, _)) = keys::shard_of_state_key(key) {
                ids.insert(shard);
            }
            it.next();
        }
        it.status()?;
        Ok(ids.into_iter().collect())
    }

    /// Writes everything staged in `batch` atomically, with one fsync when
    /// `sync` (the Raft promise: persisted before acknowledged). Returns the
    /// write's latency and size for metrics. After a synced write, snapshot
    /// files replaced by the batch's snapshots are deleted.
    ///
    /// Refused (nothing written) if a touched shard's staged applied index
    /// exceeds its staged commit index. On any error the touched shards are
    /// poisoned: the node must restart.
    pub fn write(&self, mut batch: LogBatch, sync: bool) -> Result<WriteReport, StoreError> {
        batch.written = true;
        let mut report = WriteReport {
            elapsed: Duration::ZERO,
            ops: batch.wb.len(),
            bytes: batch.wb.size_in_bytes(),
            shards: batch.touched.len(),
            synced: sync,
        };
        if batch.wb.is_empty() {
            return Ok(report);
        }
        if let Err(e) = batch
            .touched
            .iter()
            .try_for_each(ShardStorage::check_staged)
        {
            batch.poison_touched("batch refused before writing");
            return Err(e);
        }
        let wb = std::mem::take(&mut batch.wb);
        let replaced = std::mem::take(&mut batch.obsolete_files);
        match self.core.write_batch(wb, replaced, sync) {
            Ok(elapsed) => {
                report.elapsed = elapsed;
                for shard in &batch.touched {
                    shard.mark_written();
                }
                Ok(report)
            }
            Err(e) => {
                batch.poison_touched("batch write failed");
                Err(e)
            }
        }
    }
}

fn open_rocksdb(db_dir: &Path) -> Result<DB, StoreError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_keep_log_file_num(ROCKSDB_INFO_LOG_FILES_KEPT);
    opts.set_paranoid_checks(true);
    opts.set_max_total_wal_size(WAL_TOTAL_BYTES_MAX);
    let cfs = [CF_META, CF_STATE, CF_LOG, CF_EVENTS]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    Ok(DB::open_cf_descriptors(&opts, db_dir, cfs)?)
}

/// Whether the `state` and `log` column families hold no record at all.
fn holds_no_raft_data(core: &DbCore) -> Result<bool, StoreError> {
    for cf in [CF_STATE, CF_LOG] {
        let mut it = core.db.raw_iterator_cf(core.cf(cf));
        it.seek_to_first();
        if it.valid() {
            return Ok(false);
        }
        it.status()?;
    }
    Ok(true)
}

fn check_or_write_marker(core: &DbCore, expected: StorageMarker) -> Result<(), StoreError> {
    let dir = core.dir.clone();
    let stored = core.db.get_pinned_cf(core.cf(CF_META), MARKER_KEY)?;
    let Some(value) = stored else {
        // A crash between creating the database and writing the marker
        // leaves an empty database: that is still a new directory.
        if !holds_no_raft_data(core)? {
            return Err(StoreError::MissingMarker { dir });
        }
        let mut wb = WriteBatch::default();
        wb.put_cf(
            core.cf(CF_META),
            MARKER_KEY,
            codec::encode_marker(MARKER_KEY, expected),
        );
        return core.write_synced(wb);
    };
    let (version, found) =
        codec::decode_marker(MARKER_KEY, &value).map_err(|what| StoreError::CorruptMarker {
            dir: dir.clone(),
            what,
        })?;
    if version != FORMAT_VERSION {
        return Err(StoreError::FormatVersion {
            dir,
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if found != expected {
        return Err(StoreError::WrongDirectory {
            dir,
            found_cluster: found.cluster_id,
            found_node: found.node_id,
            expected_cluster: expected.cluster_id,
            expected_node: expected.node_id,
        });
    }
    Ok(())
}

/// The snapshot files referenced by durable records, as (shard, index).
fn referenced_snapshots(core: &DbCore) -> Result<BTreeSet<(u32, u64)>, StoreError> {
    let mut referenced = BTreeSet::new();
    let mut it = core.db.raw_iterator_cf(core.cf(CF_STATE));
    it.seek_to_first();
    while let (Some(key), Some(value)) = (it.key(), it.value()) {
        if let Some((shard, kind)) = keys::shard_of_state_key(key) {
            if kind == StateKind::Snapshot as u8 {
                let rec: SnapshotRecord = codec::decode_snapshot_record(shard, key, value)?;
                referenced.insert((shard, rec.metadata.index));
            }
        }
        it.next();
    }
    it.status()?;
    Ok(referenced)
}

/// Deletes temporary and unreferenced snapshot files: leftovers of a crash
/// between writing a file and writing (or fsyncing) its record, or between
/// a newer snapshot's durable record and the old file's deletion.
fn sweep_snapshot_dir(core: &DbCore) -> Result<(), StoreError> {
    let referenced = referenced_snapshots(core)?;
    let entries =
        fs::read_dir(&core.snap_dir).map_err(|e| StoreError::io("list", &core.snap_dir, e))?;
    let mut doomed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list", &core.snap_dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let unreferenced =
            matches!(snapfile::parse_file_name(name), Some(id) if !referenced.contains(&id));
        if unreferenced || snapfile::is_temp_name(name) {
            doomed.push(entry.path());
        }
    }
    if !doomed.is_empty() {
        tracing::info!(files = doomed.len(), "sweeping unreferenced snapshot files");
        snapfile::delete_all(&doomed);
        snapfile::fsync_dir(&core.snap_dir)?;
    }
    Ok(())
}
