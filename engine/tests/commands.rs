//! One test per command and per refusal, each naming the promise it checks.

mod support;

use holdfast_engine::*;
use support::*;

#[test]
fn reserve_holds_and_reports_allocation() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    let id = l.reserve_ok(reserve("A", 3, Some("eu-1")));
    assert_eq!(l.held("A", "eu-1"), 3);
    assert_eq!(l.available("A", "eu-1"), 7);
    let res = l.engine.reservation(id).unwrap();
    assert_eq!(res.state, ReservationState::Pending);
    assert_eq!(res.expires_at_ms, T0 + 60_000);
    assert_eq!((res.owner(), res.customer()), ("cart-1", "cust-1"));
    assert_eq!(res.lines[0].available_after, 7);
    assert!(matches!(
        l.events[..],
        [Event::Held {
            quantity: 3,
            available_after: 7,
            ..
        }]
    ));
}

#[test]
fn out_of_stock_names_line_location_and_available() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 2);
    let eu1 = l.engine.location_id("eu-1");
    assert_eq!(
        l.run(reserve("A", 3, Some("eu-1"))),
        Err(Refusal::OutOfStock {
            line: 0,
            location: eu1,
            requested: 3,
            available: 2
        })
    );
    assert_eq!(l.held("A", "eu-1"), 0, "a refusal changes nothing");
    assert!(l.events.is_empty());
}

#[test]
fn all_or_nothing_refuses_whole_request_when_one_line_is_short() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 5);
    l.stock("B", "eu-1", 1);
    let cmd = CommandKind::Reserve(reserve_lines(vec![
        line("A", 2, Some("eu-1")),
        line("B", 2, Some("eu-1")),
    ]));
    assert!(matches!(
        l.run(cmd),
        Err(Refusal::OutOfStock { line: 1, .. })
    ));
    assert_eq!(
        l.held("A", "eu-1"),
        0,
        "design §3: all-or-nothing leaves nothing held"
    );
}

#[test]
fn partial_holds_what_it_can() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 5);
    l.stock("B", "eu-1", 1);
    let mut r = reserve_lines(vec![
        line("A", 2, Some("eu-1")),
        line("B", 3, Some("eu-1")),
        line("C", 1, Some("eu-1")),
    ]);
    r.policy = FillPolicy::Partial;
    let id = l.reserve_ok(CommandKind::Reserve(r.clone()));
    assert_eq!(
        l.allocations(id),
        vec![("eu-1".into(), 2), ("eu-1".into(), 1)]
    );
    assert_eq!(l.available("B", "eu-1"), 0);
    // With nothing available at all, partial is refused too.
    r.lines = vec![line("B", 1, Some("eu-1"))];
    assert!(matches!(
        l.run(CommandKind::Reserve(r)),
        Err(Refusal::OutOfStock { .. })
    ));
}

#[test]
fn same_row_on_two_lines_is_counted_together() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 5);
    let cmd = CommandKind::Reserve(reserve_lines(vec![
        line("A", 3, Some("eu-1")),
        line("A", 3, Some("eu-1")),
    ]));
    assert!(
        matches!(
            l.run(cmd),
            Err(Refusal::OutOfStock {
                line: 1,
                available: 2,
                ..
            })
        ),
        "design §1.1: two lines must not each see the full stock"
    );
}

#[test]
fn automatic_allocation_prefers_one_location_for_all_lines() {
    let mut l = three_warehouses();
    l.stock("A", "eu-2", 5); // eu-2 has only A
    l.stock("A", "eu-1", 5);
    l.stock("B", "eu-1", 5); // eu-1 has both
    let id = l.reserve_ok(CommandKind::Reserve(reserve_lines(vec![
        line("A", 1, None),
        line("B", 1, None),
    ])));
    assert_eq!(
        l.allocations(id),
        vec![("eu-1".into(), 1), ("eu-1".into(), 1)]
    );
}

