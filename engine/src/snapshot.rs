//! Snapshot and restore of a whole shard, and the state digest.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic "HFLEDGER" | version u32 | body_len u64 | body | xxh3-64(body) u64
//! ```
//!
//! The body lists the state in an order that depends only on the state, never
//! on hash-map layout: locations and SKUs by id, rows by id, reservation
//! slots by index, limits and usage sorted by key, idempotency entries in log
//! order. Derived structures (name indexes, expiry index, stock
//! board) are rebuilt on restore. Because the body is canonical, its
//! xxh3-128 is the shard's *state digest*: two replicas that applied the same
//! log have the same digest (design §1.5).
//!
//! Restore trusts nothing: after the checksum it checks every id against its
//! table, the row lists, the free list, and conservation (held equals the
//! pending lines), and returns an error for the first inconsistency.

use crate::catalog::{LocationTable, SkuTable, NO_ROW};
use crate::codec::{DecodeError, Reader, Writer};
use crate::command::CustomerLimit;
use crate::customer_limits::{ActiveLimit, UsageKey};
use crate::dedup::Remembered;
use crate::engine::{Engine, EngineConfig};
use crate::ids::{LocationId, RequestId, ReservationId, RowId, SkuId};
use crate::limits::*;
use crate::outcome::{Outcome, Refusal, Success};
use crate::reservation::{Line, Reservation, ReservationState, Slot};
use crate::stock::{Row, StockTable};
use thiserror::Error;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

const MAGIC: &[u8; 8] = b"HFLEDGER";
/// Version of the body layout; bump on any change to it.
pub const SNAPSHOT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 8;

/// Why a snapshot could not be restored.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a ledger snapshot.
    #[error("not a Holdfast ledger snapshot (bad magic)")]
    BadMagic,
    /// Written by a version we cannot read.
    #[error("snapshot version {0} is not supported (this build reads {SNAPSHOT_VERSION})")]
    UnsupportedVersion(u32),
    /// Header length and actual length disagree (truncated or padded).
    #[error("snapshot length mismatch: header says {declared} body bytes, file has {actual}")]
    LengthMismatch {
        /// Body bytes the header declares.
        declared: u64,
        /// Body bytes present.
        actual: u64,
    },
    /// Body bytes do not match their checksum.
    #[error("snapshot checksum mismatch: stored {stored:#018x}, computed {computed:#018x}")]
    Checksum {
        /// Checksum in the file.
        stored: u64,
        /// Checksum of the body read.
        computed: u64,
    },
    /// The body is malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The body decodes but breaks an invariant.
    #[error("snapshot inconsistent: {0}")]
    Inconsistent(String),
}

