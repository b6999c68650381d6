//! The ledger of one shard: applies commands in log order.
//!
//! `Engine::apply` is the only way state changes. It is a pure function of
//! the engine's state, the command and the entry's `Stamp`: no clock, no
//! randomness, no iteration over hash maps (design §1.5). It either applies a
//! command fully or changes nothing but time-driven expiry, which runs first
//! on every entry: every hold due at the entry's time is expired before the
//! command sees the rows, so a confirm can never beat its own TTL.
//!
//! The command handlers live in sibling modules (`apply_reserve`,
//! `apply_resolve`, `apply_stock`); this module owns the state, dispatch,
//! the idempotency step and the read side.

use crate::board::{RowSignal, SkuSignal, StockBoard, SCARCE_UNITS_DEFAULT};
use crate::catalog::{Location, LocationTable, SkuTable};
use crate::command::{Command, CommandKind};
use crate::customer_limits::CustomerLimits;
use crate::dedup::{DedupConfig, DedupTable, Remembered};
use crate::event::Event;
use crate::expiry::ExpiryIndex;
use crate::ids::{LocationId, ReservationId, RowId, SkuId, Stamp};
use crate::outcome::{Outcome, Refusal, Success};
use crate::reservation::{Reservation, ReservationSlab};
use crate::stock::{Row, StockTable};
use std::sync::Arc;

/// Settings that every replica of a shard must share (they shape state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Idempotency retention.
    pub dedup: DedupConfig,
    /// Stock-board threshold (does not shape state; see [`StockBoard`]).
    pub scarce_units: i64,
    /// UNSAFE, for chaos tests only (`--unsafe-chaos-bug=skip-dedup`):
    /// treat every request as new, so a retry applies twice and breaks
    /// design §1.3 on purpose; the chaos checker must report it. Part of
    /// the engine's config so that every replica applies the same log the
    /// same way. Always `false` outside that test.
    pub unsafe_skip_dedup: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            dedup: DedupConfig::default(),
            scarce_units: SCARCE_UNITS_DEFAULT,
            unsafe_skip_dedup: false,
        }
    }
}

/// Availability of one row, for reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Availability {
    /// The row.
    pub row: RowId,
    /// Physical units.
    pub on_hand: i64,
    /// Units held by pending reservations.
    pub held: i64,
    /// Units a new hold may take.
    pub available: i64,
}

/// The reservation ledger of one shard.
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) skus: SkuTable,
    pub(crate) locations: LocationTable,
    pub(crate) rows: StockTable,
    pub(crate) reservations: ReservationSlab,
    pub(crate) expiry: ExpiryIndex,
    /// Reservations in state `Pending` (the expiry index cannot say: it
    /// deletes lazily), for the pending-holds gauge.
    pub(crate) pending: usize,
    pub(crate) dedup: DedupTable,
    pub(crate) limits: CustomerLimits,
    /// Latest entry time applied; entry times below it are raised to it, so
    /// engine time never runs backwards across a leader change.
    pub(crate) now_ms: u64,
    pub(crate) applied_index: u64,
    pub(crate) board: Arc<StockBoard>,
    /// SKUs whose rows changed in the current command (board upkeep).
    pub(crate) touched: Vec<SkuId>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(EngineConfig::default())
    }
}

