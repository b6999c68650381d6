//! The checker on hand-made histories with cross-shard reservations: a
//! reserve of rows A (shard 0) and B (shard 1), held as one part per shard
//! under a joined id (`"0-1+1-1"`). Correct histories must pass, also where
//! a refused or unknown reserve held parts and the coordinator released
//! them; each broken promise must be caught on the parts.

mod common;

use common::History;
use holdfast_chaos::check::{Class, Linearizable};
use holdfast_chaos::final_state::{
    FinalLine, FinalReservation, FinalRow, FinalState, ReplicaState, ReservationStatus,
    ReservationStatus::*, ShardDigest,
};
use holdfast_chaos::history::{Allocation, Entry, Op, OpResult, ReserveLine};
use holdfast_chaos::parts::{part_request_id, PartOp};
use holdfast_chaos::Report;
use std::collections::BTreeMap;

const A: &str = "A";
const B: &str = "B";
const L: &str = "L";

fn shard_of(sku: &str) -> u32 {
    u32::from(sku == B)
}

fn adjust(request_id: &str, sku: &str, delta: i64) -> Op {
    Op::AdjustStock {
        request_id: request_id.into(),
        sku: sku.into(),
        location: L.into(),
        delta,
        expected_on_hand: None,
    }
}

fn adjusted(on_hand: i64) -> OpResult {
    OpResult::Adjusted {
        on_hand,
        available: on_hand,
    }
}

/// A cross-shard reserve of `a` units of A and `b` of B, owned by its id.
fn reserve(request_id: &str, a: i64, b: i64) -> Op {
    let line = |sku: &str, quantity| ReserveLine {
        sku: sku.into(),
        location: L.into(),
        quantity,
        shard: Some(shard_of(sku)),
    };
    Op::Reserve {
        request_id: request_id.into(),
        lines: vec![line(B, b), line(A, a)],
        owner: Some(request_id.into()),
        shard: None,
        ttl_ms: None,
    }
}

/// The joined answer: A's part (shard 0) first, then B's.
fn reserved(joined: &str, a: (i64, i64), b: (i64, i64)) -> OpResult {
    let allocation = |sku: &str, (quantity, after): (i64, i64)| Allocation {
        sku: sku.into(),
        location: L.into(),
        quantity,
        available_after: Some(after),
    };
    OpResult::Reserved {
        reservation_id: joined.into(),
        allocations: vec![allocation(A, a), allocation(B, b)],
        expires_at_ms: Some(1_000),
    }
}

fn confirm(request_id: &str, joined: &str, quantities: Option<Vec<i64>>) -> Op {
    Op::Confirm {
        request_id: request_id.into(),
        reservation_id: joined.into(),
        quantities,
    }
}

fn release(request_id: &str, joined: &str) -> Op {
    Op::Release {
        request_id: request_id.into(),
        reservation_id: joined.into(),
    }
}

fn read(sku: &str) -> Op {
    Op::ReadAvailability {
        sku: sku.into(),
        location: L.into(),
        stale: false,
    }
}

fn availability(on_hand: i64, held: i64) -> OpResult {
    OpResult::Availability {
        on_hand,
        held,
        available: on_hand - held,
        as_of_index: 0,
    }
}

/// A part in a final state: `(id, state, sku, quantity, confirmed, owner)`.
type Part<'a> = (&'a str, ReservationStatus, &'a str, i64, i64, &'a str);

