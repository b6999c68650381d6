//! Property test: random appends (with overlaps and conflicts), commits,
//! snapshots (local and installed), compactions and restarts against a
//! plain `Vec<Entry>` model; `entries`, `term`, `first_index`, `last_index`
//! and the durable state must agree with the model after every step.

use proptest::prelude::*;
use raft::eraftpb::{Entry, Snapshot, SnapshotMetadata};
use raft::util::limit_size;
use raft::{GetEntriesContext, Storage};

use super::*;

const SHARD: u32 = 300;

/// The reference: a log as a vector, plus the indexes that bound it.
#[derive(Debug, Default)]
struct Model {
    /// Entries first..=last, in order.
    log: Vec<Entry>,
    truncated: (u64, u64),
    term: u64,
    commit: u64,
    applied: u64,
    snapshot: u64,
}

impl Model {
    fn first(&self) -> u64 {
        self.truncated.0 + 1
    }

    fn last(&self) -> u64 {
        self.truncated.0 + self.log.len() as u64
    }

    fn term_at(&self, index: u64) -> u64 {
        if index == self.truncated.0 {
            self.truncated.1
        } else {
            self.log[(index - self.first()) as usize].term
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Append `len` entries starting `back` before last + 1 (clamped above
    /// the commit index and the first index), `bump` terms above the term
    /// before them, each with `size` bytes of data.
    Append {
        back: u64,
        len: u64,
        bump: u64,
        size: usize,
    },
    /// Commit and apply a fraction (per mille) of the uncommitted log.
    Commit { permille: u64 },
    /// Save a local snapshot at the applied index, in its own write or
    /// staged into a batch.
    Snapshot { staged: bool },
    /// Compact up to a fraction of the way to the snapshot index + 1.
    Compact { permille: u64 },
    /// Install a leader's snapshot `ahead` entries past the last index.
    Install { ahead: u64 },
    /// Close and reopen the database.
    Reopen,
    /// Read a range with a byte limit.
    Read { from: u64, to: u64, max: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..8, 1u64..6, 0u64..2, 0usize..48)
            .prop_map(|(back, len, bump, size)| Op::Append { back, len, bump, size }),
        4 => (0u64..=1000).prop_map(|permille| Op::Commit { permille }),
        2 => any::<bool>().prop_map(|staged| Op::Snapshot { staged }),
        3 => (0u64..=1000).prop_map(|permille| Op::Compact { permille }),
        1 => (0u64..5).prop_map(|ahead| Op::Install { ahead }),
        1 => Just(Op::Reopen),
        2 => (0u64..=1000, 0u64..=1000, 0u64..400).prop_map(|(from, to, max)| Op::Read { from, to, max }),
    ]
}

struct Harness {
    dir: tempfile::TempDir,
    db: Option<RaftDb>,
    s: Option<ShardStorage>,
    m: Model,
}

impl Harness {
    fn db(&self) -> &RaftDb {
        self.db.as_ref().expect("open")
    }

    fn s(&self) -> &ShardStorage {
        self.s.as_ref().expect("open")
    }

    fn write(&self, f: impl FnOnce(&mut LogBatch, &ShardStorage)) {
        let mut batch = LogBatch::new();
        f(&mut batch, self.s());
        // Unsynced writes: a process restart still sees them (same WAL), and
        // the property is about content, not fsync.
        self.db().write(batch, false).unwrap();
    }

    fn reopen(&mut self) {
        self.s = None;
        self.db = None;
        let db = open(self.dir.path());
        self.s = Some(db.shard(SHARD).unwrap());
        self.db = Some(db);
    }

    fn append(&mut self, back: u64, len: u64, bump: u64, size: usize) {
        let m = &mut self.m;
        let start = (m.last() + 1)
            .saturating_sub(back)
            .max(m.first())
            .max(m.commit + 1);
        let term = m.term_at(start - 1).max(m.term) + bump;
        let new: Vec<Entry> = (start..start + len)
            .map(|i| {
                let mut e = ent(i, term);
                e.data = vec![i as u8; size].into();
                e
            })
            .collect();
        m.log.truncate((start - m.first()) as usize);
        m.log.extend(new.iter().cloned());
        m.term = term;
        let commit = m.commit;
        self.write(|b, s| {
            s.stage_append(b, &new).unwrap();
            s.stage_hard_state(b, &hard_state(term, 1, commit)).unwrap();
        });
    }

    fn commit(&mut self, permille: u64) {
        let m = &mut self.m;
        m.commit += (m.last() - m.commit) * permille / 1000;
        m.applied = m.commit;
        let (term, commit) = (m.term, m.commit);
        self.write(|b, s| {
            s.stage_hard_state(b, &hard_state(term, 1, commit)).unwrap();
            s.stage_applied_index(b, commit).unwrap();
        });
    }

    fn save_snapshot(&mut self, staged: bool) {
        let m = &mut self.m;
        if m.applied <= m.snapshot {
            return;
        }
        let meta = SnapshotMetadata {
            index: m.applied,
            term: m.term_at(m.applied),
            ..Default::default()
        };
        m.snapshot = m.applied;
        let data = m.applied.to_le_bytes();
        if staged {
            self.write(|b, s| s.stage_snapshot(b, meta, &data).unwrap());
        } else {
            self.s().save_snapshot(meta, &data).unwrap();
        }
    }

    fn compact(&mut self, permille: u64) {
        let m = &mut self.m;
        let (lo, hi) = (m.first(), m.snapshot + 1);
        if hi <= lo {
            return;
        }
        let up_to = lo + (hi - lo) * permille / 1000;
        let keep = (up_to - m.first()) as usize;
        m.truncated = (up_to - 1, m.term_at(up_to - 1));
        m.log.drain(..keep);
        self.write(|b, s| s.compact(b, up_to).unwrap());
    }

    fn install(&mut self, ahead: u64) {
        let m = &mut self.m;
        let index = m.last().max(m.snapshot + 1).max(m.first()) + ahead;
        m.term += 1;
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = m.term;
        snap.data = index.to_le_bytes().to_vec().into();
        m.log.clear();
        m.truncated = (index, m.term);
        (m.commit, m.applied, m.snapshot) = (index, index, index);
        self.write(|b, s| s.apply_snapshot(b, &snap).unwrap());
    }

    fn read(&self, from: u64, to: u64, max: u64) {
        let m = &self.m;
        let span = m.last() + 1 - m.first();
        let low = m.first() + span * from / 1000;
        let high = low + (m.last() + 1 - low) * to / 1000;
        let got = self
            .s()
            .entries(low, high, max, GetEntriesContext::empty(false))
            .unwrap();
        let mut want = m.log[(low - m.first()) as usize..(high - m.first()) as usize].to_vec();
        limit_size(&mut want, Some(max));
        assert_eq!(got, want, "entries({low}, {high}, {max})");
    }

    /// Everything the store answers must match the model.
    fn check(&self) {
        let (s, m) = (self.s(), &self.m);
        assert_eq!(s.first_index().unwrap(), m.first());
        assert_eq!(s.last_index().unwrap(), m.last());
        assert_eq!(all_entries(s).unwrap(), m.log);
        for index in m.truncated.0..=m.last() {
            assert_eq!(s.term(index).unwrap(), m.term_at(index), "term({index})");
        }
        if m.truncated.0 > 0 {
            assert!(is_compacted(s.term(m.truncated.0 - 1)));
            assert!(is_compacted(entries(s, m.truncated.0, m.last() + 1)));
        }
        assert!(is_unavailable(s.term(m.last() + 1)));
        let hs = s.initial_state().unwrap().hard_state;
        assert_eq!(
            (hs.commit, s.applied_index().unwrap()),
            (m.commit, m.applied)
        );
        let snap = s
            .latest_snapshot_metadata()
            .unwrap()
            .map_or(0, |meta| meta.index);
        assert_eq!(snap, m.snapshot);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The store equals the `Vec<Entry>` model after every operation,
    /// including across restarts.
    #[test]
    fn store_matches_vec_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let s = db.shard(SHARD).unwrap();
        let mut h = Harness { dir, db: Some(db), s: Some(s), m: Model::default() };
        for op in ops {
            match op {
                Op::Append { back, len, bump, size } => h.append(back, len, bump, size),
                Op::Commit { permille } => h.commit(permille),
                Op::Snapshot { staged } => h.save_snapshot(staged),
                Op::Compact { permille } => h.compact(permille),
                Op::Install { ahead } => h.install(ahead),
                Op::Reopen => h.reopen(),
                Op::Read { from, to, max } => h.read(from, to, max),
            }
            h.check();
        }
    }
}
