//! Property tests of the checker against histories generated from a small
//! reference model of the ledger (two rows, one location).
//!
//! The generator executes random actions one after another on the model,
//! which fixes each action's result and gives it a *linearization point*
//! (100 µs apart). The recorded interval of each action is then drawn
//! around its point. Such a history is linearizable by construction:
//!
//! - `sequential_histories_pass`: intervals do not overlap; the checker
//!   must find no violation of any kind;
//! - `a_corrupted_read_is_not_linearizable`: the same histories with one
//!   read's figures changed must be judged not linearizable (intervals do
//!   not overlap, so no other order exists);
//! - `concurrent_histories_with_unknown_outcomes_pass`: intervals overlap,
//!   some answers are lost (applied at their point, or never), and holds
//!   expire as the engine expires them (before each logged command, in
//!   `(expires_at, id)` order; no client sees it happen); still no
//!   violation.
//!
//! `PROPTEST_CASES` sets the number of cases (1,000 by default).

use holdfast_chaos::check::Linearizable;
use holdfast_chaos::final_state::{
    FinalLine, FinalReservation, FinalRow, FinalState, ReplicaState, ReservationStatus,
};
use holdfast_chaos::history::{Allocation, Entry, Op, OpResult, ReserveLine};
use holdfast_chaos::{check_entries, CheckConfig};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;

const SKUS: [&str; 2] = ["A", "B"];
const LOC: &str = "L";
/// Time between two linearization points, µs.
const POINT_SPACING_US: u64 = 100;

#[derive(Clone, Debug)]
enum Action {
    Adjust {
        row: usize,
        delta: i64,
    },
    /// `ttl` in µs of the generator's clock (which is also the server's).
    Reserve {
        row: usize,
        quantity: i64,
        ttl: u64,
    },
    Confirm {
        pick: Index,
        partial: Option<Index>,
    },
    Release {
        pick: Index,
    },
    Read {
        row: usize,
    },
    /// Not a client action: the leader's expiry tick.
    Tick,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..2usize, -3..=6i64).prop_map(|(row, delta)| Action::Adjust { row, delta }),
        4 => (0..2usize, 1..=4i64, prop_oneof![Just(300u64), Just(800), Just(2_000)])
            .prop_map(|(row, quantity, ttl)| Action::Reserve { row, quantity, ttl }),
        2 => (any::<Index>(), proptest::option::of(any::<Index>()))
            .prop_map(|(pick, partial)| Action::Confirm { pick, partial }),
        2 => any::<Index>().prop_map(|pick| Action::Release { pick }),
        4 => (0..2usize).prop_map(|row| Action::Read { row }),
    ]
}

/// What happens to the client's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// The client gets the answer.
    Answered,
    /// Applied at its point, but the client times out.
    Unknown,
    /// The client times out and the request is never applied.
    Lost,
}

#[derive(Clone, Debug)]
struct Res {
    row: usize,
    quantity: i64,
    confirmed: i64,
    state: ReservationStatus,
    /// The client learned the id (it may confirm or release it).
    acked: bool,
    owner: String,
    expires_at: u64,
}

#[derive(Default)]
struct Model {
    /// Whether holds lapse (else every TTL is taken as endless).
    expiry: bool,
    /// `(on_hand, held)` per row, `None` until the row is created.
    rows: [Option<(i64, i64)>; 2],
    reservations: Vec<Res>,
}

fn line(row: usize, quantity: i64) -> ReserveLine {
    ReserveLine {
        sku: SKUS[row].into(),
        location: LOC.into(),
        quantity,
        shard: None,
    }
}

fn refusal(reason: &str) -> Result<OpResult, String> {
    Err(reason.to_string())
}

impl Model {
    fn figures(&self, row: usize) -> (i64, i64) {
        self.rows[row].unwrap_or((0, 0))
    }

    /// Applies `action` (unless `Lost`); returns the op, the answer and
    /// whether anything a client sees happened.
    /// Expires every pending hold due at `now`, as the engine does before
    /// each command and on each tick, in `(expires_at, id)` order.
    fn expire_due(&mut self, now: u64) {
        let mut due: Vec<(u64, usize)> = (0..self.reservations.len())
            .filter(|&k| {
                let r = &self.reservations[k];
                self.expiry && r.state == ReservationStatus::Pending && r.expires_at <= now
            })
            .map(|k| (self.reservations[k].expires_at, k))
            .collect();
        due.sort_unstable();
        for (_, k) in due {
            self.resolve(k, ReservationStatus::Expired, 0);
        }
    }