#[test]
fn automatic_allocation_ranks_region_then_priority() {
    let mut l = three_warehouses();
    for loc in ["eu-1", "eu-2", "us-1"] {
        l.stock("A", loc, 5);
    }
    let mut r = reserve_lines(vec![line("A", 1, None)]);
    let id = l.reserve_ok(CommandKind::Reserve(r.clone()));
    assert_eq!(
        l.allocations(id),
        vec![("eu-2".into(), 1)],
        "priority 1 beats 2; id breaks ties"
    );
    r.region = Some("us".into());
    let id = l.reserve_ok(CommandKind::Reserve(r.clone()));
    assert_eq!(
        l.allocations(id),
        vec![("us-1".into(), 1)],
        "own region first"
    );
    r.region = Some("eu".into());
    let id = l.reserve_ok(CommandKind::Reserve(r));
    assert_eq!(l.allocations(id), vec![("eu-2".into(), 1)]);
}

#[test]
fn split_only_when_allowed() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 3);
    l.stock("A", "eu-2", 3);
    let mut r = reserve_lines(vec![line("A", 5, None)]);
    assert!(
        matches!(
            l.run(CommandKind::Reserve(r.clone())),
            Err(Refusal::OutOfStock { available: 3, .. })
        ),
        "without split, no single location has 5"
    );
    r.allow_split = true;
    let id = l.reserve_ok(CommandKind::Reserve(r));
    assert_eq!(
        l.allocations(id),
        vec![("eu-2".into(), 3), ("eu-1".into(), 2)]
    );
    assert_eq!(l.available("A", "eu-1") + l.available("A", "eu-2"), 1);
}

#[test]
fn unknown_location_is_refused() {
    let mut l = three_warehouses();
    assert_eq!(
        l.run(reserve("A", 1, Some("nowhere"))),
        Err(Refusal::UnknownLocation { line: Some(0) })
    );
    assert_eq!(
        l.run(adjust("A", "nowhere", 1)),
        Err(Refusal::UnknownLocation { line: None })
    );
}

#[test]
fn unknown_sku_is_out_of_stock_and_creates_nothing() {
    let mut l = three_warehouses();
    assert!(matches!(
        l.run(reserve("never-stocked", 1, None)),
        Err(Refusal::OutOfStock {
            location: None,
            available: 0,
            ..
        })
    ));
    assert_eq!(l.engine.row_count(), 0);
}

#[test]
fn confirm_whole_takes_units_off_hand() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    let id = l.reserve_ok(reserve("A", 4, Some("eu-1")));
    assert_eq!(
        l.run(confirm(id, None)),
        Ok(Success::Confirmed {
            reservation: id,
            units_confirmed: 4,
            units_released: 0
        })
    );
    let a = l.engine.availability("A", "eu-1").unwrap();
    assert_eq!((a.on_hand, a.held, a.available), (6, 0, 6));
    assert_eq!(
        l.engine.reservation(id).unwrap().state,
        ReservationState::Confirmed
    );
}

#[test]
fn partial_confirm_releases_the_rest_in_the_same_step() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    l.stock("B", "eu-1", 10);
    let id = l.reserve_ok(CommandKind::Reserve(reserve_lines(vec![
        line("A", 4, Some("eu-1")),
        line("B", 2, Some("eu-1")),
    ])));
    assert_eq!(
        l.run(confirm(id, Some(vec![3, 0]))),
        Ok(Success::Confirmed {
            reservation: id,
            units_confirmed: 3,
            units_released: 3
        })
    );
    let a = l.engine.availability("A", "eu-1").unwrap();
    assert_eq!((a.on_hand, a.held), (7, 0));
    assert_eq!(l.available("B", "eu-1"), 10);
    let causes: Vec<_> = l
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Released {
                cause, quantity, ..
            } => Some((*cause, *quantity)),
            _ => None,
        })
        .collect();
    assert_eq!(
        causes,
        vec![
            (ReleaseCause::ConfirmRemainder, 1),
            (ReleaseCause::ConfirmRemainder, 2)
        ]
    );
}

#[test]
fn confirm_quantities_are_checked_against_the_reservation() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    let id = l.reserve_ok(reserve("A", 4, Some("eu-1")));
    for bad in [vec![5], vec![1, 1]] {
        assert!(matches!(
            l.run(confirm(id, Some(bad))),
            Err(Refusal::InvalidArgument(InvalidArgument {
                field: "quantities",
                ..
            }))
        ));
    }
    assert_eq!(l.held("A", "eu-1"), 4);
}

