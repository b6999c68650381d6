//! The checker on hand-made histories: good ones (sequential, concurrent,
//! with retries and unknown outcomes) must pass, and each kind of broken
//! promise must be caught by its rule. A checker that cannot fail proves
//! nothing.

mod common;

use common::*;
use holdfast_chaos::check::{Class, Linearizable};
use holdfast_chaos::final_state::{FinalState, ReservationStatus::*};
use holdfast_chaos::history::{Entry, Op};
use holdfast_chaos::jsonl::{read_jsonl, write_jsonl, JsonlError};
use holdfast_chaos::linear::RowResult;
use holdfast_chaos::timeline;
use holdfast_chaos::CheckConfig;
use std::collections::BTreeMap;

fn counts(r: &holdfast_chaos::Report) -> [usize; 4] {
    Class::ALL.map(|c| r.count(c))
}

fn assert_passes(r: &holdfast_chaos::Report) {
    assert!(r.passed(), "expected a pass:\n{}", r.render());
}

// ---------------------------------------------------------------------------
// Good histories
// ---------------------------------------------------------------------------

/// A plain sequential run: every rule holds and the summary line has the
/// promised shape.
#[test]
fn a_sequential_run_passes_with_the_exact_summary_line() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 10), adjusted(10, 10))
        .call(1, (20, 30), reserve("r1", 3), reserved("0-1", 3, 7))
        .call(2, (40, 50), confirm("c1", "0-1"), confirmed(3, 0))
        .call(1, (60, 70), reserve("r2", 2), reserved("0-2", 2, 5))
        .call(2, (80, 90), release("x2", "0-2"), released(2))
        .call(3, (100, 110), read(), availability(7, 0));
    let r = h.check(&three(
        7,
        0,
        &[("0-1", Confirmed, 3, 3), ("0-2", Released, 2, 0)],
    ));
    assert_passes(&r);
    assert_eq!(
        r.summary_line(),
        "chaos: 6 ops, 0 faults, oversell=0 lost=0 duplicate=0 linearizable=yes converged=yes, unavailable p99=0"
    );
}

/// Design §1.1 under contention: two overlapping reserves for the last
/// unit, one wins, one is refused; a read overlapping both may see either.
#[test]
fn concurrent_reserves_for_the_last_unit_pass() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 1), adjusted(1, 1))
        .call(1, (20, 60), reserve("r1", 1), reserved("0-1", 1, 0))
        .call_refused(
            2,
            (25, 50),
            reserve("r2", 1),
            "FAILED_PRECONDITION",
            "OUT_OF_STOCK",
        )
        .call(3, (22, 70), read(), availability(1, 0))
        .call(3, (80, 90), read(), availability(1, 1));
    assert_passes(&h.check(&three(1, 1, &[("0-1", Pending, 1, 0)])));
}

/// An unknown-outcome reserve may have taken the last unit: the later
/// out-of-stock refusal and the unacknowledged reservation in the final
/// state are both explained by it.
#[test]
fn an_unknown_reserve_may_have_taken_the_last_unit() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 1), adjusted(1, 1))
        .call_unknown(1, (20, 2_000), reserve("r1", 1))
        .call_refused(
            2,
            (2_100, 2_200),
            reserve("r2", 1),
            "FAILED_PRECONDITION",
            "OUT_OF_STOCK",
        );
    assert_passes(&h.check(&three(1, 1, &[("0-1", Pending, 1, 0)])));
    // ... or not have been applied at all, if the final state says so.
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 1), adjusted(1, 1))
        .call_unknown(1, (20, 2_000), reserve("r1", 1))
        .call(2, (2_100, 2_200), reserve("r2", 1), reserved("0-1", 1, 0));
    assert_passes(&h.check(&three(1, 1, &[("0-1", Pending, 1, 0)])));
}

/// An adjustment that timed out may apply after the timeout; reads may see
/// it late, and the final state has it.
#[test]
fn an_unknown_adjustment_may_apply_late() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5))
        .call_unknown(1, (20, 1_000), adjust("a2", 3))
        .call(2, (1_100, 1_200), read(), availability(5, 0))
        .call(2, (1_300, 1_400), read(), availability(8, 0));
    assert_passes(&h.check(&three(8, 0, &[])));
}

