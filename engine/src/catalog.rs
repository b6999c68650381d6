//! Interning of SKU and location names into dense ids.
//!
//! A shard may hold millions of SKUs, so a SKU costs one arena span (12
//! bytes) plus its name bytes plus one 28-byte index slot: no per-SKU heap
//! allocation. The index slot carries the name's span and its first 16
//! bytes, so looking up a SKU of up to 16 bytes touches one cache line of
//! the index and nothing else (the lookup is on every reserve's path). SKUs and locations are never removed (rows and events refer to
//! them by id forever), so the arena only grows, in log order, identically on
//! every replica.

use crate::ids::{LocationId, SkuId};
use crate::limits::LOCATIONS_MAX;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use std::hash::BuildHasher;
use std::sync::Arc;

/// Marks "no row" in the per-SKU row lists.
pub(crate) const NO_ROW: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
pub(crate) struct SkuEntry {
    start: u32,
    /// Head of this SKU's row list (linked through `Row::next_in_sku`).
    pub(crate) first_row: u32,
    len: u16,
}

/// Bytes of a SKU name kept in its index slot.
const INLINE_NAME_BYTES: usize = 16;

/// An index slot: enough to compare a name without leaving the slot when
/// the name fits `inline`.
#[derive(Clone, Copy, Debug)]
struct SkuSlot {
    id: u32,
    start: u32,
    len: u16,
    inline: [u8; INLINE_NAME_BYTES],
}

impl SkuSlot {
    fn matches(&self, names: &str, name: &str) -> bool {
        if self.len as usize != name.len() {
            return false;
        }
        let head = name.len().min(INLINE_NAME_BYTES);
        if self.inline[..head] != name.as_bytes()[..head] {
            return false;
        }
        name.len() <= INLINE_NAME_BYTES
            || names.as_bytes()[self.start as usize..self.start as usize + name.len()]
                == *name.as_bytes()
    }
}

/// SKU names, interned. Lookups never insert: only commands that succeed
/// intern, so a refused command leaves the table as it was.
pub(crate) struct SkuTable {
    names: String,
    entries: Vec<SkuEntry>,
    index: HashTable<SkuSlot>,
    hasher: DefaultHashBuilder,
}

