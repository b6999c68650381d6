//! `GetReservation` with real processes: a reservation reads the same from
//! every node (followers forward linearizable reads to the leader, or
//! answer STALE reads themselves), follows its state from pending to
//! confirmed, and an unknown or malformed id is refused with its code.

mod common;

use common::{reserve_request, retry, stock, ProcessCluster, DEADLINE};
use holdfast_server::pb::inventory as pb;
use std::time::{Duration, Instant};
use tonic::Code;

const SHARDS: u32 = 2;
const SKU: &str = "SKU-R";

async fn get(
    c: &ProcessCluster,
    node: usize,
    id: &str,
    consistency: pb::Consistency,
) -> Result<pb::GetReservationResponse, tonic::Status> {
    let request = pb::GetReservationRequest {
        reservation_id: id.into(),
        consistency: consistency as i32,
    };
    retry("get reservation", || {
        let mut n = c.inventory(node);
        let request = request.clone();
        async move { n.get_reservation(request).await }
    })
    .await
    .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_reads_the_same_from_every_node_through_its_life() {
    let c = ProcessCluster::start(3, SHARDS, &[]);
    stock(&c, 0, SKU, 10).await;
    let reserved = retry("reserve", || {
        let mut n = c.inventory(1);
        async move { n.reserve(reserve_request("read-r1", SKU)).await }
    })
    .await
    .expect("reserved")
    .into_inner();
    let id = reserved.reservation_id.clone();
    for node in 0..3 {
        let r = get(&c, node, &id, pb::Consistency::Linearizable)
            .await
            .expect("found");
        assert_eq!(r.state, pb::ReservationState::Pending as i32, "node {node}");
        assert_eq!(
            (r.owner_id.as_str(), r.customer_id.as_str()),
            ("cart-1", "cust-1")
        );
        assert_eq!(r.lines.len(), 1);
        assert_eq!(
            (
                r.lines[0].sku.as_str(),
                r.lines[0].location.as_str(),
                r.lines[0].quantity
            ),
            (SKU, "berlin", 1)
        );
        assert_eq!(r.expires_at_ms, reserved.expires_at_ms);
        assert!(r.created_at_ms < r.expires_at_ms && r.as_of_index > 0);
    }
    retry("confirm", || {
        let mut n = c.inventory(2);
        let id = id.clone();
        async move {
            n.confirm(pb::ConfirmRequest {
                request_id: "read-confirm".into(),
                reservation_id: id,
                quantities: vec![],
            })
            .await
        }
    })
    .await
    .expect("confirmed");
    // A linearizable read from any node sees the confirm at once.
    for node in 0..3 {
        let r = get(&c, node, &id, pb::Consistency::Linearizable)
            .await
            .expect("found");
        assert_eq!(
            r.state,
            pb::ReservationState::Confirmed as i32,
            "node {node}"
        );
        assert_eq!(r.lines[0].confirmed, 1);
    }
    // A stale read on every node catches up by itself.
    for node in 0..3 {
        let start = Instant::now();
        loop {
            let r = get(&c, node, &id, pb::Consistency::Stale)
                .await
                .expect("found");
            if r.state == pb::ReservationState::Confirmed as i32 {
                break;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "node {node} never applied the confirm"
            );
            tokio::time::sleep(Duration::from_millis(20)).await; // polling interval
        }
    }
    // Unknown and malformed ids.
    let unknown = get(&c, 0, "0-12345", pb::Consistency::Linearizable)
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let malformed = get(&c, 0, "not-an-id", pb::Consistency::Linearizable)
        .await
        .expect_err("malformed");
    assert_eq!(malformed.code(), Code::InvalidArgument, "{malformed:?}");
    assert!(
        malformed.message().contains("reservation_id"),
        "{malformed:?}"
    );
}