/// A retry with the same request id is one operation: the first attempt
/// timed out, the second succeeded; one reservation, no duplicate.
#[test]
fn a_retried_request_is_one_operation() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5))
        .call_unknown(1, (20, 1_000), reserve("r1", 2))
        .call(1, (1_010, 1_050), reserve("r1", 2), reserved("0-1", 2, 3))
        .call(1, (1_060, 1_070), reserve("r1", 2), reserved("0-1", 2, 3));
    assert_passes(&h.check(&three(5, 2, &[("0-1", Pending, 2, 0)])));
}

/// Expiry is not a client operation: where the final state says a hold
/// expired, its units may come back at any time after its reserve.
#[test]
fn expiry_explains_units_coming_back_only_where_the_final_state_allows() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 1), adjusted(1, 1))
        .call(1, (20, 30), reserve("r1", 1), reserved("0-1", 1, 0))
        .call(2, (5_000, 5_010), reserve("r2", 1), reserved("0-2", 1, 0));
    let expired = three(1, 1, &[("0-1", Expired, 1, 0), ("0-2", Pending, 1, 0)]);
    assert_passes(&h.check(&expired));
    // Without replica states every hold may have expired.
    let r = h.check(&FinalState::default());
    assert_eq!(r.linearizable(), Linearizable::Yes, "{}", r.render());
    // A final state in which r1 never expired leaves r2 unexplained.
    let released = three(1, 1, &[("0-1", Released, 1, 0), ("0-2", Pending, 1, 0)]);
    let r = h.check(&released);
    assert_eq!(r.linearizable(), Linearizable::No, "{}", r.render());
}

/// Stale reads are answered from a node's applied state; they are not
/// judged.
#[test]
fn stale_reads_are_not_judged() {
    let mut h = History::default();
    let stale = Op::ReadAvailability {
        sku: SKU.into(),
        location: LOC.into(),
        stale: true,
    };
    h.call(1, (0, 10), adjust("a1", 4), adjusted(4, 4)).call(
        2,
        (20, 30),
        stale,
        availability(0, 0),
    );
    assert_passes(&h.check(&three(4, 0, &[])));
}

// ---------------------------------------------------------------------------
// Broken promises
// ---------------------------------------------------------------------------

/// Design §1.1 on the final state: more held than the row can supply.
#[test]
fn an_oversold_final_state_is_caught() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 2), adjusted(2, 2)).call(
        1,
        (20, 30),
        reserve("r1", 2),
        reserved("0-1", 2, 0),
    );
    let mut state = three(2, 2, &[("0-1", Pending, 2, 0)]);
    for replica in &mut state.replicas {
        replica.rows[0].on_hand = 1;
    }
    let r = h.check(&state);
    assert!(r.count(Class::Oversell) >= 1, "{}", r.render());
    assert!(
        r.render().contains("held=2 with on_hand=1"),
        "{}",
        r.render()
    );
}

/// Design §1.1 witnessed by the history alone: the acknowledged confirms
/// sold 10 units of a row that only ever received 5.
#[test]
fn an_oversell_acknowledged_to_clients_is_caught() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5))
        .call(1, (20, 30), reserve("r1", 5), reserved("0-1", 5, 0))
        .call(1, (40, 50), confirm("c1", "0-1"), confirmed(5, 0))
        .call(1, (60, 70), reserve("r2", 5), reserved("0-2", 5, 0))
        .call(1, (80, 90), confirm("c2", "0-2"), confirmed(5, 0));
    let r = h.check(&FinalState::default());
    assert_eq!(r.count(Class::Oversell), 1, "{}", r.render());
    assert!(r.render().contains("sold 10 units"), "{}", r.render());
    assert_eq!(r.linearizable(), Linearizable::No);
}

/// Design §1.2: `held` differs from the sum of pending holds.
#[test]
fn a_conservation_break_is_caught() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5)).call(
        1,
        (20, 30),
        reserve("r1", 2),
        reserved("0-1", 2, 3),
    );
    let r = h.check(&three(5, 3, &[("0-1", Pending, 2, 0)]));
    assert_eq!(r.count(Class::Oversell), 1, "{}", r.render());
    assert!(r.render().contains("(conservation)"), "{}", r.render());
}

/// Design §1.4: a replica lost an acknowledged reservation.
#[test]
fn a_lost_reservation_is_caught() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5)).call(
        1,
        (20, 30),
        reserve("r1", 2),
        reserved("0-1", 2, 3),
    );
    let mut state = three(5, 2, &[("0-1", Pending, 2, 0)]);
    state.replicas[2] = replica("n3", 5, 0, &[]);
    let r = h.check(&state);
    assert_eq!(r.count(Class::Lost), 1, "{}", r.render());
    assert!(r.render().contains("missing on n3"), "{}", r.render());
    assert!(!r.converged());
}

