//! Kept events: written with the applied index, read back in order up to
//! the written applied index, bounded by the floor (retention, a received
//! snapshot), kept across a restart, and a damaged event is an error.

use raft::eraftpb::{Snapshot, SnapshotMetadata};

use super::*;
use crate::keys::CF_EVENTS;

fn bodies(n: usize, index: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{index}.{i}").into_bytes())
        .collect()
}

/// Appends, commits and applies entries `range` (term 1), staging `per`
/// events for each, one batch per entry.
fn apply_with_events(
    db: &RaftDb,
    s: &ShardStorage,
    range: std::ops::RangeInclusive<u64>,
    per: usize,
) {
    for i in range {
        write_with(db, |b| {
            s.stage_append(b, &[ent(i, 1)]).unwrap();
            s.stage_hard_state(b, &hard_state(1, 1, i)).unwrap();
            s.stage_applied_index(b, i).unwrap();
            s.stage_events(b, i, bodies(per, i).iter().map(Vec::as_slice))
                .unwrap();
        });
    }
}

fn positions(read: &crate::EventRead) -> Vec<(u64, u32)> {
    read.events.iter().map(|e| (e.index, e.seq)).collect()
}

/// Events come back strictly after the cursor, in (index, seq) order,
/// with the body they were staged with; `u32::MAX` as seq means "after the
/// whole entry"; `max` bounds a read.
#[test]
fn events_read_back_after_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let s = db.shard(3).unwrap();
    assert_eq!(s.event_floor().unwrap(), 1, "a new shard keeps everything");
    apply_with_events(&db, &s, 1..=4, 2);
    let all = s.read_events(0, u32::MAX, 100).unwrap();
    assert_eq!(
        positions(&all),
        vec![
            (1, 0),
            (1, 1),
            (2, 0),
            (2, 1),
            (3, 0),
            (3, 1),
            (4, 0),
            (4, 1)
        ]
    );
    assert_eq!(all.events[5].body, b"3.1".to_vec());
    assert_eq!(all.up_to, 4);
    let after = s.read_events(2, 0, 3).unwrap();
    assert_eq!(positions(&after), vec![(2, 1), (3, 0), (3, 1)]);
    let whole = s.read_events(2, u32::MAX, 1).unwrap();
    assert_eq!(positions(&whole), vec![(3, 0)]);
    assert!(s.read_events(4, 1, 10).unwrap().events.is_empty());
    // Another shard's events never show.
    let other = db.shard(4).unwrap();
    assert!(other
        .read_events(0, u32::MAX, 10)
        .unwrap()
        .events
        .is_empty());
}

/// Events staged in a batch not yet written are not readable: a reader
/// never runs ahead of the written applied index.
#[test]
fn unwritten_events_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let s = db.shard(0).unwrap();
    apply_with_events(&db, &s, 1..=1, 1);
    let mut batch = LogBatch::new();
    s.stage_append(&mut batch, &[ent(2, 1)]).unwrap();
    s.stage_hard_state(&mut batch, &hard_state(1, 1, 2))
        .unwrap();
    s.stage_applied_index(&mut batch, 2).unwrap();
    s.stage_events(&mut batch, 2, bodies(1, 2).iter().map(Vec::as_slice))
        .unwrap();
    assert_eq!(
        positions(&s.read_events(0, u32::MAX, 10).unwrap()),
        vec![(1, 0)]
    );
    db.write(batch, true).unwrap();
    assert_eq!(
        positions(&s.read_events(0, u32::MAX, 10).unwrap()),
        vec![(1, 0), (2, 0)]
    );
}

/// Raising the floor deletes what is below it, never lowers, and both the
/// floor and the kept events survive a restart.
#[test]
fn floor_prunes_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let s = db.shard(1).unwrap();
        apply_with_events(&db, &s, 1..=6, 1);
        write_with(&db, |b| s.stage_event_floor(b, 4).unwrap());
        write_with(&db, |b| s.stage_event_floor(b, 2).unwrap());
        assert_eq!(s.event_floor().unwrap(), 4);
        let read = s.read_events(0, u32::MAX, 10).unwrap();
        assert_eq!(positions(&read), vec![(4, 0), (5, 0), (6, 0)]);
        assert_eq!(read.floor, 4);
    }
    let db = open(dir.path());
    let s = db.shard(1).unwrap();
    assert_eq!(s.event_floor().unwrap(), 4);
    assert_eq!(
        positions(&s.read_events(0, u32::MAX, 10).unwrap()),
        vec![(4, 0), (5, 0), (6, 0)]
    );
}

/// A snapshot received from the leader raises the floor past its index:
/// the entries it stands for never emitted events here.
#[test]
fn received_snapshot_raises_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let s = db.shard(2).unwrap();
    apply_with_events(&db, &s, 1..=3, 1);
    let mut meta = SnapshotMetadata {
        index: 10,
        term: 2,
        ..Default::default()
    };
    meta.set_conf_state(voters(&[1, 2, 3]));
    let mut snap = Snapshot::default();
    snap.set_metadata(meta);
    snap.data = b"state at 10".to_vec().into();
    write_with(&db, |b| s.apply_snapshot(b, &snap).unwrap());
    assert_eq!(s.event_floor().unwrap(), 11);
    let read = s.read_events(0, u32::MAX, 10).unwrap();
    assert!(read.events.is_empty(), "{read:?}");
    assert_eq!(read.floor, 11);
}

/// A flipped byte in a kept event is reported as corruption, not skipped.
#[test]
fn damaged_event_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let s = db.shard(5).unwrap();
    apply_with_events(&db, &s, 1..=2, 1);
    let core = db.core();
    let key = keys::entry_events_key(5, 2);
    let mut value = core.db.get_cf(core.cf(CF_EVENTS), key).unwrap().unwrap();
    value[0] ^= 0x40;
    core.db.put_cf(core.cf(CF_EVENTS), key, value).unwrap();
    match s.read_events(0, u32::MAX, 10) {
        Err(StoreError::Corrupt { shard: 5, what, .. }) => {
            assert!(what.contains("entry 2"), "{what}")
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}
