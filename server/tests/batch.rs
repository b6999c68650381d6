//! `ReserveBatch` with real processes: each item is answered exactly as a
//! `Reserve` would be (reserved, out of stock, invalid), in request order,
//! whichever node receives the batch and whichever shards the items fall
//! in; a retried batch gets the first answers; a malformed batch is
//! refused whole.

mod common;

use common::{reserve_request, retry, stock, ProcessCluster};
use holdfast_server::pb::inventory as pb;
use pb::reserve_batch_result::Result as Item;
use tonic::Code;

const SHARDS: u32 = 4;

/// Two SKUs on different shards.
fn two_skus() -> (String, String) {
    let a = "SKU-A".to_string();
    let b = (0..)
        .map(|i| format!("SKU-B{i}"))
        .find(|s| holdfast_engine::shard_of(s, SHARDS) != holdfast_engine::shard_of(&a, SHARDS))
        .expect("another shard");
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_item_is_answered_as_a_reserve_would_be() {
    let c = ProcessCluster::start(3, SHARDS, &[]);
    let (a, b) = two_skus();
    stock(&c, 0, &a, 5).await;
    stock(&c, 0, &b, 5).await;
    let mut items: Vec<pb::ReserveRequest> = (0..6)
        .map(|i| reserve_request(&format!("batch-a-{i}"), &a))
        .collect();
    items.push(reserve_request("batch-b-0", &b));
    let mut bad = reserve_request("batch-bad", &a);
    bad.lines[0].quantity = 0;
    items.push(bad);
    let batch = pb::ReserveBatchRequest {
        reservations: items,
    };
    for node in 0..3 {
        // Every node gives the same answers (the first node's call applies,
        // the others are retries with the same request ids).
        let results = retry("reserve batch", || {
            let mut n = c.inventory(node);
            let batch = batch.clone();
            async move { n.reserve_batch(batch).await }
        })
        .await
        .expect("batch answered")
        .into_inner()
        .results;
        assert_eq!(results.len(), 8);
        let reserved = results[..6]
            .iter()
            .filter(|r| matches!(r.result, Some(Item::Reserved(_))))
            .count();
        assert_eq!(reserved, 5, "five units of {a}, five holds");
        let refused: Vec<_> = results[..6]
            .iter()
            .filter_map(|r| match &r.result {
                Some(Item::Error(e)) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].code, Code::FailedPrecondition as i32);
        assert_eq!(refused[0].reason, "OUT_OF_STOCK");
        assert!(
            matches!(results[6].result, Some(Item::Reserved(_))),
            "{b} on another shard"
        );
        match &results[7].result {
            Some(Item::Error(e)) => {
                assert_eq!(e.code, Code::InvalidArgument as i32);
                assert!(e.message.contains("quantity"), "{e:?}");
            }
            other => panic!("the invalid item: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_batch_is_refused_whole() {
    let c = ProcessCluster::start(1, SHARDS, &[]);
    for count in [0usize, 1_001] {
        let batch = pb::ReserveBatchRequest {
            reservations: (0..count)
                .map(|i| reserve_request(&format!("r{i}"), "SKU-A"))
                .collect(),
        };
        let status = retry("reserve batch", || {
            let mut n = c.inventory(0);
            let batch = batch.clone();
            async move { n.reserve_batch(batch).await }
        })
        .await
        .expect_err("refused");
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{count} items: {status:?}"
        );
        assert!(status.message().contains("reservations"), "{status:?}");
    }
}