    fn apply(
        &mut self,
        i: usize,
        now: u64,
        action: &Action,
        fate: Fate,
    ) -> Option<(Op, Result<OpResult, String>)> {
        let applied = fate != Fate::Lost;
        let request_id = format!("q{i}");
        // Reads do not go through the log; everything else expires what is due.
        if applied && !matches!(action, Action::Read { .. }) {
            self.expire_due(now);
        }
        match *action {
            Action::Adjust { row, delta } => {
                let (on_hand, held) = self.figures(row);
                let op = Op::AdjustStock {
                    request_id,
                    sku: SKUS[row].into(),
                    location: LOC.into(),
                    delta,
                    expected_on_hand: None,
                };
                if held > on_hand + delta {
                    return Some((op, refusal("HELD_EXCEEDS_STOCK")));
                }
                if applied {
                    self.rows[row] = Some((on_hand + delta, held));
                }
                let available = on_hand + delta - held;
                Some((
                    op,
                    Ok(OpResult::Adjusted {
                        on_hand: on_hand + delta,
                        available,
                    }),
                ))
            }
            Action::Reserve { row, quantity, ttl } => {
                let (on_hand, held) = self.figures(row);
                let op = Op::Reserve {
                    owner: Some(request_id.clone()),
                    request_id,
                    lines: vec![line(row, quantity)],
                    shard: Some(0),
                    ttl_ms: None,
                };
                if on_hand - held < quantity {
                    return Some((op, refusal("OUT_OF_STOCK")));
                }
                let id = format!("0-{}", self.reservations.len());
                if applied {
                    self.rows[row] = Some((on_hand, held + quantity));
                    self.reservations.push(Res {
                        row,
                        quantity,
                        confirmed: 0,
                        state: ReservationStatus::Pending,
                        acked: fate == Fate::Answered,
                        owner: format!("q{i}"),
                        expires_at: now + ttl,
                    });
                }
                let allocation = Allocation {
                    sku: SKUS[row].into(),
                    location: LOC.into(),
                    quantity,
                    available_after: Some(on_hand - held - quantity),
                };
                let result = OpResult::Reserved {
                    reservation_id: id,
                    allocations: vec![allocation],
                    expires_at_ms: Some(now + ttl),
                };
                Some((op, Ok(result)))
            }
            Action::Confirm { pick, partial } => {
                let k = self.pick_acked(pick)?;
                let r = &self.reservations[k];
                let units = partial.map_or(r.quantity, |p| 1 + p.index(r.quantity as usize) as i64);
                let op = Op::Confirm {
                    request_id,
                    reservation_id: format!("0-{k}"),
                    quantities: partial.map(|_| vec![units]),
                };
                if r.state != ReservationStatus::Pending {
                    return Some((op, refusal("RESERVATION_NOT_PENDING")));
                }
                let released = r.quantity - units;
                if applied {
                    self.resolve(k, ReservationStatus::Confirmed, units);
                }
                Some((
                    op,
                    Ok(OpResult::Confirmed {
                        units_confirmed: units,
                        units_released: released,
                    }),
                ))
            }
            Action::Release { pick } => {
                let k = self.pick_acked(pick)?;
                let r = &self.reservations[k];
                let op = Op::Release {
                    request_id,
                    reservation_id: format!("0-{k}"),
                };
                if r.state != ReservationStatus::Pending {
                    return Some((op, refusal("RESERVATION_NOT_PENDING")));
                }
                let units = r.quantity;
                if applied {
                    self.resolve(k, ReservationStatus::Released, 0);
                }
                Some((
                    op,
                    Ok(OpResult::Released {
                        units_released: units,
                    }),
                ))
            }
            Action::Read { row } => {
                let op = Op::ReadAvailability {
                    sku: SKUS[row].into(),
                    location: LOC.into(),
                    stale: false,
                };
                let result = match self.rows[row] {
                    None => OpResult::NoRow {},
                    Some((on_hand, held)) => OpResult::Availability {
                        on_hand,
                        held,
                        available: on_hand - held,
                        as_of_index: i as u64,
                    },
                };
                Some((op, Ok(result)))
            }
            Action::Tick => None,
        }
    }

