//! Model-based property test of the engine (design §1).
//!
//! `Model` below is a second, deliberately naive implementation of the
//! ledger's semantics, written from the specification rather than from the
//! engine: plain vectors, linear scans, no interning tricks. Random command
//! sequences (with retries, bad input, clock jumps backwards and forwards)
//! are applied to both, and after every step the test checks:
//!
//! - the engine's `Outcome` equals the model's;
//! - the engine's rows, locations, reservations, customer counts and time
//!   equal the model's;
//! - the promises of design §1 (no oversell, conservation, at most once) via
//!   `Engine::check_invariants` and via an independent check over the public
//!   read API;
//!
//! and at the end of each case that snapshot/restore and a replica applying
//! the same log reach the same `state_digest` (§1.5), also after the restored
//! engine continues with more commands.
//!
//! A second, smaller property uses a tiny idempotency table (entries get
//! forgotten) and checks only the invariants, restore and replica equality.

use holdfast_engine::{
    AdjustStock, Command, CommandKind, Confirm, CustomerLimit, DedupConfig, Engine, EngineConfig,
    Event, ExpireUpTo, Extend, FillPolicy, InvalidArgument, LimitChange, LocationId, Outcome,
    Refusal, Release, RequestId, Reservation, ReservationId, ReservationState, Reserve,
    ReserveLine, RowId, SetPolicy, SkuId, Stamp, Success, UpsertLocation,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, HashMap};

// ===========================================================================
// The reference model
// ===========================================================================

const STOCK_MAX: i64 = 1_000_000_000_000;
const LINE_QTY_MAX: i64 = 1_000_000;
const TTL_MIN: u64 = 1_000;
const TTL_MAX: u64 = 86_400_000;

#[derive(Clone, Debug)]
struct MLoc {
    name: String,
    region: String,
    priority: u32,
}

#[derive(Clone, Debug)]
struct MRow {
    sku: usize,
    loc: usize,
    on_hand: i64,
    held: i64,
    safety: i64,
    backorder: i64,
}

impl MRow {
    fn available(&self) -> i64 {
        self.on_hand + self.backorder - self.safety - self.held
    }
}

#[derive(Clone, Debug)]
struct MLine {
    row: usize,
    request_line: u16,
    quantity: i64,
    confirmed: i64,
    available_after: i64,
    /// The customer-limit epoch the units were counted under, if any.
    epoch: Option<u64>,
}

#[derive(Clone, Debug)]
struct MRes {
    id: ReservationId,
    owner: String,
    customer: String,
    lines: Vec<MLine>,
    created_at_ms: u64,
    expires_at_ms: u64,
    state: ReservationState,
}

#[derive(Clone, Debug)]
struct MLimit {
    max_units: u64,
    campaign: u32,
    /// A fresh number each time counting starts over.
    epoch: u64,
    used: BTreeMap<String, u64>,
}

/// The ledger, the slow and obvious way. Assumes nothing is ever forgotten
/// (infinite dedup retention), as configured for the model property.
#[derive(Clone, Debug, Default)]
struct Model {
    now: u64,
    /// SKU names in interning order (index = `SkuId`).
    skus: Vec<String>,
    /// Locations in creation order (index = `LocationId`).
    locs: Vec<MLoc>,
    /// Rows in creation order (index = `RowId`).
    rows: Vec<MRow>,
    /// Reservations in creation order.
    res: Vec<MRes>,
    by_id: HashMap<ReservationId, usize>,
    limits: HashMap<usize, MLimit>,
    epochs: u64,
    /// Request id -> (body, outcome).
    remembered: HashMap<u128, (CommandKind, Outcome)>,
}

fn invalid(field: &'static str, line: Option<usize>) -> Refusal {
    // `why` is prose: the comparison (`same_outcome`) ignores it and checks
    // the field and line only.
    Refusal::InvalidArgument(InvalidArgument {
        field,
        line: line.map(|l| l as u16),
        why: "",
    })
}

fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.bytes().any(|b| b.is_ascii_control())
}

fn check_name(
    s: &str,
    max: usize,
    field: &'static str,
    line: Option<usize>,
) -> Result<(), Refusal> {
    if name_ok(s, max) {
        Ok(())
    } else {
        Err(invalid(field, line))
    }
}

fn check_ttl(ttl: u64) -> Result<(), Refusal> {
    if (TTL_MIN..=TTL_MAX).contains(&ttl) {
        Ok(())
    } else {
        Err(invalid("ttl_ms", None))
    }
}

/// Field validation, from the limits (engine/src/limits.rs) and the API's
/// field names.
fn validate(kind: &CommandKind) -> Result<(), Refusal> {
    match kind {
        CommandKind::Reserve(r) => {
            check_name(&r.owner, 128, "owner_id", None)?;
            check_name(&r.customer, 128, "customer_id", None)?;
            if let Some(region) = &r.region {
                check_name(region, 64, "region", None)?;
            }
            if r.lines.is_empty() || r.lines.len() > 100 {
                return Err(invalid("lines", None));
            }
            for (i, l) in r.lines.iter().enumerate() {
                check_name(&l.sku, 256, "sku", Some(i))?;
                if let Some(loc) = &l.location {
                    check_name(loc, 64, "location", Some(i))?;
                }
                if !(1..=LINE_QTY_MAX).contains(&l.quantity) {
                    return Err(invalid("quantity", Some(i)));
                }
            }
            check_ttl(r.ttl_ms)
        }
        CommandKind::Confirm(c) => {
            if let Some(q) = &c.quantities {
                if q.is_empty() || q.len() > 100 * 100 {
                    return Err(invalid("quantities", None));
                }
                if let Some(i) = q.iter().position(|v| !(0..=LINE_QTY_MAX).contains(v)) {
                    return Err(invalid("quantities", Some(i)));
                }
                if q.iter().all(|&v| v == 0) {
                    return Err(invalid("quantities", None));
                }
            }
            Ok(())
        }
        CommandKind::Release(_) | CommandKind::ExpireUpTo(_) => Ok(()),
        CommandKind::Extend(e) => check_ttl(e.ttl_ms),
        CommandKind::AdjustStock(a) => {
            check_name(&a.sku, 256, "sku", None)?;
            check_name(&a.location, 64, "location", None)?;
            if a.delta.unsigned_abs() > STOCK_MAX as u64 {
                return Err(invalid("delta", None));
            }
            if a.expected_on_hand
                .is_some_and(|e| e.unsigned_abs() > STOCK_MAX as u64)
            {
                return Err(invalid("expected_on_hand", None));
            }
            Ok(())
        }
        CommandKind::UpsertLocation(u) => {
            check_name(&u.location, 64, "location", None)?;
            check_name(&u.region, 64, "region", None)
        }
        CommandKind::SetPolicy(p) => {
            check_name(&p.sku, 256, "sku", None)?;
            if let Some(loc) = &p.location {
                check_name(loc, 64, "location", None)?;
            }
            let row_fields = p.safety_stock.is_some() || p.backorder_allowance.is_some();
            if row_fields && p.location.is_none() {
                return Err(invalid("location", None));
            }
            if !row_fields && p.customer_limit == LimitChange::Keep {
                return Err(invalid("policy", None));
            }
            if p.safety_stock
                .is_some_and(|v| !(0..=STOCK_MAX).contains(&v))
            {
                return Err(invalid("safety_stock", None));
            }
            if p.backorder_allowance
                .is_some_and(|v| !(0..=STOCK_MAX).contains(&v))
            {
                return Err(invalid("backorder_allowance", None));
            }
            if let LimitChange::Set(l) = p.customer_limit {
                if !(1..=1_000_000_000).contains(&l.max_units) {
                    return Err(invalid("customer_limit.max_units", None));
                }
            }
            Ok(())
        }
    }
}

