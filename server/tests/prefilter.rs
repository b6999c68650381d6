//! The sold-out pre-filter (design §5, layer 1) with real processes: once
//! a row has nothing promisable and nothing held, a reserve is refused by
//! the node without a Raft round trip (the shard's commit index does not
//! move), with `prefilter=true`; a retry of a request that applied still
//! gets its first answer (design §1.3), because retries skip the filter.

mod common;

use common::{reserve_request, retry, stock, ProcessCluster};
use holdfast_server::pb::inventory as pb;
use holdfast_server::service::RETRY_HEADER;
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
    // Sold out now: refused before the log.
    let before = commit_index(&c).await;
    let refused = node
        .reserve(reserve_request("after-sold-out", SKU))
        .await
        .expect_err("sold out");
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
    // A retry of the request that took the last unit: its first answer.
    let mut again = tonic::Request::new(reserve_request("last-unit", SKU));
    again
        .metadata_mut()
        .insert(RETRY_HEADER, MetadataValue::from_static("1"));
    let replay = node
        .reserve(again)
        .await
        .expect("the first answer")
        .into_inner();
    assert_eq!(replay.reservation_id, first.reservation_id);
}
