//! No lost acknowledgement (design §1.4): whatever a client was told
//! succeeded is in every replica's final state.
//!
//! Rules (each replica; skipped without replica states except rule 5):
//! 1. An acknowledged reserve's reservation exists, with the answered
//!    allocations as its lines (same `(sku, location, quantity)` multiset).
//!    A cross-shard reservation exists as its parts, each on its own shard
//!    (the ids its joined id names), their lines together the answered
//!    allocations.
//! 2. An acknowledged confirm's reservation is `Confirmed`, each line
//!    confirming the requested units (all of them without `quantities`).
//!    Of a cross-shard one, every part; a part whose requested units are
//!    all 0 is `Released` instead (the server releases it).
//! 3. An acknowledged release's reservation is `Released` (every part).
//! 4. Adjustments: per row, `applied = on_hand + sold` (sold: units its
//!    confirmed reservations took out of `on_hand`) is at least the sum of
//!    acknowledged deltas plus every *negative* delta of unknown outcome —
//!    the least the adjustments can have added. (The most is checked by
//!    [`super::duplicate`].)
//! 5. A confirm, release or extend answered `RESERVATION_NOT_FOUND` for a
//!    reservation whose reserve was acknowledged before it was invoked.
//! 6. If a replica lists its applied request ids, every acknowledged
//!    request id is among them; for a cross-shard call, every part's
//!    derived id ([`crate::parts::applied_ids`]).
//! 7. A reserve the ledger refused (a decided refusal) holds nothing: no
//!    replica has a pending reservation with its owner, when the owner is
//!    unique in the history (a refused cross-shard reserve must have
//!    released the parts it held before answering).
//!
//! An operation of unknown outcome is never required to be present.

use super::{Class, PerItem, Violation};
use crate::codes::CodeClass;
use crate::facts::{Facts, ReplicaView};
use crate::final_state::{FinalLine, FinalReservation, ReservationStatus};
use crate::history::{Allocation, Op};
use crate::parts;
use crate::timeline::{AttemptEnd, Outcome};
use std::collections::{BTreeMap, BTreeSet};

fn sorted_lines<'a>(lines: impl Iterator<Item = &'a FinalLine>) -> Vec<(&'a str, &'a str, i64)> {
    let mut v: Vec<_> = lines
        .map(|l| (l.sku.as_str(), l.location.as_str(), l.quantity))
        .collect();
    v.sort_unstable();
    v
}

fn sorted_allocations(allocations: &[Allocation]) -> Vec<(&str, &str, i64)> {
    let mut v: Vec<_> = allocations
        .iter()
        .map(|a| (a.sku.as_str(), a.location.as_str(), a.quantity))
        .collect();
    v.sort_unstable();
    v
}

/// The replica's reservations that make reservation `id`: the one, or a
/// cross-shard one's parts in order; the ids of missing ones as `Err`.
fn held_as<'a>(
    replica: &ReplicaView<'a>,
    id: &str,
) -> Result<Vec<&'a FinalReservation>, Vec<String>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for part in parts::part_ids(id) {
        match replica.reservations.get(part) {
            Some(r) => found.push(*r),
            None => missing.push(part.to_string()),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(missing)
    }
}

/// Rule 1.
fn reservations(facts: &Facts<'_>, found: &mut PerItem) {
    for (id, reserves) in &facts.reserves_by_id {
        let k = reserves[0];
        let expected = sorted_allocations(facts.allocations(k));
        let item = format!("reservation {id} of {}", facts.op(k).describe());
        for replica in &facts.replicas {
            match held_as(replica, id) {
                Err(missing) if parts::is_joined(id) => found.add(
                    item.clone(),
                    format!("part {} missing on {}", missing.join(", "), replica.node()),
                ),
                Err(_) => found.add(item.clone(), format!("missing on {}", replica.node())),
                Ok(held) => {
                    let lines = sorted_lines(held.iter().flat_map(|r| &r.lines));
                    if lines != expected {
                        found.add(
                            item.clone(),
                            format!("{} has lines {lines:?}", replica.node()),
                        );
                    }
                }
            }
        }
    }
}

/// Rules 2 and 3 for one replica and one acknowledged resolution:
/// `confirmed` is the units confirmed per allocation, part after part.
fn resolution_on(
    replica: &ReplicaView<'_>,
    id: &str,
    want: ReservationStatus,
    confirmed: Option<Vec<i64>>,
) -> Option<String> {
    // A missing reservation or part is rule 1's finding.
    let held = held_as(replica, id).ok()?;
    let mut have: Vec<i64> = Vec::new();
    let mut wrong: Vec<String> = Vec::new();
    for r in &held {
        let from = have.len();
        have.extend(r.lines.iter().map(|l| l.confirmed));
        // A part of a cross-shard confirm whose units are all 0 is released.
        let none_asked = confirmed
            .as_ref()
            .and_then(|c| c.get(from..have.len()))
            .is_some_and(|q| q.iter().all(|&u| u == 0));
        let want = match want {
            ReservationStatus::Confirmed if held.len() > 1 && none_asked => {
                ReservationStatus::Released
            }
            want => want,
        };
        if r.state != want {
            wrong.push(if held.len() > 1 {
                format!("part {} {:?}", r.id, r.state)
            } else {
                format!("{:?}", r.state)
            });
        }
    }
    if !wrong.is_empty() {
        return Some(format!("{} has it {}", replica.node(), wrong.join(", ")));
    }
    match confirmed {
        Some(want) if want != have => Some(format!(
            "{} confirmed {have:?} per line, not {want:?}",
            replica.node()
        )),
        _ => None,
    }
}

