//! Every bound the store keeps, as a named constant with its unit and why.

/// On-disk format version written into the storage marker. A build refuses a
/// data directory with another version instead of misreading its records;
/// bump it whenever a key or value layout in `keys`/`codec` changes.
/// Version 2: an applied entry's events under one key (version 1 had one
/// key per event).
pub const FORMAT_VERSION: u32 = 2;

/// Largest encoded log entry the store writes or reads, in bytes (64 MiB).
/// The server's proposal limit must stay well below it: one entry is one
/// shard's batch of commands for one loop iteration. A stored entry above it
/// is reported as corrupt rather than allocated, so a damaged length can't
/// make recovery allocate gigabytes.
pub const ENTRY_BYTES_MAX: usize = 64 << 20;

/// Bytes of entries the server should ask for per [`crate::ShardStorage::read_entries`]
/// call while replaying `snapshot.index+1..=applied` at start-up (8 MiB):
/// big enough that a replay does few RocksDB seeks, small enough that
/// replaying eight shards side by side stays under 100 MB of memory.
pub const REPLAY_READ_BYTES_MAX: u64 = 8 << 20;

/// Largest snapshot data file the store will read into memory, in bytes
/// (4 GiB). Engine snapshots are 100+ MB for large catalogues; a record that
/// claims more than this is treated as corrupt instead of allocated.
pub const SNAPSHOT_BYTES_MAX: u64 = 4 << 30;

/// Total size of RocksDB write-ahead log files kept, in bytes (256 MiB).
/// The rarely written `meta` and `state` column families would otherwise pin
/// old WAL files until RocksDB's default (4 x all write buffers, ~1.5 GB);
/// past this bound RocksDB flushes the column family pinning the oldest
/// file, which bounds both disk use and restart replay time.
pub const WAL_TOTAL_BYTES_MAX: u64 = 256 << 20;

/// RocksDB informational log files kept in the data directory: enough to
/// read back the last few restarts, bounded so a flapping node can't fill
/// the disk with LOG.old files.
pub const ROCKSDB_INFO_LOG_FILES_KEPT: usize = 5;
