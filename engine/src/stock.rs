//! Stock rows: the units of one SKU at one location.
//!
//! A row is 48 bytes in one dense vector; the rows of a SKU form a linked
//! list from its catalog entry, so "every location of this SKU" needs no
//! extra index. The promise of design §1.1 lives here: `held` never exceeds
//! `on_hand + backorder_allowance`.

use crate::catalog::{SkuTable, NO_ROW};
use crate::ids::{LocationId, RowId, SkuId};

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
}

impl StockTable {
    pub(crate) fn new() -> Self {
        StockTable { rows: Vec::new() }
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

    /// The row of `sku` at `location`, walking the SKU's row list (one entry
    /// per location that ever stocked it).
    pub(crate) fn find(&self, skus: &SkuTable, sku: SkuId, location: LocationId) -> Option<RowId> {
        self.rows_of(skus, sku)
            .find(|&r| self.rows[r.0 as usize].location == location)
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
        self.rows.push(Row {
            on_hand: 0,
            held: 0,
            safety_stock: 0,
            backorder_allowance: 0,
            sku,
            location,
            next_in_sku: entry.first_row,
        });
        entry.first_row = id;
        RowId(id)
    }

    /// Restores a row verbatim (snapshot restore), keeping its list link.
    pub(crate) fn push_restored(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<Row>()
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
        assert_eq!(rows.find(&skus, a, LocationId(3)), Some(r2));
        assert_eq!(rows.find(&skus, b, LocationId(3)), None);
        assert_eq!(rows.find(&skus, b, LocationId(0)), Some(r1));
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
        };
        assert_eq!(row.available(), 10);
        assert_eq!(row.supply(), 15);
        assert_eq!(std::mem::size_of::<Row>(), 48);
    }
}
