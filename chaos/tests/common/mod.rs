//! Builders for hand-made histories and final states.
#![allow(dead_code)]

use holdfast_chaos::final_state::{
    FinalLine, FinalReservation, FinalRow, FinalState, ReplicaState, ReservationStatus, ShardDigest,
};
use holdfast_chaos::history::{Allocation, Entry, FaultPhase, Op, OpResult, ReserveLine};
use holdfast_chaos::{check_entries, CheckConfig, Report};
use std::collections::BTreeMap;

/// A history under construction. Entries are appended in call order; the
/// checker orders by time, so concurrent operations need no interleaving
/// in the file, only distinct processes.
#[derive(Default)]
pub struct History {
    pub entries: Vec<Entry>,
}

impl History {
    pub fn invoke(&mut self, process: u64, time_us: u64, op: Op) -> &mut Self {
        self.entries.push(Entry::Invoke {
            process,
            time_us,
            op,
        });
        self
    }

    pub fn ok(&mut self, process: u64, time_us: u64, result: OpResult) -> &mut Self {
        self.entries.push(Entry::Ok {
            process,
            time_us,
            result,
        });
        self
    }

    pub fn refused(&mut self, process: u64, time_us: u64, code: &str, reason: &str) -> &mut Self {
        self.entries.push(Entry::Refused {
            process,
            time_us,
            code: code.into(),
            reason: reason.into(),
            metadata: BTreeMap::new(),
        });
        self
    }

    pub fn unknown(&mut self, process: u64, time_us: u64) -> &mut Self {
        self.entries.push(Entry::Unknown {
            process,
            time_us,
            error: "deadline exceeded".into(),
        });
        self
    }

    pub fn fault(&mut self, time_us: u64, kind: &str, target: &str) -> &mut Self {
        self.entries.push(Entry::Fault {
            time_us,
            kind: kind.into(),
            target: target.into(),
            phase: FaultPhase::Start,
        });
        self
    }

    /// An operation answered `Ok`.
    pub fn call(&mut self, process: u64, span: (u64, u64), op: Op, result: OpResult) -> &mut Self {
        self.invoke(process, span.0, op).ok(process, span.1, result)
    }

    /// An operation answered with a refusal.
    pub fn call_refused(
        &mut self,
        process: u64,
        span: (u64, u64),
        op: Op,
        code: &str,
        reason: &str,
    ) -> &mut Self {
        self.invoke(process, span.0, op)
            .refused(process, span.1, code, reason)
    }

    /// An operation that timed out.
    pub fn call_unknown(&mut self, process: u64, span: (u64, u64), op: Op) -> &mut Self {
        self.invoke(process, span.0, op).unknown(process, span.1)
    }

    pub fn check(&self, final_state: &FinalState) -> Report {
        self.check_with(final_state, CheckConfig::default())
    }

    pub fn check_with(&self, final_state: &FinalState, config: CheckConfig) -> Report {
        check_entries(&self.entries, final_state, config).expect("a well-formed history")
    }
}

pub const SKU: &str = "sku-1";
pub const LOC: &str = "loc-1";

pub fn adjust(request_id: &str, delta: i64) -> Op {
    Op::AdjustStock {
        request_id: request_id.into(),
        sku: SKU.into(),
        location: LOC.into(),
        delta,
        expected_on_hand: None,
    }
}

pub fn adjusted(on_hand: i64, available: i64) -> OpResult {
    OpResult::Adjusted { on_hand, available }
}

pub fn reserve(request_id: &str, quantity: i64) -> Op {
    Op::Reserve {
        request_id: request_id.into(),
        lines: vec![ReserveLine {
            sku: SKU.into(),
            location: LOC.into(),
            quantity,
            shard: None,
        }],
        owner: None,
        shard: None,
        ttl_ms: None,
    }
}

pub fn reserved(reservation_id: &str, quantity: i64, available_after: i64) -> OpResult {
    OpResult::Reserved {
        reservation_id: reservation_id.into(),
        allocations: vec![Allocation {
            sku: SKU.into(),
            location: LOC.into(),
            quantity,
            available_after: Some(available_after),
        }],
        expires_at_ms: None,
    }
}

pub fn confirm(request_id: &str, reservation_id: &str) -> Op {
    Op::Confirm {
        request_id: request_id.into(),
        reservation_id: reservation_id.into(),
        quantities: None,
    }
}

pub fn confirmed(units_confirmed: i64, units_released: i64) -> OpResult {
    OpResult::Confirmed {
        units_confirmed,
        units_released,
    }
}

pub fn release(request_id: &str, reservation_id: &str) -> Op {
    Op::Release {
        request_id: request_id.into(),
        reservation_id: reservation_id.into(),
    }
}

pub fn released(units_released: i64) -> OpResult {
    OpResult::Released { units_released }
}

pub fn read() -> Op {
    Op::ReadAvailability {
        sku: SKU.into(),
        location: LOC.into(),
        stale: false,
    }
}

pub fn availability(on_hand: i64, held: i64) -> OpResult {
    OpResult::Availability {
        on_hand,
        held,
        available: on_hand - held,
        as_of_index: 0,
    }
}

/// A replica with the one row `(SKU, LOC)` and the given reservations, each
/// `(id, state, quantity, confirmed)` on that row.
pub fn replica(
    node: &str,
    on_hand: i64,
    held: i64,
    reservations: &[(&str, ReservationStatus, i64, i64)],
) -> ReplicaState {
    ReplicaState {
        node: node.into(),
        rows: vec![FinalRow {
            sku: SKU.into(),
            location: LOC.into(),
            on_hand,
            held,
            safety_stock: 0,
            backorder_allowance: 0,
        }],
        reservations: reservations
            .iter()
            .map(|&(id, state, quantity, confirmed)| FinalReservation {
                id: id.into(),
                state,
                owner: None,
                lines: vec![FinalLine {
                    sku: SKU.into(),
                    location: LOC.into(),
                    quantity,
                    confirmed,
                }],
            })
            .collect(),
        shards: vec![ShardDigest {
            shard: 0,
            applied_index: 100,
            digest: "00ff".into(),
        }],
        applied_request_ids: None,
    }
}

/// Three replicas with the same state.
pub fn three(
    on_hand: i64,
    held: i64,
    reservations: &[(&str, ReservationStatus, i64, i64)],
) -> FinalState {
    FinalState {
        replicas: ["n1", "n2", "n3"]
            .iter()
            .map(|n| replica(n, on_hand, held, reservations))
            .collect(),
    }
}
