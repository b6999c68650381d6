//! How many first attempts the pre-filter (design §5) refused before the
//! log, by layer, for operators: a flash sale shows up here as a burst of
//! sold-out refusals, and a steady stream of admission refusals says a hot
//! SKU's crowd is larger than its stock can serve.
//!
//! Plain relaxed atomics, like the driver's counters (`node::stats`): the
//! service adds to them on refusal paths only, and the health task copies
//! them into Prometheus (`telemetry`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Totals since the node started.
#[derive(Debug, Default)]
pub struct PrefilterStats {
    /// Reserves refused by the sold-out filter (layer 1): `OUT_OF_STOCK`
    /// with `prefilter=true`, answered from this node's applied state.
    pub sold_out: AtomicU64,
    /// Reserves refused by hot-SKU admission (layer 2): `ADMISSION_LIMIT`
    /// on the shard's leader.
    pub admission_limit: AtomicU64,
}

impl PrefilterStats {
    /// Counts one refusal in `counter`.
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The current totals: (sold out, admission limit).
    pub fn read(&self) -> (u64, u64) {
        (
            self.sold_out.load(Ordering::Relaxed),
            self.admission_limit.load(Ordering::Relaxed),
        )
    }
}