/// One planned hold: (row, units, request line).
type Planned = (usize, i64, usize);

impl Model {
    fn sku_id(&self, name: &str) -> Option<usize> {
        self.skus.iter().position(|s| s == name)
    }

    fn loc_id(&self, name: &str) -> Option<usize> {
        self.locs.iter().position(|l| l.name == name)
    }

    fn row_of(&self, sku: &str, loc: usize) -> Option<usize> {
        let sku = self.sku_id(sku)?;
        self.rows.iter().position(|r| r.sku == sku && r.loc == loc)
    }

    fn intern(&mut self, sku: &str) -> usize {
        match self.sku_id(sku) {
            Some(s) => s,
            None => {
                self.skus.push(sku.to_string());
                self.skus.len() - 1
            }
        }
    }

    fn row_or_insert(&mut self, sku: &str, loc: usize) -> usize {
        let sku = self.intern(sku);
        match self.rows.iter().position(|r| r.sku == sku && r.loc == loc) {
            Some(r) => r,
            None => {
                self.rows.push(MRow {
                    sku,
                    loc,
                    on_hand: 0,
                    held: 0,
                    safety: 0,
                    backorder: 0,
                });
                self.rows.len() - 1
            }
        }
    }

    /// What `customer` has used of `sku`'s current limit (0 when unlimited).
    fn usage(&self, sku: &str, customer: &str) -> u64 {
        self.sku_id(sku)
            .and_then(|s| self.limits.get(&s))
            .and_then(|l| l.used.get(customer).copied())
            .unwrap_or(0)
    }

    /// Gives the units of reservation `k` back to their rows, confirming
    /// `confirm[i]` units of line `i` (none when `confirm` is `None`).
    /// Returns (units confirmed, units released).
    fn resolve(
        &mut self,
        k: usize,
        confirm: Option<&[i64]>,
        state: ReservationState,
    ) -> (u64, u64) {
        let customer = self.res[k].customer.clone();
        let (mut confirmed, mut released) = (0u64, 0u64);
        for i in 0..self.res[k].lines.len() {
            let line = self.res[k].lines[i].clone();
            let conf = confirm.map_or(0, |c| c[i]);
            let row = &mut self.rows[line.row];
            row.held -= line.quantity;
            row.on_hand -= conf;
            let sku = row.sku;
            let back = line.quantity - conf;
            // Released units leave the customer's count if they were counted
            // under the limit that is current now; confirmed ones stay.
            if let (Some(limit), Some(epoch)) = (self.limits.get_mut(&sku), line.epoch) {
                if limit.epoch == epoch {
                    let used = limit.used.entry(customer.clone()).or_default();
                    *used -= back as u64;
                }
            }
            self.res[k].lines[i].confirmed = conf;
            confirmed += conf as u64;
            released += back as u64;
        }
        self.res[k].state = state;
        (confirmed, released)
    }