#[test]
fn release_returns_units() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    let id = l.reserve_ok(reserve("A", 4, Some("eu-1")));
    assert_eq!(
        l.run(release(id)),
        Ok(Success::Released {
            reservation: id,
            units_released: 4
        })
    );
    assert_eq!(l.available("A", "eu-1"), 10);
}

#[test]
fn a_reservation_resolves_at_most_once() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    let id = l.reserve_ok(reserve("A", 4, Some("eu-1")));
    l.run(confirm(id, None)).unwrap();
    let not_pending = Err(Refusal::NotPending {
        state: ReservationState::Confirmed,
    });
    assert_eq!(l.run(release(id)), not_pending, "design §1.3");
    assert_eq!(l.run(confirm(id, None)), not_pending);
    assert_eq!(l.run(extend(id, 60_000)), not_pending);
    assert_eq!(l.engine.availability("A", "eu-1").unwrap().on_hand, 6);
}

#[test]
fn unknown_reservation_is_refused() {
    let mut l = three_warehouses();
    assert_eq!(
        l.run(release(ReservationId(12345))),
        Err(Refusal::UnknownReservation)
    );
}

#[test]
fn holds_expire_at_their_time_and_not_before() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    let id = l.reserve_ok(reserve("A", 4, Some("eu-1")));
    l.advance(59_999);
    l.run(CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms: l.now_ms }))
        .unwrap();
    assert_eq!(l.held("A", "eu-1"), 4);
    l.advance(1);
    assert_eq!(
        l.run(CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms: l.now_ms })),
        Ok(Success::Expired {
            reservations: 1,
            units_released: 4
        })
    );
    assert_eq!(l.held("A", "eu-1"), 0);
    assert_eq!(
        l.engine.reservation(id).unwrap().state,
        ReservationState::Expired
    );
    assert_eq!(
        l.run(confirm(id, None)),
        Err(Refusal::NotPending {
            state: ReservationState::Expired
        })
    );
}

#[test]
fn a_confirm_cannot_beat_its_own_ttl() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    let id = l.reserve_ok(reserve("A", 4, Some("eu-1")));
    l.advance(60_000);
    // No ExpireUpTo was applied, yet the entry's time is past the expiry.
    assert_eq!(
        l.run(confirm(id, None)),
        Err(Refusal::NotPending {
            state: ReservationState::Expired
        })
    );
    assert!(matches!(
        l.events[..],
        [Event::Released {
            cause: ReleaseCause::Expired,
            ..
        }]
    ));
}

#[test]
fn expiry_order_is_by_time_then_id() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    let a = l.reserve_ok(reserve("A", 1, Some("eu-1")));
    let b = l.reserve_ok(reserve("A", 1, Some("eu-1")));
    l.run(extend(a, 120_000)).unwrap();
    l.advance(200_000);
    l.run(CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms: l.now_ms }))
        .unwrap();
    let order: Vec<_> = l
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Released { reservation, .. } => Some(*reservation),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        vec![b, a],
        "b expires at +60s, a (extended) at +120s"
    );
}

#[test]
fn expire_up_to_in_the_future_is_refused() {
    let mut l = three_warehouses();
    let up_to_ms = l.now_ms + 1;
    assert!(matches!(
        l.run(CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms })),
        Err(Refusal::InvalidArgument(InvalidArgument {
            field: "up_to_ms",
            ..
        }))
    ));
}

#[test]
fn extend_moves_expiry_from_now() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    let id = l.reserve_ok(reserve("A", 1, Some("eu-1")));
    l.advance(30_000);
    assert_eq!(
        l.run(extend(id, 600_000)),
        Ok(Success::Extended {
            reservation: id,
            expires_at_ms: T0 + 630_000
        })
    );
    l.advance(100_000); // past the original expiry
    l.run(CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms: l.now_ms }))
        .unwrap();
    assert_eq!(
        l.engine.reservation(id).unwrap().state,
        ReservationState::Pending
    );
}

