//! Convergence (design §1.5): every replica applied the same log, so every
//! replica holds the same state.
//!
//! Each replica is compared with the first: every row (`on_hand`, `held`,
//! policy), every reservation (state and lines), and every shard's applied
//! index and digest. One finding per differing item and replica. The
//! harness collects states only once all replicas applied the same index,
//! so a differing applied index is a finding too.

use super::{Class, Violation};
use crate::facts::{Facts, ReplicaView};
use crate::final_state::{FinalReservation, FinalRow};
use std::collections::{BTreeMap, BTreeSet};

/// Reports each key whose value differs between `a` and `b`, naming the
/// item with `name` and showing values with `show`.
fn compare<K: Ord, V: PartialEq>(
    a: (&str, &BTreeMap<K, V>),
    b: (&str, &BTreeMap<K, V>),
    name: impl Fn(&K) -> String,
    show: impl Fn(Option<&V>) -> String,
    out: &mut Vec<Violation>,
) {
    let keys: BTreeSet<&K> = a.1.keys().chain(b.1.keys()).collect();
    for key in keys {
        let (va, vb) = (a.1.get(key), b.1.get(key));
        if va != vb {
            out.push(Violation::new(
                Class::Diverged,
                format!(
                    "{}: {} has {}, {} has {}",
                    name(key),
                    a.0,
                    show(va),
                    b.0,
                    show(vb)
                ),
            ));
        }
    }
}

fn show_row(row: Option<&&FinalRow>) -> String {
    row.map_or("no such row".into(), |r| {
        format!(
            "on_hand={} held={} safety_stock={} backorder_allowance={}",
            r.on_hand, r.held, r.safety_stock, r.backorder_allowance
        )
    })
}

fn show_reservation(r: Option<&&FinalReservation>) -> String {
    r.map_or("no such reservation".into(), |r| {
        let lines: Vec<String> = r
            .lines
            .iter()
            .map(|l| {
                format!(
                    "{}/{} x{} ({} confirmed)",
                    l.sku, l.location, l.quantity, l.confirmed
                )
            })
            .collect();
        format!("{:?} [{}]", r.state, lines.join(", "))
    })
}

fn shards(replica: &ReplicaView<'_>) -> BTreeMap<u32, (u64, String)> {
    replica
        .state
        .shards
        .iter()
        .map(|s| (s.shard, (s.applied_index, s.digest.clone())))
        .collect()
}

/// Runs the rule.
pub fn check(facts: &Facts<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some((first, others)) = facts.replicas.split_first() else {
        return out;
    };
    for other in others {
        let (a, b) = (first.node(), other.node());
        compare(
            (a, &first.rows),
            (b, &other.rows),
            |(sku, location)| format!("row {sku}/{location}"),
            show_row,
            &mut out,
        );
        compare(
            (a, &first.reservations),
            (b, &other.reservations),
            |id| format!("reservation {id}"),
            show_reservation,
            &mut out,
        );
        compare(
            (a, &shards(first)),
            (b, &shards(other)),
            |shard| format!("shard {shard}"),
            |s| {
                s.map_or("no such shard".into(), |(i, d)| {
                    format!("applied index {i}, digest {d}")
                })
            },
            &mut out,
        );
    }
    out
}
