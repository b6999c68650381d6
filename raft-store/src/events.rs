//! The change events a shard's applied entries emitted, kept for streaming
//! (design §3 "Events").
//!
//! The server stages the events of each applied entry in the same batch as
//! the applied index that covers them, so on disk the events of every entry
//! from the *event floor* up to the applied index are present, and a crash
//! loses events only together with the applied index (the entries are then
//! applied again and their events staged again, byte for byte alike).
//! Events are opaque bytes here, numbered `(index, seq)`. An entry's events
//! are kept under one key, `(shard, index)`, each prefixed by its length
//! (a varint), in `seq` order: one memtable insert and one checksum per
//! entry instead of per event, which under load is hundreds of events.
//!
//! The floor rises in two ways, each staged with the deletion of everything
//! below it: retention (the server keeps the last N entries' events), and a
//! snapshot received from the leader (the entries it stands for were never
//! applied here, so their events never existed on this node). A reader
//! compares the floor before and after a read (see
//! [`ShardStorage::read_events`]): the floor moves in memory when staged,
//! before the deletion is written, so a read that may have seen a deletion
//! always sees the raised floor afterwards.

use crate::codec;
use crate::error::StoreError;
use crate::keys::{self, StateKind, CF_EVENTS};
use crate::shard::{ShardState, ShardStorage};
use crate::LogBatch;
use rocksdb::ReadOptions;

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Log index of the entry that emitted it.
    pub index: u64,
    /// Its position among that entry's events.
    pub seq: u32,
    /// The event as the server encoded it.
    pub body: Vec<u8>,
}

/// What [`ShardStorage::read_events`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRead {
    /// Events after the cursor, in `(index, seq)` order, all with an index
    /// up to the written applied index.
    pub events: Vec<StoredEvent>,
    /// The floor after the read: if it is above the index the read started
    /// at, the events read may have a hole and must not be used.
    pub floor: u64,
    /// The written applied index the read went up to: every event up to
    /// it is in `events` unless `max` cut the read short.
    pub up_to: u64,
}

impl ShardStorage {
    /// Stages the events of the entry at `index` (numbered from 0 in the
    /// order given), under the entry's one key.
    pub fn stage_events<'a>(
        &self,
        batch: &mut LogBatch,
        index: u64,
        events: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), StoreError> {
        let mut body = Vec::new();
        for event in events {
            put_varint(&mut body, event.len() as u64);
            body.extend_from_slice(event);
        }
        if body.is_empty() {
            return Ok(());
        }
        let _st = self.read_state()?;
        let key = keys::entry_events_key(self.id(), index);
        batch
            .wb
            .put_cf(self.inner.core.cf(CF_EVENTS), key, codec::seal(&key, body));
        batch.touch(self);
        Ok(())
    }

    /// Raises the event floor to `floor`, staging the deletion of every
    /// event below it. A floor at or below the current one is a no-op.
    pub fn stage_event_floor(&self, batch: &mut LogBatch, floor: u64) -> Result<(), StoreError> {
        let mut st = self.write_state()?;
        self.stage_event_floor_locked(batch, &mut st, floor);
        drop(st);
        batch.touch(self);
        Ok(())
    }

    pub(crate) fn stage_event_floor_locked(
        &self,
        batch: &mut LogBatch,
        st: &mut ShardState,
        floor: u64,
    ) {
        if floor <= st.event_floor {
            return;
        }
        let shard = self.id();
        let from = keys::entry_events_key(shard, 0);
        let to = keys::entry_events_key(shard, floor);
        batch
            .wb
            .delete_range_cf(self.inner.core.cf(CF_EVENTS), &from[..], &to[..]);
        let key = keys::state_key(shard, StateKind::EventFloor);
        self.put_state(
            batch,
            StateKind::EventFloor,
            codec::encode_u64s(&key, &[floor]),
        );
        st.event_floor = floor;
    }

    /// The first index whose events this node keeps.
    pub fn event_floor(&self) -> Result<u64, StoreError> {
        Ok(self.read_state()?.event_floor)
    }

    /// The applied index as of the last completed write: events up to it
    /// are on disk and readable.
    pub fn written_applied(&self) -> Result<u64, StoreError> {
        Ok(self.read_state()?.written_applied)
    }

    /// Up to `max` events strictly after `(index, seq)`, up to the written
    /// applied index. A damaged event is an error, never skipped.
    pub fn read_events(&self, index: u64, seq: u32, max: usize) -> Result<EventRead, StoreError> {
        let shard = self.id();
        let up_to = self.written_applied()?;
        let (start_index, start_seq) = match seq.checked_add(1) {
            Some(next) => (index, next),
            None => (index.saturating_add(1), 0),
        };
        let mut events = Vec::new();
        if start_index <= up_to {
            let mut opts = ReadOptions::default();
            opts.set_iterate_lower_bound(keys::entry_events_key(shard, start_index).to_vec());
            opts.set_iterate_upper_bound(keys::entry_events_key(shard, up_to + 1).to_vec());
            let core = &self.inner.core;
            let mut it = core.db.raw_iterator_cf_opt(core.cf(CF_EVENTS), opts);
            it.seek_to_first();
            while let (Some(key), Some(value)) = (it.key(), it.value()) {
                if events.len() >= max {
                    break;
                }
                let corrupt = |what: String| StoreError::Corrupt {
                    shard,
                    index: start_index,
                    what,
                };
                let index = keys::decode_entry_events_key(shard, key)
                    .ok_or_else(|| corrupt("an event key of another layout".to_string()))?;
                let body = codec::open_sealed(key, value)
                    .map_err(|why| corrupt(format!("events of entry {index}: {why}")))?;
                let from = if index == start_index { start_seq } else { 0 };
                for (seq, event) in split_events(body).enumerate() {
                    let event =
                        event.map_err(|why| corrupt(format!("event {index}.{seq}: {why}")))?;
                    let seq = seq as u32;
                    if seq < from {
                        continue;
                    }
                    if events.len() >= max {
                        break;
                    }
                    events.push(StoredEvent {
                        index,
                        seq,
                        body: event.to_vec(),
                    });
                }
                it.next();
            }
            it.status()?;
        }
        Ok(EventRead {
            events,
            floor: self.event_floor()?,
            up_to,
        })
    }
}

