//! Whether operations of unknown outcome (and expiries) took effect, as far
//! as the final state tells.
//!
//! An open operation stays a candidate of the search until the end, so
//! every one the final state can pin down keeps the search smaller: one
//! that certainly never took effect is left out, one that certainly did
//! must take effect before the final read. The rules ([`Pins`]):
//! - a request id absent from every replica's applied request ids (when
//!   all replicas list them) never took effect;
//! - a reserve whose owner id is unique in the history took effect iff the
//!   replicas agree a reservation with that owner (and its lines) exists;
//!   its expiry iff that reservation is `Expired`;
//! - other reserves with lines `S`: if the replicas agree that no
//!   reservation nobody was told about has lines `S`, none took effect; if
//!   there are as many such reservations as such reserves, all did;
//!   likewise their expiries, counting the expired ones;
//! - a confirm (release) never took effect if the replicas agree the
//!   reservation ended otherwise; it certainly did if it is `Confirmed`
//!   (`Released`) and no other confirm (release) of it was acknowledged or
//!   is open;
//! - an acknowledged reservation's expiry certainly happened if the
//!   replicas agree it is `Expired`, and never if they agree on another
//!   state;
//! - adjustments of a row: by which subsets of their deltas add up to the
//!   net units the replicas show ([`adjustments_by_sum`]).
//!
//! Cross-shard reservations ([`crate::parts`]) are pinned part by part,
//! each part being an ordinary reservation on its shard:
//! - an acknowledged one's expiry, and a confirm or release of it, by the
//!   state of each part (a part whose confirmed units are all 0 is
//!   released by the confirm); any confirm or release of a joined id,
//!   refused ones included, counts as a possible resolver, since parts
//!   act one by one;
//! - a cross-shard reserve that was not acknowledged, per planned part, by
//!   the one reservation of its owner on the part's shard
//!   ([`Pins::unheld_part`]): absent, it was never held; pending, held and
//!   kept; released, held and released by the coordinator (an
//!   all-or-nothing refusal releases the parts it held); expired, held and
//!   expired;
//! - with applied request ids listed, by each part's derived id.

use super::row_model::ExpiryKey;
use crate::facts::{Agreed, Facts, RowKey, Signature};
use crate::final_state::ReservationStatus;
use crate::history::{Op, OpResult};
use crate::parts::{self, HeldPart, PartOp};
use crate::timeline::{LogicalOp, Outcome};
use std::collections::{BTreeMap, BTreeSet};

/// Whether an operation of unknown outcome (or an expiry) took effect, as
/// far as the final state tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// It certainly did not: left out of the row history.
    Never,
    /// It may have: open, any time after its call, or never.
    Maybe,
    /// It certainly did: any time after its call, before the final read.
    Certain,
}

/// Distinct subset sums tracked before the rule gives up (and leaves every
/// adjustment `Maybe`): bounds time and memory to a few MB per row.
pub const SUBSET_SUMS_MAX: usize = 1 << 16;

/// Adds `delta` to the subset sums `sums` (each subset with or without
/// it); `None` past [`SUBSET_SUMS_MAX`].
fn with_delta(sums: &BTreeSet<i64>, delta: i64) -> Option<BTreeSet<i64>> {
    let mut next = sums.clone();
    next.extend(sums.iter().map(|s| s + delta));
    (next.len() <= SUBSET_SUMS_MAX).then_some(next)
}

/// Given the deltas of a row's adjustments of unknown outcome and the net
/// units they must have added (`target`: the replicas' `on_hand + sold`
/// minus the acknowledged deltas), which of them took effect: `Never` if
/// no subset reaching `target` contains it, `Certain` if every one does.
/// `None` if no subset reaches `target` at all (the lost-ack and duplicate
/// rules report that) or the sums grow too many.
pub fn adjustments_by_sum(deltas: &[i64], target: i64) -> Option<Vec<Presence>> {
    // Subset sums of the deltas before (after) each position, so that the
    // sums of "all but i" are prefix[i] + suffix[i + 1].
    let mut prefix = vec![BTreeSet::from([0])];
    for &d in deltas {
        let next = with_delta(prefix.last()?, d)?;
        prefix.push(next);
    }
    let mut suffix = vec![BTreeSet::from([0])];
    for &d in deltas.iter().rev() {
        let next = with_delta(suffix.last()?, d)?;
        suffix.push(next);
    }
    suffix.reverse();
    if !prefix[deltas.len()].contains(&target) {
        return None;
    }
    let reaches = |i: usize, want: i64| {
        prefix[i]
            .iter()
            .any(|a| suffix[i + 1].contains(&(want - a)))
    };
    let pinned = (0..deltas.len())
        .map(
            |i| match (reaches(i, target - deltas[i]), reaches(i, target)) {
                (false, _) => Presence::Never,
                (true, false) => Presence::Certain,
                (true, true) => Presence::Maybe,
            },
        )
        .collect();
    Some(pinned)
}

