//! `Reserve`: plan an allocation, check it, then commit it.
//!
//! Planning only reads state; every refusal happens before the first write,
//! which is how a reserve "either fully succeeds or changes nothing".
//!
//! Allocation policy (design §3) for lines without a fixed location:
//! 1. one location that covers every such line in full, if any;
//! 2. otherwise, per line, the best location that covers the line in full;
//! 3. otherwise, if `allow_split`, the line's units from several locations.
//!
//! "Best" ranks locations by: in the request's region first, then lower
//! `priority`, then lower location id (so ties break the same everywhere).

use crate::command::{FillPolicy, Reserve};
use crate::engine::Engine;
use crate::event::Event;
use crate::ids::{LocationId, RowId};
use crate::outcome::{Outcome, Refusal, Success};
use crate::reservation::{Line, Reservation};
use smallvec::SmallVec;

/// Units of one row a reserve intends to hold.
#[derive(Clone, Copy, Debug)]
struct Planned {
    row: RowId,
    request_line: u16,
    quantity: i64,
}

type Plan = SmallVec<[Planned; 4]>;

/// Units of `row` already planned by earlier lines of the same request.
fn planned_on(plan: &Plan, row: RowId) -> i64 {
    plan.iter()
        .filter(|p| p.row == row)
        .map(|p| p.quantity)
        .sum()
}

impl Engine {
    pub(crate) fn reserve(&mut self, now_ms: u64, r: &Reserve, events: &mut Vec<Event>) -> Outcome {
        let mut plan = Plan::new();
        self.plan_reserve(r, &mut plan)?;
        self.check_customer_limits(r, &plan)?;
        Ok(self.commit_reserve(now_ms, r, &plan, events))
    }

    fn plan_reserve(&self, r: &Reserve, plan: &mut Plan) -> Result<(), Refusal> {
        let mut fixed: SmallVec<[(usize, LocationId); 4]> = SmallVec::new();
        let mut auto: SmallVec<[usize; 4]> = SmallVec::new();
        for (i, line) in r.lines.iter().enumerate() {
            match &line.location {
                Some(name) => {
                    let loc = self.locations.get(name).ok_or(Refusal::UnknownLocation {
                        line: Some(i as u16),
                    })?;
                    fixed.push((i, loc));
                }
                None => auto.push(i),
            }
        }
        // In partial mode a short line is skipped; remember why, in case
        // nothing at all can be held.
        let mut first_shortfall = None;
        for &(i, loc) in &fixed {
            self.plan_fixed_line(r, i, loc, plan)
                .or_else(|e| keep_if_partial(r, e, &mut first_shortfall))?;
        }
        if !auto.is_empty() {
            if let Some(loc) = self.single_covering_location(r, &auto, plan) {
                for &i in &auto {
                    let row = self
                        .row_at(&r.lines[i].sku, loc)
                        .expect("covering row exists");
                    plan.push(Planned {
                        row,
                        request_line: i as u16,
                        quantity: r.lines[i].quantity,
                    });
                }
            } else {
                for &i in &auto {
                    self.plan_auto_line(r, i, plan)
                        .or_else(|e| keep_if_partial(r, e, &mut first_shortfall))?;
                }
            }
        }
        match (plan.is_empty(), first_shortfall) {
            (true, Some(refusal)) => Err(refusal),
            _ => Ok(()),
        }
    }

    fn row_at(&self, sku: &str, loc: LocationId) -> Option<RowId> {
        let sku = self.skus.get(sku)?;
        self.rows.find(sku, loc)
    }

