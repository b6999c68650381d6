//! Every bound the ledger enforces, as a named constant with its unit.
//!
//! A limit exists so that no input from the network can make one command
//! arbitrarily expensive to apply, replicate or snapshot (TigerBeetle's "put a
//! limit on everything"). Commands outside these bounds are refused with
//! `InvalidArgument` before they touch any state.

/// Lines in one `Reserve`: a checkout with more than 100 distinct lines is
/// not a shopper, and each line costs an allocation search.
pub const RESERVE_LINES_MAX: usize = 100;

/// Units in one reservation line: large enough for B2B pallets, small enough
/// that 100 lines still sum far below `u32::MAX` and the stock bound.
pub const LINE_QUANTITY_MAX: i64 = 1_000_000;

/// Shortest hold: anything shorter expires before a client could confirm it.
pub const TTL_MS_MIN: u64 = 1_000;

/// Longest hold (24 h): longer holds are back-orders, not reservations.
pub const TTL_MS_MAX: u64 = 86_400_000;

/// SKU identifiers are product codes; 256 bytes covers every scheme we know.
pub const SKU_BYTES_MAX: usize = 256;

/// Location (warehouse, store) names.
pub const LOCATION_BYTES_MAX: usize = 64;

/// Region names used by the allocation policy.
pub const REGION_BYTES_MAX: usize = 64;

/// Owner ids (cart or order id) and customer ids, each.
pub const PARTY_BYTES_MAX: usize = 128;

/// Distinct locations per shard: location ids are 16-bit.
pub const LOCATIONS_MAX: usize = 4_096;

/// Bound on the magnitude of any stock figure (on hand, safety stock,
/// backorder allowance, adjustment delta): keeps every sum far from `i64`
/// overflow, so arithmetic on rows never needs to saturate.
pub const STOCK_MAGNITUDE_MAX: i64 = 1_000_000_000_000;

/// Per-customer limit ceiling (units of one SKU).
pub const CUSTOMER_LIMIT_MAX: u64 = 1_000_000_000;

/// Default idempotency window (ms of log time): a request id is remembered
/// for at least this long after it was applied, unless
/// `DEDUP_ENTRIES_DEFAULT` newer ids pushed it out first (see
/// [`crate::DedupConfig`]).
pub const DEDUP_WINDOW_MS_DEFAULT: u64 = 60 * 60 * 1_000;

/// Default count bound of the idempotency table (per shard). At ~94 bytes an
/// entry this is ~94 MB per shard at its fullest.
pub const DEDUP_ENTRIES_DEFAULT: usize = 1_000_000;

/// Rows a `Snapshot` may declare before we refuse to allocate for it; guards
/// restore against a corrupt length field asking for terabytes.
pub const SNAPSHOT_ROWS_MAX: u64 = u32::MAX as u64 - 1;
