//! Resolving reservations: `Confirm`, `Release`, expiry, and `Extend`.
//!
//! A reservation resolves at most once (design §1.3): every path checks
//! `Pending` first and `settle` moves it to its final state in the same step
//! that returns its units, so conservation (§1.2) holds after every command.

use crate::command::{Confirm, Extend};
use crate::engine::Engine;
use crate::event::{Event, ReleaseCause};
use crate::ids::{ReservationId, RowId};
use crate::outcome::{InvalidArgument, Outcome, Refusal, Success};
use crate::reservation::{Reservation, ReservationState};
use smallvec::SmallVec;

/// How many units of each line a settlement confirms.
#[derive(Clone, Copy)]
enum Confirmation<'a> {
    /// Release everything.
    Nothing,
    /// Confirm everything.
    All,
    /// Confirm these units per line (validated against the lines).
    PerLine(&'a [i64]),
}

impl Confirmation<'_> {
    fn units(&self, line: usize, held: u32) -> u32 {
        match self {
            Confirmation::Nothing => 0,
            Confirmation::All => held,
            Confirmation::PerLine(q) => q[line] as u32,
        }
    }
}

fn pending(res: Option<&Reservation>) -> Result<&Reservation, Refusal> {
    let res = res.ok_or(Refusal::UnknownReservation)?;
    if res.state != ReservationState::Pending {
        return Err(Refusal::NotPending { state: res.state });
    }
    Ok(res)
}

fn check_quantities(res: &Reservation, q: &[i64]) -> Result<(), InvalidArgument> {
    if q.len() != res.lines.len() {
        return Err(InvalidArgument {
            field: "quantities",
            line: None,
            why: "must have one entry per reservation allocation",
        });
    }
    for (i, (&want, line)) in q.iter().zip(&res.lines).enumerate() {
        if want > line.quantity as i64 {
            return Err(InvalidArgument {
                field: "quantities",
                line: Some(i as u16),
                why: "exceeds the units held on that allocation",
            });
        }
    }
    Ok(())
}

impl Engine {
    pub(crate) fn confirm(&mut self, c: &Confirm, events: &mut Vec<Event>) -> Outcome {
        let res = pending(self.reservations.get(c.reservation))?;
        let how = match &c.quantities {
            Some(q) => {
                check_quantities(res, q)?;
                Confirmation::PerLine(q)
            }
            None => Confirmation::All,
        };
        let (units_confirmed, units_released) = self.settle(
            c.reservation,
            how,
            ReservationState::Confirmed,
            ReleaseCause::ConfirmRemainder,
            events,
        );
        Ok(Success::Confirmed {
            reservation: c.reservation,
            units_confirmed,
            units_released,
        })
    }

    pub(crate) fn release(&mut self, id: ReservationId, events: &mut Vec<Event>) -> Outcome {
        pending(self.reservations.get(id))?;
        let (_, units_released) = self.settle(
            id,
            Confirmation::Nothing,
            ReservationState::Released,
            ReleaseCause::Released,
            events,
        );
        Ok(Success::Released {
            reservation: id,
            units_released,
        })
    }

    pub(crate) fn extend(&mut self, now_ms: u64, e: &Extend, events: &mut Vec<Event>) -> Outcome {
        pending(self.reservations.get(e.reservation))?;
        let expires_at_ms = now_ms + e.ttl_ms;
        let res = self.reservations.get_mut(e.reservation).expect("checked");
        res.expires_at_ms = expires_at_ms;
        self.expiry.insert(expires_at_ms, e.reservation);
        events.push(Event::Extended {
            reservation: e.reservation,
            expires_at_ms,
        });
        Ok(Success::Extended {
            reservation: e.reservation,
            expires_at_ms,
        })
    }

    /// Expires every pending hold due at `now_ms`, in `(expires_at_ms, id)`
    /// order. Returns (reservations expired, units released).
    pub(crate) fn expire_due(&mut self, now_ms: u64, events: &mut Vec<Event>) -> (u64, u64) {
        let (mut count, mut units) = (0, 0);
        while let Some((at, ids)) = self.expiry.pop_due(now_ms) {
            for id in ids {
                let due = self
                    .reservations
                    .get(id)
                    .is_some_and(|r| r.state == ReservationState::Pending && r.expires_at_ms == at);
                if !due {
                    continue; // resolved, extended, or slot reused: a stale entry
                }
                let (_, released) = self.settle(
                    id,
                    Confirmation::Nothing,
                    ReservationState::Expired,
                    ReleaseCause::Expired,
                    events,
                );
                count += 1;
                units += released;
            }
        }
        (count, units)
    }

    /// Moves a pending reservation to `state`, confirming `how` many units
    /// of each line and releasing the rest. Returns (confirmed, released).
    fn settle(
        &mut self,
        id: ReservationId,
        how: Confirmation<'_>,
        state: ReservationState,
        cause: ReleaseCause,
        events: &mut Vec<Event>,
    ) -> (u64, u64) {
        let res = self
            .reservations
            .get_mut(id)
            .expect("settling a known reservation");
        assert_eq!(
            res.state,
            ReservationState::Pending,
            "a reservation resolves at most once"
        );
        res.state = state;
        self.pending -= 1;
        let (mut confirmed_total, mut released_total) = (0u64, 0u64);
        let mut touched: SmallVec<[RowId; 4]> = SmallVec::new();
        let (lines, customer) = res.lines_and_customer();
        for (i, line) in lines.iter_mut().enumerate() {
            let confirmed = how.units(i, line.quantity);
            let released = line.quantity - confirmed;
            line.confirmed = confirmed;
            let row = self.rows.row_mut(line.row);
            row.held -= line.quantity as i64;
            row.on_hand -= confirmed as i64;
            assert!(
                row.held >= 0,
                "conservation: held went negative on {:?}",
                line.row
            );
            if confirmed > 0 {
                events.push(Event::Confirmed {
                    reservation: id,
                    row: line.row,
                    quantity: confirmed as u64,
                });
            }
            if released > 0 {
                events.push(Event::Released {
                    reservation: id,
                    row: line.row,
                    quantity: released as u64,
                    cause,
                    available_after: row.available(),
                });
                let sku = row.sku;
                self.limits
                    .refund(sku, customer, released as u64, line.limit_epoch);
            }
            confirmed_total += confirmed as u64;
            released_total += released as u64;
            touched.push(line.row);
        }
        let forget = !res.remembered;
        for row in touched {
            self.touch(row);
        }
        if forget {
            self.reservations.remove(id);
        }
        (confirmed_total, released_total)
    }
}
