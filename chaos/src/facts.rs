//! Indexes over the evidence that several checks share: which request
//! created which reservation, what each reservation holds per row, what
//! the replicas agree on, and bounds on the stock the clients added.
//!
//! A row is named by `(sku, location)` ([`RowKey`]). Everything is kept in
//! `BTreeMap`s, so every report lists rows and ids in the same order on
//! every run.

use crate::final_state::{
    FinalLine, FinalReservation, FinalRow, FinalState, LineTotals, ReplicaState, ReservationStatus,
};
use crate::history::{Allocation, Op, OpResult, ReserveLine};
use crate::parts::{self, HeldPart};
use crate::timeline::{LogicalOp, Outcome, Timeline};
use std::collections::{BTreeMap, BTreeSet};

/// A stock row: `(sku, location)`.
pub type RowKey = (String, String);

/// A multiset of reservation lines, sorted: `(sku, location, quantity)`.
/// Reservations of unknown origin are matched to reserves of unknown
/// outcome by it (a fixed-location reserve allocates one line per line).
pub type Signature = Vec<(String, String, i64)>;

/// The signature of a reserve's request lines.
pub fn signature_of_request(lines: &[ReserveLine]) -> Signature {
    let mut sig: Signature = lines
        .iter()
        .map(|l| (l.sku.clone(), l.location.clone(), l.quantity))
        .collect();
    sig.sort_unstable();
    sig
}

/// The signature of a reservation in a final state.
pub fn signature_of_reservation(lines: &[FinalLine]) -> Signature {
    let mut sig: Signature = lines
        .iter()
        .map(|l| (l.sku.clone(), l.location.clone(), l.quantity))
        .collect();
    sig.sort_unstable();
    sig
}

/// The units a reservation (or a request) has on one row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowShare {
    /// Units held on the row.
    pub units: i64,
    /// `available_after` of the last allocation on the row, if answered.
    pub available_after: Option<i64>,
}

/// What the replicas say about one thing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Agreed<T> {
    /// No replica state was given.
    NoReplicas,
    /// Every replica says this.
    Same(T),
    /// Replicas differ (the convergence check reports how).
    Differ,
}

/// Bounds on the net units that client adjustments of one row can have
/// added: acknowledged adjustments count in full; those with unknown
/// outcome may or may not have been applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StockBounds {
    /// Sum of acknowledged deltas.
    pub acked: i64,
    /// Sum of positive deltas with unknown outcome.
    pub unknown_added: i64,
    /// Sum of negative deltas with unknown outcome (≤ 0).
    pub unknown_removed: i64,
}

impl StockBounds {
    /// The fewest net units the adjustments can have added.
    pub fn lower(&self) -> i64 {
        self.acked + self.unknown_removed
    }

    /// The most net units the adjustments can have added.
    pub fn upper(&self) -> i64 {
        self.acked + self.unknown_added
    }
}

/// The shared indexes.
pub struct Facts<'a> {
    /// The interpreted history.
    pub timeline: &'a Timeline,
    /// Every replica's final state.
    pub final_state: &'a FinalState,
    /// Reservation wire id → every `Ok` reserve that returned it, in invoke
    /// order (more than one is an at-most-once violation). A cross-shard
    /// reserve's key is its joined id.
    pub reserves_by_id: BTreeMap<String, Vec<usize>>,
    /// Part id → the joined ids of acknowledged cross-shard reservations
    /// that have it (more than one is an at-most-once violation).
    pub joined_by_part: BTreeMap<String, Vec<String>>,
    /// Each replica's state, indexed.
    pub replicas: Vec<ReplicaView<'a>>,
}

/// One replica's final state with lookups by row and reservation id.
pub struct ReplicaView<'a> {
    /// The replica's state.
    pub state: &'a ReplicaState,
    /// Rows by `(sku, location)`.
    pub rows: BTreeMap<RowKey, &'a FinalRow>,
    /// Reservations by wire id.
    pub reservations: BTreeMap<&'a str, &'a FinalReservation>,
    /// Pending and sold units per row.
    pub totals: BTreeMap<RowKey, LineTotals>,
    /// Reservations by owner id, where the harness read owners.
    pub by_owner: BTreeMap<&'a str, Vec<&'a FinalReservation>>,
}

impl<'a> ReplicaView<'a> {
    fn new(state: &'a ReplicaState) -> Self {
        ReplicaView {
            state,
            rows: state
                .rows
                .iter()
                .map(|r| ((r.sku.clone(), r.location.clone()), r))
                .collect(),
            reservations: state
                .reservations
                .iter()
                .map(|r| (r.id.as_str(), r))
                .collect(),
            totals: state.line_totals(),
            by_owner: state
                .reservations
                .iter()
                .filter_map(|r| r.owner.as_deref().map(|o| (o, r)))
                .fold(BTreeMap::new(), |mut m, (o, r)| {
                    m.entry(o).or_insert_with(Vec::new).push(r);
                    m
                }),
        }
    }

