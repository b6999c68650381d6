//! Hostile and out-of-range input: every case is a clear `InvalidArgument`
//! naming the field, and changes nothing.

mod support;

use holdfast_engine::limits::*;
use holdfast_engine::*;
use proptest::prelude::*;
use support::*;

fn field_of(outcome: Outcome) -> (&'static str, Option<u16>) {
    match outcome {
        Err(Refusal::InvalidArgument(e)) => (e.field, e.line),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn stocked() -> Ledger {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    l
}

/// The digest `stocked()` has after one more entry that changes nothing
/// (an `ExpireUpTo` with nothing due): the log index still advances.
fn digest_after_a_no_op() -> u128 {
    let mut l = stocked();
    l.run(CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms: l.now_ms }))
        .unwrap();
    l.engine.state_digest()
}

/// Applies `kind` to a stocked ledger and checks it is refused as invalid
/// without any change to the state.
fn refused(kind: CommandKind) -> (&'static str, Option<u16>) {
    let mut l = stocked();
    let out = field_of(l.run(kind));
    assert!(l.events.is_empty());
    assert_eq!(
        l.engine.state_digest(),
        digest_after_a_no_op(),
        "an invalid command changes nothing"
    );
    out
}

#[test]
fn quantities_out_of_range() {
    for q in [0, -1, i64::MIN, LINE_QUANTITY_MAX + 1, i64::MAX] {
        assert_eq!(
            refused(reserve("A", q, Some("eu-1"))),
            ("quantity", Some(0)),
            "quantity {q}"
        );
    }
}

#[test]
fn line_counts() {
    assert_eq!(
        refused(CommandKind::Reserve(reserve_lines(vec![]))),
        ("lines", None)
    );
    let many = (0..=RESERVE_LINES_MAX)
        .map(|_| line("A", 1, Some("eu-1")))
        .collect();
    assert_eq!(
        refused(CommandKind::Reserve(reserve_lines(many))),
        ("lines", None)
    );
    let max = (0..RESERVE_LINES_MAX)
        .map(|_| line("A", 1, None))
        .collect::<Vec<_>>();
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 1_000);
    let id = l.reserve_ok(CommandKind::Reserve(reserve_lines(max)));
    assert_eq!(l.engine.reservation(id).unwrap().units(), 100);
}

#[test]
fn sku_strings() {
    assert_eq!(refused(reserve("", 1, None)), ("sku", Some(0)));
    let huge = "x".repeat(1 << 20);
    assert_eq!(refused(reserve(&huge, 1, None)), ("sku", Some(0)));
    assert_eq!(refused(reserve("bad\nsku", 1, None)), ("sku", Some(0)));
    assert_eq!(refused(adjust(&huge, "eu-1", 1)), ("sku", None));
    let longest = "s".repeat(SKU_BYTES_MAX);
    let mut l = three_warehouses();
    l.stock(&longest, "eu-1", 1);
    l.reserve_ok(reserve(&longest, 1, None));
}

#[test]
fn ttl_bounds() {
    for ttl in [0, TTL_MS_MIN - 1, TTL_MS_MAX + 1, u64::MAX] {
        let mut r = reserve_lines(vec![line("A", 1, None)]);
        r.ttl_ms = ttl;
        assert_eq!(
            refused(CommandKind::Reserve(r)),
            ("ttl_ms", None),
            "ttl {ttl}"
        );
    }
    assert_eq!(refused(extend(ReservationId(0), 10)), ("ttl_ms", None));
}

#[test]
fn party_and_location_names() {
    let mut r = reserve_lines(vec![line("A", 1, None)]);
    r.owner = String::new();
    assert_eq!(refused(CommandKind::Reserve(r.clone())), ("owner_id", None));
    r.owner = "o".repeat(PARTY_BYTES_MAX + 1);
    assert_eq!(refused(CommandKind::Reserve(r.clone())), ("owner_id", None));
    r.owner = "cart".into();
    r.customer = String::new();
    assert_eq!(refused(CommandKind::Reserve(r)), ("customer_id", None));
    assert_eq!(refused(reserve("A", 1, Some(""))), ("location", Some(0)));
    assert_eq!(
        refused(upsert_location(&"l".repeat(65), "eu", 1)),
        ("location", None)
    );
    assert_eq!(refused(upsert_location("x", "", 1)), ("region", None));
}

#[test]
fn stock_figures() {
    assert_eq!(
        refused(adjust("A", "eu-1", STOCK_MAGNITUDE_MAX + 1)),
        ("delta", None)
    );
    assert_eq!(refused(adjust("A", "eu-1", i64::MIN)), ("delta", None));
    let mut l = three_warehouses();
    l.stock("A", "eu-1", STOCK_MAGNITUDE_MAX);
    assert_eq!(
        field_of(l.run(adjust("A", "eu-1", 1))),
        ("delta", None),
        "beyond 10^12 in total"
    );
    let mut p = policy("A", Some("eu-1"));
    p.safety_stock = Some(-1);
    assert_eq!(refused(CommandKind::SetPolicy(p)), ("safety_stock", None));
    let mut p = policy("A", Some("eu-1"));
    p.backorder_allowance = Some(STOCK_MAGNITUDE_MAX + 1);
    assert_eq!(
        refused(CommandKind::SetPolicy(p)),
        ("backorder_allowance", None)
    );
    let mut p = policy("A", None);
    p.customer_limit = LimitChange::Set(CustomerLimit {
        max_units: 0,
        campaign: 1,
    });
    assert_eq!(
        refused(CommandKind::SetPolicy(p)),
        ("customer_limit.max_units", None)
    );
    assert_eq!(
        refused(CommandKind::SetPolicy(policy("A", None))),
        ("policy", None)
    );
}

#[test]
fn confirm_quantities() {
    for q in [vec![], vec![-1], vec![0, 0], vec![LINE_QUANTITY_MAX + 1]] {
        assert_eq!(
            refused(confirm(ReservationId(0), Some(q.clone()))).0,
            "quantities",
            "{q:?}"
        );
    }
}

#[test]
fn invalid_argument_messages_name_the_field() {
    let e = InvalidArgument {
        field: "quantity",
        line: Some(3),
        why: "must be between 1 and 1000000",
    };
    assert_eq!(
        e.to_string(),
        "lines[3].quantity must be between 1 and 1000000"
    );
}

fn arbitrary_line() -> impl Strategy<Value = ReserveLine> {
    (
        prop_oneof![Just(String::new()), "[A-C]", ".{0,300}"],
        any::<i64>(),
        proptest::option::of(prop_oneof![Just("eu-1".to_string()), ".{0,70}"]),
    )
        .prop_map(|(sku, quantity, location)| ReserveLine {
            sku,
            quantity,
            location,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Any reserve, however malformed, is answered without panicking and
    /// never breaks the invariants (the driver checks them after each step).
    #[test]
    fn arbitrary_reserves_never_panic(
        lines in proptest::collection::vec(arbitrary_line(), 0..110),
        ttl_ms in any::<u64>(),
        owner in ".{0,140}",
        partial in any::<bool>(),
        allow_split in any::<bool>(),
    ) {
        let mut l = stocked();
        let r = Reserve {
            owner, customer: "c".into(), region: None, lines, ttl_ms,
            policy: if partial { FillPolicy::Partial } else { FillPolicy::AllOrNothing },
            allow_split,
        };
        if let Err(refusal) = l.run(CommandKind::Reserve(r)) {
            if matches!(refusal, Refusal::InvalidArgument(_)) {
                prop_assert_eq!(l.engine.state_digest(), digest_after_a_no_op());
            }
        }
    }
}
