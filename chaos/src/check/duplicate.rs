//! At most once (design §1.3): a request id takes effect once and is
//! always answered the same; a reservation resolves once.
//!
//! Rules:
//! 1. The definite answers to one request id's attempts (`Ok` results and
//!    decided refusals, compared by code and reason) are all the same.
//! 2. No attempt is refused `ALREADY_EXISTS`: every attempt of a request
//!    id carries the same body (the history reader enforces it), so the
//!    server must recognise the retry.
//! 3. No reservation id is returned to two different request ids; no
//!    part id belongs to two acknowledged cross-shard reservations, nor is
//!    also returned as an ordinary reservation.
//! 4. No reservation is resolved by two acknowledged confirms/releases.
//! 5. Each replica: reservations no acknowledged reserve returned (as a
//!    reservation or a part) must be explained by reserves of unknown
//!    outcome, each creating at most one, and by the parts of cross-shard
//!    reserves that were not acknowledged, each part at most one
//!    ([`Facts::unknown_reserves`]): per multiset of lines, their number ≤
//!    the number of such candidates with those lines.
//! 6. Each replica: no request id appears twice among its applied ids
//!    (a cross-shard call's parts are applied under derived ids,
//!    [`crate::parts::part_request_id`], so a part applied twice shows
//!    here too).
//! 7. Each replica, per row: `on_hand + sold` ≤ the sum of acknowledged
//!    deltas plus every *positive* delta of unknown outcome (the most the
//!    adjustments can have added).
//! 8. Each replica: a reserve whose owner is unique in the history made
//!    at most one reservation of that owner per shard (an ordinary reserve
//!    one, a cross-shard reserve one part per shard): no part applied
//!    twice.

use super::{Class, PerItem, Violation};
use crate::codes::CodeClass;
use crate::facts::{Facts, ReplicaView, Signature};
use crate::history::Op;
use crate::parts;
use crate::timeline::{AttemptEnd, LogicalOp, Outcome};
use std::collections::BTreeMap;

/// Rules 1 and 2 for one logical operation.
fn answers(op: &LogicalOp, found: &mut PerItem) {
    let Some(id) = op.op.request_id() else {
        return;
    };
    let item = format!("request {id}");
    let mut first: Option<(String, usize)> = None;
    for a in &op.attempts {
        let answer = match &a.end {
            AttemptEnd::Ok { result, .. } => format!(
                "ok {}",
                serde_json::to_string(result).unwrap_or_else(|e| e.to_string())
            ),
            AttemptEnd::Refused {
                code,
                reason,
                class: CodeClass::Decided,
                ..
            } => format!("refused {code} {reason}"),
            AttemptEnd::Refused {
                class: CodeClass::IdTaken,
                ..
            } => {
                found.add(
                    item.clone(),
                    format!(
                        "a retry with the same body was refused ALREADY_EXISTS (line {})",
                        a.line
                    ),
                );
                continue;
            }
            _ => continue,
        };
        match &first {
            None => first = Some((answer, a.line)),
            Some((seen, line)) if *seen != answer => found.add(
                item.clone(),
                format!(
                    "answered `{seen}` (line {line}) and `{answer}` (line {})",
                    a.line
                ),
            ),
            Some(_) => {}
        }
    }
}

/// Rules 3 and 4.
fn reservations(facts: &Facts<'_>, found: &mut PerItem) {
    for (id, reserves) in &facts.reserves_by_id {
        for &k in &reserves[1..] {
            found.add(
                format!("reservation {id}"),
                format!(
                    "returned to {} and to {}",
                    facts.op(reserves[0]).describe(),
                    facts.op(k).describe()
                ),
            );
        }
    }
    for (part, joined) in &facts.joined_by_part {
        for other in &joined[1..] {
            found.add(
                format!("reservation part {part}"),
                format!("a part of both {} and {other}", joined[0]),
            );
        }
        if let Some(&k) = facts.reserves_by_id.get(part).and_then(|ks| ks.first()) {
            found.add(
                format!("reservation part {part}"),
                format!(
                    "a part of {} and returned on its own to {}",
                    joined[0],
                    facts.op(k).describe()
                ),
            );
        }
    }
    let mut resolved: BTreeMap<&str, Vec<&LogicalOp>> = BTreeMap::new();
    for op in &facts.timeline.ops {
        if let (
            Op::Confirm { reservation_id, .. } | Op::Release { reservation_id, .. },
            Outcome::Ok { .. },
        ) = (&op.op, &op.outcome)
        {
            resolved.entry(reservation_id).or_default().push(op);
        }
    }
    for (id, ops) in resolved {
        for op in &ops[1..] {
            found.add(
                format!("reservation {id}"),
                format!(
                    "resolved by {} and again by {}",
                    ops[0].describe(),
                    op.describe()
                ),
            );
        }
    }
}

