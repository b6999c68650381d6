//! The time-ordered index of pending holds, so expiry touches only what is
//! due (never a scan of all reservations).
//!
//! Buckets are keyed by the exact `expires_at_ms`; at high rates thousands of
//! holds share a millisecond, so a bucket is one small vector. `Extend` does
//! not search the old bucket: it adds the id to the new one, and entries
//! whose reservation no longer expires at their bucket's time are skipped
//! when the bucket is drained (lazy deletion).
//!
//! Order is part of determinism (design §1.5): due holds expire by
//! `(expires_at_ms, reservation id)`, which depends only on the state and not
//! on the history that built the index, so a replica restored from a
//! snapshot expires in the same order as one that replayed the log.

use crate::ids::ReservationId;
use std::collections::BTreeMap;

pub(crate) struct ExpiryIndex {
    buckets: BTreeMap<u64, Vec<ReservationId>>,
    entries: usize,
}

impl ExpiryIndex {
    pub(crate) fn new() -> Self {
        ExpiryIndex {
            buckets: BTreeMap::new(),
            entries: 0,
        }
    }

    pub(crate) fn insert(&mut self, expires_at_ms: u64, id: ReservationId) {
        self.buckets.entry(expires_at_ms).or_default().push(id);
        self.entries += 1;
    }

    /// The earliest bucket time, if any (it may hold only stale entries).
    pub(crate) fn first_due_ms(&self) -> Option<u64> {
        self.buckets.first_key_value().map(|(&t, _)| t)
    }

    /// Removes and returns the earliest bucket if it is due at `up_to_ms`,
    /// with its ids sorted and deduplicated.
    pub(crate) fn pop_due(&mut self, up_to_ms: u64) -> Option<(u64, Vec<ReservationId>)> {
        let first = self.first_due_ms()?;
        if first > up_to_ms {
            return None;
        }
        let (at, mut ids) = self.buckets.pop_first()?;
        self.entries -= ids.len();
        ids.sort_unstable();
        ids.dedup();
        Some((at, ids))
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        // A B-tree node holds up to 11 keys and values; count ~2/3 full
        // nodes, plus the vectors' buffers.
        let per_bucket_node = (8 + std::mem::size_of::<Vec<ReservationId>>()) * 3 / 2;
        self.buckets
            .values()
            .map(|v| v.capacity() * 8 + per_bucket_node)
            .sum()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_id_order() {
        let mut ix = ExpiryIndex::new();
        ix.insert(20, ReservationId(5));
        ix.insert(10, ReservationId(9));
        ix.insert(10, ReservationId(2));
        ix.insert(10, ReservationId(2));
        assert_eq!(ix.len(), 4);
        assert_eq!(ix.pop_due(5), None);
        assert_eq!(
            ix.pop_due(15),
            Some((10, vec![ReservationId(2), ReservationId(9)]))
        );
        assert_eq!(ix.pop_due(15), None);
        assert_eq!(ix.pop_due(20), Some((20, vec![ReservationId(5)])));
        assert_eq!(ix.len(), 0);
    }
}
