//! Value encoding. Every value is `body ‖ checksum`, where the checksum is
//! the xxh3-64 of the body seeded with the xxh3-64 of the key, stored
//! little-endian. Seeding with the key binds a value to its key: a record
//! copied or misdirected to another key fails the check just like a torn or
//! bit-flipped one. Decoders never trust a length or an index they read: a
//! mismatch is an error naming what was wrong, never a panic.

use protobuf::Message;
use raft::eraftpb::{Entry, SnapshotMetadata};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::error::StoreError;
use crate::keys::StateKind;
use crate::limits::{ENTRY_BYTES_MAX, FORMAT_VERSION, SNAPSHOT_BYTES_MAX};
use crate::StorageMarker;

/// Bytes of the checksum that ends every value.
pub(crate) const CHECKSUM_BYTES: usize = 8;
/// Bytes of an entry value's header: index and term, both u64 LE.
const ENTRY_HEADER_BYTES: usize = 16;
/// Bytes of a snapshot record's header: data length and data hash.
const SNAPSHOT_HEADER_BYTES: usize = 16;
/// Bytes of the marker body: version u32, cluster u64, node u64.
const MARKER_BYTES: usize = 20;

fn checksum(key: &[u8], body: &[u8]) -> u64 {
    xxh3_64_with_seed(body, xxh3_64(key))
}

/// Appends the checksum of `body` under `key`.
pub(crate) fn seal(key: &[u8], mut body: Vec<u8>) -> Vec<u8> {
    let sum = checksum(key, &body);
    body.extend_from_slice(&sum.to_le_bytes());
    body
}

/// The body of a sealed value, or what is wrong with it.
pub(crate) fn open_sealed<'a>(key: &[u8], value: &'a [u8]) -> Result<&'a [u8], String> {
    if value.len() < CHECKSUM_BYTES {
        return Err(format!(
            "torn value: {} bytes, shorter than its checksum",
            value.len()
        ));
    }
    let (body, tail) = value.split_at(value.len() - CHECKSUM_BYTES);
    let stored = u64::from_le_bytes(tail.try_into().map_err(|_| "checksum slice".to_string())?);
    let computed = checksum(key, body);
    if stored != computed {
        return Err(format!(
            "checksum mismatch (stored {stored:#018x}, computed {computed:#018x})"
        ));
    }
    Ok(body)
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
}

fn pb_bytes<M: Message>(msg: &M) -> Vec<u8> {
    // Encoding an in-memory message only fails for a message over 2 GiB or
    // with unset required fields; eraftpb has no required fields and callers
    // bound entry sizes, so this is an internal invariant.
    msg.write_to_bytes()
        .expect("eraftpb messages always encode")
}

/// Encodes a log entry value: index, term, protobuf `Entry`, checksum.
pub(crate) fn encode_entry(shard: u32, key: &[u8], entry: &Entry) -> Result<Vec<u8>, StoreError> {
    let size = entry.compute_size() as usize + ENTRY_HEADER_BYTES + CHECKSUM_BYTES;
    if size > ENTRY_BYTES_MAX {
        return Err(StoreError::EntryTooLarge {
            shard,
            index: entry.index,
            bytes: size,
            limit: ENTRY_BYTES_MAX,
        });
    }
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(&entry.index.to_le_bytes());
    body.extend_from_slice(&entry.term.to_le_bytes());
    body.extend_from_slice(&pb_bytes(entry));
    Ok(seal(key, body))
}

/// Checks an entry value's checksum and that the index it carries is the one
/// its key names; returns the term and the protobuf bytes.
fn open_entry<'a>(
    shard: u32,
    index: u64,
    key: &[u8],
    value: &'a [u8],
) -> Result<(u64, &'a [u8]), StoreError> {
    let corrupt = |what: String| StoreError::Corrupt { shard, index, what };
    if value.len() > ENTRY_BYTES_MAX {
        return Err(corrupt(format!(
            "value of {} bytes exceeds the entry limit",
            value.len()
        )));
    }
    let body = open_sealed(key, value).map_err(corrupt)?;
    let stored_index = read_u64(body, 0).ok_or_else(|| corrupt("torn entry header".to_string()))?;
    let term = read_u64(body, 8).ok_or_else(|| corrupt("torn entry header".to_string()))?;
    if stored_index != index {
        return Err(corrupt(format!(
            "stored index {stored_index} under the key of index {index}"
        )));
    }
    Ok((term, &body[ENTRY_HEADER_BYTES..]))
}

