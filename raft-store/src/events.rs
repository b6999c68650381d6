//! The change events a shard's applied entries emitted, kept for streaming
//! (design §3 "Events").
//!
//! The server stages the events of each applied entry in the same batch as
//! the applied index that covers them, so on disk the events of every entry
//! from the *event floor* up to the applied index are present, and a crash
//! loses events only together with the applied index (the entries are then
//! applied again and their events staged again, byte for byte alike).
//! Events are opaque bytes here; their key is `(shard, index, seq)`.
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
    /// order given). Each is sealed in one reused buffer (the write batch
    /// copies it), so staging allocates nothing per event.
    pub fn stage_events<'a>(
        &self,
        batch: &mut LogBatch,
        index: u64,
        events: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), StoreError> {
        let mut events = events.into_iter().peekable();
        if events.peek().is_none() {
            return Ok(());
        }
        let _st = self.read_state()?;
        let cf = self.inner.core.cf(CF_EVENTS);
        let mut sealed = Vec::new();
        for (seq, body) in events.enumerate() {
            let key = keys::event_key(self.id(), index, seq as u32);
            codec::seal_into(&key, body, &mut sealed);
            batch.wb.put_cf(cf, key, &sealed);
        }
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
        let from = keys::event_key(shard, 0, 0);
        let to = keys::event_key(shard, floor, 0);
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
            opts.set_iterate_lower_bound(keys::event_key(shard, start_index, start_seq).to_vec());
            opts.set_iterate_upper_bound(keys::event_key(shard, up_to + 1, 0).to_vec());
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
                let (index, seq) = keys::decode_event_key(shard, key)
                    .ok_or_else(|| corrupt("an event key of another layout".to_string()))?;
                let body = codec::open_sealed(key, value)
                    .map_err(|why| corrupt(format!("event {index}.{seq}: {why}")))?;
                events.push(StoredEvent {
                    index,
                    seq,
                    body: body.to_vec(),
                });
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
