//! Cross-shard reservations as the checker sees them: which parts a
//! reserve or a joined reservation id stands for, and under which request
//! ids the server applied each part.
//!
//! The server (`server/src/cross_shard.rs`, `server/src/ids.rs`) holds a
//! reserve whose lines fall in several shards as one ordinary reservation
//! per shard, its *parts*. The node that received the call sends each part
//! to its shard under a request id derived from the client's
//! ([`part_request_id`]), answers the part ids joined with `+` in shard
//! order (`"0-4+5-17"`), and the allocations part after part. Confirm,
//! Release and Extend of a joined id act on every part, again under derived
//! ids; a refused all-or-nothing reserve first releases the parts it held
//! (a *compensating* release, with ids of its own). So the final state
//! holds parts, never a joined reservation, and the checks map the
//! history's operations onto them with this module.
//!
//! The mapping is exact, not inferred: the harness records the shard of
//! every line of a cross-shard reserve ([`crate::history::ReserveLine`]'s
//! `shard`), and [`part_request_id`] is the server's derivation, byte for
//! byte (a test pins values the server's own function gives).

use crate::history::{Allocation, Op, ReserveLine};
use std::collections::BTreeMap;
use std::ops::Range;
use xxhash_rust::xxh3::xxh3_128;

/// Joins the part ids of a cross-shard reservation (server `ids.rs`).
pub const PART_SEPARATOR: char = '+';

/// Whether `reservation_id` is a joined id (it has parts).
pub fn is_joined(reservation_id: &str) -> bool {
    reservation_id.contains(PART_SEPARATOR)
}

/// The part ids of a reservation id, in shard order: the id itself for an
/// ordinary one.
pub fn part_ids(reservation_id: &str) -> Vec<&str> {
    reservation_id.split(PART_SEPARATOR).collect()
}

/// The shard an ordinary (part) reservation id names: `"<shard>-<id>"`.
pub fn shard_of_id(part_id: &str) -> Option<u32> {
    part_id.split_once('-')?.0.parse().ok()
}

/// The shards of a joined id's parts, in order (`None` if one does not
/// parse).
pub fn shards_of_id(reservation_id: &str) -> Option<Vec<u32>> {
    part_ids(reservation_id)
        .into_iter()
        .map(shard_of_id)
        .collect()
}

/// What a request derived for one part does; the discriminants are the
/// server's (`ids::PartOp as u8`), which the derivation hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartOp {
    /// The part's share of a Reserve.
    Reserve = 0,
    /// The release of a held part because another part was refused.
    Compensate = 1,
    /// The part's share of a Confirm.
    Confirm = 2,
    /// The part's share of a Release.
    Release = 3,
    /// The part's share of an Extend.
    Extend = 4,
}

/// The request id the server applies the part on `shard` of a cross-shard
/// call under, when the client's request id is `base` and the call's parts
/// are on `shards` (server `ids::part_request_id`, byte for byte): the
/// checker needs it to find parts among a replica's applied request ids.
pub fn part_request_id(base: &str, op: PartOp, shard: u32, shards: &[u32]) -> String {
    let mut bytes = Vec::with_capacity(32 + base.len() + 4 * shards.len());
    bytes.extend_from_slice(b"holdfast/part/1");
    bytes.push(op as u8);
    bytes.extend_from_slice(&(base.len() as u64).to_le_bytes());
    bytes.extend_from_slice(base.as_bytes());
    bytes.extend_from_slice(&shard.to_le_bytes());
    bytes.extend_from_slice(&(shards.len() as u64).to_le_bytes());
    for s in shards {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    format!("p-{:032x}", xxh3_128(&bytes))
}

/// One part of a cross-shard reserve: the request's lines on one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedPart {
    /// The shard.
    pub shard: u32,
    /// Indexes of the request's lines on it, ascending (the part's own
    /// lines, and its allocations, in this order).
    pub lines: Vec<usize>,
}