/// Design §1.4: an acknowledged confirm is not confirmed in the final state.
#[test]
fn a_lost_confirm_is_caught() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5))
        .call(1, (20, 30), reserve("r1", 2), reserved("0-1", 2, 3))
        .call(1, (40, 50), confirm("c1", "0-1"), confirmed(2, 0));
    let r = h.check(&three(5, 2, &[("0-1", Pending, 2, 0)]));
    assert!(r.count(Class::Lost) >= 1, "{}", r.render());
    assert!(r.render().contains("has it Pending"), "{}", r.render());
}

/// Design §1.4: an acknowledged adjustment is missing from `on_hand`, and
/// the negative adjustment of unknown outcome cannot explain it.
#[test]
fn a_lost_adjustment_is_caught() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 10), adjusted(10, 10))
        .call_unknown(1, (20, 1_000), adjust("a2", -3));
    assert_passes(&h.check(&three(7, 0, &[])));
    let r = h.check(&three(6, 0, &[]));
    assert_eq!(r.count(Class::Lost), 1, "{}", r.render());
}

/// Design §1.3: one request id, two reservations. The retry was answered
/// with a second reservation id and both exist.
#[test]
fn a_double_apply_is_caught() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5))
        .call(1, (20, 30), reserve("r1", 2), reserved("0-1", 2, 3))
        .call(1, (40, 50), reserve("r1", 2), reserved("0-2", 2, 1));
    let r = h.check(&three(
        5,
        4,
        &[("0-1", Pending, 2, 0), ("0-2", Pending, 2, 0)],
    ));
    assert!(r.count(Class::Duplicate) >= 1, "{}", r.render());
    assert!(r.render().contains("request r1"), "{}", r.render());
    // Even without the answers: a reservation no request explains.
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5)).call(
        1,
        (20, 30),
        reserve("r1", 2),
        reserved("0-1", 2, 3),
    );
    let r = h.check(&three(
        5,
        4,
        &[("0-1", Pending, 2, 0), ("0-2", Pending, 2, 0)],
    ));
    assert_eq!(r.count(Class::Duplicate), 1, "{}", r.render());
}

/// Design §1.3: a reservation resolved twice, by two request ids.
#[test]
fn a_reservation_resolved_twice_is_caught() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5))
        .call(1, (20, 30), reserve("r1", 2), reserved("0-1", 2, 3))
        .call(1, (40, 50), confirm("c1", "0-1"), confirmed(2, 0))
        .call(2, (60, 70), release("x1", "0-1"), released(2));
    let r = h.check(&three(3, 0, &[("0-1", Confirmed, 2, 2)]));
    assert!(r.count(Class::Duplicate) >= 1, "{}", r.render());
    assert!(r.render().contains("resolved by"), "{}", r.render());
    assert_eq!(r.linearizable(), Linearizable::No);
}

/// Design §1.3: a retry with the same body refused as if it were another.
#[test]
fn a_retry_refused_already_exists_is_caught() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5))
        .call_unknown(1, (20, 1_000), reserve("r1", 2))
        .call_refused(
            1,
            (1_010, 1_020),
            reserve("r1", 2),
            "ALREADY_EXISTS",
            "REQUEST_ID_MISMATCH",
        );
    let r = h.check(&three(5, 2, &[("0-1", Pending, 2, 0)]));
    assert_eq!(r.count(Class::Duplicate), 1, "{}", r.render());
}

/// Linearizability: a read after an acknowledged adjustment that sees a
/// value no order of the operations allows.
#[test]
fn a_non_linearizable_read_is_caught() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 10), adjusted(10, 10)).call(
        2,
        (20, 30),
        read(),
        availability(7, 0),
    );
    let r = h.check(&three(10, 0, &[]));
    assert_eq!(r.linearizable(), Linearizable::No);
    let RowResult::NotLinearizable(why) = &r.rows[0].result else {
        panic!("{}", r.render());
    };
    assert!(why.contains("read_availability (line 3"), "{why}");
    assert!(r.summary_line().contains("linearizable=no"));
}

