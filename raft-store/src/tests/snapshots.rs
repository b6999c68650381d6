//! Snapshots and compaction: raft-rs's `snapshot()` semantics, install on a
//! follower, file durability and clean-up, and `term(first_index - 1)`.

use raft::eraftpb::{Snapshot, SnapshotMetadata};
use raft::{Storage, StorageError};

use super::*;
use crate::snapfile;

fn meta(index: u64, term: u64) -> SnapshotMetadata {
    let mut m = SnapshotMetadata {
        index,
        term,
        ..Default::default()
    };
    m.set_conf_state(voters(&[1, 2, 3]));
    m
}

fn snap_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn is_snap_unavailable(r: raft::Result<Snapshot>) -> bool {
    matches!(
        r,
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable
        ))
    )
}

/// raft-rs `snapshot()`: unavailable until one is saved or when older than
/// `request_index`; otherwise the latest, data read back from its file. A
/// newer snapshot deletes the older file once its record is durable, and
/// the latest survives a restart.
#[test]
fn save_and_load_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let s = db.shard(1).unwrap();
        append_commit(&db, &s, &ents(1..=20, 2), 2, 15);
        assert!(is_snap_unavailable(s.snapshot(0, 2)));
        s.save_snapshot(meta(10, 2), b"state at 10").unwrap();
        let snap = s.snapshot(0, 2).unwrap();
        assert_eq!(
            (snap.get_metadata(), &snap.data[..]),
            (&meta(10, 2), &b"state at 10"[..])
        );
        assert_eq!(s.snapshot(10, 2).unwrap().get_metadata().index, 10);
        assert!(is_snap_unavailable(s.snapshot(11, 2)));
        s.save_snapshot(meta(15, 2), b"state at 15").unwrap();
        assert_eq!(snap_files(dir.path()), vec![snapfile::file_name(1, 15)]);
    }
    let db = open(dir.path());
    let s = db.shard(1).unwrap();
    let snap = s.latest_snapshot().unwrap().unwrap();
    assert_eq!(
        (snap.get_metadata(), &snap.data[..]),
        (&meta(15, 2), &b"state at 15"[..])
    );
    assert_eq!(s.latest_snapshot_metadata().unwrap(), Some(meta(15, 2)));
}

/// A local snapshot must be newer than the latest, not beyond the applied
/// index as written, and carry the log's term at its index.
#[test]
fn save_snapshot_refuses_inconsistent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let s = db.shard(1).unwrap();
    append_commit(&db, &s, &ents(1..=10, 3), 3, 8);
    let refused = |r: Result<(), StoreError>| matches!(r, Err(StoreError::InvalidSnapshot { .. }));
    assert!(refused(s.save_snapshot(meta(9, 3), b"x")), "beyond applied");
    assert!(refused(s.save_snapshot(meta(8, 2), b"x")), "wrong term");
    assert!(refused(s.save_snapshot(meta(0, 0), b"x")), "empty");
    // Applied 10 staged but not yet written: still refused.
    let mut batch = LogBatch::new();
    s.stage_hard_state(&mut batch, &hard_state(3, 1, 10))
        .unwrap();
    s.stage_applied_index(&mut batch, 10).unwrap();
    assert!(
        refused(s.save_snapshot(meta(10, 3), b"x")),
        "applied not written"
    );
    db.write(batch, true).unwrap();
    s.save_snapshot(meta(10, 3), b"x").unwrap();
    assert!(refused(s.save_snapshot(meta(10, 3), b"y")), "not newer");
    assert!(snap_files(dir.path()).iter().all(|n| !n.ends_with(".tmp")));
}

