//! A small driver for engine tests: builds commands, stamps them with an
//! advancing log index and clock, and keeps the events.

#![allow(dead_code)]

use holdfast_engine::*;

/// Engine time at the start of every test (2026-01-01T00:00:00Z).
pub const T0: u64 = 1_767_225_600_000;

pub struct Ledger {
    pub engine: Engine,
    pub index: u64,
    pub now_ms: u64,
    pub next_request: u128,
    pub events: Vec<Event>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new(EngineConfig::default())
    }
}

impl Ledger {
    pub fn new(config: EngineConfig) -> Self {
        Ledger {
            engine: Engine::new(config),
            index: 0,
            now_ms: T0,
            next_request: 1 << 64, // explicit ids in tests stay below this
            events: Vec::new(),
        }
    }

    /// Applies `kind` under a fresh request id.
    pub fn run(&mut self, kind: CommandKind) -> Outcome {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.run_as(id, kind)
    }

    /// Applies `kind` under the given request id (for retries).
    pub fn run_as(&mut self, request_id: RequestId, kind: CommandKind) -> Outcome {
        self.index += 1;
        self.events.clear();
        let stamp = Stamp {
            index: self.index,
            now_ms: self.now_ms,
        };
        let outcome = self
            .engine
            .apply(stamp, &Command { request_id, kind }, &mut self.events);
        self.engine
            .check_invariants()
            .expect("design §1 invariants hold after every command");
        outcome
    }

    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    pub fn location(&mut self, name: &str, region: &str, priority: u32) {
        let outcome = self.run(upsert_location(name, region, priority));
        assert!(outcome.is_ok(), "{outcome:?}");
    }

    pub fn stock(&mut self, sku: &str, location: &str, units: i64) {
        let outcome = self.run(adjust(sku, location, units));
        assert!(outcome.is_ok(), "{outcome:?}");
    }

    pub fn reserve_ok(&mut self, kind: CommandKind) -> ReservationId {
        match self.run(kind) {
            Ok(Success::Reserved { reservation }) => reservation,
            other => panic!("expected a reservation, got {other:?}"),
        }
    }

    pub fn available(&self, sku: &str, location: &str) -> i64 {
        self.engine
            .availability(sku, location)
            .map_or(0, |a| a.available)
    }

    pub fn held(&self, sku: &str, location: &str) -> i64 {
        self.engine
            .availability(sku, location)
            .map_or(0, |a| a.held)
    }

    /// (location name, units) of each allocation of a reservation.
    pub fn allocations(&self, id: ReservationId) -> Vec<(String, u32)> {
        let res = self.engine.reservation(id).expect("retained reservation");
        res.lines
            .iter()
            .map(|l| {
                let row = self.engine.row(l.row);
                (
                    self.engine.location(row.location).name.to_string(),
                    l.quantity,
                )
            })
            .collect()
    }
}

pub fn line(sku: &str, quantity: i64, location: Option<&str>) -> ReserveLine {
    ReserveLine {
        sku: sku.into(),
        quantity,
        location: location.map(Into::into),
    }
}

pub fn reserve_lines(lines: Vec<ReserveLine>) -> Reserve {
    Reserve {
        owner: "cart-1".into(),
        customer: "cust-1".into(),
        region: None,
        lines,
        ttl_ms: 60_000,
        policy: FillPolicy::AllOrNothing,
        allow_split: false,
    }
}

pub fn reserve(sku: &str, quantity: i64, location: Option<&str>) -> CommandKind {
    CommandKind::Reserve(reserve_lines(vec![line(sku, quantity, location)]))
}

pub fn adjust(sku: &str, location: &str, delta: i64) -> CommandKind {
    CommandKind::AdjustStock(AdjustStock {
        sku: sku.into(),
        location: location.into(),
        delta,
        expected_on_hand: None,
    })
}

pub fn upsert_location(name: &str, region: &str, priority: u32) -> CommandKind {
    CommandKind::UpsertLocation(UpsertLocation {
        location: name.into(),
        region: region.into(),
        priority,
    })
}

pub fn confirm(reservation: ReservationId, quantities: Option<Vec<i64>>) -> CommandKind {
    CommandKind::Confirm(Confirm {
        reservation,
        quantities,
    })
}

pub fn release(reservation: ReservationId) -> CommandKind {
    CommandKind::Release(Release { reservation })
}

pub fn extend(reservation: ReservationId, ttl_ms: u64) -> CommandKind {
    CommandKind::Extend(Extend {
        reservation,
        ttl_ms,
    })
}

pub fn policy(sku: &str, location: Option<&str>) -> SetPolicy {
    SetPolicy {
        sku: sku.into(),
        location: location.map(Into::into),
        safety_stock: None,
        backorder_allowance: None,
        customer_limit: LimitChange::Keep,
    }
}

/// A ledger with two regions: `eu-1` (eu, priority 2), `eu-2` (eu, 1),
/// `us-1` (us, 1).
pub fn three_warehouses() -> Ledger {
    let mut l = Ledger::default();
    l.location("eu-1", "eu", 2);
    l.location("eu-2", "eu", 1);
    l.location("us-1", "us", 1);
    l
}