/// Linearizability with an unknown outcome: once a read saw the
/// adjustment, a later read cannot miss it.
#[test]
fn an_unknown_adjustment_cannot_be_unapplied() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5))
        .call_unknown(1, (20, 1_000), adjust("a2", 3))
        .call(2, (1_100, 1_200), read(), availability(8, 0))
        .call(2, (1_300, 1_400), read(), availability(5, 0));
    let r = h.check(&FinalState::default());
    assert_eq!(r.linearizable(), Linearizable::No, "{}", r.render());
}

/// Design §1.5: replicas that differ, in a row and in a shard digest.
#[test]
fn divergent_replicas_are_caught() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5));
    let mut state = three(5, 0, &[]);
    state.replicas[1].rows[0].on_hand = 6;
    state.replicas[2].shards[0].digest = "beef".into();
    let r = h.check(&state);
    assert!(!r.converged());
    assert_eq!(r.count(Class::Diverged), 2, "{}", r.render());
    assert!(r.summary_line().contains("converged=no"));
}

/// The search is bounded: a tiny budget ends in "unknown", not a hang.
#[test]
fn an_exhausted_budget_is_reported_as_unknown() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 1), adjusted(1, 1));
    // Distinct deltas: no two open adjustments are interchangeable, so
    // proving that no subset reaches 1,000 takes every subset.
    for p in 0..8u64 {
        h.call_unknown(10 + p, (20 + p, 1_000), adjust(&format!("u{p}"), 1 << p));
    }
    h.call(2, (2_000, 2_010), read(), availability(1_000, 0));
    let config = CheckConfig {
        budget_steps_per_row: 50,
    };
    let r = h.check_with(&FinalState::default(), config);
    assert_eq!(r.linearizable(), Linearizable::Unknown, "{}", r.render());
    assert!(r.summary_line().contains("linearizable=unknown"));
    assert!(r.render().contains("budget exhausted"));
    // With enough budget the same history is decided.
    let r = h.check(&FinalState::default());
    assert_eq!(r.linearizable(), Linearizable::No);
}

// ---------------------------------------------------------------------------
// Availability
// ---------------------------------------------------------------------------

/// After a kill at 1 s, shard 0 answers reserves at 1.2 s and 1.25 s; the
/// longest window without success is 200 ms (fault to first success).
#[test]
fn the_unavailability_window_counts_from_the_fault() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 100), adjusted(100, 100))
        .call(1, (100, 900_000), reserve("r1", 1), reserved("0-1", 1, 99))
        .fault(1_000_000, "kill", "n1")
        .call(
            1,
            (1_000_100, 1_200_000),
            reserve("r2", 1),
            reserved("0-2", 1, 98),
        )
        .call(
            1,
            (1_200_100, 1_250_000),
            reserve("r3", 1),
            reserved("0-3", 1, 97),
        )
        .call_unknown(1, (1_250_100, 1_260_000), read());
    let r = h.check(&three(
        100,
        3,
        &[
            ("0-1", Pending, 1, 0),
            ("0-2", Pending, 1, 0),
            ("0-3", Pending, 1, 0),
        ],
    ));
    assert_passes(&r);
    assert_eq!(r.availability.windows.len(), 1);
    assert_eq!(r.availability.windows[0].longest_us, 200_000);
    assert!(r
        .summary_line()
        .ends_with("1 faults, oversell=0 lost=0 duplicate=0 linearizable=yes converged=yes, unavailable p99=200"));
}

// ---------------------------------------------------------------------------
// The history format
// ---------------------------------------------------------------------------

