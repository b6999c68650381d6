//! What a load asks for: the scenarios, the catalogue they run on, and the
//! [`Picker`] that draws one caller's next order.
//!
//! Unit of work: an [`Order`], the lines of one reservation. Every system
//! is sent the same orders (same SKU names, locations and quantities), so
//! the rows of one report differ only in who serves them. The lines of one
//! order always fall in one Holdfast shard (this version of the API refuses
//! an order spanning shards) and are sorted, so PostgreSQL takes its row
//! locks in one global order and never deadlocks on them.

use holdfast_engine::shard_of;
use rand::rngs::SmallRng;
use rand::RngExt;
use rand_distr::{Distribution, Zipf};

/// The locations of the catalogue: design §3's rows are SKU × location.
pub const LOCATIONS: [&str; 4] = ["loc-0", "loc-1", "loc-2", "loc-3"];
/// The one SKU of `hot` (and of `batch`): the contended row.
pub const HOT_SKU: &str = "hot-sku";
/// The SKU the flash sale's buyers race for.
pub const FLASH_SKU: &str = "flash-sku";
/// Where `hot` and `flash` hold their units.
pub const HOT_LOCATION: &str = LOCATIONS[0];
/// Units on every row of the catalogue and on the hot row: "effectively
/// unlimited" (10^12 is the largest single adjustment the API accepts), so
/// the loads measure holds, not refusals.
pub const UNLIMITED_UNITS: i64 = 1_000_000_000_000;
/// Units of the flash sale (the 100).
pub const FLASH_UNITS: i64 = 100;
/// Zipf exponent of the `zipf` popularity (the 0.99).
pub const ZIPF_EXPONENT: f64 = 0.99;
/// Shards of every Holdfast cluster the harness starts (the server's
/// default); orders keep their lines within one.
pub const SHARDS: u32 = 8;
/// How many draws a multi-line order may take to find another SKU of the
/// first line's shard before walking the catalogue instead (a bound on
/// the loop; with 8 shards a draw hits with probability 1/8).
const SAME_SHARD_DRAWS_MAX: usize = 64;

/// One scenario of the harness (the list, plus `batch` and
/// `open`, which are how its ReserveBatch and open-loop aims are measured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Every caller reserves 1 unit of [`HOT_SKU`]: the contended row.
    Hot,
    /// Uniform popularity over the catalogue; 1- and 3-line orders.
    Uniform,
    /// Zipf(0.99) popularity over the catalogue; 1- and 3-line orders.
    Zipf,
    /// Many buyers race for [`FLASH_UNITS`] units; each success confirms.
    Flash,
    /// Reserve, then confirm (80%), release (15%) or let expire (5%).
    Lifecycle,
    /// `hot` through `ReserveBatch`, 100 reservations per call.
    Batch,
    /// Uniform 3-line orders at a fixed arrival rate (open loop).
    Open,
}

impl Scenario {
    /// Every scenario, in the order a full run takes them.
    pub const ALL: [Scenario; 7] = [
        Scenario::Hot,
        Scenario::Uniform,
        Scenario::Zipf,
        Scenario::Flash,
        Scenario::Lifecycle,
        Scenario::Batch,
        Scenario::Open,
    ];

    /// The name on the command line, in the report and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Hot => "hot",
            Scenario::Uniform => "uniform",
            Scenario::Zipf => "zipf",
            Scenario::Flash => "flash",
            Scenario::Lifecycle => "lifecycle",
            Scenario::Batch => "batch",
            Scenario::Open => "open",
        }
    }

    /// The scenario of a command-line name.
    pub fn parse(name: &str) -> Result<Scenario, String> {
        crate::bench::by_name(&Scenario::ALL, Scenario::name, "scenario", name)
    }

    /// Order sizes (lines per order) the scenario runs, each a row of the
    /// report.
    pub fn line_counts(self) -> &'static [usize] {
        match self {
            Scenario::Uniform | Scenario::Zipf => &[1, 3],
            Scenario::Open => &[3],
            _ => &[1],
        }
    }

    /// The popularity the scenario draws SKUs with.
    pub fn popularity(self) -> Popularity {
        match self {
            Scenario::Hot | Scenario::Batch => Popularity::Hot,
            Scenario::Flash => Popularity::Flash,
            Scenario::Zipf => Popularity::Zipf,
            Scenario::Uniform | Scenario::Lifecycle | Scenario::Open => Popularity::Uniform,
        }
    }
}

/// How SKUs are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Popularity {
    /// Always [`HOT_SKU`] at [`HOT_LOCATION`].
    Hot,
    /// Always [`FLASH_SKU`] at [`HOT_LOCATION`].
    Flash,
    /// Every catalogue SKU alike.
    Uniform,
    /// Zipf([`ZIPF_EXPONENT`]): SKU `k` (0-based) drawn ∝ 1/(k+1)^0.99.
    Zipf,
}

/// The stocked SKUs: `skus` names, each at every one of [`LOCATIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Catalogue {
    /// SKUs (the 100,000 in a full run).
    pub skus: u32,
}

impl Catalogue {
    /// The name of SKU `i`, the same in every system.
    pub fn sku(i: u32) -> String {
        format!("sku-{i:06}")
    }

