//! The commands the ledger applies: one per client request, plus the
//! leader's `ExpireUpTo` tick.
//!
//! A `Command` is what travels through the Raft log. Its fields hold the
//! client's raw values (signed quantities, unbounded strings) so that the
//! engine, not the transport, decides what is valid: `validate` is the single
//! place that refuses bad input, with the field it blames.

use crate::ids::{RequestId, ReservationId};
use crate::limits::*;
use crate::outcome::InvalidArgument;
use xxhash_rust::xxh3::xxh3_64;

/// One client request (or leader tick) with its idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Idempotency key: a retry with the same key and body gets the first
    /// answer (design §1.3).
    pub request_id: RequestId,
    /// What to do.
    pub kind: CommandKind,
}

/// The operations of the ledger (design §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// Hold stock for a cart or order.
    Reserve(Reserve),
    /// Turn a hold into a sale, wholly or partly.
    Confirm(Confirm),
    /// Give a hold back.
    Release(Release),
    /// Push a pending hold's expiry further out.
    Extend(Extend),
    /// Receive, count or write off stock.
    AdjustStock(AdjustStock),
    /// Create or change a location.
    UpsertLocation(UpsertLocation),
    /// Change safety stock, backorder allowance or a per-customer limit.
    SetPolicy(SetPolicy),
    /// Expire every pending hold with `expires_at_ms <= up_to_ms`.
    ExpireUpTo(ExpireUpTo),
}

/// All-or-nothing holds every line in full or nothing; partial holds what it
/// can of each line and refuses only if it can hold nothing at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FillPolicy {
    /// Every line in full, or refuse (the default).
    #[default]
    AllOrNothing,
    /// As much of each line as is available.
    Partial,
}

/// One requested line of a reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReserveLine {
    /// Product code.
    pub sku: String,
    /// Units wanted, 1..=`LINE_QUANTITY_MAX`.
    pub quantity: i64,
    /// A fixed location, or `None` to let the allocation policy choose.
    pub location: Option<String>,
}

/// Hold stock for `owner` (a cart or order id) on behalf of `customer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserve {
    /// Cart or order id the hold belongs to.
    pub owner: String,
    /// Customer id, for per-customer limits and listing.
    pub customer: String,
    /// Ship-to region: locations in this region are preferred.
    pub region: Option<String>,
    /// 1..=`RESERVE_LINES_MAX` lines.
    pub lines: Vec<ReserveLine>,
    /// Hold duration, `TTL_MS_MIN..=TTL_MS_MAX`.
    pub ttl_ms: u64,
    /// All-or-nothing (default) or partial.
    pub policy: FillPolicy,
    /// Whether one line may be split across several locations.
    pub allow_split: bool,
}

/// Confirm a pending reservation. `quantities`, when given, has one entry per
/// reservation line (in the order of the reservation's allocations): the
/// units to confirm on that line, `0..=held`; the rest is released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirm {
    /// The reservation.
    pub reservation: ReservationId,
    /// Per-line units to confirm, or `None` for all of them.
    pub quantities: Option<Vec<i64>>,
}

/// Release a pending reservation in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The reservation.
    pub reservation: ReservationId,
}

/// Set a pending reservation's expiry to `now + ttl_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extend {
    /// The reservation.
    pub reservation: ReservationId,
    /// New hold duration from the entry's time, `TTL_MS_MIN..=TTL_MS_MAX`.
    pub ttl_ms: u64,
}

/// Change `on_hand` of a row by `delta`; with `expected_on_hand` only if the
/// row currently has exactly that many (compare-and-set for ERP sync).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdjustStock {
    /// Product code.
    pub sku: String,
    /// An existing location.
    pub location: String,
    /// Units added (positive) or removed (negative).
    pub delta: i64,
    /// Apply only if `on_hand` equals this now.
    pub expected_on_hand: Option<i64>,
}

/// Create a location or change its region and priority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpsertLocation {
    /// Location name.
    pub location: String,
    /// Region, for nearest-region allocation.
    pub region: String,
    /// Allocation rank: lower is preferred.
    pub priority: u32,
}

/// A per-customer cap on the units of one SKU held or bought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CustomerLimit {
    /// Units a customer may hold plus have confirmed, 1..=`CUSTOMER_LIMIT_MAX`.
    pub max_units: u64,
    /// Campaign number: setting a new campaign starts every customer's count
    /// from zero; re-setting the same campaign keeps the counts.
    pub campaign: u32,
}

