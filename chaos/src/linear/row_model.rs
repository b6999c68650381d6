//! The sequential specification of one stock row, for the search.
//!
//! A row is a counter-like object: `on_hand`, `held`, `confirmed` (units
//! sold through it), plus which of the reservations touching it exist and
//! which are still pending. The rules are the engine's (design §3,
//! `docs/architecture.md`):
//!
//! - a hold of `q` needs `available >= q`, where `available = on_hand +
//!   backorder_allowance - safety_stock - held`, and adds `q` to `held`;
//! - confirm, release and expiry need the reservation pending and take its
//!   units out of `held`; confirm also takes the confirmed units out of
//!   `on_hand`;
//! - an adjustment needs `held <= on_hand + delta + backorder_allowance`
//!   (and, as compare-and-set, `on_hand == expected`) and moves `on_hand`;
//! - a read returns the figures as they are;
//! - holds expire in `(expires_at_ms, id)` order, where the answers tell.
//!
//! Each [`RowOp`] carries what the client observed, so a step is refused
//! when the observation cannot happen in the state (a read of other
//! figures, an out-of-stock refusal while enough was available).
//! Safety stock and backorder allowance are taken as constant for the run.

use super::bitset::BitSet;
use super::search::Model;
use std::fmt;

/// One operation on a row, with what was observed. `res` is the index of a
/// reservation among those touching the row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowOp {
    /// A hold of the reservation's units on this row succeeded; the row's
    /// available units afterwards, if the server said.
    Hold {
        /// The reservation.
        res: usize,
        /// `available` right after, as answered.
        available_after: Option<i64>,
    },
    /// A reserve was refused `OUT_OF_STOCK` on this row: fewer than `need`
    /// units were available.
    RefuseHold {
        /// Units the refused line (and earlier lines of the same request on
        /// this row) asked for.
        need: i64,
    },
    /// The reservation was confirmed; `units` of its units on this row sold.
    Confirm {
        /// The reservation.
        res: usize,
        /// Units confirmed on this row (the rest are released).
        units: i64,
    },
    /// The reservation was released.
    Release {
        /// The reservation.
        res: usize,
    },
    /// The reservation expired (not a client operation: its TTL ran out).
    Expire {
        /// The reservation.
        res: usize,
    },
    /// A confirm, release or extend was refused `RESERVATION_NOT_PENDING`.
    NotPending {
        /// The reservation.
        res: usize,
    },
    /// An extend succeeded, so the reservation was pending.
    StillPending {
        /// The reservation.
        res: usize,
    },
    /// `on_hand` changed by `delta`; the figures answered, if any.
    Adjust {
        /// Units added or removed.
        delta: i64,
        /// Compare-and-set value.
        expected: Option<i64>,
        /// `on_hand` after, as answered.
        on_hand_after: Option<i64>,
        /// `available` after, as answered.
        available_after: Option<i64>,
    },
    /// An adjustment was refused.
    AdjustRefused {
        /// Units it would have added or removed.
        delta: i64,
        /// Its compare-and-set value.
        expected: Option<i64>,
        /// Why.
        cause: AdjustRefusal,
    },
    /// A read (or the final state) saw these figures.
    Read {
        /// Physical units.
        on_hand: i64,
        /// Held units.
        held: i64,
        /// Available units, when the reader was told.
        available: Option<i64>,
    },
    /// A read found no such row (taken as `on_hand == held == 0`).
    NoRow,
}

/// Why an adjustment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustRefusal {
    /// `HELD_EXCEEDS_STOCK`: more would be held than the row can supply.
    HeldExceedsStock,
    /// `ON_HAND_MISMATCH`: `on_hand` differed from `expected`.
    OnHandMismatch,
}

/// The row's state in the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RowState {
    /// Physical units.
    pub on_hand: i64,
    /// Units held by pending reservations.
    pub held: i64,
    /// Units sold through confirms.
    pub confirmed: i64,
    /// Reservations whose hold took effect.
    pub created: BitSet,
    /// Reservations still pending.
    pub pending: BitSet,
}

impl fmt::Display for RowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "on_hand={} held={} confirmed={} pending reservations={}",
            self.on_hand,
            self.held,
            self.confirmed,
            self.pending.len()
        )
    }
}

/// A row's constants: its policy and each reservation's units on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowModel {
    /// Units promisable beyond `on_hand`.
    pub backorder_allowance: i64,
    /// Units never promised.
    pub safety_stock: i64,
    /// Units each reservation holds on this row, by reservation index.
    pub holds: Vec<i64>,
    /// Each reservation's expiry order key `(expires_at_ms, engine id)`,
    /// where known and never changed by an extend. The engine expires
    /// holds in this order (design §3), so a hold cannot expire while one
    /// with a smaller key is still pending.
    pub expiry_keys: Vec<Option<ExpiryKey>>,
}