    /// The replica's node name.
    pub fn node(&self) -> &'a str {
        &self.state.node
    }
}

/// Units per row of a reserve's allocations, in row order.
pub fn allocations_per_row(allocations: &[Allocation]) -> BTreeMap<RowKey, RowShare> {
    let mut rows: BTreeMap<RowKey, RowShare> = BTreeMap::new();
    for a in allocations {
        let share = rows.entry((a.sku.clone(), a.location.clone())).or_default();
        share.units += a.quantity;
        share.available_after = a.available_after;
    }
    rows
}

/// Units per row of a reserve's request lines.
pub fn lines_per_row(lines: &[ReserveLine]) -> BTreeMap<RowKey, i64> {
    let mut rows: BTreeMap<RowKey, i64> = BTreeMap::new();
    for l in lines {
        *rows.entry((l.sku.clone(), l.location.clone())).or_default() += l.quantity;
    }
    rows
}

/// Units a confirm sells per row: `quantities[i]` for allocation `i`, or
/// everything when `None`. `None` if `quantities` does not have one entry
/// per allocation.
pub fn sold_per_row(
    allocations: &[Allocation],
    quantities: Option<&[i64]>,
) -> Option<BTreeMap<RowKey, i64>> {
    if quantities.is_some_and(|q| q.len() != allocations.len()) {
        return None;
    }
    let mut rows: BTreeMap<RowKey, i64> = BTreeMap::new();
    for (i, a) in allocations.iter().enumerate() {
        let sold = quantities.map_or(a.quantity, |q| q[i]);
        *rows.entry((a.sku.clone(), a.location.clone())).or_default() += sold;
    }
    Some(rows)
}

impl<'a> Facts<'a> {
    /// Indexes a timeline and a final state.
    pub fn gather(timeline: &'a Timeline, final_state: &'a FinalState) -> Self {
        let mut reserves_by_id: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (k, op) in timeline.ops.iter().enumerate() {
            if let Some(OpResult::Reserved { reservation_id, .. }) = op.ok_result() {
                reserves_by_id
                    .entry(reservation_id.clone())
                    .or_default()
                    .push(k);
            }
        }
        let mut joined_by_part: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for id in reserves_by_id.keys().filter(|id| parts::is_joined(id)) {
            for part in parts::part_ids(id) {
                joined_by_part
                    .entry(part.to_string())
                    .or_default()
                    .push(id.clone());
            }
        }
        Facts {
            timeline,
            final_state,
            reserves_by_id,
            joined_by_part,
            replicas: final_state.replicas.iter().map(ReplicaView::new).collect(),
        }
    }

