//! The stock board: scarce and sold-out rows, published for other threads.
//!
//! The server's hot-SKU pre-filter (design §5) must answer "is this SKU sold
//! out?" for thousands of requests per second without taking the apply
//! thread's lock. The engine publishes here every SKU that has a row at or
//! below `scarce_units` promisable units, with all its rows, after each
//! command that touched it; plentiful SKUs are absent, so the hot path of an
//! ordinary reserve never writes to the board.
//!
//! The board is an output, never an input: nothing in `apply` reads it, so
//! it cannot affect determinism.

use dashmap::DashMap;
use smallvec::SmallVec;
use std::sync::Arc;

/// Default threshold below which a SKU is published: a flash sale's stock.
pub const SCARCE_UNITS_DEFAULT: i64 = 100;

/// One row of a published SKU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowSignal {
    /// Location name.
    pub location: Arc<str>,
    /// Promisable units.
    pub available: i64,
    /// Units held by pending reservations (they may come back).
    pub held: i64,
}

/// Every row of a scarce SKU, as of a log index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkuSignal {
    /// The rows, one per location that stocks the SKU.
    pub rows: SmallVec<[RowSignal; 4]>,
    /// Log index of the entry that last changed the SKU.
    pub as_of_index: u64,
}

/// What the board says about one SKU (optionally at one location).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scarcity {
    /// Promisable units (summed over locations when none was named;
    /// negative rows count as zero).
    pub available: i64,
    /// Units held (they may be released).
    pub held: i64,
    /// Log index the figures are from.
    pub as_of_index: u64,
}

impl Scarcity {
    /// Nothing promisable and nothing held that could come back: a request
    /// can only fail until stock is received (design §5 layer 1).
    pub fn is_sold_out(&self) -> bool {
        self.available <= 0 && self.held == 0
    }
}

/// Scarce SKUs of one shard, readable from any thread.
pub struct StockBoard {
    scarce_units: i64,
    skus: DashMap<Box<str>, SkuSignal>,
}

impl StockBoard {
    /// An empty board publishing rows with at most `scarce_units` promisable.
    pub fn new(scarce_units: i64) -> Self {
        StockBoard {
            scarce_units,
            skus: DashMap::new(),
        }
    }

    /// The publication threshold.
    pub fn scarce_units(&self) -> i64 {
        self.scarce_units
    }

    /// `None` when the SKU is not scarce (or unknown): admit the request.
    /// With a location, the figures of that row (`None` if the SKU has no
    /// row there, which is a matter for the ledger, not the filter).
    pub fn scarcity(&self, sku: &str, location: Option<&str>) -> Option<Scarcity> {
        let signal = self.skus.get(sku)?;
        let as_of_index = signal.as_of_index;
        match location {
            Some(location) => signal
                .rows
                .iter()
                .find(|r| &*r.location == location)
                .map(|r| Scarcity {
                    available: r.available,
                    held: r.held,
                    as_of_index,
                }),
            None => Some(Scarcity {
                available: signal.rows.iter().map(|r| r.available.max(0)).sum(),
                held: signal.rows.iter().map(|r| r.held).sum(),
                as_of_index,
            }),
        }
    }

    /// Number of SKUs published.
    pub fn len(&self) -> usize {
        self.skus.len()
    }

    /// Whether no SKU is scarce.
    pub fn is_empty(&self) -> bool {
        self.skus.is_empty()
    }

    pub(crate) fn publish(&self, sku: &str, signal: SkuSignal) {
        match self.skus.get_mut(sku) {
            Some(mut existing) => *existing = signal,
            None => {
                self.skus.insert(sku.into(), signal);
            }
        }
    }

    pub(crate) fn withdraw(&self, sku: &str) {
        self.skus.remove(sku);
    }

    pub(crate) fn clear(&self) {
        self.skus.clear();
    }
}
