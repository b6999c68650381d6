//! Hot-SKU admission (design §5, layer 2): a scarce SKU admits at most
//! `k × available` reserves into Raft at a time on its leader; the rest
//! get a fast, retryable `RESOURCE_EXHAUSTED` (reason `ADMISSION_LIMIT`)
//! without a log entry.
//!
//! Why: when ten thousand buyers race for a hundred units, all but a few
//! hundred requests can only fail; proposing them costs log space, fsyncs
//! and apply time that the winners wait behind. Admitting twice the units
//! still available keeps every unit sellable (a refused buyer retries, and
//! the units of a failed or released hold come back) while the log carries
//! a bounded number of requests per hot SKU.
//!
//! Only first attempts (`FIRST_ATTEMPT_HEADER`) are subject to it: a retry
//! may have been applied already and must reach the ledger to learn its
//! first answer (design §1.3). A refusal here is itself "not proposed", so
//! the client keeps marking the next attempt as a first attempt.
//!
//! The count is per SKU on this node; the stock board (applied state)
//! says which SKUs are scarce and how many units they have. SKUs not on
//! the board are never limited.

use crate::pb::inventory as pb;
use crate::status;
use dashmap::DashMap;
use holdfast_engine::StockBoard;
use tonic::{Code, Status};

/// Reason of an admission refusal: the request was not proposed.
pub const ADMISSION_REASON: &str = "ADMISSION_LIMIT";
/// Requests admitted in flight per unit still available (design §5: k≈2).
pub const IN_FLIGHT_PER_UNIT: i64 = 2;

/// In-flight reserves per scarce SKU.
#[derive(Default)]
pub struct Admission {
    in_flight: DashMap<String, i64>,
}

/// Admitted reserves of one request; gives its places back when dropped
/// (the request was answered, or its caller went away).
pub struct Admitted<'a> {
    admission: &'a Admission,
    skus: Vec<String>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        for sku in &self.skus {
            let now_empty = self
                .admission
                .in_flight
                .get_mut(sku)
                .map(|mut n| {
                    *n -= 1;
                    *n <= 0
                })
                .unwrap_or(false);
            if now_empty {
                self.admission.in_flight.remove_if(sku, |_, n| *n <= 0);
            }
        }
    }
}

impl Admission {
    /// Admits `r` against `board`, or refuses it naming the first SKU that
    /// is at its limit. A request admitted holds one place per distinct
    /// scarce SKU until the returned guard is dropped.
    pub fn admit<'a>(
        &'a self,
        board: &StockBoard,
        r: &pb::ReserveRequest,
    ) -> Result<Admitted<'a>, Status> {
        let mut admitted = Admitted {
            admission: self,
            skus: Vec::new(),
        };
        for line in &r.lines {
            if admitted.skus.contains(&line.sku) {
                continue;
            }
            let Some(scarcity) = board.scarcity(&line.sku, line.location.as_deref()) else {
                continue;
            };
            let limit = IN_FLIGHT_PER_UNIT * scarcity.available.max(0);
            let mut count = self.in_flight.entry(line.sku.clone()).or_insert(0);
            if *count >= limit {
                let in_flight = *count;
                drop(count);
                // `admitted` gives back what this request took so far.
                return Err(refusal(
                    line,
                    in_flight,
                    scarcity.available,
                    scarcity.as_of_index,
                ));
            }
            *count += 1;
            drop(count);
            admitted.skus.push(line.sku.clone());
        }
        Ok(admitted)
    }

    /// Reserves in flight for `sku` (for tests and metrics).
    pub fn in_flight(&self, sku: &str) -> i64 {
        self.in_flight.get(sku).map_or(0, |n| *n)
    }
}