    /// Stock rows (SKU × location).
    pub fn rows(&self) -> u64 {
        u64::from(self.skus) * LOCATIONS.len() as u64
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Line {
    /// Product code.
    pub sku: String,
    /// One of [`LOCATIONS`].
    pub location: &'static str,
    /// Units to hold.
    pub quantity: i64,
}

/// The lines of one reservation: 1..=3 of them, distinct rows, sorted, all
/// in one Holdfast shard.
pub type Order = Vec<Line>;

/// Draws orders of one scenario; cheap to clone, one per caller.
#[derive(Debug, Clone)]
pub struct Picker {
    popularity: Popularity,
    catalogue: Catalogue,
    lines: usize,
    zipf: Option<Zipf<f64>>,
}

impl Picker {
    /// A picker of `lines`-line orders (1..=3) with `popularity` over
    /// `catalogue`.
    pub fn new(popularity: Popularity, catalogue: Catalogue, lines: usize) -> Result<Self, String> {
        if catalogue.skus == 0 {
            return Err("the catalogue needs at least one SKU".into());
        }
        if !(1..=3).contains(&lines) {
            return Err(format!("orders have 1 to 3 lines, not {lines}"));
        }
        let zipf = match popularity {
            Popularity::Zipf => Some(
                Zipf::new(f64::from(catalogue.skus), ZIPF_EXPONENT)
                    .map_err(|e| format!("zipf: {e}"))?,
            ),
            _ => None,
        };
        Ok(Picker {
            popularity,
            catalogue,
            lines,
            zipf,
        })
    }

    /// One SKU index of the catalogue, `0..skus`.
    pub fn sku_index(&self, rng: &mut SmallRng) -> u32 {
        match &self.zipf {
            // Zipf samples ranks 1..=n as floats; rank 1 is SKU 0.
            Some(z) => (z.sample(rng) as u32)
                .saturating_sub(1)
                .min(self.catalogue.skus - 1),
            None => rng.random_range(0..self.catalogue.skus),
        }
    }

    /// The next order.
    pub fn order(&self, rng: &mut SmallRng) -> Order {
        let fixed = |sku: &str| {
            vec![Line {
                sku: sku.to_string(),
                location: HOT_LOCATION,
                quantity: 1,
            }]
        };
        match self.popularity {
            Popularity::Hot => return fixed(HOT_SKU),
            Popularity::Flash => return fixed(FLASH_SKU),
            Popularity::Uniform | Popularity::Zipf => {}
        }
        let first = self.sku_index(rng);
        let shard = shard_of(&Catalogue::sku(first), SHARDS);
        let mut skus = vec![first];
        while skus.len() < self.lines.min(self.catalogue.skus as usize) {
            let next = self.same_shard_sku(rng, shard, &skus);
            match next {
                Some(s) => skus.push(s),
                None => break,
            }
        }
        let mut order: Order = skus
            .into_iter()
            .map(|i| Line {
                sku: Catalogue::sku(i),
                location: LOCATIONS[rng.random_range(0..LOCATIONS.len())],
                quantity: 1,
            })
            .collect();
        order.sort();
        order
    }

    /// Another SKU of `shard`, not in `taken`: drawn by popularity, or
    /// after [`SAME_SHARD_DRAWS_MAX`] misses the next such SKU after the
    /// last draw (`None` if the catalogue has no other SKU there).
    fn same_shard_sku(&self, rng: &mut SmallRng, shard: u32, taken: &[u32]) -> Option<u32> {
        let fits = |i: u32| !taken.contains(&i) && shard_of(&Catalogue::sku(i), SHARDS) == shard;
        let mut last = 0;
        for _ in 0..SAME_SHARD_DRAWS_MAX {
            last = self.sku_index(rng);
            if fits(last) {
                return Some(last);
            }
        }
        (1..self.catalogue.skus)
            .map(|k| (last + k) % self.catalogue.skus)
            .find(|&i| fits(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zipf_indexes_stay_in_the_catalogue_and_favour_the_head() {
        let catalogue = Catalogue { skus: 1_000 };
        let picker = Picker::new(Popularity::Zipf, catalogue, 1).expect("picker");
        let mut rng = SmallRng::seed_from_u64(7);
        let mut head = 0;
        let draws = 20_000;
        for _ in 0..draws {
            let i = picker.sku_index(&mut rng);
            assert!(i < catalogue.skus, "index {i} outside the catalogue");
            if i < 10 {
                head += 1;
            }
        }
        // With s = 0.99 over 1,000 SKUs the first 10 carry about 39% of the
        // draws; uniform would give 1%.
        assert!(
            head > draws / 4 && head < draws / 2,
            "head share {head}/{draws}"
        );
    }

    #[test]
    fn multi_line_orders_are_distinct_sorted_and_in_one_shard() {
        let catalogue = Catalogue { skus: 500 };
        for popularity in [Popularity::Uniform, Popularity::Zipf] {
            let picker = Picker::new(popularity, catalogue, 3).expect("picker");
            let mut rng = SmallRng::seed_from_u64(11);
            for _ in 0..2_000 {
                let order = picker.order(&mut rng);
                assert_eq!(order.len(), 3);
                let shards: Vec<u32> = order.iter().map(|l| shard_of(&l.sku, SHARDS)).collect();
                assert!(shards.iter().all(|&s| s == shards[0]), "{order:?}");
                assert!(order.windows(2).all(|w| w[0].sku < w[1].sku), "{order:?}");
            }
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(Picker::new(Popularity::Uniform, Catalogue { skus: 0 }, 1).is_err());
        assert!(Picker::new(Popularity::Uniform, Catalogue { skus: 10 }, 4).is_err());
        assert!(Scenario::parse("nope").is_err());
        assert_eq!(Scenario::parse("zipf"), Ok(Scenario::Zipf));
    }
}