impl Engine {
    /// The whole state as self-checking bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let body = self.encode_body();
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len() + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&xxh3_64(&body).to_le_bytes());
        out
    }

    /// A digest of the whole state that is equal on every replica that
    /// applied the same log (design §1.5).
    pub fn state_digest(&self) -> u128 {
        xxh3_128(&self.encode_body())
    }

    /// Rebuilds an engine from `snapshot`, checking it thoroughly.
    pub fn restore(config: EngineConfig, snapshot: &[u8]) -> Result<Engine, SnapshotError> {
        let body = check_frame(snapshot)?;
        let mut engine = Engine::new(config);
        let mut r = Reader::new(body);
        decode_body(&mut engine, &mut r)?;
        if !r.is_empty() {
            return Err(r.corrupt("trailing bytes after the body").into());
        }
        for (id, res) in engine.reservations.iter() {
            if res.state == ReservationState::Pending {
                engine.expiry.insert(res.expires_at_ms, id);
                engine.pending += 1;
            }
        }
        engine
            .check_invariants()
            .map_err(SnapshotError::Inconsistent)?;
        engine.republish_all();
        Ok(engine)
    }

    fn encode_body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.now_ms);
        w.u64(self.applied_index);
        self.encode_catalog(&mut w);
        self.encode_reservations(&mut w);
        self.encode_limits(&mut w);
        w.u64(self.dedup.len() as u64);
        for r in self.dedup.iter() {
            w.u128(r.id.0);
            w.u64(r.applied_at_ms);
            w.u64(r.digest);
            encode_outcome(&mut w, &r.outcome);
        }
        w.buf
    }

    fn encode_catalog(&self, w: &mut Writer) {
        let locations = self.locations.all();
        w.u64(locations.len() as u64);
        for l in locations {
            w.str(&l.name);
            w.str(&l.region);
            w.u32(l.priority);
        }
        w.u64(self.skus.len() as u64);
        for i in 0..self.skus.len() {
            let id = SkuId(i as u32);
            w.str(self.skus.name(id));
            w.u32(self.skus.entry(id).first_row);
        }
        w.u64(self.rows.len() as u64);
        for row in self.rows.rows() {
            w.i64(row.on_hand);
            w.i64(row.held);
            w.i64(row.safety_stock);
            w.i64(row.backorder_allowance);
            w.u32(row.sku.0);
            w.u16(row.location.0);
            w.u32(row.next_in_sku);
        }
    }

    fn encode_reservations(&self, w: &mut Writer) {
        w.u64(self.reservations.slots.len() as u64);
        for slot in self.reservations.slots.iter() {
            w.u32(slot.generation);
            match &slot.reservation {
                None => w.u8(0),
                Some(res) => {
                    w.u8(1);
                    encode_reservation(w, res);
                }
            }
        }
        w.u64(self.reservations.free.len() as u64);
        for &slot in &self.reservations.free {
            w.u32(slot);
        }
    }

    fn encode_limits(&self, w: &mut Writer) {
        w.u32(self.limits.last_epoch);
        let mut active: Vec<(&SkuId, &ActiveLimit)> = self.limits.active.iter().collect();
        active.sort_unstable_by_key(|(sku, _)| **sku);
        w.u64(active.len() as u64);
        for (sku, a) in active {
            w.u32(sku.0);
            w.u64(a.limit.max_units);
            w.u32(a.limit.campaign);
            w.u32(a.epoch);
        }
        let mut usage: Vec<(&UsageKey, &u64)> = self.limits.usage.iter().collect();
        usage.sort_unstable_by(|a, b| (a.0.sku, &a.0.customer).cmp(&(b.0.sku, &b.0.customer)));
        w.u64(usage.len() as u64);
        for (key, &units) in usage {
            w.u32(key.sku.0);
            w.str(&key.customer);
            w.u64(units);
        }
    }
}

fn check_frame(snapshot: &[u8]) -> Result<&[u8], SnapshotError> {
    if snapshot.len() < HEADER_BYTES + 8 || &snapshot[..8] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = u32::from_le_bytes(snapshot[8..12].try_into().expect("4 bytes"));
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    let declared = u64::from_le_bytes(snapshot[12..20].try_into().expect("8 bytes"));
    let actual = (snapshot.len() - HEADER_BYTES - 8) as u64;
    if declared != actual {
        return Err(SnapshotError::LengthMismatch { declared, actual });
    }
    let body = &snapshot[HEADER_BYTES..snapshot.len() - 8];
    let stored = u64::from_le_bytes(snapshot[snapshot.len() - 8..].try_into().expect("8 bytes"));
    let computed = xxh3_64(body);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    Ok(body)
}

fn encode_reservation(w: &mut Writer, res: &Reservation) {
    w.str(&res.parties);
    w.u32(res.owner_len);
    w.u64(res.expires_at_ms);
    w.u64(res.created_at_ms);
    w.u8(res.state as u8);
    w.u8(res.remembered as u8);
    w.u64(res.lines.len() as u64);
    for l in &res.lines {
        w.u32(l.row.0);
        w.u16(l.request_line);
        w.u32(l.quantity);
        w.u32(l.confirmed);
        w.i64(l.available_after);
        w.u32(l.limit_epoch);
    }
}

