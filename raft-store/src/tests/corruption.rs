//! Integrity: damage made behind the store's back (raw RocksDB access) is a
//! typed error naming shard and index, never garbage, a skip or a panic.

use raft::Storage;

use super::*;
use crate::codec;
use crate::keys::{StateKind, CF_STATE};

/// No holes: an entry deleted between first and last index makes `entries`
/// and `term` fail with `Corrupt { shard, index }` naming the missing index.
#[test]
fn missing_entry_is_typed_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let s = db.shard(5).unwrap();
    write_with(&db, |b| s.stage_append(b, &ents(1..=10, 1)).unwrap());
    let core = db.core();
    core.db
        .delete_cf(core.cf(CF_LOG), keys::entry_key(5, 4))
        .unwrap();

    let err = all_entries(&s).unwrap_err();
    let (shard, index, what) = corrupt_at(&err).expect("typed Corrupt error");
    assert_eq!((shard, index), (5, 4), "{what}");
    assert!(
        err.to_string().contains("shard 5: corrupt log at index 4"),
        "{err}"
    );
    assert_eq!(
        corrupt_at(&s.term(4).unwrap_err()).map(|c| (c.0, c.1)),
        Some((5, 4))
    );
    let err = s.verify_log().unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                shard: 5,
                index: 4,
                ..
            }
        ),
        "{err}"
    );
    // Reads that don't cross the hole still work.
    assert_eq!(entries(&s, 5, 11).unwrap(), ents(5..=10, 1));
    // The last entry is also checked when it is the one missing.
    core.db
        .delete_cf(core.cf(CF_LOG), keys::entry_key(5, 10))
        .unwrap();
    let err = entries(&s, 5, 11).unwrap_err();
    assert_eq!(corrupt_at(&err).map(|c| (c.0, c.1)), Some((5, 10)));
}

/// No holes at restart: a log whose first entry is gone is refused when the
/// shard is loaded.
#[test]
fn missing_first_entry_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let s = db.shard(2).unwrap();
        write_with(&db, |b| s.stage_append(b, &ents(1..=3, 1)).unwrap());
        let core = db.core();
        core.db
            .delete_cf(core.cf(CF_LOG), keys::entry_key(2, 1))
            .unwrap();
    }
    let db = open(dir.path());
    let err = db.shard(2).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                shard: 2,
                index: 1,
                ..
            }
        ),
        "{err}"
    );
}

/// Checksums: one flipped byte in a stored entry gives `Corrupt` naming the
/// entry, for both `entries` and `term`, and for the last entry at load.
#[test]
fn flipped_byte_is_typed_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let s = db.shard(9).unwrap();
        write_with(&db, |b| s.stage_append(b, &ents(1..=6, 1)).unwrap());
        let core = db.core();
        for index in [3, 6] {
            let key = keys::entry_key(9, index);
            let mut value = core.db.get_cf(core.cf(CF_LOG), key).unwrap().unwrap();
            value[5] ^= 0x40;
            core.db.put_cf(core.cf(CF_LOG), key, value).unwrap();
        }
        let err = all_entries(&s).unwrap_err();
        let (shard, index, what) = corrupt_at(&err).expect("typed Corrupt error");
        assert_eq!((shard, index), (9, 3));
        assert!(what.contains("checksum mismatch"), "{what}");
        assert_eq!(corrupt_at(&s.term(3).unwrap_err()).map(|c| c.1), Some(3));
    }
    // At restart the last entry (6) is decoded to learn the last term.
    let db = open(dir.path());
    let err = db.shard(9).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                shard: 9,
                index: 6,
                ..
            }
        ),
        "{err}"
    );
}

/// An entry stored under the wrong index (a sealed value whose own index
/// differs from its key's) is `Corrupt`, not served as the entry asked for.
#[test]
fn entry_under_wrong_index_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let s = db.shard(4).unwrap();
    write_with(&db, |b| s.stage_append(b, &ents(1..=5, 1)).unwrap());
    let core = db.core();
    let key = keys::entry_key(4, 3);
    let misfiled = codec::encode_entry(4, &key, &ent(2, 1)).unwrap();
    core.db.put_cf(core.cf(CF_LOG), key, misfiled).unwrap();
    let err = all_entries(&s).unwrap_err();
    let (shard, index, what) = corrupt_at(&err).expect("typed Corrupt error");
    assert_eq!((shard, index), (4, 3));
    assert!(what.contains("stored index 2"), "{what}");
}

/// Checksums on state records: a damaged hard state is refused at load as
/// `CorruptState` naming the record.
#[test]
fn damaged_hard_state_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let s = db.shard(1).unwrap();
        append_commit(&db, &s, &ents(1..=3, 2), 2, 3);
        let core = db.core();
        let key = keys::state_key(1, StateKind::HardState);
        let mut value = core.db.get_cf(core.cf(CF_STATE), key).unwrap().unwrap();
        value.truncate(value.len() - 1); // torn write
        core.db.put_cf(core.cf(CF_STATE), key, value).unwrap();
    }
    let db = open(dir.path());
    let err = db.shard(1).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::CorruptState {
                shard: 1,
                record: "hard state",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_corruption());
}