/// Rule 5 for one replica.
fn unexplained(
    facts: &Facts<'_>,
    replica: &ReplicaView<'_>,
    unknown: &BTreeMap<Signature, usize>,
    found: &mut PerItem,
) {
    for (sig, reservations) in facts.unexplained(replica) {
        let explained = unknown.get(&sig).copied().unwrap_or(0);
        if reservations.len() > explained {
            let ids: Vec<&str> = reservations.iter().map(|(id, _)| *id).collect();
            found.add(
                format!("reservations with lines {sig:?}"),
                format!(
                    "{} has {} no acknowledged reserve returned ({}), but only {explained} \
                     reserves of those lines have unknown outcome",
                    replica.node(),
                    ids.len(),
                    ids.join(", ")
                ),
            );
        }
    }
}

/// Rule 6 for one replica.
fn repeated_ids(replica: &ReplicaView<'_>, found: &mut PerItem) {
    let Some(ids) = &replica.state.applied_request_ids else {
        return;
    };
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for id in ids {
        *seen.entry(id).or_default() += 1;
    }
    for (id, n) in seen.into_iter().filter(|&(_, n)| n > 1) {
        found.add(
            format!("request {id}"),
            format!("{n} times among {}'s applied request ids", replica.node()),
        );
    }
}

/// Rule 7.
fn adjustments(facts: &Facts<'_>, found: &mut PerItem) {
    let bounds = facts.stock_bounds();
    for replica in &facts.replicas {
        for (row, r) in &replica.rows {
            let sold = replica.totals.get(row).map_or(0, |t| t.sold);
            let applied = r.on_hand + sold;
            let most = bounds.get(row).map_or(0, |b| b.upper());
            if applied > most {
                found.add(
                    format!("row {}/{}", row.0, row.1),
                    format!(
                        "{} shows {applied} units added (on_hand {} + sold {sold}), more than the \
                         {most} all sent adjustments could add",
                        replica.node(),
                        r.on_hand
                    ),
                );
            }
        }
    }
}

/// Rule 8 for one replica.
fn owned_twice(
    replica: &ReplicaView<'_>,
    owners: &BTreeMap<&str, Vec<&LogicalOp>>,
    found: &mut PerItem,
) {
    for (owner, reservations) in &replica.by_owner {
        let Some([op]) = owners.get(owner).map(Vec::as_slice) else {
            continue;
        };
        let mut by_shard: BTreeMap<Option<u32>, Vec<&str>> = BTreeMap::new();
        for r in reservations {
            by_shard
                .entry(parts::shard_of_id(&r.id))
                .or_default()
                .push(&r.id);
        }
        for (shard, ids) in by_shard.into_iter().filter(|(_, ids)| ids.len() > 1) {
            found.add(
                format!("reservations of {}", op.describe()),
                format!(
                    "{} has {} of its owner on shard {}: {}",
                    replica.node(),
                    ids.len(),
                    shard.map_or("?".into(), |s| s.to_string()),
                    ids.join(", ")
                ),
            );
        }
    }
}

/// Runs the rules.
pub fn check(facts: &Facts<'_>) -> Vec<Violation> {
    let mut found = PerItem::new(Class::Duplicate);
    for op in &facts.timeline.ops {
        answers(op, &mut found);
    }
    reservations(facts, &mut found);
    let unknown = facts.unknown_reserves();
    let mut owners: BTreeMap<&str, Vec<&LogicalOp>> = BTreeMap::new();
    for op in &facts.timeline.ops {
        if let Op::Reserve { owner: Some(o), .. } = &op.op {
            owners.entry(o).or_default().push(op);
        }
    }
    for replica in &facts.replicas {
        unexplained(facts, replica, &unknown, &mut found);
        repeated_ids(replica, &mut found);
        owned_twice(replica, &owners, &mut found);
    }
    adjustments(facts, &mut found);
    found.into_violations().collect()
}