fn encode_outcome(w: &mut Writer, o: &Outcome) {
    match *o {
        Ok(Success::Reserved { reservation }) => {
            w.u8(0);
            w.u64(reservation.0);
        }
        Ok(Success::Confirmed {
            reservation,
            units_confirmed,
            units_released,
        }) => {
            w.u8(1);
            w.u64(reservation.0);
            w.u64(units_confirmed);
            w.u64(units_released);
        }
        Ok(Success::Released {
            reservation,
            units_released,
        }) => {
            w.u8(2);
            w.u64(reservation.0);
            w.u64(units_released);
        }
        Ok(Success::Extended {
            reservation,
            expires_at_ms,
        }) => {
            w.u8(3);
            w.u64(reservation.0);
            w.u64(expires_at_ms);
        }
        Ok(Success::Adjusted {
            row,
            on_hand,
            available,
        }) => {
            w.u8(4);
            w.u32(row.0);
            w.i64(on_hand);
            w.i64(available);
        }
        Ok(Success::LocationUpserted { location, created }) => {
            w.u8(5);
            w.u16(location.0);
            w.u8(created as u8);
        }
        Ok(Success::PolicySet { sku }) => {
            w.u8(6);
            w.u32(sku.0);
        }
        Ok(Success::Expired {
            reservations,
            units_released,
        }) => {
            w.u8(7);
            w.u64(reservations);
            w.u64(units_released);
        }
        Err(Refusal::OutOfStock {
            line,
            location,
            requested,
            available,
        }) => {
            w.u8(16);
            w.u16(line);
            w.u8(location.is_some() as u8);
            w.u16(location.map_or(0, |l| l.0));
            w.u64(requested);
            w.i64(available);
        }
        Err(Refusal::LimitExceeded {
            line,
            limit,
            used,
            requested,
        }) => {
            w.u8(17);
            w.u16(line);
            w.u64(limit);
            w.u64(used);
            w.u64(requested);
        }
        Err(Refusal::NotPending { state }) => {
            w.u8(18);
            w.u8(state as u8);
        }
        Err(Refusal::UnknownReservation) => w.u8(19),
        Err(Refusal::UnknownLocation { line }) => {
            w.u8(20);
            w.u8(line.is_some() as u8);
            w.u16(line.unwrap_or(0));
        }
        Err(Refusal::DuplicateRequestMismatch) => w.u8(21),
        Err(Refusal::ExpectedOnHandMismatch { expected, actual }) => {
            w.u8(22);
            w.i64(expected);
            w.i64(actual);
        }
        Err(Refusal::HeldExceedsStock { held, supply }) => {
            w.u8(23);
            w.i64(held);
            w.i64(supply);
        }
        Err(Refusal::InvalidArgument(_)) => {
            unreachable!("InvalidArgument outcomes are never remembered")
        }
    }
}

fn decode_body(e: &mut Engine, r: &mut Reader<'_>) -> Result<(), SnapshotError> {
    e.now_ms = r.u64()?;
    e.applied_index = r.u64()?;
    decode_catalog(e, r)?;
    decode_reservations(e, r)?;
    decode_limits(e, r)?;
    decode_dedup(e, r)
}

