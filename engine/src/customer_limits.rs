//! Per-customer quantity limits per SKU ("2 per customer"), enforced in the
//! same atomic step as the hold (design §3 "Limits").
//!
//! A customer's count of a SKU is the units they hold plus the units they had
//! confirmed under the current limit. Each time a limit starts afresh (new
//! campaign, or set after being cleared) the SKU gets a new *epoch*; holds
//! remember the epoch they were counted under, so releasing a hold from an
//! older campaign never decrements the new campaign's counts.

use crate::command::CustomerLimit;
use crate::ids::SkuId;
use hashbrown::{Equivalent, HashMap};
use std::hash::{Hash, Hasher};

/// A SKU's active limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ActiveLimit {
    pub(crate) limit: CustomerLimit,
    /// Non-zero epoch that holds record when counted.
    pub(crate) epoch: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UsageKey {
    pub(crate) sku: SkuId,
    pub(crate) customer: Box<str>,
}

impl Hash for UsageKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        UsageQuery {
            sku: self.sku,
            customer: &self.customer,
        }
        .hash(state)
    }
}

/// Borrowed form of `UsageKey`, so a lookup never allocates.
#[derive(Hash)]
struct UsageQuery<'a> {
    sku: SkuId,
    customer: &'a str,
}

impl Equivalent<UsageKey> for UsageQuery<'_> {
    fn equivalent(&self, key: &UsageKey) -> bool {
        self.sku == key.sku && self.customer == &*key.customer
    }
}

pub(crate) struct CustomerLimits {
    pub(crate) active: HashMap<SkuId, ActiveLimit>,
    pub(crate) usage: HashMap<UsageKey, u64>,
    pub(crate) last_epoch: u32,
}

impl CustomerLimits {
    pub(crate) fn new() -> Self {
        CustomerLimits {
            active: HashMap::new(),
            usage: HashMap::new(),
            last_epoch: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub(crate) fn limit_of(&self, sku: SkuId) -> Option<ActiveLimit> {
        self.active.get(&sku).copied()
    }

    pub(crate) fn used(&self, sku: SkuId, customer: &str) -> u64 {
        self.usage
            .get(&UsageQuery { sku, customer })
            .copied()
            .unwrap_or(0)
    }

    /// Sets a limit. The same campaign keeps its epoch and counts; another
    /// campaign (or a first limit) starts a new epoch with no counts.
    pub(crate) fn set(&mut self, sku: SkuId, limit: CustomerLimit) {
        if let Some(active) = self.active.get_mut(&sku) {
            if active.limit.campaign == limit.campaign {
                active.limit = limit;
                return;
            }
        }
        self.clear(sku);
        self.last_epoch = self
            .last_epoch
            .checked_add(1)
            .expect("customer-limit epochs exhausted (2^32 limit changes per shard)");
        self.active.insert(
            sku,
            ActiveLimit {
                limit,
                epoch: self.last_epoch,
            },
        );
    }

    /// Removes a SKU's limit and its counts (order of removal does not
    /// matter: the result is the same set).
    pub(crate) fn clear(&mut self, sku: SkuId) {
        if self.active.remove(&sku).is_some() {
            self.usage.retain(|k, _| k.sku != sku);
        }
    }

    /// Adds `units` to the customer's count under `epoch`.
    pub(crate) fn charge(&mut self, sku: SkuId, customer: &str, units: u64) {
        let q = UsageQuery { sku, customer };
        if let Some(used) = self.usage.get_mut(&q) {
            *used += units;
            return;
        }
        self.usage.insert(
            UsageKey {
                sku,
                customer: customer.into(),
            },
            units,
        );
    }

    /// Gives back `units` counted under `epoch`, if that epoch is current.
    pub(crate) fn refund(&mut self, sku: SkuId, customer: &str, units: u64, epoch: u32) {
        if epoch == 0 || self.active.get(&sku).map(|a| a.epoch) != Some(epoch) {
            return;
        }
        let q = UsageQuery { sku, customer };
        let used = self
            .usage
            .get_mut(&q)
            .expect("a counted hold has a usage entry (limit conservation)");
        assert!(*used >= units, "limit usage would go negative");
        *used -= units;
        if *used == 0 {
            self.usage.remove(&q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max_units: u64, campaign: u32) -> CustomerLimit {
        CustomerLimit {
            max_units,
            campaign,
        }
    }

    #[test]
    fn new_campaign_resets_counts_and_ignores_old_refunds() {
        let mut l = CustomerLimits::new();
        let sku = SkuId(3);
        l.set(sku, limit(2, 1));
        let old_epoch = l.limit_of(sku).unwrap().epoch;
        l.charge(sku, "c", 2);
        assert_eq!(l.used(sku, "c"), 2);
        l.set(sku, limit(5, 1));
        assert_eq!(l.used(sku, "c"), 2, "same campaign keeps counts");
        l.set(sku, limit(5, 2));
        assert_eq!(l.used(sku, "c"), 0);
        l.refund(sku, "c", 2, old_epoch);
        assert_eq!(l.used(sku, "c"), 0);
        let epoch = l.limit_of(sku).unwrap().epoch;
        l.charge(sku, "c", 1);
        l.refund(sku, "c", 1, epoch);
        assert!(l.usage.is_empty(), "zero counts are dropped");
    }
}
