//! Key layout. Every key starts with the shard id as a big-endian `u32`, then
//! a kind byte; log entry keys end with the big-endian `u64` index. Big-endian
//! makes RocksDB's byte order equal numeric order, so one shard's entries are
//! one contiguous, index-ordered key range and shard 1 never interleaves with
//! shard 256 (fixed width: no shard's prefix is a prefix of another's).
//!
//! | column family | key                                  | value                          |
//! |---------------|--------------------------------------|--------------------------------|
//! | `meta`        | `b"marker"`                          | format version, cluster, node  |
//! | `state`       | `shard ‖ 0x01`                       | `HardState` (protobuf)         |
//! | `state`       | `shard ‖ 0x02`                       | `ConfState` (protobuf)         |
//! | `state`       | `shard ‖ 0x03`                       | applied index (u64 LE)         |
//! | `state`       | `shard ‖ 0x04`                       | truncated index, term          |
//! | `state`       | `shard ‖ 0x05`                       | snapshot data length, hash, metadata |
//! | `state`       | `shard ‖ 0x06`                       | event floor (u64)              |
//! | `log`         | `shard ‖ 0x10 ‖ index`               | index, term, `Entry` (protobuf)|
//! | `events`      | `shard ‖ 0x21 ‖ index`               | the entry's events (see `events`) |
//!
//! Every value ends with its checksum (see `codec`).

/// Column family of the storage marker (one record per database).
pub(crate) const CF_META: &str = "meta";
/// Column family of the small per-shard records (hard state, conf state, ...).
pub(crate) const CF_STATE: &str = "state";
/// Column family of log entries; kept apart from `state` so compaction's
/// range deletions never sit in front of the point reads of small records.
pub(crate) const CF_LOG: &str = "log";

/// Column family of the change events the server keeps per applied entry;
/// apart from the log, which compaction trims on another schedule.
pub(crate) const CF_EVENTS: &str = "events";

/// Key of the storage marker in [`CF_META`].
pub(crate) const MARKER_KEY: &[u8] = b"marker";

/// Kind byte of a log entry key.
const KIND_ENTRY: u8 = 0x10;
/// Kind byte of the key of an entry's events. (0x20 was one key per event,
/// format version 1: a memtable insert per unit that moved.)
const KIND_ENTRY_EVENTS: u8 = 0x21;

/// Length of a state key: shard id and kind.
pub(crate) const STATE_KEY_LEN: usize = 5;
/// Length of an entry key: shard id, kind and index.
pub(crate) const ENTRY_KEY_LEN: usize = 13;

/// The per-shard records in [`CF_STATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum StateKind {
    /// raft-rs `HardState`: term, vote, commit.
    HardState = 0x01,
    /// raft-rs `ConfState`: voters and learners.
    ConfState = 0x02,
    /// Index of the last entry the engine applied.
    Applied = 0x03,
    /// Index and term of the last compacted entry (first index - 1).
    Truncated = 0x04,
    /// The latest durable snapshot: data length, data hash, metadata.
    Snapshot = 0x05,
    /// First log index whose events this node keeps.
    EventFloor = 0x06,
}

impl StateKind {
    /// Name used in corruption reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            StateKind::HardState => "hard state",
            StateKind::ConfState => "conf state",
            StateKind::Applied => "applied index",
            StateKind::Truncated => "truncated state",
            StateKind::Snapshot => "snapshot metadata",
            StateKind::EventFloor => "event floor",
        }
    }
}

/// Key of one shard's state record.
pub(crate) fn state_key(shard: u32, kind: StateKind) -> [u8; STATE_KEY_LEN] {
    let mut key = [0u8; STATE_KEY_LEN];
    key[..4].copy_from_slice(&shard.to_be_bytes());
    key[4] = kind as u8;
    key
}

/// The shard a state key belongs to, if it is a well-formed state key.
pub(crate) fn shard_of_state_key(key: &[u8]) -> Option<(u32, u8)> {
    if key.len() != STATE_KEY_LEN {
        return None;
    }
    let shard = u32::from_be_bytes(key[..4].try_into().ok()?);
    Some((shard, key[4]))
}

/// Key of one log entry.
pub(crate) fn entry_key(shard: u32, index: u64) -> [u8; ENTRY_KEY_LEN] {
    let mut key = [0u8; ENTRY_KEY_LEN];
    key[..4].copy_from_slice(&shard.to_be_bytes());
    key[4] = KIND_ENTRY;
    key[5..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Exclusive upper bound of all of a shard's entry keys: sorts after
/// `entry_key(shard, u64::MAX)` and before any key of shard + 1.
pub(crate) fn entry_keys_end(shard: u32) -> [u8; STATE_KEY_LEN] {
    let mut key = [0u8; STATE_KEY_LEN];
    key[..4].copy_from_slice(&shard.to_be_bytes());
    key[4] = KIND_ENTRY + 1;
    key
}

/// The shard and index of an entry key, if it is a well-formed entry key.
pub(crate) fn decode_entry_key(key: &[u8]) -> Option<(u32, u64)> {
    if key.len() != ENTRY_KEY_LEN || key[4] != KIND_ENTRY {
        return None;
    }
    let shard = u32::from_be_bytes(key[..4].try_into().ok()?);
    let index = u64::from_be_bytes(key[5..].try_into().ok()?);
    Some((shard, index))
}

/// Key of the events of the entry at `index`.
pub(crate) fn entry_events_key(shard: u32, index: u64) -> [u8; ENTRY_KEY_LEN] {
    let mut key = [0u8; ENTRY_KEY_LEN];
    key[..4].copy_from_slice(&shard.to_be_bytes());
    key[4] = KIND_ENTRY_EVENTS;
    key[5..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The entry index of an events key of `shard`, if it is one.
pub(crate) fn decode_entry_events_key(shard: u32, key: &[u8]) -> Option<u64> {
    if key.len() != ENTRY_KEY_LEN || key[4] != KIND_ENTRY_EVENTS || key[..4] != shard.to_be_bytes()
    {
        return None;
    }
    Some(u64::from_be_bytes(key[5..].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key layout: byte order equals (shard, index) order, and shard 1's
    /// entry range ends before shard 256's begins.
    #[test]
    fn entry_keys_sort_by_shard_then_index() {
        assert!(entry_key(1, u64::MAX).as_slice() < entry_keys_end(1).as_slice());
        assert!(entry_keys_end(1).as_slice() < entry_key(2, 0).as_slice());
        assert!(entry_key(1, 255) < entry_key(1, 256));
        assert!(entry_key(1, u64::MAX) < entry_key(256, 0));
        assert!(entry_keys_end(u32::MAX).as_slice() > entry_key(u32::MAX, u64::MAX).as_slice());
        assert_eq!(decode_entry_key(&entry_key(256, 7)), Some((256, 7)));
        assert_eq!(decode_entry_key(&state_key(256, StateKind::Applied)), None);
        assert_eq!(
            shard_of_state_key(&state_key(9, StateKind::Snapshot)),
            Some((9, StateKind::Snapshot as u8))
        );
    }
}