/// What `SetPolicy` does to a SKU's per-customer limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LimitChange {
    /// Leave it as it is.
    #[default]
    Keep,
    /// Remove the limit (and its counts).
    Clear,
    /// Set or replace the limit.
    Set(CustomerLimit),
}

/// Change row policy (safety stock, backorder allowance: need `location`)
/// and/or the SKU's per-customer limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetPolicy {
    /// Product code.
    pub sku: String,
    /// Location of the row, required for the row fields.
    pub location: Option<String>,
    /// Units never promised to anyone (kept back), `0..=STOCK_MAGNITUDE_MAX`.
    pub safety_stock: Option<i64>,
    /// Units that may be promised beyond `on_hand`, `0..=STOCK_MAGNITUDE_MAX`.
    pub backorder_allowance: Option<i64>,
    /// Per-customer limit of the SKU.
    pub customer_limit: LimitChange,
}

/// Expire every pending hold due at or before `up_to_ms` (which must not be
/// after the entry's own time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpireUpTo {
    /// Inclusive bound, ms since the Unix epoch.
    pub up_to_ms: u64,
}

fn invalid(field: &'static str, line: Option<usize>, why: &'static str) -> InvalidArgument {
    InvalidArgument {
        field,
        line: line.map(|l| l as u16),
        why,
    }
}

fn check_name(
    value: &str,
    max: usize,
    field: &'static str,
    line: Option<usize>,
) -> Result<(), InvalidArgument> {
    if value.is_empty() {
        return Err(invalid(field, line, "must not be empty"));
    }
    if value.len() > max {
        return Err(invalid(field, line, "is too long"));
    }
    if value.bytes().any(|b| b.is_ascii_control()) {
        return Err(invalid(field, line, "must not contain control characters"));
    }
    Ok(())
}

fn check_ttl(ttl_ms: u64) -> Result<(), InvalidArgument> {
    if !(TTL_MS_MIN..=TTL_MS_MAX).contains(&ttl_ms) {
        return Err(invalid(
            "ttl_ms",
            None,
            "must be between 1000 and 86400000 ms",
        ));
    }
    Ok(())
}

fn check_stock_figure(value: i64, field: &'static str) -> Result<(), InvalidArgument> {
    if !(0..=STOCK_MAGNITUDE_MAX).contains(&value) {
        return Err(invalid(field, None, "must be between 0 and 10^12"));
    }
    Ok(())
}

impl Command {
    /// Checks every field against the limits in [`crate::limits`]. A command
    /// that fails here is refused before it touches state, and is not
    /// recorded under its request id (so the client may fix and resend it).
    pub fn validate(&self) -> Result<(), InvalidArgument> {
        match &self.kind {
            CommandKind::Reserve(r) => r.validate(),
            CommandKind::Confirm(c) => c.validate(),
            CommandKind::Release(_) => Ok(()),
            CommandKind::Extend(e) => check_ttl(e.ttl_ms),
            CommandKind::AdjustStock(a) => a.validate(),
            CommandKind::UpsertLocation(u) => {
                check_name(&u.location, LOCATION_BYTES_MAX, "location", None)?;
                check_name(&u.region, REGION_BYTES_MAX, "region", None)
            }
            CommandKind::SetPolicy(p) => p.validate(),
            CommandKind::ExpireUpTo(_) => Ok(()),
        }
    }

    /// A 64-bit digest of the command body (everything but the request id),
    /// stable across versions and platforms: a retry must match the first
    /// body exactly to receive the first answer (design §1.3).
    pub fn body_digest(&self) -> u64 {
        // The fed bytes are gathered and hashed in one call: XXH3 of the
        // concatenation equals the streaming digest of the same updates, but
        // avoids the streaming state's setup and per-update overhead.
        let mut h = BodyBytes::new();
        self.kind.feed(&mut h);
        xxh3_64(h.bytes())
    }
}