fn decode_catalog(e: &mut Engine, r: &mut Reader<'_>) -> Result<(), SnapshotError> {
    let n = r.count(4 + 4 + 4)?;
    if n > LOCATIONS_MAX {
        return Err(r
            .corrupt(format!("{n} locations exceed {LOCATIONS_MAX}"))
            .into());
    }
    e.locations = LocationTable::new();
    for _ in 0..n {
        let name = r.str(LOCATION_BYTES_MAX)?;
        let region = r.str(REGION_BYTES_MAX)?;
        let priority = r.u32()?;
        if !e.locations.upsert(name, region, priority).1 {
            return Err(r.corrupt(format!("location {name:?} listed twice")).into());
        }
    }
    let n = r.count(4 + 4)?;
    e.skus = SkuTable::new();
    let mut first_rows = Vec::with_capacity(n);
    for i in 0..n {
        let name = r.str(SKU_BYTES_MAX)?;
        if e.skus.intern(name) != SkuId(i as u32) {
            return Err(r.corrupt(format!("SKU {name:?} listed twice")).into());
        }
        first_rows.push(r.u32()?);
    }
    let n = r.count(8 * 4 + 4 + 2 + 4)?;
    if n as u64 > SNAPSHOT_ROWS_MAX {
        return Err(r
            .corrupt(format!("{n} rows exceed the row id space"))
            .into());
    }
    e.rows = StockTable::new();
    for _ in 0..n {
        let row = Row {
            on_hand: r.i64()?,
            held: r.i64()?,
            safety_stock: r.i64()?,
            backorder_allowance: r.i64()?,
            sku: SkuId(r.u32()?),
            location: LocationId(r.u16()?),
            next_in_sku: r.u32()?,
            sku_on_board: false,
        };
        if row.sku.0 as usize >= e.skus.len() || row.location.0 as usize >= e.locations.all().len()
        {
            return Err(r.corrupt("row names an unknown SKU or location").into());
        }
        if row.next_in_sku != NO_ROW && row.next_in_sku as usize >= n {
            return Err(r.corrupt("row list link out of range").into());
        }
        if !e.rows.push_restored(row) {
            return Err(r.corrupt("two rows for one (SKU, location)").into());
        }
    }
    for (i, first) in first_rows.into_iter().enumerate() {
        e.skus.entry_mut(SkuId(i as u32)).first_row = first;
    }
    check_row_lists(e).map_err(SnapshotError::Inconsistent)
}

/// Every row is reachable exactly once, from its own SKU's list.
fn check_row_lists(e: &Engine) -> Result<(), String> {
    let mut seen = vec![false; e.rows.len()];
    for i in 0..e.skus.len() {
        let sku = SkuId(i as u32);
        let mut next = e.skus.entry(sku).first_row;
        while next != NO_ROW {
            let slot = seen
                .get_mut(next as usize)
                .ok_or_else(|| format!("SKU {i} lists unknown row {next}"))?;
            if *slot {
                return Err(format!("row {next} is listed twice (or a cycle)"));
            }
            *slot = true;
            let row = e.rows.row(RowId(next));
            if row.sku != sku {
                return Err(format!("row {next} is listed under the wrong SKU"));
            }
            next = row.next_in_sku;
        }
    }
    match seen.iter().position(|s| !s) {
        Some(orphan) => Err(format!("row {orphan} is in no SKU's list")),
        None => Ok(()),
    }
}

fn decode_reservations(e: &mut Engine, r: &mut Reader<'_>) -> Result<(), SnapshotError> {
    let n = r.count(4 + 1)?;
    if n > u32::MAX as usize {
        return Err(r.corrupt("too many reservation slots").into());
    }
    for _ in 0..n {
        let generation = r.u32()?;
        let reservation = if r.bool()? {
            e.reservations.live += 1;
            Some(decode_reservation(e, r)?)
        } else {
            None
        };
        e.reservations.slots.push(Slot {
            generation,
            reservation,
        });
    }
    let n = r.count(4)?;
    let mut in_free_list = vec![false; e.reservations.slots.len()];
    for _ in 0..n {
        let slot = r.u32()?;
        let fresh = in_free_list
            .get_mut(slot as usize)
            .filter(|seen| !**seen)
            .ok_or_else(|| r.corrupt(format!("free slot {slot} out of range or repeated")))?;
        *fresh = true;
        if e.reservations.slots[slot as usize].reservation.is_some() {
            return Err(r
                .corrupt(format!("free list names occupied slot {slot}"))
                .into());
        }
        e.reservations.free.push(slot);
    }
    if e.reservations.free.len() + e.reservations.live != e.reservations.slots.len() {
        return Err(SnapshotError::Inconsistent(
            "an empty reservation slot is missing from the free list".into(),
        ));
    }
    Ok(())
}

