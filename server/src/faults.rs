//! Fault injection for chaos tests: network partitions made inside the
//! node's own transport, so a test can cut links between nodes on one
//! machine without root or network namespaces.
//!
//! Off unless the node was started with `--chaos-faults`: a production node
//! refuses `Admin.SetPartition`, so no client can partition it. When on,
//! the set of blocked peers is checked at the transport's two choke points:
//! Raft messages (and snapshots) to a blocked peer are dropped before they
//! are queued, batches and snapshots from one are refused as a broken link
//! would refuse them, and client requests are not forwarded to one. The
//! harness blocks both directions by setting the partition on both sides.

use parking_lot::RwLock;
use std::collections::BTreeSet;

/// The node's injected faults.
#[derive(Debug, Default)]
pub struct Faults {
    /// Whether fault injection may be used at all (`--chaos-faults`).
    enabled: bool,
    /// Peers this node neither sends to nor accepts from.
    blocked: RwLock<BTreeSet<u64>>,
}

impl Faults {
    /// Faults that can be injected (`enabled`) or never (`!enabled`).
    pub fn new(enabled: bool) -> Self {
        Faults {
            enabled,
            blocked: RwLock::new(BTreeSet::new()),
        }
    }

    /// Whether this node was started with fault injection on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Replaces the set of blocked peers (empty heals every link). Refused
    /// when fault injection is off.
    pub fn set_blocked(&self, peers: BTreeSet<u64>) -> Result<(), &'static str> {
        if !self.enabled {
            return Err("fault injection is off on this node (start it with --chaos-faults)");
        }
        *self.blocked.write() = peers;
        Ok(())
    }

    /// Whether traffic with `peer` is cut.
    pub fn is_blocked(&self, peer: u64) -> bool {
        self.enabled && self.blocked.read().contains(&peer)
    }

    /// The blocked peers, in order.
    pub fn blocked(&self) -> Vec<u64> {
        self.blocked.read().iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_without_fault_injection_refuses_partitions() {
        let faults = Faults::new(false);
        assert!(faults.set_blocked(BTreeSet::from([2])).is_err());
        assert!(!faults.is_blocked(2));
    }

    #[test]
    fn partitions_block_named_peers_until_healed() {
        let faults = Faults::new(true);
        faults.set_blocked(BTreeSet::from([2, 3])).expect("enabled");
        assert!(faults.is_blocked(2) && faults.is_blocked(3) && !faults.is_blocked(1));
        assert_eq!(faults.blocked(), vec![2, 3]);
        faults.set_blocked(BTreeSet::new()).expect("enabled");
        assert!(!faults.is_blocked(2));
    }
}