/// What became of one part of a cross-shard reserve that no client was
/// told about ([`Pins::unheld_part`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartFate {
    /// Whether it was held.
    pub hold: Presence,
    /// Whether it then expired.
    pub expiry: Presence,
    /// Whether the coordinator released it (refusing the reserve).
    pub release: Presence,
}

impl PartFate {
    fn all(p: Presence) -> Self {
        PartFate {
            hold: p,
            expiry: p,
            release: p,
        }
    }
}

/// What the final state says about the open operations of a history.
pub struct Pins<'f> {
    facts: &'f Facts<'f>,
    /// Every request id the replicas applied, if they said.
    applied: Option<BTreeSet<&'f str>>,
    /// Unexplained reservations per signature: (count, expired).
    unexplained: Agreed<BTreeMap<Signature, (usize, usize)>>,
    /// Reserves of unknown outcome per signature.
    unknown_reserves: BTreeMap<Signature, usize>,
    /// (reservation id, op name) → confirms or releases acknowledged or
    /// open.
    resolutions: BTreeMap<(&'f str, &'static str), usize>,
    /// Joined id → confirms and releases of it, whatever their outcome.
    joined_resolvers: BTreeMap<&'f str, usize>,
    /// Reserves per owner id (an owner matches exactly only if unique).
    owners: BTreeMap<&'f str, usize>,
    /// Reservations some extend names (their expiry time may have moved).
    extended: BTreeSet<&'f str>,
    /// Adjustments of unknown outcome pinned by the final stock, by index.
    adjustments: BTreeMap<usize, Presence>,
}

impl<'f> Pins<'f> {
    /// Gathers what the rules need.
    pub fn new(facts: &'f Facts<'f>) -> Self {
        let mut resolutions: BTreeMap<(&'f str, &'static str), usize> = BTreeMap::new();
        let mut owners: BTreeMap<&'f str, usize> = BTreeMap::new();
        let mut extended: BTreeSet<&'f str> = BTreeSet::new();
        let mut joined_resolvers: BTreeMap<&'f str, usize> = BTreeMap::new();
        for op in &facts.timeline.ops {
            if let Op::Confirm { reservation_id, .. } | Op::Release { reservation_id, .. } = &op.op
            {
                if parts::is_joined(reservation_id) {
                    *joined_resolvers.entry(reservation_id).or_default() += 1;
                }
            }
            match (&op.op, &op.outcome) {
                (Op::Reserve { owner: Some(o), .. }, _) => *owners.entry(o).or_default() += 1,
                (Op::Extend { reservation_id, .. }, _) => {
                    extended.insert(reservation_id);
                }
                (
                    Op::Confirm { reservation_id, .. } | Op::Release { reservation_id, .. },
                    Outcome::Ok { .. } | Outcome::Unknown,
                ) => {
                    *resolutions
                        .entry((reservation_id, op.op.name()))
                        .or_default() += 1
                }
                _ => {}
            }
        }
        Pins {
            facts,
            applied: facts.applied_request_ids(),
            unexplained: facts.agreed_unexplained(),
            unknown_reserves: facts.unknown_reserves(),
            resolutions,
            joined_resolvers,
            owners,
            extended,
            adjustments: pin_adjustments(facts),
        }
    }

    /// `Never` if the replicas list their applied request ids and none
    /// has any this operation is applied under (for a cross-shard call,
    /// its parts' derived ids).
    fn by_request_id(&self, op: &LogicalOp) -> Presence {
        let Some(ids) = &self.applied else {
            return Presence::Maybe;
        };
        let applied = parts::applied_ids(&op.op);
        if !applied.is_empty() && applied.iter().all(|(_, id)| !ids.contains(id.as_str())) {
            Presence::Never
        } else {
            Presence::Maybe
        }
    }

    /// `Never` if the replicas list their applied request ids and none has
    /// `id`.
    fn by_applied_id(&self, id: &str) -> Presence {
        match &self.applied {
            Some(ids) if !ids.contains(id) => Presence::Never,
            _ => Presence::Maybe,
        }
    }