    fn expire_due(&mut self) -> (u64, u64) {
        let mut due: Vec<(u64, ReservationId, usize)> = self
            .res
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == ReservationState::Pending && r.expires_at_ms <= self.now)
            .map(|(k, r)| (r.expires_at_ms, r.id, k))
            .collect();
        due.sort();
        let (mut n, mut units) = (0, 0);
        for (_, _, k) in due {
            let (_, released) = self.resolve(k, None, ReservationState::Expired);
            n += 1;
            units += released;
        }
        (n, units)
    }

    /// Applies `cmd` at a stamp time of `stamp_ms`. `new_id` is the id the
    /// engine gave a new reservation (ids are opaque: the model adopts them).
    fn apply(&mut self, stamp_ms: u64, cmd: &Command, new_id: Option<ReservationId>) -> Outcome {
        self.now = self.now.max(stamp_ms);
        let (expired, units_expired) = self.expire_due();
        validate(&cmd.kind)?;
        if let CommandKind::ExpireUpTo(e) = &cmd.kind {
            if e.up_to_ms > self.now {
                return Err(invalid("up_to_ms", None));
            }
            return Ok(Success::Expired {
                reservations: expired,
                units_released: units_expired,
            });
        }
        if let Some((body, outcome)) = self.remembered.get(&cmd.request_id.0) {
            return if *body == cmd.kind {
                *outcome
            } else {
                Err(Refusal::DuplicateRequestMismatch)
            };
        }
        let outcome = match &cmd.kind {
            CommandKind::Reserve(r) => self.reserve(r, new_id),
            CommandKind::Confirm(c) => self.confirm(c),
            CommandKind::Release(r) => self.release(r.reservation),
            CommandKind::Extend(e) => self.extend(e),
            CommandKind::AdjustStock(a) => self.adjust(a),
            CommandKind::UpsertLocation(u) => Ok(self.upsert(u)),
            CommandKind::SetPolicy(p) => self.set_policy(p),
            CommandKind::ExpireUpTo(_) => unreachable!(),
        };
        if !matches!(outcome, Err(Refusal::InvalidArgument(_))) {
            self.remembered
                .insert(cmd.request_id.0, (cmd.kind.clone(), outcome));
        }
        outcome
    }

    /// Allocation rank of a location for a request from `region`.
    fn rank(&self, loc: usize, region: &Option<String>) -> (bool, u32, usize) {
        let l = &self.locs[loc];
        let away = region.as_ref().is_some_and(|r| *r != l.region);
        (away, l.priority, loc)
    }

    fn reserve(&mut self, r: &Reserve, new_id: Option<ReservationId>) -> Outcome {
        let mut fixed = Vec::new();
        for (i, line) in r.lines.iter().enumerate() {
            if let Some(name) = &line.location {
                match self.loc_id(name) {
                    Some(loc) => fixed.push((i, loc)),
                    None => {
                        return Err(Refusal::UnknownLocation {
                            line: Some(i as u16),
                        })
                    }
                }
            }
        }
        let partial = r.policy == FillPolicy::Partial;
        let mut plan: Vec<Planned> = Vec::new();
        let mut first_refusal: Option<Refusal> = None;
        let left = |model: &Model, plan: &[Planned], row: usize| {
            model.rows[row].available()
                - plan.iter().filter(|p| p.0 == row).map(|p| p.1).sum::<i64>()
        };

        // Fixed-location lines, in request order.
        for &(i, loc) in &fixed {
            let qty = r.lines[i].quantity;
            let row = self.row_of(&r.lines[i].sku, loc);
            let avail = row.map_or(0, |row| left(self, &plan, row));
            if avail >= qty {
                plan.push((row.unwrap(), qty, i));
            } else if partial && avail > 0 {
                plan.push((row.unwrap(), avail, i));
            } else {
                let refusal = Refusal::OutOfStock {
                    line: i as u16,
                    location: Some(LocationId(loc as u16)),
                    requested: qty as u64,
                    available: avail,
                };
                if !partial {
                    return Err(refusal);
                }
                first_refusal.get_or_insert(refusal);
            }
        }

        // Automatic lines: one location for all of them if one can...
        let auto: Vec<usize> = (0..r.lines.len())
            .filter(|&i| r.lines[i].location.is_none())
            .collect();
        if !auto.is_empty() {
            let covering = (0..self.locs.len())
                .filter(|&loc| {
                    auto.iter().all(|&i| {
                        let sku = &r.lines[i].sku;
                        let need: i64 = auto
                            .iter()
                            .filter(|&&j| r.lines[j].sku == *sku)
                            .map(|&j| r.lines[j].quantity)
                            .sum();
                        self.row_of(sku, loc)
                            .is_some_and(|row| left(self, &plan, row) >= need)
                    })
                })
                .min_by_key(|&loc| self.rank(loc, &r.region));
            if let Some(loc) = covering {
                for &i in &auto {
                    let row = self.row_of(&r.lines[i].sku, loc).unwrap();
                    plan.push((row, r.lines[i].quantity, i));
                }
            } else {
                // ...otherwise line by line.
                for &i in &auto {
                    let qty = r.lines[i].quantity;
                    let mut cands: Vec<(usize, usize, i64)> = (0..self.locs.len())
                        .filter_map(|loc| {
                            let row = self.row_of(&r.lines[i].sku, loc)?;
                            let avail = left(self, &plan, row);
                            (avail > 0).then_some((row, loc, avail))
                        })
                        .collect();
                    cands.sort_by_key(|c| self.rank(c.1, &r.region));
                    if let Some(c) = cands.iter().find(|c| c.2 >= qty) {
                        plan.push((c.0, qty, i));
                        continue;
                    }
                    let total: i64 = cands.iter().map(|c| c.2).sum();
                    if r.allow_split && (total >= qty || partial) && total > 0 {
                        let mut rest = qty;
                        for c in &cands {
                            if rest == 0 {
                                break;
                            }
                            let take = rest.min(c.2);
                            plan.push((c.0, take, i));
                            rest -= take;
                        }
                        continue;
                    }
                    // The best candidate: most available, the better rank
                    // among equals.
                    let mut best: Option<(usize, usize, i64)> = None;
                    for c in &cands {
                        if best.is_none_or(|b| c.2 > b.2) {
                            best = Some(*c);
                        }
                    }
                    if partial {
                        if let Some(b) = best {
                            plan.push((b.0, b.2, i));
                            continue;
                        }
                    }
                    let refusal = Refusal::OutOfStock {
                        line: i as u16,
                        location: best.map(|b| LocationId(b.1 as u16)),
                        requested: qty as u64,
                        available: if r.allow_split {
                            total
                        } else {
                            best.map_or(0, |b| b.2)
                        },
                    };
                    if !partial {
                        return Err(refusal);
                    }
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        if plan.is_empty() {
            return Err(first_refusal.expect("a request with lines plans or refuses"));
        }

        // Per-customer limits, SKU by SKU in plan order.
        let mut seen: Vec<usize> = Vec::new();
        for p in &plan {
            let sku = self.rows[p.0].sku;
            if seen.contains(&sku) {
                continue;
            }
            seen.push(sku);
            if let Some(limit) = self.limits.get(&sku) {
                let used = limit.used.get(&r.customer).copied().unwrap_or(0);
                let requested: i64 = plan
                    .iter()
                    .filter(|q| self.rows[q.0].sku == sku)
                    .map(|q| q.1)
                    .sum();
                if used + requested as u64 > limit.max_units {
                    return Err(Refusal::LimitExceeded {
                        line: p.2 as u16,
                        limit: limit.max_units,
                        used,
                        requested: requested as u64,
                    });
                }
            }
        }

        // Commit.
        let id = new_id.unwrap_or(ReservationId(u64::MAX - 1));
        assert!(
            !self.by_id.contains_key(&id),
            "design §1.3 at most once: the engine answered a request the model sees as new \
             with {id:?}, which already names an earlier reservation"
        );
        let mut lines = Vec::new();
        for &(row, qty, i) in &plan {
            let row_ref = &mut self.rows[row];
            row_ref.held += qty;
            let available_after = row_ref.available();
            let sku = row_ref.sku;
            let epoch = self.limits.get_mut(&sku).map(|l| {
                *l.used.entry(r.customer.clone()).or_default() += qty as u64;
                l.epoch
            });
            lines.push(MLine {
                row,
                request_line: i as u16,
                quantity: qty,
                confirmed: 0,
                available_after,
                epoch,
            });
        }
        self.res.push(MRes {
            id,
            owner: r.owner.clone(),
            customer: r.customer.clone(),
            lines,
            created_at_ms: self.now,
            expires_at_ms: self.now + r.ttl_ms,
            state: ReservationState::Pending,
        });
        self.by_id.insert(id, self.res.len() - 1);
        Ok(Success::Reserved { reservation: id })
    }

    fn pending(&self, id: ReservationId) -> Result<usize, Refusal> {
        let k = *self.by_id.get(&id).ok_or(Refusal::UnknownReservation)?;
        match self.res[k].state {
            ReservationState::Pending => Ok(k),
            state => Err(Refusal::NotPending { state }),
        }
    }

    fn confirm(&mut self, c: &Confirm) -> Outcome {
        let k = self.pending(c.reservation)?;
        let lines: Vec<i64> = self.res[k].lines.iter().map(|l| l.quantity).collect();
        let quantities = match &c.quantities {
            None => lines,
            Some(q) => {
                if q.len() != lines.len() {
                    return Err(invalid("quantities", None));
                }
                if let Some(i) = (0..q.len()).find(|&i| q[i] > lines[i]) {
                    return Err(invalid("quantities", Some(i)));
                }
                q.clone()
            }
        };
        let (units_confirmed, units_released) =
            self.resolve(k, Some(&quantities), ReservationState::Confirmed);
        Ok(Success::Confirmed {
            reservation: c.reservation,
            units_confirmed,
            units_released,
        })
    }

    fn release(&mut self, id: ReservationId) -> Outcome {
        let k = self.pending(id)?;
        let (_, units_released) = self.resolve(k, None, ReservationState::Released);
        Ok(Success::Released {
            reservation: id,
            units_released,
        })
    }

    fn extend(&mut self, e: &Extend) -> Outcome {
        let k = self.pending(e.reservation)?;
        self.res[k].expires_at_ms = self.now + e.ttl_ms;
        Ok(Success::Extended {
            reservation: e.reservation,
            expires_at_ms: self.now + e.ttl_ms,
        })
    }

    fn adjust(&mut self, a: &AdjustStock) -> Outcome {
        let loc = self
            .loc_id(&a.location)
            .ok_or(Refusal::UnknownLocation { line: None })?;
        let (on_hand, held, backorder) = self.row_of(&a.sku, loc).map_or((0, 0, 0), |r| {
            let r = &self.rows[r];
            (r.on_hand, r.held, r.backorder)
        });
        if let Some(expected) = a.expected_on_hand {
            if expected != on_hand {
                return Err(Refusal::ExpectedOnHandMismatch {
                    expected,
                    actual: on_hand,
                });
            }
        }
        let after = on_hand + a.delta;
        if after.abs() > STOCK_MAX {
            return Err(invalid("delta", None));
        }
        if held > after + backorder {
            return Err(Refusal::HeldExceedsStock {
                held,
                supply: after + backorder,
            });
        }
        let row = self.row_or_insert(&a.sku, loc);
        self.rows[row].on_hand = after;
        Ok(Success::Adjusted {
            row: RowId(row as u32),
            on_hand: after,
            available: self.rows[row].available(),
        })
    }

    fn upsert(&mut self, u: &UpsertLocation) -> Success {
        let (loc, created) = match self.loc_id(&u.location) {
            Some(loc) => (loc, false),
            None => {
                self.locs.push(MLoc {
                    name: u.location.clone(),
                    region: String::new(),
                    priority: 0,
                });
                (self.locs.len() - 1, true)
            }
        };
        self.locs[loc].region = u.region.clone();
        self.locs[loc].priority = u.priority;
        Success::LocationUpserted {
            location: LocationId(loc as u16),
            created,
        }
    }

    fn set_policy(&mut self, p: &SetPolicy) -> Outcome {
        if p.safety_stock.is_some() || p.backorder_allowance.is_some() {
            let name = p.location.as_ref().expect("validated");
            let loc = self
                .loc_id(name)
                .ok_or(Refusal::UnknownLocation { line: None })?;
            let current = self.row_of(&p.sku, loc).map(|r| self.rows[r].clone());
            let (on_hand, held) = current.as_ref().map_or((0, 0), |r| (r.on_hand, r.held));
            let safety = p
                .safety_stock
                .unwrap_or(current.as_ref().map_or(0, |r| r.safety));
            let backorder = p
                .backorder_allowance
                .unwrap_or(current.as_ref().map_or(0, |r| r.backorder));
            if held > on_hand + backorder {
                return Err(Refusal::HeldExceedsStock {
                    held,
                    supply: on_hand + backorder,
                });
            }
            let row = self.row_or_insert(&p.sku, loc);
            self.rows[row].safety = safety;
            self.rows[row].backorder = backorder;
        }
        let sku = self.intern(&p.sku);
        match p.customer_limit {
            LimitChange::Keep => {}
            LimitChange::Clear => {
                self.limits.remove(&sku);
            }
            LimitChange::Set(l) => match self.limits.get_mut(&sku) {
                Some(cur) if cur.campaign == l.campaign => cur.max_units = l.max_units,
                _ => {
                    self.epochs += 1;
                    self.limits.insert(
                        sku,
                        MLimit {
                            max_units: l.max_units,
                            campaign: l.campaign,
                            epoch: self.epochs,
                            used: BTreeMap::new(),
                        },
                    );
                }
            },
        }
        Ok(Success::PolicySet {
            sku: SkuId(sku as u32),
        })
    }
}

/// Outcome equality, except that an `InvalidArgument`'s prose (`why`) is
/// not modelled: for those, field and line are compared.
fn same_outcome(engine: &Outcome, model: &Outcome) -> bool {
    match (engine, model) {
        (Err(Refusal::InvalidArgument(a)), Err(Refusal::InvalidArgument(b))) => {
            a.field == b.field && a.line == b.line
        }
        _ => engine == model,
    }
}

// ===========================================================================
// Generated scenarios
// ===========================================================================

const SKUS: [&str; 4] = ["A", "B", "C", "D"];
const REGIONS: [&str; 2] = ["north", "south"];
const CUSTOMERS: [&str; 3] = ["c0", "c1", "c2"];

fn loc_name(i: usize) -> String {
    format!("L{i}")
}

#[derive(Clone, Debug)]
struct World {
    /// (region, priority) of L0, L1, ... created in this order.
    locs: Vec<(usize, u32)>,
    skus: usize,
    customers: usize,
    /// Initial stock of (sku s, location l) at `s * 3 + l`; `None`: no row.
    stock: Vec<Option<i64>>,
    /// Initial backorder allowance of the same rows (0: none set).
    backorder: Vec<i64>,
}

/// How a confirm's per-line quantities are chosen.
#[derive(Clone, Debug)]
enum Quantities {
    All,
    /// Valid per-line quantities drawn from the seeds.
    Some(Vec<u8>),
    AllZero,
    WrongCount,
    TooMany,
    Negative,
}

#[derive(Clone, Debug)]
enum Delta {
    Add(i64),
    Sub(i64),
    ToZero,
    Huge,
    TooBig,
}

#[derive(Clone, Debug)]
enum Expected {
    Unchecked,
    Right,
    Wrong(i64),
}

#[derive(Clone, Debug)]
enum Limit {
    Keep,
    Clear,
    Set(u64, u32),
}

#[derive(Clone, Debug)]
enum Target {
    /// Any reservation the engine ever returned.
    Nth(Index),
    /// A reservation that is pending now (any, if none is).
    Pending(Index),
    /// An id the engine never handed out.
    Bogus,
}

#[derive(Clone, Debug)]
enum Op {
    Reserve {
        owner: u8,
        customer: usize,
        region: Option<usize>,
        lines: Vec<(usize, i64, Option<usize>)>,
        ttl: u64,
        partial: bool,
        split: bool,
        /// 0 fine, 1 empty sku, 2 101 lines, 3 empty customer, 4 a sku
        /// of 257 bytes, 5 a control character in the owner, 6 an empty
        /// region.
        bad: u8,
    },
    Confirm(Target, Quantities),
    Release(Target),
    Extend(Target, u64),
    Adjust(usize, usize, Delta, Expected),
    Upsert(usize, usize, u32, bool),
    Policy {
        sku: usize,
        loc: Option<usize>,
        safety: Option<i64>,
        backorder: Option<i64>,
        /// Cut the backorder allowance to one unit less than the row's
        /// holds need (`HeldExceedsStock` if they use it).
        squeeze: bool,
        limit: Limit,
    },
    ExpireUpTo {
        back: u64,
        ahead: bool,
    },
    /// Re-send an earlier command: same request id, same body; `true`: one
    /// of the last few.
    Retry(Index, bool),
    /// An earlier request id with the body of another earlier command.
    RetryOtherBody(Index, Index),
}

/// How the leader's clock moves before an entry.
#[derive(Clone, Debug)]
enum Time {
    /// By this many ms (may go backwards).
    By(i64),
    /// To the earliest pending expiry, plus this many ms (-1, 0 or 1): the
    /// boundary `expires_at_ms <= now`.
    ToNextExpiry(i64),
}

#[derive(Clone, Debug)]
struct Step {
    time: Time,
    op: Op,
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec((0..2usize, 0..3u32), 2..=3),
        3..=4usize,
        2..=3usize,
        prop::collection::vec(prop::option::weighted(0.75, 0..=20i64), 12),
        prop::collection::vec(prop_oneof![3 => Just(0i64), 1 => 1..=8i64], 12),
    )
        .prop_map(|(locs, skus, customers, stock, backorder)| World {
            locs,
            skus,
            customers,
            stock,
            backorder,
        })
}

fn ttl() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![
        30 => 1_000..=8_000u64,
        4 => 8_001..=86_400_000u64,
        1 => Just(999u64),
        1 => Just(86_400_001u64),
    ]
}

