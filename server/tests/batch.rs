//! `ReserveBatch` with real processes: each item is answered exactly as a
//! `Reserve` would be (reserved, out of stock, invalid, a duplicate request
//! id, another shard, several shards), in request order, whichever node
//! receives the batch and whichever shards the items fall in; a retried
//! batch gets the first answers; a batch marked as a first attempt meets
//! the pre-filter and admission item by item; a malformed batch is refused
//! whole.

mod common;

use common::{reserve_request, retry, stock, ProcessCluster, DEADLINE};
use holdfast_server::pb::inventory as pb;
use holdfast_server::service::FIRST_ATTEMPT_HEADER;
use pb::reserve_batch_result::Result as Item;
use std::collections::BTreeMap;
use std::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::Code;
use tonic_types::StatusExt;

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
        let results = settled(&c, node, &batch).await;
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

/// Whether an item's error says "try again with the same request id"
/// (no leader yet, a leader change, a proposal dropped), as a client
/// reads it.
fn retryable(result: &pb::ReserveBatchResult) -> bool {
    let retry_codes = [Code::Unavailable, Code::Aborted, Code::DeadlineExceeded];
    matches!(&result.result, Some(Item::Error(e)) if retry_codes.iter().any(|&c| e.code == c as i32))
}

/// `batch` sent to `node`, and sent again whole (same request ids) while
/// an item's error is retryable, as a client retries such items: a fresh
/// cluster moves its leaders to their preferred nodes in its first
/// seconds. An item that applied answers the same on every resend.
async fn settled(
    c: &ProcessCluster,
    node: usize,
    batch: &pb::ReserveBatchRequest,
) -> Vec<pb::ReserveBatchResult> {
    let started = Instant::now();
    loop {
        let results = retry("reserve batch", || {
            let mut n = c.inventory(node);
            let batch = batch.clone();
            async move { n.reserve_batch(batch).await }
        })
        .await
        .expect("batch answered")
        .into_inner()
        .results;
        if !results.iter().any(retryable) {
            return results;
        }
        assert!(started.elapsed() < DEADLINE, "still retryable: {results:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // retry backoff
    }
}

/// A single `Reserve` of `item` through `node`, retried while its error is
/// retryable, as a batch item is by [`settled`]; its answer as a batch
/// item.
async fn single(
    c: &ProcessCluster,
    node: usize,
    item: &pb::ReserveRequest,
) -> pb::ReserveBatchResult {
    let started = Instant::now();
    loop {
        let mut n = c.inventory(node);
        let result = match n.reserve(item.clone()).await {
            Ok(r) => Item::Reserved(r.into_inner()),
            Err(s) => {
                let info = s.get_details_error_info();
                Item::Error(pb::ItemError {
                    code: s.code() as i32,
                    message: s.message().to_string(),
                    reason: info.as_ref().map(|i| i.reason.clone()).unwrap_or_default(),
                    metadata: info
                        .map(|i| i.metadata.into_iter().collect())
                        .unwrap_or_default(),
                })
            }
        };
        let result = pb::ReserveBatchResult {
            result: Some(result),
        };
        if !retryable(&result) {
            return result;
        }
        assert!(started.elapsed() < DEADLINE, "still retryable: {result:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await; // retry backoff
    }
}

/// An answer as two calls of the same request must agree on it: the
/// reservation with its allocations (not the expiry, which is the time of
/// each call), or the error's code, reason and metadata (not the log index
/// the refusal was read at, which depends on how entries were cut).
fn comparable(result: &pb::ReserveBatchResult) -> String {
    match &result.result {
        Some(Item::Reserved(r)) => format!("reserved {} {:?}", r.reservation_id, r.allocations),
        Some(Item::Error(e)) => {
            let metadata: BTreeMap<_, _> = e
                .metadata
                .iter()
                .filter(|(k, _)| k.as_str() != "as_of_index")
                .collect();
            format!("error {} {} {metadata:?}", e.code, e.reason)
        }
        None => "empty".into(),
    }
}

/// SKUs `(a, b, c, d)`, each on another of the 4 shards.
fn four_skus() -> [String; 4] {
    let mut found: Vec<String> = Vec::new();
    for i in 0.. {
        let sku = format!("SKU-{i}");
        let shard = holdfast_engine::shard_of(&sku, SHARDS);
        if found
            .iter()
            .all(|f| holdfast_engine::shard_of(f, SHARDS) != shard)
        {
            found.push(sku);
        }
        if found.len() == 4 {
            break;
        }
    }
    [0, 1, 2, 3].map(|i| found[i].clone())
}

/// A batch of every kind of item, with the answer a single `Reserve` gives
/// each (see the test below).
fn mixed_items([a, b, c, d]: &[String; 4]) -> Vec<pb::ReserveRequest> {
    let one = |id: &str, sku: &str| reserve_request(id, sku);
    let mut items = vec![
        one("m-0", a),  // reserved
        one("m-1", b),  // reserved, on another shard
        one("m-2", a),  // reserved
        one("", a),     // INVALID_ARGUMENT request_id
        one("m-4", a),  // INVALID_ARGUMENT lines[0].quantity
        one("m-0", a),  // m-0's first answer (same body)
        one("m-1", b),  // ALREADY_EXISTS (another body)
        one("m-7", a),  // reserved: the last unit of a
        one("m-8", a),  // OUT_OF_STOCK
        one("m-9", b),  // INVALID_ARGUMENT policy
        one("m-10", c), // cross-shard (c and d): reserved
        one("m-11", b), // NOT_FOUND location
        one("m-12", a), // INVALID_ARGUMENT ttl_ms
        one("m-13", a), // OUT_OF_STOCK again
    ];
    items[4].lines[0].quantity = 0;
    items[6].lines[0].quantity = 2;
    items[9].policy = 99;
    items[10].lines.push(pb::ReserveLine {
        sku: d.clone(),
        quantity: 2,
        location: Some("berlin".into()),
    });
    items[11].lines[0].location = Some("nowhere".into());
    items[12].ttl_ms = 0;
    items
}

/// One cluster answers a batch mixing every kind of item; a twin cluster,
/// stocked alike, answers the same items as single `Reserve` calls in
/// request order. Each item gets what its single call got: the same
/// reservation (ids, allocations and availability after, since a shard
/// applies its share in request order), or the same error. Then a retried
/// batch gets the first answers, through another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_answers_as_single_reserves_in_order() {
    let skus = four_skus();
    let items = mixed_items(&skus);
    let twins = [
        ProcessCluster::start(3, SHARDS, &[]),
        ProcessCluster::start(3, SHARDS, &[]),
    ];
    for c in &twins {
        stock(c, 0, &skus[0], 3).await;
        for sku in &skus[1..] {
            stock(c, 0, sku, 10).await;
        }
    }
    let batch = pb::ReserveBatchRequest {
        reservations: items.clone(),
    };
    let batched = settled(&twins[0], 0, &batch).await;
    let mut singles = Vec::new();
    for item in &items {
        singles.push(single(&twins[1], 0, item).await);
    }
    assert_eq!(batched.len(), items.len());
    for (i, (b, s)) in batched.iter().zip(&singles).enumerate() {
        assert_eq!(comparable(b), comparable(s), "item {i}");
    }
    let kinds: Vec<String> = batched
        .iter()
        .map(|r| match &r.result {
            Some(Item::Reserved(_)) => "ok".into(),
            Some(Item::Error(e)) => e.reason.clone(),
            None => "empty".into(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "ok",
            "ok",
            "ok",
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "ok",
            "REQUEST_ID_MISMATCH",
            "ok",
            "OUT_OF_STOCK",
            "INVALID_ARGUMENT",
            "ok",
            "LOCATION_NOT_FOUND",
            "INVALID_ARGUMENT",
            "OUT_OF_STOCK",
        ]
    );
    let field = |i: usize| match &batched[i].result {
        Some(Item::Error(e)) => e.metadata.get("field").cloned().unwrap_or_default(),
        _ => String::new(),
    };
    assert_eq!(
        [field(3), field(4), field(9), field(12)],
        ["request_id", "lines[0].quantity", "policy", "ttl_ms"]
    );
    assert_eq!(
        comparable(&batched[5]),
        comparable(&batched[0]),
        "first answer"
    );
    match &batched[8].result {
        Some(Item::Error(e)) => assert_eq!(e.metadata.get("sku"), Some(&skus[0]), "{e:?}"),
        other => panic!("{other:?}"),
    }
    // The same batch again, through another node: the first answers.
    let again = settled(&twins[0], 2, &batch).await;
    for (i, (first, second)) in batched.iter().zip(&again).enumerate() {
        assert_eq!(comparable(first), comparable(second), "item {i}");
    }
}

/// The commit index of `sku`'s shard on node 0.
async fn commit_index(c: &ProcessCluster, sku: &str) -> u64 {
    let shard = holdfast_engine::shard_of(sku, SHARDS) as usize;
    c.status(0, false).await.expect("status").shards[shard].commit
}

/// A batch marked as a first attempt meets the pre-filter and hot-SKU
/// admission item by item, as marked `Reserve` calls in flight together
/// would: of 10 marked items for 3 units, 2 × 3 are admitted (3 hold a
/// unit, 3 are refused by the ledger) and 4 are refused by admission;
/// once the row is sold out, every marked item is refused before the log
/// (`prefilter=true`), while an unmarked batch still reaches the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_attempt_batch_meets_the_prefilter_and_admission_per_item() {
    const HOT: &str = "SKU-HOT";
    let c = ProcessCluster::start(1, SHARDS, &[]);
    stock(&c, 0, HOT, 3).await;
    let marked = |ids: std::ops::Range<usize>| {
        let mut request = tonic::Request::new(pb::ReserveBatchRequest {
            reservations: ids
                .map(|i| reserve_request(&format!("hot-{i}"), HOT))
                .collect(),
        });
        request
            .metadata_mut()
            .insert(FIRST_ATTEMPT_HEADER, MetadataValue::from_static("1"));
        request
    };
    let reasons = |results: &[pb::ReserveBatchResult]| -> BTreeMap<String, usize> {
        let mut count = BTreeMap::new();
        for r in results {
            let key = match &r.result {
                Some(Item::Reserved(_)) => "reserved".to_string(),
                Some(Item::Error(e)) => {
                    let prefilter = e.metadata.get("prefilter").is_some_and(|p| p == "true");
                    format!(
                        "{}{}",
                        e.reason,
                        if prefilter { " (pre-filter)" } else { "" }
                    )
                }
                None => "empty".into(),
            };
            *count.entry(key).or_insert(0) += 1;
        }
        count
    };
    let mut node = c.inventory(0);
    let first = node
        .reserve_batch(marked(0..10))
        .await
        .expect("batch answered")
        .into_inner()
        .results;
    assert_eq!(
        reasons(&first),
        BTreeMap::from([
            ("reserved".to_string(), 3),
            ("OUT_OF_STOCK".to_string(), 3),
            ("ADMISSION_LIMIT".to_string(), 4),
        ]),
        "{first:?}"
    );
    // Nothing promisable now: marked items never reach the log.
    let before = commit_index(&c, HOT).await;
    let filtered = node
        .reserve_batch(marked(10..15))
        .await
        .expect("batch answered")
        .into_inner()
        .results;
    assert_eq!(
        reasons(&filtered),
        BTreeMap::from([("OUT_OF_STOCK (pre-filter)".to_string(), 5)])
    );
    assert_eq!(
        commit_index(&c, HOT).await,
        before,
        "no entry for pre-filtered items"
    );
    // Unmarked (it may be a retry), the same items reach the ledger, and
    // the three that hold a unit get their first answers.
    let unmarked = node
        .reserve_batch(pb::ReserveBatchRequest {
            reservations: (0..3)
                .map(|i| reserve_request(&format!("hot-{i}"), HOT))
                .chain([reserve_request("hot-fresh", HOT)])
                .collect(),
        })
        .await
        .expect("batch answered")
        .into_inner()
        .results;
    for (i, r) in unmarked.iter().take(3).enumerate() {
        assert_eq!(comparable(r), comparable(&first[i]), "item {i}");
    }
    assert_eq!(
        reasons(&unmarked[3..]),
        BTreeMap::from([("OUT_OF_STOCK".to_string(), 1)])
    );
}