fn decode_reservation(e: &Engine, r: &mut Reader<'_>) -> Result<Reservation, SnapshotError> {
    let parties = r.str(2 * PARTY_BYTES_MAX)?;
    let owner_len = r.u32()?;
    if !parties.is_char_boundary(owner_len as usize) {
        return Err(r.corrupt("owner length splits the party ids").into());
    }
    let expires_at_ms = r.u64()?;
    let created_at_ms = r.u64()?;
    let state =
        ReservationState::from_u8(r.u8()?).ok_or_else(|| r.corrupt("unknown reservation state"))?;
    let remembered = r.bool()?;
    if !remembered && state != ReservationState::Pending {
        return Err(r
            .corrupt("a resolved, forgotten reservation was not freed")
            .into());
    }
    let n = r.count(4 + 2 + 4 + 4 + 8 + 4)?;
    let mut lines = smallvec::SmallVec::with_capacity(n);
    for _ in 0..n {
        let line = Line {
            row: RowId(r.u32()?),
            request_line: r.u16()?,
            quantity: r.u32()?,
            confirmed: r.u32()?,
            available_after: r.i64()?,
            limit_epoch: r.u32()?,
        };
        if line.row.0 as usize >= e.rows.len() || line.confirmed > line.quantity {
            return Err(r
                .corrupt("reservation line names an unknown row or over-confirms")
                .into());
        }
        lines.push(line);
    }
    Ok(Reservation {
        lines,
        parties: parties.into(),
        owner_len,
        expires_at_ms,
        created_at_ms,
        state,
        remembered,
    })
}

fn decode_limits(e: &mut Engine, r: &mut Reader<'_>) -> Result<(), SnapshotError> {
    e.limits.last_epoch = r.u32()?;
    let n = r.count(4 + 8 + 4 + 4)?;
    for _ in 0..n {
        let sku = SkuId(r.u32()?);
        let limit = CustomerLimit {
            max_units: r.u64()?,
            campaign: r.u32()?,
        };
        let epoch = r.u32()?;
        if sku.0 as usize >= e.skus.len() || epoch == 0 || epoch > e.limits.last_epoch {
            return Err(r
                .corrupt("customer limit names an unknown SKU or epoch")
                .into());
        }
        e.limits.active.insert(sku, ActiveLimit { limit, epoch });
    }
    let n = r.count(4 + 4 + 8)?;
    for _ in 0..n {
        let sku = SkuId(r.u32()?);
        let customer = r.str(PARTY_BYTES_MAX)?;
        let units = r.u64()?;
        if !e.limits.active.contains_key(&sku) || units == 0 {
            return Err(r
                .corrupt("usage for a SKU without a limit, or of zero units")
                .into());
        }
        e.limits.usage.insert(
            UsageKey {
                sku,
                customer: customer.into(),
            },
            units,
        );
    }
    Ok(())
}

fn decode_dedup(e: &mut Engine, r: &mut Reader<'_>) -> Result<(), SnapshotError> {
    let n = r.count(16 + 8 + 8 + 1)?;
    if n > e.dedup.config.entries_max {
        return Err(r
            .corrupt(format!("{n} idempotency entries exceed this node's limit"))
            .into());
    }
    let mut last_at = 0;
    let mut reserves = 0;
    for _ in 0..n {
        let id = RequestId(r.u128()?);
        let applied_at_ms = r.u64()?;
        let digest = r.u64()?;
        let outcome = decode_outcome(e, r)?;
        if applied_at_ms < last_at || applied_at_ms > e.now_ms {
            return Err(r.corrupt("idempotency entries out of log order").into());
        }
        if e.dedup.get(id).is_some() {
            return Err(r
                .corrupt(format!("request id {:#x} remembered twice", id.0))
                .into());
        }
        last_at = applied_at_ms;
        if let Ok(Success::Reserved { .. }) = outcome {
            reserves += 1;
        }
        e.dedup.insert(Remembered {
            id,
            applied_at_ms,
            digest,
            outcome,
        });
    }
    // Each remembered reservation is named by exactly one remembered
    // Reserve (decode_outcome checked the other direction and ids are
    // unique), or it would never be freed.
    let remembered = e
        .reservations
        .iter()
        .filter(|(_, res)| res.remembered)
        .count();
    if remembered != reserves {
        return Err(SnapshotError::Inconsistent(format!(
            "{remembered} reservations are marked remembered but {reserves} Reserve outcomes are"
        )));
    }
    Ok(())
}

