//! The idempotency table: recent request ids and the outcome they got.
//!
//! Design §1.3 asks that a retry with the same id and body gets the first
//! answer, and the same id with another body is refused. The table keeps two
//! generations of entries: new ids go into `current`; when `current` has
//! spanned `window_ms` of log time or holds half of `entries_max`, it becomes
//! `previous` and the old `previous` is dropped whole. Hence:
//!
//! - an id is remembered for at least `window_ms` after it was applied,
//!   unless `entries_max / 2` newer ids arrived first (then at least that
//!   many newer ids);
//! - the table never holds more than `entries_max` ids, and dropping old ids
//!   is one deallocation, not a scan per entry.
//!
//! Rotation is driven by log time and counts only, so it is identical on
//! every replica.

use crate::ids::RequestId;
use crate::limits::{DEDUP_ENTRIES_DEFAULT, DEDUP_WINDOW_MS_DEFAULT};
use crate::outcome::Outcome;
use hashbrown::HashMap;

/// Retention bounds of the idempotency table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupConfig {
    /// Minimum log time an id is remembered (unless pushed out by count).
    pub window_ms: u64,
    /// Maximum ids remembered at once; at least half of it are always kept.
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
    pub(crate) digest: u64,
    pub(crate) outcome: Outcome,
}

pub(crate) struct Generation {
    pub(crate) started_at_ms: u64,
    pub(crate) entries: HashMap<u128, Remembered>,
}

impl Generation {
    fn new(started_at_ms: u64) -> Self {
        Generation {
            started_at_ms,
            entries: HashMap::new(),
        }
    }
}

pub(crate) struct DedupTable {
    pub(crate) config: DedupConfig,
    pub(crate) current: Generation,
    pub(crate) previous: Generation,
}

impl DedupTable {
    pub(crate) fn new(config: DedupConfig) -> Self {
        DedupTable {
            config,
            current: Generation::new(0),
            previous: Generation::new(0),
        }
    }

    pub(crate) fn get(&self, id: RequestId) -> Option<&Remembered> {
        self.current
            .entries
            .get(&id.0)
            .or_else(|| self.previous.entries.get(&id.0))
    }

    /// Whether inserting at `now_ms` first rotates the generations.
    pub(crate) fn must_rotate(&self, now_ms: u64) -> bool {
        let half = (self.config.entries_max / 2).max(1);
        self.current.entries.len() >= half
            || now_ms.saturating_sub(self.current.started_at_ms) >= self.config.window_ms
    }

    /// Starts a new generation at `now_ms`; returns the dropped one so the
    /// caller can release what only it kept alive.
    pub(crate) fn rotate(&mut self, now_ms: u64) -> Generation {
        let fresh = Generation::new(now_ms);
        let previous = std::mem::replace(&mut self.current, fresh);
        std::mem::replace(&mut self.previous, previous)
    }

    /// Records a new id. The caller has checked `get` and `must_rotate`.
    pub(crate) fn insert(&mut self, id: RequestId, remembered: Remembered) {
        let old = self.current.entries.insert(id.0, remembered);
        debug_assert!(old.is_none(), "request id recorded twice");
    }

    pub(crate) fn len(&self) -> usize {
        self.current.entries.len() + self.previous.entries.len()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(u128, Remembered)>() + 1;
        (self.current.entries.capacity() + self.previous.entries.capacity()) * slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Refusal;

    fn remembered() -> Remembered {
        Remembered {
            digest: 1,
            outcome: Err(Refusal::UnknownReservation),
        }
    }

    #[test]
    fn rotates_by_count_and_keeps_one_generation() {
        let mut t = DedupTable::new(DedupConfig {
            window_ms: u64::MAX,
            entries_max: 4,
        });
        for i in 0..2 {
            assert!(!t.must_rotate(0));
            t.insert(RequestId(i), remembered());
        }
        assert!(t.must_rotate(0));
        let dropped = t.rotate(0);
        assert!(dropped.entries.is_empty());
        t.insert(RequestId(2), remembered());
        assert!(
            t.get(RequestId(0)).is_some(),
            "previous generation is still consulted"
        );
        t.insert(RequestId(3), remembered());
        let dropped = t.rotate(0);
        assert_eq!(dropped.entries.len(), 2);
        assert!(t.get(RequestId(0)).is_none());
        assert!(t.get(RequestId(3)).is_some());
        assert!(t.len() <= 4);
    }

    #[test]
    fn rotates_by_log_time() {
        let mut t = DedupTable::new(DedupConfig {
            window_ms: 100,
            entries_max: 1_000,
        });
        t.insert(RequestId(1), remembered());
        assert!(!t.must_rotate(99));
        assert!(t.must_rotate(100));
    }
}