impl Reserve {
    fn validate(&self) -> Result<(), InvalidArgument> {
        check_name(&self.owner, PARTY_BYTES_MAX, "owner_id", None)?;
        check_name(&self.customer, PARTY_BYTES_MAX, "customer_id", None)?;
        if let Some(region) = &self.region {
            check_name(region, REGION_BYTES_MAX, "region", None)?;
        }
        if self.lines.is_empty() {
            return Err(invalid("lines", None, "must hold at least one line"));
        }
        if self.lines.len() > RESERVE_LINES_MAX {
            return Err(invalid("lines", None, "must hold at most 100 lines"));
        }
        for (i, line) in self.lines.iter().enumerate() {
            check_name(&line.sku, SKU_BYTES_MAX, "sku", Some(i))?;
            if let Some(location) = &line.location {
                check_name(location, LOCATION_BYTES_MAX, "location", Some(i))?;
            }
            if !(1..=LINE_QUANTITY_MAX).contains(&line.quantity) {
                return Err(invalid(
                    "quantity",
                    Some(i),
                    "must be between 1 and 1000000",
                ));
            }
        }
        check_ttl(self.ttl_ms)
    }
}

impl Confirm {
    fn validate(&self) -> Result<(), InvalidArgument> {
        let Some(quantities) = &self.quantities else {
            return Ok(());
        };
        if quantities.is_empty() || quantities.len() > RESERVE_LINES_MAX * RESERVE_LINES_MAX {
            return Err(invalid(
                "quantities",
                None,
                "must have one entry per reservation line",
            ));
        }
        for (i, &q) in quantities.iter().enumerate() {
            if !(0..=LINE_QUANTITY_MAX).contains(&q) {
                return Err(invalid(
                    "quantities",
                    Some(i),
                    "must be between 0 and 1000000",
                ));
            }
        }
        if quantities.iter().all(|&q| q == 0) {
            return Err(invalid(
                "quantities",
                None,
                "confirm at least one unit, or use Release",
            ));
        }
        Ok(())
    }
}

impl AdjustStock {
    fn validate(&self) -> Result<(), InvalidArgument> {
        check_name(&self.sku, SKU_BYTES_MAX, "sku", None)?;
        check_name(&self.location, LOCATION_BYTES_MAX, "location", None)?;
        if self.delta.unsigned_abs() > STOCK_MAGNITUDE_MAX as u64 {
            return Err(invalid("delta", None, "magnitude must be at most 10^12"));
        }
        if let Some(expected) = self.expected_on_hand {
            if expected.unsigned_abs() > STOCK_MAGNITUDE_MAX as u64 {
                return Err(invalid(
                    "expected_on_hand",
                    None,
                    "magnitude must be at most 10^12",
                ));
            }
        }
        Ok(())
    }
}

impl SetPolicy {
    fn validate(&self) -> Result<(), InvalidArgument> {
        check_name(&self.sku, SKU_BYTES_MAX, "sku", None)?;
        if let Some(location) = &self.location {
            check_name(location, LOCATION_BYTES_MAX, "location", None)?;
        }
        let row_fields = self.safety_stock.is_some() || self.backorder_allowance.is_some();
        if row_fields && self.location.is_none() {
            return Err(invalid(
                "location",
                None,
                "is required to set safety_stock or backorder_allowance",
            ));
        }
        if !row_fields && self.customer_limit == LimitChange::Keep {
            return Err(invalid("policy", None, "changes nothing"));
        }
        if let Some(v) = self.safety_stock {
            check_stock_figure(v, "safety_stock")?;
        }
        if let Some(v) = self.backorder_allowance {
            check_stock_figure(v, "backorder_allowance")?;
        }
        if let LimitChange::Set(limit) = self.customer_limit {
            if !(1..=CUSTOMER_LIMIT_MAX).contains(&limit.max_units) {
                return Err(invalid(
                    "customer_limit.max_units",
                    None,
                    "must be between 1 and 10^9",
                ));
            }
        }
        Ok(())
    }
}

/// Bodies up to this many bytes are digested from a stack buffer.
const BODY_INLINE_BYTES: usize = 256;

/// The bytes of a command body as fed for its digest: on the stack, or on
/// the heap once they outgrow `BODY_INLINE_BYTES`. (A plain array and length
/// rather than a `SmallVec`, whose length store through a selected pointer
/// stalled every following append.)
struct BodyBytes {
    len: usize,
    inline: [u8; BODY_INLINE_BYTES],
    spilled: Vec<u8>,
}

impl BodyBytes {
    fn new() -> Self {
        BodyBytes {
            len: 0,
            inline: [0; BODY_INLINE_BYTES],
            spilled: Vec::new(),
        }
    }

    #[inline]
    fn update(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= BODY_INLINE_BYTES {
            self.inline[self.len..end].copy_from_slice(bytes);
        } else {
            if self.len <= BODY_INLINE_BYTES {
                self.spilled.extend_from_slice(&self.inline[..self.len]);
            }
            self.spilled.extend_from_slice(bytes);
        }
        self.len = end;
    }