    /// What became of the part on `shard` (lines `sig`) of a cross-shard
    /// reserve that was not acknowledged (unknown or refused), whose parts
    /// are on `shards`: by the one reservation of the reserve's owner on
    /// that shard, when the owner is unique in the history; else by lines,
    /// as an ordinary reserve of unknown outcome.
    pub fn unheld_part(
        &self,
        op: &LogicalOp,
        shards: &[u32],
        shard: u32,
        sig: &Signature,
    ) -> PartFate {
        let Some(base) = op.op.request_id() else {
            return PartFate::all(Presence::Maybe);
        };
        let id = parts::part_request_id(base, PartOp::Reserve, shard, shards);
        if self.by_applied_id(&id) == Presence::Never {
            return PartFate::all(Presence::Never);
        }
        let owner = match &op.op {
            Op::Reserve { owner: Some(o), .. } if self.owners.get(o.as_str()) == Some(&1) => {
                Some(o)
            }
            _ => None,
        };
        let Some(owner) = owner else {
            let (hold, expiry) = self.by_signature(sig);
            let release = match hold {
                Presence::Never => Presence::Never,
                _ => Presence::Maybe,
            };
            return PartFate {
                hold,
                expiry,
                release,
            };
        };
        use Presence::{Certain, Never};
        let fate = |hold, expiry, release| PartFate {
            hold,
            expiry,
            release,
        };
        match self.facts.agreed_owned_on(owner, shard, sig) {
            Agreed::Same(None) => PartFate::all(Never),
            Agreed::Same(Some(ReservationStatus::Expired)) => fate(Certain, Certain, Never),
            Agreed::Same(Some(ReservationStatus::Released)) => fate(Certain, Never, Certain),
            Agreed::Same(Some(_)) => fate(Certain, Never, Never),
            Agreed::Differ | Agreed::NoReplicas => PartFate::all(Presence::Maybe),
        }
    }

    /// Presence of a reservation with lines `sig` that no client was told
    /// about, and of its expiry, by counting such reservations against the
    /// reserves that may have made them.
    fn by_signature(&self, sig: &Signature) -> (Presence, Presence) {
        let Agreed::Same(unexplained) = &self.unexplained else {
            return (Presence::Maybe, Presence::Maybe);
        };
        let (found, expired) = unexplained.get(sig).copied().unwrap_or((0, 0));
        let unknown = self.unknown_reserves.get(sig).copied().unwrap_or(0);
        let presence = |n: usize| match n {
            0 => Presence::Never,
            n if n == unknown && found == unknown => Presence::Certain,
            _ => Presence::Maybe,
        };
        (presence(found), presence(expired))
    }

    /// Presence of an unknown reserve's hold, and of its expiry.
    pub fn unknown_reserve(&self, op: &LogicalOp, sig: &Signature) -> (Presence, Presence) {
        if self.by_request_id(op) == Presence::Never {
            return (Presence::Never, Presence::Never);
        }
        let owner = match &op.op {
            Op::Reserve { owner: Some(o), .. } if self.owners.get(o.as_str()) == Some(&1) => {
                Some(o)
            }
            _ => None,
        };
        if let Some(owner) = owner {
            match self.facts.agreed_owned(owner, sig) {
                Agreed::Same(None) => return (Presence::Never, Presence::Never),
                Agreed::Same(Some(ReservationStatus::Expired)) => {
                    return (Presence::Certain, Presence::Certain)
                }
                Agreed::Same(Some(_)) => return (Presence::Certain, Presence::Never),
                Agreed::Differ | Agreed::NoReplicas => {}
            }
        }
        self.by_signature(sig)
    }

    /// Presence of an acknowledged reservation's expiry; of a joined id
    /// taken as a whole (`Certain` if every part expired, `Never` if none
    /// can have), for callers that cannot tell its parts apart.
    pub fn expiry(&self, id: &str) -> Presence {
        if parts::is_joined(id) {
            let each: Vec<Presence> = parts::part_ids(id)
                .into_iter()
                .map(|p| self.expiry(p))
                .collect();
            return if each.iter().all(|&p| p == Presence::Certain) {
                Presence::Certain
            } else if each.iter().all(|&p| p == Presence::Never) {
                Presence::Never
            } else {
                Presence::Maybe
            };
        }
        match self.facts.agreed_status(id) {
            Agreed::Same(Some(ReservationStatus::Expired)) => Presence::Certain,
            Agreed::Same(Some(_)) => Presence::Never,
            Agreed::Same(None) | Agreed::NoReplicas => Presence::Maybe,
            Agreed::Differ if self.facts.may_have_expired(id) => Presence::Maybe,
            Agreed::Differ => Presence::Never,
        }
    }

    /// Presence of a confirm or release of unknown outcome of reservation
    /// `id`.
    pub fn unknown_resolution(&self, op: &LogicalOp, id: &str) -> Presence {
        let want = match op.op {
            Op::Confirm { .. } => ReservationStatus::Confirmed,
            Op::Release { .. } => ReservationStatus::Released,
            _ => return Presence::Maybe,
        };
        if self.by_request_id(op) == Presence::Never {
            return Presence::Never;
        }
        let alone = self.resolutions.get(&(id, op.op.name())) == Some(&1);
        match self.facts.agreed_status(id) {
            Agreed::Same(Some(state)) if state != want => Presence::Never,
            Agreed::Same(Some(_)) if alone => Presence::Certain,
            _ => Presence::Maybe,
        }
    }