fn decode_outcome(e: &Engine, r: &mut Reader<'_>) -> Result<Outcome, SnapshotError> {
    let tag = r.u8()?;
    let outcome = match tag {
        0 => {
            let reservation = ReservationId(r.u64()?);
            if !e
                .reservations
                .get(reservation)
                .is_some_and(|res| res.remembered)
            {
                return Err(r
                    .corrupt("remembered reserve names no retained reservation")
                    .into());
            }
            Ok(Success::Reserved { reservation })
        }
        1 => Ok(Success::Confirmed {
            reservation: ReservationId(r.u64()?),
            units_confirmed: r.u64()?,
            units_released: r.u64()?,
        }),
        2 => Ok(Success::Released {
            reservation: ReservationId(r.u64()?),
            units_released: r.u64()?,
        }),
        3 => Ok(Success::Extended {
            reservation: ReservationId(r.u64()?),
            expires_at_ms: r.u64()?,
        }),
        4 => {
            let row = RowId(r.u32()?);
            if row.0 as usize >= e.rows.len() {
                return Err(r.corrupt("remembered outcome names an unknown row").into());
            }
            Ok(Success::Adjusted {
                row,
                on_hand: r.i64()?,
                available: r.i64()?,
            })
        }
        5 => {
            let location = LocationId(r.u16()?);
            if location.0 as usize >= e.locations.all().len() {
                return Err(r
                    .corrupt("remembered outcome names an unknown location")
                    .into());
            }
            Ok(Success::LocationUpserted {
                location,
                created: r.bool()?,
            })
        }
        6 => {
            let sku = SkuId(r.u32()?);
            if sku.0 as usize >= e.skus.len() {
                return Err(r.corrupt("remembered outcome names an unknown SKU").into());
            }
            Ok(Success::PolicySet { sku })
        }
        7 => Ok(Success::Expired {
            reservations: r.u64()?,
            units_released: r.u64()?,
        }),
        16 => {
            let line = r.u16()?;
            let has_location = r.bool()?;
            let location = LocationId(r.u16()?);
            if has_location && location.0 as usize >= e.locations.all().len() {
                return Err(r
                    .corrupt("remembered refusal names an unknown location")
                    .into());
            }
            Err(Refusal::OutOfStock {
                line,
                location: has_location.then_some(location),
                requested: r.u64()?,
                available: r.i64()?,
            })
        }
        17 => Err(Refusal::LimitExceeded {
            line: r.u16()?,
            limit: r.u64()?,
            used: r.u64()?,
            requested: r.u64()?,
        }),
        18 => {
            let state = ReservationState::from_u8(r.u8()?)
                .ok_or_else(|| r.corrupt("unknown reservation state"))?;
            Err(Refusal::NotPending { state })
        }
        19 => Err(Refusal::UnknownReservation),
        20 => {
            let has_line = r.bool()?;
            let line = r.u16()?;
            Err(Refusal::UnknownLocation {
                line: has_line.then_some(line),
            })
        }
        21 => Err(Refusal::DuplicateRequestMismatch),
        22 => Err(Refusal::ExpectedOnHandMismatch {
            expected: r.i64()?,
            actual: r.i64()?,
        }),
        23 => Err(Refusal::HeldExceedsStock {
            held: r.i64()?,
            supply: r.i64()?,
        }),
        other => return Err(r.corrupt(format!("unknown outcome tag {other}")).into()),
    };
    Ok(outcome)
}