/// The parts the server makes of a reserve, as its `plan` does: lines
/// grouped by shard, in shard order. `None` unless every line carries its
/// shard and they name at least two (an ordinary reserve).
pub fn plan(lines: &[ReserveLine]) -> Option<Vec<PlannedPart>> {
    let mut by_shard: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        by_shard.entry(line.shard?).or_default().push(i);
    }
    (by_shard.len() >= 2).then(|| {
        by_shard
            .into_iter()
            .map(|(shard, lines)| PlannedPart { shard, lines })
            .collect()
    })
}

/// The parts of a reserve operation, if it is cross-shard.
pub fn plan_of(op: &Op) -> Option<Vec<PlannedPart>> {
    match op {
        Op::Reserve { lines, .. } => plan(lines),
        _ => None,
    }
}

/// The shards of a plan, in order.
pub fn shards(plan: &[PlannedPart]) -> Vec<u32> {
    plan.iter().map(|p| p.shard).collect()
}

/// The request lines of one planned part.
pub fn part_lines(lines: &[ReserveLine], part: &PlannedPart) -> Vec<ReserveLine> {
    part.lines.iter().map(|&i| lines[i].clone()).collect()
}

/// One part of an acknowledged cross-shard reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldPart<'a> {
    /// Its own id (`"<shard>-<engine id>"`).
    pub id: &'a str,
    /// Its shard.
    pub shard: u32,
    /// Its allocations' positions in the joined answer (and in a
    /// confirm's `quantities`).
    pub allocations: Range<usize>,
}

/// The parts of an acknowledged cross-shard reserve: the answered joined
/// id split, each with its slice of the answered allocations (one per line
/// of its planned part, part after part). `None` if the answer does not
/// fit the plan (then the checks fall back to the whole reservation).
pub fn held_parts<'a>(
    plan: &[PlannedPart],
    reservation_id: &'a str,
    allocations: &[Allocation],
) -> Option<Vec<HeldPart<'a>>> {
    let ids = part_ids(reservation_id);
    if ids.len() != plan.len() {
        return None;
    }
    let mut parts = Vec::with_capacity(plan.len());
    let mut start = 0;
    for (id, planned) in ids.into_iter().zip(plan) {
        if shard_of_id(id) != Some(planned.shard) {
            return None;
        }
        let end = start + planned.lines.len();
        parts.push(HeldPart {
            id,
            shard: planned.shard,
            allocations: start..end,
        });
        start = end;
    }
    (start == allocations.len()).then_some(parts)
}