fn target() -> impl Strategy<Value = Target> + Clone {
    prop_oneof![
        6 => any::<Index>().prop_map(Target::Pending),
        4 => any::<Index>().prop_map(Target::Nth),
        1 => Just(Target::Bogus),
    ]
}

fn op(w: &World) -> impl Strategy<Value = Op> {
    let n_locs = w.locs.len();
    // Mostly a location of the world, sometimes one that may not exist.
    let loc = prop_oneof![9 => 0..n_locs, 1 => 0..4usize];
    let sku = 0..w.skus;
    let qty = prop_oneof![
        100 => 1..=8i64,
        1 => Just(0i64),
        1 => Just(-1i64),
        1 => Just(10_000_000i64),
    ];
    let line = (sku.clone(), qty, prop::option::of(loc.clone()));
    let reserve = (
        0..3u8,
        0..w.customers,
        prop::option::of(0..2usize),
        prop::collection::vec(line, 1..=4),
        ttl(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![100 => Just(0u8), 6 => 1..=6u8],
    )
        .prop_map(
            |(owner, customer, region, lines, ttl, partial, split, bad)| Op::Reserve {
                owner,
                customer,
                region,
                lines,
                ttl,
                partial,
                split,
                bad,
            },
        );
    let quantities = prop_oneof![
        12 => Just(Quantities::All),
        12 => prop::collection::vec(any::<u8>(), 1..=4).prop_map(Quantities::Some),
        1 => Just(Quantities::AllZero),
        1 => Just(Quantities::WrongCount),
        1 => Just(Quantities::TooMany),
        1 => Just(Quantities::Negative),
    ];
    let delta = prop_oneof![
        6 => (1..=20i64).prop_map(Delta::Add),
        3 => (0..=10i64).prop_map(Delta::Sub),
        2 => Just(Delta::ToZero),
        1 => Just(Delta::Huge),
        1 => Just(Delta::TooBig),
    ];
    let expected = prop_oneof![
        4 => Just(Expected::Unchecked),
        2 => Just(Expected::Right),
        1 => (-2..=2i64).prop_map(Expected::Wrong),
    ];
    let figure = |max: i64| {
        prop_oneof![
            4 => Just(None),
            4 => (0..=max).prop_map(Some),
            1 => Just(Some(-1i64)),
        ]
    };
    let limit = prop_oneof![
        3 => Just(Limit::Keep),
        1 => Just(Limit::Clear),
        3 => (1..=10u64, 0..=2u32).prop_map(|(m, c)| Limit::Set(m, c)),
        1 => (0..=10u64, 0..=2u32).prop_map(|(m, c)| Limit::Set(m, c)),
    ];
    let policy = (
        sku.clone(),
        prop::option::weighted(0.85, loc.clone()),
        figure(3),
        figure(6),
        prop::bool::weighted(0.15),
        limit,
    )
        .prop_map(|(sku, loc, safety, backorder, squeeze, limit)| Op::Policy {
            sku,
            loc,
            safety,
            backorder,
            squeeze,
            limit,
        });
    prop_oneof![
        30 => reserve,
        10 => (target(), quantities).prop_map(|(t, q)| Op::Confirm(t, q)),
        6 => target().prop_map(Op::Release),
        5 => (target(), ttl()).prop_map(|(t, ttl)| Op::Extend(t, ttl)),
        12 => (sku, loc, delta, expected).prop_map(|(s, l, d, e)| Op::Adjust(s, l, d, e)),
        3 => (0..4usize, 0..2usize, 0..3u32, prop::bool::weighted(0.1))
            .prop_map(|(l, r, p, bad)| Op::Upsert(l, r, p, bad)),
        8 => policy,
        4 => (prop_oneof![Just(0u64), 0..=3_000u64], prop::bool::weighted(0.2))
            .prop_map(|(back, ahead)| Op::ExpireUpTo { back, ahead }),
        10 => (any::<Index>(), prop::bool::weighted(0.7)).prop_map(|(i, r)| Op::Retry(i, r)),
        4 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Op::RetryOtherBody(a, b)),
    ]
}