/// When a hold lapses, and its engine id to order equal times (`None`:
/// unknown, so equal times are not ordered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryKey {
    /// `expires_at_ms` as the reserve answered it.
    pub expires_at_ms: u64,
    /// The reservation's engine id, if its wire id could be parsed.
    pub engine_id: Option<u64>,
}

impl ExpiryKey {
    /// Whether the engine certainly expires `self` before `other`.
    fn before(&self, other: &ExpiryKey) -> bool {
        match (
            self.expires_at_ms.cmp(&other.expires_at_ms),
            self.engine_id,
            other.engine_id,
        ) {
            (std::cmp::Ordering::Less, ..) => true,
            (std::cmp::Ordering::Equal, Some(a), Some(b)) => a < b,
            _ => false,
        }
    }
}

impl RowModel {
    fn available(&self, s: &RowState) -> i64 {
        s.on_hand + self.backorder_allowance - self.safety_stock - s.held
    }

    /// Takes a pending reservation's units out of `held`, selling `sold`.
    fn resolve(&self, s: &RowState, res: usize, sold: i64) -> Option<RowState> {
        if !s.pending.contains(res) {
            return None;
        }
        let mut next = s.clone();
        next.pending.remove(res);
        next.held -= self.holds[res];
        next.on_hand -= sold;
        next.confirmed += sold;
        Some(next)
    }

    /// Whether a pending hold on this row must expire before `res`.
    fn expires_out_of_order(&self, s: &RowState, res: usize) -> bool {
        let Some(key) = &self.expiry_keys[res] else {
            return false;
        };
        self.expiry_keys.iter().enumerate().any(|(other, k)| {
            k.as_ref().is_some_and(|k| k.before(key)) && s.pending.contains(other)
        })
    }

    fn adjust(
        &self,
        s: &RowState,
        delta: i64,
        expected: Option<i64>,
    ) -> Result<i64, AdjustRefusal> {
        if expected.is_some_and(|e| e != s.on_hand) {
            return Err(AdjustRefusal::OnHandMismatch);
        }
        let on_hand = s.on_hand + delta;
        if s.held > on_hand + self.backorder_allowance {
            return Err(AdjustRefusal::HeldExceedsStock);
        }
        Ok(on_hand)
    }
}

impl Model for RowModel {
    type Op = RowOp;
    type State = RowState;

    fn init(&self) -> RowState {
        RowState {
            on_hand: 0,
            held: 0,
            confirmed: 0,
            created: BitSet::new(self.holds.len()),
            pending: BitSet::new(self.holds.len()),
        }
    }

    fn step(&self, s: &RowState, op: &RowOp) -> Option<RowState> {
        // An observation that changes nothing: the state if it fits.
        let keep = |fits: bool| fits.then(|| s.clone());
        match *op {
            RowOp::Hold {
                res,
                available_after,
            } => {
                let units = self.holds[res];
                if s.created.contains(res) || self.available(s) < units {
                    return None;
                }
                let mut next = s.clone();
                next.held += units;
                next.created.insert(res);
                next.pending.insert(res);
                let seen_ok = available_after.is_none_or(|a| a == self.available(&next));
                seen_ok.then_some(next)
            }
            RowOp::RefuseHold { need } => keep(self.available(s) < need),
            RowOp::Confirm { res, units } => self.resolve(s, res, units),
            RowOp::Release { res } => self.resolve(s, res, 0),
            RowOp::Expire { res } if self.expires_out_of_order(s, res) => None,
            RowOp::Expire { res } => self.resolve(s, res, 0),
            RowOp::NotPending { res } => keep(s.created.contains(res) && !s.pending.contains(res)),
            RowOp::StillPending { res } => keep(s.pending.contains(res)),
            RowOp::Adjust {
                delta,
                expected,
                on_hand_after,
                available_after,
            } => {
                let on_hand = self.adjust(s, delta, expected).ok()?;
                let mut next = s.clone();
                next.on_hand = on_hand;
                let seen_ok = on_hand_after.is_none_or(|o| o == on_hand)
                    && available_after.is_none_or(|a| a == self.available(&next));
                seen_ok.then_some(next)
            }
            RowOp::AdjustRefused {
                delta,
                expected,
                cause,
            } => keep(self.adjust(s, delta, expected) == Err(cause)),
            RowOp::Read {
                on_hand,
                held,
                available,
            } => {
                let seen_ok = on_hand == s.on_hand
                    && held == s.held
                    && available.is_none_or(|a| a == self.available(s));
                keep(seen_ok)
            }
            RowOp::NoRow => keep(s.on_hand == 0 && s.held == 0),
        }
    }

    /// Refusals, reads and pending checks observe the row and change
    /// nothing.
    fn read_only(&self, op: &RowOp) -> bool {
        matches!(
            op,
            RowOp::RefuseHold { .. }
                | RowOp::NotPending { .. }
                | RowOp::StillPending { .. }
                | RowOp::AdjustRefused { .. }
                | RowOp::Read { .. }
                | RowOp::NoRow
        )
    }