/// Group commit of a local snapshot: `stage_snapshot` may follow the applied
/// index in the same batch (before it is written) and allows a compaction
/// staged after it; all of it lands atomically, and the old file goes after
/// the synced write.
#[test]
fn staged_snapshot_commits_with_applied_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let s = db.shard(2).unwrap();
        append_commit(&db, &s, &ents(1..=10, 1), 1, 4);
        s.save_snapshot(meta(4, 1), b"four").unwrap();
        let mut batch = LogBatch::new();
        let err = s
            .stage_snapshot(&mut batch, meta(9, 1), b"nine")
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidSnapshot { index: 9, .. }),
            "{err}"
        );
        s.stage_applied_index(&mut batch, 9).unwrap();
        s.stage_hard_state(&mut batch, &hard_state(1, 1, 9))
            .unwrap();
        s.stage_snapshot(&mut batch, meta(9, 1), b"nine").unwrap();
        s.compact(&mut batch, 8).unwrap();
        assert_eq!(
            snap_files(dir.path()).len(),
            2,
            "old file kept until written"
        );
        db.write(batch, true).unwrap();
        assert_eq!(snap_files(dir.path()), vec![snapfile::file_name(2, 9)]);
    }
    let db = open(dir.path());
    let s = db.shard(2).unwrap();
    assert_eq!(
        (s.first_index().unwrap(), s.applied_index().unwrap()),
        (8, 9)
    );
    assert_eq!(&s.latest_snapshot().unwrap().unwrap().data[..], b"nine");
}

/// Follower install (raft-rs MemStorage semantics): the whole log is
/// replaced, first = index + 1, last = index, term(index) answers, commit =
/// index, term = max, conf state from the metadata, applied = index; the
/// old snapshot file goes only after a *synced* write.
#[test]
fn apply_snapshot_replaces_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let s = db.shard(6).unwrap();
        append_commit(&db, &s, &ents(1..=5, 5), 5, 3);
        let mut snap = Snapshot::default();
        snap.set_metadata(meta(50, 3));
        snap.data = b"fifty".to_vec().into();
        write_with(&db, |b| s.apply_snapshot(b, &snap).unwrap());
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (51, 50)
        );
        assert_eq!(s.term(50).unwrap(), 3);
        assert!(is_compacted(s.term(49)));
        assert!(is_compacted(entries(&s, 50, 51)));
        assert_eq!(entries(&s, 51, 51).unwrap(), vec![]);
        let state = s.initial_state().unwrap();
        assert_eq!(state.hard_state, hard_state(5, 1, 50));
        assert_eq!(state.conf_state, voters(&[1, 2, 3]));
        assert_eq!(s.applied_index().unwrap(), 50);
        assert_eq!(raw_entry_indexes(&db, 6), Vec::<u64>::new());
        write_with(&db, |b| s.stage_append(b, &ents(51..=52, 6)).unwrap());

        // An out-of-date snapshot is refused.
        let mut old = Snapshot::default();
        old.set_metadata(meta(40, 3));
        let mut batch = LogBatch::new();
        assert!(s.apply_snapshot(&mut batch, &old).is_err());
        db.write(batch, true).unwrap();

        // A newer one, written without sync: the old file stays until a
        // synced write makes the new record durable.
        let mut newer = Snapshot::default();
        newer.set_metadata(meta(80, 7));
        newer.data = b"eighty".to_vec().into();
        let mut batch = LogBatch::new();
        s.apply_snapshot(&mut batch, &newer).unwrap();
        db.write(batch, false).unwrap();
        let both = vec![snapfile::file_name(6, 50), snapfile::file_name(6, 80)];
        assert_eq!(snap_files(dir.path()), both);
        write_with(&db, |b| s.stage_append(b, &ents(81..=81, 7)).unwrap());
        assert_eq!(snap_files(dir.path()), vec![snapfile::file_name(6, 80)]);
    }
    let db = open(dir.path());
    let s = db.shard(6).unwrap();
    assert_eq!(
        (s.first_index().unwrap(), s.last_index().unwrap()),
        (81, 81)
    );
    assert_eq!(s.term(80).unwrap(), 7);
    assert_eq!(&s.latest_snapshot().unwrap().unwrap().data[..], b"eighty");
}