    /// The logical operation at index `k`.
    pub fn op(&self, k: usize) -> &'a LogicalOp {
        &self.timeline.ops[k]
    }

    /// The allocations an `Ok` reserve answered (empty for anything else).
    pub fn allocations(&self, k: usize) -> &'a [Allocation] {
        match self.op(k).ok_result() {
            Some(OpResult::Reserved { allocations, .. }) => allocations,
            _ => &[],
        }
    }

    /// The first `Ok` reserve that returned reservation `id`.
    pub fn reserve_of(&self, id: &str) -> Option<usize> {
        self.reserves_by_id.get(id).map(|ks| ks[0])
    }

    /// The parts of the reservation an acknowledged cross-shard reserve `k`
    /// made, each with its slice of the answered allocations; `None` for an
    /// ordinary reserve, or one whose answer does not fit its lines'
    /// shards (then it is judged as a whole where that is sound).
    pub fn held_parts(&self, k: usize) -> Option<Vec<HeldPart<'a>>> {
        let plan = parts::plan_of(&self.op(k).op)?;
        let Some(OpResult::Reserved {
            reservation_id,
            allocations,
            ..
        }) = self.op(k).ok_result()
        else {
            return None;
        };
        parts::held_parts(&plan, reservation_id, allocations)
    }

    /// Whether replica reservation `id` was returned to a client: as a
    /// reservation, or as a part of an acknowledged cross-shard one.
    pub fn acknowledged(&self, id: &str) -> bool {
        self.reserves_by_id.contains_key(id) || self.joined_by_part.contains_key(id)
    }

    /// Every row the history names, in order.
    pub fn rows(&self) -> BTreeSet<RowKey> {
        let mut rows = BTreeSet::new();
        for (k, op) in self.timeline.ops.iter().enumerate() {
            match &op.op {
                Op::Reserve { lines, .. } => {
                    rows.extend(lines_per_row(lines).into_keys());
                    rows.extend(allocations_per_row(self.allocations(k)).into_keys());
                }
                Op::AdjustStock { sku, location, .. }
                | Op::ReadAvailability { sku, location, .. } => {
                    rows.insert((sku.clone(), location.clone()));
                }
                Op::Confirm { .. } | Op::Release { .. } | Op::Extend { .. } => {}
            }
        }
        rows
    }

    /// `(backorder_allowance, safety_stock)` of a row: from the first
    /// replica that has it, else zero.
    pub fn policy(&self, row: &RowKey) -> (i64, i64) {
        self.replicas
            .iter()
            .find_map(|r| r.rows.get(row))
            .map_or((0, 0), |r| (r.backorder_allowance, r.safety_stock))
    }

    /// `(on_hand, held)` of a row on every replica (`None`: no such row).
    pub fn agreed_row(&self, row: &RowKey) -> Agreed<Option<(i64, i64)>> {
        let mut seen = self
            .replicas
            .iter()
            .map(|replica| replica.rows.get(row).map(|r| (r.on_hand, r.held)));
        let Some(first) = seen.next() else {
            return Agreed::NoReplicas;
        };
        if seen.all(|other| other == first) {
            Agreed::Same(first)
        } else {
            Agreed::Differ
        }
    }

    /// The state of reservation `id` on each replica that has it.
    pub fn statuses(&self, id: &str) -> Vec<ReservationStatus> {
        self.replicas
            .iter()
            .filter_map(|r| r.reservations.get(id))
            .map(|x| x.state)
            .collect()
    }

    /// Whether reservation `id` may have expired during the run: unless
    /// some replica has it and none says `Expired`.
    pub fn may_have_expired(&self, id: &str) -> bool {
        let statuses = self.statuses(id);
        statuses.is_empty() || statuses.contains(&ReservationStatus::Expired)
    }

    /// Bounds on the units client adjustments added, per row.
    pub fn stock_bounds(&self) -> BTreeMap<RowKey, StockBounds> {
        let mut bounds: BTreeMap<RowKey, StockBounds> = BTreeMap::new();
        for op in &self.timeline.ops {
            let Op::AdjustStock {
                sku,
                location,
                delta,
                ..
            } = &op.op
            else {
                continue;
            };
            let b = bounds.entry((sku.clone(), location.clone())).or_default();
            match op.outcome {
                Outcome::Ok { .. } => b.acked += delta,
                Outcome::Unknown if *delta > 0 => b.unknown_added += delta,
                Outcome::Unknown => b.unknown_removed += delta,
                Outcome::Refused { .. } | Outcome::NotApplied => {}
            }
        }
        bounds
    }

    /// Units sold by acknowledged confirms, per row.
    pub fn acked_sold(&self) -> BTreeMap<RowKey, i64> {
        let mut sold: BTreeMap<RowKey, i64> = BTreeMap::new();
        for op in &self.timeline.ops {
            let (
                Op::Confirm {
                    reservation_id,
                    quantities,
                    ..
                },
                Outcome::Ok { .. },
            ) = (&op.op, &op.outcome)
            else {
                continue;
            };
            let Some(reserve) = self.reserve_of(reservation_id) else {
                continue;
            };
            let rows = sold_per_row(self.allocations(reserve), quantities.as_deref());
            for (row, units) in rows.into_iter().flatten() {
                *sold.entry(row).or_default() += units;
            }
        }
        sold
    }
}