/// Rules 2 and 3.
fn resolutions(facts: &Facts<'_>, found: &mut PerItem) {
    for op in &facts.timeline.ops {
        let Outcome::Ok { .. } = op.outcome else {
            continue;
        };
        let (id, want, quantities) = match &op.op {
            Op::Confirm {
                reservation_id,
                quantities,
                ..
            } => (
                reservation_id,
                ReservationStatus::Confirmed,
                Some(quantities),
            ),
            Op::Release { reservation_id, .. } => {
                (reservation_id, ReservationStatus::Released, None)
            }
            _ => continue,
        };
        let confirmed = match (quantities, facts.reserve_of(id)) {
            (Some(Some(q)), _) => Some(q.clone()),
            (Some(None), Some(k)) => {
                Some(facts.allocations(k).iter().map(|a| a.quantity).collect())
            }
            _ => None,
        };
        for replica in &facts.replicas {
            if let Some(how) = resolution_on(replica, id, want, confirmed.clone()) {
                found.add(format!("reservation {id} after {}", op.describe()), how);
            }
        }
    }
}

/// Rule 4.
fn adjustments(facts: &Facts<'_>, found: &mut PerItem) {
    for (row, bounds) in facts.stock_bounds() {
        for replica in &facts.replicas {
            let on_hand = replica.rows.get(&row).map_or(0, |r| r.on_hand);
            let sold = replica.totals.get(&row).map_or(0, |t| t.sold);
            let applied = on_hand + sold;
            if applied < bounds.lower() {
                found.add(
                    format!("row {}/{}", row.0, row.1),
                    format!(
                        "{} shows {applied} units added (on_hand {on_hand} + sold {sold}), fewer than \
                         the {} acknowledged adjustments guarantee",
                        replica.node(),
                        bounds.lower()
                    ),
                );
            }
        }
    }
}

/// Rule 5.
fn not_found_after_ack(facts: &Facts<'_>, found: &mut PerItem) {
    for op in &facts.timeline.ops {
        let Some(id) = op.op.reservation_id() else {
            continue;
        };
        let Some(Outcome::Ok {
            at_us: acked_at, ..
        }) = facts.reserve_of(id).map(|k| &facts.op(k).outcome)
        else {
            continue;
        };
        for a in &op.attempts {
            let AttemptEnd::Refused { reason, class, .. } = &a.end else {
                continue;
            };
            if reason == "RESERVATION_NOT_FOUND"
                && *class == CodeClass::Decided
                && a.invoke_us > *acked_at
            {
                found.add(
                    format!("reservation {id}"),
                    format!(
                        "{} (line {}) was answered RESERVATION_NOT_FOUND after the reserve was \
                         acknowledged at {acked_at} us",
                        op.op.name(),
                        a.line
                    ),
                );
            }
        }
    }
}

/// Rule 6.
fn request_ids(facts: &Facts<'_>, found: &mut PerItem) {
    for replica in &facts.replicas {
        let Some(ids) = &replica.state.applied_request_ids else {
            continue;
        };
        let ids: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        for op in &facts.timeline.ops {
            let (Some(id), Outcome::Ok { .. }) = (op.op.request_id(), &op.outcome) else {
                continue;
            };
            for (shard, applied) in parts::applied_ids(&op.op) {
                if ids.contains(applied.as_str()) {
                    continue;
                }
                let what = match shard {
                    Some(s) => format!("its part on shard {s} ({applied}) is"),
                    None => "it is".into(),
                };
                found.add(
                    format!("request {id}"),
                    format!(
                        "acknowledged, but {what} not among {}'s applied request ids",
                        replica.node()
                    ),
                );
            }
        }
    }
}

/// Rule 7.
fn refused_reserves(facts: &Facts<'_>, found: &mut PerItem) {
    let mut owners: BTreeMap<&str, usize> = BTreeMap::new();
    for op in &facts.timeline.ops {
        if let Op::Reserve { owner: Some(o), .. } = &op.op {
            *owners.entry(o).or_default() += 1;
        }
    }
    for op in &facts.timeline.ops {
        let (
            Op::Reserve {
                owner: Some(owner), ..
            },
            Outcome::Refused { reason, .. },
        ) = (&op.op, &op.outcome)
        else {
            continue;
        };
        if owners.get(owner.as_str()) != Some(&1) {
            continue;
        }
        for replica in &facts.replicas {
            let pending: Vec<&str> = replica
                .by_owner
                .get(owner.as_str())
                .into_iter()
                .flatten()
                .filter(|r| r.state == ReservationStatus::Pending)
                .map(|r| r.id.as_str())
                .collect();
            if !pending.is_empty() {
                found.add(
                    format!("{} refused {reason}", op.describe()),
                    format!(
                        "{} still holds {} of owner {owner}",
                        replica.node(),
                        pending.join(", ")
                    ),
                );
            }
        }
    }
}

/// Runs the rules.
pub fn check(facts: &Facts<'_>) -> Vec<Violation> {
    let mut found = PerItem::new(Class::Lost);
    reservations(facts, &mut found);
    resolutions(facts, &mut found);
    adjustments(facts, &mut found);
    not_found_after_ack(facts, &mut found);
    request_ids(facts, &mut found);
    refused_reserves(facts, &mut found);
    found.into_violations().collect()
}
