//! Durability and identity: what a completed write leaves is what a restart
//! sees; one batch covers many shards whose key ranges never bleed; a data
//! directory refuses a node it doesn't belong to.

use raft::Storage;

use super::*;
use crate::codec;
use crate::keys::{CF_META, MARKER_KEY};

/// Restart promise: hard state, conf state, applied index, log bounds and
/// entries written by a completed `write(sync = true)` survive a reopen.
#[test]
fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = ents(1..=20, 4);
    {
        let db = open(dir.path());
        let s = db.shard(2).unwrap();
        write_with(&db, |b| {
            s.stage_conf_state(b, &voters(&[1, 2, 3])).unwrap();
            s.stage_append(b, &log).unwrap();
            s.stage_hard_state(b, &hard_state(4, 2, 17)).unwrap();
            s.stage_applied_index(b, 15).unwrap();
        });
    }
    let db = open(dir.path());
    assert_eq!(db.shard_ids_on_disk().unwrap(), vec![2]);
    let s = db.shard(2).unwrap();
    let state = s.initial_state().unwrap();
    assert_eq!(state.hard_state, hard_state(4, 2, 17));
    assert_eq!(state.conf_state, voters(&[1, 2, 3]));
    assert_eq!(s.applied_index().unwrap(), 15);
    assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 20));
    assert_eq!(all_entries(&s).unwrap(), log);
    assert_eq!(s.verify_log().unwrap(), 20);
    assert_eq!(s.term(20).unwrap(), 4);
    // shard() hands out one shared state per id.
    let again = db.shard(2).unwrap();
    write_with(&db, |b| s.stage_append(b, &ents(21..=21, 4)).unwrap());
    assert_eq!(again.last_index().unwrap(), 21);
}

/// Group commit: several shards staged into one batch are written by one
/// write, and their key ranges don't bleed: shard 1 and 256 (same low byte),
/// 2 and 65536 keep their own entries through truncation and snapshots.
#[test]
fn many_shards_one_write_without_bleeding() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let ids = [1u32, 2, 256, 65536, u32::MAX];
    let shards: Vec<_> = ids.iter().map(|&id| db.shard(id).unwrap()).collect();
    let mut batch = LogBatch::new();
    for (n, s) in shards.iter().enumerate() {
        let term = n as u64 + 1;
        s.stage_append(&mut batch, &ents(1..=10, term)).unwrap();
        s.stage_hard_state(&mut batch, &hard_state(term, 1, 2))
            .unwrap();
        s.stage_applied_index(&mut batch, 2).unwrap();
    }
    let report = db.write(batch, true).unwrap();
    assert_eq!(
        (report.shards, report.ops, report.synced),
        (5, 5 * 12, true)
    );
    assert!(report.bytes > 0);

    // Truncate shard 1's tail and replace shard 2's whole log by a snapshot.
    write_with(&db, |b| {
        shards[0].stage_append(b, &ents(3..=3, 9)).unwrap();
        let mut snap = raft::eraftpb::Snapshot::default();
        snap.mut_metadata().index = 40;
        snap.mut_metadata().term = 9;
        shards[1].apply_snapshot(b, &snap).unwrap();
    });
    assert_eq!(raw_entry_indexes(&db, 1), vec![1, 2, 3]);
    assert_eq!(raw_entry_indexes(&db, 2), Vec::<u64>::new());
    for (n, s) in shards.iter().enumerate().skip(2) {
        assert_eq!(
            all_entries(s).unwrap(),
            ents(1..=10, n as u64 + 1),
            "shard {}",
            s.id()
        );
        assert_eq!(raw_entry_indexes(&db, s.id()), (1..=10).collect::<Vec<_>>());
    }
    drop(shards);
    drop(db);
    let db = open(dir.path());
    assert_eq!(db.shard_ids_on_disk().unwrap(), ids.to_vec());
    assert_eq!(db.shard(1).unwrap().last_index().unwrap(), 3);
    assert_eq!(db.shard(2).unwrap().first_index().unwrap(), 41);
    assert_eq!(
        all_entries(&db.shard(256).unwrap()).unwrap(),
        ents(1..=10, 3)
    );
}

/// Storage marker: a directory refuses another node id or cluster id, with
/// a message naming both; the right node reopens it.
#[test]
fn marker_refuses_wrong_node_or_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mine = StorageMarker {
        cluster_id: 77,
        node_id: 2,
    };
    drop(RaftDb::open(dir.path(), mine).unwrap());
    let other_node = StorageMarker { node_id: 3, ..mine };
    let err = RaftDb::open(dir.path(), other_node).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "data directory {} belongs to node 2 of cluster 77, not node 3 of cluster 77",
            dir.path().display()
        )
    );
    let other_cluster = StorageMarker {
        cluster_id: 78,
        ..mine
    };
    let err = RaftDb::open(dir.path(), other_cluster).unwrap_err();
    assert!(err
        .to_string()
        .contains("belongs to node 2 of cluster 77, not node 2 of cluster 78"));
    let db = RaftDb::open(dir.path(), mine).unwrap();
    assert_eq!(db.marker(), mine);
}

/// Storage marker: another format version is refused by name, and Raft data
/// without a marker is refused rather than adopted.
#[test]
fn marker_version_and_absence_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let s = db.shard(1).unwrap();
        write_with(&db, |b| s.stage_append(b, &ents(1..=1, 1)).unwrap());
        let core = db.core();
        let mut value = codec::encode_marker(MARKER_KEY, marker(1));
        value[0] = 9; // version 9, checksum now wrong...
        let body = value[..value.len() - 8].to_vec();
        let resealed = codec::seal(MARKER_KEY, body); // ...but resealed: a real v9 marker
        core.db
            .put_cf(core.cf(CF_META), MARKER_KEY, resealed)
            .unwrap();
    }
    let err = RaftDb::open(dir.path(), marker(1)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::FormatVersion {
                found: 9,
                supported: crate::limits::FORMAT_VERSION,
                ..
            }
        ),
        "{err}"
    );
    {
        // Remove the marker with RocksDB directly.
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(false);
        let cfs = ["default", CF_META, "state", CF_LOG, "events"];
        let raw = rocksdb::DB::open_cf(&opts, dir.path().join("raftdb"), cfs).unwrap();
        raw.delete_cf(raw.cf_handle(CF_META).unwrap(), MARKER_KEY)
            .unwrap();
    }
    let err = RaftDb::open(dir.path(), marker(1)).unwrap_err();
    assert!(matches!(err, StoreError::MissingMarker { .. }), "{err}");
}