fn step(w: &World) -> impl Strategy<Value = Step> {
    let time = prop_oneof![
        12 => (0..=2_500i64).prop_map(Time::By),
        2 => (2_501..=20_000i64).prop_map(Time::By),
        2 => (-5_000..=-1i64).prop_map(Time::By),
        2 => (-1..=1i64).prop_map(Time::ToNextExpiry),
    ];
    (time, op(w)).prop_map(|(time, op)| Step { time, op })
}

/// A world, the steps of the case, and the steps a restored engine continues
/// with.
fn scenario(steps: usize) -> impl Strategy<Value = (World, Vec<Step>, Vec<Step>)> {
    world().prop_flat_map(move |w| {
        (
            Just(w.clone()),
            prop::collection::vec(step(&w), 1..=steps),
            prop::collection::vec(step(&w), 0..=4),
        )
    })
}

// ===========================================================================
// The harness: runs the engine (and the model) step by step
// ===========================================================================

type Logged = (Stamp, Command, Outcome, Vec<Event>);

struct Run {
    config: EngineConfig,
    engine: Engine,
    /// `None` when the engine forgets request ids (only invariants checked).
    model: Option<Model>,
    world: World,
    clock: u64,
    index: u64,
    next_request: u128,
    /// Reservation ids in the order the engine first returned them.
    ids: Vec<ReservationId>,
    log: Vec<Logged>,
    /// Last observed state of every reservation (§1.3).
    states: HashMap<ReservationId, ReservationState>,
}

fn reserve_lines(lines: &[(usize, i64, Option<usize>)]) -> Vec<ReserveLine> {
    lines
        .iter()
        .map(|&(sku, quantity, loc)| ReserveLine {
            sku: SKUS[sku].to_string(),
            quantity,
            location: loc.map(loc_name),
        })
        .collect()
}

impl Run {
    fn new(config: EngineConfig, world: &World, with_model: bool) -> Result<Run, TestCaseError> {
        let mut run = Run {
            config,
            engine: Engine::new(config),
            model: with_model.then(Model::default),
            world: world.clone(),
            clock: 1_700_000_000_000,
            index: 0,
            next_request: 1,
            ids: Vec::new(),
            log: Vec::new(),
            states: HashMap::new(),
        };
        for (i, &(region, priority)) in world.locs.iter().enumerate() {
            let kind = CommandKind::UpsertLocation(UpsertLocation {
                location: loc_name(i),
                region: REGIONS[region].to_string(),
                priority,
            });
            run.fresh(kind)?;
        }
        for (s, sku) in SKUS.iter().enumerate().take(world.skus) {
            for l in 0..world.locs.len() {
                if let Some(units) = world.stock[s * 3 + l] {
                    let kind = CommandKind::AdjustStock(AdjustStock {
                        sku: sku.to_string(),
                        location: loc_name(l),
                        delta: units,
                        expected_on_hand: None,
                    });
                    run.fresh(kind)?;
                }
                let backorder = world.backorder[s * 3 + l];
                if backorder > 0 {
                    let kind = CommandKind::SetPolicy(SetPolicy {
                        sku: sku.to_string(),
                        location: Some(loc_name(l)),
                        safety_stock: None,
                        backorder_allowance: Some(backorder),
                        customer_limit: LimitChange::Keep,
                    });
                    run.fresh(kind)?;
                }
            }
        }
        Ok(run)
    }

    /// Applies `kind` under a new request id one millisecond later.
    fn fresh(&mut self, kind: CommandKind) -> Result<(), TestCaseError> {
        self.clock += 1;
        self.index += 1;
        let cmd = Command {
            request_id: RequestId(self.next_request),
            kind,
        };
        self.next_request += 1;
        let stamp = Stamp {
            index: self.index,
            now_ms: self.clock,
        };
        self.apply(stamp, cmd, None).map(|_| ())
    }

