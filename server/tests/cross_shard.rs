//! Cross-shard reservations (design §4) with real processes: a Reserve
//! whose lines fall in several shards is held as one part per shard and
//! answered with a joined id; Confirm (with per-allocation quantities),
//! Release, Extend and GetReservation act on every part; a refused part
//! leaves no hold on any shard; a retry with the same request id gets the
//! first answer and the same id with another body is refused (§1.3).
//! After every step, each row's `held` equals the units of the pending
//! parts that hold it (§1.2).

mod common;

use common::{retry, stock, ProcessCluster};
use holdfast_server::pb::inventory as pb;
use pb::inventory_client::InventoryClient;
use std::collections::BTreeMap;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const SHARDS: u32 = 4;
const NODES: usize = 3;

/// Three SKUs, each on a shard of its own, in no particular shard order.
fn three_skus() -> [String; 3] {
    let mut found: Vec<String> = Vec::new();
    for i in 0.. {
        let sku = format!("X-SKU-{i}");
        let shard = holdfast_engine::shard_of(&sku, SHARDS);
        if found
            .iter()
            .all(|s| holdfast_engine::shard_of(s, SHARDS) != shard)
        {
            found.push(sku);
        }
        if found.len() == 3 {
            break;
        }
    }
    [found[0].clone(), found[1].clone(), found[2].clone()]
}

fn line(sku: &str, quantity: i64) -> pb::ReserveLine {
    pb::ReserveLine {
        sku: sku.into(),
        quantity,
        location: Some("berlin".into()),
    }
}

fn reserve_request(id: &str, lines: Vec<pb::ReserveLine>) -> pb::ReserveRequest {
    pb::ReserveRequest {
        request_id: id.into(),
        owner_id: "cart-x".into(),
        customer_id: "cust-x".into(),
        lines,
        ttl_ms: 600_000,
        policy: 0,
        allow_split: false,
        region: None,
    }
}

/// One call on `node`, retried with the same request (hence the same
/// request id) while the cluster settles; the reply or the final status.
async fn unary<Req, Resp, F, Fut>(
    node: &InventoryClient<Channel>,
    request: Req,
    call: F,
) -> Result<Resp, Status>
where
    Req: Clone,
    F: Fn(InventoryClient<Channel>, Req) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    retry("call", || call(node.clone(), request.clone()))
        .await
        .map(tonic::Response::into_inner)
}

async fn reserve(
    node: InventoryClient<Channel>,
    r: &pb::ReserveRequest,
) -> Result<pb::ReserveResponse, Status> {
    unary(
        &node,
        r.clone(),
        |mut n, r| async move { n.reserve(r).await },
    )
    .await
}

async fn get(
    node: InventoryClient<Channel>,
    id: &str,
) -> Result<pb::GetReservationResponse, Status> {
    let request = pb::GetReservationRequest {
        reservation_id: id.into(),
        consistency: 0,
    };
    unary(&node, request, |mut n, r| async move {
        n.get_reservation(r).await
    })
    .await
}

async fn confirm(
    node: InventoryClient<Channel>,
    request_id: &str,
    reservation_id: &str,
    quantities: &[i64],
) -> Result<pb::ConfirmResponse, Status> {
    let request = pb::ConfirmRequest {
        request_id: request_id.into(),
        reservation_id: reservation_id.into(),
        quantities: quantities.to_vec(),
    };
    unary(&node, request, |mut n, r| async move { n.confirm(r).await }).await
}

async fn release(
    node: InventoryClient<Channel>,
    request_id: &str,
    reservation_id: &str,
) -> Result<pb::ReleaseResponse, Status> {
    let request = pb::ReleaseRequest {
        request_id: request_id.into(),
        reservation_id: reservation_id.into(),
    };
    unary(&node, request, |mut n, r| async move { n.release(r).await }).await
}

/// `(held, on_hand)` of each SKU at berlin, linearizable.
async fn rows(node: InventoryClient<Channel>, skus: &[String]) -> BTreeMap<String, (i64, i64)> {
    let request = pb::GetAvailabilityRequest {
        rows: skus
            .iter()
            .map(|s| pb::RowKey {
                sku: s.clone(),
                location: Some("berlin".into()),
            })
            .collect(),
        consistency: 0,
    };
    unary(&node, request, |mut n, r| async move {
        n.get_availability(r).await
    })
    .await
    .expect("availability")
    .rows
    .into_iter()
    .map(|r| (r.sku, (r.held, r.on_hand)))
    .collect()
}

