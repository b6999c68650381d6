//! The crate's one error enum, and its mapping into raft-rs errors.

use std::path::PathBuf;

use raft::StorageError;

/// Everything that can go wrong in the store. Corruption is always reported
/// (never skipped): the server stops the shard rather than serve a log it
/// can't trust.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory was created for another node or cluster: starting
    /// on it would make this node impersonate another replica.
    #[error(
        "data directory {} belongs to node {found_node} of cluster {found_cluster}, \
         not node {expected_node} of cluster {expected_cluster}",
        dir.display()
    )]
    WrongDirectory {
        /// The data directory opened.
        dir: PathBuf,
        /// Cluster id recorded in the directory.
        found_cluster: u64,
        /// Node id recorded in the directory.
        found_node: u64,
        /// Cluster id this process was started with.
        expected_cluster: u64,
        /// Node id this process was started with.
        expected_node: u64,
    },
    /// The directory was written by a build with another on-disk format.
    #[error(
        "data directory {} has storage format version {found}, this build reads version {supported}",
        dir.display()
    )]
    FormatVersion {
        /// The data directory opened.
        dir: PathBuf,
        /// Version recorded in the directory.
        found: u32,
        /// Version this build writes and reads.
        supported: u32,
    },
    /// The directory holds Raft data but no storage marker, so whose it is
    /// can't be checked.
    #[error("data directory {} holds Raft data but no storage marker", dir.display())]
    MissingMarker {
        /// The data directory opened.
        dir: PathBuf,
    },
    /// The storage marker record is damaged.
    #[error("data directory {}: storage marker is corrupt: {what}", dir.display())]
    CorruptMarker {
        /// The data directory opened.
        dir: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A log entry (or the snapshot taken at `index`) is missing, torn, fails
    /// its checksum or is stored under the wrong index.
    #[error("shard {shard}: corrupt log at index {index}: {what}")]
    Corrupt {
        /// The shard (Raft group).
        shard: u32,
        /// The log index of the damaged entry or snapshot.
        index: u64,
        /// What is wrong with it.
        what: String,
    },
    /// A per-shard state record (hard state, conf state, applied, truncated
    /// state, snapshot metadata) is damaged or contradicts the others.
    #[error("shard {shard}: corrupt {record}: {what}")]
    CorruptState {
        /// The shard (Raft group).
        shard: u32,
        /// Which record.
        record: &'static str,
        /// What is wrong with it.
        what: String,
    },
    /// An append that raft-rs would never issue: non-contiguous indexes, a
    /// gap after the last index, or an overwrite of compacted entries.
    #[error("shard {shard}: invalid append: {what}")]
    InvalidAppend {
        /// The shard (Raft group).
        shard: u32,
        /// Why it was refused.
        what: String,
    },
    /// An entry larger than [`crate::ENTRY_BYTES_MAX`].
    #[error("shard {shard}: entry {index} is {bytes} bytes, limit {limit}")]
    EntryTooLarge {
        /// The shard (Raft group).
        shard: u32,
        /// The entry's index.
        index: u64,
        /// Its encoded size.
        bytes: usize,
        /// [`crate::ENTRY_BYTES_MAX`].
        limit: usize,
    },
    /// `entries(low, high)` outside `[first_index, last_index + 1]`.
    #[error("shard {shard}: entries [{low}, {high}) outside the log [{first}, {last}]")]
    OutOfRange {
        /// The shard (Raft group).
        shard: u32,
        /// Requested low bound (inclusive).
        low: u64,
        /// Requested high bound (exclusive).
        high: u64,
        /// First index held.
        first: u64,
        /// Last index held.
        last: u64,
    },
    /// Compaction would delete entries that recovery still needs.
    #[error("shard {shard}: cannot compact up to {up_to}: {why} (limit {limit})")]
    CompactTooFar {
        /// The shard (Raft group).
        shard: u32,
        /// Requested exclusive bound.
        up_to: u64,
        /// Highest allowed exclusive bound.
        limit: u64,
        /// Which bound: snapshot, applied, or last index.
        why: &'static str,
    },
    /// The applied index would exceed the commit index or go backwards.
    #[error("shard {shard}: applied index {applied} refused: {why}")]
    InvalidApplied {
        /// The shard (Raft group).
        shard: u32,
        /// The applied index offered.
        applied: u64,
        /// Why it was refused.
        why: String,
    },
    /// A snapshot not newer than the latest one, or inconsistent with the log.
    #[error("shard {shard}: snapshot at index {index} refused: {why}")]
    InvalidSnapshot {
        /// The shard (Raft group).
        shard: u32,
        /// The snapshot's index.
        index: u64,
        /// Why it was refused.
        why: String,
    },
    /// A batch that staged changes for this shard failed or was dropped
    /// unwritten, so the in-memory state is ahead of the disk. The node must
    /// restart and reload from disk.
    #[error("shard {shard}: in-memory state is ahead of disk after a failed or dropped batch; restart the node")]
    Poisoned {
        /// The shard (Raft group).
        shard: u32,
    },
    /// A file-system operation on the data or snapshot directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// RocksDB refused an operation.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
}

impl StoreError {
    /// Finds the `StoreError` inside a raft-rs error returned by
    /// [`raft::Storage`] methods (it travels as `StorageError::Other`), so
    /// the server can report corruption with shard and index.
    pub fn from_raft(err: &raft::Error) -> Option<&StoreError> {
        match err {
            raft::Error::Store(StorageError::Other(inner)) => inner.downcast_ref::<StoreError>(),
            _ => None,
        }
    }

    /// Whether this error means the stored data can't be trusted (as opposed
    /// to a refused request or an I/O failure).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. }
                | StoreError::CorruptState { .. }
                | StoreError::CorruptMarker { .. }
                | StoreError::MissingMarker { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<StoreError> for raft::Error {
    fn from(err: StoreError) -> Self {
        raft::Error::Store(StorageError::Other(Box::new(err)))
    }
}