/// The request ids a replica applies a mutating operation under: the
/// client's own for an ordinary one; for a cross-shard reserve or a call on
/// a joined id, one derived id per part, with the part's shard (a
/// compensating release of a refused reserve is not among them: it is
/// applied only if the reserve was refused).
pub fn applied_ids(op: &Op) -> Vec<(Option<u32>, String)> {
    let Some(base) = op.request_id() else {
        return Vec::new();
    };
    let (part_op, shards) = match op {
        Op::Reserve { .. } => match plan_of(op) {
            Some(plan) => (PartOp::Reserve, shards(&plan)),
            None => return vec![(None, base.to_string())],
        },
        Op::Confirm { reservation_id, .. }
        | Op::Release { reservation_id, .. }
        | Op::Extend { reservation_id, .. } => {
            let part_op = match op {
                Op::Confirm { .. } => PartOp::Confirm,
                Op::Release { .. } => PartOp::Release,
                _ => PartOp::Extend,
            };
            match shards_of_id(reservation_id) {
                Some(shards) if is_joined(reservation_id) => (part_op, shards),
                _ => return vec![(None, base.to_string())],
            }
        }
        Op::AdjustStock { .. } | Op::ReadAvailability { .. } => {
            return vec![(None, base.to_string())]
        }
    };
    shards
        .iter()
        .map(|&s| (Some(s), part_request_id(base, part_op, s, &shards)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, shard: Option<u32>) -> ReserveLine {
        ReserveLine {
            sku: sku.into(),
            location: "L1".into(),
            quantity: 1,
            shard,
        }
    }

    /// The values `server/src/ids.rs` pins for its own `part_request_id`
    /// (test `part_request_ids_are_pinned`): if either side changes, the
    /// checker would no longer find the parts a replica applied.
    #[test]
    fn part_request_ids_are_the_servers() {
        assert_eq!(
            part_request_id("r-1", PartOp::Reserve, 2, &[2, 5]),
            "p-caf29554a5aeeba70d61d980ceaf6ace"
        );
        assert_eq!(
            part_request_id("c-7-p3-12", PartOp::Confirm, 5, &[0, 5]),
            "p-5abc40b9f56e4ce2d5ad5641273af9aa"
        );
        assert_eq!(
            part_request_id("r-1", PartOp::Compensate, 5, &[2, 5]),
            "p-b4e5ba9048125455d8657ad804352720"
        );
    }

    #[test]
    fn lines_are_planned_by_shard_in_shard_order() {
        let lines = [line("a", Some(3)), line("b", Some(0)), line("c", Some(3))];
        let plan = plan(&lines).expect("two shards");
        assert_eq!(
            plan,
            [
                PlannedPart {
                    shard: 0,
                    lines: vec![1]
                },
                PlannedPart {
                    shard: 3,
                    lines: vec![0, 2]
                }
            ]
        );
        assert_eq!(super::plan(&[line("a", Some(1)), line("b", Some(1))]), None);
        assert_eq!(super::plan(&[line("a", Some(1)), line("b", None)]), None);
    }

    #[test]
    fn joined_answers_split_part_after_part() {
        let plan = plan(&[line("a", Some(3)), line("b", Some(0)), line("c", Some(3))]).unwrap();
        let allocation = || Allocation {
            sku: "x".into(),
            location: "L1".into(),
            quantity: 1,
            available_after: None,
        };
        let three = vec![allocation(), allocation(), allocation()];
        let parts = held_parts(&plan, "0-4+3-9", &three).expect("fits");
        assert_eq!(
            parts,
            [
                HeldPart {
                    id: "0-4",
                    shard: 0,
                    allocations: 0..1
                },
                HeldPart {
                    id: "3-9",
                    shard: 3,
                    allocations: 1..3
                }
            ]
        );
        assert_eq!(held_parts(&plan, "3-9+0-4", &three), None);
        assert_eq!(held_parts(&plan, "0-4", &three), None);
        assert_eq!(held_parts(&plan, "0-4+3-9", &three[..2]), None);
        assert_eq!(shards_of_id("0-4+3-9"), Some(vec![0, 3]));
        assert!(is_joined("0-4+3-9") && !is_joined("0-4"));
    }

    #[test]
    fn applied_ids_are_per_part_for_cross_shard_calls() {
        let reserve = Op::Reserve {
            request_id: "r-1".into(),
            lines: vec![line("a", Some(5)), line("b", Some(2))],
            owner: None,
            shard: None,
            ttl_ms: None,
        };
        assert_eq!(
            applied_ids(&reserve),
            [
                (Some(2), part_request_id("r-1", PartOp::Reserve, 2, &[2, 5])),
                (Some(5), part_request_id("r-1", PartOp::Reserve, 5, &[2, 5]))
            ]
        );
        let release = Op::Release {
            request_id: "x-1".into(),
            reservation_id: "2-1+5-3".into(),
        };
        assert_eq!(
            applied_ids(&release)[1],
            (Some(5), part_request_id("x-1", PartOp::Release, 5, &[2, 5]))
        );
        let plain = Op::Release {
            request_id: "x-2".into(),
            reservation_id: "2-1".into(),
        };
        assert_eq!(applied_ids(&plain), [(None, "x-2".to_string())]);
    }
}