fn refusal(line: &pb::ReserveLine, in_flight: i64, available: i64, as_of_index: u64) -> Status {
    status::status(
        Code::ResourceExhausted,
        format!(
            "{}: {in_flight} reserves in flight for {} units available (as of log index \
             {as_of_index}); not proposed, retry with the same request id",
            line.sku,
            available.max(0)
        ),
        ADMISSION_REASON,
        &[
            ("sku", line.sku.clone()),
            ("in_flight", in_flight.to_string()),
            ("available", available.max(0).to_string()),
            ("as_of_index", as_of_index.to_string()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    /// A shard's board after stocking `rows` (sku, units) at one location
    /// and holding `held` units of each.
    fn board(rows: &[(&str, i64, i64)]) -> std::sync::Arc<StockBoard> {
        use holdfast_engine::{AdjustStock, Command, CommandKind, Engine, EngineConfig, RequestId};
        use holdfast_engine::{FillPolicy, Stamp, UpsertLocation};
        let mut engine = Engine::new(EngineConfig::default());
        let mut events = Vec::new();
        let mut id = 0u128;
        let mut apply = |engine: &mut Engine, kind| {
            id += 1;
            let stamp = Stamp {
                index: id as u64,
                now_ms: 1_000,
            };
            let command = Command {
                request_id: RequestId(id),
                kind,
            };
            engine.apply(stamp, &command, &mut events).expect("applies");
        };
        apply(
            &mut engine,
            CommandKind::UpsertLocation(UpsertLocation {
                location: "berlin".into(),
                region: "eu".into(),
                priority: 1,
            }),
        );
        for &(sku, units, held) in rows {
            apply(
                &mut engine,
                CommandKind::AdjustStock(AdjustStock {
                    sku: sku.into(),
                    location: "berlin".into(),
                    delta: units,
                    expected_on_hand: None,
                }),
            );
            if held > 0 {
                let mut r = reserve(&[sku]);
                r.lines[0].quantity = held;
                (r.owner_id, r.customer_id, r.ttl_ms) = ("o".into(), "c".into(), 60_000);
                let reserve = crate::service::engine_reserve(&r, FillPolicy::AllOrNothing);
                apply(&mut engine, CommandKind::Reserve(reserve));
            }
        }
        engine.board()
    }

    fn reserve(skus: &[&str]) -> pb::ReserveRequest {
        pb::ReserveRequest {
            lines: skus
                .iter()
                .map(|s| pb::ReserveLine {
                    sku: s.to_string(),
                    quantity: 1,
                    location: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Twice the available units are admitted; the next is refused with
    /// its reason; a finished request frees its place.
    #[test]
    fn admits_twice_the_available_units() {
        let a = Admission::default();
        let b = board(&[("hot", 3, 0)]);
        let held: Vec<_> = (0..6)
            .map(|_| a.admit(&b, &reserve(&["hot"])).unwrap())
            .collect();
        assert_eq!(a.in_flight("hot"), 6);
        let err = a.admit(&b, &reserve(&["hot"])).err().unwrap();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert_eq!(
            err.get_details_error_info().unwrap().reason,
            ADMISSION_REASON
        );
        drop(held);
        assert_eq!(a.in_flight("hot"), 0);
        assert!(a.admit(&b, &reserve(&["hot"])).is_ok());
    }

    /// A SKU not on the board is never limited; nothing available admits
    /// nothing; a refused multi-line request gives back what it took.
    #[test]
    fn only_scarce_skus_are_limited_and_refusals_give_back() {
        let a = Admission::default();
        let b = board(&[("gone", 4, 4), ("hot", 1, 0), ("plenty", 1_000, 0)]);
        let plenty: Vec<_> = (0..100)
            .map(|_| a.admit(&b, &reserve(&["plenty"])).unwrap())
            .collect();
        assert_eq!(a.in_flight("plenty"), 0);
        drop(plenty);
        assert!(a.admit(&b, &reserve(&["gone"])).is_err());
        let err = a.admit(&b, &reserve(&["hot", "gone"])).err().unwrap();
        assert!(err.message().starts_with("gone"), "{}", err.message());
        assert_eq!(a.in_flight("hot"), 0, "the refused request gave back hot");
        let _one = a.admit(&b, &reserve(&["hot", "hot"])).unwrap();
        assert_eq!(a.in_flight("hot"), 1, "one place per distinct SKU");
    }
}
