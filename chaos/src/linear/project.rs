//! From logical operations to per-row histories ([`RowHistory`]): each
//! operation contributes its effect on each row it touches.
//!
//! A multi-row reserve becomes one hold per row. That loses the atomicity
//! between its rows, so the per-row check is necessary for the whole
//! history to be linearizable but not sufficient; the conservation and
//! lost-ack checks cover a reservation as a whole.
//!
//! A cross-shard reserve ([`crate::parts`]) is one ordinary reservation
//! per shard, and each row belongs to one part, so its rows are projected
//! part by part: an acknowledged one holds every row, each part expiring
//! on its own. One that was not acknowledged (unknown, or refused: an
//! all-or-nothing refusal releases the parts it held first) may have held
//! each part independently, and each held part may since have been
//! released by the coordinator or have expired; the final state pins each
//! part ([`super::pin::Pins::unheld_part`]). A confirm or release of a
//! joined id acts part by part, so an answer that is not `Ok` (unknown,
//! or `RESERVATION_NOT_PENDING` naming one part) leaves the other parts
//! possibly resolved.
//!
//! Timing: an operation with a definite outcome spans from its first invoke
//! to its first definite answer; one with unknown outcome is open (may take
//! effect any time after its first invoke, or never). Besides client
//! operations, a row history gets:
//! - an *expiry* per reservation that may have expired, open from the
//!   reserve's invoke;
//! - a *final read* of the figures every replica agrees on, after the last
//!   time stamp of the history.
//!
//! The final state also pins down many open operations ([`super::pin`]):
//! those that certainly never took effect are left out, those that
//! certainly did must take effect before the final read.

use super::pin::{Pins, Presence};
use super::row_model::{AdjustRefusal, RowModel, RowOp};
use super::search::Operation;
use crate::facts::{
    allocations_per_row, lines_per_row, signature_of_request, sold_per_row, Agreed, Facts, RowKey,
};
use crate::final_state::ReservationStatus;
use crate::history::{Op, OpResult, ReserveLine};
use crate::parts::{self, HeldPart, PlannedPart};
use crate::timeline::Outcome;
use std::collections::BTreeMap;
use std::ops::Range;

/// Where a row operation came from, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The logical operation at this index.
    Op(usize),
    /// Expiry of the reservation created by the reserve at this index.
    Expiry(usize),
    /// The coordinator's release of a part held by the cross-shard
    /// reserve at this index, which was refused.
    Compensation(usize),
    /// The replicas' final state.
    Final,
}

/// One row's history, ready for the search.
#[derive(Clone, Debug)]
pub struct RowHistory {
    /// The row.
    pub row: RowKey,
    /// Its constants.
    pub model: RowModel,
    /// Its operations.
    pub ops: Vec<Operation<RowOp>>,
    /// Where each operation came from.
    pub sources: Vec<Source>,
}

impl RowHistory {
    fn new(row: RowKey, facts: &Facts<'_>) -> Self {
        let (backorder_allowance, safety_stock) = facts.policy(&row);
        RowHistory {
            row,
            model: RowModel {
                backorder_allowance,
                safety_stock,
                holds: Vec::new(),
                expiry_keys: Vec::new(),
            },
            ops: Vec::new(),
            sources: Vec::new(),
        }
    }

    fn push(&mut self, call_us: u64, ret_us: Option<u64>, op: RowOp, source: Source) {
        self.ops.push(Operation {
            call_us,
            ret_us,
            op,
        });
        self.sources.push(source);
    }

    /// Narrows the window of a reservation's resolution when it is the only
    /// operation that can resolve it and its outcome was not answered (an
    /// expiry, a confirm or release of unknown outcome): it took effect
    /// after every invoke of an operation that found the reservation
    /// pending (an acknowledged extend), and before the answer of any that
    /// found it not pending, which makes it certain. Windows that stay
    /// wide keep the search wide, so this matters for speed, not verdicts.
    fn tighten_resolutions(&mut self, end_us: u64) {
        let n = self.model.holds.len();
        let mut resolvers: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut seen_pending: Vec<u64> = vec![0; n];
        let mut seen_resolved: Vec<Option<u64>> = vec![None; n];
        for (i, o) in self.ops.iter().enumerate() {
            match o.op {
                RowOp::Confirm { res, .. } | RowOp::Release { res } | RowOp::Expire { res } => {
                    resolvers[res].push(i)
                }
                RowOp::StillPending { res } => seen_pending[res] = seen_pending[res].max(o.call_us),
                RowOp::NotPending { res } => {
                    let by = o.ret_us.unwrap_or(u64::MAX);
                    seen_resolved[res] = Some(seen_resolved[res].map_or(by, |b| b.min(by)));
                }
                _ => {}
            }
        }
        for res in 0..n {
            let [only] = resolvers[res][..] else {
                continue;
            };
            let o = &mut self.ops[only];
            if o.ret_us.is_some_and(|ret| ret <= end_us) {
                continue;
            }
            o.call_us = o.call_us.max(seen_pending[res]);
            if let Some(by) = seen_resolved[res] {
                o.ret_us = Some(o.ret_us.map_or(by, |ret| ret.min(by)));
            }
        }
    }
}