    fn plan_fixed_line(
        &self,
        r: &Reserve,
        i: usize,
        loc: LocationId,
        plan: &mut Plan,
    ) -> Result<(), Refusal> {
        let want = r.lines[i].quantity;
        let row = self.row_at(&r.lines[i].sku, loc);
        let available = row
            .map(|row| self.rows.row(row).available() - planned_on(plan, row))
            .unwrap_or(0);
        let take = match r.policy {
            FillPolicy::AllOrNothing if available >= want => want,
            FillPolicy::Partial if available > 0 => available.min(want),
            _ => 0,
        };
        // All-or-nothing takes `want` or nothing, so `take == 0` is the one
        // refusal for both policies.
        if take == 0 {
            return Err(Refusal::OutOfStock {
                line: i as u16,
                location: Some(loc),
                requested: want as u64,
                available,
            });
        }
        plan.push(Planned {
            row: row.expect("positive availability implies a row"),
            request_line: i as u16,
            quantity: take,
        });
        Ok(())
    }

    /// Allocation rank of a location: region match, then priority, then id.
    fn rank(&self, r: &Reserve, loc: LocationId) -> (bool, u32, LocationId) {
        let l = self.locations.location(loc);
        let far = match &r.region {
            Some(region) => *l.region != **region,
            None => false,
        };
        (far, l.priority, loc)
    }

    /// Policy step 1: the best location holding every automatic line in full.
    fn single_covering_location(
        &self,
        r: &Reserve,
        auto: &[usize],
        plan: &Plan,
    ) -> Option<LocationId> {
        let first_sku = self.skus.get(&r.lines[auto[0]].sku)?;
        let mut best: Option<LocationId> = None;
        for candidate in self.rows.rows_of(&self.skus, first_sku) {
            let loc = self.rows.row(candidate).location;
            if best.is_some_and(|b| self.rank(r, b) <= self.rank(r, loc)) {
                continue;
            }
            if self.covers(r, auto, plan, loc) {
                best = Some(loc);
            }
        }
        best
    }

    /// Whether `loc` can hold every automatic line in full, counting lines
    /// that share a row together.
    fn covers(&self, r: &Reserve, auto: &[usize], plan: &Plan, loc: LocationId) -> bool {
        let mut need: SmallVec<[(RowId, i64); 4]> = SmallVec::new();
        for &i in auto {
            let Some(row) = self.row_at(&r.lines[i].sku, loc) else {
                return false;
            };
            match need.iter_mut().find(|(r, _)| *r == row) {
                Some((_, n)) => *n += r.lines[i].quantity,
                None => need.push((row, r.lines[i].quantity)),
            }
        }
        need.iter()
            .all(|&(row, n)| self.rows.row(row).available() - planned_on(plan, row) >= n)
    }

    /// Policy steps 2 and 3 for one line.
    fn plan_auto_line(&self, r: &Reserve, i: usize, plan: &mut Plan) -> Result<(), Refusal> {
        let want = r.lines[i].quantity;
        let mut candidates: SmallVec<[(RowId, i64); 8]> = match self.skus.get(&r.lines[i].sku) {
            Some(sku) => self
                .rows
                .rows_of(&self.skus, sku)
                .map(|row| (row, self.rows.row(row).available() - planned_on(plan, row)))
                .filter(|&(_, available)| available > 0)
                .collect(),
            None => SmallVec::new(),
        };
        candidates.sort_by_key(|&(row, _)| self.rank(r, self.rows.row(row).location));
        let line = i as u16;
        if let Some(&(row, _)) = candidates.iter().find(|&&(_, a)| a >= want) {
            plan.push(Planned {
                row,
                request_line: line,
                quantity: want,
            });
            return Ok(());
        }
        let total: i64 = candidates.iter().map(|&(_, a)| a).sum();
        // The most available; among equals the best-ranked (`max_by_key`
        // would return the last, i.e. worst-ranked, of equal maxima).
        let best = candidates
            .iter()
            .min_by_key(|&&(_, a)| std::cmp::Reverse(a))
            .copied();
        let shortfall = Refusal::OutOfStock {
            line,
            location: best.map(|(row, _)| self.rows.row(row).location),
            requested: want as u64,
            available: if r.allow_split {
                total
            } else {
                best.map_or(0, |(_, a)| a)
            },
        };
        if r.allow_split && (total >= want || r.policy == FillPolicy::Partial) && total > 0 {
            let mut left = want;
            for &(row, available) in &candidates {
                let take = available.min(left);
                plan.push(Planned {
                    row,
                    request_line: line,
                    quantity: take,
                });
                left -= take;
                if left == 0 {
                    break;
                }
            }
            return if left == 0 || r.policy == FillPolicy::Partial {
                Ok(())
            } else {
                Err(shortfall)
            };
        }
        match (r.policy, best) {
            (FillPolicy::Partial, Some((row, available))) => {
                plan.push(Planned {
                    row,
                    request_line: line,
                    quantity: available,
                });
                Ok(())
            }
            _ => Err(shortfall),
        }
    }