    fn pick_acked(&self, pick: Index) -> Option<usize> {
        let acked: Vec<usize> = (0..self.reservations.len())
            .filter(|&k| self.reservations[k].acked)
            .collect();
        (!acked.is_empty()).then(|| acked[pick.index(acked.len())])
    }

    fn resolve(&mut self, k: usize, state: ReservationStatus, sold: i64) {
        let r = &mut self.reservations[k];
        r.state = state;
        r.confirmed = sold;
        let (on_hand, held) = self.rows[r.row].expect("a reserved row exists");
        self.rows[r.row] = Some((on_hand - sold, held - r.quantity));
    }

    fn final_state(&self) -> FinalState {
        let rows: Vec<FinalRow> = (0..2)
            .filter_map(|row| {
                self.rows[row].map(|(on_hand, held)| FinalRow {
                    sku: SKUS[row].into(),
                    location: LOC.into(),
                    on_hand,
                    held,
                    safety_stock: 0,
                    backorder_allowance: 0,
                })
            })
            .collect();
        let reservations: Vec<FinalReservation> = self
            .reservations
            .iter()
            .enumerate()
            .map(|(k, r)| FinalReservation {
                id: format!("0-{k}"),
                state: r.state,
                owner: Some(r.owner.clone()),
                lines: vec![FinalLine {
                    sku: SKUS[r.row].into(),
                    location: LOC.into(),
                    quantity: r.quantity,
                    confirmed: r.confirmed,
                }],
            })
            .collect();
        let replica = |node: &str| ReplicaState {
            node: node.into(),
            rows: rows.clone(),
            reservations: reservations.clone(),
            shards: vec![],
            applied_request_ids: None,
        };
        FinalState {
            replicas: vec![replica("n1"), replica("n2"), replica("n3")],
        }
    }
}

/// How each generated action is recorded.
#[derive(Clone, Debug)]
struct Shape {
    /// µs before its point that the action is invoked.
    before_us: u64,
    /// µs after its point that it is answered.
    after_us: u64,
    fate: Fate,
}

/// Records `actions` (with shapes) as a history, plus the final state.
fn record(actions: &[(Action, Shape)], expiry: bool) -> (Vec<Entry>, FinalState) {
    let mut model = Model {
        expiry,
        ..Model::default()
    };
    let mut entries = Vec::new();
    for (i, (action, shape)) in actions.iter().enumerate() {
        let point = 1_000 + POINT_SPACING_US * i as u64;
        // Reads are never lost: a lost read is no evidence either way.
        let fate = match action {
            Action::Read { .. } => Fate::Answered,
            _ => shape.fate,
        };
        let Some((op, answer)) = model.apply(i, point, action, fate) else {
            continue;
        };
        // A refusal changes nothing, so a lost refusal is just unknown.
        let (invoke, end) = (point - shape.before_us, point + shape.after_us);
        let process = i as u64;
        entries.push(Entry::Invoke {
            process,
            time_us: invoke,
            op,
        });
        entries.push(match (fate, answer) {
            (Fate::Unknown | Fate::Lost, _) => Entry::Unknown {
                process,
                time_us: end,
                error: "timeout".into(),
            },
            (Fate::Answered, Ok(result)) => Entry::Ok {
                process,
                time_us: end,
                result,
            },
            (Fate::Answered, Err(reason)) => Entry::Refused {
                process,
                time_us: end,
                code: "FAILED_PRECONDITION".into(),
                reason,
                metadata: BTreeMap::new(),
            },
        });
    }
    (entries, model.final_state())
}

/// The mix of a generated history.
#[derive(Clone, Copy, Debug)]
struct Mix {
    /// Weights of the fates of a mutating action.
    answered: u32,
    unknown: u32,
    lost: u32,
    /// Weight of expiry ticks among actions (0: holds never lapse).
    ticks: u32,
    /// Largest distance of an invoke or answer from its point, µs. Below
    /// half of `POINT_SPACING_US`, intervals never overlap.
    spread_us: u64,
}

