//! The fsync probe: what one durable append costs on the disk under the
//! clusters' data, measured in the same run as the loads, so the commit
//! latency at one caller can be read against (one fsync + one loopback
//! round trip) rather than against a number from another day.

use crate::bench::stats::{histogram, record};
use hdrhistogram::Histogram;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Appends of this size, each followed by `fdatasync`, measure the disk's
/// commit cost the way a group commit pays it.
pub const FSYNC_PROBE_BYTES: usize = 4_096;
/// Appends the fsync probe times.
pub const FSYNC_PROBE_WRITES: usize = 400;

/// Times [`FSYNC_PROBE_WRITES`] appends + `fdatasync` of a file in `dir`
/// (µs); the file is removed afterwards.
pub fn fsync_probe(dir: &Path) -> std::io::Result<Histogram<u64>> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = vec![0x5au8; FSYNC_PROBE_BYTES];
    let mut hist = histogram();
    let timed = (|| {
        for _ in 0..FSYNC_PROBE_WRITES {
            let t = Instant::now();
            file.write_all(&block)?;
            file.sync_data()?;
            record(&mut hist, t.elapsed());
        }
        Ok(())
    })();
    drop(file);
    let _ = std::fs::remove_file(&path);
    timed.map(|()| hist)
}
