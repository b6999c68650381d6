//! No oversell (design §1.1) and conservation (§1.2).
//!
//! Rules, per row `(sku, location)` with `allowance` its backorder
//! allowance and `added_max` the most units client adjustments can have
//! added (acknowledged deltas plus positive deltas of unknown outcome):
//!
//! 1. *History:* units sold by acknowledged confirms ≤ `added_max +
//!    allowance`. Sold units left `on_hand` for good, and `on_hand +
//!    allowance` never drops below `held ≥ 0`, so no run can sell more.
//! 2. *Each replica:* `held` = the sum of its pending reservations' lines
//!    on the row (conservation); `0 ≤ held ≤ on_hand + allowance`.
//! 3. *Each replica:* `sold + held ≤ added_max + allowance`, where `sold` is
//!    what its confirmed reservations sold from the row: never more
//!    promised and sold than ever received, even if `on_hand` itself were
//!    inflated. A row no adjustment in the history touched has
//!    `added_max = 0`: the history must record every adjustment since the
//!    cluster was empty.

use super::{Class, PerItem, Violation};
use crate::facts::{Facts, ReplicaView, RowKey, StockBounds};
use std::collections::{BTreeMap, BTreeSet};

fn row_name(row: &RowKey) -> String {
    format!("row {}/{}", row.0, row.1)
}

/// Rule 1: what acknowledged confirms sold against what was ever added.
fn acknowledged(facts: &Facts<'_>, bounds: &BTreeMap<RowKey, StockBounds>, found: &mut PerItem) {
    for (row, sold) in facts.acked_sold() {
        let added_max = bounds.get(&row).map_or(0, |b| b.upper());
        let (allowance, _) = facts.policy(&row);
        if sold > added_max + allowance {
            found.add(
                row_name(&row),
                format!(
                    "acknowledged confirms sold {sold} units, but adjustments added at most \
                     {added_max} and the backorder allowance is {allowance}"
                ),
            );
        }
    }
}

/// Rules 2 and 3 on one replica.
fn replica(replica: &ReplicaView<'_>, bounds: &BTreeMap<RowKey, StockBounds>, found: &mut PerItem) {
    let node = replica.node();
    let rows: BTreeSet<&RowKey> = replica.rows.keys().chain(replica.totals.keys()).collect();
    for row in rows {
        let (on_hand, held, allowance) = replica
            .rows
            .get(row)
            .map_or((0, 0, 0), |r| (r.on_hand, r.held, r.backorder_allowance));
        let totals = replica.totals.get(row).copied().unwrap_or_default();
        let name = row_name(row);
        if held != totals.pending {
            found.add(
                name.clone(),
                format!(
                    "{node} has held={held} but its pending reservations hold {} (conservation)",
                    totals.pending
                ),
            );
        }
        if held < 0 || held > on_hand + allowance {
            found.add(
                name.clone(),
                format!("{node} has held={held} with on_hand={on_hand} and allowance={allowance}"),
            );
        }
        let added_max = bounds.get(row).map_or(0, |b| b.upper());
        if totals.sold + held > added_max + allowance {
            found.add(
                name,
                format!(
                    "{node} sold {} and holds {held} units, more than the at most \
                     {added_max} units adjustments added plus allowance {allowance}",
                    totals.sold
                ),
            );
        }
    }
}

/// Runs the rules.
pub fn check(facts: &Facts<'_>) -> Vec<Violation> {
    let bounds = facts.stock_bounds();
    let mut found = PerItem::new(Class::Oversell);
    acknowledged(facts, &bounds, &mut found);
    for r in &facts.replicas {
        replica(r, &bounds, &mut found);
    }
    found.into_violations().collect()
}