impl Mix {
    fn expiry(&self) -> bool {
        self.ticks > 0
    }
}

const SEQUENTIAL: Mix = Mix {
    answered: 1,
    unknown: 0,
    lost: 0,
    ticks: 0,
    spread_us: 10,
};

const CONCURRENT: Mix = Mix {
    answered: 8,
    unknown: 1,
    lost: 1,
    ticks: 1,
    spread_us: 250,
};

fn history(
    mix: Mix,
    len: impl Into<proptest::collection::SizeRange>,
) -> impl Strategy<Value = Vec<(Action, Shape)>> {
    let fate = prop_oneof![
        mix.answered => Just(Fate::Answered),
        mix.unknown => Just(Fate::Unknown),
        mix.lost => Just(Fate::Lost),
    ];
    let shape =
        (0..=mix.spread_us, 0..=mix.spread_us, fate).prop_map(|(before_us, after_us, fate)| {
            Shape {
                before_us,
                after_us,
                fate,
            }
        });
    let step = prop_oneof![18 => action(), mix.ticks => Just(Action::Tick)];
    proptest::collection::vec((step, shape), len)
}

/// `default` cases, or `PROPTEST_CASES` for a longer run.
fn cases(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
        ..ProptestConfig::default()
    }
}

fn check(actions: &[(Action, Shape)], mix: Mix) -> holdfast_chaos::Report {
    let (entries, final_state) = record(actions, mix.expiry());
    check_entries(&entries, &final_state, CheckConfig::default()).unwrap()
}

proptest! {
    #![proptest_config(cases(1_000))]

    #[test]
    fn sequential_histories_pass(actions in history(SEQUENTIAL, 1..60)) {
        let report = check(&actions, SEQUENTIAL);
        prop_assert!(report.passed(), "{}", report.render());
    }

    #[test]
    fn a_corrupted_read_is_not_linearizable(
        mut actions in history(SEQUENTIAL, 0..60),
        last_row in 0..2usize,
        pick in any::<Index>(),
        field in 0..2usize,
        delta in prop_oneof![-5..=-1i64, 1..=5i64],
    ) {
        // At least one read, which finds a row (a missing row reads as
        // `no_row`, which has no figures to corrupt).
        let shape = Shape { before_us: 10, after_us: 10, fate: Fate::Answered };
        actions.insert(0, (Action::Adjust { row: last_row, delta: 1 }, shape.clone()));
        actions.push((Action::Read { row: last_row }, shape));
        let (mut entries, final_state) = record(&actions, false);
        let reads: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Entry::Ok { result: OpResult::Availability { .. }, .. }))
            .map(|(i, _)| i)
            .collect();
        let Entry::Ok { result: OpResult::Availability { on_hand, held, .. }, .. } =
            &mut entries[reads[pick.index(reads.len())]]
        else {
            unreachable!()
        };
        *[on_hand, held][field] += delta;
        let report = check_entries(&entries, &final_state, CheckConfig::default()).unwrap();
        prop_assert_eq!(report.linearizable(), Linearizable::No, "{}", report.render());
    }

    #[test]
    fn concurrent_histories_with_unknown_outcomes_pass(actions in history(CONCURRENT, 1..60)) {
        let report = check(&actions, CONCURRENT);
        prop_assert!(report.passed(), "{}", report.render());
    }
}

/// A long concurrent history (4,000 actions on two rows, or
/// `CHAOS_LONG_HISTORY_ACTIONS`; a fifth of the writes with unknown outcome,
/// half of those never applied; holds expiring) is found linearizable
/// within the default budget (about 2×10^5 steps for the busier row).
#[test]
fn a_long_concurrent_history_is_decided_within_budget() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let n: usize =
        std::env::var("CHAOS_LONG_HISTORY_ACTIONS").map_or(4_000, |v| v.parse().unwrap());
    let mut runner = TestRunner::deterministic();
    let actions = history(CONCURRENT, n)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    let report = check(&actions, CONCURRENT);
    assert!(report.passed(), "{}", report.render());
    for r in &report.rows {
        eprintln!("row {:?}: {} operations, {} steps", r.row, r.ops, r.steps);
    }
}