/// The term of the entry stored under `key` (index `index`), checked but
/// without decoding the protobuf: `Storage::term` is on the hot path.
pub(crate) fn decode_entry_term(
    shard: u32,
    index: u64,
    key: &[u8],
    value: &[u8],
) -> Result<u64, StoreError> {
    open_entry(shard, index, key, value).map(|(term, _)| term)
}

/// The entry stored under `key` (index `index`), fully checked: checksum,
/// header index, and the protobuf's own index and term against the header.
pub(crate) fn decode_entry(
    shard: u32,
    index: u64,
    key: &[u8],
    value: &[u8],
) -> Result<Entry, StoreError> {
    let (term, pb) = open_entry(shard, index, key, value)?;
    let corrupt = |what: String| StoreError::Corrupt { shard, index, what };
    let entry = Entry::parse_from_bytes(pb).map_err(|e| corrupt(format!("protobuf: {e}")))?;
    if entry.index != index || entry.term != term {
        return Err(corrupt(format!(
            "entry says index {} term {}, header says index {index} term {term}",
            entry.index, entry.term
        )));
    }
    Ok(entry)
}

fn corrupt_state(shard: u32, kind: StateKind, what: String) -> StoreError {
    StoreError::CorruptState {
        shard,
        record: kind.name(),
        what,
    }
}

/// Encodes a protobuf state record (hard state, conf state).
pub(crate) fn encode_pb<M: Message>(key: &[u8], msg: &M) -> Vec<u8> {
    seal(key, pb_bytes(msg))
}

/// Decodes a protobuf state record.
pub(crate) fn decode_pb<M: Message>(
    shard: u32,
    kind: StateKind,
    key: &[u8],
    value: &[u8],
) -> Result<M, StoreError> {
    let body = open_sealed(key, value).map_err(|w| corrupt_state(shard, kind, w))?;
    M::parse_from_bytes(body).map_err(|e| corrupt_state(shard, kind, format!("protobuf: {e}")))
}

/// Encodes a record of one or two u64s (applied index; truncated index, term).
pub(crate) fn encode_u64s(key: &[u8], values: &[u64]) -> Vec<u8> {
    let body = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    seal(key, body)
}

/// Decodes a record of exactly `N` u64s.
pub(crate) fn decode_u64s<const N: usize>(
    shard: u32,
    kind: StateKind,
    key: &[u8],
    value: &[u8],
) -> Result<[u64; N], StoreError> {
    let body = open_sealed(key, value).map_err(|w| corrupt_state(shard, kind, w))?;
    if body.len() != N * 8 {
        return Err(corrupt_state(
            shard,
            kind,
            format!("{} bytes, expected {}", body.len(), N * 8),
        ));
    }
    let mut out = [0u64; N];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = read_u64(body, i * 8).ok_or_else(|| corrupt_state(shard, kind, "torn".into()))?;
    }
    Ok(out)
}

/// What the store remembers about the latest durable snapshot of a shard:
/// raft-rs metadata plus the data file's length and xxh3-64, so a torn or
/// swapped file is detected on read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnapshotRecord {
    /// raft-rs metadata: index, term, conf state at that index.
    pub(crate) metadata: SnapshotMetadata,
    /// Length of the data file in bytes.
    pub(crate) data_len: u64,
    /// xxh3-64 of the data.
    pub(crate) data_hash: u64,
}

/// Encodes a snapshot record.
pub(crate) fn encode_snapshot_record(key: &[u8], rec: &SnapshotRecord) -> Vec<u8> {
    let mut body = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + 64);
    body.extend_from_slice(&rec.data_len.to_le_bytes());
    body.extend_from_slice(&rec.data_hash.to_le_bytes());
    body.extend_from_slice(&pb_bytes(&rec.metadata));
    seal(key, body)
}