impl SkuTable {
    pub(crate) fn new() -> Self {
        SkuTable {
            names: String::new(),
            entries: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn name(&self, id: SkuId) -> &str {
        let e = self.entries[id.0 as usize];
        &self.names[e.start as usize..(e.start + e.len as u32) as usize]
    }

    pub(crate) fn entry(&self, id: SkuId) -> &SkuEntry {
        &self.entries[id.0 as usize]
    }

    pub(crate) fn entry_mut(&mut self, id: SkuId) -> &mut SkuEntry {
        &mut self.entries[id.0 as usize]
    }

    pub(crate) fn get(&self, name: &str) -> Option<SkuId> {
        let hash = self.hasher.hash_one(name);
        self.index
            .find(hash, |slot| slot.matches(&self.names, name))
            .map(|slot| SkuId(slot.id))
    }

    /// Returns the id of `name`, interning it if new. Callers check the
    /// name's length beforehand (`SKU_BYTES_MAX`).
    pub(crate) fn intern(&mut self, name: &str) -> SkuId {
        if let Some(id) = self.get(name) {
            return id;
        }
        let id = u32::try_from(self.entries.len()).expect("SKU ids exhausted (2^32 per shard)");
        let start = u32::try_from(self.names.len()).expect("SKU name arena over 4 GiB per shard");
        self.names.push_str(name);
        self.entries.push(SkuEntry {
            start,
            first_row: NO_ROW,
            len: u16::try_from(name.len()).expect("SKU names are at most SKU_BYTES_MAX bytes"),
        });
        let mut inline = [0u8; INLINE_NAME_BYTES];
        let head = name.len().min(INLINE_NAME_BYTES);
        inline[..head].copy_from_slice(&name.as_bytes()[..head]);
        let slot = SkuSlot {
            id,
            start,
            len: name.len() as u16,
            inline,
        };
        let (names, hasher) = (&self.names, &self.hasher);
        let hash = hasher.hash_one(name);
        self.index.insert_unique(hash, slot, |other| {
            let start = other.start as usize;
            hasher.hash_one(&names[start..start + other.len as usize])
        });
        SkuId(id)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.names.capacity()
            + self.entries.capacity() * std::mem::size_of::<SkuEntry>()
            + self.index.capacity() * (std::mem::size_of::<SkuSlot>() + 1)
    }
}

/// A warehouse or store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Name, unique in the shard.
    pub name: Arc<str>,
    /// Region, for nearest-region allocation.
    pub region: Arc<str>,
    /// Allocation rank: lower is preferred.
    pub priority: u32,
}

/// Locations, interned. At most `LOCATIONS_MAX`.
pub(crate) struct LocationTable {
    locations: Vec<Location>,
    by_name: HashMap<Arc<str>, LocationId>,
}

impl LocationTable {
    pub(crate) fn new() -> Self {
        LocationTable {
            locations: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<LocationId> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn location(&self, id: LocationId) -> &Location {
        &self.locations[id.0 as usize]
    }

    pub(crate) fn all(&self) -> &[Location] {
        &self.locations
    }

    pub(crate) fn is_full(&self) -> bool {
        self.locations.len() >= LOCATIONS_MAX
    }

    /// Creates or updates; returns the id and whether it was created.
    /// Callers check `is_full` before creating.
    pub(crate) fn upsert(&mut self, name: &str, region: &str, priority: u32) -> (LocationId, bool) {
        if let Some(id) = self.get(name) {
            let loc = &mut self.locations[id.0 as usize];
            if *loc.region != *region {
                loc.region = Arc::from(region);
            }
            loc.priority = priority;
            return (id, false);
        }
        assert!(
            !self.is_full(),
            "location table full; callers check is_full"
        );
        let id = LocationId(self.locations.len() as u16);
        let name: Arc<str> = Arc::from(name);
        self.locations.push(Location {
            name: name.clone(),
            region: Arc::from(region),
            priority,
        });
        self.by_name.insert(name, id);
        (id, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_is_idempotent_and_ordered() {
        let mut t = SkuTable::new();
        let a = t.intern("A");
        let b = t.intern("B");
        assert_eq!(t.intern("A"), a);
        assert_eq!((a, b), (SkuId(0), SkuId(1)));
        assert_eq!(t.name(b), "B");
        assert_eq!(t.get("C"), None);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn long_and_short_names_compare_exactly() {
        let mut t = SkuTable::new();
        let long = "0123456789abcdef-tail";
        let a = t.intern(long);
        let b = t.intern("0123456789abcdef");
        assert_ne!(a, b);
        assert_eq!(t.get(long), Some(a));
        assert_eq!(
            t.get("0123456789abcdef-tall"),
            None,
            "same inline prefix, other tail"
        );
        assert_eq!(t.get("0123456789abcdef"), Some(b));
        assert_eq!(t.name(a), long);
    }

    #[test]
    fn many_skus_survive_table_growth() {
        let mut t = SkuTable::new();
        for i in 0..10_000 {
            assert_eq!(t.intern(&format!("sku-{i}")), SkuId(i));
        }
        for i in 0..10_000 {
            assert_eq!(t.get(&format!("sku-{i}")), Some(SkuId(i)));
        }
    }

    #[test]
    fn location_upsert_updates_in_place() {
        let mut t = LocationTable::new();
        let (a, created) = t.upsert("berlin", "eu", 2);
        assert!(created);
        let (a2, created) = t.upsert("berlin", "eu-central", 1);
        assert!(!created);
        assert_eq!(a, a2);
        assert_eq!(&*t.location(a).region, "eu-central");
        assert_eq!(t.location(a).priority, 1);
    }
}