impl Engine {
    /// An empty ledger.
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            config,
            skus: SkuTable::new(),
            locations: LocationTable::new(),
            rows: StockTable::new(),
            reservations: ReservationSlab::new(),
            expiry: ExpiryIndex::new(),
            pending: 0,
            dedup: DedupTable::new(config.dedup),
            limits: CustomerLimits::new(),
            now_ms: 0,
            applied_index: 0,
            board: Arc::new(StockBoard::new(config.scarce_units)),
            touched: Vec::new(),
        }
    }

    /// Applies one command at `stamp`, appending the events it caused to
    /// `events` (time-driven expiries first). Returns the outcome; a refusal
    /// means the command changed nothing.
    pub fn apply(&mut self, stamp: Stamp, cmd: &Command, events: &mut Vec<Event>) -> Outcome {
        let now_ms = self.advance(stamp);
        let (expired, units_expired) = self.expire_due(now_ms, events);
        let outcome = self.apply_command(now_ms, cmd, events, expired, units_expired);
        self.publish_touched();
        outcome
    }

    fn apply_command(
        &mut self,
        now_ms: u64,
        cmd: &Command,
        events: &mut Vec<Event>,
        expired: u64,
        units_expired: u64,
    ) -> Outcome {
        cmd.validate()?;
        if let CommandKind::ExpireUpTo(e) = &cmd.kind {
            // Expiry already ran for this entry's time; the command exists so
            // that time advances in the log while no client writes.
            if e.up_to_ms > now_ms {
                return Err(crate::outcome::InvalidArgument {
                    field: "up_to_ms",
                    line: None,
                    why: "is after the entry's time",
                }
                .into());
            }
            return Ok(Success::Expired {
                reservations: expired,
                units_released: units_expired,
            });
        }
        let digest = cmd.body_digest();
        let remembered = if self.config.unsafe_skip_dedup {
            None
        } else {
            self.dedup.get(cmd.request_id)
        };
        if let Some(r) = remembered {
            return if r.digest == digest {
                r.outcome
            } else {
                Err(Refusal::DuplicateRequestMismatch)
            };
        }
        let outcome = match &cmd.kind {
            CommandKind::Reserve(r) => self.reserve(now_ms, r, events),
            CommandKind::Confirm(c) => self.confirm(c, events),
            CommandKind::Release(r) => self.release(r.reservation, events),
            CommandKind::Extend(e) => self.extend(now_ms, e, events),
            CommandKind::AdjustStock(a) => self.adjust_stock(a, events),
            CommandKind::UpsertLocation(u) => self.upsert_location(u, events),
            CommandKind::SetPolicy(p) => self.set_policy(p, events),
            CommandKind::ExpireUpTo(_) => unreachable!("handled above"),
        };
        // Refusals for bad fields are a pure function of the body: they are
        // not remembered, so the client may fix the body and reuse the id.
        if !matches!(outcome, Err(Refusal::InvalidArgument(_))) {
            self.remember(now_ms, cmd, digest, outcome);
        }
        outcome
    }

    fn advance(&mut self, stamp: Stamp) -> u64 {
        self.now_ms = self.now_ms.max(stamp.now_ms);
        self.applied_index = self.applied_index.max(stamp.index);
        self.now_ms
    }

    fn remember(&mut self, now_ms: u64, cmd: &Command, digest: u64, outcome: Outcome) {
        // Evictions come out oldest first, in log order: the same on every
        // replica, so the slots they free are reused in the same order.
        while let Some(gone) = self.dedup.pop_expired(now_ms) {
            if let Ok(Success::Reserved { reservation }) = gone.outcome {
                self.forget_reserve(reservation);
            }
        }
        if self.config.unsafe_skip_dedup && self.dedup.get(cmd.request_id).is_some() {
            return; // the broken build keeps the first record only
        }
        self.dedup.insert(Remembered {
            id: cmd.request_id,
            applied_at_ms: now_ms,
            digest,
            outcome,
        });
    }

    /// The dedup table no longer names `id`: free it if it is resolved.
    fn forget_reserve(&mut self, id: ReservationId) {
        let Some(res) = self.reservations.get_mut(id) else {
            return;
        };
        res.remembered = false;
        if res.state != crate::reservation::ReservationState::Pending {
            self.reservations.remove(id);
        }
    }

    /// Marks a row's SKU for board upkeep after this command.
    pub(crate) fn touch(&mut self, row: RowId) {
        let r = self.rows.row(row);
        let sku = r.sku;
        let watched = r.available() <= self.config.scarce_units || r.sku_on_board;
        if watched && !self.touched.contains(&sku) {
            self.touched.push(sku);
        }
    }

    fn publish_touched(&mut self) {
        if self.touched.is_empty() {
            return;
        }
        let touched = std::mem::take(&mut self.touched);
        for &sku in &touched {
            self.publish_sku(sku);
        }
        self.touched = touched;
        self.touched.clear();
    }

    pub(crate) fn publish_sku(&mut self, sku: SkuId) {
        let threshold = self.config.scarce_units;
        let scarce = self
            .rows
            .rows_of(&self.skus, sku)
            .any(|r| self.rows.row(r).available() <= threshold);
        let name = self.skus.name(sku);
        if !scarce {
            let first = self.rows.rows_of(&self.skus, sku).next();
            if first.is_some_and(|r| self.rows.row(r).sku_on_board) {
                self.board.withdraw(name);
                self.mark_on_board(sku, false);
            }
            return;
        }
        let rows = self
            .rows
            .rows_of(&self.skus, sku)
            .map(|r| {
                let row = self.rows.row(r);
                RowSignal {
                    location: self.locations.location(row.location).name.clone(),
                    available: row.available(),
                    held: row.held,
                }
            })
            .collect();
        self.board.publish(
            name,
            SkuSignal {
                rows,
                as_of_index: self.applied_index,
            },
        );
        self.mark_on_board(sku, true);
    }

    fn mark_on_board(&mut self, sku: SkuId, on_board: bool) {
        let rows: Vec<RowId> = self.rows.rows_of(&self.skus, sku).collect();
        for r in rows {
            self.rows.row_mut(r).sku_on_board = on_board;
        }
    }

    /// Rebuilds the board from the rows (after restore).
    pub(crate) fn republish_all(&mut self) {
        self.board.clear();
        for i in 0..self.skus.len() {
            self.publish_sku(SkuId(i as u32));
        }
    }

    // ----- read side -------------------------------------------------------

    /// The board of scarce SKUs, shared with the server's pre-filter.
    pub fn board(&self) -> Arc<StockBoard> {
        self.board.clone()
    }

    /// Log index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The earliest time a pending hold may be due (possibly of a hold
    /// since resolved): the leader proposes `ExpireUpTo` once it passes.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.expiry.first_due_ms()
    }

    /// Engine time: the latest entry time applied.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The row of `(sku, location)`, if it was ever stocked or configured.
    pub fn row_id(&self, sku: &str, location: &str) -> Option<RowId> {
        let sku = self.skus.get(sku)?;
        let location = self.locations.get(location)?;
        self.rows.find(sku, location)
    }

    /// A row by id. Ids come from outcomes, events and reservations of this
    /// engine.
    pub fn row(&self, row: RowId) -> &Row {
        self.rows.row(row)
    }

    /// Cheap availability of one row: two hash probes, no allocation.
    pub fn availability(&self, sku: &str, location: &str) -> Option<Availability> {
        let row = self.row_id(sku, location)?;
        Some(self.availability_of(row))
    }

    /// Availability of a row by id.
    pub fn availability_of(&self, row: RowId) -> Availability {
        let r = self.rows.row(row);
        Availability {
            row,
            on_hand: r.on_hand,
            held: r.held,
            available: r.available(),
        }
    }

    /// Every row of a SKU (one per location), in location-id order.
    pub fn rows_of_sku(&self, sku: &str) -> Vec<RowId> {
        let Some(sku) = self.skus.get(sku) else {
            return Vec::new();
        };
        let mut rows: Vec<RowId> = self.rows.rows_of(&self.skus, sku).collect();
        rows.sort_by_key(|&r| self.rows.row(r).location);
        rows
    }

    /// Name of a SKU.
    pub fn sku_name(&self, sku: SkuId) -> &str {
        self.skus.name(sku)
    }

    /// A location by id.
    pub fn location(&self, location: LocationId) -> &Location {
        self.locations.location(location)
    }

    /// A location id by name.
    pub fn location_id(&self, name: &str) -> Option<LocationId> {
        self.locations.get(name)
    }

    /// All locations, by id.
    pub fn locations(&self) -> &[Location] {
        self.locations.all()
    }

    /// A retained reservation (pending, or resolved and still remembered).
    pub fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(id)
    }

    /// Retained reservations in id-slot order.
    pub fn reservations(&self) -> impl Iterator<Item = (ReservationId, &Reservation)> {
        self.reservations.iter()
    }

    /// Retained reservations in slot order from slot `start` on: a listing
    /// scans a bounded number of slots per call and resumes at the next.
    pub fn reservations_from(
        &self,
        start: u32,
    ) -> impl Iterator<Item = (ReservationId, &Reservation)> {
        self.reservations.iter_from(start)
    }

    /// One past the highest reservation slot: where a slot-order scan ends.
    pub fn reservation_slot_end(&self) -> u32 {
        self.reservations.slot_count()
    }

    /// Every row's id, in creation order (rows are never removed), for
    /// tools that read the whole state (state dumps for chaos checks).
    pub fn row_ids(&self) -> impl Iterator<Item = RowId> {
        (0..self.row_count() as u32).map(RowId)
    }

    /// Number of stock rows.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// Number of retained reservations.
    pub fn reservation_count(&self) -> usize {
        self.reservations.live
    }

    /// Number of pending reservations (holds not yet confirmed, released
    /// or expired): what operators watch to see holds pile up.
    pub fn pending_count(&self) -> usize {
        self.pending
    }

    /// Number of request ids remembered.
    pub fn dedup_len(&self) -> usize {
        self.dedup.len()
    }

    /// Units a customer holds or bought of a limited SKU in its current
    /// campaign (0 when unlimited).
    pub fn customer_usage(&self, sku: &str, customer: &str) -> u64 {
        self.skus
            .get(sku)
            .map(|s| self.limits.used(s, customer))
            .unwrap_or(0)
    }

    /// Bytes of heap this engine holds, by the capacities of its tables
    /// (an estimate for sizing; the benches also measure allocations).
    pub fn heap_bytes(&self) -> usize {
        self.skus.heap_bytes()
            + self.rows.heap_bytes()
            + self.reservations.heap_bytes()
            + self.expiry.heap_bytes()
            + self.dedup.heap_bytes()
    }

    /// Checks the promises of design §1 over the whole state; returns the
    /// first one broken. O(state): for tests, restore and chaos checks.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut held = vec![0i64; self.rows.len()];
        let mut pending = 0usize;
        for (id, res) in self.reservations.iter() {
            if res.state != crate::reservation::ReservationState::Pending {
                continue;
            }
            pending += 1;
            for line in &res.lines {
                let slot = held.get_mut(line.row.0 as usize).ok_or_else(|| {
                    format!("reservation {id:?} names unknown row {:?}", line.row)
                })?;
                *slot += line.quantity as i64;
            }
        }
        if pending != self.pending {
            return Err(format!(
                "{pending} reservations are pending but the count says {}",
                self.pending
            ));
        }
        for (i, row) in self.rows.rows().iter().enumerate() {
            if row.held != held[i] {
                return Err(format!(
                    "conservation: row {i} holds {} but pending lines sum to {}",
                    row.held, held[i]
                ));
            }
            if row.held > row.supply() {
                return Err(format!(
                    "oversell: row {i} holds {} of a supply of {}",
                    row.held,
                    row.supply()
                ));
            }
        }
        Ok(())
    }
}