/// Entries survive JSON lines unchanged.
#[test]
fn histories_round_trip_through_json_lines() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5))
        .call(1, (20, 30), reserve("r1", 2), reserved("0-1", 2, 3))
        .call_refused(
            2,
            (40, 50),
            confirm("c1", "9-9"),
            "NOT_FOUND",
            "RESERVATION_NOT_FOUND",
        )
        .call_unknown(3, (60, 70), read())
        .fault(80, "partition", "n1|n2,n3");
    let mut bytes = Vec::new();
    write_jsonl(&mut bytes, &h.entries).unwrap();
    let back: Vec<Entry> = read_jsonl(&bytes[..]).unwrap();
    assert_eq!(back, h.entries);
    let first = String::from_utf8(bytes).unwrap();
    assert!(first
        .starts_with(r#"{"event":"invoke","process":1,"time_us":0,"op":{"kind":"adjust_stock""#));
}

/// A torn or blank line is an error naming its line, never skipped.
#[test]
fn a_corrupt_line_is_reported_with_its_number() {
    let good = r#"{"event":"invoke","process":1,"time_us":0,"op":{"kind":"read_availability","sku":"s","location":"l"}}"#;
    for (bad, line) in [
        (format!("{good}\n{good}\n{{\"event\":\"ok\",\"proc"), 3),
        (format!("{good}\n\n{good}"), 2),
        (
            format!("{good}\n{{\"event\":\"teleport\",\"time_us\":1}}"),
            2,
        ),
    ] {
        match read_jsonl::<Entry, _>(bad.as_bytes()) {
            Err(JsonlError::Corrupt { line: l, .. }) => assert_eq!(l, line, "{bad}"),
            other => panic!("expected line {line} to be reported, got {other:?}"),
        }
    }
}

/// Impossible pairings are errors with line numbers.
#[test]
fn impossible_histories_are_rejected() {
    let mut h = History::default();
    h.ok(1, 5, adjusted(1, 1));
    assert_eq!(timeline::build(&h.entries).unwrap_err().line, 1);
    let mut h = History::default();
    h.invoke(1, 0, read()).invoke(1, 1, read());
    assert_eq!(timeline::build(&h.entries).unwrap_err().line, 2);
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 1), adjusted(1, 1)).call(
        1,
        (20, 30),
        adjust("a1", 2),
        adjusted(3, 3),
    );
    let e = timeline::build(&h.entries).unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.why.contains("another body"), "{e}");
    let mut h = History::default();
    h.invoke(1, 0, read()).ok(1, 1, adjusted(1, 1));
    assert_eq!(timeline::build(&h.entries).unwrap_err().line, 2);
}

/// Refusal metadata names the short line of a multi-line reserve; without
/// it, the refusal of a multi-line reserve is not judged and a note says
/// so.
#[test]
fn out_of_stock_uses_the_line_named_in_metadata() {
    let two_lines = Op::Reserve {
        request_id: "r1".into(),
        lines: vec![
            holdfast_chaos::history::ReserveLine {
                sku: SKU.into(),
                location: LOC.into(),
                quantity: 1,
                shard: None,
            },
            holdfast_chaos::history::ReserveLine {
                sku: SKU.into(),
                location: LOC.into(),
                quantity: 1,
                shard: None,
            },
        ],
        owner: None,
        shard: None,
        ttl_ms: None,
    };
    let refuse = |line: Option<&str>| Entry::Refused {
        process: 1,
        time_us: 30,
        code: "FAILED_PRECONDITION".into(),
        reason: "OUT_OF_STOCK".into(),
        metadata: line
            .map(|l| BTreeMap::from([("line".to_string(), l.to_string())]))
            .unwrap_or_default(),
    };
    // One unit in stock: line 1 (needing lines 0 and 1, 2 units) is short.
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 1), adjusted(1, 1))
        .invoke(1, 20, two_lines.clone());
    h.entries.push(refuse(Some("1")));
    assert_passes(&h.check(&three(1, 0, &[])));
    // Line 0 cannot be short with one unit available.
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 1), adjusted(1, 1))
        .invoke(1, 20, two_lines.clone());
    h.entries.push(refuse(Some("0")));
    assert_eq!(h.check(&three(1, 0, &[])).linearizable(), Linearizable::No);
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 1), adjusted(1, 1))
        .invoke(1, 20, two_lines);
    h.entries.push(refuse(None));
    let r = h.check(&three(1, 0, &[]));
    assert_passes(&r);
    assert!(r.notes.iter().any(|n| n.contains("not judged")), "{r:?}");
}

/// The report is deterministic: the same input renders the same bytes.
#[test]
fn the_report_is_deterministic() {
    let mut h = History::default();
    h.call(1, (0, 10), adjust("a1", 5), adjusted(5, 5))
        .call(1, (20, 30), reserve("r1", 2), reserved("0-1", 2, 3))
        .call(2, (40, 50), read(), availability(1, 0));
    let mut state = three(5, 4, &[("0-2", Pending, 2, 0)]);
    state.replicas[1].rows[0].held = 9;
    let first = h.check(&state).render();
    for _ in 0..5 {
        assert_eq!(h.check(&state).render(), first);
    }
    assert_eq!(counts(&h.check(&state)), counts(&h.check(&state)));
}