/// A replica with rows A and B, `(on_hand, held)` each, and `parts`.
fn replica(node: &str, a: (i64, i64), b: (i64, i64), parts: &[Part<'_>]) -> ReplicaState {
    let row = |sku: &str, (on_hand, held): (i64, i64)| FinalRow {
        sku: sku.into(),
        location: L.into(),
        on_hand,
        held,
        safety_stock: 0,
        backorder_allowance: 0,
    };
    ReplicaState {
        node: node.into(),
        rows: vec![row(A, a), row(B, b)],
        reservations: parts
            .iter()
            .map(
                |&(id, state, sku, quantity, confirmed, owner)| FinalReservation {
                    id: id.into(),
                    state,
                    owner: Some(owner.into()),
                    lines: vec![FinalLine {
                        sku: sku.into(),
                        location: L.into(),
                        quantity,
                        confirmed,
                    }],
                },
            )
            .collect(),
        shards: (0..2)
            .map(|shard| ShardDigest {
                shard,
                applied_index: 100,
                digest: "00ff".into(),
            })
            .collect(),
        applied_request_ids: None,
    }
}

fn three(a: (i64, i64), b: (i64, i64), parts: &[Part<'_>]) -> FinalState {
    FinalState {
        replicas: ["n1", "n2", "n3"]
            .iter()
            .map(|n| replica(n, a, b, parts))
            .collect(),
    }
}

/// Both rows stocked with 10 units, acknowledged.
fn stocked() -> History {
    let mut h = History::default();
    h.call(9, (0, 10), adjust("a1", A, 10), adjusted(10)).call(
        9,
        (11, 20),
        adjust("a2", B, 10),
        adjusted(10),
    );
    h
}

/// [`stocked`], then reserve `r1` (2 of A, 3 of B) acknowledged as the
/// cross-shard reservation `0-1+1-1`.
fn stocked_with_r1() -> History {
    let mut h = stocked();
    h.call(
        1,
        (30, 40),
        reserve("r1", 2, 3),
        reserved("0-1+1-1", (2, 8), (3, 7)),
    );
    h
}

/// An ABORTED answer: a part's outcome was unknown.
fn aborted(h: &mut History, process: u64, time_us: u64) {
    h.entries.push(Entry::Refused {
        process,
        time_us,
        code: "ABORTED".into(),
        reason: String::new(),
        metadata: BTreeMap::new(),
    });
}

fn refused_with(h: &mut History, process: u64, time_us: u64, reason: &str, meta: (&str, &str)) {
    h.entries.push(Entry::Refused {
        process,
        time_us,
        code: "FAILED_PRECONDITION".into(),
        reason: reason.into(),
        metadata: BTreeMap::from([(meta.0.to_string(), meta.1.to_string())]),
    });
}

fn assert_passes(r: &Report) {
    assert!(r.passed(), "expected a pass:\n{}", r.render());
}

// ---------------------------------------------------------------------------
// Good histories
// ---------------------------------------------------------------------------

/// Reserve, then a partial confirm that confirms A and asks 0 units of B:
/// the server confirms A's part and releases B's.
#[test]
fn a_cross_shard_reserve_and_partial_confirm_pass() {
    let mut h = stocked_with_r1();
    h.call(2, (45, 50), read(B), availability(10, 3))
        .call(
            1,
            (60, 70),
            confirm("c1", "0-1+1-1", Some(vec![2, 0])),
            OpResult::Confirmed {
                units_confirmed: 2,
                units_released: 3,
            },
        )
        .call(2, (80, 90), read(A), availability(8, 0));
    let r = h.check(&three(
        (8, 0),
        (10, 0),
        &[
            ("0-1", Confirmed, A, 2, 2, "r1"),
            ("1-1", Released, B, 3, 0, "r1"),
        ],
    ));
    assert_passes(&r);
    // Both shards served it.
    h.fault(25, "kill", "n1");
    let shards: Vec<String> = h
        .check(&three(
            (8, 0),
            (10, 0),
            &[
                ("0-1", Confirmed, A, 2, 2, "r1"),
                ("1-1", Released, B, 3, 0, "r1"),
            ],
        ))
        .availability
        .windows
        .iter()
        .map(|w| w.shard.clone())
        .collect();
    assert_eq!(shards, ["0", "1"]);
}

/// An all-or-nothing reserve refused on B held A's part first and released
/// it before answering: a read in between saw A held. Only the
/// coordinator's release explains it, and the released part is no
/// duplicate.
#[test]
fn a_refused_cross_shard_reserve_may_hold_and_release_parts() {
    let mut h = stocked();
    h.invoke(1, 30, reserve("r1", 2, 11));
    h.call(2, (31, 35), read(A), availability(10, 2));
    refused_with(&mut h, 1, 40, "OUT_OF_STOCK", ("line", "0"));
    h.call(2, (50, 60), read(A), availability(10, 0));
    let r = h.check(&three(
        (10, 0),
        (10, 0),
        &[("0-7", Released, A, 2, 0, "r1")],
    ));
    assert_passes(&r);
}

/// A reserve whose answer was lost (ABORTED, then a timeout): one part was
/// held and is pending, the other was never held; a same-id retry found
/// nothing new. The held part is explained, and the rows' histories hold.
#[test]
fn an_unknown_cross_shard_reserve_is_judged_part_by_part() {
    let mut h = stocked();
    h.invoke(1, 30, reserve("r1", 2, 3));
    aborted(&mut h, 1, 40);
    h.call_unknown(1, (50, 3_050), reserve("r1", 2, 3))
        .call(2, (3_100, 3_110), read(A), availability(10, 2))
        .call(2, (3_120, 3_130), read(B), availability(10, 0));
    let r = h.check(&three((10, 2), (10, 0), &[("0-4", Pending, A, 2, 0, "r1")]));
    assert_passes(&r);
}

/// A confirm refused `RESERVATION_NOT_PENDING` because B's part had
/// expired: A's part was confirmed all the same.
#[test]
fn a_confirm_refused_on_one_part_may_have_confirmed_the_others() {
    let mut h = stocked_with_r1();
    h.invoke(1, 5_000, confirm("c1", "0-1+1-1", None));
    refused_with(&mut h, 1, 5_010, "RESERVATION_NOT_PENDING", ("part", "1-1"));
    h.call(2, (5_020, 5_030), read(A), availability(8, 0));
    let r = h.check(&three(
        (8, 0),
        (10, 0),
        &[
            ("0-1", Confirmed, A, 2, 2, "r1"),
            ("1-1", Expired, B, 3, 0, "r1"),
        ],
    ));
    assert_passes(&r);
}

/// With applied request ids listed, the parts' derived ids stand for the
/// client's: present, it passes; one part's missing, it is lost.
#[test]
fn applied_request_ids_are_the_parts_derived_ids() {
    let mut h = stocked_with_r1();
    h.call(
        1,
        (50, 60),
        release("x1", "0-1+1-1"),
        OpResult::Released { units_released: 5 },
    );
    let parts = [
        ("0-1", Released, A, 2, 0, "r1"),
        ("1-1", Released, B, 3, 0, "r1"),
    ];
    let ids = |without: Option<&str>| {
        let mut ids = vec!["a1".to_string(), "a2".to_string()];
        for shard in [0, 1] {
            ids.push(part_request_id("r1", PartOp::Reserve, shard, &[0, 1]));
            ids.push(part_request_id("x1", PartOp::Release, shard, &[0, 1]));
        }
        ids.retain(|id| Some(id.as_str()) != without);
        ids
    };
    let mut state = three((10, 0), (10, 0), &parts);
    for r in &mut state.replicas {
        r.applied_request_ids = Some(ids(None));
    }
    assert_passes(&h.check(&state));
    let gone = part_request_id("x1", PartOp::Release, 1, &[0, 1]);
    state.replicas[1].applied_request_ids = Some(ids(Some(&gone)));
    let r = h.check(&state);
    assert_eq!(r.count(Class::Lost), 1, "{}", r.render());
    assert!(r.render().contains("part on shard 1"), "{}", r.render());
}

// ---------------------------------------------------------------------------
// Broken promises
// ---------------------------------------------------------------------------

/// Design §1.4: an acknowledged cross-shard reservation lost its part on
/// shard 1 on one replica.
#[test]
fn a_lost_part_is_caught() {
    let h = stocked_with_r1();
    let parts = [
        ("0-1", Pending, A, 2, 0, "r1"),
        ("1-1", Pending, B, 3, 0, "r1"),
    ];
    let mut state = three((10, 2), (10, 3), &parts);
    state.replicas[2] = replica("n3", (10, 2), (10, 0), &parts[..1]);
    let r = h.check(&state);
    assert_eq!(r.count(Class::Lost), 1, "{}", r.render());
    assert!(
        r.render().contains("part 1-1 missing on n3"),
        "{}",
        r.render()
    );
}

/// Design §1.4: an acknowledged confirm of a joined id left one part
/// pending.
#[test]
fn a_part_left_unconfirmed_is_caught() {
    let mut h = stocked_with_r1();
    h.call(
        1,
        (50, 60),
        confirm("c1", "0-1+1-1", None),
        OpResult::Confirmed {
            units_confirmed: 5,
            units_released: 0,
        },
    );
    let r = h.check(&three(
        (8, 0),
        (10, 3),
        &[
            ("0-1", Confirmed, A, 2, 2, "r1"),
            ("1-1", Pending, B, 3, 0, "r1"),
        ],
    ));
    assert!(r.count(Class::Lost) >= 1, "{}", r.render());
    assert!(r.render().contains("part 1-1 Pending"), "{}", r.render());
}

/// Design §1.3: a part applied twice (its shard holds two reservations of
/// the reserve's owner with its lines).
#[test]
fn a_part_applied_twice_is_caught() {
    let h = stocked_with_r1();
    let r = h.check(&three(
        (10, 2),
        (10, 6),
        &[
            ("0-1", Pending, A, 2, 0, "r1"),
            ("1-1", Pending, B, 3, 0, "r1"),
            ("1-2", Pending, B, 3, 0, "r1"),
        ],
    ));
    assert!(r.count(Class::Duplicate) >= 1, "{}", r.render());
    assert!(
        r.render().contains("2 of its owner on shard 1"),
        "{}",
        r.render()
    );
}

/// Design §1.3: a part's derived request id applied twice on a replica.
#[test]
fn a_part_request_id_applied_twice_is_caught() {
    let h = stocked_with_r1();
    let mut state = three(
        (10, 2),
        (10, 3),
        &[
            ("0-1", Pending, A, 2, 0, "r1"),
            ("1-1", Pending, B, 3, 0, "r1"),
        ],
    );
    let part = part_request_id("r1", PartOp::Reserve, 1, &[0, 1]);
    for r in &mut state.replicas {
        r.applied_request_ids = Some(vec![
            "a1".into(),
            "a2".into(),
            part_request_id("r1", PartOp::Reserve, 0, &[0, 1]),
            part.clone(),
            part.clone(),
        ]);
    }
    let r = h.check(&state);
    assert_eq!(r.count(Class::Duplicate), 1, "{}", r.render());
    assert!(r.render().contains(&part), "{}", r.render());
}

/// Design §1.3: one part handed out in two joined reservations.
#[test]
fn a_part_in_two_reservations_is_caught() {
    let mut h = stocked_with_r1();
    h.call(
        2,
        (50, 60),
        reserve("r2", 1, 3),
        reserved("0-2+1-1", (1, 7), (3, 7)),
    );
    let r = h.check(&FinalState::default());
    assert!(r.count(Class::Duplicate) >= 1, "{}", r.render());
    assert!(
        r.render().contains("a part of both 0-1+1-1 and 0-2+1-1"),
        "{}",
        r.render()
    );
}

/// Design §1.1: a cross-shard reservation oversold B through its part, and
/// the sale was acknowledged.
#[test]
fn an_oversell_through_a_part_is_caught() {
    let mut h = History::default();
    h.call(9, (0, 10), adjust("a1", A, 10), adjusted(10))
        .call(9, (11, 20), adjust("a2", B, 2), adjusted(2))
        .call(
            1,
            (30, 40),
            reserve("r1", 1, 3),
            reserved("0-1+1-1", (1, 9), (3, -1)),
        )
        .call(
            1,
            (50, 60),
            confirm("c1", "0-1+1-1", None),
            OpResult::Confirmed {
                units_confirmed: 4,
                units_released: 0,
            },
        );
    let r = h.check(&three(
        (9, 0),
        (-1, 0),
        &[
            ("0-1", Confirmed, A, 1, 1, "r1"),
            ("1-1", Confirmed, B, 3, 3, "r1"),
        ],
    ));
    assert!(r.count(Class::Oversell) >= 1, "{}", r.render());
    assert!(r.render().contains("row B/L"), "{}", r.render());
    assert_eq!(r.linearizable(), Linearizable::No);
}

/// Per-row linearizability: B's part was held before the answer, so a
/// later read of B cannot see it unheld while the part stays pending.
#[test]
fn a_read_missing_a_held_part_is_caught() {
    let mut h = stocked_with_r1();
    h.call(2, (50, 60), read(B), availability(10, 0));
    let r = h.check(&three(
        (10, 2),
        (10, 3),
        &[
            ("0-1", Pending, A, 2, 0, "r1"),
            ("1-1", Pending, B, 3, 0, "r1"),
        ],
    ));
    assert_eq!(r.linearizable(), Linearizable::No, "{}", r.render());
}

/// An all-or-nothing refusal must release the parts it held: a refused
/// cross-shard reserve whose part is still pending is caught.
#[test]
fn a_refused_reserve_left_holding_a_part_is_caught() {
    let mut h = stocked();
    h.invoke(1, 30, reserve("r1", 2, 11));
    refused_with(&mut h, 1, 40, "OUT_OF_STOCK", ("line", "0"));
    let r = h.check(&three((10, 2), (10, 0), &[("0-7", Pending, A, 2, 0, "r1")]));
    assert_eq!(r.count(Class::Lost), 1, "{}", r.render());
    assert!(r.render().contains("still holds 0-7"), "{}", r.render());
}
