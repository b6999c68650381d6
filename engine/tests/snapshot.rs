//! Snapshot and restore: round trips keep the digest, and corrupt bytes are
//! an error, never a panic (design §1.5; "never panic on input from disk").

mod support;

use holdfast_engine::*;
use proptest::prelude::*;
use support::*;

/// A ledger with some of everything: locations, rows with policy, limits
/// with usage, pending, confirmed, released and expired reservations, and
/// remembered refusals.
fn busy_ledger() -> Ledger {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 50);
    l.stock("A", "us-1", 5);
    l.stock("B", "eu-2", 7);
    let mut p = policy("A", Some("eu-1"));
    p.safety_stock = Some(2);
    p.backorder_allowance = Some(4);
    p.customer_limit = LimitChange::Set(CustomerLimit {
        max_units: 20,
        campaign: 3,
    });
    l.run(CommandKind::SetPolicy(p)).unwrap();
    let a = l.reserve_ok(reserve("A", 3, None));
    let b = l.reserve_ok(CommandKind::Reserve(reserve_lines(vec![
        line("A", 2, Some("eu-1")),
        line("B", 1, None),
    ])));
    let c = l.reserve_ok(reserve("B", 2, Some("eu-2")));
    l.reserve_ok(reserve("A", 1, Some("us-1")));
    l.run(confirm(a, None)).unwrap();
    l.run(release(c)).unwrap();
    l.run(confirm(b, Some(vec![1, 0]))).unwrap();
    let _ = l.run(reserve("B", 100, None));
    let d = l.reserve_ok(reserve("B", 1, None));
    l.advance(70_000);
    l.run(CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms: l.now_ms }))
        .unwrap();
    assert_eq!(
        l.engine.reservation(d).unwrap().state,
        ReservationState::Expired
    );
    l.reserve_ok(reserve("A", 2, None));
    l
}

#[test]
fn round_trip_keeps_digest_and_behaviour() {
    let mut original = busy_ledger();
    let snap = original.engine.snapshot();
    let restored = Engine::restore(EngineConfig::default(), &snap).expect("restores");
    assert_eq!(
        restored.state_digest(),
        original.engine.state_digest(),
        "design §1.5"
    );
    assert_eq!(restored.snapshot(), snap, "snapshots are canonical");
    // The restored copy keeps applying identically, expiry order included.
    let mut copy = Ledger {
        engine: restored,
        ..busy_ledger()
    };
    for l in [&mut original, &mut copy] {
        l.run_as(RequestId(1), reserve("A", 1, None)).unwrap();
        l.advance(3_600_000);
        l.run(CommandKind::ExpireUpTo(ExpireUpTo { up_to_ms: l.now_ms }))
            .unwrap();
    }
    assert_eq!(original.events, copy.events);
    assert_eq!(original.engine.state_digest(), copy.engine.state_digest());
}

#[test]
fn restored_engine_answers_retries_from_before_the_snapshot() {
    let mut l = busy_ledger();
    let first = l.run_as(RequestId(42), reserve("A", 1, Some("eu-1")));
    let restored = Engine::restore(EngineConfig::default(), &l.engine.snapshot()).unwrap();
    let mut copy = Ledger {
        engine: restored,
        ..busy_ledger()
    };
    assert_eq!(
        copy.run_as(RequestId(42), reserve("A", 1, Some("eu-1"))),
        first
    );
    assert!(copy.events.is_empty());
}

#[test]
fn restore_republishes_the_board() {
    let l = busy_ledger();
    let restored = Engine::restore(EngineConfig::default(), &l.engine.snapshot()).unwrap();
    let original = l
        .engine
        .board()
        .scarcity("B", Some("eu-2"))
        .expect("B is scarce");
    let copy = restored
        .board()
        .scarcity("B", Some("eu-2"))
        .expect("republished");
    assert_eq!(
        (copy.available, copy.held),
        (original.available, original.held)
    );
    assert_eq!(
        copy.as_of_index,
        restored.applied_index(),
        "figures are as of the snapshot"
    );
}

#[test]
fn two_replicas_applying_the_same_log_agree() {
    assert_eq!(
        busy_ledger().engine.state_digest(),
        busy_ledger().engine.state_digest()
    );
    let mut other = busy_ledger();
    other.run(adjust("A", "eu-1", 1)).unwrap();
    assert_ne!(
        other.engine.state_digest(),
        busy_ledger().engine.state_digest()
    );
}

#[test]
fn framing_errors_are_named() {
    let snap = busy_ledger().engine.snapshot();
    assert_eq!(
        Engine::restore(EngineConfig::default(), b"nonsense").err(),
        Some(SnapshotError::BadMagic)
    );
    let mut v = snap.clone();
    v[8] = 9;
    assert_eq!(
        Engine::restore(EngineConfig::default(), &v).err(),
        Some(SnapshotError::UnsupportedVersion(9))
    );
    let truncated = &snap[..snap.len() - 1];
    assert!(matches!(
        Engine::restore(EngineConfig::default(), truncated),
        Err(SnapshotError::LengthMismatch { .. })
    ));
    let mut flipped = snap.clone();
    flipped[40] ^= 0x10;
    assert!(matches!(
        Engine::restore(EngineConfig::default(), &flipped),
        Err(SnapshotError::Checksum { .. })
    ));
}

#[test]
fn every_truncation_and_every_bit_flip_is_an_error() {
    let snap = busy_ledger().engine.snapshot();
    for len in 0..snap.len() {
        assert!(
            Engine::restore(EngineConfig::default(), &snap[..len]).is_err(),
            "length {len}"
        );
    }
    for i in 0..snap.len() {
        let mut v = snap.clone();
        v[i] ^= 1 << (i % 8);
        assert!(
            Engine::restore(EngineConfig::default(), &v).is_err(),
            "flip at byte {i}"
        );
    }
}

/// Re-frames a (possibly damaged) body with a valid header and checksum, so
/// the body decoder itself is exercised.
fn reframe(snapshot: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = snapshot[..12].to_vec();
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(body).to_le_bytes());
    out
}

#[test]
fn inconsistent_body_with_valid_checksum_is_refused() {
    let mut l = three_warehouses();
    l.stock("A", "eu-1", 5);
    l.reserve_ok(reserve("A", 2, Some("eu-1")));
    let snap = l.engine.snapshot();
    let body = snap[20..snap.len() - 8].to_vec();
    // The row's `held` (2) follows on_hand (5): find "5 then 2" and bump held.
    let needle: Vec<u8> = [5i64.to_le_bytes(), 2i64.to_le_bytes()].concat();
    let at = body
        .windows(16)
        .position(|w| w == needle.as_slice())
        .expect("row bytes")
        + 8;
    let mut bad = body.clone();
    bad[at] = 3;
    match Engine::restore(EngineConfig::default(), &reframe(&snap, &bad)) {
        Err(SnapshotError::Inconsistent(why)) => assert!(why.contains("conservation"), "{why}"),
        other => panic!("expected a conservation error, got {:?}", other.err()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    /// Damaged bodies behind a valid checksum never panic the decoder; if
    /// one happens to decode, it satisfies every invariant.
    #[test]
    fn damaged_bodies_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let l = busy_ledger();
        let snap = l.engine.snapshot();
        let mut body = snap[20..snap.len() - 8].to_vec();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        if let Ok(engine) = Engine::restore(EngineConfig::default(), &reframe(&snap, &body)) {
            prop_assert!(engine.check_invariants().is_ok());
        }
    }
}
