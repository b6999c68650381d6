//! Stock rows: the units of one SKU at one location.
//!
//! A row is 48 bytes in one dense vector. A compact hash index (4-byte
//! slots) finds the row of `(sku, location)` in one probe, whatever the
//! number of locations; the rows of a SKU also form a linked list from its
//! catalog entry, for "every location of this SKU" (automatic allocation). The promise of design §1.1 lives here: `held` never exceeds
//! `on_hand + backorder_allowance`.

use crate::catalog::{SkuTable, NO_ROW};
use crate::ids::{LocationId, RowId, SkuId};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

/// One stock row `(sku, location)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// Physical units at the location (negative only through confirmed
    /// back-orders).
    pub on_hand: i64,
    /// Units promised to pending reservations.
    pub held: i64,
    /// Units kept back from promising.
    pub safety_stock: i64,
    /// Units that may be promised beyond `on_hand`.
    pub backorder_allowance: i64,
    /// The SKU.
    pub sku: SkuId,
    /// The location.
    pub location: LocationId,
    pub(crate) next_in_sku: u32,
    /// The row's SKU is on the stock board (derived, not replicated state;
    /// kept on every row of the SKU so the apply path never reads the
    /// catalog entry just to learn it).
    pub(crate) sku_on_board: bool,
}

impl Row {
    /// Units a new hold may take: `on_hand + backorder_allowance -
    /// safety_stock - held`. Negative after a write-off below the holds'
    /// safety margin.
    pub fn available(&self) -> i64 {
        self.on_hand + self.backorder_allowance - self.safety_stock - self.held
    }

    /// Units the row can ever supply; `held` must never exceed it (§1.1).
    pub fn supply(&self) -> i64 {
        self.on_hand + self.backorder_allowance
    }
}

/// All rows of a shard.
pub(crate) struct StockTable {
    rows: Vec<Row>,
    /// Row ids by `(sku, location)`.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl StockTable {
    pub(crate) fn new() -> Self {
        StockTable {
            rows: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn key_hash(hasher: &DefaultHashBuilder, sku: SkuId, location: LocationId) -> u64 {
        hasher.hash_one(((sku.0 as u64) << 16) | location.0 as u64)
    }

    fn index_row(&mut self, id: u32) {
        let (rows, hasher) = (&self.rows, &self.hasher);
        let r = &rows[id as usize];
        let hash = Self::key_hash(hasher, r.sku, r.location);
        self.index.insert_unique(hash, id, |&other| {
            let o = &rows[other as usize];
            Self::key_hash(hasher, o.sku, o.location)
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn row(&self, id: RowId) -> &Row {
        &self.rows[id.0 as usize]
    }

    pub(crate) fn row_mut(&mut self, id: RowId) -> &mut Row {
        &mut self.rows[id.0 as usize]
    }

    pub(crate) fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The row of `sku` at `location`: one index probe.
    pub(crate) fn find(&self, sku: SkuId, location: LocationId) -> Option<RowId> {
        let hash = Self::key_hash(&self.hasher, sku, location);
        self.index
            .find(hash, |&r| {
                let row = &self.rows[r as usize];
                row.sku == sku && row.location == location
            })
            .map(|&r| RowId(r))
    }

    /// Every row of `sku`, newest first.
    pub(crate) fn rows_of<'a>(
        &'a self,
        skus: &SkuTable,
        sku: SkuId,
    ) -> impl Iterator<Item = RowId> + 'a {
        let mut next = skus.entry(sku).first_row;
        std::iter::from_fn(move || {
            if next == NO_ROW {
                return None;
            }
            let id = next;
            next = self.rows[id as usize].next_in_sku;
            Some(RowId(id))
        })
    }

    /// Creates the row `(sku, location)` with no stock.
    pub(crate) fn insert(
        &mut self,
        skus: &mut SkuTable,
        sku: SkuId,
        location: LocationId,
    ) -> RowId {
        let id = u32::try_from(self.rows.len())
            .ok()
            .filter(|&id| id != NO_ROW)
            .expect("row ids exhausted (2^32 - 1 per shard)");
        let entry = skus.entry_mut(sku);
        // A new row of a SKU on the board joins it (the next publish lists it).
        let sku_on_board =
            entry.first_row != NO_ROW && self.rows[entry.first_row as usize].sku_on_board;
        self.rows.push(Row {
            on_hand: 0,
            held: 0,
            safety_stock: 0,
            backorder_allowance: 0,
            sku,
            location,
            next_in_sku: entry.first_row,
            sku_on_board,
        });
        entry.first_row = id;
        self.index_row(id);
        RowId(id)
    }

    /// Restores a row verbatim (snapshot restore), keeping its list link.
    /// Returns false if `(sku, location)` already has a row.
    pub(crate) fn push_restored(&mut self, row: Row) -> bool {
        if self.find(row.sku, row.location).is_some() {
            return false;
        }
        self.rows.push(row);
        self.index_row((self.rows.len() - 1) as u32);
        true
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<Row>() + self.index.capacity() * 5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_a_sku_are_linked() {
        let mut skus = SkuTable::new();
        let mut rows = StockTable::new();
        let a = skus.intern("A");
        let b = skus.intern("B");
        let r0 = rows.insert(&mut skus, a, LocationId(0));
        let r1 = rows.insert(&mut skus, b, LocationId(0));
        let r2 = rows.insert(&mut skus, a, LocationId(3));
        assert_eq!(rows.rows_of(&skus, a).collect::<Vec<_>>(), vec![r2, r0]);
        assert_eq!(rows.find(a, LocationId(3)), Some(r2));
        assert_eq!(rows.find(b, LocationId(3)), None);
        assert_eq!(rows.find(b, LocationId(0)), Some(r1));
    }

    #[test]
    fn available_counts_safety_and_backorder() {
        let row = Row {
            on_hand: 10,
            held: 3,
            safety_stock: 2,
            backorder_allowance: 5,
            sku: SkuId(0),
            location: LocationId(0),
            next_in_sku: NO_ROW,
            sku_on_board: false,
        };
        assert_eq!(row.available(), 10);
        assert_eq!(row.supply(), 15);
        assert_eq!(std::mem::size_of::<Row>(), 48);
    }
}
