//! The idempotency table: recent request ids and the outcome they got.
//!
//! Design §1.3 asks that a retry with the same id and body gets the first
//! answer, and the same id with another body is refused. The table is a
//! FIFO of entries in log order (a ring) plus a hash index of 4-byte slots
//! pointing into it:
//!
//! - an id is remembered for at least `window_ms` of log time after it was
//!   applied, unless `entries_max` newer ids arrived first; the table never
//!   holds more than `entries_max` ids;
//! - the common case, a new id, costs one probe of the compact index (the
//!   ring is only read when a 7-bit tag matches) and one append to the ring;
//!   eviction pops the oldest entry, so memory per id is one ring entry plus
//!   about 8 bytes of index, and order is log order on every replica.

use crate::ids::RequestId;
use crate::limits::{DEDUP_ENTRIES_DEFAULT, DEDUP_WINDOW_MS_DEFAULT};
use crate::outcome::Outcome;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::collections::VecDeque;
use std::hash::BuildHasher;

/// Retention bounds of the idempotency table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupConfig {
    /// Minimum log time (ms) an id is remembered, unless pushed out by count.
    pub window_ms: u64,
    /// Maximum ids remembered at once (at least 1).
    pub entries_max: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            window_ms: DEDUP_WINDOW_MS_DEFAULT,
            entries_max: DEDUP_ENTRIES_DEFAULT,
        }
    }
}

/// What the table keeps per request id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Remembered {
    pub(crate) id: RequestId,
    pub(crate) applied_at_ms: u64,
    pub(crate) digest: u64,
    pub(crate) outcome: Outcome,
}

pub(crate) struct DedupTable {
    pub(crate) config: DedupConfig,
    /// Entries, oldest first.
    ring: VecDeque<Remembered>,
    /// Sequence number of `ring[0]`; entry `ring[i]` has `head_seq + i`
    /// (wrapping), which is what the index stores.
    head_seq: u32,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl DedupTable {
    pub(crate) fn new(config: DedupConfig) -> Self {
        assert!(
            config.entries_max >= 1,
            "the dedup table holds at least one id"
        );
        DedupTable {
            config,
            ring: VecDeque::new(),
            head_seq: 0,
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn position(&self, seq: u32) -> usize {
        seq.wrapping_sub(self.head_seq) as usize
    }

    pub(crate) fn get(&self, id: RequestId) -> Option<&Remembered> {
        let hash = self.hasher.hash_one(id.0);
        self.index
            .find(hash, |&seq| self.ring[self.position(seq)].id == id)
            .map(|&seq| &self.ring[self.position(seq)])
    }

    /// The oldest entry if it must go before an entry applied at `now_ms`
    /// is added: the table is full, or the entry is older than the window.
    pub(crate) fn pop_expired(&mut self, now_ms: u64) -> Option<Remembered> {
        let front = self.ring.front()?;
        let full = self.ring.len() >= self.config.entries_max;
        let old = now_ms.saturating_sub(front.applied_at_ms) >= self.config.window_ms;
        if !(full || old) {
            return None;
        }
        let entry = self.ring.pop_front().expect("front exists");
        let hash = self.hasher.hash_one(entry.id.0);
        let head = self.head_seq;
        self.index
            .find_entry(hash, |&seq| seq == head)
            .expect("every ring entry is indexed")
            .remove();
        self.head_seq = self.head_seq.wrapping_add(1);
        self.shrink_when_sparse();
        Some(entry)
    }

    /// Gives memory back once the table is a quarter full (an idle shard,
    /// or after a burst): halving at a quarter keeps the work amortised O(1).
    fn shrink_when_sparse(&mut self) {
        const SHRINK_FLOOR: usize = 4_096;
        let len = self.ring.len();
        if self.ring.capacity() > SHRINK_FLOOR && len < self.ring.capacity() / 4 {
            self.ring.shrink_to(len * 2);
            let (ring, hasher, head) = (&self.ring, &self.hasher, self.head_seq);
            self.index.shrink_to(len * 2, |&s| {
                hasher.hash_one(ring[s.wrapping_sub(head) as usize].id.0)
            });
        }
    }

    /// Records a new id. The caller has checked `get` and evicted with
    /// `pop_expired`.
    pub(crate) fn insert(&mut self, entry: Remembered) {
        debug_assert!(self.get(entry.id).is_none(), "request id recorded twice");
        assert!(
            self.ring.len() < u32::MAX as usize,
            "dedup ring over 2^32 entries"
        );
        let seq = self.head_seq.wrapping_add(self.ring.len() as u32);
        let hash = self.hasher.hash_one(entry.id.0);
        self.ring.push_back(entry);
        let (ring, hasher, head) = (&self.ring, &self.hasher, self.head_seq);
        self.index.insert_unique(hash, seq, |&s| {
            hasher.hash_one(ring[s.wrapping_sub(head) as usize].id.0)
        });
    }

    /// Entries, oldest first (snapshot order: log order).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Remembered> {
        self.ring.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.ring.capacity() * std::mem::size_of::<Remembered>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Refusal;

    fn entry(id: u128, at: u64) -> Remembered {
        Remembered {
            id: RequestId(id),
            applied_at_ms: at,
            digest: 1,
            outcome: Err(Refusal::UnknownReservation),
        }
    }

    fn add(t: &mut DedupTable, id: u128, at: u64) -> Vec<u128> {
        let mut gone = Vec::new();
        while let Some(e) = t.pop_expired(at) {
            gone.push(e.id.0);
        }
        t.insert(entry(id, at));
        gone
    }

    #[test]
    fn evicts_oldest_first_by_count() {
        let mut t = DedupTable::new(DedupConfig {
            window_ms: u64::MAX,
            entries_max: 3,
        });
        for id in 0..3 {
            assert!(add(&mut t, id, 0).is_empty());
        }
        assert_eq!(add(&mut t, 3, 0), vec![0]);
        assert!(t.get(RequestId(0)).is_none());
        assert!(t.get(RequestId(1)).is_some());
        assert_eq!(t.len(), 3);
        let order: Vec<u128> = t.iter().map(|e| e.id.0).collect();
        assert_eq!(order, vec![1, 2, 3]);
    }

    #[test]
    fn evicts_by_log_time() {
        let mut t = DedupTable::new(DedupConfig {
            window_ms: 100,
            entries_max: 1_000,
        });
        add(&mut t, 1, 0);
        add(&mut t, 2, 50);
        assert!(add(&mut t, 3, 99).is_empty());
        assert_eq!(add(&mut t, 4, 150), vec![1, 2]);
        assert!(t.get(RequestId(3)).is_some());
    }

    #[test]
    fn survives_index_growth_and_sequence_wrap() {
        let mut t = DedupTable::new(DedupConfig {
            window_ms: u64::MAX,
            entries_max: 1_000,
        });
        t.head_seq = u32::MAX - 500;
        for id in 0..5_000u128 {
            add(&mut t, id, 0);
        }
        for id in 0..4_000u128 {
            assert!(t.get(RequestId(id)).is_none());
        }
        for id in 4_000..5_000u128 {
            assert_eq!(t.get(RequestId(id)).map(|e| e.id.0), Some(id));
        }
    }
}