/// Restart sweeps snapshot files no durable record references (a crash
/// between file and record) and temporary files; referenced ones stay.
#[test]
fn unreferenced_snapshot_files_are_swept_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let s = db.shard(1).unwrap();
        append_commit(&db, &s, &ents(1..=3, 1), 1, 3);
        s.save_snapshot(meta(3, 1), b"three").unwrap();
    }
    let snaps = dir.path().join("snapshots");
    std::fs::write(snaps.join(snapfile::file_name(1, 99)), b"orphan").unwrap();
    std::fs::write(snaps.join("shard-1-100.snap.tmp"), b"half").unwrap();
    std::fs::write(snaps.join("README"), b"not ours").unwrap();
    drop(open(dir.path()));
    assert_eq!(
        snap_files(dir.path()),
        vec!["README".to_string(), snapfile::file_name(1, 3)]
    );
}

/// Snapshot files are checked: a flipped byte or a truncated file is
/// `Corrupt` naming shard and snapshot index, at read or at restart.
#[test]
fn damaged_snapshot_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshots").join(snapfile::file_name(4, 3));
    {
        let db = open(dir.path());
        let s = db.shard(4).unwrap();
        append_commit(&db, &s, &ents(1..=3, 1), 1, 3);
        s.save_snapshot(meta(3, 1), b"snapshot data").unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[2] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = s.latest_snapshot().unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Corrupt {
                    shard: 4,
                    index: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            corrupt_at(&s.snapshot(0, 2).unwrap_err()).map(|c| c.1),
            Some(3)
        );
        std::fs::write(&path, b"snap").unwrap();
    }
    let db = open(dir.path());
    let err = db.shard(4).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                shard: 4,
                index: 3,
                ..
            }
        ),
        "{err}"
    );
}

/// Compaction: entries below the bound are deleted on disk, `term(first-1)`
/// still answers (raft-rs needs it to match appends), older indexes are
/// `Compacted`, and compaction never passes the latest snapshot.
#[test]
fn compaction_keeps_boundary_term() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let s = db.shard(3).unwrap();
        let mut log = ents(1..=8, 1);
        log.extend(ents(9..=20, 2));
        append_commit(&db, &s, &log, 2, 20);
        let mut batch = LogBatch::new();
        let err = s.compact(&mut batch, 2).unwrap_err();
        assert!(
            matches!(err, StoreError::CompactTooFar { limit: 1, .. }),
            "no snapshot: {err}"
        );
        s.save_snapshot(meta(12, 2), b"twelve").unwrap();
        let err = s.compact(&mut batch, 14).unwrap_err();
        assert!(
            matches!(err, StoreError::CompactTooFar { limit: 13, .. }),
            "{err}"
        );
        s.compact(&mut batch, 9).unwrap();
        db.write(batch, true).unwrap();
        assert_eq!(s.first_index().unwrap(), 9);
        assert_eq!(s.term(8).unwrap(), 1);
        assert!(is_compacted(s.term(7)));
        assert!(is_compacted(entries(&s, 8, 10)));
        assert_eq!(entries(&s, 9, 21).unwrap(), log[8..].to_vec());
        assert_eq!(raw_entry_indexes(&db, 3), (9..=20).collect::<Vec<_>>());
        write_with(&db, |b| s.compact(b, 5).unwrap()); // below first: no-op
        write_with(&db, |b| s.compact(b, 13).unwrap());
    }
    let db = open(dir.path());
    let s = db.shard(3).unwrap();
    assert_eq!(
        (s.first_index().unwrap(), s.last_index().unwrap()),
        (13, 20)
    );
    assert_eq!(s.term(12).unwrap(), 2);
    assert!(is_compacted(s.term(11)));
    let mut batch = LogBatch::new();
    let err = s.stage_append(&mut batch, &ents(12..=12, 3)).unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidAppend { .. }),
        "overwrite compacted: {err}"
    );
    db.write(batch, true).unwrap();
}