/// Appends `value` as a varint (7 bits a byte, low first).
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The events of one entry's value, in order; a torn or overlong length
/// is an error (the value is damaged), never a panic.
fn split_events(mut body: &[u8]) -> impl Iterator<Item = Result<&[u8], &'static str>> {
    std::iter::from_fn(move || {
        if body.is_empty() {
            return None;
        }
        let mut len: u64 = 0;
        let mut taken = 0;
        loop {
            let Some(&byte) = body.get(taken) else {
                body = &[];
                return Some(Err("torn length"));
            };
            if taken == 9 {
                body = &[];
                return Some(Err("overlong length"));
            }
            len |= u64::from(byte & 0x7f) << (7 * taken);
            taken += 1;
            if byte < 0x80 {
                break;
            }
        }
        let rest = &body[taken..];
        match usize::try_from(len).ok().filter(|&l| l <= rest.len()) {
            Some(len) => {
                let (event, after) = rest.split_at(len);
                body = after;
                Some(Ok(event))
            }
            None => {
                body = &[];
                Some(Err("length past the end"))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever the events, they split back as they were staged; any
        /// cut of the value is an error or fewer events, never a panic.
        #[test]
        fn events_split_back(
            events in proptest::collection::vec(proptest::collection::vec(0u8.., 0..300), 0..8),
            cut in 0usize..4000,
        ) {
            let mut body = Vec::new();
            for e in &events {
                put_varint(&mut body, e.len() as u64);
                body.extend_from_slice(e);
            }
            let back: Vec<&[u8]> = split_events(&body).collect::<Result<_, _>>().unwrap();
            proptest::prop_assert_eq!(back, events.iter().map(Vec::as_slice).collect::<Vec<_>>());
            let cut = cut.min(body.len());
            let _ = split_events(&body[..cut]).count();
        }
    }

    #[test]
    fn a_damaged_length_is_an_error() {
        assert_eq!(
            split_events(&[0x05, 1, 2]).next(),
            Some(Err("length past the end"))
        );
        assert_eq!(split_events(&[0x80]).next(), Some(Err("torn length")));
        assert_eq!(
            split_events(&[0xff; 12]).next(),
            Some(Err("overlong length"))
        );
    }
}