    fn target(&self, t: &Target) -> ReservationId {
        let pending: Vec<ReservationId> = match t {
            Target::Pending(_) => self
                .engine
                .reservations()
                .filter(|(_, r)| r.state == ReservationState::Pending)
                .map(|(id, _)| id)
                .collect(),
            _ => Vec::new(),
        };
        match t {
            Target::Pending(i) if !pending.is_empty() => pending[i.index(pending.len())],
            Target::Nth(i) | Target::Pending(i) if !self.ids.is_empty() => {
                self.ids[i.index(self.ids.len())]
            }
            _ => ReservationId(u64::MAX),
        }
    }

    fn on_hand(&self, sku: &str, loc: &str) -> i64 {
        self.engine.availability(sku, loc).map_or(0, |a| a.on_hand)
    }

    /// The command a step stands for, and the index in the log of the
    /// command it retries verbatim, if any.
    fn command(&mut self, op: &Op, now: u64) -> (Command, Option<usize>) {
        let kind = match op {
            Op::Retry(i, recent) => {
                let n = self.log.len();
                let k = if *recent {
                    n - 1 - i.index(n.min(6))
                } else {
                    i.index(n)
                };
                return (self.log[k].1.clone(), Some(k));
            }
            Op::RetryOtherBody(i, j) => {
                let id = self.log[i.index(self.log.len())].1.request_id;
                let kind = self.log[j.index(self.log.len())].1.kind.clone();
                return (
                    Command {
                        request_id: id,
                        kind,
                    },
                    None,
                );
            }
            Op::Reserve {
                owner,
                customer,
                region,
                lines,
                ttl,
                partial,
                split,
                bad,
            } => {
                let mut lines = reserve_lines(lines);
                let mut customer = CUSTOMERS[*customer].to_string();
                let mut owner = format!("cart-{owner}");
                let mut region = region.map(|r| REGIONS[r].to_string());
                match bad {
                    1 => lines.last_mut().unwrap().sku = String::new(),
                    2 => lines = vec![lines[0].clone(); 101],
                    3 => customer = String::new(),
                    4 => lines[0].sku = "x".repeat(257),
                    5 => owner.push('\n'),
                    6 => region = Some(String::new()),
                    _ => {}
                }
                CommandKind::Reserve(Reserve {
                    owner,
                    customer,
                    region,
                    lines,
                    ttl_ms: *ttl,
                    policy: if *partial {
                        FillPolicy::Partial
                    } else {
                        FillPolicy::AllOrNothing
                    },
                    allow_split: *split,
                })
            }
            Op::Confirm(t, q) => {
                let reservation = self.target(t);
                let held: Vec<i64> = self.engine.reservation(reservation).map_or(vec![1], |r| {
                    r.lines.iter().map(|l| l.quantity as i64).collect()
                });
                let quantities = match q {
                    Quantities::All => None,
                    Quantities::Some(seeds) => {
                        let mut q: Vec<i64> = held
                            .iter()
                            .enumerate()
                            .map(|(i, &h)| seeds[i % seeds.len()] as i64 % (h + 1))
                            .collect();
                        if q.iter().all(|&v| v == 0) {
                            let k = seeds[0] as usize % q.len();
                            q[k] = 1;
                        }
                        Some(q)
                    }
                    Quantities::AllZero => Some(vec![0; held.len()]),
                    Quantities::WrongCount => Some(vec![1; held.len() + 1]),
                    Quantities::TooMany => {
                        let mut q = held.clone();
                        *q.last_mut().unwrap() += 1;
                        Some(q)
                    }
                    Quantities::Negative => {
                        let mut q = held.clone();
                        q[0] = -1;
                        Some(q)
                    }
                };
                CommandKind::Confirm(Confirm {
                    reservation,
                    quantities,
                })
            }
            Op::Release(t) => CommandKind::Release(Release {
                reservation: self.target(t),
            }),
            Op::Extend(t, ttl) => CommandKind::Extend(Extend {
                reservation: self.target(t),
                ttl_ms: *ttl,
            }),
            Op::Adjust(sku, loc, delta, expected) => {
                let (sku, loc) = (SKUS[*sku], loc_name(*loc));
                let on_hand = self.on_hand(sku, &loc);
                CommandKind::AdjustStock(AdjustStock {
                    sku: sku.to_string(),
                    location: loc,
                    delta: match delta {
                        Delta::Add(d) => *d,
                        Delta::Sub(d) => -d,
                        Delta::ToZero => -on_hand,
                        Delta::Huge => STOCK_MAX,
                        Delta::TooBig => -STOCK_MAX - 1,
                    },
                    expected_on_hand: match expected {
                        Expected::Unchecked => None,
                        Expected::Right => Some(on_hand),
                        Expected::Wrong(d) => Some(on_hand + d),
                    },
                })
            }
            Op::Upsert(loc, region, priority, bad) => CommandKind::UpsertLocation(UpsertLocation {
                location: loc_name(*loc),
                region: if *bad {
                    String::new()
                } else {
                    REGIONS[*region].to_string()
                },
                priority: *priority,
            }),
            Op::Policy {
                sku,
                loc,
                safety,
                backorder,
                squeeze,
                limit,
            } => CommandKind::SetPolicy(SetPolicy {
                sku: SKUS[*sku].to_string(),
                location: loc.map(loc_name),
                safety_stock: *safety,
                backorder_allowance: match (squeeze, loc) {
                    (true, Some(loc)) => {
                        let a = self.engine.availability(SKUS[*sku], &loc_name(*loc));
                        Some(a.map_or(0, |a| (a.held - a.on_hand - 1).max(0)))
                    }
                    _ => *backorder,
                },
                customer_limit: match limit {
                    Limit::Keep => LimitChange::Keep,
                    Limit::Clear => LimitChange::Clear,
                    Limit::Set(max_units, campaign) => LimitChange::Set(CustomerLimit {
                        max_units: *max_units,
                        campaign: *campaign,
                    }),
                },
            }),
            Op::ExpireUpTo { back, ahead } => CommandKind::ExpireUpTo(ExpireUpTo {
                up_to_ms: if *ahead {
                    now + 1 + back % 1_000
                } else {
                    now.saturating_sub(*back)
                },
            }),
        };
        let cmd = Command {
            request_id: RequestId(self.next_request),
            kind,
        };
        self.next_request += 1;
        (cmd, None)
    }

    /// Runs one generated step; returns what it applied and answered.
    fn step(&mut self, step: &Step) -> Result<Logged, TestCaseError> {
        self.clock = match step.time {
            Time::By(dt) => self.clock.saturating_add_signed(dt),
            Time::ToNextExpiry(d) => self
                .engine
                .reservations()
                .filter(|(_, r)| r.state == ReservationState::Pending)
                .map(|(_, r)| r.expires_at_ms.saturating_add_signed(d))
                .min()
                .unwrap_or(self.clock),
        };
        self.index += 1;
        let stamp = Stamp {
            index: self.index,
            now_ms: self.clock,
        };
        let now = self.engine.now_ms().max(self.clock);
        let (cmd, retry_of) = self.command(&step.op, now);
        self.apply(stamp, cmd, retry_of)
    }

