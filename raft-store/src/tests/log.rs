//! The raft-rs `Storage` contract on the log: bounds, terms, `max_size`,
//! conflicting tails, and appends raft-rs would never issue.

use protobuf::Message;
use raft::util::limit_size;
use raft::{GetEntriesContext, Storage};

use super::*;

/// Storage contract: an empty shard has first index 1, last index 0 and
/// answers term(0) = 0 (raft-rs's dummy entry), then reads back appends.
#[test]
fn append_read_and_term() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let s = db.shard(7).unwrap();
    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 0));
    assert_eq!(s.term(0).unwrap(), 0);
    assert!(is_unavailable(s.term(1)));
    assert!(!s.initial_state().unwrap().initialized());

    let mut log = ents(1..=4, 1);
    log.extend(ents(5..=10, 2));
    write_with(&db, |b| s.stage_append(b, &log).unwrap());
    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 10));
    assert_eq!(all_entries(&s).unwrap(), log);
    assert_eq!(entries(&s, 3, 6).unwrap(), log[2..5].to_vec());
    assert_eq!(entries(&s, 4, 4).unwrap(), vec![]);
    for e in &log {
        assert_eq!(s.term(e.index).unwrap(), e.term);
    }
    assert!(is_unavailable(s.term(11)));
    // high beyond last + 1 is a caller bug: typed error, not a panic.
    let err = entries(&s, 5, 12).unwrap_err();
    assert!(matches!(
        StoreError::from_raft(&err),
        Some(StoreError::OutOfRange { .. })
    ));
}

/// Storage contract: `max_size` cuts exactly where raft-rs's `limit_size`
/// does, and at least one entry is always returned.
#[test]
fn entries_respect_max_size_like_limit_size() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let s = db.shard(1).unwrap();
    let log = ents(1..=10, 3);
    write_with(&db, |b| s.stage_append(b, &log).unwrap());
    let one = u64::from(log[0].compute_size());
    for max in [
        0,
        1,
        one,
        one + 1,
        3 * one,
        3 * one + 5,
        100 * one,
        raft::NO_LIMIT,
    ] {
        let got = s
            .entries(2, 9, max, GetEntriesContext::empty(false))
            .unwrap();
        let mut want = log[1..8].to_vec();
        limit_size(&mut want, Some(max));
        assert_eq!(got, want, "max_size {max}");
        assert!(!got.is_empty());
    }
    let got = s.read_entries(1, 11, Some(2 * one)).unwrap();
    assert_eq!(got, log[..2].to_vec());
}

/// Storage contract: an append starting at or below the last index replaces
/// the conflicting tail, and entries above the new last index are gone from
/// disk, not just hidden.
#[test]
fn conflicting_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let s = db.shard(3).unwrap();
    write_with(&db, |b| s.stage_append(b, &ents(1..=10, 1)).unwrap());
    write_with(&db, |b| s.stage_append(b, &ents(6..=7, 2)).unwrap());
    assert_eq!(s.last_index().unwrap(), 7);
    let mut want = ents(1..=5, 1);
    want.extend(ents(6..=7, 2));
    assert_eq!(all_entries(&s).unwrap(), want);
    assert!(is_unavailable(s.term(8)));
    assert_eq!(raw_entry_indexes(&db, 3), (1..=7).collect::<Vec<_>>());

    // Two appends in one batch: the later one wins, tail deleted in order.
    write_with(&db, |b| {
        s.stage_append(b, &ents(8..=12, 2)).unwrap();
        s.stage_append(b, &ents(4..=5, 3)).unwrap();
    });
    assert_eq!(s.last_index().unwrap(), 5);
    assert_eq!(raw_entry_indexes(&db, 3), (1..=5).collect::<Vec<_>>());
    assert_eq!(s.term(5).unwrap(), 3);

    drop(s);
    drop(db);
    let db = open(dir.path());
    let s = db.shard(3).unwrap();
    assert_eq!((s.last_index().unwrap(), s.term(5).unwrap()), (5, 3));
}

/// Appends raft-rs never issues are refused without touching the batch:
/// a gap after the last index, non-contiguous indexes, oversized entries.
#[test]
fn invalid_appends_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let s = db.shard(1).unwrap();
    write_with(&db, |b| s.stage_append(b, &ents(1..=3, 1)).unwrap());
    let mut batch = LogBatch::new();
    let gap = s.stage_append(&mut batch, &ents(5..=6, 1)).unwrap_err();
    assert!(
        matches!(gap, StoreError::InvalidAppend { shard: 1, .. }),
        "{gap}"
    );
    let holes = vec![ent(4, 1), ent(6, 1)];
    assert!(s.stage_append(&mut batch, &holes).is_err());
    let mut big = ent(4, 1);
    big.data = vec![0u8; crate::ENTRY_BYTES_MAX].into();
    let err = s.stage_append(&mut batch, &[big]).unwrap_err();
    assert!(
        matches!(err, StoreError::EntryTooLarge { index: 4, .. }),
        "{err}"
    );
    assert!(batch.is_empty());
    assert_eq!(s.last_index().unwrap(), 3);
    db.write(batch, true).unwrap();
}

/// Group commit promise: `applied <= commit` on disk. The applied index may
/// be staged before the hard state that commits it (order inside a batch is
/// free), but a batch whose applied index passes its commit index is refused
/// whole, and the applied index never goes backwards.
#[test]
fn applied_index_is_bounded_by_commit() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let s = db.shard(1).unwrap();
        append_commit(&db, &s, &ents(1..=5, 1), 1, 3);
        let mut batch = LogBatch::new();
        let err = s.stage_applied_index(&mut batch, 2).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidApplied { applied: 2, .. }),
            "{err}"
        );
        s.stage_applied_index(&mut batch, 5).unwrap();
        s.stage_hard_state(&mut batch, &hard_state(1, 1, 5))
            .unwrap();
        db.write(batch, true).unwrap();
        assert_eq!(s.applied_index().unwrap(), 5);

        let mut batch = LogBatch::new();
        s.stage_append(&mut batch, &ents(6..=7, 1)).unwrap();
        s.stage_applied_index(&mut batch, 7).unwrap();
        let err = db.write(batch, true).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidApplied { applied: 7, .. }),
            "{err}"
        );
        assert!(matches!(
            s.applied_index(),
            Err(StoreError::Poisoned { shard: 1 })
        ));
    }
    let db = open(dir.path());
    let s = db.shard(1).unwrap();
    assert_eq!(
        (s.applied_index().unwrap(), s.last_index().unwrap()),
        (5, 5)
    );
}

/// A batch dropped unwritten (or failed) poisons the shards it touched:
/// memory is ahead of disk, so every later call refuses loudly.
#[test]
fn dropped_batch_poisons_touched_shards() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let s = db.shard(1).unwrap();
    let other = db.shard(2).unwrap();
    {
        let mut batch = LogBatch::new();
        s.stage_append(&mut batch, &ents(1..=3, 1)).unwrap();
    }
    let err = s.last_index().unwrap_err();
    assert!(matches!(
        StoreError::from_raft(&err),
        Some(StoreError::Poisoned { shard: 1 })
    ));
    assert!(matches!(
        s.applied_index(),
        Err(StoreError::Poisoned { shard: 1 })
    ));
    assert_eq!(other.last_index().unwrap(), 0);
    drop(s);
    drop(other);
    drop(db);
    // Restart reloads from disk: nothing was written.
    let db = open(dir.path());
    assert_eq!(db.shard(1).unwrap().last_index().unwrap(), 0);
}
