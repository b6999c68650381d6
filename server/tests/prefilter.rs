//! The sold-out pre-filter (design §5, layer 1) with real processes: once
//! a row has nothing promisable (held units or none), a reserve marked as
//! a first attempt is refused by the node without a Raft round trip (the
//! shard's commit index does not move), with `prefilter=true`; a request
//! without the mark, such as a retry of one that applied, still gets its
//! first answer (design §1.3). And admission (layer 2).

mod common;

use common::{partition, reserve_request, retry, settled_leader, stock, ProcessCluster, DEADLINE};
use futures_util::stream::{FuturesUnordered, StreamExt};
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
    // Held, not yet sold: an unmarked request (it may be a retry) is
    // decided by the ledger.
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
    // A first attempt meets the filter, which says a unit is held.
    let mut marked = tonic::Request::new(reserve_request("first-while-held", SKU));
    marked
        .metadata_mut()
        .insert(FIRST_ATTEMPT_HEADER, MetadataValue::from_static("1"));
    let refused = node.reserve(marked).await.expect_err("nothing available");
    let info = refused.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "OUT_OF_STOCK");
    assert_eq!(
        (
            info.metadata.get("prefilter").map(String::as_str),
            info.metadata.get("held").map(String::as_str)
        ),
        (Some("true"), Some("1")),
        "{info:?}"
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

/// Hot-SKU admission (design §5, layer 2) with real processes. While the
/// shard leader is cut off from both followers nothing commits, so every
/// admitted reserve stays in flight: of a crowd of first attempts for 5
/// units exactly 2 × 5 are admitted and every other one is refused before
/// the log with `RESOURCE_EXHAUSTED` / `ADMISSION_LIMIT`. After healing,
/// the admitted ones and the retried refusals (still first attempts: they
/// were never proposed) sell exactly the stock, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_is_admitted_a_bounded_number_at_a_time_and_sells_exactly_the_stock() {
    const UNITS: i64 = 5;
    const ADMITTED: usize = 2 * UNITS as usize;
    const BUYERS: usize = 300;
    const HOT: &str = "SKU-HOT";
    // A 6 s election timeout (200 ticks of 30 ms): the cut-off leader
    // keeps its lead (check_quorum) while the crowd is answered, instead
    // of dropping the admitted proposals after the default 300 ms.
    let config = tempfile::TempDir::new().expect("temp dir");
    let config_path = config.path().join("holdfast.toml");
    std::fs::write(&config_path, "[raft]\nelection_ticks = 200\n").expect("config written");
    let c = ProcessCluster::start(
        3,
        SHARDS,
        &["--chaos-faults", "--config", config_path.to_str().unwrap()],
    );
    stock(&c, 0, HOT, UNITS).await;
    // The preferred node, so that no balance transfer starts once it is
    // cut off (raft-rs drops proposals while a transfer is under way; a
    // CI run once saw `PROPOSAL_DROPPED` here).
    let leader = settled_leader(&c, 0, 3).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let attempt = |id: String| {
        let mut n = c.inventory(leader);
        async move {
            let mut request = tonic::Request::new(reserve_request(&id, HOT));
            request
                .metadata_mut()
                .insert(FIRST_ATTEMPT_HEADER, MetadataValue::from_static("1"));
            (id, n.reserve(request).await)
        }
    };
    partition(
        &c,
        leader,
        &followers.iter().map(|&i| i as u64 + 1).collect::<Vec<_>>(),
    )
    .await;
    for &i in &followers {
        partition(&c, i, &[leader as u64 + 1]).await;
    }
    let mut crowd: FuturesUnordered<_> =
        (0..BUYERS).map(|i| attempt(format!("buyer-{i}"))).collect();
    // Nothing commits: the admitted stay in flight, everyone else is
    // answered at once, and only by admission.
    let mut waiting = Vec::new();
    while waiting.len() < BUYERS - ADMITTED {
        let next = tokio::time::timeout(DEADLINE, crowd.next()).await;
        let (id, answer) = next
            .unwrap_or_else(|_| panic!("only {} refused, the rest still in flight", waiting.len()))
            .expect("an answer per buyer");
        let refused = answer.expect_err("nothing commits while the leader is cut off");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{id}: {refused:?}");
        let info = refused.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "ADMISSION_LIMIT");
        assert_eq!(
            (
                info.metadata["in_flight"].as_str(),
                info.metadata["available"].as_str()
            ),
            ("10", "5"),
            "{info:?}"
        );
        waiting.push(id);
    }
    for i in 0..3 {
        partition(&c, i, &[]).await;
    }
    let (mut sold, mut out_of_stock) = (0, 0);
    let mut count =
        |id: &str, answer: Result<_, tonic::Status>, waiting: &mut Vec<String>| match answer {
            Ok(_) => sold += 1,
            Err(s) if s.code() == Code::FailedPrecondition => out_of_stock += 1,
            Err(s) if s.code() == Code::ResourceExhausted => waiting.push(id.to_string()),
            Err(s) => panic!("{id}: {s:?}"),
        };
    let admitted: Vec<_> = crowd.collect().await;
    assert_eq!(admitted.len(), ADMITTED);
    for (id, answer) in admitted {
        count(&id, answer, &mut waiting);
    }
    let started = std::time::Instant::now();
    while !waiting.is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{} buyers never got an answer",
            waiting.len()
        );
        let answers: Vec<_> = waiting
            .drain(..)
            .map(&attempt)
            .collect::<FuturesUnordered<_>>()
            .collect()
            .await;
        for (id, answer) in answers {
            count(&id, answer, &mut waiting);
        }
    }
    assert_eq!(sold, UNITS, "exactly the stock is sold");
    assert_eq!(sold as usize + out_of_stock, BUYERS);
}