#[test]
fn engine_time_never_runs_backwards() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    l.advance(10_000);
    let id = l.reserve_ok(reserve("A", 1, Some("eu-1")));
    l.now_ms -= 10_000; // a new leader with a slower clock
    l.run(adjust("A", "eu-1", 1)).unwrap();
    assert_eq!(l.engine.now_ms(), T0 + 10_000);
    assert_eq!(l.engine.reservation(id).unwrap().expires_at_ms, T0 + 70_000);
}

#[test]
fn retry_with_same_id_and_body_returns_first_answer() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    let first = l.run_as(RequestId(77), reserve("A", 4, Some("eu-1")));
    let again = l.run_as(RequestId(77), reserve("A", 4, Some("eu-1")));
    assert_eq!(first, again, "design §1.3 at most once");
    assert!(l.events.is_empty(), "a retry changes nothing");
    assert_eq!(l.held("A", "eu-1"), 4);
}

#[test]
fn retry_of_a_refusal_returns_the_refusal_even_after_stock_arrives() {
    let mut l = three_warehouses();
    let first = l.run_as(RequestId(5), reserve("A", 1, Some("eu-1")));
    assert!(matches!(first, Err(Refusal::OutOfStock { .. })));
    l.stock("A", "eu-1", 10);
    assert_eq!(l.run_as(RequestId(5), reserve("A", 1, Some("eu-1"))), first);
}

#[test]
fn same_id_with_another_body_is_refused() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    l.run_as(RequestId(9), reserve("A", 4, Some("eu-1")))
        .unwrap();
    assert_eq!(
        l.run_as(RequestId(9), reserve("A", 5, Some("eu-1"))),
        Err(Refusal::DuplicateRequestMismatch)
    );
    assert_eq!(l.held("A", "eu-1"), 4);
}

#[test]
fn invalid_commands_do_not_consume_the_request_id() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    assert!(matches!(
        l.run_as(RequestId(3), reserve("A", 0, Some("eu-1"))),
        Err(Refusal::InvalidArgument(_))
    ));
    assert!(l
        .run_as(RequestId(3), reserve("A", 1, Some("eu-1")))
        .is_ok());
}

#[test]
fn dedup_forgets_by_count_and_frees_resolved_reservations() {
    let mut l = Ledger::new(EngineConfig {
        dedup: DedupConfig {
            window_ms: u64::MAX,
            entries_max: 4,
        },
        ..EngineConfig::default()
    });
    l.location("eu-1", "eu", 1);
    l.stock("A", "eu-1", 100);
    let id = l.reserve_ok(reserve("A", 1, Some("eu-1")));
    l.run(release(id)).unwrap();
    assert!(
        l.engine.reservation(id).is_some(),
        "kept while its Reserve is remembered"
    );
    for _ in 0..4 {
        l.run(adjust("A", "eu-1", 1)).unwrap();
    }
    assert!(
        l.engine.reservation(id).is_none(),
        "freed once forgotten and resolved"
    );
    assert!(l.engine.dedup_len() <= 4);
    assert_eq!(l.run(release(id)), Err(Refusal::UnknownReservation));
}

#[test]
fn pending_reservation_survives_being_forgotten() {
    let mut l = Ledger::new(EngineConfig {
        dedup: DedupConfig {
            window_ms: u64::MAX,
            entries_max: 2,
        },
        ..EngineConfig::default()
    });
    l.location("eu-1", "eu", 1);
    l.stock("A", "eu-1", 100);
    let id = l.reserve_ok(reserve("A", 1, Some("eu-1")));
    for _ in 0..3 {
        l.run(adjust("A", "eu-1", 1)).unwrap();
    }
    assert!(l.run(confirm(id, None)).is_ok());
    assert!(l.engine.reservation(id).is_none(), "freed at resolution");
}