    /// Presence of the effect on `part` of a confirm or release of the
    /// cross-shard reservation `id` whose answer did not say it (unknown,
    /// or refused naming another part): `want` is the state it leaves the
    /// part in.
    pub fn part_resolution(
        &self,
        op: &LogicalOp,
        id: &str,
        part: &HeldPart<'_>,
        want: ReservationStatus,
    ) -> Presence {
        let (part_op, Some(base)) = (
            match op.op {
                Op::Confirm { .. } => PartOp::Confirm,
                Op::Release { .. } => PartOp::Release,
                _ => return Presence::Maybe,
            },
            op.op.request_id(),
        ) else {
            return Presence::Maybe;
        };
        if let Some(shards) = parts::shards_of_id(id) {
            let applied = parts::part_request_id(base, part_op, part.shard, &shards);
            if self.by_applied_id(&applied) == Presence::Never {
                return Presence::Never;
            }
        }
        let alone = self.joined_resolvers.get(id) == Some(&1);
        match self.facts.agreed_status(part.id) {
            Agreed::Same(Some(state)) if state != want => Presence::Never,
            Agreed::Same(Some(_)) if alone => Presence::Certain,
            _ => Presence::Maybe,
        }
    }

    /// Presence of the adjustment of unknown outcome at index `k`.
    pub fn unknown_adjustment(&self, k: usize, op: &LogicalOp) -> Presence {
        match (self.by_request_id(op), self.adjustments.get(&k)) {
            (Presence::Never, _) | (_, Some(Presence::Never)) => Presence::Never,
            (_, Some(Presence::Certain)) => Presence::Certain,
            _ => Presence::Maybe,
        }
    }

    /// The expiry order key of the reservation made by reserve `k`: known
    /// if the reserve answered `expires_at_ms` and no extend names the
    /// reservation.
    pub fn expiry_key(&self, k: usize) -> Option<ExpiryKey> {
        let Some(OpResult::Reserved {
            reservation_id,
            expires_at_ms: Some(expires_at_ms),
            ..
        }) = self.facts.op(k).ok_result()
        else {
            return None;
        };
        // A part's own expiry is not answered (a cross-shard reserve answers
        // the earliest), so its order is unknown.
        if self.extended.contains(reservation_id.as_str()) || parts::is_joined(reservation_id) {
            return None;
        }
        let engine_id = reservation_id
            .split_once('-')
            .and_then(|(_, id)| id.parse().ok());
        Some(ExpiryKey {
            expires_at_ms: *expires_at_ms,
            engine_id,
        })
    }
}

/// Pins adjustments of unknown outcome per row by the net units the
/// replicas agree were added ([`adjustments_by_sum`]).
fn pin_adjustments(facts: &Facts<'_>) -> BTreeMap<usize, Presence> {
    let mut acked: BTreeMap<RowKey, i64> = BTreeMap::new();
    let mut unknown: BTreeMap<RowKey, Vec<(usize, i64)>> = BTreeMap::new();
    for (k, op) in facts.timeline.ops.iter().enumerate() {
        let Op::AdjustStock {
            sku,
            location,
            delta,
            ..
        } = &op.op
        else {
            continue;
        };
        let row = (sku.clone(), location.clone());
        match op.outcome {
            Outcome::Ok { .. } => *acked.entry(row).or_default() += delta,
            Outcome::Unknown => unknown.entry(row).or_default().push((k, *delta)),
            _ => {}
        }
    }
    let mut pinned = BTreeMap::new();
    for (row, ops) in unknown {
        let Agreed::Same(added) = facts.agreed_units_added(&row) else {
            continue;
        };
        let deltas: Vec<i64> = ops.iter().map(|&(_, d)| d).collect();
        let target = added - acked.get(&row).copied().unwrap_or(0);
        if let Some(presence) = adjustments_by_sum(&deltas, target) {
            pinned.extend(ops.iter().map(|&(k, _)| k).zip(presence));
        }
    }
    pinned
}

#[cfg(test)]
mod tests {
    use super::*;
    use Presence::*;

    #[test]
    fn sums_pin_what_they_can() {
        assert_eq!(adjustments_by_sum(&[3, 5], 0), Some(vec![Never, Never]));
        assert_eq!(adjustments_by_sum(&[3, 5], 8), Some(vec![Certain, Certain]));
        assert_eq!(adjustments_by_sum(&[3, 5], 5), Some(vec![Never, Certain]));
        assert_eq!(
            adjustments_by_sum(&[3, -3, 4], 4),
            Some(vec![Maybe, Maybe, Certain])
        );
        assert_eq!(adjustments_by_sum(&[3, 5], 4), None);
        assert_eq!(adjustments_by_sum(&[], 0), Some(vec![]));
    }
}