    fn apply(
        &mut self,
        stamp: Stamp,
        cmd: Command,
        retry_of: Option<usize>,
    ) -> Result<Logged, TestCaseError> {
        let n = self.log.len();
        let mut events = Vec::new();
        let outcome = self.engine.apply(stamp, &cmd, &mut events);
        if let Ok(Success::Reserved { reservation }) = outcome {
            if !self.ids.contains(&reservation) {
                self.ids.push(reservation);
            }
        }
        if let Some(model) = &mut self.model {
            let new_id = match outcome {
                Ok(Success::Reserved { reservation }) => Some(reservation),
                _ => None,
            };
            let expected = model.apply(stamp.now_ms, &cmd, new_id);
            prop_assert!(
                same_outcome(&outcome, &expected),
                "model (spec) outcome, §1.3 at most once for retries: step {n} {cmd:?} at \
                 {stamp:?}\n engine: {outcome:?}\n model:  {expected:?}"
            );
            // A verbatim retry of a remembered command gets the first answer.
            if let Some(k) = retry_of {
                let (_, first, first_outcome, _) = &self.log[k];
                if !matches!(first.kind, CommandKind::ExpireUpTo(_))
                    && !matches!(first_outcome, Err(Refusal::InvalidArgument(_)))
                {
                    prop_assert_eq!(
                        &outcome,
                        first_outcome,
                        "design §1.3 at most once: retry of step {} returns the stored outcome",
                        k
                    );
                }
            }
        }
        self.check_invariants(n)?;
        if self.model.is_some() {
            self.check_model(n)?;
        }
        let logged = (stamp, cmd, outcome, events);
        self.log.push(logged.clone());
        Ok(logged)
    }

    /// The promises of design §1, from `check_invariants` and independently
    /// from the public read API.
    fn check_invariants(&mut self, n: usize) -> Result<(), TestCaseError> {
        let e = &self.engine;
        if let Err(why) = e.check_invariants() {
            prop_assert!(
                false,
                "design §1.1/§1.2 check_invariants after step {n}: {why}"
            );
        }
        let mut pending = vec![0i64; e.row_count()];
        let mut pending_reservations = 0;
        for (id, res) in e.reservations() {
            if res.state == ReservationState::Pending {
                pending_reservations += 1;
                for line in &res.lines {
                    pending[line.row.0 as usize] += line.quantity as i64;
                }
            }
            if let Some(&before) = self.states.get(&id) {
                prop_assert!(
                    before == ReservationState::Pending || before == res.state,
                    "design §1.3 at most once: reservation {id:?} went from {before:?} to \
                     {:?} at step {n}",
                    res.state
                );
            }
            self.states.insert(id, res.state);
        }
        prop_assert_eq!(
            e.pending_count(),
            pending_reservations,
            "pending_count() vs the pending reservations after step {}",
            n
        );
        for (i, &sum) in pending.iter().enumerate() {
            let row = e.row(RowId(i as u32));
            prop_assert!(
                row.held <= row.on_hand + row.backorder_allowance,
                "design §1.1 no oversell: row {i} holds {} of {} + {} after step {n}",
                row.held,
                row.on_hand,
                row.backorder_allowance
            );
            prop_assert_eq!(
                row.held,
                sum,
                "design §1.2 conservation: row {} held vs pending lines after step {}",
                i,
                n
            );
            let name = &e.location(row.location).name;
            let a = e.availability(e.sku_name(row.sku), name);
            prop_assert_eq!(
                a.map(|a| (a.row, a.on_hand, a.held, a.available)),
                Some((RowId(i as u32), row.on_hand, row.held, row.available())),
                "design §1.2 conservation: availability() agrees with row() after step {}",
                n
            );
        }
        Ok(())
    }

    /// The engine's state equals the model's.
    fn check_model(&self, n: usize) -> Result<(), TestCaseError> {
        let (e, m) = (&self.engine, self.model.as_ref().unwrap());
        prop_assert_eq!(
            e.now_ms(),
            m.now,
            "spec (model): engine time after step {}",
            n
        );
        let locs: Vec<(String, String, u32)> = e
            .locations()
            .iter()
            .map(|l| (l.name.to_string(), l.region.to_string(), l.priority))
            .collect();
        let mlocs: Vec<(String, String, u32)> = m
            .locs
            .iter()
            .map(|l| (l.name.clone(), l.region.clone(), l.priority))
            .collect();
        prop_assert_eq!(locs, mlocs, "spec (model): locations after step {}", n);
        for (s, name) in m.skus.iter().enumerate() {
            prop_assert_eq!(
                e.sku_name(SkuId(s as u32)),
                name.as_str(),
                "spec (model): SKU ids"
            );
        }
        prop_assert_eq!(
            e.row_count(),
            m.rows.len(),
            "design §1.1/§1.2, spec (model): row count after step {}",
            n
        );
        for (i, r) in m.rows.iter().enumerate() {
            let got = e.row(RowId(i as u32));
            prop_assert_eq!(
                (
                    got.sku,
                    got.location,
                    got.safety_stock,
                    got.backorder_allowance
                ),
                (
                    SkuId(r.sku as u32),
                    LocationId(r.loc as u16),
                    r.safety,
                    r.backorder
                ),
                "spec (model): row {} policy after step {}",
                i,
                n
            );
            let a = e.availability(&m.skus[r.sku], &m.locs[r.loc].name);
            prop_assert_eq!(
                a.map(|a| (a.row, a.on_hand, a.held, a.available)),
                Some((RowId(i as u32), r.on_hand, r.held, r.available())),
                "design §1.1 no oversell / §1.2 conservation, spec (model): row {} after step {}",
                i,
                n
            );
        }
        prop_assert_eq!(
            e.reservation_count(),
            m.res.len(),
            "design §1.3, spec (model): retained reservations after step {}",
            n
        );
        for r in &m.res {
            let got: Option<&Reservation> = e.reservation(r.id);
            prop_assert!(
                got.is_some(),
                "design §1.3 at most once, spec (model): reservation {:?} is retained",
                r.id
            );
            let got = got.unwrap();
            prop_assert_eq!(
                got.state,
                r.state,
                "design §1.3 at most once, spec (model): state of {:?} after step {}",
                r.id,
                n
            );
            prop_assert_eq!(
                (
                    got.owner(),
                    got.customer(),
                    got.created_at_ms,
                    got.expires_at_ms
                ),
                (
                    r.owner.as_str(),
                    r.customer.as_str(),
                    r.created_at_ms,
                    r.expires_at_ms
                ),
                "spec (model): reservation {:?} after step {}",
                r.id,
                n
            );
            let lines: Vec<(RowId, u16, u32, u32, i64)> = got
                .lines
                .iter()
                .map(|l| {
                    (
                        l.row,
                        l.request_line,
                        l.quantity,
                        l.confirmed,
                        l.available_after,
                    )
                })
                .collect();
            let mlines: Vec<(RowId, u16, u32, u32, i64)> = r
                .lines
                .iter()
                .map(|l| {
                    (
                        RowId(l.row as u32),
                        l.request_line,
                        l.quantity as u32,
                        l.confirmed as u32,
                        l.available_after,
                    )
                })
                .collect();
            prop_assert_eq!(
                lines,
                mlines,
                "design §1.2 conservation, spec (model): lines of {:?} after step {}",
                r.id,
                n
            );
        }
        for sku in &SKUS[..self.world.skus] {
            for customer in &CUSTOMERS[..self.world.customers] {
                prop_assert_eq!(
                    e.customer_usage(sku, customer),
                    m.usage(sku, customer),
                    "spec (model): customer usage of {} by {} after step {}",
                    sku,
                    customer,
                    n
                );
            }
        }
        prop_assert_eq!(
            e.dedup_len(),
            m.remembered.len(),
            "design §1.3, spec (model): remembered request ids after step {}",
            n
        );
        Ok(())
    }