/// Decodes a snapshot record.
pub(crate) fn decode_snapshot_record(
    shard: u32,
    key: &[u8],
    value: &[u8],
) -> Result<SnapshotRecord, StoreError> {
    let kind = StateKind::Snapshot;
    let body = open_sealed(key, value).map_err(|w| corrupt_state(shard, kind, w))?;
    let torn = || corrupt_state(shard, kind, "torn header".into());
    let data_len = read_u64(body, 0).ok_or_else(torn)?;
    let data_hash = read_u64(body, 8).ok_or_else(torn)?;
    if data_len > SNAPSHOT_BYTES_MAX {
        return Err(corrupt_state(
            shard,
            kind,
            format!("data length {data_len} exceeds the snapshot limit {SNAPSHOT_BYTES_MAX}"),
        ));
    }
    let metadata = SnapshotMetadata::parse_from_bytes(&body[SNAPSHOT_HEADER_BYTES..])
        .map_err(|e| corrupt_state(shard, kind, format!("protobuf: {e}")))?;
    Ok(SnapshotRecord {
        metadata,
        data_len,
        data_hash,
    })
}

/// Encodes the storage marker with the current [`FORMAT_VERSION`].
pub(crate) fn encode_marker(key: &[u8], marker: StorageMarker) -> Vec<u8> {
    let mut body = Vec::with_capacity(MARKER_BYTES);
    body.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    body.extend_from_slice(&marker.cluster_id.to_le_bytes());
    body.extend_from_slice(&marker.node_id.to_le_bytes());
    seal(key, body)
}

/// Decodes the storage marker: its format version, then cluster and node.
/// The version comes first so a future layout can still be named.
pub(crate) fn decode_marker(key: &[u8], value: &[u8]) -> Result<(u32, StorageMarker), String> {
    let body = open_sealed(key, value)?;
    if body.len() != MARKER_BYTES {
        return Err(format!("{} bytes, expected {MARKER_BYTES}", body.len()));
    }
    let version = u32::from_le_bytes(body[..4].try_into().map_err(|_| "torn".to_string())?);
    let cluster_id = read_u64(body, 4).ok_or("torn")?;
    let node_id = read_u64(body, 12).ok_or("torn")?;
    Ok((
        version,
        StorageMarker {
            cluster_id,
            node_id,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::entry_key;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    /// Values carry their own checksum: every single flipped bit and every
    /// truncation of an entry value is reported as corruption, never decoded.
    #[test]
    fn every_flipped_bit_or_truncation_is_detected() {
        let key = entry_key(3, 9);
        let value = encode_entry(3, &key, &entry(9, 2, b"hello")).unwrap();
        assert_eq!(
            decode_entry(3, 9, &key, &value).unwrap(),
            entry(9, 2, b"hello")
        );
        for byte in 0..value.len() {
            for bit in 0..8 {
                let mut bad = value.clone();
                bad[byte] ^= 1 << bit;
                assert!(matches!(
                    decode_entry(3, 9, &key, &bad),
                    Err(StoreError::Corrupt {
                        shard: 3,
                        index: 9,
                        ..
                    })
                ));
            }
        }
        for len in 0..value.len() {
            assert!(decode_entry(3, 9, &key, &value[..len]).is_err());
        }
    }

    /// A value is bound to its key: the same bytes under another index's key
    /// fail, and a sealed value carrying the wrong index is named as such.
    #[test]
    fn value_under_wrong_key_is_corrupt() {
        let key8 = entry_key(1, 8);
        let key7 = entry_key(1, 7);
        let value = encode_entry(1, &key7, &entry(7, 1, b"x")).unwrap();
        let err = decode_entry(1, 8, &key8, &value).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        // A buggy writer that sealed entry 7 under key 8.
        let misfiled = encode_entry(1, &key8, &entry(7, 1, b"x")).unwrap();
        let err = decode_entry(1, 8, &key8, &misfiled).unwrap_err();
        assert!(
            err.to_string()
                .contains("stored index 7 under the key of index 8"),
            "{err}"
        );
    }

    /// The marker round-trips and a damaged one is refused.
    #[test]
    fn marker_round_trip() {
        let m = StorageMarker {
            cluster_id: 77,
            node_id: 2,
        };
        let v = encode_marker(b"k", m);
        assert_eq!(decode_marker(b"k", &v).unwrap(), (FORMAT_VERSION, m));
        assert!(decode_marker(b"j", &v).is_err());
    }
}