    /// Two adjustments with the same delta and no observed figures (both
    /// of unknown outcome) have the same effect.
    fn interchangeable(&self, a: &RowOp, b: &RowOp) -> bool {
        matches!(
            a,
            RowOp::Adjust {
                on_hand_after: None,
                available_after: None,
                ..
            }
        ) && a == b
    }
}

impl fmt::Display for RowOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowOp::Hold {
                res,
                available_after,
            } => write!(
                f,
                "hold for reservation #{res} (available after: {available_after:?})"
            ),
            RowOp::RefuseHold { need } => write!(f, "out of stock for {need} units"),
            RowOp::Confirm { res, units } => write!(f, "confirm #{res}, {units} units sold"),
            RowOp::Release { res } => write!(f, "release #{res}"),
            RowOp::Expire { res } => write!(f, "expiry of #{res}"),
            RowOp::NotPending { res } => write!(f, "#{res} not pending"),
            RowOp::StillPending { res } => write!(f, "#{res} still pending"),
            RowOp::Adjust {
                delta,
                expected,
                on_hand_after,
                ..
            } => write!(
                f,
                "adjust by {delta} (expected {expected:?}, on_hand after: {on_hand_after:?})"
            ),
            RowOp::AdjustRefused { delta, cause, .. } => {
                write!(f, "adjust by {delta} refused ({cause:?})")
            }
            RowOp::Read {
                on_hand,
                held,
                available,
            } => write!(
                f,
                "read on_hand={on_hand} held={held} available={available:?}"
            ),
            RowOp::NoRow => write!(f, "read: no such row"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(holds: &[i64]) -> RowModel {
        RowModel {
            backorder_allowance: 0,
            safety_stock: 0,
            holds: holds.to_vec(),
            expiry_keys: vec![None; holds.len()],
        }
    }

    fn adjust(delta: i64) -> RowOp {
        RowOp::Adjust {
            delta,
            expected: None,
            on_hand_after: None,
            available_after: None,
        }
    }

    #[test]
    fn hold_needs_available_units() {
        let m = model(&[3]);
        let s = m.step(&m.init(), &adjust(2)).unwrap();
        let hold = RowOp::Hold {
            res: 0,
            available_after: None,
        };
        assert!(m.step(&s, &hold).is_none());
        assert!(m.step(&s, &RowOp::RefuseHold { need: 3 }).is_some());
        let s = m.step(&s, &adjust(1)).unwrap();
        let s = m.step(&s, &hold).unwrap();
        assert_eq!((s.on_hand, s.held), (3, 3));
        assert!(m.step(&s, &RowOp::RefuseHold { need: 1 }).is_some());
    }

    #[test]
    fn confirm_sells_and_resolves_once() {
        let m = model(&[3]);
        let s = m.step(&m.init(), &adjust(5)).unwrap();
        let s = m
            .step(
                &s,
                &RowOp::Hold {
                    res: 0,
                    available_after: Some(2),
                },
            )
            .unwrap();
        let s = m.step(&s, &RowOp::Confirm { res: 0, units: 2 }).unwrap();
        assert_eq!((s.on_hand, s.held, s.confirmed), (3, 0, 2));
        assert!(m.step(&s, &RowOp::Release { res: 0 }).is_none());
        assert!(m.step(&s, &RowOp::NotPending { res: 0 }).is_some());
    }

    #[test]
    fn holds_expire_in_expiry_order() {
        let mut m = model(&[1, 1]);
        let key = |expires_at_ms, engine_id| {
            Some(ExpiryKey {
                expires_at_ms,
                engine_id: Some(engine_id),
            })
        };
        m.expiry_keys = vec![key(500, 7), key(500, 3)];
        let mut s = m.step(&m.init(), &adjust(2)).unwrap();
        for res in [0, 1] {
            let hold = RowOp::Hold {
                res,
                available_after: None,
            };
            s = m.step(&s, &hold).unwrap();
        }
        assert!(m.step(&s, &RowOp::Expire { res: 0 }).is_none());
        let s = m.step(&s, &RowOp::Expire { res: 1 }).unwrap();
        assert!(m.step(&s, &RowOp::Expire { res: 0 }).is_some());
    }

    #[test]
    fn write_off_below_holds_is_refused() {
        let m = model(&[4]);
        let s = m.step(&m.init(), &adjust(5)).unwrap();
        let s = m
            .step(
                &s,
                &RowOp::Hold {
                    res: 0,
                    available_after: None,
                },
            )
            .unwrap();
        assert!(m.step(&s, &adjust(-2)).is_none());
        let refused = RowOp::AdjustRefused {
            delta: -2,
            expected: None,
            cause: AdjustRefusal::HeldExceedsStock,
        };
        assert!(m.step(&s, &refused).is_some());
    }
}