    fn check_customer_limits(&self, r: &Reserve, plan: &Plan) -> Result<(), Refusal> {
        if self.limits.is_empty() {
            return Ok(());
        }
        for (k, p) in plan.iter().enumerate() {
            let sku = self.rows.row(p.row).sku;
            // Check each limited SKU once, at its first planned line.
            if plan[..k].iter().any(|q| self.rows.row(q.row).sku == sku) {
                continue;
            }
            let Some(active) = self.limits.limit_of(sku) else {
                continue;
            };
            let requested: i64 = plan
                .iter()
                .filter(|q| self.rows.row(q.row).sku == sku)
                .map(|q| q.quantity)
                .sum();
            let used = self.limits.used(sku, &r.customer);
            if used + requested as u64 > active.limit.max_units {
                return Err(Refusal::LimitExceeded {
                    line: p.request_line,
                    limit: active.limit.max_units,
                    used,
                    requested: requested as u64,
                });
            }
        }
        Ok(())
    }

    fn commit_reserve(
        &mut self,
        now_ms: u64,
        r: &Reserve,
        plan: &Plan,
        events: &mut Vec<Event>,
    ) -> Success {
        let mut lines: SmallVec<[Line; 1]> = SmallVec::with_capacity(plan.len());
        for p in plan {
            let row = self.rows.row_mut(p.row);
            row.held += p.quantity;
            // Design §1.1, checked in release builds too: planning guaranteed
            // it, and a node that breaks it must stop, not serve.
            assert!(row.held <= row.supply(), "oversell on row {:?}", p.row);
            let available_after = row.available();
            let sku = row.sku;
            let limit_epoch = match self.limits.limit_of(sku) {
                Some(active) => {
                    self.limits.charge(sku, &r.customer, p.quantity as u64);
                    active.epoch
                }
                None => 0,
            };
            lines.push(Line {
                row: p.row,
                request_line: p.request_line,
                quantity: p.quantity as u32,
                confirmed: 0,
                available_after,
                limit_epoch,
            });
            self.touch(p.row);
        }
        let expires_at_ms = now_ms + r.ttl_ms;
        let reservation = self.reservations.insert(Reservation::new(
            &r.owner,
            &r.customer,
            lines,
            now_ms,
            expires_at_ms,
        ));
        self.expiry.insert(expires_at_ms, reservation);
        self.pending += 1;
        let res = self.reservations.get(reservation).expect("just inserted");
        events.extend(res.lines.iter().map(|l| Event::Held {
            reservation,
            row: l.row,
            quantity: l.quantity as u64,
            available_after: l.available_after,
        }));
        Success::Reserved { reservation }
    }
}

/// In partial mode a short line is skipped (its refusal kept in case no line
/// can be held at all); all-or-nothing refuses at the first short line.
fn keep_if_partial(r: &Reserve, e: Refusal, first: &mut Option<Refusal>) -> Result<(), Refusal> {
    match (r.policy, e) {
        (FillPolicy::Partial, e @ Refusal::OutOfStock { .. }) => {
            first.get_or_insert(e);
            Ok(())
        }
        (_, e) => Err(e),
    }
}