    fn bytes(&self) -> &[u8] {
        if self.len <= BODY_INLINE_BYTES {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}

/// Feeds a value into the body digest in a fixed, self-delimiting layout
/// (tags and lengths), so two different bodies never feed the same bytes.
trait Feed {
    fn feed(&self, h: &mut BodyBytes);
}

fn feed_str(h: &mut BodyBytes, s: &str) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

fn feed_opt_str(h: &mut BodyBytes, s: &Option<String>) {
    match s {
        None => h.update(&[0]),
        Some(s) => {
            h.update(&[1]);
            feed_str(h, s);
        }
    }
}

fn feed_u64(h: &mut BodyBytes, v: u64) {
    h.update(&v.to_le_bytes());
}

fn feed_opt_i64(h: &mut BodyBytes, v: Option<i64>) {
    match v {
        None => h.update(&[0]),
        Some(v) => {
            h.update(&[1]);
            feed_u64(h, v as u64);
        }
    }
}

impl Feed for CommandKind {
    fn feed(&self, h: &mut BodyBytes) {
        match self {
            CommandKind::Reserve(r) => {
                h.update(&[1]);
                feed_str(h, &r.owner);
                feed_str(h, &r.customer);
                feed_opt_str(h, &r.region);
                feed_u64(h, r.lines.len() as u64);
                for line in &r.lines {
                    feed_str(h, &line.sku);
                    feed_u64(h, line.quantity as u64);
                    feed_opt_str(h, &line.location);
                }
                feed_u64(h, r.ttl_ms);
                h.update(&[r.policy as u8, r.allow_split as u8]);
            }
            CommandKind::Confirm(c) => {
                h.update(&[2]);
                feed_u64(h, c.reservation.0);
                match &c.quantities {
                    None => h.update(&[0]),
                    Some(q) => {
                        h.update(&[1]);
                        feed_u64(h, q.len() as u64);
                        q.iter().for_each(|&v| feed_u64(h, v as u64));
                    }
                }
            }
            CommandKind::Release(r) => {
                h.update(&[3]);
                feed_u64(h, r.reservation.0);
            }
            CommandKind::Extend(e) => {
                h.update(&[4]);
                feed_u64(h, e.reservation.0);
                feed_u64(h, e.ttl_ms);
            }
            CommandKind::AdjustStock(a) => {
                h.update(&[5]);
                feed_str(h, &a.sku);
                feed_str(h, &a.location);
                feed_u64(h, a.delta as u64);
                feed_opt_i64(h, a.expected_on_hand);
            }
            CommandKind::UpsertLocation(u) => {
                h.update(&[6]);
                feed_str(h, &u.location);
                feed_str(h, &u.region);
                feed_u64(h, u.priority as u64);
            }
            CommandKind::SetPolicy(p) => {
                h.update(&[7]);
                feed_str(h, &p.sku);
                feed_opt_str(h, &p.location);
                feed_opt_i64(h, p.safety_stock);
                feed_opt_i64(h, p.backorder_allowance);
                match p.customer_limit {
                    LimitChange::Keep => h.update(&[0]),
                    LimitChange::Clear => h.update(&[1]),
                    LimitChange::Set(l) => {
                        h.update(&[2]);
                        feed_u64(h, l.max_units);
                        feed_u64(h, l.campaign as u64);
                    }
                }
            }
            CommandKind::ExpireUpTo(e) => {
                h.update(&[8]);
                feed_u64(h, e.up_to_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::Xxh3;

    /// The one-shot digest of the gathered bytes must equal the streaming
    /// digest the body was first specified with, inline and spilled.
    #[test]
    fn gathered_digest_equals_streaming_digest() {
        for pieces in [1usize, 7, 40, 300] {
            let mut gathered = BodyBytes::new();
            let mut streaming = Xxh3::new();
            let mut all = Vec::new();
            for i in 0..pieces {
                let piece: Vec<u8> = (0..(i % 13) * 3).map(|b| (b * 31 + i) as u8).collect();
                gathered.update(&piece);
                streaming.update(&piece);
                all.extend_from_slice(&piece);
            }
            assert_eq!(gathered.bytes(), &all[..], "{pieces} pieces");
            assert_eq!(
                xxh3_64(gathered.bytes()),
                streaming.digest(),
                "{pieces} pieces"
            );
        }
    }
}
