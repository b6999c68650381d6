//! Reservations and the slab that stores them.
//!
//! A reservation is a two-phase hold (design §3): `Pending` until it is
//! confirmed, released or expired, each at most once. Reservations live in a
//! slab so that lookup by id is an array index; an id carries the slot's
//! reuse count so a stale id never reaches a newer reservation.
//!
//! A resolved reservation stays in its slot while the dedup table still
//! remembers the `Reserve` that created it (`remembered`): a retried
//! `Reserve` must be able to read the allocations it was first answered
//! with. The slot is freed when both are over.

use crate::chunked::ChunkedVec;
use crate::ids::{ReservationId, RowId};
use smallvec::SmallVec;

/// Where a reservation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReservationState {
    /// Holding stock until confirmed, released or expired.
    Pending = 0,
    /// Turned into a sale (possibly partly).
    Confirmed = 1,
    /// Given back by the client.
    Released = 2,
    /// Given back because its TTL ran out.
    Expired = 3,
}

impl ReservationState {
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => ReservationState::Pending,
            1 => ReservationState::Confirmed,
            2 => ReservationState::Released,
            3 => ReservationState::Expired,
            _ => return None,
        })
    }
}

/// Units of one row held by one reservation. A request line that was split
/// across locations becomes several `Line`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    /// The row the units are held on.
    pub row: RowId,
    /// Index of the request line this allocation serves.
    pub request_line: u16,
    /// Units held (fixed at reserve time).
    pub quantity: u32,
    /// Units confirmed (0 until confirmed).
    pub confirmed: u32,
    /// The row's promisable units right after this hold.
    pub available_after: i64,
    /// Customer-limit epoch the units were counted under (0: not counted).
    pub(crate) limit_epoch: u32,
}

/// A reservation and its allocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Allocations, in the order they were made.
    pub lines: SmallVec<[Line; 1]>,
    /// Owner id followed by customer id, in one allocation.
    pub(crate) parties: Box<str>,
    pub(crate) owner_len: u32,
    /// When the hold lapses, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Entry time of the `Reserve`.
    pub created_at_ms: u64,
    /// Current state.
    pub state: ReservationState,
    /// The dedup table still holds the `Reserve` outcome naming this id.
    pub(crate) remembered: bool,
}

impl Reservation {
    pub(crate) fn new(
        owner: &str,
        customer: &str,
        lines: SmallVec<[Line; 1]>,
        created_at_ms: u64,
        expires_at_ms: u64,
    ) -> Self {
        let mut parties = String::with_capacity(owner.len() + customer.len());
        parties.push_str(owner);
        parties.push_str(customer);
        Reservation {
            lines,
            parties: parties.into_boxed_str(),
            owner_len: owner.len() as u32,
            expires_at_ms,
            created_at_ms,
            state: ReservationState::Pending,
            remembered: true,
        }
    }

    /// Cart or order id.
    pub fn owner(&self) -> &str {
        &self.parties[..self.owner_len as usize]
    }

    /// Customer id.
    pub fn customer(&self) -> &str {
        &self.parties[self.owner_len as usize..]
    }

    /// The lines for update, beside the customer id (a split borrow).
    pub(crate) fn lines_and_customer(&mut self) -> (&mut [Line], &str) {
        (&mut self.lines, &self.parties[self.owner_len as usize..])
    }

    /// Units held while pending (sum of lines).
    pub fn units(&self) -> u64 {
        self.lines.iter().map(|l| l.quantity as u64).sum()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        let spilled = if self.lines.spilled() {
            self.lines.capacity() * std::mem::size_of::<Line>()
        } else {
            0
        };
        self.parties.len() + spilled
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) generation: u32,
    pub(crate) reservation: Option<Reservation>,
}

/// All retained reservations of a shard.
pub(crate) struct ReservationSlab {
    /// In chunks: growing never copies the reservations (`crate::chunked`).
    pub(crate) slots: ChunkedVec<Slot>,
    /// Free slot indices, reused last-in first-out (deterministic).
    pub(crate) free: Vec<u32>,
    pub(crate) live: usize,
}

impl ReservationSlab {
    pub(crate) fn new() -> Self {
        ReservationSlab {
            slots: ChunkedVec::default(),
            free: Vec::new(),
            live: 0,
        }
    }

    pub(crate) fn get(&self, id: ReservationId) -> Option<&Reservation> {
        let slot = self.slots.get(id.slot() as usize)?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.reservation.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: ReservationId) -> Option<&mut Reservation> {
        let slot = self.slots.get_mut(id.slot() as usize)?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.reservation.as_mut()
    }

    pub(crate) fn insert(&mut self, reservation: Reservation) -> ReservationId {
        self.live += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            debug_assert!(slot.reservation.is_none());
            slot.reservation = Some(reservation);
            return ReservationId::new(index, slot.generation);
        }
        let index = u32::try_from(self.slots.len()).expect("reservation slots exhausted");
        self.slots.push(Slot {
            generation: 0,
            reservation: Some(reservation),
        });
        ReservationId::new(index, 0)
    }

    /// Frees the slot of `id`; its next occupant gets a new generation.
    pub(crate) fn remove(&mut self, id: ReservationId) {
        let slot = &mut self.slots[id.slot() as usize];
        assert_eq!(
            slot.generation,
            id.generation(),
            "removing a stale reservation id"
        );
        assert!(slot.reservation.take().is_some(), "removing an empty slot");
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.slot());
        self.live -= 1;
    }

    /// Live reservations in slot order, with their ids.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ReservationId, &Reservation)> {
        self.iter_from(0)
    }

    /// Live reservations in slot order from slot `start` on, with the slot
    /// each was found in (so a scan can stop and resume there).
    pub(crate) fn iter_from(
        &self,
        start: u32,
    ) -> impl Iterator<Item = (ReservationId, &Reservation)> {
        let skip = (start as usize).min(self.slots.len());
        self.slots.iter_from(skip).zip(skip..).filter_map(|(s, i)| {
            s.reservation
                .as_ref()
                .map(|r| (ReservationId::new(i as u32, s.generation), r))
        })
    }

    /// Number of slots, used or free: where a scan in slot order ends.
    pub(crate) fn slot_count(&self) -> u32 {
        self.slots.len() as u32
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.free.capacity() * 4
            + self
                .slots
                .iter()
                .filter_map(|s| s.reservation.as_ref())
                .map(Reservation::heap_bytes)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res() -> Reservation {
        Reservation::new("cart-1", "cust-9", SmallVec::new(), 0, 1_000)
    }

    #[test]
    fn parties_round_trip() {
        let r = res();
        assert_eq!((r.owner(), r.customer()), ("cart-1", "cust-9"));
    }

    #[test]
    fn reused_slot_gets_new_generation() {
        let mut slab = ReservationSlab::new();
        let a = slab.insert(res());
        slab.remove(a);
        let b = slab.insert(res());
        assert_eq!(a.slot(), b.slot());
        assert_ne!(a, b);
        assert!(
            slab.get(a).is_none(),
            "stale id must not reach the new occupant"
        );
        assert!(slab.get(b).is_some());
        assert_eq!(slab.live, 1);
    }
}
