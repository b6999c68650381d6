//! Counters the driver keeps about its own work, for operators and for the
//! load harness, which reads them to say what bounds a figure (how many
//! commands share an entry, how many group commits a second, how long each
//! takes).
//!
//! Plain relaxed atomics: the driver is the only writer, readers only want
//! totals, and the counters must cost nothing next to the work they count.

use std::sync::atomic::{AtomicU64, Ordering};

/// Prometheus histogram of fsynced group-commit write times, seconds. The
/// driver records each write into it through the `metrics` facade (a no-op
/// until a recorder is installed, as `holdfast-server --metrics-listen`
/// does before the node starts); the totals below carry the same writes as
/// a count and a sum.
pub const FSYNC_SECONDS_METRIC: &str = "holdfast_driver_fsync_seconds";

/// Prometheus histogram of client commands per proposed log entry: the
/// batch size of design §5's batching, recorded like the fsync times. The
/// counters below give its mean; the histogram shows whether entries carry
/// one command or hundreds under the load at hand.
pub const ENTRY_COMMANDS_METRIC: &str = "holdfast_driver_entry_commands";

/// Totals since the node started. Each field counts one thing; rates come
/// from the difference of two readings.
#[derive(Debug, Default)]
pub struct DriverStats {
    /// Turns of the driver loop.
    pub iterations: AtomicU64,
    /// Fsynced group-commit writes (one per loop turn that had new entries,
    /// a snapshot, or a new term or vote to persist).
    pub group_commits: AtomicU64,
    /// Time spent in fsynced group-commit writes, µs.
    pub group_commit_us: AtomicU64,
    /// Writes without an fsync (commit and applied indexes only).
    pub unsynced_writes: AtomicU64,
    /// Log entries this node proposed as a leader.
    pub entries_proposed: AtomicU64,
    /// Client commands inside those entries.
    pub commands_proposed: AtomicU64,
    /// Log entries applied to the ledger (leader and follower alike).
    pub entries_applied: AtomicU64,
    /// Raft messages handed to the transport.
    pub messages_sent: AtomicU64,
}

/// One reading of [`DriverStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DriverStatsSnapshot {
    /// See [`DriverStats::iterations`].
    pub iterations: u64,
    /// See [`DriverStats::group_commits`].
    pub group_commits: u64,
    /// See [`DriverStats::group_commit_us`].
    pub group_commit_us: u64,
    /// See [`DriverStats::unsynced_writes`].
    pub unsynced_writes: u64,
    /// See [`DriverStats::entries_proposed`].
    pub entries_proposed: u64,
    /// See [`DriverStats::commands_proposed`].
    pub commands_proposed: u64,
    /// See [`DriverStats::entries_applied`].
    pub entries_applied: u64,
    /// See [`DriverStats::messages_sent`].
    pub messages_sent: u64,
}

impl DriverStats {
    /// Adds `by` to `counter` (driver thread only).
    pub(crate) fn add(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// The current totals.
    pub fn read(&self) -> DriverStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DriverStatsSnapshot {
            iterations: get(&self.iterations),
            group_commits: get(&self.group_commits),
            group_commit_us: get(&self.group_commit_us),
            unsynced_writes: get(&self.unsynced_writes),
            entries_proposed: get(&self.entries_proposed),
            commands_proposed: get(&self.commands_proposed),
            entries_applied: get(&self.entries_applied),
            messages_sent: get(&self.messages_sent),
        }
    }
}