#[test]
fn dedup_forgets_by_log_time() {
    let mut l = Ledger::new(EngineConfig {
        dedup: DedupConfig {
            window_ms: 1_000,
            entries_max: 1_000,
        },
        ..EngineConfig::default()
    });
    l.location("eu-1", "eu", 1);
    l.run_as(RequestId(1), adjust("A", "eu-1", 5)).unwrap();
    l.advance(999);
    l.run(adjust("A", "eu-1", 1)).unwrap(); // id 1 is 999 ms old: kept
    assert!(l.run_as(RequestId(1), adjust("A", "eu-1", 5)).is_ok());
    assert_eq!(
        l.engine.availability("A", "eu-1").unwrap().on_hand,
        6,
        "still deduplicated"
    );
    l.advance(1);
    l.run(adjust("A", "eu-1", 1)).unwrap(); // id 1 is 1000 ms old: evicted
    l.run_as(RequestId(1), adjust("A", "eu-1", 5)).unwrap();
    assert_eq!(
        l.engine.availability("A", "eu-1").unwrap().on_hand,
        12,
        "forgotten after the window"
    );
}

#[test]
fn adjust_with_expected_on_hand_is_compare_and_set() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    let cas = |expected| {
        CommandKind::AdjustStock(AdjustStock {
            sku: "A".into(),
            location: "eu-1".into(),
            delta: -3,
            expected_on_hand: Some(expected),
        })
    };
    assert_eq!(
        l.run(cas(9)),
        Err(Refusal::ExpectedOnHandMismatch {
            expected: 9,
            actual: 10
        })
    );
    assert!(matches!(
        l.run(cas(10)),
        Ok(Success::Adjusted {
            on_hand: 7,
            available: 7,
            ..
        })
    ));
}

#[test]
fn adjust_to_zero_and_below_held_is_refused() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    l.reserve_ok(reserve("A", 4, Some("eu-1")));
    assert!(
        l.run(adjust("A", "eu-1", -6)).is_ok(),
        "down to exactly the held units"
    );
    assert_eq!(
        l.run(adjust("A", "eu-1", -1)),
        Err(Refusal::HeldExceedsStock { held: 4, supply: 3 }),
        "design §1.1: a write-off may not strand holds"
    );
    let mut m = three_warehouses();
    m.stock("B", "eu-1", 2);
    assert!(matches!(
        m.run(adjust("B", "eu-1", -2)),
        Ok(Success::Adjusted { on_hand: 0, .. })
    ));
}

#[test]
fn safety_stock_is_never_promised() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 10);
    let mut p = policy("A", Some("eu-1"));
    p.safety_stock = Some(3);
    l.run(CommandKind::SetPolicy(p)).unwrap();
    assert_eq!(l.available("A", "eu-1"), 7);
    assert!(matches!(
        l.run(reserve("A", 8, Some("eu-1"))),
        Err(Refusal::OutOfStock { available: 7, .. })
    ));
    l.reserve_ok(reserve("A", 7, Some("eu-1")));
}

#[test]
fn backorder_allowance_promises_beyond_on_hand() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 2);
    let mut p = policy("A", Some("eu-1"));
    p.backorder_allowance = Some(3);
    l.run(CommandKind::SetPolicy(p)).unwrap();
    let id = l.reserve_ok(reserve("A", 5, Some("eu-1")));
    assert!(matches!(
        l.run(reserve("A", 1, Some("eu-1"))),
        Err(Refusal::OutOfStock { .. })
    ));
    l.run(confirm(id, None)).unwrap();
    assert_eq!(
        l.engine.availability("A", "eu-1").unwrap().on_hand,
        -3,
        "3 units back-ordered"
    );
    // The allowance cannot shrink below what is already promised.
    let mut shrink = policy("A", Some("eu-1"));
    shrink.backorder_allowance = Some(2);
    assert_eq!(
        l.run(CommandKind::SetPolicy(shrink)),
        Err(Refusal::HeldExceedsStock {
            held: 0,
            supply: -1
        })
    );
}

#[test]
fn row_policy_needs_a_location() {
    let mut l = three_warehouses();
    let mut p = policy("A", None);
    p.safety_stock = Some(1);
    assert!(matches!(
        l.run(CommandKind::SetPolicy(p)),
        Err(Refusal::InvalidArgument(InvalidArgument {
            field: "location",
            ..
        }))
    ));
}