    /// End of a case: restore, replica, and a restored engine continuing.
    fn finish(&mut self, tail: &[Step]) -> Result<(), TestCaseError> {
        let digest = self.engine.state_digest();
        let restored = Engine::restore(self.config, &self.engine.snapshot());
        prop_assert!(
            restored.is_ok(),
            "design §1.5 determinism: snapshot restores: {:?}",
            restored.err()
        );
        let mut restored = restored.unwrap();
        prop_assert_eq!(
            restored.state_digest(),
            digest,
            "design §1.5 determinism: restore(snapshot) has the original digest"
        );
        prop_assert!(
            restored.check_invariants().is_ok(),
            "design §1.1/§1.2 restored engine keeps the invariants"
        );

        let mut replica = Engine::new(self.config);
        for (i, (stamp, cmd, outcome, events)) in self.log.iter().enumerate() {
            let mut ev = Vec::new();
            let out = replica.apply(*stamp, cmd, &mut ev);
            prop_assert_eq!(
                &out,
                outcome,
                "design §1.5 determinism: replica outcome at step {}",
                i
            );
            prop_assert_eq!(
                &ev,
                events,
                "design §1.5 determinism: replica events at step {}",
                i
            );
        }
        prop_assert_eq!(
            replica.state_digest(),
            digest,
            "design §1.5 determinism: replica digest"
        );

        for step in tail {
            let (stamp, cmd, outcome, events) = self.step(step)?;
            let mut ev = Vec::new();
            let out = restored.apply(stamp, &cmd, &mut ev);
            prop_assert_eq!(
                out,
                outcome,
                "design §1.5 determinism: restored engine answers like the original"
            );
            prop_assert_eq!(
                ev,
                events,
                "design §1.5 determinism: restored engine emits the original's events"
            );
            prop_assert_eq!(
                restored.state_digest(),
                self.engine.state_digest(),
                "design §1.5 determinism: restored engine continues digest-equal"
            );
        }
        Ok(())
    }
}

fn cases(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
        ..ProptestConfig::default()
    }
}

/// Nothing is ever forgotten, so the model is exact.
fn remember_all() -> EngineConfig {
    EngineConfig {
        dedup: DedupConfig {
            window_ms: u64::MAX,
            entries_max: usize::MAX,
        },
        ..Default::default()
    }
}

/// Generations rotate every 4 new ids (`by_time`: every 5 s of log time),
/// so request ids and resolved reservations are forgotten all the time.
fn forget_fast(by_time: bool) -> EngineConfig {
    let dedup = if by_time {
        DedupConfig {
            window_ms: 5_000,
            entries_max: usize::MAX,
        }
    } else {
        DedupConfig {
            window_ms: u64::MAX,
            entries_max: 8,
        }
    };
    EngineConfig {
        dedup,
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(cases(20_000))]

    #[test]
    fn engine_matches_model((world, steps, tail) in scenario(60)) {
        let mut run = Run::new(remember_all(), &world, true)?;
        for step in &steps {
            let _ = run.step(step)?;
        }
        run.finish(&tail)?;
    }
}

proptest! {
    #![proptest_config(cases(5_000))]

    #[test]
    fn invariants_hold_when_ids_are_forgotten(
        (world, steps, tail) in scenario(60),
        by_time in prop::bool::weighted(0.25),
    ) {
        let mut run = Run::new(forget_fast(by_time), &world, false)?;
        for step in &steps {
            let _ = run.step(step)?;
        }
        run.finish(&tail)?;
    }
}

// ===========================================================================
// Minimal cases of engine bugs the model found
// ===========================================================================

/// Applies `kinds` to a fresh engine (request ids 1, 2, ..., one ms apart)
/// and returns it with the outcomes.
fn replay(kinds: Vec<CommandKind>) -> (Engine, Vec<Outcome>) {
    let mut engine = Engine::new(remember_all());
    let outcomes = kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let cmd = Command {
                request_id: RequestId(i as u128 + 1),
                kind,
            };
            let stamp = Stamp {
                index: i as u64 + 1,
                now_ms: 1_000_000 + i as u64,
            };
            engine.apply(stamp, &cmd, &mut Vec::new())
        })
        .collect();
    (engine, outcomes)
}

fn upsert(location: &str, region: &str, priority: u32) -> CommandKind {
    CommandKind::UpsertLocation(UpsertLocation {
        location: location.into(),
        region: region.into(),
        priority,
    })
}

fn stock(sku: &str, location: &str, delta: i64) -> CommandKind {
    CommandKind::AdjustStock(AdjustStock {
        sku: sku.into(),
        location: location.into(),
        delta,
        expected_on_hand: None,
    })
}

fn reserve_auto(sku: &str, quantity: i64, policy: FillPolicy) -> CommandKind {
    CommandKind::Reserve(Reserve {
        owner: "cart".into(),
        customer: "c0".into(),
        region: None,
        lines: vec![ReserveLine {
            sku: sku.into(),
            quantity,
            location: None,
        }],
        ttl_ms: 60_000,
        policy,
        allow_split: false,
    })
}

/// Bug found by `engine_matches_model`: among candidate locations with the
/// same (largest) availability, the "best candidate" of an automatic line
/// must be the best-ranked one (design §3: region, priority, id). The engine
/// used `max_by_key` over the rank-sorted candidates, which returns the
/// LAST maximum, i.e. the worst-ranked location: the `OutOfStock` refusal
/// named the wrong location, and a partial, unsplit reserve held stock at
/// the less preferred location.
#[test]
fn best_candidate_ties_go_to_the_better_ranked_location() {
    let setup = || {
        vec![
            upsert("L0", "north", 0),
            upsert("L1", "north", 1),
            stock("A", "L0", 3),
            stock("A", "L1", 3),
        ]
    };
    let mut kinds = setup();
    kinds.push(reserve_auto("A", 4, FillPolicy::AllOrNothing));
    let (_, outcomes) = replay(kinds);
    assert_eq!(
        outcomes[4],
        Err(Refusal::OutOfStock {
            line: 0,
            location: Some(LocationId(0)),
            requested: 4,
            available: 3,
        }),
        "spec: OutOfStock names the best-ranked of the equally best candidates"
    );

    let mut kinds = setup();
    kinds.push(reserve_auto("A", 4, FillPolicy::Partial));
    let (engine, outcomes) = replay(kinds);
    let Ok(Success::Reserved { reservation }) = outcomes[4] else {
        panic!(
            "spec: a partial reserve holds what it can: {:?}",
            outcomes[4]
        );
    };
    let lines = &engine.reservation(reservation).unwrap().lines;
    assert_eq!(
        (lines.len(), lines[0].row, lines[0].quantity),
        (1, engine.row_id("A", "L0").unwrap(), 3),
        "spec: a partial unsplit line takes the best-ranked of the equally best candidates"
    );
}
