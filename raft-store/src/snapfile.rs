//! Snapshot data files: `<dir>/snapshots/shard-<id>-<index>.snap`. Engine
//! snapshots are 100+ MB, too big for a RocksDB value, so the data lives in a
//! file and RocksDB holds its metadata, length and hash. A file becomes
//! visible under its final name only complete and fsynced: written to
//! `<name>.tmp`, fsynced, renamed, then the directory fsynced so the rename
//! itself survives a power cut.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use crate::error::StoreError;

/// Suffix of a complete snapshot file.
const SNAP_SUFFIX: &str = ".snap";
/// Suffix of a snapshot file being written; never referenced by a record.
const TMP_SUFFIX: &str = ".tmp";

/// File name of shard `shard`'s snapshot at `index`.
pub(crate) fn file_name(shard: u32, index: u64) -> String {
    format!("shard-{shard}-{index}{SNAP_SUFFIX}")
}

/// The (shard, index) of a complete snapshot file name.
pub(crate) fn parse_file_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("shard-")?.strip_suffix(SNAP_SUFFIX)?;
    let (shard, index) = rest.split_once('-')?;
    Some((shard.parse().ok()?, index.parse().ok()?))
}

/// Whether `name` is a leftover temporary snapshot file.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with("shard-") && name.ends_with(TMP_SUFFIX)
}

/// Fsyncs a directory so renames and deletions in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// Writes `data` durably as shard `shard`'s snapshot at `index` and returns
/// its path and xxh3-64. On return the file and its name are on disk.
pub(crate) fn write(
    snap_dir: &Path,
    shard: u32,
    index: u64,
    data: &[u8],
) -> Result<(PathBuf, u64), StoreError> {
    let path = snap_dir.join(file_name(shard, index));
    let tmp = snap_dir.join(format!("{}{TMP_SUFFIX}", file_name(shard, index)));
    let mut file = File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
    file.write_all(data)
        .map_err(|e| StoreError::io("write", &tmp, e))?;
    file.sync_all()
        .map_err(|e| StoreError::io("fsync", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &tmp, e))?;
    fsync_dir(snap_dir)?;
    Ok((path, xxh3_64(data)))
}

/// Reads shard `shard`'s snapshot at `index` and checks it against the
/// length and hash its record promised.
pub(crate) fn read(
    snap_dir: &Path,
    shard: u32,
    index: u64,
    data_len: u64,
    data_hash: u64,
) -> Result<Vec<u8>, StoreError> {
    let path = snap_dir.join(file_name(shard, index));
    let corrupt = |what: String| StoreError::Corrupt { shard, index, what };
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(corrupt(format!(
                "snapshot file {} is missing",
                path.display()
            )))
        }
        Err(e) => return Err(StoreError::io("open", &path, e)),
    };
    let on_disk = file
        .metadata()
        .map_err(|e| StoreError::io("stat", &path, e))?
        .len();
    if on_disk != data_len {
        return Err(corrupt(format!(
            "snapshot file {} is {on_disk} bytes, its record says {data_len}",
            path.display()
        )));
    }
    let capacity = usize::try_from(data_len)
        .map_err(|_| corrupt(format!("snapshot length {data_len} exceeds memory")))?;
    let mut data = Vec::with_capacity(capacity);
    file.read_to_end(&mut data)
        .map_err(|e| StoreError::io("read", &path, e))?;
    let hash = xxh3_64(&data);
    if data.len() as u64 != data_len || hash != data_hash {
        return Err(corrupt(format!(
            "snapshot file {} fails its checksum (stored {data_hash:#018x}, computed {hash:#018x})",
            path.display()
        )));
    }
    Ok(data)
}

/// Checks that shard `shard`'s snapshot file at `index` exists with the
/// recorded length (cheap: no read), so a restart notices a lost file early.
pub(crate) fn check_present(
    snap_dir: &Path,
    shard: u32,
    index: u64,
    data_len: u64,
) -> Result<(), StoreError> {
    let path = snap_dir.join(file_name(shard, index));
    match fs::metadata(&path) {
        Ok(m) if m.len() == data_len => Ok(()),
        Ok(m) => Err(StoreError::Corrupt {
            shard,
            index,
            what: format!(
                "snapshot file {} is {} bytes, its record says {data_len}",
                path.display(),
                m.len()
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Corrupt {
            shard,
            index,
            what: format!("snapshot file {} is missing", path.display()),
        }),
        Err(e) => Err(StoreError::io("stat", &path, e)),
    }
}

/// Deletes snapshot files that are no longer referenced. Failure to delete
/// only wastes disk space, so it is logged, not returned.
pub(crate) fn delete_all(paths: &[PathBuf]) {
    for path in paths {
        match fs::remove_file(path) {
            Ok(()) => tracing::debug!(path = %path.display(), "deleted obsolete snapshot file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not delete obsolete snapshot file")
            }
        }
    }
}