fn limit(max_units: u64, campaign: u32) -> CommandKind {
    let mut p = policy("A", None);
    p.customer_limit = LimitChange::Set(CustomerLimit {
        max_units,
        campaign,
    });
    CommandKind::SetPolicy(p)
}

#[test]
fn customer_limit_counts_holds_and_sales() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 100);
    l.run(limit(3, 1)).unwrap();
    let a = l.reserve_ok(reserve("A", 2, None));
    assert_eq!(
        l.run(reserve("A", 2, None)),
        Err(Refusal::LimitExceeded {
            line: 0,
            limit: 3,
            used: 2,
            requested: 2
        })
    );
    l.run(confirm(a, Some(vec![1]))).unwrap(); // 1 bought, 1 released
    assert_eq!(l.engine.customer_usage("A", "cust-1"), 1);
    let b = l.reserve_ok(reserve("A", 2, None));
    l.run(release(b)).unwrap();
    assert_eq!(l.engine.customer_usage("A", "cust-1"), 1);
    // Another customer has their own count.
    let mut other = reserve_lines(vec![line("A", 3, None)]);
    other.customer = "cust-2".into();
    l.reserve_ok(CommandKind::Reserve(other));
}

#[test]
fn new_campaign_resets_counts() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 100);
    l.run(limit(2, 1)).unwrap();
    let old = l.reserve_ok(reserve("A", 2, None));
    l.run(limit(2, 2)).unwrap();
    l.reserve_ok(reserve("A", 2, None));
    l.run(release(old)).unwrap();
    assert_eq!(
        l.engine.customer_usage("A", "cust-1"),
        2,
        "old campaign's release refunds nothing"
    );
    let mut clear = policy("A", None);
    clear.customer_limit = LimitChange::Clear;
    l.run(CommandKind::SetPolicy(clear)).unwrap();
    l.reserve_ok(reserve("A", 5, None));
}

#[test]
fn upsert_location_creates_then_updates() {
    let mut l = Ledger::default();
    assert!(matches!(
        l.run(upsert_location("x", "eu", 1)),
        Ok(Success::LocationUpserted { created: true, .. })
    ));
    assert!(matches!(
        l.run(upsert_location("x", "us", 5)),
        Ok(Success::LocationUpserted { created: false, .. })
    ));
    let id = l.engine.location_id("x").unwrap();
    assert_eq!(
        (
            &*l.engine.location(id).region,
            l.engine.location(id).priority
        ),
        ("us", 5)
    );
}

#[test]
fn board_publishes_scarce_and_sold_out_skus() {
    let mut l = three_warehouses();
    let board = l.engine.board();
    l.stock("flash", "eu-1", 2);
    l.stock("plenty", "eu-1", 1_000_000);
    assert!(
        board.scarcity("plenty", None).is_none(),
        "plentiful SKUs stay off the board"
    );
    let s = board.scarcity("flash", Some("eu-1")).unwrap();
    assert_eq!((s.available, s.held, s.is_sold_out()), (2, 0, false));
    let id = l.reserve_ok(reserve("flash", 2, Some("eu-1")));
    let s = board.scarcity("flash", None).unwrap();
    assert_eq!(
        (s.available, s.held, s.is_sold_out()),
        (0, 2, false),
        "holds may come back"
    );
    l.run(confirm(id, None)).unwrap();
    let s = board.scarcity("flash", None).unwrap();
    assert!(s.is_sold_out());
    assert_eq!(s.as_of_index, l.index);
    l.stock("flash", "eu-1", 500);
    assert!(
        board.scarcity("flash", None).is_none(),
        "restocked: withdrawn"
    );
}

#[test]
fn a_new_row_of_a_scarce_sku_joins_its_board_entry() {
    let mut l = three_warehouses();
    let board = l.engine.board();
    l.stock("flash", "eu-1", 2);
    l.stock("flash", "eu-2", 1_000_000);
    let s = board
        .scarcity("flash", Some("eu-2"))
        .expect("listed with its scarce sibling");
    assert_eq!(s.available, 1_000_000);
    assert_eq!(board.scarcity("flash", None).unwrap().available, 1_000_002);
}
