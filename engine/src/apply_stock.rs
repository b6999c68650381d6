//! Commands that shape stock rather than holds: `AdjustStock`,
//! `UpsertLocation`, `SetPolicy`.
//!
//! None of them may leave a row with more units held than it can supply
//! (design §1.1): a write-off or a smaller backorder allowance that would do
//! so is refused with `HeldExceedsStock`; the holds must be released first.

use crate::command::{AdjustStock, LimitChange, SetPolicy, UpsertLocation};
use crate::engine::Engine;
use crate::event::Event;
use crate::ids::{LocationId, RowId};
use crate::limits::STOCK_MAGNITUDE_MAX;
use crate::outcome::{InvalidArgument, Outcome, Refusal, Success};
use crate::stock::Row;

impl Engine {
    /// The row at `(sku, location)`, created (and the SKU interned) if new.
    /// Only called once a command is sure to succeed.
    fn row_or_insert(&mut self, sku: &str, location: LocationId) -> RowId {
        let sku = self.skus.intern(sku);
        match self.rows.find(sku, location) {
            Some(row) => row,
            None => self.rows.insert(&mut self.skus, sku, location),
        }
    }

    /// The existing row, if any, without creating one.
    fn find_row(&self, sku: &str, location: LocationId) -> Option<&Row> {
        let sku = self.skus.get(sku)?;
        let row = self.rows.find(sku, location)?;
        Some(self.rows.row(row))
    }

    pub(crate) fn adjust_stock(&mut self, a: &AdjustStock, events: &mut Vec<Event>) -> Outcome {
        let location = self
            .locations
            .get(&a.location)
            .ok_or(Refusal::UnknownLocation { line: None })?;
        let (on_hand, held, backorder) = self
            .find_row(&a.sku, location)
            .map_or((0, 0, 0), |r| (r.on_hand, r.held, r.backorder_allowance));
        if let Some(expected) = a.expected_on_hand {
            if expected != on_hand {
                return Err(Refusal::ExpectedOnHandMismatch {
                    expected,
                    actual: on_hand,
                });
            }
        }
        let on_hand_after = on_hand + a.delta;
        if on_hand_after.abs() > STOCK_MAGNITUDE_MAX {
            return Err(InvalidArgument {
                field: "delta",
                line: None,
                why: "would take on_hand beyond 10^12 units",
            }
            .into());
        }
        if held > on_hand_after + backorder {
            return Err(Refusal::HeldExceedsStock {
                held,
                supply: on_hand_after + backorder,
            });
        }
        let row = self.row_or_insert(&a.sku, location);
        self.rows.row_mut(row).on_hand = on_hand_after;
        self.touch(row);
        events.push(Event::Adjusted {
            row,
            delta: a.delta,
            on_hand: on_hand_after,
        });
        Ok(Success::Adjusted {
            row,
            on_hand: on_hand_after,
            available: self.rows.row(row).available(),
        })
    }

    pub(crate) fn upsert_location(
        &mut self,
        u: &UpsertLocation,
        events: &mut Vec<Event>,
    ) -> Outcome {
        if self.locations.get(&u.location).is_none() && self.locations.is_full() {
            return Err(InvalidArgument {
                field: "location",
                line: None,
                why: "cannot be created: the shard has 4096 locations",
            }
            .into());
        }
        let (location, created) = self.locations.upsert(&u.location, &u.region, u.priority);
        events.push(Event::LocationUpserted { location });
        Ok(Success::LocationUpserted { location, created })
    }

    pub(crate) fn set_policy(&mut self, p: &SetPolicy, events: &mut Vec<Event>) -> Outcome {
        let row_change = match &p.location {
            Some(name) if p.safety_stock.is_some() || p.backorder_allowance.is_some() => {
                let location = self
                    .locations
                    .get(name)
                    .ok_or(Refusal::UnknownLocation { line: None })?;
                let current = self.find_row(&p.sku, location);
                let (on_hand, held) = current.map_or((0, 0), |r| (r.on_hand, r.held));
                let safety = p
                    .safety_stock
                    .unwrap_or(current.map_or(0, |r| r.safety_stock));
                let backorder = p
                    .backorder_allowance
                    .unwrap_or(current.map_or(0, |r| r.backorder_allowance));
                if held > on_hand + backorder {
                    return Err(Refusal::HeldExceedsStock {
                        held,
                        supply: on_hand + backorder,
                    });
                }
                Some((location, safety, backorder))
            }
            _ => None,
        };
        // Checks are done: from here on the command succeeds.
        if let Some((location, safety_stock, backorder_allowance)) = row_change {
            let row = self.row_or_insert(&p.sku, location);
            let r = self.rows.row_mut(row);
            r.safety_stock = safety_stock;
            r.backorder_allowance = backorder_allowance;
            self.touch(row);
            events.push(Event::RowPolicySet {
                row,
                safety_stock,
                backorder_allowance,
            });
        }
        let sku = self.skus.intern(&p.sku);
        match p.customer_limit {
            LimitChange::Keep => {}
            LimitChange::Clear => {
                self.limits.clear(sku);
                events.push(Event::CustomerLimitSet {
                    sku,
                    max_units: None,
                    campaign: 0,
                });
            }
            LimitChange::Set(limit) => {
                self.limits.set(sku, limit);
                events.push(Event::CustomerLimitSet {
                    sku,
                    max_units: Some(limit.max_units),
                    campaign: limit.campaign,
                });
            }
        }
        Ok(Success::PolicySet { sku })
    }
}