/// Builds the row histories, collecting notes about operations it cannot
/// judge.
struct Projector<'a, 'f> {
    facts: &'a Facts<'f>,
    pins: Pins<'a>,
    rows: BTreeMap<RowKey, RowHistory>,
    /// (row, reserve index) → reservation index in that row's model.
    reservations: BTreeMap<(RowKey, usize), usize>,
    notes: Vec<String>,
}

impl<'a, 'f> Projector<'a, 'f> {
    fn new(facts: &'a Facts<'f>) -> Self {
        Projector {
            facts,
            pins: Pins::new(facts),
            rows: BTreeMap::new(),
            reservations: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    /// The window of an operation of unknown outcome (or an expiry) that
    /// may start at `call`: `None` if it never took effect.
    fn window(&self, call: u64, presence: Presence) -> Option<(u64, Option<u64>)> {
        match presence {
            Presence::Never => None,
            Presence::Maybe => Some((call, None)),
            Presence::Certain => Some((call, Some(self.facts.timeline.end_us + 1))),
        }
    }

    /// As [`Projector::window`], but a certain effect of an operation
    /// answered at `answered` took place before that answer.
    fn window_until(
        &self,
        call: u64,
        presence: Presence,
        answered: Option<u64>,
    ) -> Option<(u64, Option<u64>)> {
        match (presence, answered) {
            (Presence::Certain, Some(at)) => Some((call, Some(at))),
            _ => self.window(call, presence),
        }
    }

    fn row(&mut self, row: &RowKey) -> &mut RowHistory {
        let facts = self.facts;
        self.rows
            .entry(row.clone())
            .or_insert_with(|| RowHistory::new(row.clone(), facts))
    }

    /// The index of the reservation made by reserve `k` on `row`.
    fn reservation(&mut self, row: &RowKey, k: usize, units: i64) -> usize {
        if let Some(&res) = self.reservations.get(&(row.clone(), k)) {
            return res;
        }
        let key = self.pins.expiry_key(k);
        let model = &mut self.row(row).model;
        model.holds.push(units);
        model.expiry_keys.push(key);
        let res = model.holds.len() - 1;
        self.reservations.insert((row.clone(), k), res);
        res
    }

    fn reserve(&mut self, k: usize) {
        let op = self.facts.op(k);
        let Op::Reserve { lines, .. } = &op.op else {
            return;
        };
        if let (Some(plan), false) = (parts::plan_of(&op.op), op.ok_result().is_some()) {
            self.unheld_parts(k, lines, &plan);
        }
        match &op.outcome {
            Outcome::Ok { result, at_us } => self.reserve_ok(k, result, *at_us),
            Outcome::Refused {
                reason,
                metadata,
                at_us,
                ..
            } if reason == "OUT_OF_STOCK" => {
                match metadata.get("line").map(|l| l.parse::<usize>()) {
                    Some(Ok(line)) => self.out_of_stock(k, lines, line, *at_us),
                    None if lines.len() == 1 => self.out_of_stock(k, lines, 0, *at_us),
                    _ => self.notes.push(format!(
                        "{}: out of stock without a usable `line`; not judged",
                        op.describe()
                    )),
                }
            }
            Outcome::Unknown if parts::plan_of(&op.op).is_none() => self.reserve_unknown(k, lines),
            Outcome::Unknown | Outcome::Refused { .. } | Outcome::NotApplied => {}
        }
    }

    /// The parts of a cross-shard reserve that was not acknowledged: per
    /// part, an open (or pinned) hold on each of its rows, and its
    /// possible end, a compensating release or an expiry.
    fn unheld_parts(&mut self, k: usize, lines: &[ReserveLine], plan: &[PlannedPart]) {
        let op = self.facts.op(k);
        let answered = match &op.outcome {
            Outcome::Refused { at_us, .. } => Some(*at_us),
            _ => None,
        };
        let shards = parts::shards(plan);
        for part in plan {
            let part_lines = parts::part_lines(lines, part);
            let sig = signature_of_request(&part_lines);
            let fate = self.pins.unheld_part(op, &shards, part.shard, &sig);
            let Some((call, hold_ret)) = self.window_until(op.invoke_us(), fate.hold, answered)
            else {
                continue;
            };
            let release = self.window_until(call, fate.release, answered);
            let expiry = self.window(call, fate.expiry);
            for (row, units) in lines_per_row(&part_lines) {
                let res = self.reservation(&row, k, units);
                let hold = RowOp::Hold {
                    res,
                    available_after: None,
                };
                self.row(&row).push(call, hold_ret, hold, Source::Op(k));
                if let Some((call, ret)) = release {
                    let release = RowOp::Release { res };
                    self.row(&row)
                        .push(call, ret, release, Source::Compensation(k));
                }
                if let Some((call, ret)) = expiry {
                    let expire = RowOp::Expire { res };
                    self.row(&row).push(call, ret, expire, Source::Expiry(k));
                }
            }
        }
    }

    /// An acknowledged reserve: a hold on each row it allocated, and an
    /// expiry unless the final state rules it out.
    fn reserve_ok(&mut self, k: usize, result: &OpResult, at_us: u64) {
        let OpResult::Reserved { reservation_id, .. } = result else {
            return;
        };
        let call = self.facts.op(k).invoke_us();
        let allocations = self.facts.allocations(k);
        // Each part of a cross-shard reservation expires on its own.
        let groups: Vec<(Range<usize>, &str)> = match self.facts.held_parts(k) {
            Some(held) => held.into_iter().map(|p| (p.allocations, p.id)).collect(),
            None => vec![(0..allocations.len(), reservation_id.as_str())],
        };
        for (range, id) in groups {
            let expiry = self.window(call, self.pins.expiry(id));
            for (row, share) in allocations_per_row(&allocations[range]) {
                let res = self.reservation(&row, k, share.units);
                let hold = RowOp::Hold {
                    res,
                    available_after: share.available_after,
                };
                self.row(&row).push(call, Some(at_us), hold, Source::Op(k));
                if let Some((call, ret)) = expiry {
                    let expire = RowOp::Expire { res };
                    self.row(&row).push(call, ret, expire, Source::Expiry(k));
                }
            }
        }
    }

    /// A reserve refused out of stock on request line `line`.
    fn out_of_stock(&mut self, k: usize, lines: &[ReserveLine], line: usize, at_us: u64) {
        let op = self.facts.op(k);
        let Some(short) = lines.get(line) else {
            return self.notes.push(format!(
                "{}: out of stock names line {line}, which it does not have; not judged",
                op.describe()
            ));
        };
        let row = (short.sku.clone(), short.location.clone());
        // Lines naming the same row are counted together (engine rule).
        let need = lines[..=line]
            .iter()
            .filter(|l| l.sku == row.0 && l.location == row.1)
            .map(|l| l.quantity)
            .sum();
        let refused = RowOp::RefuseHold { need };
        self.row(&row)
            .push(op.invoke_us(), Some(at_us), refused, Source::Op(k));
    }

    /// A reserve of unknown outcome: an open (or pinned) hold per row of
    /// its lines, and its expiry.
    fn reserve_unknown(&mut self, k: usize, lines: &[ReserveLine]) {
        let op = self.facts.op(k);
        let (hold, expiry) = self.pins.unknown_reserve(op, &signature_of_request(lines));
        let Some((call, hold_ret)) = self.window(op.invoke_us(), hold) else {
            return;
        };
        let expiry = self.window(call, expiry);
        for (row, units) in lines_per_row(lines) {
            let res = self.reservation(&row, k, units);
            let hold = RowOp::Hold {
                res,
                available_after: None,
            };
            self.row(&row).push(call, hold_ret, hold, Source::Op(k));
            if let Some((call, ret)) = expiry {
                let expire = RowOp::Expire { res };
                self.row(&row).push(call, ret, expire, Source::Expiry(k));
            }
        }
    }

    /// Confirm, release and extend: their effect on each row of the
    /// reservation they name.
    fn resolve(&mut self, k: usize) {
        let op = self.facts.op(k);
        let Some(id) = op.op.reservation_id() else {
            return;
        };
        let joined_not_ok = parts::is_joined(id) && op.ok_result().is_none();
        if op.outcome == Outcome::NotApplied && !joined_not_ok {
            return;
        }
        let Some(reserve) = self.facts.reserve_of(id) else {
            return self.notes.push(format!(
                "{}: names reservation {id}, which no acknowledged reserve returned; not judged",
                op.describe()
            ));
        };
        if joined_not_ok {
            return self.resolve_parts(k, id, reserve);
        }
        let allocations = self.facts.allocations(reserve);
        let call = op.invoke_us();
        let (ret, definite_reason) = match &op.outcome {
            Outcome::Ok { at_us, .. } => (Some(*at_us), None),
            Outcome::Refused { at_us, reason, .. } => (Some(*at_us), Some(reason.as_str())),
            Outcome::Unknown | Outcome::NotApplied => {
                match self.window(call, self.pins.unknown_resolution(op, id)) {
                    Some((_, ret)) => (ret, None),
                    None => return,
                }
            }
        };
        let sold = match &op.op {
            Op::Confirm { quantities, .. } => {
                match sold_per_row(allocations, quantities.as_deref()) {
                    Some(sold) => sold,
                    None => {
                        return self.notes.push(format!(
                        "{}: quantities do not match the reservation's {} allocations; not judged",
                        op.describe(),
                        allocations.len()
                    ))
                    }
                }
            }
            _ => BTreeMap::new(),
        };
        for (row, share) in allocations_per_row(allocations) {
            let res = self.reservation(&row, reserve, share.units);
            let row_op = match (&op.op, definite_reason) {
                (_, Some("RESERVATION_NOT_PENDING")) => RowOp::NotPending { res },
                (_, Some(_)) => continue,
                (Op::Confirm { .. }, None) => RowOp::Confirm {
                    res,
                    units: sold.get(&row).copied().unwrap_or(0),
                },
                (Op::Release { .. }, None) => RowOp::Release { res },
                (Op::Extend { .. }, None) if ret.is_some() => RowOp::StillPending { res },
                _ => continue,
            };
            self.row(&row).push(call, ret, row_op, Source::Op(k));
        }
    }

    /// A confirm or release of the cross-shard reservation `id` (made by
    /// reserve `reserve`) that was not answered `Ok`: it may have acted on
    /// every part but one named `RESERVATION_NOT_PENDING`, part by part
    /// as the final state tells ([`Pins::part_resolution`]). Without the
    /// parts' allocations, every row may have been resolved.
    fn resolve_parts(&mut self, k: usize, id: &str, reserve: usize) {
        let op = self.facts.op(k);
        let (quantities, plain_want) = match &op.op {
            Op::Confirm { quantities, .. } => (quantities.as_deref(), ReservationStatus::Confirmed),
            Op::Release { .. } => (None, ReservationStatus::Released),
            _ => return,
        };
        let allocations = self.facts.allocations(reserve);
        if quantities.is_some_and(|q| q.len() != allocations.len()) {
            return self.notes.push(format!(
                "{}: quantities do not match the reservation's {} allocations; not judged",
                op.describe(),
                allocations.len()
            ));
        }
        let (answered, not_pending) = match &op.outcome {
            Outcome::Refused {
                at_us,
                reason,
                metadata,
                ..
            } => (
                Some(*at_us),
                metadata
                    .get("part")
                    .filter(|_| reason == "RESERVATION_NOT_PENDING"),
            ),
            _ => (None, None),
        };
        let held = self.facts.held_parts(reserve);
        let groups: Vec<(Range<usize>, Option<&HeldPart<'_>>)> = match &held {
            Some(held) => held
                .iter()
                .map(|p| (p.allocations.clone(), Some(p)))
                .collect(),
            None => vec![(0..allocations.len(), None)],
        };
        let call = op.invoke_us();
        for (range, part) in groups {
            let slice = &allocations[range.clone()];
            let asked = quantities.map(|q| &q[range]);
            if let (Some(p), Some(named)) = (part, not_pending) {
                if p.id == named.as_str() {
                    for (row, share) in allocations_per_row(slice) {
                        let res = self.reservation(&row, reserve, share.units);
                        let seen = RowOp::NotPending { res };
                        self.row(&row).push(call, answered, seen, Source::Op(k));
                    }
                    continue;
                }
            }
            // A part whose confirmed units are all 0 is released.
            let want = match asked {
                Some(q) if q.iter().all(|&u| u == 0) => ReservationStatus::Released,
                _ => plain_want,
            };
            let presence = match part {
                Some(p) => self.pins.part_resolution(op, id, p, want),
                None => Presence::Maybe,
            };
            let Some((call, ret)) = self.window_until(call, presence, answered) else {
                continue;
            };
            let sold = sold_per_row(slice, asked).unwrap_or_default();
            for (row, share) in allocations_per_row(slice) {
                let res = self.reservation(&row, reserve, share.units);
                let row_op = match op.op {
                    Op::Confirm { .. } => RowOp::Confirm {
                        res,
                        units: sold.get(&row).copied().unwrap_or(0),
                    },
                    _ => RowOp::Release { res },
                };
                self.row(&row).push(call, ret, row_op, Source::Op(k));
            }
        }
    }

    fn adjust(&mut self, k: usize) {
        let op = self.facts.op(k);
        let Op::AdjustStock {
            sku,
            location,
            delta,
            expected_on_hand,
            ..
        } = &op.op
        else {
            return;
        };
        let (delta, expected) = (*delta, *expected_on_hand);
        let (ret, row_op) = match &op.outcome {
            Outcome::Ok {
                result: OpResult::Adjusted { on_hand, available },
                at_us,
            } => (
                Some(*at_us),
                RowOp::Adjust {
                    delta,
                    expected,
                    on_hand_after: Some(*on_hand),
                    available_after: Some(*available),
                },
            ),
            Outcome::Unknown => {
                let presence = self.pins.unknown_adjustment(k, op);
                let Some((_, ret)) = self.window(op.invoke_us(), presence) else {
                    return;
                };
                let adjust = RowOp::Adjust {
                    delta,
                    expected,
                    on_hand_after: None,
                    available_after: None,
                };
                (ret, adjust)
            }
            Outcome::Refused { reason, at_us, .. } => {
                let cause = match reason.as_str() {
                    "HELD_EXCEEDS_STOCK" => AdjustRefusal::HeldExceedsStock,
                    "ON_HAND_MISMATCH" => AdjustRefusal::OnHandMismatch,
                    _ => return,
                };
                let refused = RowOp::AdjustRefused {
                    delta,
                    expected,
                    cause,
                };
                (Some(*at_us), refused)
            }
            _ => return,
        };
        let row = (sku.clone(), location.clone());
        self.row(&row)
            .push(op.invoke_us(), ret, row_op, Source::Op(k));
    }

    fn read(&mut self, k: usize) {
        let op = self.facts.op(k);
        let Op::ReadAvailability {
            sku,
            location,
            stale: false,
        } = &op.op
        else {
            return;
        };
        let Outcome::Ok { result, at_us } = &op.outcome else {
            return;
        };
        let row_op = match result {
            OpResult::Availability {
                on_hand,
                held,
                available,
                ..
            } => RowOp::Read {
                on_hand: *on_hand,
                held: *held,
                available: Some(*available),
            },
            OpResult::NoRow {} => RowOp::NoRow,
            _ => return,
        };
        let row = (sku.clone(), location.clone());
        self.row(&row)
            .push(op.invoke_us(), Some(*at_us), row_op, Source::Op(k));
    }

    /// The final read of each row, where every replica agrees on it.
    fn final_reads(&mut self) {
        let end = self.facts.timeline.end_us;
        let rows: Vec<RowKey> = self.rows.keys().cloned().collect();
        for row in rows {
            let op = match self.facts.agreed_row(&row) {
                Agreed::Same(Some((on_hand, held))) => RowOp::Read {
                    on_hand,
                    held,
                    available: None,
                },
                Agreed::Same(None) => RowOp::NoRow,
                Agreed::Differ => {
                    self.notes.push(format!(
                        "row {}/{}: replicas differ, so their final state is not part of its linearizability check",
                        row.0, row.1
                    ));
                    continue;
                }
                Agreed::NoReplicas => continue,
            };
            // After `end + 1`, the deadline of operations that certainly
            // took effect.
            let history = self.row(&row);
            history.push(end + 2, Some(end + 3), op, Source::Final);
        }
    }
}

/// Every row's history, and notes about operations that are not judged.
pub fn project(facts: &Facts<'_>) -> (Vec<RowHistory>, Vec<String>) {
    let mut p = Projector::new(facts);
    for row in facts.rows() {
        p.row(&row);
    }
    for (k, op) in facts.timeline.ops.iter().enumerate() {
        match op.op {
            Op::Reserve { .. } => p.reserve(k),
            Op::Confirm { .. } | Op::Release { .. } | Op::Extend { .. } => p.resolve(k),
            Op::AdjustStock { .. } => p.adjust(k),
            Op::ReadAvailability { .. } => p.read(k),
        }
    }
    p.final_reads();
    let end_us = facts.timeline.end_us;
    let mut rows: Vec<RowHistory> = p.rows.into_values().collect();
    rows.iter_mut().for_each(|r| r.tighten_resolutions(end_us));
    (rows, p.notes)
}
