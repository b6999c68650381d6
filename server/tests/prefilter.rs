//! The sold-out pre-filter (design §5, layer 1) with real processes: once
//! a row has nothing promisable and nothing held, a reserve marked as a
//! first attempt is refused by the node without a Raft round trip (the
//! shard's commit index does not move), with `prefilter=true`; a request
//! without the mark, such as a retry of one that applied, still gets its
//! first answer (design §1.3).

mod common;

use common::{reserve_request, retry, stock, ProcessCluster};
use holdfast_server::pb::inventory as pb;
use holdfast_server::service::FIRST_ATTEMPT_HEADER;
use tonic::metadata::MetadataValue;
use tonic::Code;
use tonic_types::StatusExt;

const SHARDS: u32 = 1;
const SKU: &str = "SKU-LAST";

async fn commit_index(c: &ProcessCluster) -> u64 {
    c.status(0, false).await.expect("status").shards[0].commit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_row_is_refused_before_the_log_and_retries_get_their_first_answer() {
    let c = ProcessCluster::start(1, SHARDS, &[]);
    stock(&c, 0, SKU, 1).await;
    let mut node = c.inventory(0);
    let first = retry("reserve the last unit", || {
        let mut n = node.clone();
        async move { n.reserve(reserve_request("last-unit", SKU)).await }
    })
    .await
    .expect("reserved")
    .into_inner();
    // Held, not yet sold: a hold may come back, so the ledger decides.
    let refused = node
        .reserve(reserve_request("while-held", SKU))
        .await
        .expect_err("out of stock");
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "OUT_OF_STOCK");
    assert!(
        !info.metadata.contains_key("prefilter"),
        "decided by the ledger: {info:?}"
    );
    node.confirm(pb::ConfirmRequest {
        request_id: "confirm-last".into(),
        reservation_id: first.reservation_id.clone(),
        quantities: vec![],
    })
    .await
    .expect("confirmed");
    // Sold out now: a first attempt is refused before the log.
    let before = commit_index(&c).await;
    let mut fresh = tonic::Request::new(reserve_request("after-sold-out", SKU));
    fresh
        .metadata_mut()
        .insert(FIRST_ATTEMPT_HEADER, MetadataValue::from_static("1"));
    let refused = node.reserve(fresh).await.expect_err("sold out");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "OUT_OF_STOCK");
    assert_eq!(
        info.metadata.get("prefilter").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        commit_index(&c).await,
        before,
        "no log entry for a pre-filtered refusal"
    );
    // A retry of the request that took the last unit (unmarked, as every
    // retry is): its first answer, not the pre-filter's refusal.
    let replay = node
        .reserve(reserve_request("last-unit", SKU))
        .await
        .expect("the first answer")
        .into_inner();
    assert_eq!(replay.reservation_id, first.reservation_id);
    // Marked as a first attempt by a confused client, an id the ledger
    // knows is refused by the filter, marked stale: never applied twice.
    let mut confused = tonic::Request::new(reserve_request("last-unit", SKU));
    confused
        .metadata_mut()
        .insert(FIRST_ATTEMPT_HEADER, MetadataValue::from_static("1"));
    let refused = node.reserve(confused).await.expect_err("filtered");
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(info.metadata.get("stale").map(String::as_str), Some("true"));
}