/// Design §1.2 across shards: each row's `held` is the sum of the units
/// the pending parts of `reservations` hold there (they are the only
/// holds of these SKUs).
async fn assert_held_is_pending_parts(c: &ProcessCluster, skus: &[String], reservations: &[&str]) {
    let mut pending: BTreeMap<String, i64> = skus.iter().map(|s| (s.clone(), 0)).collect();
    for id in reservations {
        let view = get(c.inventory(0), id).await.expect("readable");
        let mut lines = view.lines.iter();
        let parts = if view.parts.is_empty() {
            vec![(view.state, view.lines.len() as u32)]
        } else {
            view.parts.iter().map(|p| (p.state, p.lines)).collect()
        };
        for (state, count) in parts {
            for l in lines.by_ref().take(count as usize) {
                if state == pb::ReservationState::Pending as i32 {
                    *pending.entry(l.sku.clone()).or_default() += l.quantity;
                }
            }
        }
    }
    let held: BTreeMap<String, i64> = rows(c.inventory(c.ports.len() - 1), skus)
        .await
        .into_iter()
        .map(|(sku, (held, _))| (sku, held))
        .collect();
    assert_eq!(held, pending, "held vs pending parts of {reservations:?}");
}

fn reason(s: &Status) -> (String, BTreeMap<String, String>) {
    let info = s.get_details_error_info().expect("ErrorInfo");
    (info.reason, info.metadata.into_iter().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_shard_reservation_is_held_read_extended_confirmed_and_released_as_one() {
    let c = ProcessCluster::start(NODES, SHARDS, &[]);
    let skus = three_skus();
    for sku in &skus {
        stock(&c, 0, sku, 10).await;
    }
    let [a, b, x] = &skus;
    let shard = |s: &str| holdfast_engine::shard_of(s, SHARDS);

    // Three lines on three shards, through node 0.
    let request = reserve_request("xs-1", vec![line(a, 2), line(b, 3), line(x, 1)]);
    let held = reserve(c.inventory(0), &request).await.expect("held");
    let parts: Vec<&str> = held.reservation_id.split('+').collect();
    assert_eq!(parts.len(), 3, "{}", held.reservation_id);
    let part_shards: Vec<u32> = parts
        .iter()
        .map(|p| p.split_once('-').expect("s-n").0.parse().expect("shard"))
        .collect();
    let mut by_shard = vec![shard(a), shard(b), shard(x)];
    by_shard.sort_unstable();
    assert_eq!(part_shards, by_shard, "parts in shard order");
    // Allocations part by part, in the id's order.
    let alloc_skus: Vec<&str> = held.allocations.iter().map(|al| al.sku.as_str()).collect();
    let mut expected: Vec<&str> = vec![a, b, x];
    expected.sort_by_key(|s| shard(s));
    assert_eq!(alloc_skus, expected);
    assert_held_is_pending_parts(&c, &skus, &[&held.reservation_id]).await;

    // The same request id and body, through another node: the first answer.
    let again = reserve(c.inventory(2), &request).await.expect("retry");
    assert_eq!(again, held);
    assert_held_is_pending_parts(&c, &skus, &[&held.reservation_id]).await;
    // The same id with another body: ALREADY_EXISTS, and nothing more held.
    let mut other = request.clone();
    other.lines[1].quantity = 4;
    let refused = reserve(c.inventory(1), &other)
        .await
        .expect_err("reused id");
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    assert_held_is_pending_parts(&c, &skus, &[&held.reservation_id]).await;

    // Read it whole.
    let view = get(c.inventory(1), &held.reservation_id)
        .await
        .expect("read");
    assert_eq!(view.state, pb::ReservationState::Pending as i32);
    assert_eq!(view.parts.len(), 3);
    assert_eq!(view.lines.len(), 3);
    assert_eq!(view.expires_at_ms, held.expires_at_ms);
    assert_eq!(view.owner_id, "cart-x");

    // Extend every part.
    let extend = pb::ExtendRequest {
        request_id: "xs-1-extend".into(),
        reservation_id: held.reservation_id.clone(),
        ttl_ms: 3_600_000,
    };
    let extended = unary(&c.inventory(2), extend, |mut n, r| async move {
        n.extend(r).await
    })
    .await
    .expect("extended");
    assert!(extended.expires_at_ms > held.expires_at_ms);
    let view = get(c.inventory(0), &held.reservation_id)
        .await
        .expect("read");
    assert!(view
        .parts
        .iter()
        .all(|p| p.expires_at_ms >= extended.expires_at_ms));

    // Confirm with one quantity per allocation, in the answer's order:
    // all of the first part, 1 unit of the second, none of the third
    // (which is released).
    let quantities: Vec<i64> = vec![held.allocations[0].quantity, 1, 0];
    let confirmed = confirm(
        c.inventory(1),
        "xs-1-confirm",
        &held.reservation_id,
        &quantities,
    )
    .await
    .expect("confirmed");
    let total: i64 = held.allocations.iter().map(|al| al.quantity).sum();
    assert_eq!(confirmed.units_confirmed, quantities.iter().sum::<i64>());
    assert_eq!(confirmed.units_released, total - confirmed.units_confirmed);
    // A retry of the Confirm: the same answer.
    let again = confirm(
        c.inventory(0),
        "xs-1-confirm",
        &held.reservation_id,
        &quantities,
    )
    .await
    .expect("confirm retried");
    assert_eq!(again, confirmed);
    let after = rows(c.inventory(0), &skus).await;
    for (al, q) in held.allocations.iter().zip(&quantities) {
        assert_eq!(after[&al.sku], (0, 10 - q), "{}", al.sku);
    }
    // Two parts confirmed, one released: MIXED, each part as it is.
    let view = get(c.inventory(2), &held.reservation_id)
        .await
        .expect("read");
    assert_eq!(view.state, pb::ReservationState::Mixed as i32);
    let states: Vec<i32> = view.parts.iter().map(|p| p.state).collect();
    use pb::ReservationState::{Confirmed, Released};
    assert_eq!(
        states,
        [Confirmed as i32, Confirmed as i32, Released as i32]
    );
    let confirmed_units: Vec<i64> = view.lines.iter().map(|l| l.confirmed).collect();
    assert_eq!(confirmed_units, quantities);
    assert_held_is_pending_parts(&c, &skus, &[&held.reservation_id]).await;

    // Releasing it now: refused, naming the first part that refused.
    let refused = release(c.inventory(0), "xs-1-release", &held.reservation_id)
        .await
        .expect_err("not pending");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let (why, metadata) = reason(&refused);
    assert_eq!(why, "RESERVATION_NOT_PENDING");
    assert_eq!(metadata["part"], parts[0]);
    assert_eq!(metadata["state"], "CONFIRMED");

    // A second reservation, released whole: every unit comes back.
    let second = reserve(
        c.inventory(1),
        &reserve_request("xs-2", vec![line(x, 4), line(a, 1)]),
    )
    .await
    .expect("held");
    assert_held_is_pending_parts(&c, &skus, &[&second.reservation_id]).await;
    let released = release(c.inventory(2), "xs-2-release", &second.reservation_id)
        .await
        .expect("released");
    assert_eq!(released.units_released, 5);
    let view = get(c.inventory(0), &second.reservation_id)
        .await
        .expect("read");
    assert_eq!(view.state, pb::ReservationState::Released as i32);
    assert_held_is_pending_parts(&c, &skus, &[&second.reservation_id]).await;

    // A cross-shard item of a ReserveBatch is coordinated like a Reserve.
    let batch = pb::ReserveBatchRequest {
        reservations: vec![reserve_request("xs-3", vec![line(a, 1), line(b, 1)])],
    };
    let results = unary(&c.inventory(2), batch, |mut n, r| async move {
        n.reserve_batch(r).await
    })
    .await
    .expect("batch")
    .results;
    let Some(pb::reserve_batch_result::Result::Reserved(third)) = &results[0].result else {
        panic!("cross-shard batch item: {results:?}");
    };
    assert_eq!(third.reservation_id.split('+').count(), 2);
    assert_held_is_pending_parts(&c, &skus, &[&third.reservation_id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_part_leaves_no_hold_on_any_shard() {
    let c = ProcessCluster::start(NODES, SHARDS, &[]);
    let skus = three_skus();
    let [a, b, _] = &skus;
    stock(&c, 0, a, 5).await;
    stock(&c, 0, b, 1).await;

    // b has 1 unit: its part is refused, a's part is released again.
    let request = reserve_request("xs-oos", vec![line(a, 2), line(b, 3)]);
    for node in 0..NODES {
        // Every node gives the first answer (the others are retries).
        let refused = reserve(c.inventory(node), &request)
            .await
            .expect_err("out of stock");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        let (why, metadata) = reason(&refused);
        assert_eq!(why, "OUT_OF_STOCK");
        assert_eq!(
            metadata["line"], "1",
            "line numbers as the client sent them"
        );
        assert_eq!(metadata["sku"], *b);
        assert_eq!(metadata["available"], "1");
        assert!(
            refused.message().starts_with("lines[1]: "),
            "{}",
            refused.message()
        );
        let after = rows(c.inventory(node), &skus[..2]).await;
        assert_eq!(after[a], (0, 5), "no hold left on {a}");
        assert_eq!(after[b], (0, 1));
    }
    // The same id with another body.
    let mut other = request.clone();
    other.lines[0].quantity = 1;
    let refused = reserve(c.inventory(1), &other)
        .await
        .expect_err("reused id");
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    assert_eq!(rows(c.inventory(0), &skus[..2]).await[a], (0, 5));

    // PARTIAL: b's part can hold 1 of 3, a's part all; the reservation
    // joins both.
    let mut partial = reserve_request("xs-partial", vec![line(a, 2), line(b, 3)]);
    partial.policy = pb::FillPolicy::Partial as i32;
    let held = reserve(c.inventory(2), &partial)
        .await
        .expect("partly held");
    let units: i64 = held.allocations.iter().map(|al| al.quantity).sum();
    assert_eq!(units, 2 + 1);
    assert!(held.reservation_id.contains('+'), "{}", held.reservation_id);
    assert_held_is_pending_parts(&c, &skus[..2], &[&held.reservation_id]).await;
    // PARTIAL with b sold out: b's part is left out, the answer is a's
    // part alone, an ordinary id.
    let mut partial = reserve_request("xs-partial-2", vec![line(a, 1), line(b, 1)]);
    partial.policy = pb::FillPolicy::Partial as i32;
    let held_a = reserve(c.inventory(0), &partial).await.expect("a's part");
    assert!(
        !held_a.reservation_id.contains('+'),
        "{}",
        held_a.reservation_id
    );
    assert_eq!(held_a.allocations.len(), 1);
    assert_eq!(held_a.allocations[0].sku, *a);
    assert_held_is_pending_parts(
        &c,
        &skus[..2],
        &[&held.reservation_id, &held_a.reservation_id],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_joined_ids_and_quantities_are_refused_naming_the_field() {
    let c = ProcessCluster::start(1, SHARDS, &[]);
    let skus = three_skus();
    for sku in &skus[..2] {
        stock(&c, 0, sku, 10).await;
    }
    for bad in ["1-2+", "3-1+1-2", "1-2+1-3", "0-1+9-1", "0-1+1-x"] {
        let s = get(c.inventory(0), bad).await.expect_err(bad);
        assert_eq!(s.code(), Code::InvalidArgument, "{bad}: {s:?}");
        assert_eq!(reason(&s).1["field"], "reservation_id", "{bad}");
    }
    // Parts that do not exist: NOT_FOUND, naming the part.
    let s = get(c.inventory(0), "0-77+1-77").await.expect_err("unknown");
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    assert_eq!(reason(&s).1["part"], "0-77");

    let held = reserve(
        c.inventory(0),
        &reserve_request("xs-q", vec![line(&skus[0], 2), line(&skus[1], 2)]),
    )
    .await
    .expect("held");
    for (quantities, field) in [
        (vec![1], "quantities"),
        (vec![1, 1, 1], "quantities"),
        (vec![3, 1], "lines[0].quantities"),
        (vec![0, 0], "quantities"),
        (vec![1, -1], "lines[1].quantities"),
    ] {
        let s = confirm(
            c.inventory(0),
            "xs-q-confirm",
            &held.reservation_id,
            &quantities,
        )
        .await
        .expect_err("bad quantities");
        assert_eq!(s.code(), Code::InvalidArgument, "{quantities:?}: {s:?}");
        assert_eq!(reason(&s).1["field"], field, "{quantities:?}");
    }
    assert_held_is_pending_parts(&c, &skus[..2], &[&held.reservation_id]).await;
}