/// Reservations nobody was told about, and the reserves that may explain
/// them.
impl<'a> Facts<'a> {
    /// A replica's reservations that no acknowledged reserve returned, by
    /// signature, with their states.
    pub fn unexplained(
        &self,
        replica: &ReplicaView<'a>,
    ) -> BTreeMap<Signature, Vec<(&'a str, ReservationStatus)>> {
        let mut found: BTreeMap<Signature, Vec<(&'a str, ReservationStatus)>> = BTreeMap::new();
        for (&id, r) in &replica.reservations {
            if !self.acknowledged(id) {
                found
                    .entry(signature_of_reservation(&r.lines))
                    .or_default()
                    .push((id, r.state));
            }
        }
        found
    }

    /// Per signature, how many unexplained reservations every replica has
    /// and how many of them expired, if all replicas agree.
    pub fn agreed_unexplained(&self) -> Agreed<BTreeMap<Signature, (usize, usize)>> {
        let mut per_replica = self.replicas.iter().map(|replica| {
            self.unexplained(replica)
                .into_iter()
                .map(|(sig, found)| {
                    let expired = found
                        .iter()
                        .filter(|(_, s)| *s == ReservationStatus::Expired)
                        .count();
                    (sig, (found.len(), expired))
                })
                .collect::<BTreeMap<_, _>>()
        });
        let Some(first) = per_replica.next() else {
            return Agreed::NoReplicas;
        };
        if per_replica.all(|other| other == first) {
            Agreed::Same(first)
        } else {
            Agreed::Differ
        }
    }

    /// What may have created a reservation no client was told about,
    /// counted per signature, each creating at most one: a reserve of
    /// unknown outcome; and each part of a cross-shard reserve that was not
    /// acknowledged (its parts are held one by one, and a refused one may
    /// have held some and released them again).
    pub fn unknown_reserves(&self) -> BTreeMap<Signature, usize> {
        let mut count: BTreeMap<Signature, usize> = BTreeMap::new();
        for op in &self.timeline.ops {
            let Op::Reserve { lines, .. } = &op.op else {
                continue;
            };
            match (parts::plan_of(&op.op), &op.outcome) {
                (_, Outcome::Ok { .. }) => {}
                (Some(plan), _) => {
                    for part in &plan {
                        let sig = signature_of_request(&parts::part_lines(lines, part));
                        *count.entry(sig).or_default() += 1;
                    }
                }
                (None, Outcome::Unknown) => {
                    *count.entry(signature_of_request(lines)).or_default() += 1
                }
                (None, _) => {}
            }
        }
        count
    }

    /// Net units client adjustments added to a row on every replica:
    /// `on_hand + sold` (sold units left `on_hand`; nothing else moves it).
    pub fn agreed_units_added(&self, row: &RowKey) -> Agreed<i64> {
        let mut seen = self.replicas.iter().map(|r| {
            r.rows.get(row).map_or(0, |x| x.on_hand) + r.totals.get(row).map_or(0, |t| t.sold)
        });
        let Some(first) = seen.next() else {
            return Agreed::NoReplicas;
        };
        if seen.all(|other| other == first) {
            Agreed::Same(first)
        } else {
            Agreed::Differ
        }
    }

    /// The state of reservation `id` on every replica (`None`: absent).
    pub fn agreed_status(&self, id: &str) -> Agreed<Option<ReservationStatus>> {
        let mut seen = self
            .replicas
            .iter()
            .map(|r| r.reservations.get(id).map(|x| x.state));
        let Some(first) = seen.next() else {
            return Agreed::NoReplicas;
        };
        if seen.all(|other| other == first) {
            Agreed::Same(first)
        } else {
            Agreed::Differ
        }
    }

    /// The state of the one reservation owned by `owner` with lines `sig`
    /// on every replica (`None`: no reservation has that owner). `Differ`
    /// if replicas disagree, or one has several or other lines.
    pub fn agreed_owned(&self, owner: &str, sig: &Signature) -> Agreed<Option<ReservationStatus>> {
        self.agreed_owned_where(owner, sig, |_| true)
    }

    /// The state of the one reservation owned by `owner` on `shard` with
    /// lines `sig` on every replica (a part of a cross-shard reserve,
    /// whose parts share the reserve's owner). `Differ` as
    /// [`Facts::agreed_owned`].
    pub fn agreed_owned_on(
        &self,
        owner: &str,
        shard: u32,
        sig: &Signature,
    ) -> Agreed<Option<ReservationStatus>> {
        self.agreed_owned_where(owner, sig, |r| parts::shard_of_id(&r.id) == Some(shard))
    }

    /// [`Facts::agreed_owned`] among the reservations of `owner` that `keep`
    /// accepts.
    fn agreed_owned_where(
        &self,
        owner: &str,
        sig: &Signature,
        keep: impl Fn(&FinalReservation) -> bool,
    ) -> Agreed<Option<ReservationStatus>> {
        let mut seen = self.replicas.iter().map(|r| {
            let owned: Vec<&FinalReservation> = r
                .by_owner
                .get(owner)
                .into_iter()
                .flatten()
                .filter(|x| keep(x))
                .copied()
                .collect();
            match owned[..] {
                [] => Some(None),
                [one] if signature_of_reservation(&one.lines) == *sig => Some(Some(one.state)),
                _ => None,
            }
        });
        let Some(first) = seen.next() else {
            return Agreed::NoReplicas;
        };
        match first {
            Some(first) if seen.all(|other| other == Some(first)) => Agreed::Same(first),
            _ => Agreed::Differ,
        }
    }

    /// Every request id any replica applied, if every replica listed them.
    pub fn applied_request_ids(&self) -> Option<BTreeSet<&'a str>> {
        if self.replicas.is_empty() {
            return None;
        }
        let mut ids = BTreeSet::new();
        for replica in &self.replicas {
            ids.extend(
                replica
                    .state
                    .applied_request_ids
                    .as_ref()?
                    .iter()
                    .map(String::as_str),
            );
        }
        Some(ids)
    }
}
