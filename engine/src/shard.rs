//! Which shard owns a SKU.
//!
//! `shard_of(sku, n) = xxh3_64(sku_bytes, seed 0) mod n`. XXH3 is a
//! specified hash (the xxHash spec, implemented by the `xxhash-rust` crate)
//! with fixed output on every platform and version, unlike `std`'s
//! `RandomState`, so a SKU lands on the same shard on every node, every
//! build and every restart. Changing this function re-homes every SKU: it is
//! part of the on-disk format.

use xxhash_rust::xxh3::xxh3_64;

/// The shard (0-based) of `sku` among `shards` shards. `shards` must be at
/// least 1.
pub fn shard_of(sku: &str, shards: u32) -> u32 {
    assert!(shards > 0, "a cluster has at least one shard");
    (xxh3_64(sku.as_bytes()) % shards as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned values: if this test fails, the hash changed and every
    /// deployed cluster would re-home its SKUs. Do not update it lightly.
    #[test]
    fn stable_across_versions() {
        assert_eq!(xxh3_64(b""), 0x2d06800538d394c2);
        let pinned: Vec<u32> = ["SKU-1", "SKU-2", "sku-000042", "☃"]
            .iter()
            .map(|s| shard_of(s, 8))
            .collect();
        assert_eq!(pinned, PINNED_8);
    }

    const PINNED_8: [u32; 4] = [0, 5, 5, 0];

    #[test]
    fn spreads_evenly() {
        let mut counts = [0u32; 8];
        for i in 0..80_000 {
            counts[shard_of(&format!("sku-{i}"), 8) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "uneven spread: {counts:?}");
        }
    }
}
